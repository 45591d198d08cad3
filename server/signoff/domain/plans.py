"""An agent's plan: the steps it means to take, checked before any of them runs.

Parsing is strict about shape (a malformed plan is INVALID_ARGUMENT, with one violation per
problem); whether a well-formed plan may run is the critic's verdict (policy/critic.py),
given as findings with stable reasons.
"""

import re
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from json_logic import jsonLogic

from signoff.domain.canonical import sha256_of
from signoff.domain.errors import FieldViolation, InvalidArgument
from signoff.domain.models import Json
from signoff.domain.states import RiskClass

# Limits that keep one CheckPlan cheap; docs/plans.md lists them.
MAX_STEPS = 100
MAX_CHECKPOINTS = 100
MAX_DEPENDS_ON = 100
MAX_REQUIRES = 16
MAX_CONDITION_DEPTH = 16
ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")
# The reserved tool of a plan approval: the action whose approval covers a submitted plan's
# gated steps (services/plans.py). No agent may request it, nor plan it.
PLAN_TOOL = "signoff.plan"


class FindingReason(StrEnum):
    """Why the critic rejects a plan. Stable: agents and tests match on these."""

    INTENT_MISMATCH = "INTENT_MISMATCH"
    TOOL_NOT_IN_MANIFEST = "TOOL_NOT_IN_MANIFEST"
    PARAMS_INVALID = "PARAMS_INVALID"
    APPROVAL_MODE_MISMATCH = "APPROVAL_MODE_MISMATCH"
    GATE_NOT_ACTIVE = "GATE_NOT_ACTIVE"
    UNKNOWN_DEPENDENCY = "UNKNOWN_DEPENDENCY"
    DEPENDENCY_CYCLE = "DEPENDENCY_CYCLE"
    CONDITION_INVALID = "CONDITION_INVALID"
    CHECKPOINT_UNKNOWN_STEP = "CHECKPOINT_UNKNOWN_STEP"
    OVER_BUDGET = "OVER_BUDGET"


@dataclass(frozen=True)
class Finding:
    """One problem with one step (step_id "" for the plan as a whole)."""

    reason: FindingReason
    step_id: str
    message: str

    def as_json(self) -> Json:
        return {"reason": self.reason.value, "step_id": self.step_id, "message": self.message}


@dataclass(frozen=True)
class Step:
    step_id: str
    tool: str
    params: Json = field(default_factory=dict)
    depends_on: tuple[str, ...] = ()
    # The risk class the agent expects the tool to be bound to; None when it did not say.
    approval_mode: RiskClass | None = None
    requires: tuple[str, ...] = ()
    # JSON Logic over {"outputs": {step_id: outputs}}; None: always runs.
    execute_when: Any = None
    estimated_cost_cents: float = 0.0


@dataclass(frozen=True)
class Checkpoint:
    decision_id: str
    after_step: str


@dataclass(frozen=True)
class Plan:
    plan_id: str
    intent: str
    steps: tuple[Step, ...]
    checkpoints: tuple[Checkpoint, ...] = ()
    # "sha256:<hex>" of the plan's RFC 8785 JSON as the agent sent it.
    sha256: str = ""

    def step(self, step_id: str) -> Step | None:
        return next((s for s in self.steps if s.step_id == step_id), None)


def _depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    return 0


def _strings(value: Any, where: str, limit: int, bad: list[FieldViolation]) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        bad.append(FieldViolation(where, "must be a list of strings"))
        return ()
    if len(value) > limit:
        bad.append(FieldViolation(where, f"at most {limit} entries"))
    return tuple(value)


def _identifier(value: Any, where: str, bad: list[FieldViolation]) -> str:
    if not isinstance(value, str) or not value:
        bad.append(FieldViolation(where, "is required"))
        return ""
    if not ID_PATTERN.match(value):
        bad.append(FieldViolation(where, f"{value[:40]!r} is not an id ({ID_PATTERN.pattern})"))
    return value


def _step(raw: Any, where: str, bad: list[FieldViolation]) -> Step | None:
    if not isinstance(raw, dict):
        bad.append(FieldViolation(where, "must be an object"))
        return None
    known = {
        "id",
        "tool",
        "params",
        "depends_on",
        "approval_mode",
        "requires",
        "execute_when",
        "estimated_cost_cents",
    }
    for key in sorted(set(raw) - known):
        bad.append(FieldViolation(f"{where}.{key}", "unknown field"))
    step_id = _identifier(raw.get("id"), f"{where}.id", bad)
    tool = raw.get("tool")
    if not isinstance(tool, str) or not tool:
        bad.append(FieldViolation(f"{where}.tool", "is required"))
        tool = ""
    elif tool == PLAN_TOOL:
        bad.append(FieldViolation(f"{where}.tool", f"{PLAN_TOOL} is reserved for plan approvals"))
    params = raw.get("params") or {}
    if not isinstance(params, dict):
        bad.append(FieldViolation(f"{where}.params", "must be an object"))
        params = {}
    mode: RiskClass | None = None
    if raw.get("approval_mode") not in (None, ""):
        text = str(raw["approval_mode"]).upper().removeprefix("RISK_CLASS_")
        if text not in RiskClass.__members__:
            valid = ", ".join(r.value.lower() for r in RiskClass)
            bad.append(FieldViolation(f"{where}.approval_mode", f"must be one of {valid}"))
        else:
            mode = RiskClass(text)
    condition = raw.get("execute_when")
    if condition is not None and _depth(condition) > MAX_CONDITION_DEPTH:
        bad.append(
            FieldViolation(f"{where}.execute_when", f"nested deeper than {MAX_CONDITION_DEPTH}")
        )
    cost = raw.get("estimated_cost_cents", 0) or 0
    if isinstance(cost, bool) or not isinstance(cost, int | float) or not 0 <= cost <= 1e12:
        bad.append(FieldViolation(f"{where}.estimated_cost_cents", "must be 0 to 1e12"))
        cost = 0
    return Step(
        step_id=step_id,
        tool=tool,
        params=params,
        depends_on=_strings(raw.get("depends_on"), f"{where}.depends_on", MAX_DEPENDS_ON, bad),
        approval_mode=mode,
        requires=_strings(raw.get("requires"), f"{where}.requires", MAX_REQUIRES, bad),
        execute_when=condition,
        estimated_cost_cents=float(cost),
    )


def parse_plan(raw: Json) -> Plan:
    """The plan in `raw` (the JSON form of signoff.v1.Plan), or INVALID_ARGUMENT naming every
    malformed field. Shape only: references between steps are the critic's to judge."""
    bad: list[FieldViolation] = []
    plan_id = _identifier(raw.get("plan_id"), "plan.plan_id", bad)
    intent = raw.get("intent")
    if not isinstance(intent, str) or not intent:
        bad.append(FieldViolation("plan.intent", "is required"))
        intent = ""
    raw_steps = raw.get("steps")
    if not isinstance(raw_steps, list) or not raw_steps:
        bad.append(FieldViolation("plan.steps", "at least one step is required"))
        raw_steps = []
    elif len(raw_steps) > MAX_STEPS:
        bad.append(FieldViolation("plan.steps", f"at most {MAX_STEPS} steps"))
        raw_steps = []
    steps = [_step(s, f"plan.steps[{i}]", bad) for i, s in enumerate(raw_steps)]
    seen: set[str] = set()
    for i, step in enumerate(steps):
        if step is not None and step.step_id:
            if step.step_id in seen:
                bad.append(FieldViolation(f"plan.steps[{i}].id", f"{step.step_id} is repeated"))
            seen.add(step.step_id)
    raw_checkpoints = raw.get("decision_checkpoints") or []
    checkpoints: list[Checkpoint] = []
    if not isinstance(raw_checkpoints, list) or len(raw_checkpoints) > MAX_CHECKPOINTS:
        bad.append(
            FieldViolation("plan.decision_checkpoints", f"a list of at most {MAX_CHECKPOINTS}")
        )
    else:
        for i, c in enumerate(raw_checkpoints):
            where = f"plan.decision_checkpoints[{i}]"
            if not isinstance(c, dict):
                bad.append(FieldViolation(where, "must be an object"))
                continue
            checkpoints.append(
                Checkpoint(
                    _identifier(c.get("decision_id"), f"{where}.decision_id", bad),
                    _identifier(c.get("after_step"), f"{where}.after_step", bad),
                )
            )
    if bad:
        raise InvalidArgument(bad)
    return Plan(
        plan_id=plan_id,
        intent=intent,
        steps=tuple(s for s in steps if s is not None),
        checkpoints=tuple(checkpoints),
        sha256=sha256_of(raw),
    )


def structural_findings(plan: Plan) -> list[Finding]:
    """Dependencies that name no step, cycles among them, and checkpoints after no step."""
    ids = {s.step_id for s in plan.steps}
    findings = [
        Finding(FindingReason.UNKNOWN_DEPENDENCY, s.step_id, f"depends on unknown step {d}")
        for s in plan.steps
        for d in s.depends_on
        if d not in ids
    ]
    findings += [
        Finding(FindingReason.DEPENDENCY_CYCLE, step_id, f"is part of a cycle: {' → '.join(cycle)}")
        for step_id, cycle in _cycles(plan).items()
    ]
    findings += [
        Finding(
            FindingReason.CHECKPOINT_UNKNOWN_STEP,
            c.after_step,
            f"checkpoint {c.decision_id} comes after unknown step {c.after_step}",
        )
        for c in plan.checkpoints
        if c.after_step not in ids
    ]
    return findings


def _cycles(plan: Plan) -> dict[str, list[str]]:
    """For each step on a dependency cycle, one cycle through it (depth-first search)."""
    edges = {s.step_id: [d for d in s.depends_on] for s in plan.steps}
    on_cycle: dict[str, list[str]] = {}
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for nxt in edges.get(node, []):
            if state.get(nxt) == 1:
                cycle = [*path[path.index(nxt) :], nxt]
                for member in cycle[:-1]:
                    on_cycle.setdefault(member, cycle)
            elif nxt in edges and nxt not in state:
                visit(nxt)
        path.pop()
        state[node] = 2

    for step in plan.steps:  # iterative enough: at most MAX_STEPS deep
        if step.step_id not in state:
            visit(step.step_id)
    return on_cycle


def ancestors(plan: Plan, step_id: str) -> set[str]:
    """Every step that `step_id` depends on, directly or not."""
    seen: set[str] = set()
    todo = list((plan.step(step_id) or Step("", "")).depends_on)
    while todo:
        d = todo.pop()
        if d not in seen and (dep := plan.step(d)) is not None:
            seen.add(d)
            todo.extend(dep.depends_on)
    return seen


_MISSING = object()


def _read(data: Any, dotted: str) -> Any:
    """The value at a dotted name (as JSON Logic's var reads it), or _MISSING."""
    value = data
    for part in dotted.split("."):
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return _MISSING
    return value


@dataclass(frozen=True)
class ConditionResult:
    holds: bool
    # Each name the condition reads, with the value it saw (None: not reported).
    seen: Json
    # Why it does not hold ("" when it does).
    why: str = ""


def evaluate_condition(
    expression: Any, outputs: dict[str, Json], names: set[str]
) -> ConditionResult:
    """Evaluates an execute_when (JSON Logic, by the json-logic library) over
    {"outputs": outputs}. `names` are the dotted names it reads (policy.critic.variables).
    Fails closed: a name with no reported value makes the condition false without
    evaluating it (JSON Logic would read it as null, and null < 0.7 is true), and so does an
    expression the library cannot evaluate."""
    data = {"outputs": outputs}
    seen = {name: _read(data, name) for name in sorted(names)}
    missing = [name for name, value in seen.items() if value is _MISSING]
    shown = {name: (None if value is _MISSING else value) for name, value in seen.items()}
    if missing:
        return ConditionResult(False, shown, f"not reported: {', '.join(missing)}")
    try:
        holds = bool(jsonLogic(expression, data))
    except Exception as error:  # noqa: BLE001 - any failure to evaluate is a false condition
        return ConditionResult(False, shown, f"cannot be evaluated: {error}")
    return ConditionResult(holds, shown, "" if holds else "is false")


@dataclass
class SubmittedPlan:
    """A plan SubmitPlan stored: `plan` is the parsed plan as JSON, each step with its route
    ({"effect", "gate_ids", "reason"}), the sha256 of its params as approved
    ("params_sha256") and its params as stored (redacted)."""

    instance_id: str
    tenant_id: str
    plan_id: str
    plan_sha256: str
    # The plan approval's action id; "" when policy gated no step.
    approval_action_id: str
    plan: Json
    create_time: datetime

    def steps(self) -> list[Json]:
        return list(self.plan.get("steps", []))


@dataclass(frozen=True)
class StepUse:
    """The action that ran one step of a submitted plan (a step runs once)."""

    instance_id: str
    plan_id: str
    step_id: str
    action_id: str
    create_time: datetime
