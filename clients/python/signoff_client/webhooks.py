"""Verify a signoff webhook request in your receiver (standard library only).

    from signoff_client.webhooks import WebhookError, verify

    try:
        event = verify(request_body, request_headers, secret=os.environ["SIGNOFF_WEBHOOK_SECRET"])
    except WebhookError:
        return 400  # not from signoff, altered, or replayed too late
    if already_seen(event["delivery_id"]):  # delivery is at least once
        return 200
    ...

signoff signs every request: the header Signoff-Signature is "sha256=" and the hex of
HMAC-SHA256(secret, f"{timestamp}.{body}"), where timestamp is the Signoff-Timestamp header
(Unix seconds at sending) and body the raw request bytes. A retry is signed again, with a new
timestamp, but carries the same Signoff-Delivery id.
"""

import hashlib
import hmac
import json
import time
from collections.abc import Callable, Mapping
from typing import Any

DELIVERY_HEADER = "Signoff-Delivery"
EVENT_HEADER = "Signoff-Event"
TIMESTAMP_HEADER = "Signoff-Timestamp"
SIGNATURE_HEADER = "Signoff-Signature"


class WebhookError(ValueError):
    """The request is not a valid, fresh signoff webhook; the message says why."""


def _header(headers: Mapping[str, str], name: str) -> str:
    wanted = name.lower()
    for key, value in headers.items():
        if key.lower() == wanted:
            return value
    raise WebhookError(f"missing header {name}")


def verify(
    body: bytes,
    headers: Mapping[str, str],
    secret: str | bytes,
    tolerance: float = 300,
    now: Callable[[], float] = time.time,
) -> dict[str, Any]:
    """The request's JSON payload, once its signature matches `secret` and its timestamp is
    within `tolerance` seconds of `now()` (either way: a replayed old request is refused).
    Raises WebhookError otherwise. Pass the body exactly as received, before any parsing."""
    key = secret.encode() if isinstance(secret, str) else secret
    timestamp_text = _header(headers, TIMESTAMP_HEADER)
    signature = _header(headers, SIGNATURE_HEADER)
    try:
        timestamp = int(timestamp_text)
    except ValueError:
        raise WebhookError(f"{TIMESTAMP_HEADER} is not Unix seconds: {timestamp_text!r}") from None
    digest = hmac.new(key, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    expected = f"sha256={digest}"
    if not hmac.compare_digest(expected.encode(), signature.strip().encode()):
        raise WebhookError("signature does not match: wrong secret, or the body was altered")
    age = now() - timestamp
    if abs(age) > tolerance:
        when = f"{age:.0f}s old" if age > 0 else f"{-age:.0f}s in the future"
        raise WebhookError(f"timestamp is {when} (tolerance {tolerance:g}s): possible replay")
    try:
        payload = json.loads(body)
    except ValueError as error:
        raise WebhookError(f"body is not JSON: {error}") from None
    if not isinstance(payload, dict):
        raise WebhookError("body is not a JSON object")
    return payload
