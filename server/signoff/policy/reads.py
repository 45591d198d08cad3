"""What a bundle's Rego reads, found once per bundle from its source: the input paths its
rules refer to, and whether any rule asks the clock, randomness or the network.

Evaluation hands regopy only the parts of the input the bundle can see (an instance's
request_id, timestamps or caller never reach a bundle that does not read them), and a
decision of a bundle whose answer depends on its input alone is memoized
(policy/engine.py). Both are derived conservatively: whenever a reference to `input` is
not a plain path (`input`, `input[x]`, `with input as …`, `object.get(input, …)`), the
whole input is handed over; whenever a built-in that is not a function of its arguments
appears, nothing is memoized.
"""

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

Path = tuple[str, ...]

# Built-ins whose answer is not a function of their arguments: the clock, randomness, the
# network, the runtime, and verifications that compare against the current time. A dotted
# name equal to one of these, or under one ending in ".", keeps a bundle out of the memo.
NONDETERMINISTIC = (
    "time.now_ns",
    "rand.",
    "uuid.",
    "http.send",
    "net.lookup_ip_addr",
    "opa.runtime",
    "io.jwt.decode_verify",
    "crypto.x509.parse_and_verify_certificates",
    "crypto.x509.parse_and_verify_certificates_with_options",
    "providers.",
)

_KEYWORDS = frozenset(
    "as contains default else every false if import in not null package some true with".split()
)

_TOKEN = re.compile(
    r"""
    (?P<comment>\#[^\n]*)
  | (?P<string>"(?:[^"\\\n]|\\.)*")
  | (?P<raw>`[^`]*`)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<space>\s+)
  | (?P<other>.)
    """,
    re.VERBOSE | re.DOTALL,
)


@dataclass(frozen=True)
class Reads:
    """input_paths: the input paths read (no path is a prefix of another), or None for the
    whole input. deterministic: the answer depends on input and data alone."""

    input_paths: tuple[Path, ...] | None
    deterministic: bool
    nondeterministic_calls: tuple[str, ...] = ()


Token = tuple[str, str]


def _tokens(source: str) -> tuple[list[Token], set[int]]:
    """The significant tokens, and the indices of those that begin a line."""
    out: list[Token] = []
    line_starts: set[int] = {0}
    for match in _TOKEN.finditer(source):
        kind = match.lastgroup or "other"
        text = match.group()
        if kind == "space":
            if "\n" in text:
                line_starts.add(len(out))
            continue
        if kind == "comment":
            continue
        if kind == "raw":
            kind, text = "string", json.dumps(text[1:-1])
        out.append((kind, text))
    return out, line_starts


def _string_value(token: str) -> str | None:
    try:
        value = json.loads(token)
    except ValueError:
        return None
    return value if isinstance(value, str) else None


def _is(tokens: Sequence[Token], i: int, text: str) -> bool:
    return 0 <= i < len(tokens) and tokens[i] == ("other", text)


def _steps(tokens: Sequence[Token], i: int) -> tuple[Path, int]:
    """The static steps (`.name`, `["name"]`) after the term at token i, and the index of
    the first token after them."""
    path: list[str] = []
    j = i + 1
    while j < len(tokens):
        if _is(tokens, j, ".") and j + 1 < len(tokens) and tokens[j + 1][0] == "ident":
            path.append(tokens[j + 1][1])
            j += 2
        elif (
            _is(tokens, j, "[")
            and j + 2 < len(tokens)
            and tokens[j + 1][0] == "string"
            and _is(tokens, j + 2, "]")
            and (key := _string_value(tokens[j + 1][1])) is not None
        ):
            path.append(key)
            j += 3
        else:
            break
    return tuple(path), j


def _object_get_key(tokens: Sequence[Token], start: int, end: int) -> str | None:
    """The key when the reference tokens[start:end] is object.get's first argument and the
    key is a literal string: `object.get(REF, "key", default)` reads REF.key only."""
    if not (
        start >= 4
        and [t[1] for t in tokens[start - 4 : start]] == ["object", ".", "get", "("]
        and (start < 5 or not _is(tokens, start - 5, "."))
        and _is(tokens, end, ",")
        and end + 2 < len(tokens)
        and tokens[end + 1][0] == "string"
        and _is(tokens, end + 2, ",")
    ):
        return None
    return _string_value(tokens[end + 1][1])


def _reference(tokens: Sequence[Token], i: int) -> tuple[Path, int]:
    """The static path read by the reference whose root is token i, and where it ends."""
    path, end = _steps(tokens, i)
    key = _object_get_key(tokens, i, end)
    return (path if key is None else (*path, key)), end


def _package(tokens: Sequence[Token]) -> Path:
    for i, token in enumerate(tokens):
        if token == ("ident", "package"):
            name, _ = _steps(tokens, i + 1)
            return (tokens[i + 1][1], *name) if i + 1 < len(tokens) else ()
    return ()


def _is_root(tokens: Sequence[Token], i: int) -> bool:
    """Token i is an identifier that starts a reference (not a step of a longer one)."""
    return tokens[i][0] == "ident" and not _is(tokens, i - 1, ".")


def _aliases(modules: list[tuple[list[Token], set[int]]]) -> dict[str, list[tuple[Path, Path]]]:
    """`NAME := input.PATH` alone on its line: NAME stands for that part of the input.
    name → [(the alias's data path, the input path)]. Its own `input.PATH` is not read
    then; what is read is what the uses of NAME read (analyse)."""
    found: dict[str, list[tuple[Path, Path]]] = {}
    for tokens, line_starts in modules:
        package = _package(tokens)
        for i in range(len(tokens) - 3):
            if not (_defines(tokens, line_starts, i) and tokens[i + 3] == ("ident", "input")):
                continue
            path, end = _steps(tokens, i + 3)
            if path and (end == len(tokens) or end in line_starts):
                found.setdefault(tokens[i][1], []).append(((*package, tokens[i][1]), path))
    return found


def minimal(paths: Iterable[Path]) -> tuple[Path, ...]:
    """The paths none of which is under another (reading `a` reads all of `a.b`)."""
    kept: list[Path] = []
    for path in sorted(set(paths), key=lambda p: (len(p), p)):
        if not any(path[: len(k)] == k for k in kept):
            kept.append(path)
    return tuple(sorted(kept))


def _defines(tokens: Sequence[Token], line_starts: set[int], i: int) -> bool:
    """Token i is the name a line starts defining (`NAME := …`): not a read of NAME."""
    return (
        i in line_starts
        and tokens[i][0] == "ident"
        and tokens[i][1] not in _KEYWORDS
        and _is(tokens, i + 1, ":")
        and _is(tokens, i + 2, "=")
    )


def analyse(sources: Iterable[str]) -> Reads:
    """What the Rego modules read of their input, and whether they read anything else."""
    modules = [_tokens(source) for source in sources]
    aliases = _aliases(modules)
    paths: list[Path] = []
    whole = False
    calls: set[str] = set()

    def read(path: Path) -> None:
        nonlocal whole
        if path:
            paths.append(path)
        else:
            whole = True  # input as a whole, input[x], with input as …

    for tokens, line_starts in modules:
        for i, (_, text) in enumerate(tokens):
            if not _is_root(tokens, i):
                continue
            steps, _ = _steps(tokens, i)
            name = ".".join((text, *steps))
            if any(name == n or (n.endswith(".") and name.startswith(n)) for n in NONDETERMINISTIC):
                calls.add(name)
            if text == "input":
                path, end = _reference(tokens, i)
                defines_alias = (
                    i >= 3
                    and _defines(tokens, line_starts, i - 3)
                    and tokens[i - 3][1] in aliases
                    and (end == len(tokens) or end in line_starts)
                )
                if not defines_alias:
                    read(path)
            elif text in aliases and not _defines(tokens, line_starts, i):
                # NAME, NAME.x.y, object.get(NAME, "k", …): what the alias stands for,
                # under each input path it was defined as (over-reading when names clash).
                path, _ = _reference(tokens, i)
                for _, target in aliases[text]:
                    read((*target, *path))
            elif text == "data":
                # data.pkg.NAME… reads the alias too; data or data.pkg reads every alias
                # under it whole.
                path, _ = _steps(tokens, i)
                for entries in aliases.values():
                    for data_path, target in entries:
                        if data_path[: len(path)] == path:
                            read(target)
                        elif path[: len(data_path)] == data_path:
                            read((*target, *path[len(data_path) :]))
    return Reads(
        input_paths=None if whole else minimal(paths),
        deterministic=not calls,
        nondeterministic_calls=tuple(sorted(calls)),
    )


_ABSENT = object()


def reduce_input(value: Any, paths: tuple[Path, ...] | None) -> Any:
    """The part of the input under the paths, with the same shape: what a rule reading only
    those paths sees of it. A step through a value that is not an object keeps that value
    whole, so a reference that is undefined in the input stays undefined in the reduction."""
    if paths is None:
        return value
    reduced: dict[str, Any] = {}
    for path in paths:
        _copy(value, reduced, path)
    return reduced


def _copy(source: Any, target: dict[str, Any], path: Path) -> None:
    if not isinstance(source, dict):
        return
    key = path[0]
    value = source.get(key, _ABSENT)
    if value is _ABSENT:
        return
    if len(path) == 1 or not isinstance(value, dict):
        target[key] = value
        return
    branch = target.get(key)
    if not isinstance(branch, dict):
        branch = target[key] = {}
    _copy(value, branch, path[1:])
