"""`signoff serve | migrate | audit | policy | pending | approve | reject | watch | instances |
mcp-proxy`.

serve, migrate and audit work on the database, and policy test on a bundle directory; the
client commands (pending, approve, reject, watch, instances: client_cli.py) talk to a
running server through the SDK, so they work against any server.
"""

import argparse
import asyncio
import json
import logging
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TextIO, TypeVar

import grpc

from signoff import client_cli
from signoff.config import add_flags
from signoff_client.errors import SignoffError, from_rpc_error

T = TypeVar("T")


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
    supervisor = options.workers > 1 and args.worker is None
    if supervisor:
        from signoff.api import workers

        problem = workers.refusal(options)
        if problem is not None:
            print(f"signoff: {problem}", file=sys.stderr)
            return 2
    _configure_logging(options.log_level, options.log_format, background=True)
    # From here on, what stops the server is a log line (JSON by default), not bare text.
    log = logging.getLogger("signoff")
    if supervisor:
        return _supervise(args, options)
    if args.worker is not None:  # every line of a worker of `serve --workers` says which
        worker = args.worker

        def tag(record: logging.LogRecord) -> bool:
            record.worker = worker
            return True

        for handler in logging.getLogger().handlers:
            handler.addFilter(tag)
    try:
        asyncio.run(serve(options, args.worker))
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


def _supervise(args: argparse.Namespace, options: Any) -> int:
    """`serve --workers N`: migrates once, then runs and watches the workers (api/workers.py)."""
    from signoff.api import workers
    from signoff.store.migrate import migrate

    try:
        return workers.supervise(
            options,
            args.argv,
            lambda: _on_database(options.database_url, migrate, reads=False),
        )
    except CommandError as error:  # the database cannot be migrated
        logging.getLogger("signoff").critical("%s", error)
        return 2


class CommandError(Exception):
    """A command cannot do what it was asked; main() prints the message as one line, exit 2."""


def _shown(url: str) -> str:
    """A database URL as it may be printed: without its password."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url


def _on_database(url: str, work: Callable[[Any], Awaitable[T]], *, reads: bool = True) -> T:
    """Runs `work(database)` on the database at `url`; a database that is missing (a command
    that only reads never creates one) or does not answer is a CommandError."""
    import sqlite3

    import psycopg
    from sqlalchemy.exc import ArgumentError, DBAPIError, SQLAlchemyError

    from signoff.database_files import DatabaseFileError, require_existing
    from signoff.domain.errors import Unavailable
    from signoff.store.database import Database

    # SQLAlchemy's (migrations) or the driver's own (the store runs on the drivers).
    database_errors = (SQLAlchemyError, sqlite3.Error, psycopg.Error)
    try:
        if reads:
            require_existing(url)
    except DatabaseFileError as error:
        raise CommandError(str(error)) from None

    async def run() -> T:
        database = Database(url)
        try:
            return await work(database)
        finally:
            await database.close()

    def first_line(error: BaseException) -> str:
        cause = error.orig if isinstance(error, DBAPIError) else error
        return (str(cause).strip().splitlines() or [type(cause).__name__])[0]

    # The server's outage line would say "calls answer UNAVAILABLE": the error below says it.
    logging.getLogger("signoff.database").setLevel(logging.ERROR)
    try:
        return asyncio.run(run())
    except ArgumentError as error:
        raise CommandError(f"--database-url {url}: {error}") from None
    except database_errors as error:
        raise CommandError(f"database {_shown(url)}: {first_line(error)}") from None
    except Unavailable as error:
        # Raised from the driver's error, which says why (connection refused, say).
        cause = error.__context__
        why = first_line(cause) if isinstance(cause, database_errors) else error.message
        raise CommandError(f"database {_shown(url)} does not answer: {why}") from None
    except OSError as error:
        raise CommandError(f"database {_shown(url)}: {error}") from None


def _output(path: str) -> TextIO:
    """--output FILE, or standard output."""
    if not path:
        return sys.stdout
    try:
        return open(path, "w")
    except OSError as error:
        raise CommandError(f"--output {path}: {error.strerror}") from None


def _audit_export(args: argparse.Namespace) -> int:
    from datetime import datetime

    from signoff.services.chain import export_lines

    def moment(flag: str, text: str) -> datetime | None:
        try:
            return datetime.fromisoformat(text) if text else None
        except ValueError:
            raise CommandError(f"{flag} {text!r}: not an ISO 8601 time") from None

    since, until = moment("--since", args.since), moment("--until", args.until)

    async def run(database: Any) -> int:
        count = 0
        output = _output(args.output)
        try:
            async for line in export_lines(database, args.tenant, args.instance, since, until):
                output.write(json.dumps(line, sort_keys=True) + "\n")
                count += line["kind"] == "instance"
        finally:
            if output is not sys.stdout:
                output.close()
        return count

    count = _on_database(args.database_url, run)
    print(f"exported {count} instances", file=sys.stderr)
    return 0


def _read_export(path: str) -> list[dict[str, Any]]:
    """The lines of an `audit export` file, each a JSON object."""
    try:
        with open(path) as lines:
            text = lines.read()
    except OSError as error:
        raise CommandError(f"{path}: {error.strerror}") from None
    except UnicodeDecodeError:
        raise CommandError(f"{path}: not an export of `signoff audit export` (not text)") from None
    parsed = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as error:
            raise CommandError(
                f"{path} line {number}: not an export of `signoff audit export` "
                f"(not JSON: {error.msg})"
            ) from None
        if not isinstance(value, dict):
            raise CommandError(
                f"{path} line {number}: not an export of `signoff audit export` "
                "(a line is a JSON object)"
            )
        parsed.append(value)
    return parsed


def _read_anchor(path: str) -> dict[str, Any]:
    try:
        with open(path) as saved:
            anchor = json.load(saved)
    except OSError as error:
        raise CommandError(f"--against {path}: {error.strerror}") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        anchor = None
    if not isinstance(anchor, dict):
        raise CommandError(f"--against {path}: not an anchor of `signoff audit anchor`")
    return anchor


def _audit_verify(args: argparse.Namespace) -> int:
    from signoff.services.chain import export_lines, verify_export

    async def exported(database: Any) -> list[dict[str, Any]]:
        return [line async for line in export_lines(database, args.tenant)]

    if bool(args.file) == bool(args.database_url):
        raise CommandError("give an export FILE or --database-url")
    against = _read_anchor(args.against) if args.against else None
    if args.file:
        parsed = _read_export(args.file)
    else:
        parsed = _on_database(args.database_url, exported)
    try:
        instances, events, broken = verify_export(parsed, against)
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        # Valid JSON lines whose fields are missing or of the wrong type: altered, or never
        # an export.
        print(f"BROKEN: export: a line lacks a field or has one of the wrong type ({error!r})")
        return 1
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

    async def run(database: Any) -> dict[str, Any]:
        return await anchor_heads(database, args.tenant, datetime.now(UTC))

    saved = _on_database(args.database_url, run)
    text = json.dumps(saved, sort_keys=True) + "\n"
    output = _output(args.output)
    try:
        output.write(text)
    finally:
        if output is not sys.stdout:
            output.close()
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
    from signoff.store.migrate import migrate

    _on_database(args.database_url, migrate, reads=False)
    print("database schema is current")
    return 0


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("signoff")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "(not installed)"


def _help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="signoff",
        description="signoff, the execution control plane for AI agents.",
        epilog="serve, migrate and audit work on the database (--database-url); policy test "
        "reads a bundle directory; the other commands talk to a running server over gRPC "
        "(--target, --token).",
    )
    parser.add_argument("--version", action="version", version=f"signoff {_version()}")
    # A command without its subcommand (or none at all) prints its help.
    parser.set_defaults(run=lambda args: _help(parser))
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    database = os.environ.get("SIGNOFF_DATABASE_URL", "sqlite:///signoff.db")

    serve = commands.add_parser(
        "serve",
        help="run the gRPC server",
        description="Options come from --config FILE, then SIGNOFF_* variables, then flags.",
    )
    add_flags(serve)
    # Set by `serve --workers N` on the workers it starts (api/workers.py), never by hand.
    serve.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    serve.set_defaults(run=_serve)

    audit = commands.add_parser("audit", help="export the hash-chained trail and verify it")
    audit.set_defaults(run=lambda args: _help(audit))
    audit_commands = audit.add_subparsers(dest="audit_command", metavar="COMMAND")
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
    policy.set_defaults(run=lambda args: _help(policy))
    policy_commands = policy.add_subparsers(dest="policy_command", metavar="COMMAND")
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


def _configure_logging(level: str, log_format: str = "text", background: bool = False) -> None:
    """Standard error, as text (operator commands) or one JSON object per line (serve).
    background: written by a thread of its own (serve: the event loop never waits on it)."""
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
    handler: logging.Handler
    if background:
        from signoff.telemetry.logs import BackgroundHandler

        handler = BackgroundHandler(sys.stderr)
    else:
        handler = logging.StreamHandler(sys.stderr)
    formatter: logging.Formatter
    if log_format == "json":
        from signoff.telemetry.logs import JsonFormatter

        # Fields a line's `extra` adds (the RPC and transition lines) become JSON keys too.
        formatter = JsonFormatter()
        logging.captureWarnings(True)  # Python warnings too, not as a bare stderr line
    else:
        formatter = logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s")
    handler.setFormatter(formatter)
    logging.basicConfig(level=level, handlers=[handler], force=True)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # serve --workers starts it again
    _configure_logging("WARNING")
    try:
        return int(args.run(args))
    except grpc.RpcError as error:
        print(f"signoff: {from_rpc_error(error)}", file=sys.stderr)
        return 1
    except SignoffError as error:
        print(f"signoff: {error}", file=sys.stderr)
        return 1
    except CommandError as error:
        words = ["signoff", args.command, getattr(args, f"{args.command}_command", "")]
        print(f"{' '.join(filter(None, words))}: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
