"""`signoff serve | migrate | pending | approve | reject | watch | instances | mcp-proxy`.

serve, migrate, audit and policy work on the database or on files; the client commands
(pending, approve, reject, watch, instances: client_cli.py) talk to a running server
through the SDK, so they work against any server.
"""

import argparse
import asyncio
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import grpc

from signoff import client_cli
from signoff.config import add_flags
from signoff_client.errors import SignoffError, from_rpc_error


def _serve(args: argparse.Namespace) -> int:
    from signoff.api.server import StartupError, serve
    from signoff.config import ConfigError, ServeOptions, load_options
    from signoff.policy.bundle import BundleError

    flags = {name: value for name, value in vars(args).items() if name in ServeOptions.model_fields}
    try:
        options = load_options(Path(args.config) if args.config else None, flags)
    except ConfigError as error:
        print(f"signoff: {error}", file=sys.stderr)
        return 2
    _configure_logging(options.log_level, options.log_format)
    # From here on, what stops the server is a log line (JSON by default), not bare text.
    log = logging.getLogger("signoff")
    try:
        asyncio.run(serve(options))
    except BundleError as error:
        log.critical("policy bundle: %s", error)
        return 2
    except StartupError as error:
        log.critical("%s", error)
        return 2
    except Exception:
        log.critical("signoff stopped on an unexpected error", exc_info=True)
        return 1
    return 0


def _audit_export(args: argparse.Namespace) -> int:
    from datetime import datetime

    from signoff.services.chain import export_lines
    from signoff.store.database import Database

    def moment(text: str) -> datetime | None:
        return datetime.fromisoformat(text) if text else None

    async def run() -> int:
        database = Database(args.database_url)
        count = 0
        output = open(args.output, "w") if args.output else sys.stdout
        try:
            async for line in export_lines(
                database, args.tenant, args.instance, moment(args.since), moment(args.until)
            ):
                output.write(json.dumps(line, sort_keys=True) + "\n")
                count += line["kind"] == "instance"
        finally:
            if output is not sys.stdout:
                output.close()
            await database.close()
        print(f"exported {count} instances", file=sys.stderr)
        return 0

    return asyncio.run(run())


def _audit_verify(args: argparse.Namespace) -> int:
    from signoff.services.chain import export_lines, verify_export
    from signoff.store.database import Database

    async def exported() -> list[dict[str, Any]]:
        database = Database(args.database_url)
        try:
            return [line async for line in export_lines(database, args.tenant)]
        finally:
            await database.close()

    if bool(args.file) == bool(args.database_url):
        print("signoff audit verify: give an export FILE or --database-url", file=sys.stderr)
        return 2
    if args.file:
        with open(args.file) as lines:
            parsed = [json.loads(line) for line in lines if line.strip()]
    else:
        parsed = asyncio.run(exported())
    against = None
    if args.against:
        with open(args.against) as saved:
            against = json.load(saved)
    instances, events, broken = verify_export(parsed, against)
    for each in broken:
        where = f"instance {each.instance_id}" if each.instance_id else "export"
        print(f"BROKEN: {where} at revision {each.revision}: {each.problem}")
    if broken:
        return 1
    print(f"intact: {instances} instances, {events} events")
    return 0


def _audit_anchor(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from signoff.services.chain import anchor_heads
    from signoff.store.database import Database

    async def run() -> dict[str, Any]:
        database = Database(args.database_url)
        try:
            return await anchor_heads(database, args.tenant, datetime.now(UTC))
        finally:
            await database.close()

    saved = asyncio.run(run())
    text = json.dumps(saved, sort_keys=True) + "\n"
    if args.output:
        with open(args.output, "w") as output:
            output.write(text)
    else:
        sys.stdout.write(text)
    print(
        f"anchor of tenant {saved['tenant']} at {saved['time']}: {saved['instances']} instances, "
        f"{saved['events']} events, digest {saved['digest']}",
        file=sys.stderr,
    )
    return 0


def _policy_test(args: argparse.Namespace) -> int:
    from signoff.policy.testing import run_bundle_tests

    failures = run_bundle_tests(Path(args.directory), print)
    return 1 if failures else 0


def _migrate(args: argparse.Namespace) -> int:
    from signoff.store.database import Database
    from signoff.store.migrate import migrate

    async def run() -> None:
        database = Database(args.database_url)
        try:
            await migrate(database)
        finally:
            await database.close()

    asyncio.run(run())
    print("database schema is current")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="signoff", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    database = os.environ.get("SIGNOFF_DATABASE_URL", "sqlite:///signoff.db")

    serve = commands.add_parser(
        "serve",
        help="run the gRPC server",
        description="Options come from --config FILE, then SIGNOFF_* variables, then flags.",
    )
    add_flags(serve)
    serve.set_defaults(run=_serve)

    audit = commands.add_parser("audit", help="export the hash-chained trail and verify it")
    audit_commands = audit.add_subparsers(dest="audit_command", required=True)
    export = audit_commands.add_parser(
        "export", help="write instances with their events and records as JSONL (reads the database)"
    )
    export.add_argument("--database-url", default=database)
    export.add_argument("--tenant", default="")
    export.add_argument("--instance", default="")
    export.add_argument("--since", default="", help="instances created at or after (ISO 8601)")
    export.add_argument("--until", default="", help="instances created before (ISO 8601)")
    export.add_argument("--output", default="", help="file (default: standard output)")
    export.set_defaults(run=_audit_export)
    verify = audit_commands.add_parser(
        "verify",
        help="check an export offline, with no server, or the database directly",
        description="Names every break: events, records, instance and action rows, the "
        "manifest, and with --against, chains that no longer extend an anchor.",
    )
    verify.add_argument("file", nargs="?", default="", help="an export of `audit export`")
    verify.add_argument("--database-url", default="", help="verify the database instead")
    verify.add_argument("--tenant", default="", help="with --database-url: one tenant")
    verify.add_argument("--against", default="", help="an anchor of `audit anchor`")
    verify.set_defaults(run=_audit_verify)
    anchor = audit_commands.add_parser(
        "anchor",
        help="print the chain heads (reads the database) to keep where its owners cannot write",
    )
    anchor.add_argument("--database-url", default=database)
    anchor.add_argument("--tenant", default="", help="one tenant (default: all)")
    anchor.add_argument("--output", default="", help="file (default: standard output)")
    anchor.set_defaults(run=_audit_anchor)

    policy = commands.add_parser("policy", help="work with policy bundles")
    policy_commands = policy.add_subparsers(dest="policy_command", required=True)
    policy_test = policy_commands.add_parser("test", help="run a bundle's tests/*.yaml cases")
    policy_test.add_argument("directory")
    policy_test.set_defaults(run=_policy_test)

    migrate = commands.add_parser("migrate", help="bring the database schema up to date")
    migrate.add_argument("--database-url", default=database)
    migrate.set_defaults(run=_migrate)

    target = client_cli.target_flags()
    client_cli.add_commands(commands, target)

    from signoff.mcp import command as mcp_command

    mcp_proxy = commands.add_parser(
        "mcp-proxy",
        parents=[target],
        help="gate an MCP server's tool calls through signoff (docs/mcp.md)",
        description="signoff mcp-proxy [flags] -- UPSTREAM COMMAND...",
    )
    mcp_command.add_arguments(mcp_proxy)
    mcp_proxy.set_defaults(run=lambda args: mcp_command.main(args, client_cli.credentials(args)))
    return parser


def _configure_logging(level: str, log_format: str = "text") -> None:
    """Standard error, as text (operator commands) or one JSON object per line (serve)."""
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
    handler = logging.StreamHandler(sys.stderr)
    formatter: logging.Formatter
    if log_format == "json":
        from pythonjsonlogger.json import JsonFormatter

        # Fields a line's `extra` adds (the RPC and transition lines) become JSON keys too.
        formatter = JsonFormatter(
            "%(levelname)s %(name)s %(message)s",
            rename_fields={"levelname": "level", "name": "logger"},
            timestamp="time",
        )
        logging.captureWarnings(True)  # Python warnings too, not as a bare stderr line
    else:
        formatter = logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s")
    handler.setFormatter(formatter)
    logging.basicConfig(level=level, handlers=[handler], force=True)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    _configure_logging("WARNING")
    try:
        return int(args.run(args))
    except grpc.RpcError as error:
        print(f"signoff: {from_rpc_error(error)}", file=sys.stderr)
        return 1
    except SignoffError as error:
        print(f"signoff: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
