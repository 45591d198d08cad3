"""The critic: may this plan run in this compiled context?

Conditions (execute_when) are JSON Logic over {"outputs": {step_id: outputs}}: the critic checks
their shape against the operators the json-logic library evaluates, and which outputs they read.
"""

from typing import Any

from json_logic.builtins import BUILTINS

from signoff.domain.budget import BudgetReport, cents
from signoff.domain.plans import Finding, FindingReason, Plan, ancestors, structural_findings
from signoff.domain.states import RiskClass
from signoff.policy.manifest import CompiledContext

# Operators the library evaluates itself rather than through BUILTINS.
_CONTROL = {"if", "?:", "and", "or", "filter", "map", "reduce", "all", "some", "none"}
_OPERATORS = _CONTROL | set(BUILTINS)


def condition_problem(expression: Any) -> str | None:
    """Why `expression` is not JSON Logic signoff can evaluate, or None."""
    if isinstance(expression, list):
        return next(filter(None, map(condition_problem, expression)), None)
    if not isinstance(expression, dict):
        return None
    if len(expression) != 1:
        return f"an operation has exactly one operator, not {sorted(expression)}"
    [(operator, args)] = expression.items()
    if operator not in _OPERATORS:
        return f"unknown operator {operator!r}"
    if operator == "var":
        name = args[0] if isinstance(args, list) and args else args
        if not isinstance(name, str | int):
            return "var takes a dotted name"
    return condition_problem(args)


def variables(expression: Any) -> set[str]:
    """The dotted names an expression reads with var."""
    if isinstance(expression, list):
        return set().union(*map(variables, expression)) if expression else set()
    if not isinstance(expression, dict):
        return set()
    found: set[str] = set()
    for operator, args in expression.items():
        if operator == "var":
            name = args[0] if isinstance(args, list) and args else args
            found.add(str(name))
        else:
            found |= variables(args)
    return found


def critique(
    plan: Plan, intent: str, compiled: CompiledContext, budget: BudgetReport
) -> list[Finding]:
    """Every reason the plan may not run as written: empty means the critic accepts it."""
    findings = structural_findings(plan)
    if plan.intent != intent:
        findings.append(
            Finding(
                FindingReason.INTENT_MISMATCH,
                "",
                f"the plan is for {plan.intent}; the instance's intent is {intent}",
            )
        )
    active = set(compiled.gates_active())
    for step in plan.steps:
        risk = step.approval_mode or _bound_mode(compiled, step.tool) or RiskClass.READ_ONLY
        refusal = compiled.refusal(step.tool, step.params, risk, where=f"steps.{step.step_id}")
        if refusal is not None:
            reason = {
                "TOOL_NOT_IN_MANIFEST": FindingReason.TOOL_NOT_IN_MANIFEST,
                "PARAMS_INVALID": FindingReason.PARAMS_INVALID,
                "RISK_CLASS_BELOW_BINDING": FindingReason.APPROVAL_MODE_MISMATCH,
            }[refusal.reason]
            findings.append(Finding(reason, step.step_id, refusal.message))
        bound = _bound_mode(compiled, step.tool)
        if step.approval_mode and bound and step.approval_mode != bound:
            if refusal is None or refusal.reason != "RISK_CLASS_BELOW_BINDING":
                findings.append(
                    Finding(
                        FindingReason.APPROVAL_MODE_MISMATCH,
                        step.step_id,
                        f"approval_mode {step.approval_mode.value.lower()} does not match "
                        f"{step.tool}'s binding ({bound.value.lower()})",
                    )
                )
        for gate in step.requires:
            if not compiled.is_open and gate not in active:
                findings.append(
                    Finding(
                        FindingReason.GATE_NOT_ACTIVE,
                        step.step_id,
                        f"requires {gate}, which is not among the active approval gates",
                    )
                )
        if step.execute_when is not None:
            findings += _condition_findings(plan, step.step_id, step.execute_when)
    findings += _budget_findings(plan, budget)
    return findings


def _bound_mode(compiled: CompiledContext, tool: str) -> RiskClass | None:
    binding = compiled.binding(tool)
    return RiskClass(binding["approval_mode"]) if binding else None


def _condition_findings(plan: Plan, step_id: str, expression: Any) -> list[Finding]:
    problem = condition_problem(expression)
    if problem is not None:
        return [Finding(FindingReason.CONDITION_INVALID, step_id, f"execute_when: {problem}")]
    earlier = ancestors(plan, step_id)
    findings = []
    for name in sorted(variables(expression)):
        parts = name.split(".")
        if len(parts) < 2 or parts[0] != "outputs":
            findings.append(
                Finding(
                    FindingReason.CONDITION_INVALID,
                    step_id,
                    f"execute_when reads {name}; it may read only outputs.<step>.…",
                )
            )
        elif parts[1] not in earlier:
            findings.append(
                Finding(
                    FindingReason.CONDITION_INVALID,
                    step_id,
                    f"execute_when reads {name}, but {parts[1]} is not a step it depends on",
                )
            )
    return findings


def _budget_findings(plan: Plan, budget: BudgetReport) -> list[Finding]:
    findings = []
    calls_left = budget.max_tool_calls - budget.tool_calls_used
    if budget.max_tool_calls and len(plan.steps) > calls_left:
        findings.append(
            Finding(
                FindingReason.OVER_BUDGET,
                "",
                f"{len(plan.steps)} steps, and the instance may request {calls_left} more",
            )
        )
    cost = cents(sum(s.estimated_cost_cents for s in plan.steps))
    if budget.max_cost_cents and cost > budget.cost_remaining_cents:
        findings.append(
            Finding(
                FindingReason.OVER_BUDGET,
                "",
                f"the steps are estimated at {cost} cents; "
                f"{budget.cost_remaining_cents} cents remain",
            )
        )
    return findings
