"""Turning credentials into a Principal: static bearer tokens (stored hashed), JWTs from an
OIDC issuer verified against its JWKS, and mTLS client certificates by SPIFFE ID."""

import hashlib
import json
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt

from signoff.auth.config import SLACK_TEAM as SLACK_TEAM
from signoff.auth.config import SLACK_USER as SLACK_USER
from signoff.auth.config import AuthConfigError, read_auth_file
from signoff.auth.sessions import CSRF_HEADER, SESSION_COOKIE, SessionStore, cookie_value
from signoff.domain.errors import ErrorReason, Unauthenticated
from signoff.domain.models import ALL_TENANTS, Principal, PrincipalKind

# Asymmetric only: a JWKS publishes public keys, so HS* (shared secrets) never apply.
JWT_ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA"]
# A verified JWT is trusted again without a new signature check (about half a millisecond,
# on every call of an agent) until it expires, and for at most this long, so a key removed
# from the JWKS stops being trusted within that time.
VERIFIED_JWT_SECONDS = 60.0
_VERIFIED_JWTS_KEPT = 10_000


def token_sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class ClaimNames:
    """Which claims of a verified token name the principal's tenant, roles and kind."""

    tenant: str = "tenant"
    roles: str = "roles"
    kind: str = "kind"


def principal_from_claims(claims: Mapping[str, Any], names: ClaimNames) -> Principal:
    """The principal of a verified token's claims (an API JWT, or the console's ID token):
    the subject, and the tenant, roles and kind claims named by `names`."""
    if names.tenant not in claims:
        raise Unauthenticated(ErrorReason.INVALID_TOKEN, f"the token has no {names.tenant} claim")
    try:
        kind = PrincipalKind(claims.get(names.kind, "human"))
    except ValueError:
        raise Unauthenticated(ErrorReason.INVALID_TOKEN, "the token's kind is unknown") from None
    roles = claims.get(names.roles, [])
    if isinstance(roles, str):  # a space-separated string, as OAuth scopes are written
        roles = roles.split()
    return Principal(
        id=str(claims["sub"]),
        kind=kind,
        tenant=str(claims[names.tenant]),
        roles=frozenset(str(role) for role in roles),
    )


@dataclass
class JwtVerifier:
    issuer: str
    audience: str
    leeway: float = 30.0
    jwks_file: str = ""
    jwks_url: str = ""
    tenant_claim: str = "tenant"
    roles_claim: str = "roles"
    kind_claim: str = "kind"
    _keys: dict[str, Any] = field(default_factory=dict, repr=False)
    _client: Any = field(default=None, repr=False)
    # token -> (its principal, until when it is trusted without a new check)
    _verified: dict[str, tuple[Principal, float]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if bool(self.jwks_file) == bool(self.jwks_url):
            raise ValueError("jwt: give exactly one of jwks_file and jwks_url")
        if self.jwks_file:
            keys = jwt.PyJWKSet.from_json(Path(self.jwks_file).read_text())
            self._keys = {key.key_id or "": key for key in keys.keys}
        else:
            # The key set is cached for 5 minutes and nothing longer, so a key the issuer
            # removes stops being trusted within that time.
            self._client = jwt.PyJWKClient(
                self.jwks_url, cache_keys=False, lifespan=300, timeout=10
            )

    def may_fetch(self, token: str) -> bool:
        """Whether verifying this token may fetch the JWKS over the network (blocking I/O):
        a key set from a URL, and a token not already verified."""
        known = self._verified.get(token)
        return self._client is not None and (known is None or time.time() >= known[1])

    def _key(self, token: str) -> Any:
        if self._client is not None:
            return self._client.get_signing_key_from_jwt(token).key
        kid = jwt.get_unverified_header(token).get("kid", "")
        if kid not in self._keys:
            raise Unauthenticated(
                ErrorReason.INVALID_TOKEN, f"no key {kid!r} in the configured JWKS"
            )
        return self._keys[kid].key

    def verify(self, token: str) -> Principal:
        now = time.time()
        known = self._verified.get(token)
        if known is not None and now < known[1]:
            return known[0]
        principal, expires = self._check(token)
        if len(self._verified) >= _VERIFIED_JWTS_KEPT:
            self._verified.clear()  # bounded memory; the next calls simply check again
        self._verified[token] = (principal, min(expires + self.leeway, now + VERIFIED_JWT_SECONDS))
        return principal

    def _check(self, token: str) -> tuple[Principal, float]:
        """The token's principal and expiry, or Unauthenticated saying what is wrong."""
        try:
            claims = jwt.decode(
                token,
                self._key(token),
                algorithms=JWT_ALGORITHMS,
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthenticated(ErrorReason.TOKEN_EXPIRED, "the token has expired") from None
        except jwt.InvalidIssuerError:
            raise Unauthenticated(
                ErrorReason.WRONG_ISSUER, f"the token's issuer is not {self.issuer}"
            ) from None
        except jwt.InvalidAudienceError:
            raise Unauthenticated(
                ErrorReason.WRONG_AUDIENCE, f"the token is not for {self.audience}"
            ) from None
        except jwt.PyJWTError as error:
            raise Unauthenticated(
                ErrorReason.INVALID_TOKEN, f"the token is not valid: {error}"
            ) from None
        claimed = ClaimNames(self.tenant_claim, self.roles_claim, self.kind_claim)
        return principal_from_claims(claims, claimed), float(claims["exp"])


@dataclass
class Authenticator:
    """Every way a caller can prove who it is, tried in order."""

    tokens: dict[str, Principal] = field(default_factory=dict)  # sha256(token) -> principal
    jwt: JwtVerifier | None = None
    workloads: dict[str, Principal] = field(default_factory=dict)  # SPIFFE ID -> principal
    # The console's sessions (a cookie, with its CSRF header), when the console is served.
    sessions: SessionStore | None = None

    def may_block(self, metadata: Mapping[str, str]) -> bool:
        """Whether authenticate() may wait on the network (a JWKS fetch): run it off the
        event loop then."""
        token = metadata.get("authorization", "").partition(" ")[2].strip()
        return (
            self.jwt is not None
            and token.count(".") == 2
            and token_sha256(token) not in self.tokens
            and self.jwt.may_fetch(token)
        )

    def authenticate(self, metadata: Mapping[str, str], spiffe_id: str = "") -> Principal:
        header = metadata.get("authorization", "")
        if header:
            scheme, _, token = header.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise Unauthenticated(
                    ErrorReason.INVALID_TOKEN, "authorization must be 'Bearer <token>'"
                )
            token = token.strip()
            known = self.tokens.get(token_sha256(token))
            if known is not None:
                return known
            if self.jwt is not None and token.count(".") == 2:
                return self.jwt.verify(token)
            raise Unauthenticated(ErrorReason.INVALID_TOKEN, "the bearer token is not known")
        if spiffe_id:
            workload = self.workloads.get(spiffe_id)
            if workload is None:
                raise Unauthenticated(ErrorReason.UNKNOWN_WORKLOAD, f"no principal for {spiffe_id}")
            return workload
        if self.sessions is not None:
            session_id = cookie_value(metadata.get("cookie", ""), SESSION_COOKIE)
            if session_id:
                return self.sessions.authenticate(session_id, metadata.get(CSRF_HEADER, ""))
        raise Unauthenticated(
            ErrorReason.MISSING_CREDENTIALS,
            "send 'authorization: Bearer <token>' or a client certificate",
        )


@dataclass(frozen=True)
class TlsFiles:
    server_cert: Path
    server_key: Path
    client_ca: Path


@dataclass(frozen=True)
class OidcSettings:
    """The console's OpenID provider: sign-in by the authorization code flow with PKCE."""

    issuer: str
    client_id: str
    redirect_uri: str
    client_secret: str = ""  # none: a public client (PKCE alone)
    scopes: tuple[str, ...] = ("openid", "profile", "email")
    claims: ClaimNames = ClaimNames()


@dataclass(frozen=True)
class ConsoleSettings:
    """The approvers' console on the HTTP listener, and how people sign in to it."""

    oidc: OidcSettings | None = None
    # Development mode: sign in by pasting a development token of a human principal.
    token_sign_in: bool = False
    session_seconds: float = 8 * 3600.0


@dataclass(frozen=True)
class SlackDirectory:
    """The auth config's `slack` section: which Slack users of one workspace (team) are
    which signoff principals. Slack vouches for the user id of a signed button click; this
    table is the only thing that turns it into an approver."""

    team_id: str
    users: Mapping[str, Principal]  # Slack user id -> principal

    def principal(self, team_id: str, user_id: str) -> Principal | None:
        if team_id != self.team_id:
            return None
        return self.users.get(user_id)

    def slack_user(self, principal_id: str) -> str:
        """The Slack user id of a principal ("" if none is mapped to it)."""
        for user_id, principal in self.users.items():
            if principal.id == principal_id:
                return user_id
        return ""


@dataclass(frozen=True)
class AuthConfig:
    authenticator: Authenticator
    tls: TlsFiles | None = None
    # The console's sign-in; None: no console.
    console: ConsoleSettings | None = None

    # Slack users who may decide from Slack messages (docs/slack.md); None: nobody.
    slack: SlackDirectory | None = None


def load_auth_config(path: Path) -> AuthConfig:
    """The --auth-config file (its models are in signoff.auth.config): every mistake is a
    clear error at start (AuthConfigError, naming the file and the key)."""
    spec = read_auth_file(path)
    tokens = {entry.sha256: entry.principal.principal() for entry in spec.tokens}
    verifier = None
    if spec.jwt is not None:
        j = spec.jwt
        try:
            verifier = JwtVerifier(
                issuer=j.issuer,
                audience=j.audience,
                leeway=j.leeway_seconds,
                jwks_file=str(j.jwks_file or ""),
                jwks_url=j.jwks_url,
                tenant_claim=j.claims.tenant,
                roles_claim=j.claims.roles,
                kind_claim=j.claims.kind,
            )
        except (OSError, ValueError, jwt.PyJWTError) as error:
            raise AuthConfigError(f"auth config {path}: jwt.jwks_file: {error}") from None
    tls, workloads = None, {}
    if spec.mtls is not None:
        m = spec.mtls
        tls = TlsFiles(m.server_cert, m.server_key, m.client_ca)
        workloads = {spiffe: p.principal() for spiffe, p in m.principals.items()}
    console = None
    if spec.console is not None:
        o = spec.console.oidc
        secret = o.client_secret
        if o.client_secret_file is not None:
            secret = o.client_secret_file.read_text().strip()
        oidc = OidcSettings(
            issuer=o.issuer.rstrip("/"),
            client_id=o.client_id,
            redirect_uri=o.redirect_uri,
            client_secret=secret,
            scopes=tuple(o.scopes if "openid" in o.scopes else ["openid", *o.scopes]),
            claims=ClaimNames(o.claims.tenant, o.claims.roles, o.claims.kind),
        )
        console = ConsoleSettings(oidc=oidc, session_seconds=spec.console.session_seconds)
    slack = None
    if spec.slack is not None:
        users = {user: p.principal() for user, p in spec.slack.users.items()}
        slack = SlackDirectory(spec.slack.team_id, users)
    return AuthConfig(Authenticator(tokens, verifier, workloads), tls, console, slack)


DEV_PRINCIPALS = {
    "admin": Principal("dev-admin", PrincipalKind.HUMAN, ALL_TENANTS, frozenset({"admin"})),
    "approver": Principal(
        "dev-approver",
        PrincipalKind.HUMAN,
        ALL_TENANTS,
        frozenset({"approver", "finance_lead", "moderation_lead", "policy_admin"}),
    ),
    "agent": Principal("dev-agent", PrincipalKind.AGENT, ALL_TENANTS),
}


def development_tokens() -> tuple[Authenticator, dict[str, str]]:
    """Fresh tokens for the development principals; only their hashes are kept."""
    shown = {name: "sgn_" + secrets.token_urlsafe(24) for name in DEV_PRINCIPALS}
    tokens = {token_sha256(shown[name]): p for name, p in DEV_PRINCIPALS.items()}
    return Authenticator(tokens=tokens), shown


def jwks_json(public_keys: dict[str, Any]) -> str:
    """A JWKS document for public keys by kid (tests and tooling use it)."""
    keys = []
    for kid, key in public_keys.items():
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key))
        keys.append({**jwk, "kid": kid, "use": "sig", "alg": "RS256"})
    return json.dumps({"keys": keys})
