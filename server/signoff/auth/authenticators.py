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
import yaml

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


def principal_from(spec: Mapping[str, Any], where: str) -> Principal:
    try:
        return Principal(
            id=str(spec["id"]),
            kind=PrincipalKind(spec.get("kind", "human")),
            tenant=str(spec["tenant"]),
            roles=frozenset(spec.get("roles", [])),
        )
    except (KeyError, ValueError) as error:
        raise ValueError(
            f"{where}: a principal needs id, tenant and a known kind ({error})"
        ) from None


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
        if self.tenant_claim not in claims:
            raise Unauthenticated(
                ErrorReason.INVALID_TOKEN, f"the token has no {self.tenant_claim} claim"
            )
        try:
            kind = PrincipalKind(claims.get(self.kind_claim, "human"))
        except ValueError:
            raise Unauthenticated(
                ErrorReason.INVALID_TOKEN, "the token's kind is unknown"
            ) from None
        roles = claims.get(self.roles_claim, [])
        if isinstance(roles, str):  # a space-separated string, as OAuth scopes are written
            roles = roles.split()
        principal = Principal(
            id=str(claims["sub"]),
            kind=kind,
            tenant=str(claims[self.tenant_claim]),
            roles=frozenset(str(role) for role in roles),
        )
        return principal, float(claims["exp"])


@dataclass
class Authenticator:
    """Every way a caller can prove who it is, tried in order."""

    tokens: dict[str, Principal] = field(default_factory=dict)  # sha256(token) -> principal
    jwt: JwtVerifier | None = None
    workloads: dict[str, Principal] = field(default_factory=dict)  # SPIFFE ID -> principal

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
class AuthConfig:
    authenticator: Authenticator
    tls: TlsFiles | None = None


def load_auth_config(path: Path) -> AuthConfig:
    """The --auth-config file; every mistake is a clear error at start."""
    base = path.parent
    spec = yaml.safe_load(path.read_text()) or {}
    unknown = set(spec) - {"tokens", "jwt", "mtls"}
    if unknown:
        raise ValueError(f"{path}: unknown keys {sorted(unknown)}")
    tokens = {}
    for i, entry in enumerate(spec.get("tokens", [])):
        digest = str(entry.get("sha256", "")).lower()
        if len(digest) != 64:
            raise ValueError(f"{path}: tokens[{i}].sha256 must be the hex sha256 of the token")
        tokens[digest] = principal_from(entry.get("principal", {}), f"{path}: tokens[{i}]")
    verifier = None
    if "jwt" in spec:
        j = spec["jwt"]
        claims = j.get("claims", {})
        verifier = JwtVerifier(
            issuer=j["issuer"],
            audience=j["audience"],
            leeway=float(j.get("leeway_seconds", 30)),
            jwks_file=str(base / j["jwks_file"]) if j.get("jwks_file") else "",
            jwks_url=j.get("jwks_url", ""),
            tenant_claim=claims.get("tenant", "tenant"),
            roles_claim=claims.get("roles", "roles"),
            kind_claim=claims.get("kind", "kind"),
        )
    tls, workloads = None, {}
    if "mtls" in spec:
        m = spec["mtls"]
        tls = TlsFiles(base / m["server_cert"], base / m["server_key"], base / m["client_ca"])
        workloads = {
            spiffe: principal_from(p, f"{path}: mtls.principals[{spiffe}]")
            for spiffe, p in (m.get("principals") or {}).items()
        }
    if not tokens and verifier is None and not workloads:
        raise ValueError(f"{path}: configure at least one of tokens, jwt, mtls")
    return AuthConfig(Authenticator(tokens, verifier, workloads), tls)


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
