"""Evaluating a compiled bundle, and combining what its rules found into one decision.

regopy sees only the input paths the bundle's modules read (policy/reads.py), and a
decision is memoized on (bundle hash, hash of that reduced input) in a bounded LRU, unless
the bundle asks the clock, randomness or the network. A failed evaluation (the bundle's
fail-closed answer) is never memoized.
"""

import dataclasses
import hashlib
import json
import logging
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

from signoff.domain.canonical import canonical_json
from signoff.policy import BundleRef, Effect, Finding, PolicyDecision
from signoff.policy.bundle import ENTRYPOINT, LoadedBundle, load_bundle
from signoff.policy.gates import Gate
from signoff.policy.reads import reduce_input
from signoff.policy.rego import Interpreter

log = logging.getLogger("signoff.policy")

MEMO_SIZE = 4096


class RegoPolicy:
    def __init__(self, bundle: LoadedBundle, memo_size: int = MEMO_SIZE) -> None:
        """memo_size: decisions remembered (0: none; a bundle that reads the clock,
        randomness or the network is never memoized)."""
        self._bundle = bundle
        self._interpreter = Interpreter()
        self._memo = _Memo(memo_size if bundle.reads.deterministic else 0)
        if not bundle.reads.deterministic:
            log.info(
                "policy bundle %s calls %s: decisions are not memoized",
                bundle.ref.bundle_id,
                ", ".join(bundle.reads.nondeterministic_calls),
            )

    @classmethod
    def load(cls, directory: Path, memo_size: int = MEMO_SIZE) -> "RegoPolicy":
        return cls(load_bundle(directory), memo_size)

    @property
    def bundle(self) -> BundleRef:
        return self._bundle.ref

    def gate(self, gate_id: str) -> Gate:
        return self._bundle.gates[gate_id]

    def find_gate(self, gate_id: str) -> Gate | None:
        return self._bundle.gates.get(gate_id)

    def gates(self) -> list[Gate]:
        return list(self._bundle.gates.values())

    def roles_of(self, principal_id: str) -> frozenset[str]:
        return self._bundle.roles.get(principal_id, frozenset())

    def compile(self, envelope: dict[str, Any]) -> dict[str, Any]:
        return self._bundle.manifest.compile(envelope, self._bundle.ref.bundle_id).document

    def evaluate(self, evaluation_input: dict[str, Any]) -> PolicyDecision:
        """Never raises and never approves on error: failures give the bundle's on_error answer."""
        try:
            reduced = reduce_input(evaluation_input, self._bundle.reads.input_paths)
            key = self._memo.key(self._bundle.ref.sha256, reduced)
            if key is not None and (known := self._memo.get(key)) is not None:
                return _copy(known)
            self._interpreter.set_input(reduced)
            output = self._interpreter.query_bundle_entrypoint(self._bundle.compiled, ENTRYPOINT)
            expressions = json.loads(str(output)).get("expressions") or []
            if not expressions:
                raise ValueError("the bundle's signoff.result is undefined for this input")
            decision = self._combine(expressions[0])
        except Exception as error:  # noqa: BLE001 - any failure must fail closed
            log.warning("policy evaluation failed, failing closed: %s", error)
            return self._fail_closed(str(error))
        if key is not None:
            self._memo.put(key, _copy(decision))
        return decision

    def _combine(self, result: dict[str, Any]) -> PolicyDecision:
        findings = [_finding(raw) for raw in result["findings"]]
        for finding in findings:
            for gate_id in (finding.gate_id, finding.escalate_to):
                if gate_id and gate_id not in self._bundle.gates:
                    raise ValueError(f"rule {finding.rule_id} names undefined gate {gate_id}")
            if finding.redact and finding.redact not in self._bundle.redactions:
                raise ValueError(
                    f"rule {finding.rule_id} names undefined redaction {finding.redact}"
                )
        must_refuse = sorted({f.rule_id for f in findings if f.refuse})
        must_escalate = sorted({f.escalate_to for f in findings if f.escalate_to})
        # Escalation replaces the normal route: the named gates decide alone.
        gates = must_escalate or sorted({f.gate_id for f in findings if f.gate_id})
        if must_refuse or any(f.effect is Effect.DENY for f in findings):
            effect, gates = Effect.DENY, []
        elif gates or any(f.effect is Effect.REQUIRE_APPROVAL for f in findings):
            effect = Effect.REQUIRE_APPROVAL
            if not gates:
                raise ValueError("require_approval without a gate")
        else:
            effect = Effect.ALLOW
        deciding = [f for f in findings if f.effect is effect or f.refuse] or findings
        return PolicyDecision(
            effect=effect,
            reasons=[f.reason for f in deciding if f.reason] or [f"no rule objected ({effect})"],
            rule_ids=sorted({f.rule_id for f in findings}),
            bundle=self._bundle.ref,
            gate_ids=gates,
            decision_key=str(result.get("decision_key") or ""),
            must_refuse=must_refuse,
            must_escalate=must_escalate,
            redaction_rules_active=sorted({f.redact for f in findings if f.redact}),
            findings=findings,
        )

    def _fail_closed(self, error: str) -> PolicyDecision:
        on_error = self._bundle.on_error
        return PolicyDecision(
            effect=on_error.effect,
            reasons=[f"policy evaluation failed ({error}); failing closed"],
            rule_ids=["POLICY_ERROR"],
            bundle=self._bundle.ref,
            gate_ids=[on_error.gate_id] if on_error.gate_id else [],
            error=error,
        )

    def redact(self, value: Any, rules: list[str]) -> Any:
        """Replaces what the active rules match in every string with a hash of it."""
        patterns = [self._bundle.redactions[name] for name in rules]
        if not patterns:
            return value
        return _redact(value, patterns)


class _Memo:
    """A bounded LRU of decisions, safe to share between threads."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._entries: OrderedDict[tuple[str, bytes], PolicyDecision] = OrderedDict()
        self._lock = threading.Lock()

    def key(self, bundle_sha256: str, reduced: Any) -> tuple[str, bytes] | None:
        """(bundle hash, sha256 of the reduced input's canonical JSON), or None when off
        or the input has no canonical form (then it is evaluated as it is)."""
        if not self.size:
            return None
        try:
            canonical = canonical_json(reduced)
        except ValueError:  # rfc8785.CanonicalizationError: not JSON, NaN, a huge integer
            return None
        return bundle_sha256, hashlib.sha256(canonical).digest()

    def get(self, key: tuple[str, bytes]) -> PolicyDecision | None:
        with self._lock:
            decision = self._entries.get(key)
            if decision is not None:
                self._entries.move_to_end(key)
            return decision

    def put(self, key: tuple[str, bytes], decision: PolicyDecision) -> None:
        with self._lock:
            self._entries[key] = decision
            self._entries.move_to_end(key)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)


def _copy(decision: PolicyDecision) -> PolicyDecision:
    """A decision whose lists the caller may keep or change without touching the memo's."""
    return dataclasses.replace(
        decision,
        reasons=list(decision.reasons),
        rule_ids=list(decision.rule_ids),
        gate_ids=list(decision.gate_ids),
        must_refuse=list(decision.must_refuse),
        must_escalate=list(decision.must_escalate),
        redaction_rules_active=list(decision.redaction_rules_active),
        findings=list(decision.findings),
    )


def _finding(raw: Any) -> Finding:
    if not isinstance(raw, dict) or not raw.get("rule"):
        raise ValueError(f"a finding must be an object with a 'rule': {raw!r}")
    return Finding(
        rule_id=str(raw["rule"]),
        effect=Effect(raw.get("effect", "allow")),
        reason=str(raw.get("reason", "")),
        gate_id=str(raw.get("gate", "")),
        refuse=bool(raw.get("refuse", False)),
        escalate_to=str(raw.get("escalate_to", "")),
        redact=str(raw.get("redact", "")),
    )


def _redact(value: Any, patterns: list[Any]) -> Any:
    if isinstance(value, str):
        for redaction in patterns:
            value = redaction.pattern.sub(
                lambda m, name=redaction.name: (
                    f"[redacted:{name}:sha256:{hashlib.sha256(m[0].encode()).hexdigest()[:16]}]"
                ),
                value,
            )
        return value
    if isinstance(value, dict):
        return {k: _redact(v, patterns) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact(v, patterns) for v in value]
    return value
