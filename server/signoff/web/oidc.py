"""The console's OpenID Connect client: the authorization code flow with PKCE (S256).

authlib builds the authorization URL and exchanges the code (with the PKCE verifier, and
the client secret when there is one); joserfc checks the ID token against the issuer's
JWKS: signature, issuer, audience, expiry and the nonce of this sign-in. The verified
claims become a principal exactly as an API JWT's do (principal_from_claims).
"""

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import httpx
from authlib.integrations.httpx_client import AsyncOAuth2Client
from authlib.oauth2.rfc6749.errors import OAuth2Error
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from signoff.auth.authenticators import JWT_ALGORITHMS, OidcSettings, principal_from_claims
from signoff.auth.config import is_secure_url
from signoff.domain.errors import SignoffError
from signoff.domain.models import Principal

# The issuer's discovery document and keys are cached this long (a key the issuer removes
# stops being trusted within that time).
CACHE_SECONDS = 300.0
TIMEOUT = 10.0
LEEWAY = 30


class SignInFailed(Exception):
    """The sign-in did not prove who the person is; the message says why (it is shown)."""


@dataclass
class _Cached:
    value: dict[str, Any]
    until: float


class OidcClient:
    def __init__(self, settings: OidcSettings) -> None:
        self.settings = settings
        self._cache: dict[str, _Cached] = {}
        self._lock = asyncio.Lock()

    def _client(self) -> AsyncOAuth2Client:
        s = self.settings
        return AsyncOAuth2Client(
            client_id=s.client_id,
            client_secret=s.client_secret or None,
            scope=" ".join(s.scopes),
            redirect_uri=s.redirect_uri,
            code_challenge_method="S256",
            token_endpoint_auth_method="client_secret_basic" if s.client_secret else "none",
            timeout=TIMEOUT,
        )

    async def _get_json(self, url: str) -> dict[str, Any]:
        async with self._lock:
            cached = self._cache.get(url)
            if cached is not None and time.monotonic() < cached.until:
                return cached.value
            try:
                async with httpx.AsyncClient(timeout=TIMEOUT) as client:
                    response = await client.get(url)
                    response.raise_for_status()
                    value = response.json()
            except (httpx.HTTPError, ValueError) as error:
                raise SignInFailed(f"the identity provider did not answer {url}: {error}") from None
            if not isinstance(value, dict):
                raise SignInFailed(f"{url} did not answer a JSON object")
            self._cache[url] = _Cached(value, time.monotonic() + CACHE_SECONDS)
            return value

    async def _metadata(self) -> dict[str, Any]:
        issuer = self.settings.issuer
        found = await self._get_json(f"{issuer}/.well-known/openid-configuration")
        if found.get("issuer", "").rstrip("/") != issuer:
            raise SignInFailed(f"the discovery document's issuer is not {issuer}")
        for key in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
            url = found.get(key)
            if not isinstance(url, str) or not is_secure_url(url):
                raise SignInFailed(f"the discovery document has no usable {key}")
        return found

    async def authorization_url(self, state: str, nonce: str, verifier: str) -> str:
        metadata = await self._metadata()
        async with self._client() as client:
            url, _ = client.create_authorization_url(
                metadata["authorization_endpoint"], state=state, nonce=nonce, code_verifier=verifier
            )
        return str(url)

    async def principal(self, code: str, verifier: str, nonce: str) -> Principal:
        """The signed-in principal, or SignInFailed."""
        metadata = await self._metadata()
        try:
            async with self._client() as client:
                token = await client.fetch_token(
                    metadata["token_endpoint"],
                    grant_type="authorization_code",
                    code=code,
                    code_verifier=verifier,
                )
        except (OAuth2Error, httpx.HTTPError, ValueError) as error:
            raise SignInFailed(f"the identity provider refused the code: {error}") from None
        id_token = token.get("id_token")
        if not isinstance(id_token, str):
            raise SignInFailed("the identity provider sent no ID token")
        keys = await self._get_json(metadata["jwks_uri"])
        try:
            decoded = jwt.decode(id_token, KeySet.import_key_set(keys), algorithms=JWT_ALGORITHMS)  # type: ignore[arg-type]
            jwt.JWTClaimsRegistry(
                leeway=LEEWAY,
                iss={"essential": True, "value": self.settings.issuer},
                aud={"essential": True, "value": self.settings.client_id},
                sub={"essential": True},
                exp={"essential": True},
                nonce={"essential": True, "value": nonce},
            ).validate(decoded.claims)
        except (JoseError, ValueError, TypeError) as error:
            raise SignInFailed(f"the ID token is not valid: {error}") from None
        try:
            return principal_from_claims(decoded.claims, self.settings.claims)
        except SignoffError as error:
            raise SignInFailed(error.message) from None
