"""Client side of bench/run: each workload runs in its own process, apart from the server.

    .venv/bin/python -m bench.load MODE < params.json    (prints one JSON object, last line)

Every mode is a client; the no-op server they are compared with is bench/bare.py.
"""

import asyncio
import json
import resource
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from bench.bare import ECHO_METHOD, HOLD_METHOD
from signoff.v1 import approval_service_pb2 as approval_pb
from signoff.v1 import approval_service_pb2_grpc as approval_grpc
from signoff.v1 import execution_service_pb2 as execution_pb
from signoff.v1 import execution_service_pb2_grpc as execution_grpc
from signoff.v1 import types_pb2 as pb
from tests.support import envelope, lookup_action, refund_action

Params = dict[str, Any]
Metadata = tuple[tuple[str, str], ...]


def auth(token: str) -> Metadata:
    return (("authorization", f"Bearer {token}"),)


def channels(target: str, count: int) -> list[grpc.aio.Channel]:
    # A local subchannel pool gives each channel its own TCP connection.
    options = [("grpc.use_local_subchannel_pool", 1)]
    return [grpc.aio.insecure_channel(target, options=options) for _ in range(count)]


async def closed_loop(
    call: Callable[[int, int], Awaitable[None]], concurrency: int, warmup: float, seconds: float
) -> Params:
    """`concurrency` workers call back to back; counts completions inside the window."""
    done = errors = 0
    start = time.monotonic() + warmup
    stop = start + seconds
    first_error = ""

    async def worker(index: int) -> None:
        nonlocal done, errors, first_error
        n = 0
        while (now := time.monotonic()) < stop:
            n += 1
            try:
                await call(index, n)
            except grpc.aio.AioRpcError as error:
                errors += 1
                first_error = first_error or f"{error.code().name}: {error.details()}"
                continue
            if now >= start:
                done += 1

    await asyncio.gather(*(worker(i) for i in range(concurrency)))
    return {"rps": done / seconds, "calls": done, "errors": errors, "first_error": first_error}


async def echo(p: Params) -> Params:
    chans = channels(p["target"], p["channels"])
    payload = b"x" * 128

    async def call(index: int, _n: int) -> None:
        await chans[index % len(chans)].unary_unary(ECHO_METHOD)(payload)

    return await closed_loop(call, p["concurrency"], p["warmup"], p["seconds"])


async def open_instances(stub: execution_grpc.ExecutionServiceStub, md: Metadata, n: int) -> list:
    calls = [
        stub.InvokeAgent(envelope(runtime={}), metadata=md) for _ in range(n)
    ]  # runtime={}: no tool-call budget, so the loop never runs out
    return [r.instance for r in await asyncio.gather(*calls)]


async def decide(p: Params) -> Params:
    chans = channels(p["target"], p["channels"])
    md = auth(p["agent"])
    stubs = [execution_grpc.ExecutionServiceStub(c) for c in chans]
    instances = await open_instances(stubs[0], md, p["instances"])
    run = uuid.uuid4().hex[:8]

    async def call(index: int, n: int) -> None:
        instance = instances[index % len(instances)]
        request = execution_pb.RequestDecisionRequest(
            instance_id=instance.instance_id, action=lookup_action(f"tc_{run}_{index}_{n}")
        )
        response = await stubs[index % len(stubs)].RequestDecision(request, metadata=md)
        assert response.outcome == pb.OUTCOME_APPROVED, response.outcome

    return await closed_loop(call, p["concurrency"], p["warmup"], p["seconds"])


async def waiting_action(
    stub: execution_grpc.ExecutionServiceStub, md: Metadata
) -> tuple[str, str, int]:
    """A new instance with one action waiting for a human: (instance_id, action_id, revision)."""
    [instance] = await open_instances(stub, md, 1)
    request = execution_pb.RequestDecisionRequest(
        instance_id=instance.instance_id, action=refund_action()
    )
    response = await stub.RequestDecision(request, metadata=md)
    assert response.outcome == pb.OUTCOME_WAITING_FOR_HUMAN, response.outcome
    return instance.instance_id, response.action_id, response.revision


async def push(p: Params) -> Params:
    """SubmitDecision on `decide_target` → ACTION_DECIDED reaches a watcher on `watch_target`."""
    agent, approver = auth(p["agent"]), auth(p["approver"])
    watch_stub = execution_grpc.ExecutionServiceStub(channels(p["watch_target"], 1)[0])
    decide_chan = channels(p["decide_target"], 1)[0]
    agent_stub = execution_grpc.ExecutionServiceStub(decide_chan)
    approval_stub = approval_grpc.ApprovalServiceStub(decide_chan)
    samples: list[float] = []
    submits: list[float] = []  # SubmitDecision's own round trip, for comparison
    deadline = time.monotonic() + p["max_seconds"]

    async def sample() -> tuple[float, float]:
        instance_id, action_id, revision = await waiting_action(agent_stub, agent)
        # From one revision back: the backlog event proves the subscription is live.
        stream = watch_stub.WatchInstance(
            execution_pb.WatchInstanceRequest(instance_id=instance_id, after_revision=revision - 1),
            metadata=agent,
        )
        iterator = stream.__aiter__()
        await iterator.__anext__()
        start = time.monotonic()
        await approval_stub.SubmitDecision(
            approval_pb.SubmitDecisionRequest(
                action_id=action_id,
                verdict=pb.VERDICT_APPROVE,
                reason="bench",
                request_id=f"bench_{uuid.uuid4().hex}",
            ),
            metadata=approver,
        )
        submitted = (time.monotonic() - start) * 1000
        async for message in iterator:
            if message.event.type == pb.EVENT_TYPE_ACTION_DECIDED:
                break
        elapsed = (time.monotonic() - start) * 1000
        stream.cancel()
        return elapsed, submitted

    for _ in range(5):  # warm up
        await sample()
    while len(samples) < p["samples"] and time.monotonic() < deadline:
        elapsed, submitted = await sample()
        samples.append(elapsed)
        submits.append(submitted)
    return {"samples_ms": samples, "submit_ms": submits}


async def watchers(p: Params) -> Params:
    """Opens `watchers` idle WatchInstance streams, says READY, holds them until stdin closes.
    With `bare_bytes`, the streams are bare grpc.aio calls (the echo server's Hold, its one
    message `bare_bytes` long) with the same channels and authorization header instead."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    md = auth(p["agent"])
    chans = channels(p["target"], p["channels"])
    stubs = [execution_grpc.ExecutionServiceStub(c) for c in chans]
    bare = p.get("bare_bytes", 0)
    holds = [c.unary_stream(HOLD_METHOD) for c in chans]
    instances = [] if bare else await open_instances(stubs[0], md, p["instances"])
    revisions = {i.instance_id: i.revision for i in instances}
    streams = []
    failed: dict[str, int] = {}
    first_bytes: list[int] = []  # the size of each stream's first message
    opened = asyncio.Semaphore(200)  # a steady ramp, not 10,000 at once

    async def watch(index: int) -> None:
        async with opened:
            if bare:
                stream = holds[index % len(holds)](str(bare).encode(), metadata=md)
            else:
                instance = instances[index % len(instances)]
                request = execution_pb.WatchInstanceRequest(
                    instance_id=instance.instance_id,
                    after_revision=revisions[instance.instance_id] - 1,
                )
                stream = stubs[index % len(stubs)].WatchInstance(request, metadata=md)
            try:
                first = await stream.read()  # the one backlog event: this stream is established
            except grpc.aio.AioRpcError as error:
                failed[error.code().name] = failed.get(error.code().name, 0) + 1
                return
            if len(first_bytes) < 100:
                first_bytes.append(len(first if bare else first.SerializeToString()))
            streams.append(stream)
            if len(streams) % 1000 == 0:
                print(f"  {len(streams)} watchers open", file=sys.stderr, flush=True)

    start = time.monotonic()
    await asyncio.gather(*(watch(i) for i in range(p["watchers"])))
    ramp = time.monotonic() - start
    print(f"READY {len(streams)} {ramp:.1f}", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    alive = sum(1 for s in streams if not s.done())
    for stream in streams:
        stream.cancel()
    return {
        "opened": len(streams),
        "alive": alive,
        "ramp_s": ramp,
        "failed": failed,
        "first_bytes": max(first_bytes, default=0),
    }


async def list_pending(p: Params) -> Params:
    stub = approval_grpc.ApprovalServiceStub(channels(p["target"], 1)[0])
    md = auth(p["approver"])
    samples: list[float] = []
    token, seen = "", 0
    for i in range(p["pages"] + 10):
        start = time.monotonic()
        response = await stub.ListPendingApprovals(
            approval_pb.ListPendingApprovalsRequest(page_size=50, page_token=token), metadata=md
        )
        if i >= 10:
            samples.append((time.monotonic() - start) * 1000)
        seen += len(response.actions)
        token = response.next_page_token  # an empty token starts over from the oldest
    return {"samples_ms": samples, "actions_seen": seen}


async def race(p: Params) -> Params:
    chans = channels(p["target"], p["channels"])
    agent = auth(p["agent"])
    agent_stub = execution_grpc.ExecutionServiceStub(chans[0])
    stubs = [approval_grpc.ApprovalServiceStub(c) for c in chans]
    winners: list[int] = []
    samples: list[float] = []
    codes: dict[str, int] = {}
    for _ in range(p["rounds"]):
        _, action_id, _ = await waiting_action(agent_stub, agent)

        async def decider(i: int, action_id: str = action_id) -> bool:
            request = approval_pb.SubmitDecisionRequest(
                action_id=action_id,
                verdict=pb.VERDICT_APPROVE if i % 2 else pb.VERDICT_REJECT,
                reason=f"decider {i}",
                request_id=f"race_{uuid.uuid4().hex}",
            )
            start = time.monotonic()
            try:
                await stubs[i % len(stubs)].SubmitDecision(request, metadata=auth(p["tokens"][i]))
                won = True
            except grpc.aio.AioRpcError as error:
                codes[error.code().name] = codes.get(error.code().name, 0) + 1
                won = False
            samples.append((time.monotonic() - start) * 1000)
            return won

        results = await asyncio.gather(*(decider(i) for i in range(len(p["tokens"]))))
        winners.append(sum(results))
    return {"winners": winners, "samples_ms": samples, "loser_codes": codes}


async def phase(name: str) -> None:
    """Tells the harness a measured phase is about to start, and waits for its go (a line on
    stdin): the harness reads the servers' counters in between."""
    print(f"READY {name}", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)


async def hotpath(p: Params) -> Params:
    """One call at a time from one client: `calls` RequestDecision (auto-approved), then
    `calls` SubmitDecision (approve, each on its own waiting action), every call preceded by
    a no-op echo call to the echo server on its own channel. Each phase follows `warmup`
    calls of its kind and is bracketed by READY/DONE lines for the harness."""
    chan = channels(p["target"], 1)[0]
    echo_call = channels(p["echo_target"], 1)[0].unary_unary(ECHO_METHOD)
    agent, approver = auth(p["agent"]), auth(p["approver"])
    stub = execution_grpc.ExecutionServiceStub(chan)
    approval_stub = approval_grpc.ApprovalServiceStub(chan)
    calls, warmup = p["calls"], p["warmup"]
    payload = b"x" * 128
    run = uuid.uuid4().hex[:8]
    # Twenty instances in turn (about 115 calls each in the full run), not all on one.
    instances = await open_instances(stub, agent, 20)

    async def interleaved(op: Callable[[int], Awaitable[None]], n: int) -> tuple[list, list]:
        mine: list[float] = []
        echoes: list[float] = []
        for i in range(n):
            start = time.monotonic()
            await echo_call(payload)
            middle = time.monotonic()
            await op(i)
            mine.append((time.monotonic() - middle) * 1000)
            echoes.append((middle - start) * 1000)
        return mine, echoes

    async def decide(i: int) -> None:
        instance = instances[i % len(instances)]
        request = execution_pb.RequestDecisionRequest(
            instance_id=instance.instance_id, action=lookup_action(f"tc_{run}_{i}_{time.time_ns()}")
        )
        response = await stub.RequestDecision(request, metadata=agent)
        assert response.outcome == pb.OUTCOME_APPROVED, response.outcome

    await interleaved(decide, warmup)
    await phase("decide")
    decide_ms, decide_echo_ms = await interleaved(decide, calls)
    print("DONE decide", flush=True)

    # Waiting actions to approve, made before the phase (16 at a time; not measured).
    waiting: list[str] = []
    gate = asyncio.Semaphore(16)

    async def make() -> None:
        async with gate:
            waiting.append((await waiting_action(stub, agent))[1])

    await asyncio.gather(*(make() for _ in range(calls + warmup)))

    async def submit(i: int) -> None:
        await approval_stub.SubmitDecision(
            approval_pb.SubmitDecisionRequest(
                action_id=waiting.pop(),
                verdict=pb.VERDICT_APPROVE,
                reason="bench",
                request_id=f"bench_{uuid.uuid4().hex}",
            ),
            metadata=approver,
        )

    await interleaved(submit, warmup)
    await phase("submit")
    submit_ms, submit_echo_ms = await interleaved(submit, calls)
    print("DONE submit", flush=True)
    return {
        "decide_ms": decide_ms,
        "decide_echo_ms": decide_echo_ms,
        "submit_ms": submit_ms,
        "submit_echo_ms": submit_echo_ms,
    }


MODES: dict[str, Callable[[Params], Awaitable[Params]]] = {
    "echo": echo,
    "decide": decide,
    "push": push,
    "watchers": watchers,
    "list_pending": list_pending,
    "race": race,
    "hotpath": hotpath,
}


def main() -> None:
    mode = sys.argv[1]
    params = json.loads(sys.stdin.readline())
    print(json.dumps(asyncio.run(MODES[mode](params))), flush=True)


if __name__ == "__main__":
    main()
