"""The workspace (the root pyproject.toml), its members' metadata and the `signoff` command."""

import itertools
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
WORKSPACE = tomllib.loads((ROOT / "pyproject.toml").read_text())
MEMBERS = {"signoff": ROOT / "server", "signoff-client": ROOT / "clients/python"}


def _member(requirement: str) -> tuple[str, str]:
    """`signoff[dev] @ {root:uri}/server` -> ("signoff", "server")."""
    match = re.fullmatch(r"([\w.-]+)(?:\[[\w,.-]+\])? @ \{root:uri\}/(\S+)", requirement)
    assert match, f"not a workspace member: {requirement}"
    return match[1], match[2]


def test_the_workspace_lists_each_member_by_its_own_name() -> None:
    project = WORKSPACE["project"]
    listed = dict(_member(requirement) for requirement in project["dependencies"])
    assert listed == {name: str(path.relative_to(ROOT)) for name, path in MEMBERS.items()}
    for extra in project["optional-dependencies"].values():
        for requirement in extra:
            name, path = _member(requirement)
            assert listed[name] == path
    for name, path in MEMBERS.items():
        member = tomllib.loads((path / "pyproject.toml").read_text())["project"]
        assert member["name"] == name
        assert member["requires-python"] == project["requires-python"]
        # Each member's extras named by the workspace exist.
        for requirement in itertools.chain(*project["optional-dependencies"].values()):
            extras = re.match(rf"{re.escape(name)}\[([\w,.-]+)\] @", requirement)
            for extra in extras[1].split(",") if extras else []:
                assert extra in member["optional-dependencies"], (name, extra)


@pytest.mark.parametrize("directory", [ROOT, *MEMBERS.values()], ids=lambda p: p.name or ".")
def test_every_package_is_apache_2_with_the_license_text(directory: Path) -> None:
    project = tomllib.loads((directory / "pyproject.toml").read_text())["project"]
    assert project["license"] == "Apache-2.0"
    assert project["license-files"] == ["LICENSE"]
    # A member's wheel is built from its own directory (the image builds them so), hence a
    # copy of the LICENSE there, the same text as the repository's.
    license_text = (directory / "LICENSE").read_text()
    assert license_text == (ROOT / "LICENSE").read_text()
    assert "Apache License" in license_text and "Version 2.0, January 2004" in license_text


def test_the_tools_are_configured_in_the_workspace_only() -> None:
    for old in ("ruff.toml", ".ruff.toml", "mypy.ini", ".mypy.ini", "pytest.ini", "setup.cfg"):
        assert not (ROOT / old).exists(), f"{old}: the configuration lives in pyproject.toml"
    assert {"ruff", "mypy", "pytest"} <= set(WORKSPACE["tool"])
    for path in MEMBERS.values():
        tools = tomllib.loads((path / "pyproject.toml").read_text()).get("tool", {})
        assert not {"ruff", "mypy", "pytest"} & set(tools), f"{path}: configure it at the root"


def test_python_dash_m_signoff_is_the_command() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "signoff", "policy", "test", str(ROOT / "examples/policies")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert re.search(r"^\d+ passed, 0 failed$", result.stdout, re.MULTILINE)
