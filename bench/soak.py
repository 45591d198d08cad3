"""Resident memory of a server under steady RequestDecision load: RSS per 10,000 decisions.

    .venv/bin/python -m bench.soak [--decisions 50000] [--concurrency 16]

A real `signoff serve` on SQLite with the example bundle (every decision evaluates its
rules); the client runs in this process. A server that keeps a flat resident size prints
about the same figure at every step; a leak shows as a line that keeps rising. The last
line is one JSON object.
"""

import argparse
import asyncio
import json
import tempfile
import time
import uuid
from pathlib import Path

import grpc

from bench.harness import rss_mb
from signoff.v1 import execution_service_pb2 as execution_pb
from signoff.v1 import execution_service_pb2_grpc as execution_grpc
from signoff.v1 import types_pb2 as pb
from tests.support import AGENT_TOKEN, EXAMPLE_POLICY, ServerProcess, envelope, lookup_action

STEP = 10_000


async def soak(target: str, pid: int, decisions: int, concurrency: int) -> list[dict[str, float]]:
    metadata = (("authorization", f"Bearer {AGENT_TOKEN}"),)
    async with grpc.aio.insecure_channel(target) as channel:
        stub = execution_grpc.ExecutionServiceStub(channel)
        opened = await asyncio.gather(
            *(stub.InvokeAgent(envelope(runtime={}), metadata=metadata) for _ in range(concurrency))
        )
        instances = [r.instance.instance_id for r in opened]
        run, done, steps = uuid.uuid4().hex[:8], 0, []
        start = time.monotonic()
        steps.append({"decisions": 0, "rss_mb": round(rss_mb(pid), 1), "seconds": 0.0})
        print(f"{0:>8} decisions  rss {steps[0]['rss_mb']:7.1f} MB", flush=True)

        async def worker(index: int) -> None:
            nonlocal done
            n = 0
            while done < decisions:
                n += 1
                request = execution_pb.RequestDecisionRequest(
                    instance_id=instances[index], action=lookup_action(f"tc_{run}_{index}_{n}")
                )
                response = await stub.RequestDecision(request, metadata=metadata)
                assert response.outcome == pb.OUTCOME_APPROVED, response
                done += 1
                if done % STEP == 0:
                    step = {
                        "decisions": done,
                        "rss_mb": round(rss_mb(pid), 1),
                        "seconds": round(time.monotonic() - start, 1),
                    }
                    steps.append(step)
                    print(
                        f"{done:>8} decisions  rss {step['rss_mb']:7.1f} MB  ({step['seconds']} s)",
                        flush=True,
                    )

        await asyncio.gather(*(worker(i) for i in range(concurrency)))
    return steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--decisions", type=int, default=50_000)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        url = f"sqlite:///{Path(work) / 'soak.db'}"
        with ServerProcess(url, Path(work), policy=EXAMPLE_POLICY) as server:
            assert server.process is not None
            steps = asyncio.run(
                soak(server.target, server.process.pid, args.decisions, args.concurrency)
            )
    # Growth after the first step: the first 10,000 also fill caches and SQLite's page cache.
    settled = steps[1:] if len(steps) > 2 else steps
    per_decision_kb = (
        (settled[-1]["rss_mb"] - settled[0]["rss_mb"])
        * 1024
        / max(1, settled[-1]["decisions"] - settled[0]["decisions"])
    )
    print(
        json.dumps({"soak": steps, "rss_kb_per_decision_after_warmup": round(per_decision_kb, 3)})
    )


if __name__ == "__main__":
    main()
