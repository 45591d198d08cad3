"""Slack messages, the pure part: an action (and its votes) as Block Kit, and the value its
buttons carry back. No I/O here.

A button's value names the action and the action_sha256 shown in the message; a click
votes on exactly that version of the action (an edit since then makes the vote fail with
EVIDENCE_CHANGED, and the message shows the new version by then).
"""

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from signoff.domain.models import Action, Vote
from signoff.domain.states import ActionState, GateState, Verdict

APPROVE = "signoff_approve"
REJECT = "signoff_reject"
OPEN = "signoff_open"  # the link to the console; Slack reports its clicks too
VERDICTS = {APPROVE: Verdict.APPROVE, REJECT: Verdict.REJECT}

# Block Kit limits: a text holds 3000 characters, a section's field 2000.
_TEXT_LIMIT = 2900
_PARAMS_LIMIT = 2500
_FIELD_LIMIT = 1900

_TITLES = {
    ActionState.WAITING_FOR_HUMAN: ":hourglass_flowing_sand: Approval needed",
    ActionState.APPROVED: ":white_check_mark: Approved",
    ActionState.REJECTED: ":x: Rejected",
    ActionState.EXPIRED: ":alarm_clock: Expired",
    ActionState.CANCELLED: ":no_entry_sign: Cancelled",
    ActionState.EXECUTING: ":white_check_mark: Approved, executing",
    ActionState.EXECUTED: ":white_check_mark: Approved and executed",
    ActionState.FAILED: ":warning: Approved, execution failed",
}


@dataclass(frozen=True)
class ButtonValue:
    action_id: str
    action_sha256: str


def button_value(action: Action) -> str:
    return json.dumps({"action_id": action.action_id, "sha256": action.action_sha256})


def escape(text: str) -> str:
    """Slack mrkdwn treats &, < and > as markup: shown text never links or mentions."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _code(text: str) -> str:
    return "`" + escape(text).replace("`", "'") + "`"


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _date(moment: datetime) -> str:
    """A date Slack shows in each reader's time zone (the fallback is UTC)."""
    epoch = int(moment.timestamp())
    return f"<!date^{epoch}^{{date_short_pretty}} {{time}}|{moment.isoformat()}>"


Mention = Callable[[str], str]


def who(principal_id: str, mention: Mention) -> str:
    """A principal as the message shows it: the Slack user too, when one is mapped to it."""
    user = mention(principal_id)
    shown = f"*{escape(principal_id)}*"
    return f"<@{user}> ({shown})" if user else shown


def _gates(action: Action) -> str:
    lines = []
    for gate in action.gates:
        line = f"{_code(gate.gate_id)} {gate.state.value.lower()}"
        if gate.state is GateState.WAITING:
            line += f": {gate.approvals} of {gate.quorum} approvals"
            if gate.rejections:
                line += f", {gate.rejections} of {gate.rejections_to_settle} rejections"
        lines.append(line)
    return "\n".join(lines) or _code(", ".join(action.gate_ids) or "-")


def _expiry(action: Action) -> str:
    waiting = action.waiting_gates()
    if not waiting:
        return "-"
    return _date(min(gate.deadline for gate in waiting))


def _outcome(action: Action, mention: Mention) -> str:
    state = action.state
    if state is ActionState.WAITING_FOR_HUMAN:
        return ""
    if state is ActionState.EXPIRED:
        text = "Nobody decided in time: the action expired."
    elif state is ActionState.CANCELLED:
        text = "The action no longer waits: its instance was cancelled or ended."
    else:
        verdict = "Rejected" if state is ActionState.REJECTED else "Approved"
        text = f"{verdict} by {who(action.decided_by, mention)}"
        if action.decide_time is not None:
            text += f" at {_date(action.decide_time)}"
        if action.decision_reason:
            text += f": {escape(_clip(action.decision_reason, 500))}"
    return f"*{_TITLES.get(state, state.value)}*. {text}"


def render(
    action: Action,
    votes: Sequence[Vote],
    *,
    mention: Mention,
    console_url: str | None,
) -> tuple[str, list[dict[str, Any]]]:
    """The message of an action as it stands: (notification text, blocks)."""
    title = _TITLES.get(action.state, action.state.value)
    tool = action.proposal.tool
    waits = action.state is ActionState.WAITING_FOR_HUMAN
    params = json.dumps(action.proposal.params, indent=2, ensure_ascii=False, sort_keys=True)
    rules = action.policy.get("rule_ids") or []
    fields = {
        "Tool": _code(tool),
        "Risk": _code(action.proposal.risk_class.value),
        "Gate": _gates(action),
        "Expires": _expiry(action) if waits else "-",
        "Tenant": _code(action.tenant_id),
        "Instance": _code(action.instance_id),
    }
    blocks: list[dict[str, Any]] = [
        {
            "type": "section",
            "text": {"type": "mrkdwn", "text": f"*{title}*: {_code(tool)}"},
        },
        {
            "type": "section",
            "fields": [
                {"type": "mrkdwn", "text": _clip(f"*{name}*\n{value}", _FIELD_LIMIT)}
                for name, value in fields.items()
            ],
        },
        {
            "type": "section",
            "text": {
                "type": "mrkdwn",
                "text": "*Params*\n```" + _clip(escape(params), _PARAMS_LIMIT) + "```",
            },
        },
    ]
    context = []
    if rules:
        context.append("*Matched rules*: " + ", ".join(_code(str(rule)) for rule in rules))
    if action.decision_reason and waits:
        context.append("*Why*: " + escape(_clip(action.decision_reason, 1000)))
    context.append(f"*Action* {_code(action.action_id)} sha256 {_code(action.action_sha256)}")
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": t} for t in context]})
    if votes:
        lines = [
            (":white_check_mark: " if v.verdict is Verdict.APPROVE else ":x: ")
            + f"{v.verdict.value.lower()}d by {who(v.approver, mention)}"
            + (f": {escape(_clip(v.reason, 200))}" if v.reason else "")
            for v in votes[-10:]
        ]
        shown = _clip("\n".join(lines), _TEXT_LIMIT)
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": shown}]})
    outcome = _outcome(action, mention)
    if outcome:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": outcome}})
    buttons: list[dict[str, Any]] = []
    if waits:
        value = button_value(action)
        buttons += [
            {
                "type": "button",
                "action_id": APPROVE,
                "style": "primary",
                "text": {"type": "plain_text", "text": "Approve"},
                "value": value,
            },
            {
                "type": "button",
                "action_id": REJECT,
                "style": "danger",
                "text": {"type": "plain_text", "text": "Reject"},
                "value": value,
            },
        ]
    if console_url:
        buttons.append(
            {
                "type": "button",
                "action_id": OPEN,
                "text": {"type": "plain_text", "text": "Open in console"},
                "url": f"{console_url.rstrip('/')}/actions/{action.action_id}",
            }
        )
    if buttons:
        blocks.append({"type": "actions", "block_id": "signoff_decide", "elements": buttons})
    summary = _outcome(action, mention) if not waits else f"{title}: {_code(tool)}"
    text = f"{summary} ({escape(action.tenant_id)})"
    return _clip(text, 3000), blocks
