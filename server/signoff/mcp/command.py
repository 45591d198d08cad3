"""`signoff mcp-proxy`: its flags, and how they become settings and a running proxy.

    signoff mcp-proxy --name fs -- npx -y @modelcontextprotocol/server-filesystem /srv/data
    signoff mcp-proxy --name search --upstream-url http://127.0.0.1:8000/mcp --listen 127.0.0.1:7331
    signoff mcp-proxy --config mcp-proxy.yaml

Only argparse is imported here, so `signoff --help` does not load the MCP SDK.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import grpc

__all__ = ["add_arguments", "main"]

RISK_CLASSES = ("READ_ONLY", "LOCAL_WRITE", "NETWORK", "DELEGATED", "DESTRUCTIVE")
# Flags that fill the InvokeAgent envelope, and the envelope field each one sets.
ENVELOPE_FLAGS = {
    "tenant": "tenant_id",
    "agent_id": "agent_id",
    "user_id": "user_id",
    "intent": "intent",
    "workflow_id": "workflow_id",
    "workflow_version": "workflow_version",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default="", help="YAML settings file (see docs/mcp.md)")
    parser.add_argument("--name", default="", help="the upstream's name: signoff sees NAME.TOOL")
    parser.add_argument(
        "--upstream-url", default="", help="streamable HTTP upstream, not a command"
    )
    parser.add_argument("--listen", default=None, help="HOST:PORT: serve streamable HTTP at /mcp")
    parser.add_argument(
        "--session-key",
        default=os.environ.get("SIGNOFF_MCP_SESSION_KEY") or None,
        help="names the signoff instance; a restarted proxy with the same key resumes its "
        "waiting calls (default: derived from the upstreams and the working directory)",
    )
    for flag in ENVELOPE_FLAGS:
        parser.add_argument(f"--{flag.replace('_', '-')}", default=None, help="envelope field")
    parser.add_argument("--default-risk-class", choices=RISK_CLASSES, default=None)
    parser.add_argument(
        "--risk",
        action="append",
        default=[],
        metavar="TOOL=CLASS",
        help="risk class of one tool of the upstream, over its annotations (repeatable)",
    )
    parser.add_argument("--progress-interval", type=float, default=None, help="seconds")
    parser.add_argument(
        "--hide-denied",
        action="store_true",
        default=None,
        help="leave out of tools/list the tools policy denies when called without arguments",
    )
    parser.add_argument("upstream_command", nargs="*", help="after --: the upstream command")


def _upstream(args: argparse.Namespace) -> dict[str, Any] | None:
    """The upstream the flags describe, if any."""
    if not args.upstream_command and not args.upstream_url:
        if args.risk or args.name:
            raise ValueError("--name and --risk need an upstream: -- COMMAND or --upstream-url")
        return None
    risks: dict[str, str] = {}
    for item in args.risk:
        tool, _, risk = item.partition("=")
        if not tool or risk not in RISK_CLASSES:
            raise ValueError(f"--risk {item!r}: expected TOOL=CLASS, CLASS one of {RISK_CLASSES}")
        risks[tool] = risk
    upstream: dict[str, Any] = {"name": args.name or "mcp", "risk_classes": risks}
    if args.upstream_command:
        upstream["command"] = list(args.upstream_command)
    if args.upstream_url:
        upstream["url"] = args.upstream_url
    return upstream


def _flags(args: argparse.Namespace) -> dict[str, Any]:
    flags: dict[str, Any] = {}
    for name in ("listen", "session_key", "default_risk_class", "progress_interval", "hide_denied"):
        if getattr(args, name) is not None:
            flags[name] = getattr(args, name)
    envelope = {
        field: getattr(args, flag)
        for flag, field in ENVELOPE_FLAGS.items()
        if getattr(args, flag) is not None
    }
    if envelope:
        flags["envelope"] = envelope
    upstream = _upstream(args)
    if upstream is not None:
        flags["upstreams"] = [upstream]
    return flags


def main(args: argparse.Namespace, credentials: grpc.ChannelCredentials | None) -> int:
    """Runs the proxy until the client leaves; 2 for unusable settings."""
    import asyncio

    from signoff.mcp.settings import ConfigError, load

    try:
        settings = load(Path(args.config) if args.config else None, _flags(args))
    except (ConfigError, ValueError) as error:
        print(f"signoff mcp-proxy: {error}", file=sys.stderr)
        return 2
    asyncio.run(_run(settings, args.target, args.token or None, credentials))
    return 0


async def _run(
    settings: Any, target: str, token: str | None, credentials: grpc.ChannelCredentials | None
) -> None:
    from signoff.mcp.proxy import run
    from signoff_client.sdk import AsyncSignoff

    async with AsyncSignoff.connect(target, token=token, credentials=credentials) as client:
        await run(settings, client)
