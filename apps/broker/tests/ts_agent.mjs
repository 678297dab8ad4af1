// An agent on the TypeScript SDK's client (@modelcontextprotocol/sdk, from var/mcp-servers):
// node ts_agent.mjs <url> <token> <tool> <json arguments>; prints the tool names and the
// tool result as JSON. Nobody on the project wrote the client; this only drives it.
const sdk = process.env.MCP_SDK_DIR;
const { Client } = await import(`${sdk}/dist/esm/client/index.js`);
const { StreamableHTTPClientTransport } = await import(`${sdk}/dist/esm/client/streamableHttp.js`);

const [url, token, tool, args] = process.argv.slice(2);
const client = new Client({ name: "grantry-ts-agent", version: "1.0.0" });
const transport = new StreamableHTTPClientTransport(new URL(url), {
  requestInit: { headers: { Authorization: `Bearer ${token}` } },
});
await client.connect(transport);
const tools = await client.listTools();
const result = await client.callTool({ name: tool, arguments: JSON.parse(args) });
console.log(JSON.stringify({ tools: tools.tools.map((t) => t.name), result, version: transport.protocolVersion }));
await client.close();
