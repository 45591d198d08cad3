"""The approvers' console: routes beside the Connect services on the HTTP listener.

The server renders no data. It serves a page shell (the signed-in identity and the
session's CSRF token in <meta> tags), one hand-written ES module and a stylesheet; the
module calls the Connect API itself with the session cookie and the CSRF header, so every
read and every vote goes through the API's own authentication, rules table and use cases
(see docs/console.md). The routes here only sign people in and out:

  GET  /signin                 the sign-in page (OpenID provider, development token)
  GET  /signin/oidc            start the authorization code flow with PKCE
  GET  <redirect_uri's path>   the provider's redirect: code -> ID token -> session
  POST /signin/token           development mode: sign in with a human's token
  POST /signout                end the session

A console page without a session redirects to /signin and renders nothing.
"""

import hashlib
import hmac
import html
import json
import logging
import secrets
import string
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib import resources
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from signoff.auth.authenticators import Authenticator, ConsoleSettings
from signoff.auth.sessions import CSRF_HEADER, SESSION_COOKIE, Session, SessionStore
from signoff.domain.errors import SignoffError
from signoff.domain.models import Principal, PrincipalKind
from signoff.web.oidc import OidcClient, SignInFailed

log = logging.getLogger("signoff.console")

# A cookie that binds a sign-in in progress to the browser that started it, and is the
# double-submit CSRF token of the sign-in form.
SIGNIN_COOKIE = "signoff_signin"
SIGNIN_SECONDS = 600.0
MAX_PENDING_SIGNINS = 10_000
MAX_FORM_BYTES = 16_384
STATIC = "/console/static"

_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
_HEADERS = {
    "content-security-policy": _CSP,
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
    "cache-control": "no-store",
}


def _template(name: str) -> string.Template:
    text = resources.files("signoff.web").joinpath("templates", name).read_text("utf-8")
    return string.Template(text)


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def _local(target: str) -> str:
    """`target` if it is a path of this site, else "/": never an open redirect."""
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return "/"
    if "\\" in target or any(ord(c) < 32 for c in target):
        return "/"
    return target


@dataclass
class _PendingSignIn:
    verifier: str
    nonce: str
    target: str
    browser: str  # sha256 of the sign-in cookie of the browser that started it
    until: float


class Console:
    def __init__(
        self, settings: ConsoleSettings, authenticator: Authenticator, secure_cookies: bool
    ) -> None:
        self.settings = settings
        self.authenticator = authenticator
        if authenticator.sessions is None:
            authenticator.sessions = SessionStore(settings.session_seconds)
        self.sessions: SessionStore = authenticator.sessions
        self.secure = secure_cookies
        self.oidc = OidcClient(settings.oidc) if settings.oidc is not None else None
        self._pending: dict[str, _PendingSignIn] = {}
        self._shell = _template("shell.html")
        self._signin = _template("signin.html")

    # -- responses ----------------------------------------------------------------------

    def _page(self, body: str, status: int = 200) -> HTMLResponse:
        return HTMLResponse(body, status, headers=_HEADERS)

    def _redirect(self, target: str) -> RedirectResponse:
        return RedirectResponse(target, 303, headers=_HEADERS)

    def _set_cookie(self, response: Response, name: str, value: str, max_age: int) -> None:
        response.set_cookie(
            name, value, max_age=max_age, path="/", secure=self.secure, httponly=True,
            samesite="lax",
        )  # fmt: skip

    def _session(self, request: Request) -> tuple[str, Session] | None:
        session_id = request.cookies.get(SESSION_COOKIE, "")
        session = self.sessions.get(session_id)
        return (session_id, session) if session is not None else None

    def _to_signin(self, request: Request, error: str = "") -> RedirectResponse:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        query = f"next={quote(_local(target), safe='')}"
        if error:
            query += f"&error={quote(error, safe='')}"
        return self._redirect(f"/signin?{query}")

    # -- pages --------------------------------------------------------------------------

    def page(self, name: str, title: str) -> Callable[[Request], Awaitable[Response]]:
        async def render(request: Request) -> Response:
            found = self._session(request)
            if found is None:
                return self._to_signin(request)
            _, session = found
            p = session.principal
            identity = {
                "id": p.id,
                "tenant": p.tenant,
                "roles": sorted(p.roles),
                "admin": p.is_admin,
                "method": session.method,
            }
            body = self._shell.substitute(
                title=html.escape(title),
                page=html.escape(name),
                static=STATIC,
                csrf=html.escape(session.csrf),
                csrf_header=CSRF_HEADER,
                identity=html.escape(json.dumps(identity)),
            )
            return self._page(body)

        return render

    async def signin_page(self, request: Request) -> Response:
        target = _local(request.query_params.get("next", "/"))
        if self._session(request) is not None and not request.query_params.get("error"):
            return self._redirect(target)
        browser = request.cookies.get(SIGNIN_COOKIE, "")
        if len(browser) < 32:
            browser = secrets.token_urlsafe(32)
        error = request.query_params.get("error", "")[:500]
        methods = []
        if self.oidc is not None:
            issuer = urlsplit(self.oidc.settings.issuer).netloc
            methods.append(
                f'<a class="button primary" id="signin-oidc" '
                f'href="/signin/oidc?next={html.escape(quote(target, safe=""))}">'
                f"Sign in with {html.escape(issuer)}</a>"
            )
        if self.settings.token_sign_in:
            methods.append(
                '<form method="post" action="/signin/token" class="token-form">'
                '<p class="hint">Development mode: paste the <code>SIGNOFF_APPROVER_TOKEN</code> '
                "(or <code>SIGNOFF_ADMIN_TOKEN</code>) that <code>signoff serve</code> printed."
                "</p>"
                '<label for="token">Token</label>'
                '<input id="token" name="token" type="password" autocomplete="off" required>'
                f'<input type="hidden" name="csrf" value="{html.escape(browser)}">'
                f'<input type="hidden" name="next" value="{html.escape(target)}">'
                '<button type="submit" class="primary" id="signin-token">Sign in</button>'
                "</form>"
            )
        body = self._signin.substitute(
            static=STATIC,
            error=f'<p class="error" id="signin-error">{html.escape(error)}</p>' if error else "",
            methods="\n".join(methods) or "<p>No sign-in method is configured.</p>",
        )
        response = self._page(body)
        self._set_cookie(response, SIGNIN_COOKIE, browser, int(SIGNIN_SECONDS))
        return response

    # -- OpenID Connect -----------------------------------------------------------------

    async def signin_oidc(self, request: Request) -> Response:
        if self.oidc is None:
            return self._page("no OpenID provider is configured", 404)
        browser = request.cookies.get(SIGNIN_COOKIE, "")
        if len(browser) < 32:  # the sign-in page sets it: start there
            return self._redirect("/signin")
        self._sweep()
        state, nonce, verifier = (secrets.token_urlsafe(32) for _ in range(3))
        try:
            url = await self.oidc.authorization_url(state, nonce, verifier)
        except SignInFailed as error:
            log.warning("console sign-in: %s", error)
            return self._redirect(f"/signin?error={quote(str(error), safe='')}")
        self._pending[state] = _PendingSignIn(
            verifier,
            nonce,
            _local(request.query_params.get("next", "/")),
            _digest(browser),
            time.monotonic() + SIGNIN_SECONDS,
        )
        return self._redirect(url)

    async def oidc_callback(self, request: Request) -> Response:
        if self.oidc is None:
            return self._page("no OpenID provider is configured", 404)
        q = request.query_params
        pending = self._pending.pop(q.get("state", ""), None)
        browser = request.cookies.get(SIGNIN_COOKIE, "")
        if (
            pending is None
            or time.monotonic() > pending.until
            or not hmac.compare_digest(pending.browser, _digest(browser))
        ):
            return self._fail("this sign-in is unknown, expired or from another browser")
        if q.get("error"):
            return self._fail(f"the identity provider answered {q['error'][:100]}")
        code = q.get("code", "")
        if not code or len(code) > 2048:
            return self._fail("the identity provider sent no code")
        try:
            principal = await self.oidc.principal(code, pending.verifier, pending.nonce)
        except SignInFailed as error:
            log.warning("console sign-in: %s", error)
            return self._fail(str(error))
        return self._start(principal, "oidc", pending.target)

    # -- development tokens, sign-out ---------------------------------------------------

    async def _form(self, request: Request) -> dict[str, str] | Response:
        """The fields of an HTML form post, or the answer to a request that is not one."""
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind not in ("", "application/x-www-form-urlencoded"):
            return self._refuse(415, "invalid_argument", "send an HTML form (urlencoded)")
        body = await request.body()
        if len(body) > MAX_FORM_BYTES:
            return self._refuse(
                413, "resource_exhausted", f"a form is at most {MAX_FORM_BYTES} bytes"
            )
        try:
            fields = parse_qsl(body.decode("utf-8"), max_num_fields=20, strict_parsing=False)
        except (UnicodeDecodeError, ValueError):
            return self._refuse(400, "invalid_argument", "the form is not valid UTF-8 urlencoded")
        return dict(fields)

    async def signin_token(self, request: Request) -> Response:
        if not self.settings.token_sign_in:
            return self._page("sign-in with a token is for development mode", 404)
        form = await self._form(request)
        if isinstance(form, Response):
            return form
        browser = request.cookies.get(SIGNIN_COOKIE, "")
        if len(browser) < 32 or not hmac.compare_digest(
            form.get("csrf", "").encode(), browser.encode()
        ):
            return self._refuse_csrf()
        token = form.get("token", "").strip()
        target = _local(form.get("next", "/"))
        if not token or len(token) > 4096:
            return self._fail("paste a token", target)
        try:  # the API's own authentication of a bearer token
            principal = self.authenticator.authenticate({"authorization": f"Bearer {token}"})
        except SignoffError as error:
            return self._fail(error.message, target)
        return self._start(principal, "token", target)

    async def signout(self, request: Request) -> Response:
        found = self._session(request)
        if found is None:
            return self._redirect("/signin")
        session_id, session = found
        form = await self._form(request)
        if isinstance(form, Response):
            return form
        sent = request.headers.get(CSRF_HEADER) or form.get("csrf", "")
        if not sent or not hmac.compare_digest(sent.encode(), session.csrf.encode()):
            return self._refuse_csrf()
        self.sessions.end(session_id)
        response = self._redirect("/signin")
        response.delete_cookie(SESSION_COOKIE, path="/", secure=self.secure, httponly=True)
        return response

    # -- helpers ------------------------------------------------------------------------

    def _start(self, principal: Principal, method: str, target: str) -> Response:
        if principal.kind is not PrincipalKind.HUMAN:
            return self._fail(f"{principal.id} is not a person: the console is for approvers")
        session_id = self.sessions.create(principal, method)
        log.info("console sign-in: %s (%s)", principal.id, method)
        response = self._redirect(target)
        self._set_cookie(response, SESSION_COOKIE, session_id, int(self.sessions.lifetime))
        response.delete_cookie(SIGNIN_COOKIE, path="/", secure=self.secure, httponly=True)
        return response

    def _fail(self, why: str, target: str = "/") -> Response:
        return self._redirect(
            f"/signin?next={quote(target, safe='')}&error={quote(why[:300], safe='')}"
        )

    def _refuse_csrf(self) -> Response:
        return self._refuse(403, "permission_denied", "missing or wrong CSRF token")

    def _refuse(self, status: int, code: str, message: str) -> Response:
        body = json.dumps({"code": code, "message": message}).encode()
        return Response(body, status, media_type="application/json", headers=_HEADERS)

    def _sweep(self) -> None:
        now = time.monotonic()
        for state in [s for s, p in self._pending.items() if now > p.until]:
            del self._pending[state]
        while len(self._pending) >= MAX_PENDING_SIGNINS:
            self._pending.pop(next(iter(self._pending)))

    def routes(self) -> list[BaseRoute]:
        callback = "/signin/callback"
        if self.settings.oidc is not None:
            callback = urlsplit(self.settings.oidc.redirect_uri).path or callback
        static = StaticFiles(packages=[("signoff.web", "static")])
        return [
            Route("/", self.page("inbox", "Inbox"), methods=["GET", "HEAD"]),
            Route("/actions/{action_id}", self.page("action", "Action"), methods=["GET", "HEAD"]),
            Route("/signin", self.signin_page, methods=["GET", "HEAD"]),
            Route("/signin/oidc", self.signin_oidc, methods=["GET"]),
            Route(callback, self.oidc_callback, methods=["GET"]),
            Route("/signin/token", self.signin_token, methods=["POST"]),
            Route("/signout", self.signout, methods=["POST"]),
            Mount(STATIC, app=_Headers(static)),
        ]


class _Headers:
    """The console's security headers on its static files too."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        async def with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                headers = [
                    (k, v)
                    for k, v in message.get("headers", [])
                    if k.decode().lower() != "cache-control"
                ]
                for key, value in _HEADERS.items():
                    if key != "cache-control":
                        headers.append((key.encode(), value.encode()))
                headers.append((b"cache-control", b"no-cache"))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_headers)


def console_routes(
    settings: ConsoleSettings, authenticator: Authenticator, secure_cookies: bool
) -> list[BaseRoute]:
    return Console(settings, authenticator, secure_cookies).routes()
