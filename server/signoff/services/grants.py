"""Execution grants: an approved action may run once, with the token signoff handed out,
before its approval expires, and never after its instance was cancelled."""

import hashlib
import hmac
import secrets
from datetime import datetime, timedelta

from signoff.domain.errors import ErrorReason, FailedPrecondition, PermissionDenied
from signoff.domain.models import Action
from signoff.domain.states import ActionState


def _digest(token: str) -> str:
    return "sha256:" + hashlib.sha256(token.encode()).hexdigest()


def issue(action: Action, now: datetime, ttl_from: datetime, ttl: timedelta) -> str:
    """A fresh token for an APPROVED action (voiding any earlier one); "" once expired.
    The expiry is set once, from the decision, so asking again never extends it."""
    if action.state is not ActionState.APPROVED:
        return ""
    if action.grant_expires is None:
        action.grant_expires = ttl_from + ttl
    if action.grant_expires <= now:
        return ""
    token = "grt_" + secrets.token_urlsafe(24)
    action.grant_sha256 = _digest(token)
    return token


def check(action: Action, token: str, now: datetime) -> None:
    """Raises unless `token` is the live grant of this APPROVED action."""
    if action.state in (ActionState.EXECUTING, ActionState.EXECUTED, ActionState.FAILED):
        raise FailedPrecondition(
            ErrorReason.ALREADY_EXECUTED,
            f"action {action.action_id} was already executed ({action.state.value}); a grant is "
            "used once",
            metadata={"action_id": action.action_id, "state": action.state.value},
        )
    if action.state is ActionState.CANCELLED:
        raise FailedPrecondition(
            ErrorReason.GRANT_REVOKED,
            f"action {action.action_id} was cancelled with its instance; its grant is void",
            metadata={"action_id": action.action_id},
        )
    if action.state is not ActionState.APPROVED:
        raise FailedPrecondition(
            ErrorReason.ACTION_NOT_APPROVED,
            f"action {action.action_id} is {action.state.value}; it may not run",
            metadata={"action_id": action.action_id, "state": action.state.value},
        )
    if not action.grant_sha256 or not hmac.compare_digest(_digest(token), action.grant_sha256):
        raise PermissionDenied(
            ErrorReason.INVALID_GRANT,
            f"that is not the current grant of action {action.action_id}; ask RequestDecision "
            "again for a fresh one",
            metadata={"action_id": action.action_id},
        )
    if action.grant_expires is not None and action.grant_expires <= now:
        raise FailedPrecondition(
            ErrorReason.GRANT_EXPIRED,
            f"the approval of action {action.action_id} expired at "
            f"{action.grant_expires.isoformat()}; propose the action again",
            metadata={"action_id": action.action_id},
        )
    action.grant_sha256 = ""  # spent
