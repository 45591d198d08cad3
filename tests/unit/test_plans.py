"""The compiled context and the critic, in process: the example bundle against the reference
workflows' plans (../shared/reference/workflows.md) and against plans that must fail."""

import copy
import re
from pathlib import Path
from typing import Any

import pytest

from signoff.domain.budget import BudgetReport
from signoff.domain.errors import InvalidArgument
from signoff.domain.plans import MAX_STEPS, FindingReason, evaluate_condition, parse_plan
from signoff.domain.states import RiskClass
from signoff.policy.bundle import BundleError, load_bundle
from signoff.policy.critic import critique
from signoff.policy.manifest import CompiledContext

BUNDLE = load_bundle(Path(__file__).parents[2] / "examples" / "policies")

REFUND_PLAN: dict[str, Any] = {
    "plan_id": "plan_refund_01",
    "intent": "support.refund",
    "steps": [
        {"id": "s1", "tool": "adp_orders.lookup", "params": {"order_id": "ord_881"}},
        {"id": "s2", "tool": "adp_policy.eval", "depends_on": ["s1"]},
        {
            "id": "s3",
            "tool": "adp_payments.issue_refund",
            "params": {"order_id": "ord_881", "amount": 4200, "currency": "INR"},
            "depends_on": ["s2"],
            "approval_mode": "destructive",
            "requires": ["GATE_FINANCE_APPROVAL"],
        },
    ],
    "decision_checkpoints": [
        {"decision_id": "support.refund.eligibility", "after_step": "s2"},
        {"decision_id": "support.refund.execute", "after_step": "s2"},
    ],
}

MODERATION_PLAN: dict[str, Any] = {
    "plan_id": "plan_mod_01",
    "intent": "content.review",
    "steps": [
        {"id": "s1", "tool": "adp_content.classify", "params": {"post_id": "pst_5512"}},
        {"id": "s2", "tool": "adp_policy.eval", "depends_on": ["s1"]},
        {
            "id": "s3",
            "tool": "adp_queue.append",
            "depends_on": ["s2"],
            "execute_when": {"<": [{"var": "outputs.s1.confidence"}, 0.7]},
        },
        {
            "id": "s4",
            "tool": "adp_content.publish_block",
            "depends_on": ["s2"],
            "approval_mode": "delegated",
            "requires": ["GATE_PUBLISH_BLOCK"],
            "execute_when": {">=": [{"var": "outputs.s1.confidence"}, 0.7]},
        },
    ],
    "decision_checkpoints": [
        {"decision_id": "content.review.classify", "after_step": "s2"},
        {"decision_id": "content.review.action", "after_step": "s4"},
    ],
}

LOOKUP_PLAN: dict[str, Any] = {
    "plan_id": "plan_lkp_01",
    "intent": "data.lookup",
    "steps": [
        {"id": "s1", "tool": "adp_kg.query"},
        {"id": "s2", "tool": "adp_bi.snapshot", "depends_on": ["s1"]},
    ],
}


def compiled(intent: str, **context: Any) -> CompiledContext:
    envelope = {"input": {"intent": intent, "context": context}}
    return BUNDLE.manifest.compile(envelope, BUNDLE.ref.bundle_id)


def reasons(plan: dict[str, Any], budget: BudgetReport | None = None) -> set[tuple[str, str]]:
    parsed = parse_plan(plan)
    found = critique(parsed, plan["intent"], compiled(plan["intent"]), budget or BudgetReport())
    return {(f.reason.value, f.step_id) for f in found}


def test_the_refund_context_compiles_as_the_reference_shows() -> None:
    document = compiled("support.refund", order_id="ord_881").document
    assert document["manifests"]["policy_manifest"] == [
        {
            "bundle_id": "POLICY_EXAMPLE",
            "rule_ids": ["R_REFUND_REQUIRES_IDV", "R_HIGH_VALUE_REQUIRES_APPROVAL"],
        }
    ]
    assert document["manifests"]["tool_manifest"] == [
        {"adapter_id": "adp_orders", "capabilities": ["lookup"]},
        {"adapter_id": "adp_policy", "capabilities": ["eval"]},
        {"adapter_id": "adp_payments", "capabilities": ["issue_refund"]},
    ]
    assert document["manifests"]["evidence_manifest"] == [{"evidence_ref": "kg:order:ord_881"}]
    assert document["runtime_controls"] == {
        "approval_gates_active": ["GATE_FINANCE_APPROVAL"],
        "must_refuse": [],
        "must_escalate": [],
        "redaction_rules_active": [],
    }
    lookup = compiled("data.lookup").document
    assert lookup["runtime_controls"]["redaction_rules_active"] == ["pii_email"]


def test_an_undeclared_intent_compiles_open() -> None:
    context = compiled("ops.anything")
    assert context.is_open and context.sha256 == ""
    assert context.refusal("adp_infra.reboot", {}, RiskClass.READ_ONLY) is None


@pytest.mark.parametrize("plan", [REFUND_PLAN, MODERATION_PLAN, LOOKUP_PLAN])
def test_the_critic_accepts_the_reference_plans(plan: dict[str, Any]) -> None:
    assert reasons(plan) == set()


def test_refusals_before_policy() -> None:
    context = compiled("support.refund", order_id="ord_881")
    outside = context.refusal("adp_mail.send", {}, RiskClass.NETWORK)
    assert outside is not None and outside.reason == "TOOL_NOT_IN_MANIFEST"
    weaker = context.refusal(
        "adp_payments.issue_refund",
        {"order_id": "o", "amount": 1, "currency": "INR"},
        RiskClass.NETWORK,
    )
    assert weaker is not None and weaker.reason == "RISK_CLASS_BELOW_BINDING"
    bad = context.refusal(
        "adp_payments.issue_refund",
        {"order_id": "o", "amount": -5, "currency": "INR"},
        RiskClass.DESTRUCTIVE,
    )
    assert bad is not None and bad.reason == "PARAMS_INVALID"
    assert bad.field == "action.params/amount"
    stronger = context.refusal("adp_orders.lookup", {"order_id": "o"}, RiskClass.DESTRUCTIVE)
    assert stronger is None  # asking for more scrutiny than the binding is allowed


def plan_with(**changes: Any) -> dict[str, Any]:
    plan = copy.deepcopy(REFUND_PLAN)
    for step_id, change in changes.items():
        step = next(s for s in plan["steps"] if s["id"] == step_id)
        step.update(change)
    return plan


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"s1": {"tool": "adp_mail.send"}}, ("TOOL_NOT_IN_MANIFEST", "s1")),
        ({"s3": {"params": {"order_id": "ord_881", "amount": "lots"}}}, ("PARAMS_INVALID", "s3")),
        ({"s3": {"approval_mode": "network"}}, ("APPROVAL_MODE_MISMATCH", "s3")),
        ({"s1": {"approval_mode": "destructive"}}, ("APPROVAL_MODE_MISMATCH", "s1")),
        ({"s3": {"requires": ["GATE_PUBLISH_BLOCK"]}}, ("GATE_NOT_ACTIVE", "s3")),
        ({"s2": {"depends_on": ["s9"]}}, ("UNKNOWN_DEPENDENCY", "s2")),
        ({"s1": {"depends_on": ["s3"]}}, ("DEPENDENCY_CYCLE", "s1")),
        ({"s3": {"execute_when": {"≥": [1, 2]}}}, ("CONDITION_INVALID", "s3")),
        (
            {"s3": {"execute_when": {"<": [{"var": "outputs.s9.x"}, 1]}}},
            ("CONDITION_INVALID", "s3"),
        ),
    ],
)
def test_the_critic_names_each_problem_and_its_step(
    changes: dict[str, Any], expected: tuple[str, str]
) -> None:
    assert expected in reasons(plan_with(**changes))


def test_a_checkpoint_after_an_unknown_step_and_an_intent_mismatch() -> None:
    plan = copy.deepcopy(REFUND_PLAN)
    plan["decision_checkpoints"].append({"decision_id": "x", "after_step": "s7"})
    assert ("CHECKPOINT_UNKNOWN_STEP", "s7") in reasons(plan)
    found = critique(parse_plan(plan), "content.review", compiled("content.review"), BudgetReport())
    assert FindingReason.INTENT_MISMATCH in {f.reason for f in found}


def test_a_plan_over_budget() -> None:
    few_calls = BudgetReport(tool_calls_used=6, max_tool_calls=8)
    assert ("OVER_BUDGET", "") in reasons(REFUND_PLAN, few_calls)
    costly = plan_with(s3={"estimated_cost_cents": 30})
    assert ("OVER_BUDGET", "") in reasons(costly, BudgetReport(max_cost_cents=25))
    assert reasons(costly, BudgetReport(max_cost_cents=40)) == set()


def _nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = {"!": [value]}
    return value


@pytest.mark.parametrize(
    ("plan", "field"),
    [
        ({"intent": "x", "steps": [{"id": "s1", "tool": "t"}]}, "plan.plan_id"),
        ({"plan_id": "p", "intent": "x", "steps": []}, "plan.steps"),
        ({"plan_id": "p", "intent": "x", "steps": [{"tool": "t"}]}, "plan.steps[0].id"),
        (
            {"plan_id": "p", "intent": "x", "steps": [{"id": "a", "tool": "t"}] * 2},
            "plan.steps[1].id",
        ),
        (
            {
                "plan_id": "p",
                "intent": "x",
                "steps": [{"id": f"s{i}", "tool": "t"} for i in range(MAX_STEPS + 1)],
            },
            "plan.steps",
        ),
        (
            {
                "plan_id": "p",
                "intent": "x",
                "steps": [{"id": "s", "tool": "t", "execute_when": _nested(40)}],
            },
            "plan.steps[0].execute_when",
        ),
        (
            {"plan_id": "p", "intent": "x", "steps": [{"id": "s", "tool": "t", "colour": 1}]},
            "plan.steps[0].colour",
        ),
        (
            {
                "plan_id": "p",
                "intent": "x",
                "steps": [{"id": "s", "tool": "t", "approval_mode": "loud"}],
            },
            "plan.steps[0].approval_mode",
        ),
    ],
)
def test_malformed_plans_name_the_field(plan: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        parse_plan(plan)
    assert field in {v.field for v in caught.value.violations}


@pytest.mark.parametrize(
    ("before", "after", "message"),
    [
        ("[GATE_PUBLISH_BLOCK]", "[GATE_NOPE]", "intents.content.review.gates: GATE_NOPE is not"),
        (
            "approval_mode: local_write",
            "approval_mode: loud",
            "tools.adp_queue.append.approval_mode",
        ),
        ("{type: string, minLength: 1}", "{type: strange}", "not a JSON Schema"),
        ("    rules: [R_LOOKUP", "    colour: red\n    rules: [R_LOOKUP", "colour: Extra inputs"),
    ],
)
def test_a_bundle_with_a_bad_manifest_does_not_load(
    tmp_path: Path, before: str, after: str, message: str
) -> None:
    source = Path(__file__).parents[2] / "examples" / "policies"
    for path in source.glob("*.*"):
        (tmp_path / path.name).write_text(path.read_text())
    text = (tmp_path / "intents.yaml").read_text()
    assert before in text
    (tmp_path / "intents.yaml").write_text(text.replace(before, after, 1))
    with pytest.raises(BundleError, match=re.escape(message)):
        load_bundle(tmp_path)


# -- execute_when at request time (domain.plans.evaluate_condition) ---------------------------

CONFIDENT = {">=": [{"var": "outputs.s1.confidence"}, 0.7]}
UNSURE = {"<": [{"var": "outputs.s1.confidence"}, 0.7]}
READS = {"outputs.s1.confidence"}


@pytest.mark.parametrize(
    ("condition", "outputs", "holds"),
    [
        (CONFIDENT, {"s1": {"confidence": 0.93}}, True),
        (CONFIDENT, {"s1": {"confidence": 0.7}}, True),
        (CONFIDENT, {"s1": {"confidence": 0.42}}, False),
        (UNSURE, {"s1": {"confidence": 0.42}}, True),
        (UNSURE, {"s1": {"confidence": 0.93}}, False),
    ],
)
def test_a_condition_is_evaluated_over_the_reported_outputs(
    condition: Any, outputs: dict[str, Any], holds: bool
) -> None:
    result = evaluate_condition(condition, outputs, READS)
    assert result.holds is holds
    assert result.seen == {"outputs.s1.confidence": outputs["s1"]["confidence"]}


@pytest.mark.parametrize("outputs", [{}, {"s1": {}}, {"s1": {"label": "abuse"}}])
def test_a_value_not_reported_fails_the_condition_closed(outputs: dict[str, Any]) -> None:
    # JSON Logic would read the missing value as null, and null < 0.7 is true.
    result = evaluate_condition(UNSURE, outputs, READS)
    assert not result.holds
    assert result.why == "not reported: outputs.s1.confidence"
    assert result.seen == {"outputs.s1.confidence": None}


def test_a_condition_that_cannot_be_evaluated_is_false() -> None:
    result = evaluate_condition({"nope": [1]}, {}, set())
    assert not result.holds and result.why.startswith("cannot be evaluated")
