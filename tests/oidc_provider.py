"""A small OpenID provider on loopback for the console's tests: discovery, an authorization
endpoint with a sign-in form (any user the test registered), a token endpoint that checks
the client, the redirect URI and the PKCE verifier (authlib's S256), and the JWKS its ID
tokens (joserfc, RS256) are signed with."""

import base64
import secrets
import socket
import threading
import time
from dataclasses import dataclass, field
from html import escape
from typing import Any
from urllib.parse import urlencode

import uvicorn
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from joserfc import jwt
from joserfc.jwk import RSAKey
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

CLIENT_ID, CLIENT_SECRET = "signoff-console", "console-secret"


@dataclass
class _Grant:
    user: str
    redirect_uri: str
    challenge: str
    nonce: str
    until: float


@dataclass
class OpenIdProvider:
    # user -> extra claims of their ID token (tenant, roles, kind)
    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    key: RSAKey = field(
        default_factory=lambda: RSAKey.generate_key(2048, parameters={"kid": "op-1"})
    )
    issuer: str = ""
    # Every token request, as the test may want to see what the console sent.
    token_requests: list[dict[str, str]] = field(default_factory=list)
    _grants: dict[str, _Grant] = field(default_factory=dict)

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/.well-known/openid-configuration", self.discovery),
                Route("/authorize", self.authorize, methods=["GET", "POST"]),
                Route("/token", self.token, methods=["POST"]),
                Route("/jwks", self.jwks),
            ]
        )

    async def discovery(self, request: Request) -> Response:
        return JSONResponse(
            {
                "issuer": self.issuer,
                "authorization_endpoint": f"{self.issuer}/authorize",
                "token_endpoint": f"{self.issuer}/token",
                "jwks_uri": f"{self.issuer}/jwks",
                "response_types_supported": ["code"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "code_challenge_methods_supported": ["S256"],
            }
        )

    async def jwks(self, request: Request) -> Response:
        return JSONResponse({"keys": [self.key.as_dict(private=False, alg="RS256", use="sig")]})

    async def authorize(self, request: Request) -> Response:
        q = dict(request.query_params)
        if request.method == "POST":
            q.update({k: v for k, v in (await request.form()).items() if isinstance(v, str)})
        problems = [
            q.get("response_type") != "code" and "response_type must be code",
            q.get("client_id") != CLIENT_ID and "unknown client",
            q.get("code_challenge_method") != "S256" and "PKCE S256 is required",
            not q.get("code_challenge") and "no code_challenge",
            not q.get("state") and "no state",
            not q.get("nonce") and "no nonce",
            "openid" not in q.get("scope", "").split() and "scope must include openid",
        ]
        if any(problems):
            return JSONResponse(
                {"error": "invalid_request", "problems": [p for p in problems if p]}, 400
            )
        if request.method == "GET":
            hidden = "".join(
                f'<input type="hidden" name="{escape(k)}" value="{escape(v)}">'
                for k, v in q.items()
            )
            return HTMLResponse(
                "<!doctype html><title>Test identity provider</title>"
                f'<form method="post" action="/authorize">{hidden}'
                '<label>User <input id="username" name="username"></label>'
                '<button id="login" type="submit">Sign in</button></form>'
            )
        user = q.get("username", "")
        if user not in self.users:
            return HTMLResponse("unknown user", 403)
        code = secrets.token_urlsafe(24)
        self._grants[code] = _Grant(
            user, q["redirect_uri"], q["code_challenge"], q["nonce"], time.time() + 60
        )
        query = urlencode({"code": code, "state": q["state"]})
        return RedirectResponse(f"{q['redirect_uri']}?{query}", 303)

    async def token(self, request: Request) -> Response:
        form = {k: v for k, v in (await request.form()).items() if isinstance(v, str)}
        self.token_requests.append(form)
        auth = request.headers.get("authorization", "")

        basic = f"{CLIENT_ID}:{CLIENT_SECRET}".encode()
        if auth != "Basic " + base64.b64encode(basic).decode():
            return JSONResponse({"error": "invalid_client"}, 401)
        grant = self._grants.pop(form.get("code", ""), None)
        if grant is None or time.time() > grant.until:
            return JSONResponse({"error": "invalid_grant"}, 400)
        if form.get("redirect_uri") != grant.redirect_uri:
            return JSONResponse(
                {"error": "invalid_grant", "error_description": "redirect_uri"}, 400
            )
        if create_s256_code_challenge(form.get("code_verifier", "")) != grant.challenge:
            return JSONResponse({"error": "invalid_grant", "error_description": "PKCE"}, 400)
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "sub": grant.user,
            "aud": CLIENT_ID,
            "iat": now,
            "exp": now + 600,
            "nonce": grant.nonce,
            **self.users[grant.user],
        }
        id_token = jwt.encode({"alg": "RS256", "kid": "op-1"}, claims, self.key)
        return JSONResponse(
            {
                "access_token": secrets.token_urlsafe(16),
                "token_type": "Bearer",
                "expires_in": 600,
                "id_token": id_token,
            }
        )


class RunningProvider:
    """The provider served by uvicorn on a free loopback port, in a thread of its own."""

    def __init__(self, provider: OpenIdProvider) -> None:
        self.provider = provider
        self.socket = socket.socket()
        self.socket.bind(("127.0.0.1", 0))
        port = self.socket.getsockname()[1]
        provider.issuer = f"http://127.0.0.1:{port}"
        config = uvicorn.Config(provider.app(), log_config=None, access_log=False, lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.socket]}, daemon=True
        )

    def __enter__(self) -> OpenIdProvider:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.provider

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)
