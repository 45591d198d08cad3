"""A small MCP server for the gateway tests: a read tool, a destructive tool, a slow tool,
a resource and a prompt.

Every execution of a tool appends one JSON line (tool, arguments) to the file given by
`--log`, so tests count what the upstream really ran. Runs over stdio, or over streamable
HTTP with `--http PORT`.
"""

import argparse
import asyncio
import json
from pathlib import Path
from typing import Any

from mcp.server.mcpserver import MCPServer
from mcp_types import ToolAnnotations

server = MCPServer("upstream")
LOG: Path | None = None


def _ran(tool: str, arguments: dict[str, Any]) -> None:
    if LOG is not None:
        with LOG.open("a") as out:
            out.write(json.dumps({"tool": tool, "arguments": arguments}) + "\n")


def read_note(name: str) -> str:
    """Reads a note."""
    _ran("read_note", {"name": name})
    return f"note {name}: hello"


def delete_note(name: str, reason: str = "") -> str:
    """Deletes a note."""
    _ran("delete_note", {"name": name, "reason": reason})
    return f"deleted {name}"


async def slow_echo(text: str, seconds: float = 0.5) -> str:
    """Echoes after a while."""
    await asyncio.sleep(seconds)
    _ran("slow_echo", {"text": text, "seconds": seconds})
    return text


@server.resource("note://readme")
def readme() -> str:
    """A resource, passed through ungated."""
    return "the upstream's readme"


@server.prompt()
def summarize(name: str) -> str:
    """A prompt, passed through ungated."""
    return f"Summarize note {name}."


server.add_tool(read_note, annotations=ToolAnnotations(read_only_hint=True))
server.add_tool(delete_note, annotations=ToolAnnotations(destructive_hint=True))
server.add_tool(slow_echo, annotations=ToolAnnotations(open_world_hint=True))


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--http", type=int, default=0, help="serve streamable HTTP on this port")
    parser.add_argument("--log", type=Path, default=None, help="where executions are counted")
    args = parser.parse_args()
    LOG = args.log
    if args.http:
        server.run("streamable-http", host="127.0.0.1", port=args.http)
    else:
        server.run()
