"""`signoff serve --workers N`: N full server processes on one port (PostgreSQL only).

The supervisor (this module, in the `signoff serve` process) migrates the database once,
reserves the gRPC and HTTP ports (SO_REUSEPORT, so that a port in use stops the start
before any worker runs, and port 0 picks one port for all), then starts N workers:
`signoff serve` again with the same options, the ports made explicit and a hidden
`--worker I`. Each worker is a whole replica (its own event loop, database pool, timers,
webhook outbox and LISTEN/NOTIFY listener), binding the same ports with SO_REUSEPORT, so
the kernel spreads connections among them; replicas already agree through the database,
so workers need nothing more.

SIGINT or SIGTERM stops all (each drains as one server does). A worker that exits on its
own takes the others down, and `signoff serve` exits 1: a supervisor such as systemd or
Kubernetes restarts the whole, rather than this one hiding a crash loop. A worker dies
with the supervisor (PR_SET_PDEATHSIG) even after a `kill -9`.

SQLite (one writer, one process) and development mode (whose tokens are generated per
process) refuse more than one worker.
"""

import contextlib
import ctypes
import logging
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence

from signoff.config import ServeOptions

log = logging.getLogger("signoff.workers")

LISTENING = "signoff listening on "
STOPPED = "signoff stopped"
# How long workers get to drain beyond the shutdown grace before they are killed.
STOP_MARGIN = 15.0
# How long the workers get to start.
START_TIMEOUT = 120.0


def refusal(options: ServeOptions) -> str | None:
    """Why these options cannot run several workers (one line), or None."""
    if options.workers <= 1:
        return None
    backend = options.database_url.split(":", 1)[0].split("+", 1)[0]
    if backend != "postgresql":
        return (
            f"--workers {options.workers} needs PostgreSQL: each worker is a replica sharing "
            f"the database, and {backend or 'this database'} is served by one process"
        )
    if options.auth_config is None:
        return (
            f"--workers {options.workers} needs --auth-config: development mode's tokens are "
            "generated per process, so each worker would accept different ones"
        )
    return None


def _reserve(host: str, port: int) -> socket.socket:
    """A socket bound (not listening) with SO_REUSEPORT on host:port: it holds the port for
    the workers and says which one port 0 picked. OSError if another program has it."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    reserved = socket.socket(family, kind, proto)
    try:
        reserved.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        reserved.bind(address)
    except OSError:
        reserved.close()
        raise
    return reserved


def _die_with_parent() -> None:
    """In the worker, before exec: SIGTERM when the supervisor dies, however it dies."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the workers outlive a killed supervisor
        pass


class _Worker:
    def __init__(self, index: int, command: list[str]) -> None:
        self.index = index
        self.ready = threading.Event()
        self.process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            text=True,
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        """The worker's standard output: its banner (metrics, HTTP, console) goes on to
        ours; its listening and stopped lines are the supervisor's to print, once."""
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if line.startswith(LISTENING):
                self.ready.set()
            elif not line.startswith(STOPPED):
                sys.stdout.write(line)
                sys.stdout.flush()

    def exited(self) -> int | None:
        return self.process.poll()

    def signal(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.process.send_signal(sig)

    def join(self) -> None:
        self._reader.join(timeout=5)


def supervise(options: ServeOptions, argv: Sequence[str], migrate: Callable[[], None]) -> int:
    """Runs options.workers workers of `signoff <argv>` until SIGINT or SIGTERM, or until
    one exits. Returns the exit status: 0 after a stop, 1 when a worker died, 2 when one
    did not start (its own log line says why)."""
    reserved: list[socket.socket] = []
    try:
        grpc_socket = _reserve(options.host, options.port)
        reserved.append(grpc_socket)
        port = grpc_socket.getsockname()[1]
        http_port: int | None = None
        if isinstance(options.http_port, int):
            http_socket = _reserve(options.http_host or options.host, options.http_port)
            reserved.append(http_socket)
            http_port = http_socket.getsockname()[1]
    except OSError as error:
        for held in reserved:
            held.close()
        log.critical("cannot listen on %s:%s: %s", options.host, options.port, error.strerror)
        return 2
    try:
        migrate()  # once, before any worker serves
        return _run(options, list(argv), port, http_port)
    finally:
        for held in reserved:
            held.close()


def _run(options: ServeOptions, argv: list[str], port: int, http_port: int | None) -> int:
    stopping = threading.Event()
    previous = {
        sig: signal.signal(sig, lambda *_: stopping.set())
        for sig in (signal.SIGINT, signal.SIGTERM)
    }
    workers: list[_Worker] = []
    status = 0
    try:
        for index in range(options.workers):
            command = [sys.executable, "-m", "signoff", *argv, "--port", str(port)]
            command += ["--worker", str(index)]
            if http_port is not None:
                command += ["--http-port", str(http_port)]
            if options.metrics_port:  # one each: worker I on metrics_port + I
                command += ["--metrics-port", str(options.metrics_port + index)]
            workers.append(_Worker(index, command))

        deadline = time.monotonic() + START_TIMEOUT
        while not all(worker.ready.is_set() for worker in workers):
            if stopping.wait(0.05):
                break
            failed = [worker for worker in workers if worker.exited() is not None]
            if failed or time.monotonic() > deadline:
                for worker in failed:
                    log.critical(
                        "worker %d did not start (exit status %s)",
                        worker.index,
                        worker.exited(),
                    )
                if not failed:
                    log.critical("the workers did not start within %ss", START_TIMEOUT)
                status = 2
                break
        if status == 0 and not stopping.is_set():
            log.info("%d workers on port %d", len(workers), port)
            print(f"{LISTENING}{options.host}:{port}", flush=True)
            status = _watch(workers, stopping)
    finally:
        _stop(workers, options.shutdown_grace + STOP_MARGIN)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    print(STOPPED, flush=True)
    return status


def _watch(workers: list[_Worker], stopping: threading.Event) -> int:
    """Until a stop is asked (0) or a worker exits on its own (1)."""
    while not stopping.wait(0.2):
        for worker in workers:
            code = worker.exited()
            if code is not None:
                log.error(
                    "worker %d (pid %d) exited with status %s: stopping the others",
                    worker.index,
                    worker.process.pid,
                    code,
                )
                return 1
    return 0


def _stop(workers: list[_Worker], patience: float) -> None:
    """SIGTERM to every worker still running; SIGKILL to any still there after `patience`."""
    for worker in workers:
        if worker.exited() is None:
            worker.signal(signal.SIGTERM)
    deadline = time.monotonic() + patience
    for worker in workers:
        try:
            worker.process.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.warning("worker %d did not stop in time: killed", worker.index)
            worker.signal(signal.SIGKILL)
            worker.process.wait()
    for worker in workers:
        worker.join()
