"""Real server processes over loopback gRPC and HTTP, real clients, a real browser, real MCP
clients and servers, and the command line."""
