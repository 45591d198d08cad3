"""The MCP servers behind the proxy, as MCP client sessions, and the names they are known by.

With one upstream its tools and prompts keep their names toward the client (the proxy drops
into a client's config in place of the server). With several, each name is prefixed with
"<upstream>_" so they cannot collide (MCP clients such as Claude and OpenAI accept only
letters, digits, "_" and "-" in tool names, so not "."). signoff always sees
"<upstream>.<tool>".
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import TypeVar

import mcp_types as types
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client

from signoff.mcp.gate import risk_class, signoff_tool
from signoff.mcp.settings import UpstreamSettings

__all__ = ["Catalog", "Route", "Upstream", "connect"]


@dataclass(frozen=True)
class Upstream:
    settings: UpstreamSettings
    session: ClientSession
    capabilities: types.ServerCapabilities

    @property
    def name(self) -> str:
        return self.settings.name


async def connect(stack: AsyncExitStack, settings: UpstreamSettings) -> Upstream:
    """Starts (stdio) or reaches (HTTP) the upstream and initializes an MCP session with it;
    `stack` closes both."""
    if settings.command:
        parameters = StdioServerParameters(
            command=settings.command[0],
            args=settings.command[1:],
            env=settings.env or None,
            cwd=settings.cwd,
        )
        read, write = await stack.enter_async_context(stdio_client(parameters, sys.stderr))
    else:
        read, write = await stack.enter_async_context(streamable_http_client(settings.url))
    session = await stack.enter_async_context(ClientSession(read, write))
    initialized = await session.initialize()
    return Upstream(settings, session, initialized.capabilities)


@dataclass(frozen=True)
class Route:
    """Where a name the client uses leads: the upstream, its own name there, and for tools
    what signoff sees."""

    upstream: Upstream
    name: str
    tool: str = ""
    risk_class: str = ""


_Page = TypeVar(
    "_Page",
    types.ListToolsResult,
    types.ListPromptsResult,
    types.ListResourcesResult,
    types.ListResourceTemplatesResult,
)


async def _all(list_page: Callable[..., Awaitable[_Page]]) -> list[_Page]:
    """Every page of a paginated list (`list_page` is a ClientSession method)."""
    pages: list[_Page] = []
    cursor = None
    while True:
        page = await list_page(
            params=types.PaginatedRequestParams(cursor=cursor) if cursor else None
        )
        pages.append(page)
        cursor = page.next_cursor
        if not cursor:
            return pages


class Catalog:
    """The upstreams' tools and prompts under the names the client sees."""

    def __init__(self, upstreams: list[Upstream], default_risk_class: str) -> None:
        self.upstreams = upstreams
        self.default_risk_class = default_risk_class
        self._tools: dict[str, Route] = {}
        self._prompts: dict[str, Route] = {}
        self._resources: dict[str, Upstream] = {}

    def _exposed(self, upstream: Upstream, name: str) -> str:
        return name if len(self.upstreams) == 1 else f"{upstream.name}_{name}"

    def with_capability(self, capability: str) -> list[Upstream]:
        return [up for up in self.upstreams if getattr(up.capabilities, capability) is not None]

    async def tools(self) -> list[types.Tool]:
        """Every upstream's tools, renamed; remembers where each leads."""
        tools, routes = [], {}
        for upstream in self.with_capability("tools"):
            for page in await _all(upstream.session.list_tools):
                for tool in page.tools:
                    exposed = self._exposed(upstream, tool.name)
                    override = upstream.settings.risk_classes.get(tool.name)
                    routes[exposed] = Route(
                        upstream,
                        tool.name,
                        signoff_tool(upstream.name, tool.name),
                        risk_class(tool.annotations, override, self.default_risk_class),
                    )
                    tools.append(tool.model_copy(update={"name": exposed}))
        self._tools = routes
        return tools

    async def tool(self, name: str) -> Route | None:
        if name not in self._tools:
            await self.tools()  # listed since, or called without listing first
        return self._tools.get(name)

    async def prompts(self) -> list[types.Prompt]:
        prompts, routes = [], {}
        for upstream in self.with_capability("prompts"):
            for page in await _all(upstream.session.list_prompts):
                for prompt in page.prompts:
                    exposed = self._exposed(upstream, prompt.name)
                    routes[exposed] = Route(upstream, prompt.name)
                    prompts.append(prompt.model_copy(update={"name": exposed}))
        self._prompts = routes
        return prompts

    async def prompt(self, name: str) -> Route | None:
        if name not in self._prompts:
            await self.prompts()
        return self._prompts.get(name)

    async def resources(self) -> list[types.Resource]:
        """Every upstream's resources (URIs are left as they are)."""
        resources: list[types.Resource] = []
        owners: dict[str, Upstream] = {}
        for upstream in self.with_capability("resources"):
            for page in await _all(upstream.session.list_resources):
                for resource in page.resources:
                    owners.setdefault(str(resource.uri), upstream)
                    resources.append(resource)
        self._resources = owners
        return resources

    async def resource_templates(self) -> list[types.ResourceTemplate]:
        templates = []
        for upstream in self.with_capability("resources"):
            session = upstream.session
            for page in await _all(session.list_resource_templates):
                templates.extend(page.resource_templates)
        return templates

    async def resource(self, uri: str) -> Upstream | None:
        """The upstream that listed `uri` (the only one with resources, if just one)."""
        owners = self.with_capability("resources")
        if len(owners) == 1:
            return owners[0]
        if uri not in self._resources:
            await self.resources()
        return self._resources.get(uri)
