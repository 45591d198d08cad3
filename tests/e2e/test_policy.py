"""Policy bundles: the example bundle's rules, loading errors, and failing closed. No I/O
beyond reading bundle files; the gate and timer behaviours are in test_gates.py."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from signoff.policy import Effect
from signoff.policy.bundle import BundleError, load_bundle
from signoff.policy.engine import RegoPolicy
from signoff.policy.testing import case_input, check
from tests.support import EXAMPLE_POLICY

CASES = yaml.safe_load((EXAMPLE_POLICY / "tests" / "workflows.yaml").read_text())["cases"]
EXAMPLE = RegoPolicy.load(EXAMPLE_POLICY)


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_every_rule_of_the_example_bundle(case: dict) -> None:  # type: ignore[type-arg]
    assert check(EXAMPLE.evaluate(case_input(case)), case["expect"]) == []


def test_every_example_rule_is_exercised_by_a_case() -> None:
    rules = set(Path(EXAMPLE_POLICY / "workflows.rego").read_text().split('"rule": "')[1:])
    defined = {r.split('"')[0] for r in rules}
    matched = {rule for case in CASES for rule in EXAMPLE.evaluate(case_input(case)).rule_ids}
    assert defined <= matched, defined - matched


def test_policy_test_command_reports_each_case(tmp_path: Path) -> None:
    signoff = Path(sys.executable).parent / "signoff"
    ok = subprocess.run([signoff, "policy", "test", EXAMPLE_POLICY], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stdout
    assert ok.stdout.strip().endswith(f"{len(CASES)} passed, 0 failed")

    broken = tmp_path / "bundle"
    shutil.copytree(EXAMPLE_POLICY, broken)
    cases = broken / "tests" / "workflows.yaml"
    cases.write_text(
        cases.read_text().replace("effect: deny, rules: [R_REFUND_REQUIRES_IDV]", "effect: allow")
    )
    failed = subprocess.run([signoff, "policy", "test", broken], capture_output=True, text=True)
    assert failed.returncode == 1
    assert (
        "FAIL workflows.yaml: no refund without a verified identity: effect deny, expected allow"
        in failed.stdout
    )


def test_the_bundle_hash_covers_every_file(tmp_path: Path) -> None:
    copy = tmp_path / "bundle"
    shutil.copytree(EXAMPLE_POLICY, copy)
    assert load_bundle(copy).ref.sha256 == EXAMPLE.bundle.sha256
    (copy / "limits.yaml").write_text((copy / "limits.yaml").read_text().replace("1000", "999"))
    assert load_bundle(copy).ref.sha256 != EXAMPLE.bundle.sha256


@pytest.mark.parametrize(
    "change,message",
    [
        (lambda d: (d / "bundle.yaml").unlink(), "no bundle.yaml"),
        (
            lambda d: (d / "workflows.rego").write_text(
                "package signoff\nfindings contains x if {"
            ),
            "Rego does not compile",
        ),
        (
            lambda d: (d / "gates.yaml").write_text(
                "gates:\n  G:\n    approvers: {roles: [a]}\n"
                "    on_timeout: escalate\n    escalate_to: NOWHERE\n"
            ),
            "escalate_to NOWHERE is not defined",
        ),
        (
            lambda d: (d / "gates.yaml").write_text(
                "gates:\n  A:\n    approvers: {roles: [a]}\n"
                "    on_timeout: escalate\n    escalate_to: B\n"
                "  B:\n    approvers: {roles: [b]}\n"
                "    on_timeout: escalate\n    escalate_to: A\n"
            ),
            r"escalation never ends \(A → B → A\)",
        ),
        (
            lambda d: (d / "gates.yaml").write_text(
                "gates:\n  G:\n    approvers: {roles: [a]}\n    ttl: 2h\n    reminders: [1h, 3h]\n"
            ),
            "reminder 3h must come after the gate opens and before its ttl",
        ),
        (
            lambda d: (d / "gates.yaml").write_text("gates:\n  G:\n    quorum: 1\n"),
            "approvers must name principals or roles",
        ),
        (
            lambda d: (d / "gates.yaml").write_text(
                "gates:\n  G:\n    approvers: {roles: [a]}\n    ttl: soon\n"
            ),
            "not a duration",
        ),
        (lambda d: (d / "extra.yaml").write_text("limits: {}\n"), "defined twice"),
    ],
)
def test_a_broken_bundle_does_not_load(tmp_path: Path, change, message: str) -> None:  # type: ignore[no-untyped-def]
    copy = tmp_path / "bundle"
    shutil.copytree(EXAMPLE_POLICY, copy)
    change(copy)
    with pytest.raises(BundleError, match=message):
        load_bundle(copy)


def test_serve_refuses_a_broken_bundle(tmp_path: Path) -> None:
    signoff = Path(sys.executable).parent / "signoff"
    result = subprocess.run(
        [
            signoff,
            "serve",
            "--port",
            "0",
            "--policy",
            tmp_path,
            "--database-url",
            f"sqlite:///{tmp_path}/x.db",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    # One JSON line, like every other line of the server's log (the default log format).
    lines = [json.loads(line) for line in result.stderr.splitlines()]
    assert lines[-1]["level"] == "CRITICAL"
    assert "policy bundle" in lines[-1]["message"] and "no bundle.yaml" in lines[-1]["message"]


def _with_rego(tmp_path: Path, rego: str, on_error: str) -> RegoPolicy:
    copy = tmp_path / "bundle"
    shutil.copytree(EXAMPLE_POLICY, copy)
    (copy / "workflows.rego").write_text(rego)
    manifest = copy / "bundle.yaml"
    manifest.write_text(manifest.read_text().replace("action: hold", f"action: {on_error}"))
    return RegoPolicy.load(copy)


FAILING = """package signoff
import rego.v1
findings contains {"rule": "R_BAD", "effect": "require_approval", "gate": "GATE_NOWHERE"} if true
"""
UNDEFINED = """package signoff
import rego.v1
findings contains {"rule": "R_DIVIDE", "effect": "allow", "x": 1 / input.action.params.zero} if true
"""


@pytest.mark.parametrize("rego", [FAILING, UNDEFINED], ids=["undefined gate", "runtime error"])
def test_evaluation_errors_fail_closed(tmp_path: Path, rego: str) -> None:
    case = {
        "action": {"tool": "adp_orders.lookup", "risk_class": "READ_ONLY", "params": {"zero": 0}}
    }
    held = _with_rego(tmp_path / "hold", rego, "hold").evaluate(case_input(case))
    assert held.effect is Effect.REQUIRE_APPROVAL and held.gate_ids == ["GATE_POLICY_ERROR"]
    assert held.rule_ids == ["POLICY_ERROR"] and held.error
    rejected = _with_rego(tmp_path / "reject", rego, "reject").evaluate(case_input(case))
    assert rejected.effect is Effect.DENY and "failing closed" in rejected.reasons[0]


def test_redaction_keeps_only_a_hash() -> None:
    redacted = EXAMPLE.redact({"note": "mail ana@example.com", "n": [1, "b@c.io"]}, ["pii_email"])
    assert "ana@example.com" not in str(redacted) and "b@c.io" not in str(redacted)
    assert redacted["note"].startswith("mail [redacted:pii_email:sha256:")
    assert redacted["n"][0] == 1
