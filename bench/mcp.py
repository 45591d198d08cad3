"""What `signoff mcp-proxy` adds to an auto-approved tool call: the same read tool called
directly and through the proxy, interleaved in the same run, against a real signoff server
(SQLite, the tests' open bundle, where READ_ONLY calls are approved by policy).

    .venv/bin/python bench/mcp.py [--calls N]

Each call through the proxy is a RequestDecision, a ConsumeGrant, the upstream call and a
ReportExecution. The last line printed is one JSON object with every figure (ms).
"""

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client

from tests.support import AGENT_TOKEN, ServerProcess

ROOT = Path(__file__).resolve().parents[1]
UPSTREAM = [sys.executable, str(ROOT / "tests" / "mcp_upstream.py")]


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return round(ordered[min(len(ordered) - 1, int(len(ordered) * q))], 3)


@asynccontextmanager
async def session(command: list[str]) -> AsyncIterator[ClientSession]:
    parameters = StdioServerParameters(
        command=command[0], args=command[1:], env={"SIGNOFF_TOKEN": AGENT_TOKEN}, cwd=ROOT
    )
    async with stdio_client(parameters) as (read, write), ClientSession(read, write) as client:
        await client.initialize()
        yield client


async def timed(client: ClientSession, name: str) -> float:
    started = time.perf_counter()
    result = await client.call_tool("read_note", {"name": name})
    elapsed = (time.perf_counter() - started) * 1000
    if result.is_error:
        raise RuntimeError(f"the call failed: {result.content}")
    return elapsed


async def measure(target: str, calls: int) -> dict[str, float]:
    proxy = [sys.executable, "-m", "signoff.cli", "mcp-proxy", "--target", target]
    proxy += ["--session-key", f"bench-{time.time_ns()}", "--name", "up", "--", *UPSTREAM]
    async with session(UPSTREAM) as direct, session(proxy) as gated:
        for i in range(20):  # warm up both paths (the proxy creates its instance)
            await timed(direct, f"w{i}")
            await timed(gated, f"w{i}")
        direct_ms, gated_ms = [], []
        for i in range(calls):
            direct_ms.append(await timed(direct, f"n{i}"))
            gated_ms.append(await timed(gated, f"n{i}"))
    figures = {
        "calls": calls,
        "direct_p50_ms": percentile(direct_ms, 0.5),
        "direct_p99_ms": percentile(direct_ms, 0.99),
        "proxy_p50_ms": percentile(gated_ms, 0.5),
        "proxy_p99_ms": percentile(gated_ms, 0.99),
    }
    figures["added_p50_ms"] = round(figures["proxy_p50_ms"] - figures["direct_p50_ms"], 3)
    figures["ratio_p50"] = round(figures["proxy_p50_ms"] / figures["direct_p50_ms"], 2)
    figures["direct_mean_ms"] = round(statistics.fmean(direct_ms), 3)
    figures["proxy_mean_ms"] = round(statistics.fmean(gated_ms), 3)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=300)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="signoff-bench-mcp-") as directory:
        database = f"sqlite:///{directory}/bench.db"
        policy = ROOT / "tests" / "policies" / "open"
        with ServerProcess(database, Path(directory), policy=policy) as server:
            figures = asyncio.run(measure(server.target, args.calls))
    print(
        f"direct  p50 {figures['direct_p50_ms']} ms  p99 {figures['direct_p99_ms']} ms\n"
        f"proxy   p50 {figures['proxy_p50_ms']} ms  p99 {figures['proxy_p99_ms']} ms\n"
        f"added   p50 {figures['added_p50_ms']} ms  (ratio {figures['ratio_p50']})"
    )
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
