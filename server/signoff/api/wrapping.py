"""The base of signoff's server interceptors: each method's handler is wrapped once, on its
first call, not on every call (a watch stream then holds no per-call closures)."""

from collections.abc import Awaitable, Callable
from typing import Any

import grpc

Decoder = Callable[[bytes], Any]


class MethodWrapper(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    def __init__(self) -> None:
        self._wrapped: dict[str, tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler]] = {}

    # True: gRPC hands this interceptor each request as bytes, and `unary` and `stream` get
    # the method's decoder to decode it themselves (AuthInterceptor: it answers bytes that
    # are not the request message; gRPC would answer UNKNOWN, with a traceback).
    # Interceptors outside it see bytes.
    decodes = False

    def unary(self, behavior: Any, method: str, decode: Decoder | None) -> Any:
        raise NotImplementedError

    def stream(self, behavior: Any, method: str, decode: Decoder | None) -> Any:
        raise NotImplementedError

    def bidirectional(self, behavior: Any, method: str, decode: Decoder) -> Any:
        """Only for an interceptor that decodes (signoff has no client-streaming RPC; server
        reflection has one)."""
        raise NotImplementedError

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        method = details.method
        if handler is None:
            return handler  # no such method: gRPC answers UNIMPLEMENTED
        cached = self._wrapped.get(method)
        if cached is not None and cached[0] is handler:
            return cached[1]
        decode = handler.request_deserializer if self.decodes else None
        kept = None if self.decodes else handler.request_deserializer
        if handler.unary_unary is not None:
            wrapped = grpc.unary_unary_rpc_method_handler(
                self.unary(handler.unary_unary, method, decode),
                request_deserializer=kept,
                response_serializer=handler.response_serializer,
            )
        elif handler.unary_stream is not None:
            wrapped = grpc.unary_stream_rpc_method_handler(
                self.stream(handler.unary_stream, method, decode),
                request_deserializer=kept,
                response_serializer=handler.response_serializer,
            )
        elif handler.stream_stream is not None and decode is not None:
            wrapped = grpc.stream_stream_rpc_method_handler(
                self.bidirectional(handler.stream_stream, method, decode),
                request_deserializer=None,
                response_serializer=handler.response_serializer,
            )
        else:
            return handler  # left alone
        self._wrapped[method] = (handler, wrapped)
        return wrapped
