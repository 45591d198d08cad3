"""The one configuration of `signoff serve`: every option, its default, its check and its help.

Each option is a field of ServeOptions and can be given three ways; the later wins:

    config file (YAML, --config FILE or SIGNOFF_CONFIG)   metrics_port: 9464
    environment (SIGNOFF_ + the name in capitals)         SIGNOFF_METRICS_PORT=9464
    command line (--name with dashes)                     --metrics-port 9464

Options that are lists (webhooks) are given in the file, or as JSON in the environment.
Everything is checked before the server starts; a mistake names the option and its source.
ServeOptions is a pydantic-settings model: its sources read the file and the environment,
argparse the flags (add_flags), and load_options validates them together.
"""

import argparse
import os
import re
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args
from urllib.parse import urlsplit

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
    YamlConfigSettingsSource,
)
from pydantic_settings.sources.utils import parse_env_vars

from signoff.problems import problems


def _example_policy() -> Path:
    """The example bundle, the default policy: packaged in a wheel, or the source tree's."""
    packaged = Path(__file__).resolve().parent / "example_policies"
    return (
        packaged if packaged.is_dir() else Path(__file__).resolve().parents[2] / "examples/policies"
    )


EXAMPLE_POLICY = _example_policy()

ENV_PREFIX = "SIGNOFF_"
CONFIG_ENV = "SIGNOFF_CONFIG"


class ConfigError(Exception):
    """The configuration is unusable; the message names each wrong option and its source."""


@dataclass(frozen=True)
class Inputs:
    """Where ServeOptions' sources read: the config file and the environment."""

    config_file: Path | None
    environ: Mapping[str, str]


# Set by load_options; otherwise ServeOptions() reads the process's $SIGNOFF_CONFIG and
# environment.
_INPUTS: ContextVar[Inputs | None] = ContextVar("signoff_serve_inputs", default=None)


def _inputs() -> Inputs:
    given = _INPUTS.get()
    if given is not None:
        return given
    config = os.environ.get(CONFIG_ENV)
    return Inputs(Path(config) if config else None, os.environ)


WebhookEvent = Literal["requested", "decided", "expired", "escalated", "voted", "cancelled"]
# json: a signed JSON POST; slack: a notice to a Slack incoming webhook; slack_interactive: a
# message posted with the Slack Web API (the `slack` options) that approvers decide from.
WebhookFormat = Literal["json", "slack", "slack_interactive"]
SLACK_CHANNEL = r"^[CGD][A-Z0-9]{2,31}$"


class WebhookOptions(BaseModel):
    """One entry of `webhooks`: where approval changes are POSTed, and signed with what."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$", description="unique name")
    url: str = Field(
        "",
        description="http:// or https:// address (redirects are not followed); not for "
        "slack_interactive",
    )
    secret: SecretStr | None = Field(None, description="HMAC-SHA256 key, 16+ characters")
    secret_env: str | None = Field(None, description="environment variable holding the key")
    format: WebhookFormat = "json"
    channel: str | None = Field(
        None, pattern=SLACK_CHANNEL, description="slack_interactive: the Slack channel id (C…)"
    )
    tenants: tuple[str, ...] = Field((), description="only these tenants (empty: all)")
    gates: tuple[str, ...] = Field((), description="only these gates (empty: all)")
    events: tuple[WebhookEvent, ...] = Field(
        ("requested", "decided", "expired", "escalated"), min_length=1
    )

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if value and (parts.scheme not in ("http", "https") or not parts.hostname):
            raise ValueError("must be an http:// or https:// URL with a host")
        return value

    @field_validator("secret")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 16:
            raise ValueError("must be 16 characters or more (openssl rand -hex 32 makes one)")
        return value

    @field_validator("secret_env")
    @classmethod
    def _variable_holds_key(cls, value: str | None) -> str | None:
        environ = _inputs().environ
        if value is not None and len(environ.get(value, "")) < 16:
            raise ValueError(f"environment variable {value} must hold the key (16+ characters)")
        return value

    @model_validator(mode="after")
    def _one_key(self) -> "WebhookOptions":
        if self.format == "slack_interactive":
            # Posted with the bot token of the `slack` options: no URL, no signing key.
            if self.url or self.secret is not None or self.secret_env is not None:
                raise ValueError(
                    "a slack_interactive webhook posts with the slack options' bot token: "
                    "give it a channel, not a url, secret or secret_env"
                )
            if self.channel is None:
                raise ValueError("a slack_interactive webhook needs a channel (its id, C…)")
            return self
        if self.channel is not None:
            raise ValueError("channel is for slack_interactive webhooks only")
        if not self.url:
            raise ValueError("url is required (an http:// or https:// URL)")
        if (self.secret is None) == (self.secret_env is None):
            raise ValueError("give the signing key as secret or as secret_env (one of them)")
        return self

    def key(self, environ: Mapping[str, str] = os.environ) -> bytes:
        if self.secret is not None:
            return self.secret.get_secret_value().encode()
        if self.secret_env is None:
            return b""  # slack_interactive: nothing to sign with
        return environ[self.secret_env].encode()


def _secret_of(value: SecretStr | None, variable: str | None, environ: Mapping[str, str]) -> str:
    if value is not None:
        return value.get_secret_value()
    return environ.get(variable or "", "")


class SlackOptions(BaseModel):
    """`slack`: the Slack app that posts interactive approval messages and receives their
    button clicks (docs/slack.md). Its two secrets come from the file or, better, from
    environment variables named here; they are never logged."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    bot_token: SecretStr | None = Field(None, description="the bot token (xoxb-…)")
    bot_token_env: str | None = Field(None, description="environment variable holding it")
    signing_secret: SecretStr | None = Field(None, description="the app's signing secret")
    signing_secret_env: str | None = Field(None, description="environment variable holding it")
    api_url: str = Field(
        "https://slack.com/api/", description="base URL of the Slack Web API (ends with /)"
    )
    console_url: str | None = Field(
        None,
        description="public base URL of signoff's console; messages link to "
        "{console_url}/actions/{action_id}",
    )
    timeout: float = Field(10.0, gt=0, le=60, description="seconds one Web API call may take")

    @field_validator("api_url", "console_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is None:
            return value
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL with a host")
        return value

    @field_validator("api_url")
    @classmethod
    def _ends_with_slash(cls, value: str) -> str:
        return value if value.endswith("/") else value + "/"

    @field_validator("bot_token_env", "signing_secret_env")
    @classmethod
    def _variable_is_set(cls, value: str | None) -> str | None:
        environ = _inputs().environ
        if value is not None and not environ.get(value, ""):
            raise ValueError(f"environment variable {value} is not set")
        return value

    @model_validator(mode="after")
    def _one_of_each(self) -> "SlackOptions":
        for name in ("bot_token", "signing_secret"):
            given = getattr(self, name) is not None, getattr(self, f"{name}_env") is not None
            if given[0] == given[1]:
                raise ValueError(f"give {name} or {name}_env (one of them)")
        return self

    def token(self, environ: Mapping[str, str] = os.environ) -> str:
        return _secret_of(self.bot_token, self.bot_token_env, environ)

    def secret(self, environ: Mapping[str, str] = os.environ) -> str:
        return _secret_of(self.signing_secret, self.signing_secret_env, environ)


class ServeOptions(BaseSettings):
    """Every option of `signoff serve`. ServeOptions() reads the process's SIGNOFF_* variables
    and $SIGNOFF_CONFIG; `signoff serve` calls load_options, which also takes the flags and
    names the source of each mistake."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_ignore_empty=True,
        extra="forbid",
        frozen=True,
        validate_default=True,
    )

    host: str = Field("127.0.0.1", description="address to listen on (non-loopback needs auth)")
    port: int = Field(50051, ge=0, le=65535, description="gRPC port; 0 picks a free one")
    database_url: str = Field(
        "sqlite:///signoff.db",
        description="sqlite:///FILE (embedded) or postgresql+psycopg://USER@HOST/DB",
    )
    policy: Path = Field(EXAMPLE_POLICY, description="policy bundle directory")
    auth_config: Path | None = Field(
        None,
        description="tokens / JWT / mTLS settings (YAML); none: development mode, loopback only",
    )
    grant_ttl: float = Field(
        900.0, gt=0, description="seconds an approval may be acted on (its grant's life)"
    )
    timer_interval: float = Field(
        1.0, gt=0, description="seconds between looks for due gate deadlines and reminders"
    )
    bookmark_interval: float = Field(
        15.0, gt=0, description="seconds an idle watch stream waits before a progress bookmark"
    )
    shutdown_grace: float = Field(
        5.0, ge=0, description="seconds running calls get to finish when the server stops"
    )
    webhooks: list[WebhookOptions] = Field(
        default_factory=list, description="webhook notifications of approval changes"
    )
    slack: SlackOptions | None = Field(
        None, description="the Slack app of slack_interactive webhooks (docs/slack.md)"
    )
    webhook_retry_initial: float = Field(
        1.0, gt=0, description="seconds before a failed webhook delivery is retried; doubles"
    )
    webhook_retry_max: float = Field(
        3600.0, gt=0, description="longest wait (seconds) between two webhook delivery attempts"
    )
    webhook_max_attempts: int = Field(
        36, ge=1, description="webhook delivery attempts before a notification is FAILED"
    )
    webhook_timeout: float = Field(10.0, gt=0, description="seconds one webhook request may take")
    webhook_retention: float = Field(
        604800.0,
        ge=0,
        description="seconds sent and FAILED webhook notifications are kept; 0 keeps them all",
    )
    workers: int = Field(
        1,
        ge=1,
        le=256,
        description="server processes sharing the ports (SO_REUSEPORT), each a replica; "
        "more than 1 needs PostgreSQL and an auth config",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="DEBUG, INFO, WARNING or ERROR"
    )
    log_format: Literal["json", "text"] = Field(
        "json", description="json (one object per line) or text, on standard error"
    )
    metrics_port: int | None = Field(
        None, ge=0, le=65535, description="serve Prometheus /metrics on this port; 0 picks one"
    )
    metrics_host: str | None = Field(
        None, description="address of the metrics endpoint; none: the same as host"
    )
    metrics_interval: float = Field(
        15.0, gt=0, description="seconds between reads of the database-wide gauges"
    )
    http_port: int | Literal["off"] | None = Field(
        None,
        description="serve the HTTP/JSON API (Connect), /healthz and /readyz on this port; "
        "0 picks one; off: none; none: 8080 in development mode, else off",
    )
    http_host: str | None = Field(
        None, description="address of the HTTP listener; none: the same as host"
    )
    http_max_request_bytes: int = Field(
        1024 * 1024, ge=1024, description="largest HTTP request body accepted (bytes)"
    )

    @field_validator("http_port")
    @classmethod
    def _a_port(cls, value: int | str | None) -> int | str | None:
        if isinstance(value, int) and not 0 <= value <= 65535:
            raise ValueError("must be a port (0 to 65535, 0 picks one) or off")
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @field_validator("policy")
    @classmethod
    def _bundle_exists(cls, value: Path) -> Path:
        if not value.is_dir():
            raise ValueError(f"no policy bundle directory at {value}")
        return value

    @field_validator("auth_config")
    @classmethod
    def _file_exists(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"no file at {value}")
        return value

    @field_validator("webhooks")
    @classmethod
    def _unique_names(cls, value: list[WebhookOptions]) -> list[WebhookOptions]:
        names = [hook.name for hook in value]
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:
            raise ValueError(f"webhook names must be unique; given more than once: {twice}")
        return value

    @model_validator(mode="after")
    def _slack_for_interactive(self) -> "ServeOptions":
        interactive = [hook.name for hook in self.webhooks if hook.format == "slack_interactive"]
        if interactive and self.slack is None:
            raise ValueError(
                f"webhooks {interactive} are slack_interactive: configure `slack` "
                "(bot token, signing secret)"
            )
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Arguments (the flags) over SIGNOFF_* variables over the config file."""
        inputs = _inputs()
        file = () if inputs.config_file is None else (ConfigFile(settings_cls, inputs.config_file),)
        return (init_settings, Environment(settings_cls, inputs.environ), *file)


def _scalar(name: str) -> bool:
    """Options a flag or a plain environment variable can carry (not lists or mappings)."""
    annotation = ServeOptions.model_fields[name].annotation
    if any(
        isinstance(kind, type) and issubclass(kind, BaseModel)
        for kind in (annotation, *get_args(annotation))
    ):
        return False  # a section of options (slack)
    return not any(
        origin in str(annotation) for origin in ("list[", "tuple[", "dict[", "Sequence[")
    )


def add_flags(parser: argparse.ArgumentParser) -> None:
    """One --flag per scalar option; a flag not given leaves the option to env, file, default."""
    parser.add_argument(
        "--config",
        default=os.environ.get(CONFIG_ENV, ""),
        help=f"YAML file with any of the options below (or ${CONFIG_ENV})",
    )
    for name, field in ServeOptions.model_fields.items():
        if not _scalar(name):
            continue
        parser.add_argument(
            "--" + name.replace("_", "-"),
            dest=name,
            default=argparse.SUPPRESS,
            help=f"{field.description} (default {field.default}; ${ENV_PREFIX}{name.upper()})",
        )


class ConfigFile(YamlConfigSettingsSource):
    """The YAML file of --config (or $SIGNOFF_CONFIG): a mapping of option names to values.
    Unlike pydantic-settings' own YAML source, a file that is missing or unreadable is an
    error, not an empty file."""

    def __init__(self, settings_cls: type[BaseSettings], path: Path) -> None:
        self.path = path
        super().__init__(settings_cls, yaml_file=path)

    def _read_files(self, files: Any, deep_merge: bool = False) -> dict[str, Any]:
        return _from_file(self.path)


def _from_file(path: Path) -> dict[str, Any]:
    """A YAML file of option names and values (`signoff mcp-proxy --config` reads one too)."""
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as error:
        raise ConfigError(f"config file {path}: {error}") from None
    if not isinstance(values, dict):
        raise ConfigError(f"config file {path}: expected a mapping of option names to values")
    return values


class Environment(EnvSettingsSource):
    """SIGNOFF_* variables of `environ` (the process environment unless a test gives one).
    Lists (webhooks) are JSON; an empty variable counts as not set."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        self.environ = environ
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return parse_env_vars(
            self.environ, self.case_sensitive, self.env_ignore_empty, self.env_parse_none_str
        )


def _environment_name(name: str) -> str:
    return f"${ENV_PREFIX}{name.upper()}"


def load_options(
    config_file: Path | None,
    flags: Mapping[str, Any],
    environ: Mapping[str, str] = os.environ,
) -> ServeOptions:
    """Flags over environment over file over defaults, checked as a whole. Raises ConfigError
    naming each wrong option and where its value came from."""
    inputs = _INPUTS.set(Inputs(config_file, environ))
    try:
        # What each source gives, for the messages (highest priority last, so it wins).
        source: dict[str, str] = {}
        if config_file is not None:
            given = ConfigFile(ServeOptions, config_file)()
            source.update(dict.fromkeys(given, f"config file {config_file}"))
        try:
            given = Environment(ServeOptions, environ)()
        except SettingsError as error:
            # Only a variable holding a list can fail here: its JSON does not parse.
            field = re.search(r'field "(\w+)"', str(error))
            variable = _environment_name(field[1]) if field else "environment"
            raise ConfigError(f"{variable}: not JSON: {error.__cause__}") from None
        source.update({name: _environment_name(name) for name in given})
        source.update(dict.fromkeys(flags, "command line"))
        try:
            return ServeOptions(**flags)
        except ValidationError as error:
            lines = [
                f"{path or 'options'}: {message} (from {source.get(path.split('.')[0], 'default')})"
                for path, message in problems(error)
            ]
            raise ConfigError("invalid configuration:\n  " + "\n  ".join(lines)) from None
    finally:
        _INPUTS.reset(inputs)
