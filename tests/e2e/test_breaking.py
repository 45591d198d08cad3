"""scripts/breaking: `buf breaking` against where a branch left main, or on main against the
commit before, and a clear skip without history."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BUF = shutil.which("buf", path=str(Path(sys.executable).parent)) or shutil.which("buf")

pytestmark = pytest.mark.skipif(BUF is None, reason="no buf (the dev extra installs it)")

API = """syntax = "proto3";

package signoff.v1;

message Thing {
  string thing_id = 1;
  string name = 2;
}
"""


def git(repo: Path, *args: str) -> str:
    result = subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return result.stdout.strip()


def write_api(repo: Path, text: str) -> None:
    (repo / "proto/signoff/v1/thing.proto").write_text(text)


def commit(repo: Path, message: str) -> None:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A repository laid out like this one: buf.yaml, proto/, scripts/breaking."""
    repo = tmp_path / "repo"
    (repo / "scripts").mkdir(parents=True)
    shutil.copy(ROOT / "scripts/breaking", repo / "scripts/breaking")
    shutil.copy(ROOT / "buf.yaml", repo / "buf.yaml")
    (repo / "proto/signoff/v1").mkdir(parents=True)
    write_api(repo, API)
    return repo


def breaking(repo: Path, **env: str) -> subprocess.CompletedProcess[str]:
    assert BUF is not None
    return subprocess.run(
        [str(repo / "scripts/breaking")],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PATH": f"{Path(BUF).parent}{os.pathsep}{os.environ['PATH']}", **env},
    )


def test_without_history_it_says_so_and_passes(repo: Path) -> None:
    result = breaking(repo)
    assert result.returncode == 0, result.stderr
    assert "not a git work tree; buf breaking not run" in result.stderr
    git(repo, "init", "-q", "-b", "main")
    commit(repo, "the API")
    result = breaking(repo)
    assert result.returncode == 0, result.stderr
    assert "no commit before HEAD" in result.stderr


def test_on_main_the_last_commit_must_not_break_the_api(repo: Path) -> None:
    git(repo, "init", "-q", "-b", "main")
    commit(repo, "the API")
    write_api(repo, API.replace("  string name = 2;\n", "  string name = 2;\n  int32 size = 3;\n"))
    commit(repo, "a field more")
    result = breaking(repo)
    assert result.returncode == 0, result.stderr
    assert "keeps the API of HEAD~1" in result.stderr
    write_api(repo, API.replace("  string name = 2;\n", ""))
    commit(repo, "a field less")
    result = breaking(repo)
    assert result.returncode == 1
    assert 'Previously present field "2" with name "name" on message "Thing" was deleted' in (
        result.stdout + result.stderr
    )
    assert "breaks the API of HEAD~1" in result.stderr
    # A fresh clone of main (what CI runs in) finds the same.
    clone = repo.parent / "clone"
    git(repo.parent, "clone", "-q", str(repo), str(clone))
    assert breaking(clone).returncode == 1
    # A clone with one commit has nothing to compare with.
    shallow = repo.parent / "shallow"
    git(repo.parent, "clone", "-q", "--depth", "1", f"file://{repo}", str(shallow))
    result = breaking(shallow)
    assert result.returncode == 0 and "buf breaking not run" in result.stderr


def test_a_branch_is_compared_with_where_it_left_main(repo: Path) -> None:
    git(repo, "init", "-q", "-b", "main")
    commit(repo, "the API")
    git(repo, "checkout", "-q", "-b", "feature")
    git(repo, "checkout", "-q", "main")
    # main gains a message after the branch left it: not the branch's deletion.
    write_api(repo, API + "\nmessage Other {\n  string other_id = 1;\n}\n")
    commit(repo, "another message")
    git(repo, "checkout", "-q", "feature")
    result = breaking(repo)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "keeps the API of main (where this branch left it)" in result.stderr
    # Uncommitted changes count too.
    write_api(repo, API.replace("thing_id = 1", "thing_id = 4"))
    assert breaking(repo).returncode == 1
    # An explicit commit to compare with.
    git(repo, "checkout", "-q", "--", ".")
    result = breaking(repo, SIGNOFF_BREAKING_AGAINST="main")
    assert result.returncode == 1
    assert 'Previously present message "Other" was deleted' in result.stdout + result.stderr
