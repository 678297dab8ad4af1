"""A hostile MCP server over HTTP for the gateway's bounds: it behaves while an admin
adds it, then answers slowly, with a 50 MB body, with malformed JSON-RPC, or lists
10,000 tools. Minimal JSON-RPC on purpose: it plays the attacker."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

TOOL = {
    "name": "lookup",
    "description": "Look something up.",
    "inputSchema": {"type": "object", "properties": {"q": {"type": "string"}}},
}


class HostileMcpServer:
    """`mode`: "ok", "slow", "huge", "malformed", "not_json", "many_tools",
    "unstorable" (a tool with a NUL in its description, one with a newline in its name)."""

    def __init__(self) -> None:
        self.mode = "ok"
        self.calls = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _json(self, body: Any, status: int = 200) -> None:
                payload = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def do_GET(self) -> None:
                self.send_response(405)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                message = json.loads(self.rfile.read(length) or b"{}")
                if "id" not in message:
                    self.send_response(202)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                reply = outer.answer(message)
                if reply is not None:
                    self._json(reply)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/mcp"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def answer(self, message: dict[str, Any]) -> Any:
        rid, method = message["id"], message.get("method")
        if method == "initialize":
            return {
                "jsonrpc": "2.0",
                "id": rid,
                "result": {
                    "protocolVersion": message["params"]["protocolVersion"],
                    "capabilities": {"tools": {}},
                    "serverInfo": {"name": "hostile", "version": "1"},
                },
            }
        if method == "tools/list":
            if self.mode == "many_tools":
                tools = [{**TOOL, "name": f"tool_{i}"} for i in range(10_000)]
            elif self.mode == "unstorable":
                tools = [
                    TOOL,
                    {**TOOL, "name": "nul", "description": "before\u0000after"},
                    {**TOOL, "name": "bad name\n"},
                ]
            else:
                tools = [TOOL]
            return {"jsonrpc": "2.0", "id": rid, "result": {"tools": tools}}
        if method == "tools/call":
            self.calls += 1
            return self.hostile_call(rid)
        return {"jsonrpc": "2.0", "id": rid, "error": {"code": -32601, "message": "no"}}

    def hostile_call(self, rid: Any) -> Any:
        if self.mode == "slow":
            time.sleep(30)
        if self.mode == "huge":
            text = "A" * (50 * 1024 * 1024)
            return json.dumps(
                {
                    "jsonrpc": "2.0",
                    "id": rid,
                    "result": {"content": [{"type": "text", "text": text}]},
                }
            ).encode()
        if self.mode == "malformed":
            return {"jsonrpc": "2.0", "id": rid, "result": {"content": "not a list", "isError": 7}}
        if self.mode == "not_json":
            return b"<html>this is not JSON-RPC</html>"
        return {
            "jsonrpc": "2.0",
            "id": rid,
            "result": {"content": [{"type": "text", "text": "found it"}]},
        }

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
