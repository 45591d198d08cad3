"""One configuration for `signoff serve`: file < environment < flags, checked before start."""

import json
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from signoff.config import ConfigError, ServeOptions, load_options
from tests.support import AUTH_CONFIG, OPEN_POLICY, ServerProcess

ROOT = Path(__file__).resolve().parents[2]


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


def _last_line(result: subprocess.CompletedProcess[str]) -> dict[str, str]:
    last: dict[str, str] = json.loads(result.stderr.splitlines()[-1])
    assert last["level"] == "CRITICAL"
    return last


def test_a_second_server_on_a_signoff_port_refuses_to_start(tmp_path: Path) -> None:
    """grpcio would share the port (SO_REUSEPORT) and split the calls between the two."""
    with ServerProcess(f"sqlite:///{tmp_path}/first.db", tmp_path) as first:
        result = _serve(
            *("--port", str(first.port), "--http-port", "off", "--policy", str(OPEN_POLICY)),
            *("--auth-config", str(AUTH_CONFIG), "--database-url", f"sqlite:///{tmp_path}/b.db"),
        )
        assert result.returncode == 2, result.stderr
        message = _last_line(result)["message"]
        assert message.startswith(f"cannot listen on 127.0.0.1:{first.port}: in use")
        assert first.process is not None and first.process.poll() is None


def test_a_second_server_on_the_same_sqlite_file_refuses_to_start(tmp_path: Path) -> None:
    database = tmp_path / "signoff.db"
    with ServerProcess(f"sqlite:///{database}", tmp_path) as first:
        assert first.process is not None
        result = _serve(
            *("--port", "0", "--http-port", "off", "--policy", str(OPEN_POLICY)),
            *("--auth-config", str(AUTH_CONFIG), "--database-url", f"sqlite:///{database}"),
        )
        assert result.returncode == 2, result.stderr
        assert _last_line(result)["message"] == (
            f"the SQLite database {database} is in use by another signoff server "
            f"(pid {first.process.pid}): one server per SQLite file (stop the other one, or "
            "give this one another --database-url; several servers share a PostgreSQL database)"
        )
        assert "listening" not in result.stdout
    # Once the first one has stopped, the file is free again.
    with ServerProcess(f"sqlite:///{database}", tmp_path) as second:
        assert second.port


def test_every_option_is_a_flag_and_documented() -> None:
    help_text = _serve("--help").stdout
    documented = (ROOT / "docs" / "operations.md").read_text()
    table = set(re.findall(r"^\| `(\w+)` \|", documented, re.MULTILINE))
    for name in ServeOptions.model_fields:
        assert name in table, f"docs/operations.md does not document the option {name}"
        annotation = str(ServeOptions.model_fields[name].annotation)
        if not any(kind in annotation for kind in ("list[", "tuple[", "Options")):
            assert "--" + name.replace("_", "-") in help_text


def test_an_empty_variable_is_not_set_and_other_signoff_variables_are_not_options() -> None:
    options = load_options(
        None,
        {},
        {
            "SIGNOFF_AUTH_CONFIG": "",
            "SIGNOFF_TOKEN": "x",
            "SIGNOFF_TARGET": "h:1",
            "SIGNOFF_PORT": "",
        },
    )
    assert options.auth_config is None
    assert options.port == 50051


def test_lists_come_from_the_environment_as_json(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^\$SIGNOFF_WEBHOOKS: not JSON: Expecting value"):
        load_options(None, {}, {"SIGNOFF_WEBHOOKS": "[nope"})
    hooks = '[{"name": "ops", "url": "ftp://x", "secret": "0123456789abcdef"}]'
    with pytest.raises(ConfigError) as raised:
        load_options(None, {}, {"SIGNOFF_WEBHOOKS": hooks})
    assert "webhooks.0.url: must be an http:// or https:// URL with a host" in str(raised.value)
    assert "(from $SIGNOFF_WEBHOOKS)" in str(raised.value)
    # The file's list is replaced, not merged, by the variable's.
    config = tmp_path / "signoff.yaml"
    config.write_text(
        "webhooks:\n  - {name: a, url: 'http://127.0.0.1:9/a', secret: 0123456789abcdef}\n"
    )
    hooks = '[{"name": "b", "url": "http://127.0.0.1:9/b", "secret": "0123456789abcdef"}]'
    options = load_options(config, {}, {"SIGNOFF_WEBHOOKS": hooks})
    assert [hook.name for hook in options.webhooks] == ["b"]


def test_each_source_is_named_in_one_message(tmp_path: Path) -> None:
    config = tmp_path / "signoff.yaml"
    config.write_text("http_port: maybe\n")
    with pytest.raises(ConfigError) as raised:
        load_options(
            config, {"grant_ttl": "-1"}, {"SIGNOFF_LOG_FORMAT": "xml", "SIGNOFF_HTTP_PORT": "70000"}
        )
    lines = str(raised.value).splitlines()
    assert lines[0] == "invalid configuration:"
    assert "  grant_ttl: Input should be greater than 0 (from command line)" in lines
    assert "  log_format: Input should be 'json' or 'text' (from $SIGNOFF_LOG_FORMAT)" in lines
    # The environment wins over the file: its value is the one checked and named.
    assert (
        "  http_port: must be a port (0 to 65535, 0 picks one) or off (from $SIGNOFF_HTTP_PORT)"
        in lines
    )


def test_the_settings_class_reads_the_process_environment_and_config_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "signoff.yaml"
    config.write_text("port: 6000\nhost: 127.0.0.2\n")
    monkeypatch.setenv("SIGNOFF_CONFIG", str(config))
    monkeypatch.setenv("SIGNOFF_PORT", "7000")
    options = ServeOptions()
    assert (options.host, options.port) == ("127.0.0.2", 7000)
    assert ServeOptions(port=8000).port == 8000  # arguments are the flags


def test_serve_names_a_bad_flag_in_one_line_per_problem(tmp_path: Path) -> None:
    result = _serve(
        "--grant-ttl",
        "soon",
        "--policy",
        str(OPEN_POLICY),
        "--database-url",
        f"sqlite:///{tmp_path}/x.db",
    )
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "signoff: invalid configuration:",
        "  grant_ttl: Input should be a valid number, unable to parse string as a number "
        "(from command line)",
    ]


def test_only_the_given_environment_and_file_are_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = tmp_path / "other.yaml"
    other.write_text("grant_ttl: 5\n")
    monkeypatch.setenv("SIGNOFF_PORT", "1")
    monkeypatch.setenv("SIGNOFF_CONFIG", str(other))
    options = load_options(None, {}, {})
    assert options.port == 50051 and options.grant_ttl == 900.0
    # A webhook's secret_env is looked up in that environment too.
    config = tmp_path / "signoff.yaml"
    config.write_text(
        "webhooks:\n  - {name: a, url: 'http://127.0.0.1:9/a', secret_env: HOOK_KEY}\n"
    )
    hooked = load_options(config, {}, {"HOOK_KEY": "k" * 16})
    assert hooked.webhooks[0].key({"HOOK_KEY": "k" * 16}) == b"k" * 16
    monkeypatch.setenv("HOOK_KEY", "k" * 16)
    with pytest.raises(ConfigError, match="environment variable HOOK_KEY must hold the key"):
        load_options(config, {}, {})
