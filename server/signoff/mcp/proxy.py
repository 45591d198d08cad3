"""The MCP server the client talks to: tools/call goes through a Gate, the rest passes through.

Toward the client it serves stdio (one client, one session) or streamable HTTP on a
loopback address (`listen`), where each MCP session (its Mcp-Session-Id) has a gate, so a
signoff instance, of its own. `initialize` is the proxy's own; tools/list, resources/* and
prompts/* are the upstreams' answers under the names in `Catalog`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import anyio
import mcp_types as types
import uvicorn
from mcp.server.lowlevel import Server
from mcp.server.stdio import stdio_server
from mcp.shared.exceptions import MCPError
from starlette.applications import Starlette

from signoff.mcp.gate import Gate, ToolCall, arguments_of, refusal
from signoff.mcp.settings import ProxySettings, listen_address
from signoff.mcp.upstreams import Catalog, connect
from signoff_client.sdk import AsyncSignoff

__all__ = ["default_session_key", "run"]

log = logging.getLogger(__name__)

Context = Any  # mcp.server.context.ServerRequestContext: the lowlevel handlers' first argument


def default_session_key(settings: ProxySettings) -> str:
    """The session key when none is configured: the same for the same upstreams, started
    from the same directory, so a restarted stdio proxy finds its instance again."""
    upstreams = [upstream.model_dump() for upstream in settings.upstreams]
    text = json.dumps([upstreams, os.getcwd()], sort_keys=True)
    return "auto:" + hashlib.sha256(text.encode()).hexdigest()[:32]


class Gates:
    """The gate of each MCP session: one on stdio, one per Mcp-Session-Id on HTTP."""

    def __init__(self, client: AsyncSignoff, settings: ProxySettings) -> None:
        self.client = client
        self.settings = settings
        self.session_key = settings.session_key or default_session_key(settings)
        self._gates: dict[str, Gate] = {}
        self.detached = False

    def of(self, ctx: Context) -> Gate:
        request = getattr(ctx, "request", None)
        headers = getattr(request, "headers", None)
        session = headers.get("mcp-session-id", "") if headers is not None else ""
        key = f"{self.session_key}/{session}" if session else self.session_key
        gate = self._gates.get(key)
        if gate is None:
            gate = Gate(
                self.client,
                self.settings.envelope,
                key,
                progress_interval=self.settings.progress_interval,
            )
            self._gates[key] = gate
        return gate

    async def drain(self) -> None:
        for gate in list(self._gates.values()):
            await gate.drain()

    def detach(self) -> None:
        """The proxy is being stopped on purpose: leave waiting actions to be resumed."""
        self.detached = True
        for gate in self._gates.values():
            gate.detached = True


def build(catalog: Catalog, gates: Gates) -> Server[Any]:
    """The lowlevel MCP server, with a handler for what the upstreams offer."""

    async def list_tools(
        ctx: Context, params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        tools = await catalog.tools()
        if gates.settings.hide_denied:
            gate = gates.of(ctx)
            routes = [await catalog.tool(tool.name) for tool in tools]
            denied = await asyncio.gather(
                *(gate.denies(route.tool, route.risk_class) for route in routes if route)
            )
            tools = [tool for tool, deny in zip(tools, denied, strict=True) if not deny]
        return types.ListToolsResult(tools=tools)

    async def call_tool(ctx: Context, params: types.CallToolRequestParams) -> types.CallToolResult:
        route = await catalog.tool(params.name)
        if route is None:
            return refusal(f"unknown tool {params.name!r}; nothing was run")
        try:
            arguments = arguments_of(params.arguments)
        except (TypeError, ValueError) as error:
            return refusal(f"the arguments of {params.name} are not JSON ({error}); not run")
        gate = gates.of(ctx)
        gate.detached = gates.detached

        async def run(approved: dict[str, Any]) -> types.CallToolResult:
            result = await route.upstream.session.call_tool(route.name, approved)
            if not isinstance(result, types.CallToolResult):
                raise TypeError(f"the upstream answered {type(result).__name__}, not a tool result")
            return result

        async def progress(value: float, message: str) -> None:
            await ctx.session.report_progress(value, None, message)

        call = ToolCall(route.tool, arguments, route.risk_class)
        return await gate.call(call, run, progress)

    async def list_prompts(
        ctx: Context, params: types.PaginatedRequestParams | None
    ) -> types.ListPromptsResult:
        return types.ListPromptsResult(prompts=await catalog.prompts())

    async def get_prompt(
        ctx: Context, params: types.GetPromptRequestParams
    ) -> types.GetPromptResult:
        route = await catalog.prompt(params.name)
        if route is None:
            raise MCPError(types.INVALID_PARAMS, f"unknown prompt {params.name!r}")
        result = await route.upstream.session.get_prompt(route.name, params.arguments)
        if not isinstance(result, types.GetPromptResult):
            raise MCPError(types.INTERNAL_ERROR, "the upstream asked for input; not supported")
        return result

    async def list_resources(
        ctx: Context, params: types.PaginatedRequestParams | None
    ) -> types.ListResourcesResult:
        return types.ListResourcesResult(resources=await catalog.resources())

    async def list_templates(
        ctx: Context, params: types.PaginatedRequestParams | None
    ) -> types.ListResourceTemplatesResult:
        return types.ListResourceTemplatesResult(
            resource_templates=await catalog.resource_templates()
        )

    async def read_resource(
        ctx: Context, params: types.ReadResourceRequestParams
    ) -> types.ReadResourceResult:
        upstream = await catalog.resource(str(params.uri))
        if upstream is None:
            raise MCPError(types.INVALID_PARAMS, f"unknown resource {params.uri}")
        result = await upstream.session.read_resource(str(params.uri))
        if not isinstance(result, types.ReadResourceResult):
            raise MCPError(types.INTERNAL_ERROR, "the upstream asked for input; not supported")
        return result

    has_prompts = bool(catalog.with_capability("prompts"))
    has_resources = bool(catalog.with_capability("resources"))
    single = catalog.upstreams[0] if len(catalog.upstreams) == 1 else None
    return Server(
        "signoff-mcp-proxy",
        version="0.1.0",
        instructions=None,
        description="MCP tool calls gated by signoff" + (f" ({single.name})" if single else ""),
        on_list_tools=list_tools,
        on_call_tool=call_tool,
        on_list_prompts=list_prompts if has_prompts else None,
        on_get_prompt=get_prompt if has_prompts else None,
        on_list_resources=list_resources if has_resources else None,
        on_list_resource_templates=list_templates if has_resources else None,
        on_read_resource=read_resource if has_resources else None,
    )


async def run(settings: ProxySettings, client: AsyncSignoff) -> None:
    """Connects the upstreams and serves the client until it leaves or a signal stops us.

    SIGTERM and SIGINT stop the proxy without cancelling what waits (a restarted proxy
    resumes it); the client closing stdio, or cancelling a call, cancels."""
    async with AsyncExitStack() as stack:
        upstreams = [await connect(stack, upstream) for upstream in settings.upstreams]
        catalog = Catalog(upstreams, settings.default_risk_class)
        gates = Gates(client, settings)
        server = build(catalog, gates)
        web = _web(server, settings.listen) if settings.listen else None
        async with anyio.create_task_group() as tasks:

            async def stop_on_signal() -> None:
                with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                    async for _ in signals:
                        gates.detach()
                        if web is not None:
                            web.should_exit = True  # uvicorn stops, then run() returns
                            return
                        # The thread reading stdin cannot be interrupted: exit once the
                        # reports are sent; stdio upstreams see their stdin close and end.
                        await gates.drain()
                        sys.stderr.flush()
                        os._exit(0)

            tasks.start_soon(stop_on_signal)
            if web is not None:
                await web.serve()
            else:
                async with stdio_server() as (read, write):
                    await server.run(read, write, server.create_initialization_options())
            tasks.cancel_scope.cancel()
        await gates.drain()


def _web(server: Server[Any], listen: str) -> uvicorn.Server:
    """uvicorn serving the streamable HTTP app at /mcp; its signals are left to run()."""
    host, port = listen_address(listen)
    app = server.streamable_http_app(host=host)
    _announce(app, f"signoff mcp-proxy listening on http://{host}:{port}/mcp")
    web = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning"))
    web.capture_signals = contextlib.nullcontext  # type: ignore[assignment, method-assign]
    return web


def _announce(app: Starlette, line: str) -> None:
    """Prints `line` on standard error once the HTTP app has started."""
    inner = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with inner(app):
            print(line, file=sys.stderr, flush=True)
            yield

    app.router.lifespan_context = lifespan
