"""The files beside the options: the auth config and a policy bundle's bundle.yaml, checked as
pydantic models. Every mistake names the file and the key, in one line."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from signoff.auth.authenticators import load_auth_config, token_sha256
from signoff.auth.config import AuthConfigError, AuthFile
from signoff.domain.models import Principal, PrincipalKind
from signoff.policy.bundle import BundleError, load_bundle
from tests.support import AUTH_CONFIG, EXAMPLE_POLICY, OPEN_POLICY

JWKS = (AUTH_CONFIG.parent / "jwks.json").read_text()
DIGEST = token_sha256("a-static-token")


def auth_config(tmp_path: Path, text: str) -> Path:
    (tmp_path / "jwks.json").write_text(JWKS)
    path = tmp_path / "auth.yaml"
    path.write_text(text)
    return path


def test_every_section_loads(tmp_path: Path) -> None:
    for name in ("server.pem", "server.key", "ca.pem"):
        (tmp_path / "tls").mkdir(exist_ok=True)
        (tmp_path / "tls" / name).write_text("x")
    path = auth_config(
        tmp_path,
        f"tokens:\n  - sha256: {DIGEST.upper()}\n"
        "    principal: {id: bot, kind: agent, tenant: t1}\n"
        "jwt:\n  issuer: https://issuer\n  audience: signoff\n  jwks_file: jwks.json\n"
        "  claims: {tenant: org}\n"
        "mtls:\n  server_cert: tls/server.pem\n  server_key: tls/server.key\n"
        "  client_ca: tls/ca.pem\n"
        "  principals:\n    'spiffe://x/a': {id: a, tenant: '*', roles: [admin]}\n",
    )
    loaded = load_auth_config(path)
    assert loaded.authenticator.tokens == {DIGEST: Principal("bot", PrincipalKind.AGENT, "t1")}
    assert loaded.authenticator.jwt is not None
    assert loaded.authenticator.jwt.tenant_claim == "org"
    assert loaded.authenticator.jwt.roles_claim == "roles"
    assert loaded.authenticator.workloads["spiffe://x/a"] == Principal(
        "a", PrincipalKind.HUMAN, "*", frozenset({"admin"})
    )
    assert loaded.tls is not None and loaded.tls.client_ca == tmp_path / "tls/ca.pem"


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("jwt:\n  audience: signoff\n  jwks_file: jwks.json\n", "jwt.issuer: Field required"),
        (
            "jwt:\n  issuer: https://i\n  audience: signoff\n",
            "jwt: give exactly one of jwks_file and jwks_url",
        ),
        (
            "jwt:\n  issuer: https://i\n  audience: a\n  jwks_file: missing.json\n",
            "jwt.jwks_file: no file at {dir}/missing.json",
        ),
        (
            "jwt:\n  issuer: https://i\n  audience: a\n  jwks_url: https://i/jwks\n"
            "  leeway_seconds: -1\n",
            "jwt.leeway_seconds: Input should be greater than or equal to 0",
        ),
        (
            "jwt:\n  issuer: https://i\n  audience: a\n  jwks_url: https://i/j\n  claim: {}\n",
            "jwt.claim: Extra inputs are not permitted",
        ),
        ("tokens:\n  - sha256: abc\n    principal: {id: a, tenant: t}\n", "tokens.0.sha256:"),
        (
            f"tokens:\n  - sha256: {DIGEST}\n    principal: {{id: a}}\n",
            "tokens.0.principal.tenant: Field required",
        ),
        (
            f"tokens:\n  - sha256: {DIGEST}\n    principal: {{id: a, tenant: t, kind: robot}}\n",
            "tokens.0.principal.kind: Input should be 'agent', 'human' or 'service'",
        ),
        (
            "mtls:\n  server_cert: a.pem\n  server_key: a.key\n  client_ca: ca.pem\n",
            "mtls.server_cert: no file at {dir}/a.pem; mtls.server_key: no file at",
        ),
        ("token: []\n", "token: Extra inputs are not permitted"),
        (
            "jwt: {issuer: https://i, audience: a, jwks_file: jwks.json}\n"
            "slack: {team_id: T0TEAM, users: {bob: {id: b, tenant: t}}}\n",
            "slack.users.bob.[key]: String should match pattern",
        ),
        (
            "jwt: {issuer: https://i, audience: a, jwks_file: jwks.json}\n"
            "slack: {team_id: T0TEAM, users: {U0BOT: {id: b, tenant: t, kind: agent}}}\n",
            "slack.users: U0BOT: Slack users are humans",
        ),
        (
            "jwt: {issuer: https://i, audience: a, jwks_file: jwks.json}\n"
            "console: {oidc: {issuer: https://i, client_id: c, redirect_uri: https://s/cb,"
            " client_secret_file: none.txt}}\n",
            "console.oidc.client_secret_file: no file at {dir}/none.txt",
        ),
        ("tokens: []\n", "configure at least one of tokens, jwt, mtls"),
        ("", "expected a mapping of sections"),
        ("jwt: [\n", "not YAML"),
    ],
)
def test_every_mistake_names_the_file_and_the_key(tmp_path: Path, text: str, problem: str) -> None:
    path = auth_config(tmp_path, text)
    with pytest.raises(AuthConfigError) as raised:
        load_auth_config(path)
    message = str(raised.value)
    assert message.startswith(f"auth config {path}: ")
    assert problem.format(dir=tmp_path) in message
    assert "\n" not in message


def test_a_jwks_file_that_is_no_key_set(tmp_path: Path) -> None:
    path = auth_config(tmp_path, "jwt:\n  issuer: https://i\n  audience: a\n  jwks_file: k.json\n")
    (tmp_path / "k.json").write_text("{}")
    with pytest.raises(AuthConfigError, match=r"^auth config .*: jwt.jwks_file: "):
        load_auth_config(path)


def test_a_missing_auth_config_file(tmp_path: Path) -> None:
    with pytest.raises(AuthConfigError, match="No such file or directory"):
        load_auth_config(tmp_path / "auth.yaml")


def test_a_section_is_an_optional_field() -> None:
    """What another section (a console, a chat tool) adds: one optional field."""
    assert {"tokens", "jwt", "mtls", "console", "slack"} <= set(AuthFile.model_fields)
    for field in AuthFile.model_fields.values():
        assert not field.is_required()
    assert AuthFile.model_config.get("extra") == "forbid"


def test_serve_stops_on_a_bad_auth_config_with_one_line(tmp_path: Path) -> None:
    path = auth_config(tmp_path, "jwt:\n  audience: signoff\n  jwks_file: jwks.json\n")
    result = subprocess.run(
        [
            *(sys.executable, "-m", "signoff", "serve", "--port", "0"),
            *("--auth-config", str(path), "--policy", str(OPEN_POLICY)),
            *("--database-url", f"sqlite:///{tmp_path}/x.db"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    last = json.loads(result.stderr.splitlines()[-1])
    assert last["level"] == "CRITICAL"
    assert last["message"] == f"auth config {path}: jwt.issuer: Field required"


# bundle.yaml


def bundle(tmp_path: Path, manifest: str) -> Path:
    copy = tmp_path / "bundle"
    shutil.copytree(EXAMPLE_POLICY, copy)
    (copy / "bundle.yaml").write_text(manifest)
    return copy


@pytest.mark.parametrize(
    ("manifest", "problem"),
    [
        ("version: '1'\n", "id: Field required"),
        ("id: ''\nversion: '1'\n", "id: String should have at least 1 character"),
        ("id: X\nversion: '1'\non_eror: {action: reject}\n", "on_eror: Extra inputs"),
        ("id: X\nversion: '1'\non_error: {action: allow}\n", "on_error.action: Input should be"),
        ("id: X\nversion: '1'\non_error: {action: hold}\n", "on_error: hold needs the gate"),
        ("id: X\nversion: '1'\non_error: {action: hold, gate: G_NONE}\n", "on_error.gate 'G_NONE'"),
        ("- id\n", "must be a mapping"),
    ],
)
def test_a_bad_manifest_is_named(tmp_path: Path, manifest: str, problem: str) -> None:
    directory = bundle(tmp_path, manifest)
    with pytest.raises(BundleError) as raised:
        load_bundle(directory)
    assert str(raised.value).startswith(f"{directory.resolve() / 'bundle.yaml'}: ")
    assert problem in str(raised.value)


def test_a_manifest_version_may_be_a_number(tmp_path: Path) -> None:
    loaded = load_bundle(bundle(tmp_path, "id: X\nversion: 2\ndescription: two\n"))
    assert (loaded.ref.bundle_id, loaded.ref.version) == ("X", "2")
    assert loaded.on_error.gate_id == ""  # reject, the default
