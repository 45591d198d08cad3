"""A bare grpc.aio server, the yardstick of bench/run: nothing but asyncio and grpc imported.

.venv/bin/python -m bench.bare    (prints "echo listening on HOST:PORT", serves until killed)
"""

import asyncio
from collections.abc import AsyncIterator

import grpc

ECHO_METHOD = "/bench.Echo/Echo"
HOLD_METHOD = "/bench.Echo/Hold"


async def echo_server() -> None:
    """A no-op grpc.aio server: Echo answers its request; Hold (a bare server-streaming
    call) sends one message of as many bytes as its request names, then waits forever."""

    async def echo(request: bytes, _context: grpc.aio.ServicerContext) -> bytes:
        return request

    async def hold(request: bytes, _context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
        yield b"x" * int(request or b"128")
        await asyncio.Event().wait()

    server = grpc.aio.server()
    handlers = {
        "Echo": grpc.unary_unary_rpc_method_handler(echo),
        "Hold": grpc.unary_stream_rpc_method_handler(hold),
    }
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler("bench.Echo", handlers)])
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    print(f"echo listening on 127.0.0.1:{port}", flush=True)
    await server.wait_for_termination()


if __name__ == "__main__":
    asyncio.run(echo_server())
