"""The grpc.aio server: signoff's services, health, reflection, graceful shutdown."""

import asyncio
import logging
import re
import signal
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import WSGIServer

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import start_http_server
from sqlalchemy import text

from signoff import database_files
from signoff.api.calls import Calls
from signoff.api.servicers import ApprovalService, AuditService, ExecutionService, PolicyService
from signoff.auth.authenticators import (
    AuthConfig,
    ConsoleSettings,
    development_tokens,
    load_auth_config,
)
from signoff.auth.config import AuthConfigError, is_loopback_host
from signoff.config import ServeOptions
from signoff.policy.engine import RegoPolicy
from signoff.services import gauges, timers
from signoff.services.context import Context
from signoff.services.notifier import Notifier
from signoff.services.webhooks import EVENTS, RetryPolicy, Webhook
from signoff.store.database import Database
from signoff.store.notify import Listener
from signoff.telemetry import tracing
from signoff.v1 import (
    approval_service_pb2,
    audit_service_pb2,
    execution_service_pb2,
    policy_service_pb2,
)
from signoff.v1 import approval_service_pb2_grpc as approval_grpc
from signoff.v1 import audit_service_pb2_grpc as audit_grpc
from signoff.v1 import execution_service_pb2_grpc as execution_grpc
from signoff.v1 import policy_service_pb2_grpc as policy_grpc

if TYPE_CHECKING:
    from starlette.routing import BaseRoute

    from signoff.api import http
    from signoff.slack.app import Slack

log = logging.getLogger("signoff.server")

SIGNOFF_SERVICES = [
    execution_service_pb2.DESCRIPTOR.services_by_name["ExecutionService"].full_name,
    approval_service_pb2.DESCRIPTOR.services_by_name["ApprovalService"].full_name,
    audit_service_pb2.DESCRIPTOR.services_by_name["AuditService"].full_name,
    policy_service_pb2.DESCRIPTOR.services_by_name["PolicyService"].full_name,
]

SERVER_OPTIONS = [
    # grpcio sets SO_REUSEPORT by default: a second server on a busy port would start and
    # take half the calls. Off, the port in use stops the start (StartupError).
    ("grpc.so_reuseport", 0),
    # A reconnect storm of thousands of watchers must queue, not fail with CANCELLED.
    ("grpc.server.max_pending_requests", 20_000),
    ("grpc.server.max_pending_requests_hard_limit", 40_000),
    ("grpc.max_concurrent_streams", 100_000),
    # Idle watch streams stay alive through proxies; dead peers are noticed.
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
    ("grpc.http2.max_pings_without_data", 0),
]


# Where development mode (no --auth-config) serves HTTP unless --http-port says otherwise.
DEVELOPMENT_HTTP_PORT = 8080


class StartupError(Exception):
    """The server must not start as configured; the message says why."""


def _authentication(options: ServeOptions) -> AuthConfig:
    if options.auth_config is not None:
        try:
            return load_auth_config(options.auth_config)
        except AuthConfigError as error:  # names the file and the key
            raise StartupError(str(error)) from None
        except (OSError, ValueError, KeyError) as error:
            raise StartupError(f"auth config {options.auth_config}: {error}") from None
    if not is_loopback_host(options.host):
        raise StartupError(
            f"refusing to listen on {options.host} without --auth-config: development mode "
            "(generated tokens) is for loopback addresses only"
        )
    authenticator, shown = development_tokens()
    print("signoff development mode: tokens for this run (shown once, only hashes kept):")
    for name, token in shown.items():
        print(f"  export SIGNOFF_{name.upper()}_TOKEN={token}")
    # The console signs people in with those tokens too (a human's: admin or approver).
    return AuthConfig(authenticator, console=ConsoleSettings(token_sign_in=True))


def _serve_metrics(host: str, port: int) -> WSGIServer:
    """Prometheus /metrics on a thread of its own: a scrape never waits for the event loop."""
    try:
        httpd, _ = start_http_server(port, host)
    except OSError as error:
        raise StartupError(f"cannot serve metrics on {host}:{port}: {error}") from None
    shown = f"[{host}]" if ":" in host else host
    # Printed before the listening line, so scripts (and tests) find it with --metrics-port 0.
    print(f"signoff metrics on http://{shown}:{httpd.server_port}/metrics", flush=True)
    return httpd


def _slack(options: ServeOptions, auth: AuthConfig, ctx: Context) -> "Slack | None":
    """Interactive approvals in Slack (docs/slack.md), when the `slack` options are given."""
    if options.slack is None:
        return None
    try:
        from signoff.slack.app import Slack  # slack_sdk (the `slack` extra) only when used
    except ImportError as error:
        raise StartupError(
            f"slack needs the slack extra (pip install 'signoff[slack]'): {error}"
        ) from None

    channels = {
        hook.name: hook.channel or ""
        for hook in options.webhooks
        if hook.format == "slack_interactive"
    }
    return Slack(ctx, options.slack, auth.slack, channels)


def _notifier(
    options: ServeOptions, database: Database, slack: "Slack | None" = None
) -> Notifier | None:
    """Webhooks: each change's transaction writes its notifications to the outbox."""
    if not options.webhooks:
        return None
    hooks = [
        Webhook(
            name=hook.name,
            url=hook.url,
            secret=hook.key(),
            format=hook.format,
            tenants=frozenset(hook.tenants),
            gates=frozenset(hook.gates),
            # A Slack message follows its action through every change.
            events=frozenset(EVENTS if hook.format == "slack_interactive" else hook.events),
        )
        for hook in options.webhooks
    ]
    retry = RetryPolicy(
        initial=options.webhook_retry_initial,
        maximum=options.webhook_retry_max,
        max_attempts=options.webhook_max_attempts,
        timeout=options.webhook_timeout,
    )
    senders = {"slack_interactive": slack.sender.send} if slack is not None else {}
    notifier = Notifier(
        database, hooks, retry, retention=options.webhook_retention, senders=senders
    )
    database.before_commit.append(notifier.before_commit)
    log.info("webhooks: %s", ", ".join(hook.name for hook in hooks))
    return notifier


def _http_listener(
    options: ServeOptions,
    auth: AuthConfig,
    servicers: list[Any],
    database: Database,
    calls: Calls,
    more: Sequence["BaseRoute"] = (),
    shared: bool = False,
) -> "http.HttpListener | None":
    """The HTTP listener (Connect, health, and `more` routes) if one is asked for, or
    development mode's."""
    port = options.http_port
    if port is None:
        port = DEVELOPMENT_HTTP_PORT if options.auth_config is None else "off"
    if port == "off":
        if more:
            raise StartupError("slack needs the HTTP listener (--http-port) for its button clicks")
        return None
    # Imported here: a server without the HTTP listener loads neither it nor the console.
    from signoff.api import http

    host = options.http_host or options.host
    routes = list(more)  # Slack's callbacks, when configured
    if auth.console is not None:  # the approvers' console at / (signoff.web)
        from signoff.web.console import console_routes

        routes += console_routes(auth.console, auth.authenticator, not is_loopback_host(host))
    readiness = http.Readiness(database)
    app = http.application(
        servicers,
        auth.authenticator,
        readiness,
        options.http_max_request_bytes,
        more=routes,
        calls=calls,
    )
    if options.auth_config is None and not is_loopback_host(host):
        raise StartupError(
            f"refusing to serve HTTP on {host} without --auth-config: development mode "
            "(generated tokens) is for loopback addresses only"
        )
    try:
        return http.HttpListener(
            app, host, int(port), options.shutdown_grace, readiness, reuse_port=shared
        )
    except OSError as error:
        raise StartupError(str(error)) from None


async def serve(options: ServeOptions, worker: int | None = None) -> None:
    """Runs until SIGINT or SIGTERM, then drains and stops. One server per SQLite file.
    worker: this process is worker `worker` of `signoff serve --workers N` (api/workers.py):
    the supervisor migrated the database, and the ports are shared (SO_REUSEPORT)."""
    try:
        release = database_files.hold(options.database_url)
    except database_files.DatabaseFileError as error:
        raise StartupError(str(error)) from None
    try:
        await _serve(options, worker)
    finally:
        release()


def _migration_heads() -> set[str] | None:
    """The head revisions of signoff's migrations, read from their files without Alembic;
    None when a file does not say plainly."""
    import signoff.store

    heads: set[str] = set()
    parents: set[str] = set()
    for path in (Path(signoff.store.__file__).parent / "migrations" / "versions").glob("*.py"):
        text = path.read_text()
        revision = _REVISION.search(text)
        down = _DOWN_REVISION.search(text)
        if revision is None or down is None:
            return None
        heads.add(revision[1])
        parents.update(re.findall(r"[\"']([^\"']+)[\"']", down[1]))
    return (heads - parents) or None


_REVISION = re.compile(r"^revision\s*(?::[^=\n]*)?=\s*[\"']([^\"']+)[\"']", re.M)
_SCHEMA_VERSION = text("SELECT version_num FROM alembic_version")
_DOWN_REVISION = re.compile(r"^down_revision\s*(?::[^=\n]*)?=\s*(.+)$", re.M)


async def migrate_if_needed(database: Database) -> None:
    """Migrates unless the schema is already at the newest revision. A current schema is
    told without Alembic, on the store's own connections, so a serving process never
    imports the migration machinery nor makes a SQLAlchemy engine (about 9 MB of resident
    memory) unless it migrates."""
    heads = _migration_heads()
    if heads is not None:
        try:
            async with database.read() as tx:
                result = await tx.connection.execute(_SCHEMA_VERSION)
                current = set(result.scalars().all())
        except Exception:  # noqa: BLE001 - no table, no database: migrate says what is wrong
            current = set()
        if current == heads:
            return
    from signoff.store.migrate import migrate

    await migrate(database)


def _server_options(shared: bool) -> list[tuple[str, int]]:
    if not shared:
        return SERVER_OPTIONS
    return [(key, 1 if key == "grpc.so_reuseport" else value) for key, value in SERVER_OPTIONS]


async def _serve(options: ServeOptions, worker: int | None = None) -> None:
    policy = RegoPolicy.load(options.policy)  # fails before anything listens
    try:
        tracing.setup()  # only when the OTEL_* variables ask for it
    except tracing.TracingConfigError as error:
        raise StartupError(str(error)) from None
    auth = _authentication(options)
    database = Database(options.database_url)
    if worker is None:  # workers start on a database their supervisor migrated
        await migrate_if_needed(database)
    ctx = Context(
        db=database,
        policy=policy,
        bookmark_interval=options.bookmark_interval,
        grant_ttl=timedelta(seconds=options.grant_ttl),
    )
    slack = _slack(options, auth, ctx)
    notifier = _notifier(options, database, slack)

    metrics_server = None
    if options.metrics_port is not None:
        metrics_server = _serve_metrics(options.metrics_host or options.host, options.metrics_port)

    # One call layer for both listeners (calls.py): span, metrics and log line,
    # authentication and the rules table, and the error table, once per call.
    calls = Calls(auth.authenticator)
    shared = worker is not None  # the ports are the workers' together (SO_REUSEPORT)
    server = grpc.aio.server(options=_server_options(shared), interceptors=[calls.interceptor()])
    # One servicer per service, for both listeners.
    execution, approval = ExecutionService(ctx), ApprovalService(ctx)
    audit, policy_servicer = AuditService(ctx), PolicyService(ctx)
    servicers = [execution, approval, audit, policy_servicer]
    execution_grpc.add_ExecutionServiceServicer_to_server(execution, server)
    approval_grpc.add_ApprovalServiceServicer_to_server(approval, server)
    audit_grpc.add_AuditServiceServicer_to_server(audit, server)
    policy_grpc.add_PolicyServiceServicer_to_server(policy_servicer, server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        [*SIGNOFF_SERVICES, health.SERVICE_NAME, reflection.SERVICE_NAME], server
    )
    address = f"{options.host}:{options.port}"
    try:
        if auth.tls is None:
            port = server.add_insecure_port(address)
        else:
            # mTLS: every client presents a certificate from client_ca; its SPIFFE ID names it.
            credentials = grpc.ssl_server_credentials(
                [(auth.tls.server_key.read_bytes(), auth.tls.server_cert.read_bytes())],
                root_certificates=auth.tls.client_ca.read_bytes(),
                require_client_auth=True,
            )
            port = server.add_secure_port(address, credentials)
    except RuntimeError:  # gRPC's own message points at GRPC_VERBOSITY, not at the cause
        port = 0
    if port == 0:
        raise StartupError(f"cannot listen on {address}: in use, or not an address of this host")
    http_listener = _http_listener(
        options,
        auth,
        servicers,
        database,
        calls,
        slack.actions.routes() if slack else (),
        shared=shared,
    )
    await server.start()
    for name in ["", *SIGNOFF_SERVICES]:
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    if http_listener is not None:
        await http_listener.start()
        # Printed before the listening line, so scripts (and tests) find it with port 0.
        print(f"signoff HTTP (Connect, /healthz, /readyz) on {http_listener.url}", flush=True)
        if auth.console is not None:
            print(f"signoff console on {http_listener.url}/", flush=True)
    # The one line scripts and tests read to find the port (useful with --port 0).
    print(f"signoff listening on {options.host}:{port}", flush=True)
    if worker is not None:
        log.info("worker %d of %d", worker, options.workers)
    # The database as the operator names it: the engine's driver (aiosqlite) serves only
    # migrations, not the server's calls.
    shown = database.url.set(drivername=database.dialect)
    log.info("database %s", shown.render_as_string(hide_password=True))
    log.info("policy %s %s (%s)", policy.bundle.bundle_id, policy.bundle.version, options.policy)

    stop = asyncio.Event()
    timer_loop = asyncio.create_task(timers.run(ctx, options.timer_interval, stop))
    background = [timer_loop]
    if notifier is not None:
        background.append(asyncio.create_task(notifier.run(stop)))
    if metrics_server is not None:
        background.append(asyncio.create_task(gauges.run(ctx, options.metrics_interval, stop)))
    if database.dialect == "postgresql":
        # Replicas share the database: hear what the others commit. Syncs at least twice per
        # bookmark interval, so idle watchers bookmark without reading the database.
        sync_every = min(1.0, options.bookmark_interval / 2)
        listener = Listener(database.url, database.hub, sync_every=sync_every)
        background.append(asyncio.create_task(listener.run(stop)))
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()

    log.info("shutting down: health NOT_SERVING, draining for %ss", options.shutdown_grace)
    await health_servicer.enter_graceful_shutdown()
    if http_listener is not None and http_listener.readiness is not None:
        http_listener.readiness.draining = True  # /readyz answers 503
    database.hub.close()  # watch streams end now with UNAVAILABLE; clients resume elsewhere
    await asyncio.gather(
        server.stop(options.shutdown_grace), *([http_listener.stop()] if http_listener else [])
    )
    if slack is not None:
        await slack.close(options.shutdown_grace)  # the votes of clicks already answered
    await asyncio.gather(*background)
    await asyncio.to_thread(tracing.shutdown)  # exports the spans still buffered
    if metrics_server is not None:
        metrics_server.shutdown()
    await database.close()
    print("signoff stopped", flush=True)
