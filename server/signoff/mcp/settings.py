"""What `signoff mcp-proxy` runs with: the upstreams, the envelope, the session key, risk.

Given by a YAML file (`--config`) and flags; a flag given on the command line wins over the
file (signoff's address and credentials are flags, as for every `signoff` command).
Everything is checked before the proxy starts: a mistake names the field.

    session_key: alice-laptop            # one signoff instance per key (see docs/mcp.md)
    envelope: {tenant_id: acme, agent_id: claude-desktop, user_id: alice, intent: mcp.tools}
    default_risk_class: DESTRUCTIVE      # tools without a telling annotation
    upstreams:
      - name: fs
        command: [npx, -y, "@modelcontextprotocol/server-filesystem", /srv/data]
        risk_classes: {write_file: DESTRUCTIVE, read_text_file: READ_ONLY}
      - name: search
        url: http://127.0.0.1:8000/mcp
"""

from __future__ import annotations

import getpass
import ipaddress
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from signoff.config import ConfigError, _from_file

__all__ = ["ConfigError", "Envelope", "ProxySettings", "RiskClass", "UpstreamSettings", "load"]

RiskClass = Literal["READ_ONLY", "LOCAL_WRITE", "NETWORK", "DELEGATED", "DESTRUCTIVE"]

# An upstream's name is the first part of signoff's "adapter.capability" tool names.
NAME = r"^[A-Za-z][A-Za-z0-9_-]{0,31}$"
IDENTIFIER = r"^[\x21-\x7e]{1,128}$"  # what signoff accepts as an id: printable ASCII


class UpstreamSettings(BaseModel):
    """One MCP server behind the proxy: a command to run (stdio) or a streamable HTTP URL."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=NAME, description="prefix of its tools: signoff sees NAME.TOOL")
    command: list[str] = Field(default_factory=list, description="program and arguments (stdio)")
    url: str = Field("", description="streamable HTTP endpoint, http(s)://host/mcp")
    env: dict[str, str] = Field(default_factory=dict, description="extra environment (stdio)")
    cwd: str | None = Field(None, description="working directory (stdio)")
    risk_classes: dict[str, RiskClass] = Field(
        default_factory=dict, description="per tool (its upstream name): wins over annotations"
    )

    @model_validator(mode="after")
    def _one_transport(self) -> UpstreamSettings:
        if bool(self.command) == bool(self.url):
            raise ValueError(f"upstream {self.name}: give exactly one of command and url")
        if self.url and not re.match(r"^https?://[^\s/]+", self.url):
            raise ValueError(f"upstream {self.name}: url must be http:// or https://")
        return self


def _login() -> str:
    """Whose session it is when not configured: the operating system's user (the person
    at the desktop client), as an id."""
    try:
        name = getpass.getuser()
    except (KeyError, OSError):
        name = ""
    return re.sub(r"[^\x21-\x7e]", "_", name)[:128] or "mcp-user"


class Envelope(BaseModel):
    """Who and what the MCP session is, as signoff's InvokeAgent envelope."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tenant_id: str = Field("default", pattern=IDENTIFIER)
    agent_id: str = Field("mcp-client", pattern=IDENTIFIER)
    user_id: str = Field(default_factory=lambda: _login(), pattern=IDENTIFIER)
    intent: str = Field("mcp.tools", pattern=IDENTIFIER)
    workflow_id: str = Field("", pattern=r"^[\x21-\x7e]{0,128}$")
    workflow_version: str = Field("", pattern=r"^[\x21-\x7e]{0,128}$")
    message: str = Field("", max_length=4096)
    max_tool_calls: int = Field(0, ge=0, description="0: no limit")
    max_cost_cents: float = Field(0.0, ge=0, description="0: no limit")

    def request(self, request_id: str, session_id: str) -> dict[str, Any]:
        """The InvokeAgentRequest, as the dict the SDK's invoke_agent takes."""
        body: dict[str, Any] = {
            "request_id": request_id,
            "session_id": session_id,
            "tenant_id": self.tenant_id,
            "agent": {"agent_id": self.agent_id},
            "input": {"intent": self.intent, "message": self.message, "channel": "mcp"},
            "user": {"user_id": self.user_id},
        }
        if self.workflow_id:
            body["workflow_id"] = self.workflow_id
            body["workflow_version"] = self.workflow_version
        runtime = {"max_tool_calls": self.max_tool_calls, "max_cost_cents": self.max_cost_cents}
        if any(runtime.values()):
            body["runtime"] = runtime
        return body


class ProxySettings(BaseModel):
    """Everything the proxy runs with; see the module docstring for the file's shape."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    upstreams: list[UpstreamSettings] = Field(
        min_length=1, description="at least one: -- COMMAND, --upstream-url or the file's list"
    )
    envelope: Envelope = Field(default_factory=lambda: Envelope.model_validate({}))
    session_key: str = Field(
        "", max_length=256, description="names the signoff instance (default: derived, stable)"
    )
    default_risk_class: RiskClass = "DESTRUCTIVE"
    progress_interval: float = Field(10.0, gt=0, le=3600, description="seconds between progress")
    listen: str = Field("", description="HOST:PORT: serve streamable HTTP at /mcp (loopback)")
    hide_denied: bool = Field(False, description="leave out of tools/list what policy denies")

    @field_validator("upstreams")
    @classmethod
    def _unique(cls, upstreams: list[UpstreamSettings]) -> list[UpstreamSettings]:
        names = [upstream.name for upstream in upstreams]
        if len(set(names)) != len(names):
            raise ValueError("upstream names must be unique")
        return upstreams

    @field_validator("listen")
    @classmethod
    def _loopback(cls, listen: str) -> str:
        if listen:
            host = listen_address(listen)[0]
            if not ipaddress.ip_address(host).is_loopback:
                raise ValueError("the proxy listens on a loopback address only (no client auth)")
        return listen


def listen_address(listen: str) -> tuple[str, int]:
    """("127.0.0.1", 7331) from "127.0.0.1:7331"; ValueError when malformed."""
    host, _, port = listen.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    if host == "localhost":
        host = "127.0.0.1"
    ipaddress.ip_address(host)  # ValueError for names: give an address
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"bad port in {listen!r}")
    return host, int(port)


def load(config_file: Path | None, flags: dict[str, Any]) -> ProxySettings:
    """The file's settings with the given flags over them; raises ConfigError."""
    merged: dict[str, Any] = _from_file(config_file) if config_file is not None else {}
    flags = dict(flags)
    envelope = {**(merged.get("envelope") or {}), **flags.pop("envelope", {})}
    # An upstream given by flags joins the file's.
    upstreams = [*(merged.get("upstreams") or []), *flags.pop("upstreams", [])]
    merged.update(flags)
    if envelope:
        merged["envelope"] = envelope
    merged["upstreams"] = upstreams
    if not upstreams:
        raise ConfigError(
            "no upstream: give -- COMMAND, --upstream-url URL or upstreams in --config"
        )
    try:
        return ProxySettings.model_validate(merged)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in item['loc']) or 'settings'}: {item['msg']}"
            for item in error.errors()
        )
        raise ConfigError(f"settings: {problems}") from None
