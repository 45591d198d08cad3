"""The HTTP listener: every signoff service over the Connect protocol (JSON or binary, unary
calls and server streams), and /healthz and /readyz for load balancers.

It is one ASGI application (Starlette, so that more routes can be mounted beside the
services), served by uvicorn in the gRPC server's event loop and stopped with it. The
routes of the services are the generated Connect applications (signoff/v1/*_connect.py,
from scripts/generate); each of their methods runs the gRPC servicer's own method
(servicers.py) through the same call layer as gRPC (calls.py): the span, metrics and log
line, authentication and the rules table (decoding the request only once the caller is
known), and the one error table. Its errors are the gRPC status of that table, carried as
a Connect error: the same code, message, ErrorInfo and BadRequest.
"""

import asyncio
import base64
import contextlib
import json
import logging
import math
import re
import socket
from collections import Counter
from collections.abc import Callable, Sequence
from types import SimpleNamespace
from typing import Any, NoReturn

import grpc
import uvicorn
from connectrpc.code import Code
from connectrpc.errors import ConnectError, ErrorDetail
from connectrpc.request import RequestContext
from connectrpc.server import ConnectASGIApplication
from google.protobuf import json_format, message_factory
from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor
from google.protobuf.message import Message
from google.rpc import code_pb2, status_pb2
from protobuf.wkt import Any as AnyDetail
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.types import Message as AsgiMessage

from signoff.api.calls import Calls, Method
from signoff.api.errors import to_status
from signoff.auth.authenticators import Authenticator
from signoff.domain.errors import (
    ErrorReason,
    FieldViolation,
    InvalidArgument,
    ResourceExhausted,
    SignoffError,
)
from signoff.store.database import Database
from signoff.v1 import approval_service_connect as approval_connect
from signoff.v1 import approval_service_pb2 as approval_pb
from signoff.v1 import approval_service_pb2_grpc as approval_grpc
from signoff.v1 import audit_service_connect as audit_connect
from signoff.v1 import audit_service_pb2 as audit_pb
from signoff.v1 import audit_service_pb2_grpc as audit_grpc
from signoff.v1 import execution_service_connect as execution_connect
from signoff.v1 import execution_service_pb2 as execution_pb
from signoff.v1 import execution_service_pb2_grpc as execution_grpc
from signoff.v1 import policy_service_connect as policy_connect
from signoff.v1 import policy_service_pb2 as policy_pb
from signoff.v1 import policy_service_pb2_grpc as policy_grpc

log = logging.getLogger("signoff.http")

# Each servicer's generated gRPC base class names its service, and the generated Connect
# protocol and application that serve it over HTTP.
_GENERATED: dict[type, tuple[ServiceDescriptor, type, Callable[..., ConnectASGIApplication]]] = {
    getattr(grpc_module, f"{name}Servicer"): (
        pb_module.DESCRIPTOR.services_by_name[name],
        getattr(connect_module, name),
        getattr(connect_module, f"{name}ASGIApplication"),
    )
    for name, pb_module, grpc_module, connect_module in [
        ("ExecutionService", execution_pb, execution_grpc, execution_connect),
        ("ApprovalService", approval_pb, approval_grpc, approval_connect),
        ("AuditService", audit_pb, audit_grpc, audit_connect),
        ("PolicyService", policy_pb, policy_grpc, policy_connect),
    ]
}

# gRPC status codes (google.rpc.Code numbers) as Connect codes: the same names, but for
# CANCELLED, which Connect spells CANCELED.
_CODES = {
    code.value[0]: Code.CANCELED if code is grpc.StatusCode.CANCELLED else Code(code.name.lower())
    for code in grpc.StatusCode
    if code is not grpc.StatusCode.OK
}
_DETAILS_KEY = "grpc-status-details-bin"
# A request body that cannot be decoded is this field's violation (as over gRPC).
BODY = "request"
# How long /readyz waits for the database before it answers 503.
READY_TIMEOUT = 2.0


class RequestTooLarge(ResourceExhausted):
    def __init__(self, limit: int) -> None:
        super().__init__(
            ErrorReason.REQUEST_TOO_LARGE,
            f"the request body is larger than {limit} bytes (http_max_request_bytes)",
            metadata={"limit_bytes": str(limit)},
        )


def _rich_status(status: grpc.Status) -> status_pb2.Status:
    """The google.rpc.Status a gRPC client would read from the status's trailers."""
    for key, value in status.trailing_metadata or ():
        if key == _DETAILS_KEY:
            return status_pb2.Status.FromString(value)
    return status_pb2.Status(code=status.code.value[0], message=status.details or "")


def connect_error(status: grpc.Status) -> ConnectError:
    """The Connect error of a gRPC status: the same code, message and details (each detail
    is the same packed message: ErrorInfo, BadRequest)."""
    rich = _rich_status(status)
    details = [ErrorDetail(AnyDetail(type_url=d.type_url, value=d.value)) for d in rich.details]
    return ConnectError(_CODES.get(rich.code, Code.UNKNOWN), rich.message, details)


def _error_body(rich: status_pb2.Status) -> bytes:
    """A Connect error as JSON, for answers given before a Connect application runs."""
    body: dict[str, Any] = {"code": _CODES.get(rich.code, Code.UNKNOWN).value}
    body["message"] = rich.message
    body["details"] = [
        {
            "type": d.type_url.rpartition("/")[2],
            "value": base64.b64encode(d.value).decode().rstrip("="),
        }
        for d in rich.details
    ]
    return json.dumps(body).encode()


class _Context:
    """What the call layer and servicers use of grpc.aio.ServicerContext, for a
    Connect request: its headers as metadata, its peer, and the abort that ends the call
    with a status (raised as the Connect error of that status)."""

    def __init__(self, ctx: RequestContext[Any, Any]) -> None:
        self._headers = ctx.request_headers
        self._peer = ctx.client_address or ""
        self._status: grpc.Status | None = None
        self.abort_error: ConnectError | None = None

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return tuple((key.lower(), value) for key, value in self._headers.allitems())

    def auth_context(self) -> dict[str, list[bytes]]:
        return {}  # no client certificates on this listener

    def peer(self) -> str:
        return self._peer

    async def abort_with_status(self, status: grpc.Status) -> NoReturn:
        self._status = status
        # The call layer (calls.py) knows the call ended with this status by this error.
        self.abort_error = connect_error(status)
        raise self.abort_error

    def code(self) -> grpc.StatusCode | None:
        return self._status.code if self._status is not None else None

    def trailing_metadata(self) -> Any:
        return self._status.trailing_metadata if self._status is not None else ()


def _message(method: MethodDescriptor) -> type[Message]:
    return message_factory.GetMessageClass(method.input_type)


def _snake(name: str) -> str:
    """A method's name in the generated Connect protocol: ListPendingApprovals ->
    list_pending_approvals."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _application(servicer: object, calls: Calls, max_bytes: int) -> ConnectASGIApplication:
    """The generated Connect application of the servicer's service. Each method is the
    servicer's, through the call layer (calls.py) as over gRPC."""
    base = next((cls for cls in _GENERATED if isinstance(servicer, cls)), None)
    if base is None:
        raise TypeError(f"{type(servicer).__name__} is not a signoff servicer")
    descriptor, protocol, application = _GENERATED[base]
    handlers = {}
    for method in descriptor.methods:
        name = _snake(method.name)
        if not callable(getattr(protocol, name, None)):  # the generator's naming changed
            raise RuntimeError(f"{protocol.__name__} has no method {name}")
        handlers[name] = _handler(
            calls,
            calls.method(f"/{descriptor.full_name}/{method.name}"),
            getattr(servicer, method.name),
            _decode_as(_message(method)),
            method.server_streaming,
        )
    return application(
        SimpleNamespace(**handlers), read_max_bytes=max_bytes, codecs=[_BINARY, _JSON]
    )


def _handler(
    calls: Calls, method: Method, behavior: Any, decode: Callable[[Any], Message], streams: bool
) -> Any:
    """A Connect handler: (request, ctx) -> the response, or the stream of responses."""
    if streams:

        def stream(request: _Body, ctx: RequestContext[Any, Any]) -> Any:
            return calls.stream(method, behavior, decode, request, _Context(ctx))

        return stream

    def unary(request: _Body, ctx: RequestContext[Any, Any]) -> Any:
        return calls.unary(method, behavior, decode, request, _Context(ctx))

    return unary


# -- codecs ---------------------------------------------------------------------------------

_FAILED_FIELD = re.compile(r"^Failed to parse (\S+) field: ")
_UNKNOWN_FIELD = re.compile(r'has no field named "([^"]+)"')
_WHERE = re.compile(r"( at [\w.\"]+)?\.*$")


def _violation(error: json_format.ParseError) -> FieldViolation:
    """The field a JSON parse error is about, and what is wrong with it."""
    message, path = str(error), []
    while found := _FAILED_FIELD.match(message):
        path.append(found[1])
        message = message[found.end() :]
    if unknown := _UNKNOWN_FIELD.search(message):
        path.append(unknown[1])
        message = "is not a field of this message"
    else:
        message = _WHERE.sub("", message.splitlines()[0])
    return FieldViolation(".".join(path) or BODY, message)


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    value = dict(pairs)
    if len(value) != len(pairs):
        counted = Counter(key for key, _ in pairs)
        raise ValueError(f"duplicate keys {sorted(k for k, n in counted.items() if n > 1)}")
    return value


def _from_json(data: bytes, message_class: type[Message]) -> Message:
    """proto3 JSON (proto or JSON field names). Unlike Connect's default, a field the
    message does not have is refused, not dropped: a misspelt `edited_params` must not
    approve the original params. InvalidArgument names the field."""
    try:
        value = json.loads(
            data or b"{}", object_pairs_hook=_no_duplicates, parse_constant=_not_json
        )
    except (ValueError, RecursionError) as error:  # UnicodeDecodeError is a ValueError
        raise InvalidArgument([FieldViolation(BODY, f"is not valid JSON: {error}")]) from None
    if not isinstance(value, dict):
        raise InvalidArgument([FieldViolation(BODY, "must be a JSON object")])
    try:
        return json_format.ParseDict(value, message_class())
    except json_format.ParseError as error:
        raise InvalidArgument([_violation(error)]) from None
    except OverflowError as error:  # 1e999 is a float infinity, which an enum or int refuses
        raise InvalidArgument(
            [FieldViolation(BODY, f"a number is out of range: {error}")]
        ) from None


def _not_json(constant: str) -> Any:
    """NaN and Infinity are not JSON (RFC 8259), though Python's parser takes them."""
    raise ValueError(f"{constant} is not a JSON value")


def _from_binary(data: bytes, message_class: type[Message]) -> Message:
    return message_class.FromString(data)  # DecodeError: the call layer answers it


class _Body:
    """A request as sent, with the parser of its format. The codecs leave requests as
    they came: the call layer decodes them (_decode_as) once the caller is authenticated,
    so that a caller without credentials learns nothing about the messages (as over gRPC).
    """

    __slots__ = ("data", "parse")

    def __init__(self, data: bytes, parse: Callable[[bytes, type[Message]], Message]) -> None:
        self.data = data
        self.parse = parse


def _decode_as(message_class: type[Message]) -> Callable[[Any], Message]:
    return lambda body: body.parse(body.data, message_class)


class _Codec:
    def __init__(
        self,
        name: str,
        parse: Callable[[bytes, type[Message]], Message],
        write: Callable[[Message], bytes],
    ) -> None:
        self._name = name
        self._parse = parse
        self.encode = write

    def name(self) -> str:
        return self._name

    def decode(self, data: bytes | bytearray, message_class: type[Message]) -> _Body:
        return _Body(bytes(data), self._parse)


def _to_json(message: Message) -> bytes:
    return json_format.MessageToJson(message).encode()  # lowerCamelCase, as proto3 JSON


_JSON = _Codec("json", _from_json, _to_json)
_BINARY = _Codec("proto", _from_binary, lambda message: message.SerializeToString())


# -- the application ------------------------------------------------------------------------


class _TooLarge(ConnectError):
    """Raised by the receive() of a request whose body passed the limit: a Connect
    application answers it as the Connect error it is, any other route with a 413."""

    def __init__(self, limit: int) -> None:
        status = to_status(RequestTooLarge(limit))
        error = connect_error(status)
        super().__init__(error.code, error.message, error.details)
        self.body = _error_body(_rich_status(status))


async def _too_large(request: Request, error: Exception) -> Response:
    assert isinstance(error, _TooLarge)
    return Response(error.body, 413, media_type="application/json")


class _Limits:
    """Refuses, before the application reads it: a body over the limit (its Content-Length
    at once, a chunked one as soon as it passes the limit), and gRPC (not over HTTP/1.1:
    it is served on the gRPC port)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        length = headers.get(b"content-length", b"0")
        if not length.isdigit() or int(length) > self.max_bytes:
            await _refuse(send, 413, _rich_status(to_status(RequestTooLarge(self.max_bytes))))
            return
        content_type = headers.get(b"content-type", b"")
        if content_type.startswith(b"application/grpc") and not content_type.startswith(
            b"application/grpc-web"
        ):
            served = "gRPC is served on the gRPC port; this port speaks the Connect protocol"
            await _refuse(send, 415, status_pb2.Status(code=code_pb2.UNIMPLEMENTED, message=served))
            return
        received = 0

        async def limited() -> AsgiMessage:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _TooLarge(self.max_bytes)
            return message

        await self.app(scope, limited, send)


async def _refuse(send: Send, http_status: int, status: status_pb2.Status) -> None:
    body = _error_body(status)
    await send(
        {
            "type": "http.response.start",
            "status": http_status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class Readiness:
    """What /readyz answers: ready while the database answers and the server is not
    draining. Load balancers probe every few seconds: a database that stops answering is
    one WARNING line (besides the database's own outage line), and one when it answers
    again, not a line per probe."""

    def __init__(self, database: Database) -> None:
        self.database = database
        self.draining = False
        self._failing = False

    async def problem(self) -> str:
        if self.draining:
            return "draining"
        try:
            async with asyncio.timeout(READY_TIMEOUT):
                async with self.database.read() as tx:
                    await tx.connection.execute(text("SELECT 1"))
        except (SignoffError, SQLAlchemyError, OSError, TimeoutError) as error:
            if not self._failing:
                self._failing = True
                cause = "no answer in time" if isinstance(error, TimeoutError) else error
                log.warning("not ready: the database does not answer (%s)", cause)
            return "database unreachable"
        if self._failing:
            self._failing = False
            log.warning("ready again: the database answers")
        return ""


def application(
    servicers: Sequence[object],
    authenticator: Authenticator,
    readiness: Readiness,
    max_bytes: int,
    more: Sequence[BaseRoute] = (),
    calls: Calls | None = None,
) -> ASGIApp:
    """The HTTP listener's application: the services at /signoff.v1.<Service>/<Method>,
    /healthz and /readyz, and `more` routes beside them (a console, callbacks). Every
    route's request body is limited to `max_bytes`. `calls`: the gRPC server's call layer,
    to share (else one of its own, authenticating with `authenticator`)."""

    async def healthz(request: Request) -> JSONResponse:
        return JSONResponse({"status": "SERVING"})

    async def readyz(request: Request) -> JSONResponse:
        problem = await readiness.problem()
        if problem:
            return JSONResponse({"status": "NOT_SERVING", "problem": problem}, status_code=503)
        return JSONResponse({"status": "SERVING"})

    routes: list[BaseRoute] = [
        Route("/healthz", healthz, methods=["GET", "HEAD"]),
        Route("/readyz", readyz, methods=["GET", "HEAD"]),
        *more,
    ]
    calls = calls if calls is not None else Calls(authenticator)
    for servicer in servicers:
        app = _application(servicer, calls, max_bytes)
        routes.append(Mount(app.path, app=app))
    starlette = Starlette(routes=routes, exception_handlers={_TooLarge: _too_large})
    return _Limits(starlette, max_bytes)


# -- the server -----------------------------------------------------------------------------


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Any:
        yield  # signoff's own handlers stop both listeners


class HttpListener:
    """uvicorn on a socket bound before the start (so that a port in use is a clear error,
    and port 0 reports the port it picked), in the running event loop."""

    def __init__(
        self,
        app: ASGIApp,
        host: str,
        port: int,
        grace: float,
        readiness: Readiness | None = None,
        reuse_port: bool = False,
    ) -> None:
        """readiness: the application's, set draining when the server stops. reuse_port: the
        port is shared with the other workers of `serve --workers`."""
        self.host = host
        self.readiness = readiness
        try:
            family, kind, proto, _, address = socket.getaddrinfo(
                host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
            )[0]
            self.socket = socket.socket(family, kind, proto)
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port:
                self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            self.socket.bind(address)
            self.socket.listen(1024)
        except OSError as error:
            raise OSError(f"cannot serve HTTP on {host}:{port}: {error.strerror}") from None
        self.port: int = self.socket.getsockname()[1]
        config = uvicorn.Config(
            app,
            http="h11",
            ws="none",
            lifespan="off",
            log_config=None,
            access_log=False,
            server_header=False,
            timeout_graceful_shutdown=math.ceil(grace),
        )
        config.load()
        self.server = _Server(config)
        self.server.lifespan = config.lifespan_class(config)
        self._loop: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        shown = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{shown}:{self.port}"

    async def start(self) -> None:
        await self.server.startup(sockets=[self.socket])
        self._loop = asyncio.create_task(self.server.main_loop())

    async def stop(self) -> None:
        """Stops accepting, lets running requests finish within the grace, then ends them."""
        self.server.should_exit = True
        if self._loop is not None:
            await self._loop
        await self.server.shutdown(sockets=[self.socket])
