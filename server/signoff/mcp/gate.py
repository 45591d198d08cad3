"""The signoff side of the gateway: one instance per MCP session, one action per tools/call.

A `Gate` asks signoff about each call through the Python SDK (`AsyncSignoff`), never
through server internals, and fails closed: the upstream runs only with params signoff
APPROVED, after the grant was consumed; every other answer and every error becomes a tool
result with `isError: true` that says who or what refused and why.

Idempotence, so that a retried call maps to the action it asked before, even from a
restarted proxy:

- the instance is found again by its InvokeAgent request_id, a digest of the session key
  and the envelope plus a generation number (the next generation starts when the instance
  ended because the proxy cancelled it);
- the action's tool_call_id is a digest of (instance, tool, arguments, occurrence): the
  first occurrence whose action was not executed yet (nor expired) is the one the call
  asks about, so a repeat of a finished call is a new action and a retry of a waiting
  one resumes it.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import anyio
import mcp_types as types

from signoff.mcp.settings import Envelope
from signoff.v1 import policy_service_pb2 as policy_pb
from signoff.v1 import types_pb2 as pb
from signoff_client.adapters import stable_key
from signoff_client.errors import ActionRejected, ErrorReason, InstanceTerminated, SignoffError
from signoff_client.sdk import WAITING_FOR_HUMAN, AsyncSignoff, Decision, proposed_action

__all__ = ["Gate", "ToolCall", "refusal", "risk_class", "signoff_tool"]

log = logging.getLogger(__name__)

# Bounds of the searches for the session's instance and for a call's next occurrence.
MAX_GENERATIONS = 1000
MAX_OCCURRENCES = 1000
# How long shielded clean-up calls (cancel, report) may take once the client went away.
CLEANUP_SECONDS = 10.0
_ENDED = (pb.INSTANCE_STATE_COMPLETED, pb.INSTANCE_STATE_TERMINATED)

Run = Callable[[dict[str, Any]], Awaitable[types.CallToolResult]]
Progress = Callable[[float, str], Awaitable[None]]


@dataclass(frozen=True)
class ToolCall:
    """One tools/call as signoff sees it: `tool` is "<upstream>.<tool>"."""

    tool: str
    arguments: dict[str, Any]
    risk_class: str


def risk_class(
    annotations: types.ToolAnnotations | None, override: str | None, default: str
) -> str:
    """The configured class if any, else what the MCP annotations say, else `default`.

    Annotations are hints the upstream gives about itself: readOnlyHint → READ_ONLY,
    destructiveHint → DESTRUCTIVE, openWorldHint → NETWORK (the first that is true)."""
    if override:
        return override
    if annotations is not None:
        if annotations.read_only_hint is True:
            return "READ_ONLY"
        if annotations.destructive_hint is True:
            return "DESTRUCTIVE"
        if annotations.open_world_hint is True:
            return "NETWORK"
    return default


def signoff_tool(upstream: str, tool: str) -> str:
    """signoff's "adapter.capability" name of an upstream's tool: "fs.write_file".

    Characters signoff does not accept in a tool name become "_" (MCP allows "/", say)."""
    cleaned = ".".join(
        part or "_"
        for part in "".join(c if c.isalnum() or c in "_-." else "_" for c in tool).split(".")
    )
    return f"{upstream}.{cleaned}"


def refusal(text: str) -> types.CallToolResult:
    """A tool result the agent's model reads: the call did not run, and why."""
    return types.CallToolResult(content=[types.TextContent(type="text", text=text)], is_error=True)


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def arguments_of(arguments: Mapping[str, Any] | None) -> dict[str, Any]:
    """The call's arguments as JSON signoff can store; ValueError when they are not."""
    text = json.dumps(dict(arguments or {}), allow_nan=False)
    parsed: dict[str, Any] = json.loads(text)
    return parsed


def evidence_ref(result: types.CallToolResult) -> str:
    """The execution's evidence: a digest of the result the upstream returned."""
    body = result.model_dump(mode="json", by_alias=True, exclude_none=True)
    return "mcp-result:sha256:" + hashlib.sha256(_canonical(body).encode()).hexdigest()


def _text(result: types.CallToolResult, limit: int = 1000) -> str:
    parts = [item.text for item in result.content if isinstance(item, types.TextContent)]
    return " ".join(parts)[:limit]


def _who(decision: Decision | None) -> str:
    if decision is None:
        return "signoff"
    if decision.action is not None and decision.action.state == pb.ACTION_STATE_EXPIRED:
        return "no approver in time (expired)"
    if decision.approver == "timer":
        return "no approver in time (expired)"
    return decision.approver or "signoff"


def _expired(decision: Decision) -> bool:
    return decision.action is not None and decision.action.state == pb.ACTION_STATE_EXPIRED


class _Ended(Exception):
    """The session's instance was ended by someone else: no call may run any more."""


class Gate:
    """One MCP session's gate: its signoff instance and the actions of its calls."""

    def __init__(
        self,
        client: AsyncSignoff,
        envelope: Envelope,
        session_key: str,
        *,
        progress_interval: float = 10.0,
    ) -> None:
        self.client = client
        self.envelope = envelope
        self.progress_interval = progress_interval
        digest = hashlib.sha256(
            _canonical([session_key, envelope.model_dump()]).encode()
        ).hexdigest()
        self._request_prefix = f"mcp_{digest[:40]}"
        self._session_id = f"mcp_{hashlib.sha256(session_key.encode()).hexdigest()[:24]}"
        self._generation = 0
        self._instance_id = ""
        self._lock = anyio.Lock()
        self._occurrences: dict[str, int] = {}
        # Instances this gate cancelled itself (a client cancel): their calls end quietly.
        self._cancelled: set[str] = set()
        self._ended = ""
        self._reports: set[asyncio.Task[None]] = set()
        # Set when the proxy is stopped on purpose: waits are left to resume, not cancelled.
        self.detached = False

    async def instance_id(self) -> str:
        """The session's running instance: found again by request_id, or created."""
        async with self._lock:
            if self._ended:
                raise _Ended(self._ended)
            if self._instance_id:
                return self._instance_id
            for generation in range(self._generation, self._generation + MAX_GENERATIONS):
                request_id = f"{self._request_prefix}_{generation}"
                request = self.envelope.request(request_id, self._session_id)
                instance = await self.client.invoke_agent(request)
                if instance.state not in _ENDED:
                    self._generation, self._instance_id = generation, instance.instance_id
                    return self._instance_id
            raise SignoffError(
                f"{MAX_GENERATIONS} instances of this session key ended; use a new session key"
            )

    async def denies(self, tool: str, risk_class: str) -> bool:
        """Whether policy denies a call of `tool` without arguments (EvaluatePolicy: a dry
        run that creates nothing). False when it cannot tell: the call is gated anyway."""
        request_id = f"{self._request_prefix}_{self._generation}"
        proposal = proposed_action("mcp_tools_list", tool, {}, risk_class)
        try:
            answer = await self.client.evaluate_policy(
                self.envelope.request(request_id, self._session_id), proposal
            )
        except SignoffError as error:
            log.warning("could not evaluate policy for %s: %s", tool, error)
            return False
        return bool(answer.effect == policy_pb.EFFECT_DENY)

    async def call(self, call: ToolCall, run: Run, progress: Progress) -> types.CallToolResult:
        """Asks signoff about `call`, waits while a human decides, runs it when approved."""
        try:
            instance_id = await self.instance_id()
            decision, tool_call_id = await self._propose(instance_id, call)
            if decision.outcome == WAITING_FOR_HUMAN:
                decision = await self._wait(instance_id, tool_call_id, call, decision, progress)
            if decision.consumed or not decision.grant_token or decision.params is None:
                return refusal(f"signoff: {call.tool} was approved once already and ran; not again")
            await self.client.consume_grant(decision.action_id, decision.grant_token)
        except ActionRejected as rejected:
            return refusal(
                f"signoff refused {call.tool}: rejected by {_who(rejected.decision)}: "
                f"{rejected.decision.reason or 'no reason given'}. The call was not run."
            )
        except InstanceTerminated as ended:
            return refusal(self._terminated(ended, call))
        except _Ended as ended:
            return refusal(f"signoff ended this session: {ended}. {call.tool} was not run.")
        except SignoffError as error:
            return refusal(f"signoff did not allow {call.tool} ({error}). The call was not run.")
        except anyio.get_cancelled_exc_class():
            await self._abandon(call)
            raise
        except Exception as error:
            log.exception("signoff gateway error on %s", call.tool)
            return refusal(f"signoff gateway error ({error!r}). {call.tool} was not run.")
        return await self._execute(decision, call, run)

    async def _propose(self, instance_id: str, call: ToolCall) -> tuple[Decision, str]:
        """RequestDecision for the call's first occurrence not finished (nor expired), and
        its tool_call_id."""
        key = _canonical([call.tool, call.arguments])
        first = self._occurrences.get(key, 0)
        for occurrence in range(first, first + MAX_OCCURRENCES):
            tool_call_id = stable_key("mcp", instance_id, key, str(occurrence))
            try:
                decision = await self.client.request_decision(
                    instance_id,
                    tool_call_id=tool_call_id,
                    tool=call.tool,
                    params=call.arguments,
                    risk_class=call.risk_class,
                    wait=False,
                )
            except ActionRejected as rejected:
                if not _expired(rejected.decision):
                    raise
                continue  # an expired request: asking again is a new request
            except SignoffError as error:
                if error.reason != ErrorReason.GRANT_EXPIRED:
                    raise
                continue  # approved too long ago to act on: ask again
            if not decision.consumed:
                self._occurrences[key] = occurrence
                return decision, tool_call_id
        raise SignoffError(f"{call.tool} ran {MAX_OCCURRENCES} times with these arguments")

    async def _wait(
        self,
        instance_id: str,
        tool_call_id: str,
        call: ToolCall,
        pending: Decision,
        progress: Progress,
    ) -> Decision:
        """Waits on WatchInstance (the SDK), telling the client it still waits meanwhile."""
        proposal = proposed_action(tool_call_id, call.tool, call.arguments, call.risk_class)
        gates = ", ".join(pending.gate_ids) or "a human"
        message = f"waiting for {gates} to approve {call.tool} (signoff action {pending.action_id})"
        started = time.monotonic()

        async def tick() -> None:
            sent = -1.0
            while True:
                # MCP wants progress to increase: seconds waited, and never the same twice.
                sent = max(round(time.monotonic() - started, 1), sent + 0.1)
                try:
                    await progress(sent, message)
                except Exception as error:  # noqa: BLE001 - the client is gone; the wait decides
                    log.debug("progress for %s not sent: %s", call.tool, error)
                    return
                await anyio.sleep(self.progress_interval)

        ticking = asyncio.create_task(tick())  # a timer, not a poll: signoff is watched
        try:
            return await self.client.wait_for_decision(
                instance_id, pending.action_id, pending.revision, proposal=proposal
            )
        finally:
            ticking.cancel()

    async def _execute(self, decision: Decision, call: ToolCall, run: Run) -> types.CallToolResult:
        """Runs the approved params upstream (the grant is spent) and reports the outcome."""
        params = dict(decision.params or {})
        try:
            result = await run(params)
        except anyio.get_cancelled_exc_class():
            await self._report(decision, call, False, "", "the MCP client cancelled the call")
            raise
        except Exception as error:  # noqa: BLE001 - the upstream failed: report it
            await self._report(decision, call, False, "", f"upstream error: {error!r}")
            return refusal(f"{call.tool} failed upstream: {error}")
        # The client has its result without waiting for the report; drain() awaits it.
        report = self._report(
            decision, call, not result.is_error, evidence_ref(result), _text(result)
        )
        task = asyncio.create_task(report)
        self._reports.add(task)
        task.add_done_callback(self._reports.discard)
        return result

    async def drain(self) -> None:
        """Waits (a bounded time) for the reports still on their way to signoff."""
        if self._reports:
            with anyio.CancelScope(shield=True), anyio.move_on_after(CLEANUP_SECONDS):
                await asyncio.gather(*self._reports, return_exceptions=True)

    async def _report(
        self, decision: Decision, call: ToolCall, succeeded: bool, ref: str, error: str
    ) -> None:
        with anyio.CancelScope(shield=True), anyio.move_on_after(CLEANUP_SECONDS):
            try:
                await self.client.report_execution(
                    decision.action_id, succeeded, ref, error_message="" if succeeded else error
                )
            except SignoffError as failure:  # the call ran: the client gets its result
                log.warning("could not report %s (%s): %s", call.tool, decision.action_id, failure)

    async def _abandon(self, call: ToolCall) -> None:
        """The client cancelled or went away while the call waited: cancel it in signoff.

        signoff has no per-action cancel, so the session's instance is cancelled (the
        next call starts a new one). Not when the proxy itself is being stopped: then the
        wait is left for the client's retry to resume."""
        instance_id = self._instance_id
        if self.detached or not instance_id:
            return
        with anyio.CancelScope(shield=True), anyio.move_on_after(CLEANUP_SECONDS):
            try:
                await self.client.cancel_instance(
                    instance_id, f"the MCP client cancelled {call.tool} while it waited"
                )
            except SignoffError as error:
                log.warning("could not cancel instance %s: %s", instance_id, error)
                return
            async with self._lock:
                self._cancelled.add(instance_id)
                if self._instance_id == instance_id:
                    self._instance_id, self._generation = "", self._generation + 1

    def _terminated(self, ended: InstanceTerminated, call: ToolCall) -> str:
        if ended.instance_id in self._cancelled:
            return f"signoff: {call.tool} was cancelled with the client's request; not run."
        if self._instance_id == ended.instance_id:
            self._ended = f"instance {ended.instance_id} was terminated: {ended.reason}"
        return (
            f"signoff ended this session (instance {ended.instance_id}): "
            f"{ended.reason or 'no reason given'}. {call.tool} was not run."
        )
