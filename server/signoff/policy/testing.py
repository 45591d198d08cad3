"""`signoff policy test DIR`: a bundle's own test cases, so authors can test their rules.

Each tests/*.yaml file holds `cases`, each with an `envelope` (InvokeAgent fields), an
`action` (tool, risk_class, params, estimated_cost_cents …), optionally where the
instance's `budget` stands (tool_calls_used, cost_spent_cents, max_cost_cents …), and what
to `expect`: effect, and optionally gates (exactly), rules (at least these), must_refuse,
must_escalate, redaction_rules_active and decision_key.
"""

from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from signoff.domain.budget import BudgetReport
from signoff.policy import PolicyDecision
from signoff.policy.bundle import BundleError
from signoff.policy.engine import RegoPolicy

_EXACT = ("gates", "must_refuse", "must_escalate", "redaction_rules_active", "decision_key")


def case_input(case: dict[str, Any]) -> dict[str, Any]:
    action = {"params": {}, "evidence_refs": [], "tool_call_id": "tc_test", **case["action"]}
    envelope = case.get("envelope", {})
    return {
        "envelope": envelope,
        "action": action,
        "principal": {"id": envelope.get("agent", {}).get("agent_id", "agt_test"), "kind": "agent"},
        # Where the instance stands (BudgetReport fields); by default nothing used or limited.
        "instance": BudgetReport(**case.get("budget", {})).policy_input(),
    }


def check(decision: PolicyDecision, expect: dict[str, Any]) -> list[str]:
    """What differs from the expectation; empty when the case passes."""
    actual = {
        "effect": decision.effect.value,
        "gates": decision.gate_ids,
        "must_refuse": decision.must_refuse,
        "must_escalate": decision.must_escalate,
        "redaction_rules_active": decision.redaction_rules_active,
        "decision_key": decision.decision_key,
    }
    problems = []
    if decision.error:
        problems.append(f"evaluation failed: {decision.error}")
    if actual["effect"] != expect["effect"]:
        problems.append(f"effect {actual['effect']}, expected {expect['effect']}")
    for key in _EXACT:
        if key in expect:
            wanted = sorted(expect[key]) if isinstance(expect[key], list) else expect[key]
            if actual[key] != wanted:
                problems.append(f"{key} {actual[key]}, expected {wanted}")
    missing = set(expect.get("rules", [])) - set(decision.rule_ids)
    if missing:
        problems.append(f"rules {sorted(missing)} did not match (matched {decision.rule_ids})")
    return problems


def run_bundle_tests(directory: Path, say: Callable[[str], None]) -> int:
    """Runs every case; says one line per case; returns the number of failures."""
    try:
        policy = RegoPolicy.load(directory)
    except BundleError as error:
        say(f"FAIL bundle does not load: {error}")
        return 1
    files = sorted((directory / "tests").glob("*.yaml"))
    if not files:
        say(f"FAIL {directory}/tests has no *.yaml test cases")
        return 1
    passed = failed = 0
    for path in files:
        for case in (yaml.safe_load(path.read_text()) or {}).get("cases", []):
            problems = check(policy.evaluate(case_input(case)), case["expect"])
            name = f"{path.name}: {case.get('name', '(unnamed)')}"
            if problems:
                failed += 1
                say(f"FAIL {name}: " + "; ".join(problems))
            else:
                passed += 1
                say(f"ok   {name}")
    say(f"{passed} passed, {failed} failed")
    return failed
