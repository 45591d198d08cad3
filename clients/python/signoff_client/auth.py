"""Bearer tokens on every call: signoff authenticates each RPC.

`connect()` of the SDK clients uses these; with the generated stubs, build the channel here:

    stub = ExecutionServiceStub(bearer_channel("127.0.0.1:50051", token))
"""

import os
from typing import Any

import grpc

TOKEN_ENV = "SIGNOFF_TOKEN"


def token_from_env(token: str | None) -> str:
    """The given token, else $SIGNOFF_TOKEN, else "" (the server then answers UNAUTHENTICATED)."""
    return token if token is not None else os.environ.get(TOKEN_ENV, "")


def _with_token(metadata: Any, token: str) -> list[tuple[str, str]]:
    return [*(metadata or ()), ("authorization", f"Bearer {token}")]


class _SyncBearer(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor):  # type: ignore[misc]
    def __init__(self, token: str) -> None:
        self._token = token

    def _details(self, details: Any) -> Any:
        return details._replace(metadata=_with_token(details.metadata, self._token))

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)

    def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)


def _aio_details(details: Any, token: str) -> Any:
    return grpc.aio.ClientCallDetails(
        details.method,
        details.timeout,
        grpc.aio.Metadata(*_with_token(details.metadata, token)),
        details.credentials,
        details.wait_for_ready,
    )


# grpc.aio files an interceptor under one kind only, so each kind gets its own class.
class _AioUnaryBearer(grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    def __init__(self, token: str) -> None:
        self._token = token

    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(_aio_details(details, self._token), request)


class _AioStreamBearer(grpc.aio.UnaryStreamClientInterceptor):  # type: ignore[misc]
    def __init__(self, token: str) -> None:
        self._token = token

    async def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(_aio_details(details, self._token), request)


def bearer_channel(
    target: str,
    token: str | None = None,
    credentials: grpc.ChannelCredentials | None = None,
    options: Any = None,
) -> grpc.Channel:
    """A blocking channel that sends the token (or $SIGNOFF_TOKEN) with every call."""
    if credentials is None:
        channel = grpc.insecure_channel(target, options=options)
    else:
        channel = grpc.secure_channel(target, credentials, options=options)
    token = token_from_env(token)
    return grpc.intercept_channel(channel, _SyncBearer(token)) if token else channel


def aio_bearer_channel(
    target: str,
    token: str | None = None,
    credentials: grpc.ChannelCredentials | None = None,
    options: Any = None,
) -> grpc.aio.Channel:
    """An asyncio channel that sends the token (or $SIGNOFF_TOKEN) with every call."""
    token = token_from_env(token)
    interceptors = [_AioUnaryBearer(token), _AioStreamBearer(token)] if token else None
    if credentials is None:
        return grpc.aio.insecure_channel(target, options=options, interceptors=interceptors)
    return grpc.aio.secure_channel(target, credentials, options=options, interceptors=interceptors)
