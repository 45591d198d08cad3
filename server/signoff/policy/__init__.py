"""Server-side policy: decides what happens to a proposed action. The agent never chooses it."""

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from signoff.policy.gates import Gate


class Effect(StrEnum):
    ALLOW = "allow"
    REQUIRE_APPROVAL = "require_approval"
    DENY = "deny"


@dataclass(frozen=True)
class Finding:
    """One rule that matched, as the Rego module reported it."""

    rule_id: str
    effect: Effect
    reason: str = ""
    gate_id: str = ""
    refuse: bool = False
    escalate_to: str = ""
    redact: str = ""


@dataclass(frozen=True)
class BundleRef:
    bundle_id: str
    version: str
    sha256: str


@dataclass(frozen=True)
class PolicyDecision:
    effect: Effect
    reasons: list[str]
    rule_ids: list[str]
    bundle: BundleRef
    gate_ids: list[str] = field(default_factory=list)
    decision_key: str = ""
    must_refuse: list[str] = field(default_factory=list)
    must_escalate: list[str] = field(default_factory=list)
    redaction_rules_active: list[str] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    # Set when evaluation failed and the decision is the bundle's fail-closed answer.
    error: str = ""

    def as_json(self) -> dict[str, Any]:
        """The policy part stored with an action and copied into its DecisionRecord."""
        return {
            "bundle_id": self.bundle.bundle_id,
            "version": self.bundle.version,
            "sha256": self.bundle.sha256,
            "rule_ids": self.rule_ids,
            "decision_key": self.decision_key,
            "must_refuse": self.must_refuse,
            "must_escalate": self.must_escalate,
            "redaction_rules_active": self.redaction_rules_active,
        }


class Policy(Protocol):
    """What the services need from a policy: evaluation, gates, and redaction."""

    @property
    def bundle(self) -> BundleRef: ...

    def evaluate(self, evaluation_input: dict[str, Any]) -> PolicyDecision: ...

    def gate(self, gate_id: str) -> Gate: ...

    def find_gate(self, gate_id: str) -> Gate | None:
        """The gate, or None when the loaded bundle no longer defines it."""
        ...

    def gates(self) -> list[Gate]: ...

    def roles_of(self, principal_id: str) -> frozenset[str]: ...

    def compile(self, envelope: dict[str, Any]) -> dict[str, Any]:
        """The context in force for the envelope's intent (policy/manifest.py), as JSON."""
        ...

    def redact(self, value: Any, rules: list[str]) -> Any: ...
