"""The container image, checked without a Docker engine.

The Dockerfile is parsed here (a small parser: no dependency for it) and its promises are
checked: multi-stage, a non-root numeric user, the data volume, the port, the health check,
`signoff serve` as the entrypoint, and a build context (.dockerignore) that holds every file
it copies. Then the image's command runs as the image would run it, with the image's
environment, in this virtualenv: `signoff serve` must come up, the Dockerfile's own
HEALTHCHECK command must pass, and fail once the server has stopped.
"""

import json
import os
import queue
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from signoff.config import ENV_PREFIX, ServeOptions
from tests.support import AUTH_CONFIG

ROOT = Path(__file__).parents[2]
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
# The image's PATH starts with its virtualenv's bin; here that is this virtualenv's.
BIN = Path(sys.executable).parent
START_TIMEOUT = 60.0


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str


def parse_dockerfile(text: str) -> list[list[Instruction]]:
    """The instructions of each build stage, in order (FROM opens a stage).

    Enough of Dockerfile syntax for ours: comments (also inside continued lines), `\\`
    line continuations, KEYWORD arguments. Parser directives are comments here.
    """
    stages: list[list[Instruction]] = []
    logical = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            logical += line[:-1] + " "
            continue
        keyword, _, args = (logical + line).partition(" ")
        logical = ""
        instruction = Instruction(keyword.upper(), args.strip())
        if instruction.keyword == "FROM":
            stages.append([])
        assert stages, f"{instruction.keyword} before the first FROM"
        stages[-1].append(instruction)
    assert not logical, "the Dockerfile ends inside a continued line"
    return stages


def split_flags(args: str) -> tuple[dict[str, str], str]:
    """`--from=builder --chown=x src dst` -> ({"from": "builder", ...}, "src dst")."""
    found: dict[str, str] = {}
    rest = args
    while rest.startswith("--"):
        flag, _, rest = rest.partition(" ")
        name, _, value = flag[2:].partition("=")
        found[name] = value
        rest = rest.lstrip()
    return found, rest


def exec_form(args: str) -> list[str]:
    command = json.loads(args)
    assert isinstance(command, list), f"not the exec (JSON) form: {args}"
    assert all(isinstance(part, str) for part in command), args
    return command


def seconds(duration: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m|h)", duration)
    assert match, f"unsupported duration {duration}"
    return float(match[1]) * units[match[2]]


def only(stage: list[Instruction], keyword: str) -> Instruction:
    found = [i for i in stage if i.keyword == keyword]
    assert len(found) == 1, f"expected one {keyword} in the final stage, found {len(found)}"
    return found[0]


STAGES = parse_dockerfile(DOCKERFILE.read_text())
FINAL = STAGES[-1]


def image_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for instruction in FINAL:
        if instruction.keyword == "ENV":
            for pair in shlex.split(instruction.args):
                name, equals, value = pair.partition("=")
                assert equals, f"use ENV NAME=VALUE: {instruction.args}"
                env[name] = value
    return env


def copies(stage: list[Instruction]) -> Iterator[tuple[dict[str, str], list[str], str]]:
    for instruction in stage:
        if instruction.keyword in ("COPY", "ADD"):
            flags, rest = split_flags(instruction.args)
            parts = exec_form(rest) if rest.startswith("[") else rest.split()
            assert len(parts) >= 2, instruction
            yield flags, parts[:-1], parts[-1]


def healthcheck() -> tuple[dict[str, str], list[str]]:
    flags, rest = split_flags(only(FINAL, "HEALTHCHECK").args)
    keyword, _, command = rest.partition(" ")
    assert keyword.upper() == "CMD", "HEALTHCHECK must run a command (HEALTHCHECK CMD …)"
    return flags, exec_form(command)


# .dockerignore, the way Docker reads it (moby/patternmatcher): `*` and `?` stay within a
# path segment, `**` spans segments, a pattern also excludes everything under a directory it
# matches, `!` re-includes, and the last matching pattern decides.


def _dockerignore_regex(pattern: str) -> re.Pattern[str]:
    out, i = "", 0
    while i < len(pattern):
        char = pattern[i]
        if pattern.startswith("**", i):
            i += 2
            if pattern.startswith("/", i):
                i += 1
            out += ".*" if i == len(pattern) else "(.*/)?"
            continue
        if char == "*":
            out += "[^/]*"
        elif char == "?":
            out += "[^/]"
        elif char in ".+()|{}$^":
            out += "\\" + char
        else:
            out += char
        i += 1
    return re.compile(f"^{out}$")


def dockerignore() -> list[tuple[bool, re.Pattern[str]]]:
    patterns = []
    for raw in DOCKERIGNORE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        include = line.startswith("!")
        cleaned = os.path.normpath(line.removeprefix("!").strip()).lstrip("/")
        patterns.append((include, _dockerignore_regex(cleaned)))
    return patterns


def in_context(path: str, patterns: list[tuple[bool, re.Pattern[str]]]) -> bool:
    parts = path.split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    sent = True
    for include, regex in patterns:
        if any(regex.match(prefix) for prefix in prefixes):
            sent = include
    return sent


# What the Dockerfile promises.


def test_dockerfile_is_multi_stage_on_python_slim() -> None:
    assert len(STAGES) >= 2
    names = []
    for stage in STAGES:
        image, *alias = stage[0].args.split()
        assert re.fullmatch(r"python:3\.1[12]-slim(-\w+)?", image), image
        names += [alias[1]] if alias and alias[0].upper() == "AS" else []
    # The final stage takes the built virtualenv from an earlier stage, not the sources.
    sources = [flags["from"] for flags, _, _ in copies(FINAL) if "from" in flags]
    assert sources, "the final stage copies nothing from the builder"
    assert set(sources) <= set(names), (sources, names)


def test_final_stage_runs_as_a_numeric_non_root_user() -> None:
    user, _, group = only(FINAL, "USER").args.partition(":")
    # Numeric, so a runtime (Kubernetes runAsNonRoot) can tell it is not root.
    assert user.isdigit() and int(user) != 0, user
    assert not group or (group.isdigit() and int(group) != 0), group


def test_final_stage_declares_volume_port_workdir_and_entrypoint() -> None:
    volume = only(FINAL, "VOLUME").args
    volumes = exec_form(volume) if volume.startswith("[") else volume.split()
    assert "/data" in volumes
    assert "50051" in [port.split("/")[0] for port in only(FINAL, "EXPOSE").args.split()]
    assert only(FINAL, "WORKDIR").args == "/data"
    assert exec_form(only(FINAL, "ENTRYPOINT").args) == ["signoff"]
    assert exec_form(only(FINAL, "CMD").args) == ["serve"]
    # `docker stop` sends SIGTERM, on which the server drains and stops.
    stop = [i.args for i in FINAL if i.keyword == "STOPSIGNAL"]
    assert stop in ([], ["SIGTERM"])


def test_image_environment_configures_the_server() -> None:
    env = image_env()
    assert env["SIGNOFF_HOST"] == "0.0.0.0"
    assert env["SIGNOFF_PORT"] == "50051"
    assert env["SIGNOFF_DATABASE_URL"] == "sqlite:////data/signoff.db"
    assert env["SIGNOFF_AUTH_CONFIG"] == "/etc/signoff/auth.yaml"
    # The policy bundle is copied where SIGNOFF_POLICY points.
    assert env["SIGNOFF_POLICY"] in [dest for _, _, dest in copies(FINAL)]
    # The virtualenv copied from the builder comes first on PATH (signoff, python).
    venvs = [dest for flags, _, dest in copies(FINAL) if "from" in flags]
    assert env["PATH"].split(":")[0] in [f"{venv.rstrip('/')}/bin" for venv in venvs]
    # Every SIGNOFF_* variable the image sets is one the server reads.
    for name in env:
        if name.startswith(ENV_PREFIX):
            option = name.removeprefix(ENV_PREFIX).lower()
            assert option in ServeOptions.model_fields, f"the server does not read {name}"


def test_healthcheck_is_bounded_and_needs_only_the_virtualenv() -> None:
    flags, command = healthcheck()
    for option in ("interval", "timeout", "start-period", "retries"):
        assert option in flags, f"HEALTHCHECK --{option}"
    assert seconds(flags["timeout"]) <= 30
    assert command[:2] == ["python", "-c"], command
    assert "grpc_health" in command[2] and "timeout=" in command[2]


def test_copy_sources_exist_and_are_in_the_build_context() -> None:
    patterns = dockerignore()
    tracked = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True, timeout=30
    )
    if tracked.returncode != 0:
        pytest.skip("not a git checkout: cannot list the files the build needs")
    files = [f for f in tracked.stdout.split("\0") if f]
    sources = [
        source
        for stage in STAGES
        for flags, srcs, _ in copies(stage)
        if "from" not in flags
        for source in srcs
    ]
    assert sources
    for source in sources:
        assert (ROOT / source).exists(), f"COPY {source}: no such path in the repository"
        under = [f for f in files if f == source or f.startswith(source.rstrip("/") + "/")]
        assert under, f"COPY {source}: no tracked files"
        left_out = [f for f in under if not in_context(f, patterns)]
        assert not left_out, f".dockerignore leaves out of the context: {left_out[:5]}"
    # The context stays small: none of the repository's bulk is sent.
    for path in (".venv/bin/python", ".git/HEAD", "signoff.db", "tests/support.py"):
        assert not in_context(path, patterns), path
    for junk in ("server/signoff/__pycache__/cli.cpython-311.pyc", "server/signoff/cli.pyc"):
        assert not in_context(junk, patterns), junk


# The image's command, run as the image runs it.


class Container:
    """The ENTRYPOINT + CMD of the Dockerfile, with its ENV, in a working directory."""

    def __init__(self, workdir: Path, **overrides: str) -> None:
        self.workdir = workdir
        self.env = {**os.environ, **image_env(), **overrides}
        self.env["PATH"] = f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"
        self.process: subprocess.Popen[str] | None = None
        self.output: list[str] = []

    def command(self, argv: list[str]) -> list[str]:
        executable = shutil.which(argv[0], path=str(BIN))
        assert executable, f"{argv[0]} is not in {BIN}"
        return [executable, *argv[1:]]

    def run(self, timeout: float = START_TIMEOUT) -> subprocess.CompletedProcess[str]:
        argv = exec_form(only(FINAL, "ENTRYPOINT").args) + exec_form(only(FINAL, "CMD").args)
        return subprocess.run(
            self.command(argv),
            env=self.env,
            cwd=self.workdir,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def start(self) -> int:
        """Starts the server; its port once it prints that it listens."""
        argv = exec_form(only(FINAL, "ENTRYPOINT").args) + exec_form(only(FINAL, "CMD").args)
        self.process = subprocess.Popen(
            self.command(argv),
            env=self.env,
            cwd=self.workdir,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        lines: queue.Queue[str | None] = queue.Queue()

        def read() -> None:
            assert self.process is not None and self.process.stdout is not None
            for line in self.process.stdout:
                lines.put(line)
            lines.put(None)

        threading.Thread(target=read, daemon=True).start()
        deadline = time.monotonic() + START_TIMEOUT
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                line = lines.get(timeout=remaining)
            except queue.Empty:
                break
            if line is None:
                break
            self.output.append(line)
            if line.startswith("signoff listening on "):
                # Keep draining in the background so the server never blocks on the pipe.
                threading.Thread(target=self._drain, args=(lines,), daemon=True).start()
                return int(line.split()[-1].rsplit(":", 1)[1])
        self.process.kill()
        self.process.wait(10)
        pytest.fail("the entrypoint did not start the server:\n" + "".join(self.output))

    def _drain(self, lines: queue.Queue[str | None]) -> None:
        while (line := lines.get()) is not None:
            self.output.append(line)

    def healthcheck(self, port: int) -> subprocess.CompletedProcess[str]:
        """The Dockerfile's HEALTHCHECK command, killed after its --timeout like Docker does."""
        flags, command = healthcheck()
        return subprocess.run(
            self.command(command),
            env={**self.env, "SIGNOFF_PORT": str(port)},
            cwd=self.workdir,
            capture_output=True,
            text=True,
            timeout=seconds(flags["timeout"]),
        )

    def stop(self) -> int:
        """`docker stop`: SIGTERM, then SIGKILL after Docker's default 10 seconds."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                return self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
                pytest.fail("the server did not stop within 10 s of SIGTERM")
        return self.process.returncode


def _policy_source() -> Path:
    """The repository directory the image copies to SIGNOFF_POLICY."""
    target = image_env()["SIGNOFF_POLICY"]
    sources = [srcs for _, srcs, dest in copies(FINAL) if dest == target]
    assert len(sources) == 1 and len(sources[0]) == 1, sources
    return ROOT / sources[0][0]


@pytest.mark.timeout(120)
def test_entrypoint_serves_and_the_healthcheck_follows_it(tmp_path: Path) -> None:
    database = tmp_path / "signoff.db"
    container = Container(
        tmp_path,
        # Loopback on a free port instead of 0.0.0.0:50051; the rest as in the image.
        SIGNOFF_HOST="127.0.0.1",
        SIGNOFF_PORT="0",
        SIGNOFF_DATABASE_URL=f"sqlite:///{database}",
        SIGNOFF_POLICY=str(_policy_source()),
        SIGNOFF_AUTH_CONFIG=str(AUTH_CONFIG),
    )
    port = container.start()
    try:
        assert database.exists(), "SIGNOFF_DATABASE_URL was not used"
        healthy = container.healthcheck(port)
        assert healthy.returncode == 0, healthy.stdout + healthy.stderr
        assert healthy.stdout.strip() == "SERVING"
    finally:
        code = container.stop()
    assert code == 0, "".join(container.output)
    # Docker reads exit status 1 as unhealthy (2 is reserved).
    down = container.healthcheck(port)
    assert down.returncode == 1, down.stdout + down.stderr
    assert down.stdout.strip() == "UNAVAILABLE"


@pytest.mark.timeout(120)
@pytest.mark.parametrize("auth_config", ["image default, not mounted", "unset"])
def test_image_never_serves_unauthenticated(tmp_path: Path, auth_config: str) -> None:
    """On 0.0.0.0, without a mounted auth config, the container exits with the reason."""
    overrides = {
        "SIGNOFF_PORT": "0",
        "SIGNOFF_DATABASE_URL": f"sqlite:///{tmp_path / 'signoff.db'}",
        "SIGNOFF_POLICY": str(_policy_source()),
    }
    if auth_config == "unset":
        overrides["SIGNOFF_AUTH_CONFIG"] = ""
        expected = "refusing to listen on 0.0.0.0 without --auth-config"
    else:
        path = image_env()["SIGNOFF_AUTH_CONFIG"]
        if Path(path).exists():
            pytest.skip(f"{path} exists on this machine")
        expected = f"auth_config: no file at {path}"
    result = Container(tmp_path, **overrides).run()
    assert result.returncode == 2, result.stdout + result.stderr
    assert expected in result.stderr
