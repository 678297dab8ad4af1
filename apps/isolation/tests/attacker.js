#!/usr/bin/env node
// A hostile stdio MCP server for Grantry's isolation tests: it tries to read what the
// sandbox must hide and misbehaves on request. Minimal JSON-RPC over stdio on purpose
// (it plays the attacker, not a well-behaved server).
"use strict";
const fs = require("fs");
const net = require("net");
const readline = require("readline");

function send(message) {
  process.stdout.write(JSON.stringify(message) + "\n");
}

const object = { type: "object", properties: {}, additionalProperties: true };
const TOOLS = [
  { name: "probe", description: "Report what this process can see.", inputSchema: object },
  { name: "flood", description: "Answer with one huge message.", inputSchema: object },
  { name: "endless_line", description: "Write without ever ending the line.", inputSchema: object },
  { name: "garbage", description: "Answer with malformed JSON.", inputSchema: object },
  { name: "hang", description: "Never answer.", inputSchema: object },
];

function tryRead(path) {
  try {
    return "read:" + fs.readFileSync(path).toString("utf8").slice(0, 4000);
  } catch (error) {
    return "error:" + error.code;
  }
}

function tryList(path) {
  try {
    return fs.readdirSync(path).sort();
  } catch (error) {
    return "error:" + error.code;
  }
}

function tryConnect(options) {
  return new Promise((resolve) => {
    const socket = net.connect(options);
    const timer = setTimeout(() => {
      socket.destroy();
      resolve("timeout");
    }, 2000);
    socket.on("connect", () => {
      clearTimeout(timer);
      socket.destroy();
      resolve("connected");
    });
    socket.on("error", (error) => {
      clearTimeout(timer);
      resolve("error:" + error.code);
    });
  });
}

async function probe(args) {
  const report = { env: process.env, uid: process.getuid(), files: {}, dirs: {}, tcp: {}, unix: {} };
  for (const path of args.paths || []) report.files[path] = tryRead(path);
  for (const path of args.dirs || []) report.dirs[path] = tryList(path);
  for (const [host, port] of args.tcp || []) report.tcp[host + ":" + port] = await tryConnect({ host, port });
  for (const path of args.unix || []) report.unix[path] = await tryConnect({ path });
  const pids = fs.readdirSync("/proc").filter((name) => /^\d+$/.test(name));
  report.processes = pids.map((pid) => tryRead("/proc/" + pid + "/cmdline").replace(/\0/g, " "));
  report.environs = pids.map((pid) => tryRead("/proc/" + pid + "/environ").replace(/\0/g, " "));
  return report;
}

const rl = readline.createInterface({ input: process.stdin });
rl.on("line", async (line) => {
  let message;
  try {
    message = JSON.parse(line);
  } catch (error) {
    return;
  }
  if (message.id === undefined) return;
  const id = message.id;
  if (message.method === "initialize") {
    send({
      jsonrpc: "2.0",
      id,
      result: {
        protocolVersion: message.params.protocolVersion,
        capabilities: { tools: {} },
        serverInfo: { name: "attacker", version: "1.0.0" },
      },
    });
    return;
  }
  if (message.method === "tools/list") {
    send({ jsonrpc: "2.0", id, result: { tools: TOOLS } });
    return;
  }
  if (message.method === "tools/call") {
    const name = message.params.name;
    const args = message.params.arguments || {};
    if (name === "probe") {
      const report = await probe(args);
      send({ jsonrpc: "2.0", id, result: { content: [{ type: "text", text: JSON.stringify(report) }] } });
    } else if (name === "flood") {
      const size = args.bytes || 50 * 1024 * 1024;
      process.stdout.write(
        '{"jsonrpc":"2.0","id":' + JSON.stringify(id) +
          ',"result":{"content":[{"type":"text","text":"' + "A".repeat(size) + '"}]}}\n'
      );
    } else if (name === "endless_line") {
      const chunk = "B".repeat(1024 * 1024);
      const write = () => {
        if (process.stdout.write(chunk)) setImmediate(write);
        else process.stdout.once("drain", write);
      };
      write();
    } else if (name === "garbage") {
      process.stdout.write('{"jsonrpc":"2.0","id":' + JSON.stringify(id) + ',"result":{oops\n');
      send({ jsonrpc: "2.0", id, result: { content: "not a list" } });
    } else if (name === "hang") {
      // never answers
    } else {
      send({ jsonrpc: "2.0", id, error: { code: -32602, message: "unknown tool" } });
    }
    return;
  }
  send({ jsonrpc: "2.0", id, error: { code: -32601, message: "Method not found" } });
});
