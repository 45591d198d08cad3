"""The runtime budget: what an instance may do and spend, and what its actions hold.

Costs are cents as the envelope gives them (floats); sums are rounded to a millionth of a
cent so that repeated additions and removals return to exactly where they started."""

from dataclasses import dataclass
from typing import Any

from signoff.domain.states import ActionState

# The largest cost an estimate, a report or a budget may state, in cents (10 billion dollars).
MAX_CENTS = 1e12

# The states whose action's cost counts as spent (its estimate until a cost is reported).
_SPENDING = frozenset(
    {ActionState.APPROVED, ActionState.EXECUTING, ActionState.EXECUTED, ActionState.FAILED}
)


def cents(value: float) -> float:
    return round(value, 6)


def charge(state: ActionState, estimated: float, reported: float | None) -> tuple[float, float]:
    """What one action holds against its instance's budget: (spent, reserved).

    A reported cost is spent whatever the state; an approved action spends its estimate
    until it reports; a waiting action reserves its estimate; anything else holds nothing."""
    if reported is not None:
        return reported, 0.0
    if state in _SPENDING:
        return estimated, 0.0
    if state is ActionState.WAITING_FOR_HUMAN:
        return 0.0, estimated
    return 0.0, 0.0


@dataclass(frozen=True)
class BudgetReport:
    """Where an instance stands: what it used and may use (a limit of 0 is unlimited)."""

    tool_calls_used: int = 0
    max_tool_calls: int = 0
    cost_spent_cents: float = 0.0
    cost_reserved_cents: float = 0.0
    max_cost_cents: float = 0.0

    @property
    def cost_remaining_cents(self) -> float:
        """0 when the cost is unlimited (max_cost_cents 0)."""
        if not self.max_cost_cents:
            return 0.0
        return max(
            0.0, cents(self.max_cost_cents - self.cost_spent_cents - self.cost_reserved_cents)
        )

    def refusal(self, estimated_cost_cents: float) -> str:
        """Why a new action with this estimate may not be requested, or "" when it may."""
        if self.max_tool_calls and self.tool_calls_used >= self.max_tool_calls:
            return f"BUDGET_EXHAUSTED: runtime.max_tool_calls ({self.max_tool_calls}) reached"
        held = cents(self.cost_spent_cents + self.cost_reserved_cents)
        if self.max_cost_cents and cents(held + estimated_cost_cents) > self.max_cost_cents:
            return (
                f"BUDGET_EXHAUSTED: runtime.max_cost_cents ({self.max_cost_cents:g}) would be "
                f"exceeded: spent {self.cost_spent_cents:g}, reserved "
                f"{self.cost_reserved_cents:g}, asked {estimated_cost_cents:g}"
            )
        return ""

    def policy_input(self) -> dict[str, Any]:
        """What rules see as input.instance. cost_remaining_cents and max_cost_cents only
        when the cost is limited, so a rule on them never fires for an unlimited budget."""
        seen: dict[str, Any] = {
            "tool_calls_used": self.tool_calls_used,
            "cost_spent_cents": self.cost_spent_cents,
            "cost_reserved_cents": self.cost_reserved_cents,
        }
        if self.max_cost_cents:
            seen["max_cost_cents"] = self.max_cost_cents
            seen["cost_remaining_cents"] = self.cost_remaining_cents
        return seen

    def as_json(self) -> dict[str, Any]:
        """As events and records carry it (protobuf JSON names)."""
        return {
            "tool_calls_used": self.tool_calls_used,
            "max_tool_calls": self.max_tool_calls,
            "cost_spent_cents": self.cost_spent_cents,
            "cost_reserved_cents": self.cost_reserved_cents,
            "max_cost_cents": self.max_cost_cents,
            "cost_remaining_cents": self.cost_remaining_cents,
        }
