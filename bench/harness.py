"""bench/run: signoff against the physical limits of this machine, all figures from one run.

    bench/run [--quick] [--only STEP ...]

Servers are real `signoff serve` processes; every client load runs in its own process
(bench/load.py). PostgreSQL is a throwaway cluster from scripts/postgres. The last line
printed is one JSON object with every figure.
"""

import argparse
import contextlib
import dataclasses
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy import create_engine, select
from sqlalchemy.engine import make_url

from signoff.v1 import execution_service_pb2 as execution_pb
from tests.support import AGENT_TOKEN, ServerProcess, envelope, mint, refund_action

ROOT = Path(__file__).resolve().parents[1]
# A statement in PostgreSQL's log with log_statement = all (first line only).
LOGGED = re.compile(r"LOG:  (?:statement|execute [^:]*): (.*)")
Params = dict[str, Any]


@dataclass(frozen=True)
class Sizes:
    seconds: float  # each throughput window
    concurrency: int  # client coroutines for throughput
    push_samples: int
    replica_samples: int
    watchers: int
    pending: int
    pages: int
    race_rounds: int
    hotpath_calls: int  # one at a time, per kind of call (decide, submit)
    hotpath_warmup: int


QUICK = Sizes(4, 64, 200, 40, 1_000, 20_000, 300, 5, 300, 50)
FULL = Sizes(15, 64, 1_000, 200, 10_000, 1_000_000, 2_000, 20, 2_000, 200)


def say(message: str) -> None:
    print(message, flush=True)


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return round(ordered[min(len(ordered) - 1, int(len(ordered) * q))], 2)


def client(mode: str, params: Params) -> Params:
    """Runs one client load in its own process and returns its JSON answer."""
    done = subprocess.run(
        [sys.executable, "-m", "bench.load", mode],
        input=json.dumps(params) + "\n",
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"client {mode} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


Counters = dict[str, float]


def phased_client(
    mode: str, params: Params, read: Callable[[], Counters]
) -> tuple[Params, dict[str, Counters]]:
    """Runs a client load whose phases are bracketed by READY/DONE lines (bench/load.py
    `phase`): `read()` is called just before each phase starts and just after it ends, and
    the answer comes with, per phase, how far each counter moved."""
    with tempfile.TemporaryFile("w+") as errors:
        process = subprocess.Popen(
            [sys.executable, "-m", "bench.load", mode],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=errors,
            text=True,
            cwd=ROOT,
        )
        assert process.stdin is not None and process.stdout is not None
        process.stdin.write(json.dumps(params) + "\n")
        process.stdin.flush()
        moved: dict[str, Counters] = {}
        before: Counters = {}
        last = ""
        try:
            for line in process.stdout:
                word, _, name = line.strip().partition(" ")
                if word == "READY":
                    before = read()
                    process.stdin.write("\n")
                    process.stdin.flush()
                elif word == "DONE":
                    after = read()
                    moved[name] = {key: after[key] - before.get(key, 0) for key in after}
                elif line.strip():
                    last = line
        except BaseException:
            process.kill()
            process.wait()
            raise
        if process.wait() != 0:
            errors.seek(0)
            raise RuntimeError(f"client {mode} failed:\n{errors.read()[-2000:]}")
    return json.loads(last), moved


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time the process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def process_tree(pid: int) -> list[int]:
    """`pid` and every process descended from it (the workers of `signoff serve --workers`)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue  # gone meanwhile
            children.setdefault(ppid, []).append(int(entry.name))
    tree, todo = [], [pid]
    while todo:
        tree.append(todo.pop())
        todo.extend(children.get(tree[-1], []))
    return tree


def pids_first(pids: list[int]) -> Callable[[int], tuple[int, int]]:
    """A sort key: the processes of `pids` in their order, then the others by pid."""
    return lambda pid: (pids.index(pid), 0) if pid in pids else (len(pids), pid)


def tree_cpu_seconds(pids: list[int]) -> dict[int, float]:
    found = {}
    for pid in pids:
        try:
            found[pid] = cpu_seconds(pid)
        except OSError:
            found[pid] = 0.0
    return found


def backends(database: str) -> list[int]:
    """The PostgreSQL backend processes connected to `database` (by their process title)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                title = (entry / "cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if title.startswith("postgres: ") and f" {database} " in title:
                found.append(int(entry.name))
    return found


def busy(pid: int, run: Callable[[], Params]) -> tuple[Params, float]:
    """run()'s answer and the share of one core that process `pid` used meanwhile."""
    cpu, start = cpu_seconds(pid), time.monotonic()
    result = run()
    return result, (cpu_seconds(pid) - cpu) / (time.monotonic() - start)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


class Bench:
    def __init__(self, sizes: Sizes, work: Path) -> None:
        self.sizes = sizes
        self.work = work
        self.postgres = ""
        self.figures: dict[str, float | int | None] = {}
        self.servers: list[ServerProcess] = []

    # -- infrastructure ----------------------------------------------------------------------

    def start_postgres(self) -> None:
        self.work.chmod(0o755)  # scripts/postgres runs the cluster as the postgres user
        started = subprocess.run(
            [str(ROOT / "scripts" / "postgres"), "start", str(self.work / "pg")],
            capture_output=True,
            text=True,
            check=False,
        )
        if started.returncode != 0:
            raise RuntimeError(started.stderr[-2000:])
        self.postgres = started.stdout.strip().splitlines()[-1]

    def logged_statements(self, start: int, end: int) -> list[str]:
        """The statements PostgreSQL logged (log_statement = all) between two sizes of its
        log: one per simple query, BEGIN, COMMIT and the pool's empty pre-ping `;` included,
        and one per execution of an extended-protocol (prepared or not) statement."""
        with (self.work / "pg" / "postgres.log").open("rb") as log:
            log.seek(start)
            text = log.read(end - start).decode(errors="replace")
        return LOGGED.findall(text)

    def stop_postgres(self) -> None:
        if self.postgres:
            subprocess.run([str(ROOT / "scripts" / "postgres"), "stop", str(self.work / "pg")])

    def psycopg_url(self, url: str) -> str:
        return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)

    def database(self, kind: str) -> str:
        if kind == "sqlite":
            return f"sqlite:///{self.work / f'signoff-{uuid.uuid4().hex[:8]}.db'}"
        name = f"bench_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(self.psycopg_url(self.postgres), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return make_url(self.postgres).set(database=name).render_as_string(hide_password=False)

    def server(self, url: str, bookmark_interval: float = 1) -> ServerProcess:
        server = ServerProcess(url, self.work, "--bookmark-interval", str(bookmark_interval))
        self.servers.append(server.start())
        return server

    def stop_servers(self) -> None:
        for server in self.servers:
            server.stop()
        self.servers.clear()

    # -- measurements ------------------------------------------------------------------------

    @contextlib.contextmanager
    def echo_server(self) -> Iterator[tuple[int, str]]:
        """A no-op grpc.aio server (bench/bare.py) in its own process: its pid and target."""
        process = subprocess.Popen(
            [sys.executable, "-m", "bench.bare"],
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        try:
            assert process.stdout is not None
            yield process.pid, process.stdout.readline().split()[-1]
        finally:
            process.terminate()
            process.wait()

    def echo(self) -> None:
        with self.echo_server() as (pid, target):
            params = self.throughput_params(target)
            result, cpu = busy(pid, lambda: client("echo", params))
        self.figures["echo_rps"] = round(result["rps"])
        say(
            f"echo ({self.sizes.concurrency} clients): {result['rps']:.0f} calls/s "
            f"({result['errors']} errors), server at {cpu:.0%} of a core"
        )

    def throughput_params(self, target: str) -> Params:
        return {
            "target": target,
            "channels": 4,
            "concurrency": self.sizes.concurrency,
            "warmup": 1.0,
            "seconds": self.sizes.seconds,
        }

    def decide(self, kind: str, server: ServerProcess) -> None:
        assert server.process is not None
        for instances in (self.sizes.concurrency, 1):
            params = {**self.throughput_params(server.target), "agent": AGENT_TOKEN}
            params["instances"] = instances
            result, cpu = busy(server.process.pid, lambda p=params: client("decide", p))
            how = "one instance each" if instances > 1 else "all on one instance"
            say(
                f"decide ({kind}, {self.sizes.concurrency} clients, {how}): "
                f"{result['rps']:.0f} calls/s ({result['errors']} errors), "
                f"server at {cpu:.0%} of a core {result['first_error']}"
            )
            if instances > 1:
                self.figures[f"decide_rps_{kind}"] = round(result["rps"])

    def hotpath(self) -> None:
        """Issue 14's one-at-a-time figures: on SQLite (the unsuffixed keys), then on
        PostgreSQL (`_postgres`, and the statements per call)."""
        with self.echo_server() as (echo_pid, echo_target):
            for kind in ("sqlite", "postgres"):
                try:
                    self.hotpath_on(kind, echo_pid, echo_target)
                finally:
                    self.stop_servers()

    def hotpath_on(self, kind: str, echo_pid: int, echo_target: str) -> None:
        url = self.database(kind)
        name = make_url(url).database or ""
        postgres = kind == "postgres"
        if postgres:  # this database's sessions only: the other steps' log nothing
            with psycopg.connect(self.psycopg_url(self.postgres), autocommit=True) as conn:
                conn.execute(f"ALTER DATABASE \"{name}\" SET log_statement = 'all'")
        server = self.server(url)
        assert server.process is not None
        pids = process_tree(server.process.pid)
        log = self.work / "pg" / "postgres.log"
        marks: list[int] = []  # the log's size at each read: idle, decide, submit windows

        def read() -> Counters:
            counters = {
                "seconds": time.monotonic(),
                "server_cpu": sum(tree_cpu_seconds(pids).values()),
                "echo_cpu": cpu_seconds(echo_pid),
            }
            if postgres:
                counters["postgres_cpu"] = sum(tree_cpu_seconds(backends(name)).values())
                marks.append(log.stat().st_size)
            return counters

        # What the idle server does on its own (timers, bookmarks, NOTIFY heartbeats).
        start = read()
        time.sleep(2)
        end = read()
        idle = {key: (end[key] - start[key]) / (end["seconds"] - start["seconds"]) for key in end}
        calls = self.sizes.hotpath_calls
        result, moved = phased_client(
            "hotpath",
            {
                "target": server.target,
                "echo_target": echo_target,
                "agent": AGENT_TOKEN,
                "approver": mint("bench_approver"),
                "calls": calls,
                "warmup": self.sizes.hotpath_warmup,
            },
            read,
        )
        suffix = "" if kind == "sqlite" else "_postgres"
        echo_cpu = (moved["decide"]["echo_cpu"] + moved["submit"]["echo_cpu"]) / (2 * calls)
        say(
            f"hot path ({kind}, {calls} calls of each kind one at a time after "
            f"{self.sizes.hotpath_warmup}, each after an echo call; idle server "
            f"{idle['server_cpu']:.1%} of a core):"
        )
        for index, call in enumerate(("decide", "submit")):
            mine = percentile(result[f"{call}_ms"], 0.5)
            echo = percentile(result[f"{call}_echo_ms"], 0.5)
            cpu_ms = moved[call]["server_cpu"] / calls * 1000
            line = (
                f"  {call}: p50 {mine} ms, echo p50 {echo} ms (ratio {mine / echo:.2f}), "
                f"p99 {percentile(result[f'{call}_ms'], 0.99)} ms; server CPU {cpu_ms:.2f} ms "
                f"a call (echo server {moved[call]['echo_cpu'] / calls * 1000:.2f} ms)"
            )
            if postgres:
                line += f", PostgreSQL backends {moved[call]['postgres_cpu'] / calls * 1000:.2f} ms"
            say(line)
            self.figures[f"{call}_p50_ratio{suffix}"] = round(mine / echo, 2)
            self.figures[f"{call}_p50_ms{suffix}"] = mine
            self.figures[f"{call}_cpu_ms{suffix}"] = round(cpu_ms, 2)
            if call == "decide":
                self.figures[f"echo_p50_ms{suffix}"] = echo
            if postgres:
                self.count_statements(call, calls, marks, index, idle, moved[call]["seconds"])
        if kind == "sqlite":
            self.figures["echo_cpu_ms"] = round(echo_cpu * 1000, 3)
        say(f"  echo server CPU per echo call: {echo_cpu * 1000:.3f} ms")

    def count_statements(
        self, call: str, calls: int, marks: list[int], index: int, idle: Counters, seconds: float
    ) -> None:
        """statements_per_<call>: what the server sent in the phase's window, less what the
        idle server sends in as long (its own timers and heartbeats), per call."""
        statements = self.logged_statements(marks[2 + 2 * index], marks[3 + 2 * index])
        idle_rate = len(self.logged_statements(marks[0], marks[1])) / idle["seconds"]
        background = idle_rate * seconds
        per_call = (len(statements) - background) / calls
        self.figures[f"statements_per_{call}"] = round(per_call, 2)
        say(
            f"  {call}: {per_call:.2f} statements a call ({len(statements)} logged in the "
            f"window, less {background:.1f} at the idle rate), by text:"
        )
        counted: dict[str, int] = {}
        for text in statements:
            key = " ".join(text.split())[:100]
            counted[key] = counted.get(key, 0) + 1
        for text, n in sorted(counted.items(), key=lambda item: -item[1])[:15]:
            say(f"    {n / calls:5.2f}  {text}")

    def race(self, kind: str, server: ServerProcess) -> tuple[int, float]:
        tokens = [mint(f"approver_{i}") for i in range(50)]
        result = client(
            "race",
            {
                "target": server.target,
                "channels": 4,
                "agent": AGENT_TOKEN,
                "tokens": tokens,
                "rounds": self.sizes.race_rounds,
            },
        )
        winners = result["winners"]
        p99 = percentile(result["samples_ms"], 0.99)
        say(
            f"race ({kind}, 50 deciders x {len(winners)} rounds): winners per round {winners}, "
            f"p50 {percentile(result['samples_ms'], 0.5)} ms, p99 {p99} ms, "
            f"losers {result['loser_codes']}"
        )
        odd = [w for w in winners if w != 1]
        return (odd[0] if odd else 1), p99

    def push(self, watch: ServerProcess, decide: ServerProcess, samples: int) -> Params:
        result = client(
            "push",
            {
                "watch_target": watch.target,
                "decide_target": decide.target,
                "agent": AGENT_TOKEN,
                "approver": mint("bench_approver"),
                "samples": samples,
                "max_seconds": self.sizes.seconds * 4,
            },
        )
        ms, submit = result["samples_ms"], result["submit_ms"]
        return {
            "n": len(ms),
            "p50": percentile(ms, 0.5),
            "p99": percentile(ms, 0.99),
            "submit": f"SubmitDecision alone p50 {percentile(submit, 0.5)} ms, "
            f"p99 {percentile(submit, 0.99)} ms",
        }

    def watchers(self, server: ServerProcess) -> None:
        count = self.sizes.watchers
        assert server.process is not None
        params = {
            "target": server.target,
            "channels": 20,
            "agent": AGENT_TOKEN,
            "instances": max(10, count // 100),
            "watchers": count,
        }
        signoff, result = self.hold_streams(server.process.pid, params, "watchers")
        signoff_per = result["per_stream_kb"]
        self.figures["rss_mb_10k_watchers"] = signoff
        # The same streams on a bare grpc.aio server: same client, channels, authorization
        # header and size of first message, a generic handler that then waits forever.
        with self.echo_server() as (pid, target):
            params = {**params, "target": target, "bare_bytes": result["first_bytes"]}
            bare, result = self.hold_streams(pid, params, "bare grpc.aio streams")
        self.figures["rss_mb_10k_bare_streams"] = bare
        say(
            f"  10,000 streams: signoff {signoff:.0f} MB, bare grpc.aio {bare:.0f} MB "
            f"(ratio {signoff / bare:.2f}; target ≤ 1.10); per stream {signoff_per:.1f} KB "
            f"against {result['per_stream_kb']:.1f} KB"
        )

    def hold_streams(self, pid: int, params: Params, label: str) -> tuple[float, Params]:
        """RSS of server process `pid` holding `params['watchers']` idle streams, scaled to
        10,000 streams, and the client's answer."""
        count = params["watchers"]
        idle = rss_mb(pid)
        process = subprocess.Popen(
            [sys.executable, "-m", "bench.load", "watchers"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        assert process.stdin is not None and process.stdout is not None
        process.stdin.write(json.dumps(params) + "\n")
        process.stdin.flush()
        ready = process.stdout.readline().split()
        if not ready or ready[0] != "READY":
            process.kill()
            raise RuntimeError(f"{label} did not open: {ready}")
        time.sleep(2)  # let the server settle
        held = max(rss_mb(pid) for _ in range(3) if time.sleep(0.2) is None)
        process.stdin.write("\n")
        process.stdin.flush()
        result = json.loads(process.stdout.read().strip().splitlines()[-1])
        process.wait()
        per = (held - idle) * 1024 / max(1, count)
        say(
            f"{label}: {result['opened']} streams opened in {result['ramp_s']:.1f} s "
            f"(failed: {result['failed'] or 'none'}), {result['alive']} still open, first "
            f"message {result['first_bytes']} bytes; server RSS {idle:.0f} MB idle → "
            f"{held:.0f} MB ({per:.1f} KB per stream)"
        )
        result["per_stream_kb"] = per
        scale = 10_000 / max(1, result["opened"])
        figure = round(idle + (held - idle) * scale, 1)
        if scale != 1:
            say(f"  (quick: extrapolated to 10,000 streams: {figure:.0f} MB)")
        return figure, result

    def seed_pending(self, server: ServerProcess, url: str, count: int) -> None:
        """`count` waiting actions, each in its own instance, copied from one real one.

        Copy g renames the instance (instance_id, request_id) and the action (action_id) with
        a suffix `_g`, and gets a copy of each event of the original instance. A write or a
        list checks an instance row against its newest event and an action row against the
        event that last changed it (their `instance_seal` and `action_seal`, hashes over the
        row's fields ids included): those two seals are computed for each copy with signoff's
        own functions, so the server reads the copies as it reads real rows. The rest of
        each copied event (its hash, prev_hash) is the original's: VerifyChain would flag the
        copies, the hot paths do not recompute chain hashes."""
        stubs = server.stubs()
        instance = stubs.execution.InvokeAgent(envelope()).instance
        waiting = stubs.execution.RequestDecision(
            execution_pb.RequestDecisionRequest(
                instance_id=instance.instance_id, action=refund_action()
            )
        )
        start = time.monotonic()
        seals = self.copy_seals(url, instance.instance_id, waiting.action_id, count - 1)
        say(f"  computed {len(seals):,} pairs of seals in {time.monotonic() - start:.0f} s")
        renamed = {
            "instances": {"instance_id", "request_id"},
            "actions": {"instance_id", "action_id"},
            "events": {"instance_id"},
        }
        with psycopg.connect(self.psycopg_url(url), autocommit=True) as conn:
            conn.execute(
                "CREATE TEMPORARY TABLE bench_seals "
                "(g integer PRIMARY KEY, instance_seal text, action_seal text)"
            )
            with conn.cursor().copy("COPY bench_seals FROM STDIN") as copy:
                for g, (instance_seal, action_seal) in enumerate(seals, start=1):
                    copy.write_row((g, instance_seal, action_seal))
            for table, key in (
                ("instances", instance.instance_id),
                ("actions", waiting.action_id),
                ("events", instance.instance_id),
            ):
                columns = [
                    row[0]
                    for row in conn.execute(
                        "SELECT column_name FROM information_schema.columns "
                        "WHERE table_name = %s AND column_name <> 'seq' ORDER BY ordinal_position",
                        (table,),
                    )
                ]
                g = "s.g" if table == "events" else "g"
                values = [
                    f"t.{c} || '_' || {g}" if c in renamed[table] else f"t.{c}" for c in columns
                ]
                if table == "events":
                    values = [
                        # The original action's events name its copy; the sealing events
                        # carry the copy's seals.
                        "CASE WHEN t.action_id = %(action)s THEN t.action_id || '_' || s.g "
                        "ELSE t.action_id END"
                        if c == "action_id"
                        else "CASE WHEN t.revision = i.revision THEN s.instance_seal "
                        "ELSE t.instance_seal END"
                        if c == "instance_seal"
                        else "CASE WHEN t.revision = a.event_revision THEN s.action_seal "
                        "ELSE t.action_seal END"
                        if c == "action_seal"
                        else value
                        for c, value in zip(columns, values, strict=True)
                    ]
                    source = (
                        "events t JOIN instances i ON i.instance_id = t.instance_id "
                        "JOIN actions a ON a.action_id = %(action)s "
                        "CROSS JOIN bench_seals s"
                    )
                    order = "s.g, t.revision"
                    where = "t.instance_id = %(key)s"
                else:
                    source, order = f"{table} t, generate_series(1, %(copies)s) g", "g"
                    where = f"t.{'action_id' if table == 'actions' else 'instance_id'} = %(key)s"
                conn.execute(
                    f"INSERT INTO {table} ({', '.join(columns)}) "
                    f"SELECT {', '.join(values)} "
                    f"FROM {source} WHERE {where} ORDER BY {order}",
                    {"copies": count - 1, "key": key, "action": waiting.action_id},
                )
            conn.execute("VACUUM ANALYZE instances")
            conn.execute("VACUUM ANALYZE actions")
            conn.execute("VACUUM ANALYZE events")
            waiting_rows = conn.execute(
                "SELECT count(*) FROM actions WHERE state = 'WAITING_FOR_HUMAN'"
            ).fetchone()
        say(
            f"  seeded {waiting_rows[0] if waiting_rows else 0:,} waiting actions "
            f"in {time.monotonic() - start:.0f} s"
        )

    def copy_seals(
        self, url: str, instance_id: str, action_id: str, copies: int
    ) -> list[tuple[str, str]]:
        """(instance_seal, action_seal) of copies 1..`copies` of the instance and action."""
        # Imported here: the store is signoff's to change, and only this step needs it.
        from signoff.domain import chain
        from signoff.store import repository, schema

        engine = create_engine(url)
        try:
            with engine.connect() as conn:
                instance_row = conn.execute(
                    select(schema.instances).where(schema.instances.c.instance_id == instance_id)
                ).one()
                action_row = conn.execute(
                    select(schema.actions).where(schema.actions.c.action_id == action_id)
                ).one()
        finally:
            engine.dispose()
        instance = repository.INSTANCES.of(instance_row)
        action = repository.ACTIONS.of(action_row)

        def exact(g: int) -> tuple[str, str]:
            copy_id = f"{instance_id}_{g}"
            return (
                chain.seal(
                    chain.instance_fields(
                        dataclasses.replace(
                            instance, instance_id=copy_id, request_id=f"{instance.request_id}_{g}"
                        )
                    )
                ),
                chain.seal(
                    chain.action_fields(
                        dataclasses.replace(
                            action, action_id=f"{action_id}_{g}", instance_id=copy_id
                        )
                    )
                ),
            )

        # chain.seal of a copy costs about 150 µs (JSON of the envelope and the action), 150 s
        # for a million. The fast path hashes the original's sealed text with the ids
        # substituted, and is used only if it gives chain.seal's answer for sample copies.
        marks = {"instance": "BENCH-MARK-INSTANCE", "request": "BENCH-MARK-REQUEST"}
        marks["action"] = "BENCH-MARK-ACTION"

        def text(fields: dict[str, Any]) -> str:
            plain = getattr(chain, "_plain", lambda value: value)  # if it goes: exact only
            return json.dumps(plain(fields), sort_keys=True, separators=(",", ":"), allow_nan=False)

        instance_text = text(
            chain.instance_fields(
                dataclasses.replace(
                    instance, instance_id=marks["instance"], request_id=marks["request"]
                )
            )
        )
        action_text = text(
            chain.action_fields(
                dataclasses.replace(
                    action, action_id=marks["action"], instance_id=marks["instance"]
                )
            )
        )

        def fast(g: int) -> tuple[str, str]:
            copy_id = f"{instance_id}_{g}"
            sealed_instance = instance_text.replace(marks["instance"], copy_id).replace(
                marks["request"], f"{instance.request_id}_{g}"
            )
            sealed_action = action_text.replace(marks["instance"], copy_id).replace(
                marks["action"], f"{action_id}_{g}"
            )
            return (
                "sha256:" + hashlib.sha256(sealed_instance.encode()).hexdigest(),
                "sha256:" + hashlib.sha256(sealed_action.encode()).hexdigest(),
            )

        samples = sorted({1, 2, max(1, copies // 2), copies})
        seal = fast if all(fast(g) == exact(g) for g in samples) else exact
        if seal is exact:
            say("  (seals: the fast path disagrees with chain.seal; computing each copy's)")
        return [seal(g) for g in range(1, copies + 1)]

    def list_pending(self) -> None:
        url = self.database("postgres")
        server = self.server(url)
        count = self.sizes.pending
        say(f"list pending: seeding {count:,} waiting actions in PostgreSQL…")
        self.seed_pending(server, url, count)
        result = client(
            "list_pending",
            {
                "target": server.target,
                "approver": mint("bench_approver"),
                "pages": self.sizes.pages,
            },
        )
        ms = result["samples_ms"]
        p50, p99 = percentile(ms, 0.5), percentile(ms, 0.99)
        say(
            f"list pending ({count:,} waiting, page_size 50, {len(ms)} pages): "
            f"p50 {p50} ms, p99 {p99} ms ({result['actions_seen']:,} actions listed)"
        )
        self.figures["list_pending_p99_ms_1m"] = p99
        self.stop_servers()

    # -- the run -----------------------------------------------------------------------------

    def step(self, name: str, run: Callable[[], None]) -> None:
        say(f"[{time.strftime('%H:%M:%S')}] {name}")
        try:
            run()
        except Exception as error:  # noqa: BLE001 -- one broken step must not hide the rest
            say(f"  {name} FAILED: {error}")
            self.stop_servers()

    def sqlite(self) -> None:
        server = self.server(self.database("sqlite"))
        self.decide("sqlite", server)
        winners, p99 = self.race("sqlite", server)
        say(f"  (sqlite race, not in the JSON: winners {winners}, p99 {p99} ms)")
        self.stop_servers()

    def postgres_one(self) -> None:
        server = self.server(self.database("postgres"))
        self.decide("postgres", server)
        winners, p99 = self.race("postgres", server)
        self.figures["race_winners"], self.figures["race_p99_ms"] = winners, p99
        push = self.push(server, server, self.sizes.push_samples)
        say(
            f"push (one server, {push['n']} samples, one at a time): p50 {push['p50']} ms, "
            f"p99 {push['p99']} ms ({push['submit']})"
        )
        self.figures["push_p50_ms"], self.figures["push_p99_ms"] = push["p50"], push["p99"]
        self.stop_servers()

    def replicas(self) -> None:
        url = self.database("postgres")
        first, second = self.server(url), self.server(url)
        push = self.push(first, second, self.sizes.replica_samples)
        say(
            f"push (watch on replica A, decide on replica B, --bookmark-interval 1, "
            f"{push['n']} samples, one at a time): p50 {push['p50']} ms, p99 {push['p99']} ms "
            f"({push['submit']})"
        )
        self.figures["push_p99_ms_replicas"] = push["p99"]
        self.stop_servers()

    def watch_memory(self) -> None:
        # The server's default bookmark interval (15 s): these streams are idle.
        self.watchers(self.server(self.database("postgres"), bookmark_interval=15))
        self.stop_servers()

    def workers(self) -> None:
        """RequestDecision throughput of `signoff serve --workers N` on PostgreSQL (N
        processes on one port, SO_REUSEPORT), CPU summed over the server's process tree."""
        for count in (1, 2):
            key = f"decide_rps_postgres_workers_{count}"
            self.figures[key] = None
            server = ServerProcess(
                self.database("postgres"),
                self.work,
                "--bookmark-interval",
                "1",
                "--workers",
                str(count),
            )
            try:
                server.start()
            except RuntimeError:
                assert server.process is not None
                code = server.process.wait()
                log = server.log_path.read_text()
                if code == 2 and "--workers" in log:  # argparse: no such option (yet)
                    say(f"  workers: `signoff serve --workers` is not there yet: {key} null")
                    say("    " + log.strip().splitlines()[-1])
                    return
                raise
            self.servers.append(server)
            assert server.process is not None
            time.sleep(1)  # every worker listening
            pids = process_tree(server.process.pid)
            # Connections are spread over the workers by the kernel (a hash of the four-tuple),
            # so there are 16 of them for every N, not the 4 of decide_rps_postgres.
            params = {
                **self.throughput_params(server.target),
                "agent": AGENT_TOKEN,
                "instances": self.sizes.concurrency,
                "channels": 16,
            }
            before, start = tree_cpu_seconds(pids), time.monotonic()
            result = client("decide", params)
            elapsed = time.monotonic() - start
            # A worker that started late counts from its start.
            pids = sorted(set(pids) | set(process_tree(server.process.pid)), key=pids_first(pids))
            after = tree_cpu_seconds(pids)
            shares = [f"{(after[p] - before.get(p, 0)) / elapsed:.0%}" for p in pids]
            echo = self.figures.get("echo_rps")
            ratio = f", {result['rps'] / echo:.3f} x echo_rps" if echo else ""
            say(
                f"decide (postgres, --workers {count}, {len(pids)} processes, "
                f"{self.sizes.concurrency} clients on 16 connections): {result['rps']:.0f} "
                f"calls/s{ratio} ({result['errors']} errors {result['first_error']}), "
                f"server CPU {sum(after.values()) - sum(before.values()):.1f} s in "
                f"{elapsed:.1f} s, by process (parent first) {' '.join(shares)}"
            )
            self.figures[key] = round(result["rps"])
            self.stop_servers()
            # A worker that outlives its server would hold the port and skew later steps.
            for pid in pids:
                try:
                    alive = "signoff.cli" in Path(f"/proc/{pid}/cmdline").read_text()
                except OSError:
                    continue
                if alive:
                    say(f"  workers: process {pid} outlived its server; terminating it")
                    os.kill(pid, signal.SIGTERM)

    def run(self, only: list[str]) -> None:
        say(f"machine: {os.cpu_count()} CPUs; sizes: {self.sizes}")
        self.step("PostgreSQL", self.start_postgres)
        for name, step in STEPS.items():
            if not only or name in only:
                self.step(name, lambda step=step: step(self))


STEPS: dict[str, Callable[[Bench], None]] = {
    "echo": Bench.echo,
    "sqlite": Bench.sqlite,
    "postgres": Bench.postgres_one,
    "replicas": Bench.replicas,
    "watchers": Bench.watch_memory,
    "pending": Bench.list_pending,
    "hotpath": Bench.hotpath,
    "workers": Bench.workers,
}


def verdicts(figures: dict[str, float | int | None]) -> None:
    """Each figure against issue 14's target (ratios to echo taken in the same run)."""
    echo = figures.get("echo_rps")
    bare = figures.get("rss_mb_10k_bare_streams")

    def under(limit: float) -> Callable[[float], bool]:
        return lambda v: v <= limit

    def of_echo(v: float) -> bool:
        return bool(echo) and v >= 0.4 * echo

    targets: list[tuple[str, str, Callable[[float], bool] | None]] = [
        ("echo_rps", "(the ceiling)", None),
        ("decide_rps_sqlite", "≥ 0.4 x echo_rps", of_echo),
        ("decide_rps_postgres", "≥ 0.4 x echo_rps", of_echo),
        ("decide_rps_postgres_workers_1", "(printed per N)", None),
        ("decide_rps_postgres_workers_2", "(printed per N)", None),
        ("decide_p50_ratio", "≤ 2 (x echo p50)", under(2)),
        ("decide_p50_ratio_postgres", "≤ 2 (x echo p50)", under(2)),
        ("decide_cpu_ms", "≤ 1.5", under(1.5)),
        ("decide_cpu_ms_postgres", "≤ 1.5", under(1.5)),
        ("submit_cpu_ms", "≤ 2", under(2)),
        ("submit_cpu_ms_postgres", "≤ 2", under(2)),
        ("echo_cpu_ms", "(the floor)", None),
        ("statements_per_decide", "≤ 5", under(5)),
        ("statements_per_submit", "≤ 8", under(8)),
        ("push_p50_ms", "≤ 2", under(2)),
        ("push_p99_ms", "≤ 10", under(10)),
        ("push_p99_ms_replicas", "≤ 15", under(15)),
        ("rss_mb_10k_watchers", "≤ 1.1 x bare", lambda v: bool(bare) and v <= 1.1 * bare),
        ("rss_mb_10k_bare_streams", "(the floor)", None),
        ("list_pending_p99_ms_1m", "≤ 20", under(20)),
        ("race_winners", "= 1", lambda v: v == 1),
        ("race_p99_ms", "≤ 30", under(30)),
    ]
    say(f"\n{'figure':<30} {'value':<10} {'target':<28} verdict")
    for key, target, met in targets:
        value = figures.get(key)
        if value is None:
            verdict = "not measured"
        elif met is None:
            verdict = ""
        else:
            verdict = "met" if met(value) else "MISSED"
        if key.startswith("decide_rps") and echo and value is not None:
            target += f" ({value / echo:.2f}x)"
        if key == "rss_mb_10k_watchers" and bare and value is not None:
            target += f" ({value / bare:.2f}x)"
        say(f"{key:<30} {value!s:<10} {target:<28} {verdict}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes, about five minutes")
    parser.add_argument("--only", nargs="*", default=[], choices=list(STEPS), help="some steps")
    args = parser.parse_args()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="signoff-bench-", dir="/tmp") as work:
        bench = Bench(QUICK if args.quick else FULL, Path(work))
        try:
            bench.run(args.only)
        finally:
            bench.stop_servers()
            bench.stop_postgres()
    keys = [
        "echo_rps",
        "decide_rps_sqlite",
        "decide_rps_postgres",
        "push_p50_ms",
        "push_p99_ms",
        "push_p99_ms_replicas",
        "rss_mb_10k_watchers",
        "list_pending_p99_ms_1m",
        "race_winners",
        "race_p99_ms",
        # issue 14
        "decide_p50_ratio",
        "decide_p50_ms",
        "echo_p50_ms",
        "submit_p50_ratio",
        "submit_p50_ms",
        "decide_cpu_ms",
        "submit_cpu_ms",
        "echo_cpu_ms",
        "decide_p50_ratio_postgres",
        "decide_p50_ms_postgres",
        "echo_p50_ms_postgres",
        "submit_p50_ratio_postgres",
        "submit_p50_ms_postgres",
        "decide_cpu_ms_postgres",
        "submit_cpu_ms_postgres",
        "statements_per_decide",
        "statements_per_submit",
        "rss_mb_10k_bare_streams",
        "decide_rps_postgres_workers_1",
        "decide_rps_postgres_workers_2",
    ]
    verdicts(bench.figures)
    say(f"\n{'quick' if args.quick else 'full'} run took {time.monotonic() - started:.0f} s")
    print(json.dumps({key: bench.figures.get(key) for key in keys}), flush=True)


if __name__ == "__main__":
    main()
