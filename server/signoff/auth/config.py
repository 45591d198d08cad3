"""The auth config file (`signoff serve --auth-config FILE`), as pydantic models.

Every section is optional and checked whole before the server starts: a mistake is named by
its key in the file (`jwt.issuer: Field required`). A new section is one more optional
field of AuthFile, with a model of its own (extra="forbid", so a misspelled key is an
error, not ignored); a file path in it is a ConfigFilePath, resolved against the file's
directory and checked to exist.
"""

import ipaddress
import re
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from signoff.domain.models import Principal, PrincipalKind
from signoff.problems import summary


class AuthConfigError(ValueError):
    """The auth config cannot be used; the message names the file and each wrong key."""


def _in_config_directory(value: Path, info: ValidationInfo) -> Path:
    """Relative to the auth config's directory (the validation context's `base`); must exist."""
    base = (info.context or {}).get("base")
    path = Path(base, value) if base is not None else value
    if not path.is_file():
        raise ValueError(f"no file at {path}")
    return path


# A file the auth config names: relative paths are relative to the config file.
ConfigFilePath = Annotated[Path, AfterValidator(_in_config_directory)]


class Section(BaseModel):
    """A part of the auth config: unknown keys are mistakes, values are never changed."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class PrincipalSpec(Section):
    """Who a credential makes the caller."""

    id: str = Field(min_length=1)
    kind: PrincipalKind = PrincipalKind.HUMAN
    tenant: str = Field(min_length=1, description='a tenant id, or "*" for all')
    roles: tuple[str, ...] = ()

    def principal(self) -> Principal:
        return Principal(self.id, self.kind, self.tenant, frozenset(self.roles))


class TokenEntry(Section):
    sha256: str = Field(
        pattern=r"^[0-9a-fA-F]{64}$", description="the hex sha256 of the token, never the token"
    )
    principal: PrincipalSpec

    @field_validator("sha256", mode="before")
    @classmethod
    def _text(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value


class JwtClaims(Section):
    """The names of the claims that give the principal's tenant, roles and kind."""

    tenant: str = "tenant"
    roles: str = "roles"
    kind: str = "kind"


class JwtSection(Section):
    """JWTs from an OIDC issuer, verified against its JWKS (a file, or a URL)."""

    issuer: str = Field(min_length=1)
    audience: str = Field(min_length=1)
    jwks_file: ConfigFilePath | None = None
    jwks_url: str = ""
    leeway_seconds: float = Field(30.0, ge=0)
    claims: JwtClaims = JwtClaims()

    @model_validator(mode="after")
    def _one_key_set(self) -> "JwtSection":
        if (self.jwks_file is None) == (not self.jwks_url):
            raise ValueError("give exactly one of jwks_file and jwks_url")
        return self


class MtlsSection(Section):
    """TLS on the port, a client certificate on every connection; SPIFFE ID -> principal."""

    server_cert: ConfigFilePath
    server_key: ConfigFilePath
    client_ca: ConfigFilePath
    principals: dict[str, PrincipalSpec] = Field(default_factory=dict)


def is_loopback_host(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_secure_url(url: str) -> bool:
    """https, or plain http to this machine (a provider the tests start on loopback)."""
    parts = urlsplit(url)
    return parts.scheme == "https" or (
        parts.scheme == "http" and is_loopback_host(parts.hostname or "")
    )


def _https(value: str) -> str:
    if not is_secure_url(value):
        raise ValueError("must be an https URL (http: loopback only)")
    return value


class OidcSection(Section):
    """The console's OpenID provider: sign-in by the authorization code flow with PKCE."""

    issuer: Annotated[str, AfterValidator(_https)]
    client_id: str = Field(min_length=1)
    redirect_uri: Annotated[str, AfterValidator(_https)]
    client_secret: str = Field(default="", description="none: a public client (PKCE alone)")
    client_secret_file: ConfigFilePath | None = None
    scopes: list[str] = Field(default_factory=lambda: ["openid", "profile", "email"])
    claims: JwtClaims = JwtClaims()


class ConsoleSection(Section):
    """The approvers' console on the HTTP listener: how people sign in, for how long."""

    oidc: OidcSection
    session_seconds: float = Field(default=8 * 3600.0, ge=60, le=7 * 86400)


SLACK_TEAM = re.compile(r"^T[A-Z0-9]{2,31}$")
SLACK_USER = re.compile(r"^[UW][A-Z0-9]{2,31}$")


class SlackSection(Section):
    """Which Slack users of one workspace (team) are which signoff principals."""

    team_id: str = Field(pattern=SLACK_TEAM.pattern, description="the Slack team id (T…)")
    users: dict[Annotated[str, StringConstraints(pattern=SLACK_USER.pattern)], PrincipalSpec] = (
        Field(default_factory=dict, description="Slack user id (U…) -> principal")
    )

    @field_validator("users")
    @classmethod
    def _humans(cls, users: dict[str, PrincipalSpec]) -> dict[str, PrincipalSpec]:
        for user_id, spec in users.items():
            if spec.kind is not PrincipalKind.HUMAN:
                raise ValueError(f"{user_id}: Slack users are humans")
        return users


class AuthFile(Section):
    """The whole file. Each section is optional; at least one way to authenticate is not."""

    tokens: list[TokenEntry] = Field(default_factory=list)
    jwt: JwtSection | None = None
    mtls: MtlsSection | None = None
    console: ConsoleSection | None = None
    slack: SlackSection | None = None

    @model_validator(mode="after")
    def _some_credentials(self) -> "AuthFile":
        if not self.tokens and self.jwt is None and not (self.mtls and self.mtls.principals):
            raise ValueError("configure at least one of tokens, jwt, mtls (with principals)")
        return self


def read_auth_file(path: Path) -> AuthFile:
    """The file, checked whole; AuthConfigError names the file and every wrong key in one
    line."""
    where = f"auth config {path}"
    try:
        spec = yaml.safe_load(path.read_text())
    except OSError as error:
        raise AuthConfigError(f"{where}: {error.strerror}") from None
    except yaml.YAMLError as error:
        raise AuthConfigError(f"{where}: not YAML: {' '.join(str(error).split())}") from None
    if not isinstance(spec, dict):
        raise AuthConfigError(
            f"{where}: expected a mapping of sections ({', '.join(AuthFile.model_fields)})"
        )
    try:
        return AuthFile.model_validate(spec, context={"base": path.parent})
    except ValidationError as error:
        raise AuthConfigError(f"{where}: {summary(error)}") from None
