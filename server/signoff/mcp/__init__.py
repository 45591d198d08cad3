"""The MCP gateway, `signoff mcp-proxy`: any MCP server's tool calls, gated by signoff.

A client of signoff's API (through `signoff_client`), not of the server's internals:

- `settings`: the proxy's settings (file and flags), checked before it starts;
- `gate`: one signoff instance per MCP session, one action per tools/call, fail closed;
- `upstreams`: the MCP servers behind the proxy and the names their tools are known by;
- `proxy`: the MCP server toward the client (stdio or streamable HTTP);
- `command`: the command's flags.

docs/mcp.md describes how it behaves and what it guarantees.
"""
