"""The one table of error reasons: proto/signoff/v1/errors.proto's ErrorReason.

The generated Python enum, docs/errors.md and the server's code all follow it: the docs list
exactly its reasons under the code its comments name, and no reason is a string literal in
the server or the SDK."""

import re
from pathlib import Path

from signoff.v1 import errors_pb2
from signoff_client import ErrorReason

ROOT = Path(__file__).parents[2]
PROTO = ROOT / "proto" / "signoff" / "v1" / "errors.proto"
PREFIX = "ERROR_REASON_"


def proto_comments() -> dict[str, str]:
    """Each value's comment in errors.proto, by reason."""
    comments, pending = {}, []
    for line in PROTO.read_text().splitlines():
        line = line.strip()
        if line.startswith("//"):
            pending.append(line.removeprefix("//").strip())
        elif match := re.match(rf"{PREFIX}(\w+) = \d+;", line):
            comments[match.group(1)] = " ".join(pending)
            pending = []
        else:
            pending = []
    return comments


def documented() -> dict[str, str]:
    """docs/errors.md's reasons table: reason -> gRPC code."""
    text = (ROOT / "docs" / "errors.md").read_text()
    section = text.split("## Reasons", 1)[1]
    table = section.split("| Reason |", 1)[1].split("\n\n", 1)[0]
    codes = {}
    for row in table.splitlines()[2:]:
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        for reason in re.findall(r"`([A-Z_]+)`", cells[0]):
            codes[reason] = cells[1]
    return codes


def test_the_python_enum_is_the_proto_enum() -> None:
    names = [n.removeprefix(PREFIX) for n in errors_pb2.ErrorReason.keys()]
    assert names[0] == "UNSPECIFIED"
    assert [r.value for r in ErrorReason] == names[1:]
    assert all(r.name == r.value for r in ErrorReason)
    # A StrEnum: the wire string and the member compare equal.
    assert ErrorReason.ALREADY_DECIDED == "ALREADY_DECIDED"


def test_docs_list_exactly_the_reasons_under_the_code_the_proto_names() -> None:
    docs, comments = documented(), proto_comments()
    assert set(docs) == {r.value for r in ErrorReason}
    for reason, code in docs.items():
        said = comments[reason]
        assert said.startswith(f"{code}: "), (reason, code, said)
        assert len(said) > len(code) + 20, f"{reason}: say when it happens"


def test_no_reason_is_a_string_literal_in_the_code() -> None:
    literal = re.compile(r"[\"'](" + "|".join(r.value for r in ErrorReason) + r")[\"']")
    found = []
    for tree in (ROOT / "server" / "signoff", ROOT / "clients" / "python" / "signoff_client"):
        for path in tree.rglob("*.py"):
            if "betterproto" in path.parts:
                continue
            for number, line in enumerate(path.read_text().splitlines(), 1):
                code = line.split("#", 1)[0]
                if literal.search(code) and "= " + literal.search(code).group(0) not in code:
                    found.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert found == []
