"""Console sessions: a signed-in person's principal, behind an opaque cookie.

A session is one more credential of the one authentication path (Authenticator): a call
that carries the session cookie and no authorization header runs as the session's
principal, against the same rules table as a bearer token. Because browsers send cookies
on their own, a session authenticates a call only together with the session's CSRF token
in the `x-signoff-csrf` header, which a page of another site cannot read or set.

Sessions live in the server's memory: they end when the server stops, and a session made
by one replica is unknown to the others (the console then asks to sign in again).
"""

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from http.cookies import CookieError, SimpleCookie

from signoff.domain.errors import ErrorReason, Unauthenticated
from signoff.domain.models import Principal

SESSION_COOKIE = "signoff_session"
CSRF_HEADER = "x-signoff-csrf"
# How long a session lasts unless the sign-in says less (an ID token's expiry does not
# bound it: the console asks the issuer again when the session ends).
SESSION_SECONDS = 8 * 3600.0
# Bounded memory: at most this many live sessions; the oldest goes first.
MAX_SESSIONS = 10_000


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


@dataclass(frozen=True)
class Session:
    principal: Principal
    csrf: str
    expires: float
    # How the person signed in ("oidc" or "token"), shown by the console.
    method: str


def cookie_value(header: str, name: str) -> str:
    """The value of cookie `name` in a Cookie header ("" if absent or unparsable)."""
    if not header:
        return ""
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(header)
    except CookieError:
        return ""
    morsel = jar.get(name)
    return morsel.value if morsel is not None else ""


class SessionStore:
    """Sessions by the sha256 of their id: the ids themselves are kept only in cookies."""

    def __init__(self, lifetime: float = SESSION_SECONDS) -> None:
        self.lifetime = lifetime
        self._sessions: dict[str, Session] = {}

    def create(self, principal: Principal, method: str, lifetime: float | None = None) -> str:
        """A new session for `principal`; returns its id (the cookie's value)."""
        self._sweep()
        while len(self._sessions) >= MAX_SESSIONS:
            self._sessions.pop(next(iter(self._sessions)))
        session_id = secrets.token_urlsafe(32)
        seconds = min(self.lifetime, lifetime if lifetime is not None else self.lifetime)
        self._sessions[_digest(session_id)] = Session(
            principal, secrets.token_urlsafe(24), time.time() + seconds, method
        )
        return session_id

    def get(self, session_id: str) -> Session | None:
        """The live session of this id, or None."""
        if not session_id:
            return None
        key = _digest(session_id)
        session = self._sessions.get(key)
        if session is None:
            return None
        if time.time() >= session.expires:
            del self._sessions[key]
            return None
        return session

    def end(self, session_id: str) -> None:
        self._sessions.pop(_digest(session_id), None)

    def authenticate(self, session_id: str, csrf: str) -> Principal:
        """The principal of a call made with the session cookie: only with its CSRF token."""
        session = self.get(session_id)
        if session is None:
            raise Unauthenticated(
                ErrorReason.SESSION_EXPIRED,
                "the console session has ended or is unknown: sign in again",
            )
        if not csrf or not hmac.compare_digest(csrf.encode(), session.csrf.encode()):
            raise Unauthenticated(
                ErrorReason.CSRF_TOKEN_MISSING,
                f"a call with the session cookie must send the session's {CSRF_HEADER} header",
            )
        return session.principal

    def _sweep(self) -> None:
        now = time.time()
        for key in [k for k, s in self._sessions.items() if now >= s.expires]:
            del self._sessions[key]
