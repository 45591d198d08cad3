"""One configuration for `signoff serve`: file < environment < flags, checked before start."""

import json
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from signoff.config import ConfigError, ServeOptions, load_options
from tests.support import OPEN_POLICY

ROOT = Path(__file__).resolve().parents[1]


def test_later_sources_win_and_values_are_typed(tmp_path: Path) -> None:
    config = tmp_path / "signoff.yaml"
    config.write_text("port: 6000\ngrant_ttl: 60\nhost: 127.0.0.2\n")
    options = load_options(
        config,
        {"host": "127.0.0.3"},
        {"SIGNOFF_PORT": "7000", "SIGNOFF_BOOKMARK_INTERVAL": "2.5", "SIGNOFF_TOKEN": "x"},
    )
    assert options.host == "127.0.0.3"  # flag over file
    assert options.port == 7000  # environment over file
    assert options.grant_ttl == 60.0  # file over default
    assert options.bookmark_interval == 2.5
    assert options.timer_interval == ServeOptions.model_fields["timer_interval"].default


def test_every_mistake_is_named_with_its_source(tmp_path: Path) -> None:
    config = tmp_path / "signoff.yaml"
    config.write_text("prot: 6000\ntimer_interval: 0\n")
    with pytest.raises(ConfigError) as raised:
        load_options(config, {"log_level": "LOUD"}, {"SIGNOFF_PORT": "http"})
    message = str(raised.value)
    assert f"prot: Extra inputs are not permitted (from config file {config})" in message
    assert f"timer_interval: Input should be greater than 0 (from config file {config})" in message
    assert "port: Input should be a valid integer" in message and "$SIGNOFF_PORT" in message
    assert "log_level:" in message and "(from command line)" in message


@pytest.mark.parametrize(
    ("text", "problem"),
    [("- port\n", "expected a mapping"), ("port: [\n", "while parsing"), (None, "No such file")],
)
def test_an_unreadable_file_is_an_error(tmp_path: Path, text: str | None, problem: str) -> None:
    config = tmp_path / "signoff.yaml"
    if text is not None:
        config.write_text(text)
    with pytest.raises(ConfigError, match=problem):
        load_options(config, {}, {})


def test_paths_are_checked_at_load(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="policy: no policy bundle directory"):
        load_options(None, {"policy": str(tmp_path / "missing")}, {})
    with pytest.raises(ConfigError, match="auth_config: no file at"):
        load_options(None, {}, {"SIGNOFF_AUTH_CONFIG": str(tmp_path / "auth.yaml")})


def _serve(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "signoff.cli", "serve", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


def test_serve_refuses_a_bad_configuration_before_it_listens(tmp_path: Path) -> None:
    config = tmp_path / "signoff.yaml"
    config.write_text(f"policy: {OPEN_POLICY}\nport: 70000\n")
    result = _serve("--config", str(config), "--database-url", f"sqlite:///{tmp_path}/x.db")
    assert result.returncode == 2
    assert "port: Input should be less than or equal to 65535" in result.stderr
    assert "listening" not in result.stdout
    assert not (tmp_path / "x.db").exists()  # nothing was touched


def test_a_port_in_use_stops_the_start_with_one_json_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        result = _serve("--port", port, "--database-url", f"sqlite:///{tmp_path}/x.db")
    assert result.returncode == 2
    last = json.loads(result.stderr.splitlines()[-1])
    assert last["level"] == "CRITICAL"
    assert last["message"].startswith(f"cannot listen on 127.0.0.1:{port}: in use")


def test_every_option_is_a_flag_and_documented() -> None:
    help_text = _serve("--help").stdout
    documented = (ROOT / "docs" / "operations.md").read_text()
    table = set(re.findall(r"^\| `(\w+)` \|", documented, re.MULTILINE))
    for name in ServeOptions.model_fields:
        assert name in table, f"docs/operations.md does not document the option {name}"
        annotation = str(ServeOptions.model_fields[name].annotation)
        if not any(kind in annotation for kind in ("list[", "tuple[", "Options")):
            assert "--" + name.replace("_", "-") in help_text
