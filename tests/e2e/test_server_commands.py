"""The commands that work on local files and databases (audit, migrate), and the command line
itself: --version, help, and one-line errors instead of tracebacks."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from signoff.database_files import DatabaseFileError, hold, lock_path, sqlite_file

ROOT = Path(__file__).resolve().parents[2]
SIGNOFF = Path(sys.executable).parent / "signoff"


def signoff(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SIGNOFF), *args], capture_output=True, text=True, timeout=60, cwd=cwd
    )


def one_error_line(result: subprocess.CompletedProcess[str], expected: str) -> None:
    """Exit status 2 and exactly one line on standard error: the expected one."""
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.splitlines() == [expected], result.stderr


def test_version() -> None:
    result = signoff("--version")
    assert result.returncode == 0
    assert re.fullmatch(r"signoff \d+\.\d+\.\d+\S*\n", result.stdout), result.stdout


@pytest.mark.parametrize("command", [[], ["audit"], ["policy"]], ids=" ".join)
def test_a_command_alone_prints_its_help(command: list[str]) -> None:
    result = signoff(*command)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"usage: {' '.join(['signoff', *command])} ")
    assert not result.stderr


def test_the_help_names_every_command_and_the_readme_lists_them() -> None:
    help_text = signoff("--help").stdout
    readme = (ROOT / "README.md").read_text()
    table = readme[readme.index("## Operator CLI") :]
    table = table[: table.index("\n## ", 1)]
    commands = re.findall(r"^    ([a-z][\w-]*)(?: |$)", help_text, re.MULTILINE)
    assert {"serve", "audit", "policy", "migrate"} <= set(commands), help_text
    for command in commands:
        assert f"`signoff {command}" in table, f"README's CLI table lacks {command}"
    for sub in ("export", "verify", "anchor"):
        assert f"`signoff audit {sub}" in table


def test_audit_verify_of_a_missing_file(tmp_path: Path) -> None:
    one_error_line(
        signoff("audit", "verify", "NOFILE", cwd=tmp_path),
        "signoff audit verify: NOFILE: No such file or directory",
    )


def test_audit_verify_of_a_file_that_is_no_export(tmp_path: Path) -> None:
    one_error_line(
        signoff("audit", "verify", str(ROOT / "README.md")),
        f"signoff audit verify: {ROOT / 'README.md'} line 1: not an export of "
        "`signoff audit export` (not JSON: Expecting value)",
    )
    listed = tmp_path / "list.jsonl"
    listed.write_text("[1, 2]\n")
    one_error_line(
        signoff("audit", "verify", str(listed)),
        f"signoff audit verify: {listed} line 1: not an export of `signoff audit export` "
        "(a line is a JSON object)",
    )
    anchor = tmp_path / "anchor.json"
    anchor.write_text("no anchor")
    one_error_line(
        signoff("audit", "verify", str(listed), "--against", str(anchor)),
        f"signoff audit verify: --against {anchor}: not an anchor of `signoff audit anchor`",
    )


def test_audit_verify_of_an_export_missing_fields_is_broken(tmp_path: Path) -> None:
    export = tmp_path / "export.jsonl"
    export.write_text(
        '{"kind": "instance", "instance_id": "ins_1"}\n{"kind": "record", "instance_id": "ins_1"}\n'
    )
    result = signoff("audit", "verify", str(export))
    assert result.returncode == 1, result.stderr
    assert result.stdout.startswith("BROKEN: export: a line lacks a field"), result.stdout
    assert not result.stderr


@pytest.mark.parametrize("command", [["export"], ["anchor"], ["verify"]])
def test_reading_a_missing_sqlite_database_never_creates_it(
    tmp_path: Path, command: list[str]
) -> None:
    one_error_line(
        signoff("audit", *command, "--database-url", "sqlite:///nonexistent.db", cwd=tmp_path),
        f"signoff audit {command[0]}: no SQLite database at nonexistent.db "
        "(from sqlite:///nonexistent.db)",
    )
    assert os.listdir(tmp_path) == []


def test_reading_a_file_that_is_no_signoff_database(tmp_path: Path) -> None:
    (tmp_path / "other.db").write_bytes(b"")
    one_error_line(
        signoff("audit", "export", "--database-url", "sqlite:///other.db", cwd=tmp_path),
        "signoff audit export: database sqlite:///other.db: no such table: instances",
    )


def test_a_database_that_does_not_answer() -> None:
    result = signoff(
        "audit", "export", "--database-url", "postgresql+psycopg://signoff:secret@127.0.0.1:1/x"
    )
    assert result.returncode == 2, result.stderr
    [line] = result.stderr.splitlines()
    assert line.startswith(
        "signoff audit export: database postgresql+psycopg://signoff:***@127.0.0.1:1/x "
        "does not answer: "
    ), line


def test_export_then_verify_an_empty_database(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'signoff.db'}"
    assert signoff("migrate", "--database-url", url).returncode == 0
    export = tmp_path / "export.jsonl"
    exported = signoff("audit", "export", "--database-url", url, "--output", str(export))
    assert exported.returncode == 0, exported.stderr
    assert exported.stderr == "exported 0 instances\n"
    verified = signoff("audit", "verify", str(export))
    assert verified.returncode == 0, verified.stderr
    assert verified.stdout == "intact: 0 instances, 0 events\n"
    one_error_line(
        signoff("audit", "export", "--database-url", url, "--output", str(tmp_path / "no/x")),
        f"signoff audit export: --output {tmp_path / 'no/x'}: No such file or directory",
    )
    one_error_line(
        signoff("audit", "export", "--database-url", url, "--since", "yesterday"),
        "signoff audit export: --since 'yesterday': not an ISO 8601 time",
    )


@pytest.mark.parametrize(
    ("url", "file"),
    [
        ("sqlite:///signoff.db", "signoff.db"),
        ("sqlite+aiosqlite:////data/signoff.db", "/data/signoff.db"),
        ("sqlite:///file:x.db?mode=ro&uri=true", "x.db"),
        ("sqlite://", None),
        ("sqlite:///:memory:", None),
        ("postgresql+psycopg://u@h/db", None),
        ("not a url", None),
    ],
)
def test_the_sqlite_file_of_a_url(url: str, file: str | None) -> None:
    assert sqlite_file(url) == (Path(file) if file else None)


def test_one_process_holds_a_sqlite_file(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'signoff.db'}"
    release = hold(url)
    try:
        assert lock_path(tmp_path / "signoff.db").read_text() == f"{os.getpid()}\n"
        # flock(2) locks belong to the open file: a second open, even here, is refused.
        with pytest.raises(
            DatabaseFileError, match=f"in use by another signoff server \\(pid {os.getpid()}\\)"
        ):
            hold(url)
    finally:
        release()
    hold(url)()  # free again
    hold("postgresql+psycopg://u@h/db")()  # not held: replicas share it
