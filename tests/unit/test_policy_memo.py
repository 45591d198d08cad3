"""What a bundle reads of its input (policy/reads.py), and the memo of decisions built on
it (policy/engine.py): the reduction never changes a decision, the memo never outlives
its bound, and a bundle that asks the clock or randomness is never memoized."""

import copy
from pathlib import Path

import pytest
import yaml

from signoff.policy.engine import RegoPolicy
from signoff.policy.reads import analyse, minimal, reduce_input
from signoff.policy.testing import case_input

ROOT = Path(__file__).parents[2]
EXAMPLE = ROOT / "examples" / "policies"
CASES = yaml.safe_load((EXAMPLE / "tests" / "workflows.yaml").read_text())["cases"]


def paths(source: str) -> list[str] | None:
    found = analyse([source]).input_paths
    return None if found is None else [".".join(p) for p in found]


def test_plain_references_are_read_as_written() -> None:
    source = """
    package signoff
    # input.ignored in a comment, "input.ignored" in a string, `input.ignored` raw
    x if input.action.tool == "a"
    y if input["envelope"]["input"].intent == "b"
    z if input.action.params[k] > 1
    """
    assert paths(source) == ["action.params", "action.tool", "envelope.input.intent"]


@pytest.mark.parametrize(
    "line",
    [
        "x := input",
        "x if { some k in input }",
        "x if input[k] == 1",
        'x := data.signoff.y with input as {"a": 1}',
        "x := json.marshal(input)",
    ],
)
def test_input_as_a_whole_hands_over_the_whole_input(line: str) -> None:
    assert paths(f"package signoff\n{line}\ny if input.action.tool\n") is None


def test_an_alias_reads_what_its_uses_read() -> None:
    source = """
    package signoff
    action := input.action
    intent := input.envelope.input.intent
    a if action.tool == "t"
    b if object.get(action, "estimated_cost_cents", 0) > 1
    c if intent == "x"
    d if "k" in object.keys(action.params)
    """
    assert paths(source) == [
        "action.estimated_cost_cents",
        "action.params",
        "action.tool",
        "envelope.input.intent",
    ]


@pytest.mark.parametrize(
    "use",
    [
        "b if count(action) > 1",  # the alias whole
        "b if action[k]",  # a computed step
        "b := data.signoff",  # the package whole
        "b := data",
    ],
)
def test_an_alias_used_whole_reads_its_target_whole(use: str) -> None:
    source = f"package signoff\naction := input.action\na if action.tool\n{use}\n"
    assert paths(source) == ["action"]


def test_an_alias_under_data_reads_the_rest_of_the_path() -> None:
    source = "package signoff\naction := input.action\nb if data.signoff.action.tool == 1\n"
    assert paths(source) == ["action.tool"]


def test_a_definition_that_is_not_a_plain_reference_is_no_alias() -> None:
    source = """
    package signoff
    a := input.action if { true }
    b := input.envelope + 1
    c := object.get(input.envelope.input, "context", {})
    v := 1 if { false }
    else := input.other
    """
    assert paths(source) == ["action", "envelope", "other"]


def test_minimal_keeps_the_outermost_paths() -> None:
    assert minimal([("a", "b"), ("a",), ("c", "d"), ("c", "d", "e")]) == (("a",), ("c", "d"))


@pytest.mark.parametrize(
    "call",
    [
        "time.now_ns()",
        'rand.intn("k", 10)',
        'uuid.rfc4122("k")',
        'http.send({"method": "get", "url": "http://x"})',
        "opa.runtime()",
    ],
)
def test_the_clock_randomness_and_the_network_are_found(call: str) -> None:
    assert not analyse([f"package signoff\nx := {call}\n"]).deterministic


def test_names_in_comments_strings_and_data_are_no_calls() -> None:
    source = '# time.now_ns()\npackage signoff\nx := "rand.intn"\ny := data.time.now_ns\n'
    assert analyse([source]).deterministic


def test_reduce_keeps_the_shape_and_the_absences() -> None:
    value = {
        "action": {"tool": "t", "tool_call_id": "c1", "params": {"a": 1}},
        "envelope": {"input": "not an object", "request_id": "r"},
        "principal": {"id": "p"},
    }
    reduced = reduce_input(
        value, (("action", "params"), ("action", "tool"), ("envelope", "input", "x"), ("gone",))
    )
    assert reduced == {
        "action": {"tool": "t", "params": {"a": 1}},
        "envelope": {"input": "not an object"},
    }
    assert reduce_input(value, None) is value


@pytest.fixture(scope="module")
def example() -> RegoPolicy:
    return RegoPolicy.load(EXAMPLE)


def test_the_reduction_never_changes_a_decision(example: RegoPolicy) -> None:
    """Every example case, and variations of what the bundle does not read, decide the same
    with the whole input (no reduction, no memo) and through the reduction and the memo."""
    whole = RegoPolicy.load(EXAMPLE, memo_size=0)
    object.__setattr__(whole._bundle, "reads", type(whole._bundle.reads)(None, True))
    for case in CASES:
        evaluation_input = case_input(case)
        for variant in range(3):
            varied = copy.deepcopy(evaluation_input)
            varied["action"]["tool_call_id"] = f"tc_{variant}"
            varied["envelope"]["request_id"] = f"req_{variant}"
            varied["principal"]["id"] = f"agt_{variant}"
            assert example.evaluate(varied) == whole.evaluate(varied), case["name"]


def test_decisions_are_memoized_within_the_bound(example: RegoPolicy) -> None:
    policy = RegoPolicy.load(EXAMPLE, memo_size=3)
    inputs = [case_input(case) for case in CASES[:5]]
    first = policy.evaluate(inputs[0])
    # Another tool call of the same action by another caller: the same reduced input.
    again = copy.deepcopy(inputs[0])
    again["action"]["tool_call_id"] = "tc_other"
    again["principal"]["id"] = "someone else"
    assert len(policy._memo) == 1
    assert policy.evaluate(again) == first
    assert len(policy._memo) == 1
    for evaluation_input in inputs:
        policy.evaluate(evaluation_input)
    assert len(policy._memo) == 3
    # What a caller does to its decision does not reach the memo.
    policy.evaluate(inputs[-1]).rule_ids.append("CHANGED")
    assert "CHANGED" not in policy.evaluate(inputs[-1]).rule_ids


def bundle(tmp_path: Path, rego: str) -> Path:
    (tmp_path / "bundle.yaml").write_text("id: t\nversion: '1'\n")
    (tmp_path / "gates.yaml").write_text(
        "gates:\n  GATE_DEFAULT: {approvers: {principals: ['*']}, ttl: 1h}\n"
    )
    (tmp_path / "policy.rego").write_text(rego)
    return tmp_path


def test_a_bundle_that_reads_the_clock_is_never_memoized(tmp_path: Path) -> None:
    policy = RegoPolicy.load(
        bundle(
            tmp_path,
            "package signoff\nimport rego.v1\n"
            'findings contains {"rule": "R", "effect": "allow"} if time.now_ns() > 0\n',
        )
    )
    policy.evaluate({"action": {"tool": "t"}})
    policy.evaluate({"action": {"tool": "t"}})
    assert len(policy._memo) == 0


def test_a_failed_evaluation_is_not_memoized(tmp_path: Path) -> None:
    policy = RegoPolicy.load(
        bundle(
            tmp_path,
            "package signoff\nimport rego.v1\n"
            'findings contains {"rule": "R", "effect": "allow", "x": 1 / input.zero} if true\n',
        )
    )
    decision = policy.evaluate({"zero": 0})
    assert decision.error
    assert len(policy._memo) == 0
