"""Server-side policy: decides what happens to a proposed action. The agent never chooses it."""

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from signoff.domain.models import Instance, ProposedAction
from signoff.domain.states import RiskClass


class Effect(StrEnum):
    ALLOW = "allow"
    REQUIRE_APPROVAL = "require_approval"
    DENY = "deny"


@dataclass(frozen=True)
class PolicyDecision:
    effect: Effect
    reasons: list[str]
    rule_ids: list[str]
    gate_ids: list[str] = field(default_factory=list)
    decision_key: str = ""
    bundle_id: str = ""
    bundle_version: str = ""
    bundle_sha256: str = ""


class Policy(Protocol):
    def evaluate(self, instance: Instance, action: ProposedAction) -> PolicyDecision: ...


DEFAULT_GATE = "GATE_DEFAULT"
_GATED = frozenset({RiskClass.NETWORK, RiskClass.DELEGATED, RiskClass.DESTRUCTIVE})


class DefaultPolicy:
    """The built-in rule: reads and local writes run at once; everything that reaches
    outside the agent waits for one human on GATE_DEFAULT."""

    bundle_id = "signoff.builtin"
    version = "1"

    def evaluate(self, instance: Instance, action: ProposedAction) -> PolicyDecision:
        intent = instance.envelope.get("input", {}).get("intent", "") or "unspecified"
        gated = action.risk_class in _GATED
        return PolicyDecision(
            effect=Effect.REQUIRE_APPROVAL if gated else Effect.ALLOW,
            reasons=[
                f"{action.risk_class.value} actions need a human approval"
                if gated
                else f"{action.risk_class.value} actions are allowed"
            ],
            rule_ids=["BUILTIN_GATE_OUTWARD_ACTIONS" if gated else "BUILTIN_ALLOW_LOCAL_ACTIONS"],
            gate_ids=[DEFAULT_GATE] if gated else [],
            decision_key=f"{intent}.{action.tool}",
            bundle_id=self.bundle_id,
            bundle_version=self.version,
        )
