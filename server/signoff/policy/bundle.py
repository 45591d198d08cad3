"""Loading a policy bundle: Rego modules compiled with regopy, and YAML data beside them.

A bundle is a directory:

    bundle.yaml     id, version, on_error (what to answer when evaluation fails)
    *.rego          package signoff: a partial set `findings`, optionally `decision_key`
    *.yaml          data, merged under `data` (gates, principals, redactions, thresholds …)
                    and the tools and intents InvokeAgent compiles (policy/manifest.py)
    tests/*.yaml    test cases for `signoff policy test DIR`
"""

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from signoff.policy import BundleRef, Effect
from signoff.policy.gates import Gate, gate_from_yaml
from signoff.policy.manifest import Manifest, ManifestError, load_manifest
from signoff.policy.reads import Reads, analyse
from signoff.policy.rego import Interpreter, RegoError
from signoff.problems import summary

ENTRYPOINT = "signoff/result"

# Added to every bundle: one entrypoint that returns everything signoff reads.
PRELUDE = """
package signoff

import rego.v1

default decision_key := ""

result := {"findings": findings, "decision_key": decision_key}
"""


class BundleError(ValueError):
    """The bundle cannot be loaded; the message says which file and why."""


@dataclass(frozen=True)
class OnError:
    """Fail closed: hold the action for a human on `gate`, or reject it. Never approve."""

    effect: Effect
    gate_id: str = ""


@dataclass(frozen=True)
class Redaction:
    name: str
    pattern: re.Pattern[str]


@dataclass(frozen=True)
class LoadedBundle:
    ref: BundleRef
    directory: Path
    compiled: Any  # regopy.Bundle
    gates: dict[str, Gate]
    roles: dict[str, frozenset[str]]
    redactions: dict[str, Redaction]
    on_error: OnError
    # Tools and intents: what InvokeAgent compiles into an instance's context.
    manifest: Manifest
    # What the modules read: the input paths handed to regopy, and whether the answer
    # depends on the input alone (then it is memoized).
    reads: Reads


def _read_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise BundleError(f"{path}: {error}") from None


class OnErrorSpec(BaseModel):
    """bundle.yaml's on_error: what to answer when evaluation fails (never approve)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    action: Literal["hold", "reject"] = Field(
        description="hold: wait for a human on `gate`; reject: refuse the action"
    )
    gate: str = Field(
        default="", description="with hold: the gate that decides (defined in the data)"
    )

    @model_validator(mode="after")
    def _hold_names_a_gate(self) -> "OnErrorSpec":
        if self.action == "hold" and not self.gate:
            raise ValueError("hold needs the gate that decides (gate: GATE_ID)")
        return self


class BundleManifest(BaseModel):
    """bundle.yaml: the bundle's name, version and failure answer. Unknown keys are
    mistakes (a misspelled on_error would silently reject everything)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(min_length=1)
    version: str = Field(min_length=1, description='any text; quote it in YAML ("1.10")')
    description: str = ""
    on_error: OnErrorSpec = OnErrorSpec(action="reject")

    @field_validator("version", mode="before")
    @classmethod
    def _number_as_text(cls, value: Any) -> Any:
        # `version: 2` is an int in YAML: the version "2".
        return (
            str(value) if isinstance(value, int | float) and not isinstance(value, bool) else value
        )


def read_manifest(path: Path) -> BundleManifest:
    """bundle.yaml, checked; BundleError names the file and every wrong key."""
    manifest = _read_yaml(path)
    if not isinstance(manifest, dict):
        raise BundleError(f"{path}: must be a mapping (id, version, on_error)")
    try:
        return BundleManifest.model_validate(manifest)
    except ValidationError as error:
        raise BundleError(f"{path}: {summary(error)}") from None


def bundle_sha256(directory: Path) -> str:
    """sha256 over every file's relative path and bytes, in path order."""
    digest = hashlib.sha256()
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(directory)).encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return "sha256:" + digest.hexdigest()


def load_bundle(directory: Path) -> LoadedBundle:
    directory = directory.resolve()
    manifest_path = directory / "bundle.yaml"
    if not manifest_path.is_file():
        raise BundleError(f"{directory}: no bundle.yaml (is this a policy bundle directory?)")
    manifest = read_manifest(manifest_path)

    data: dict[str, Any] = {}
    for path in sorted(directory.glob("*.yaml")):
        if path.name == "bundle.yaml":
            continue
        content = _read_yaml(path)
        if not isinstance(content, dict):
            raise BundleError(f"{path}: must be a mapping")
        for key in content:
            if key in data:
                raise BundleError(f"{path}: data key {key!r} is defined twice")
        data.update(content)

    try:
        gates = {
            gid: gate_from_yaml(gid, spec or {}) for gid, spec in data.get("gates", {}).items()
        }
    except (ValueError, TypeError) as error:
        raise BundleError(f"{directory}: {error}") from None
    for gate in gates.values():
        chain = [gate.gate_id]
        while gates[chain[-1]].escalate_to:
            step = gates[chain[-1]].escalate_to
            if step not in gates:
                raise BundleError(f"gate {chain[-1]}: escalate_to {step} is not defined")
            if step in chain:
                # An action caught in it would wait forever, one timeout after another.
                loop = " → ".join([*chain[chain.index(step) :], step])
                raise BundleError(f"gate {gate.gate_id}: escalation never ends ({loop})")
            chain.append(step)

    if manifest.on_error.action == "hold":
        gate_id = manifest.on_error.gate
        if gate_id not in gates:
            raise BundleError(f"{manifest_path}: on_error.gate {gate_id!r} is not defined")
        on_error = OnError(Effect.REQUIRE_APPROVAL, gate_id)
    else:
        on_error = OnError(Effect.DENY)

    roles = {
        principal: frozenset((spec or {}).get("roles", []))
        for principal, spec in data.get("principals", {}).items()
    }
    try:
        redactions = {
            name: Redaction(name, re.compile(spec["pattern"]))
            for name, spec in data.get("redactions", {}).items()
        }
    except (KeyError, TypeError, re.error) as error:
        raise BundleError(f"{directory}: redactions: {error}") from None

    try:
        intents = load_manifest(data, set(gates), set(redactions))
    except ManifestError as error:
        raise BundleError(f"{directory}: {error}") from None

    modules = sorted(directory.glob("*.rego"))
    if not modules:
        raise BundleError(f"{directory}: no .rego modules")
    sources = {path.name: path.read_text() for path in modules}
    builder = Interpreter()
    try:
        builder.add_data_json(json.dumps(data))
        for name, source in sources.items():
            builder.add_module(name, source)
        builder.add_module("signoff_prelude.rego", PRELUDE)
        compiled = builder.build(None, [ENTRYPOINT])
    except RegoError as error:
        raise BundleError(f"{directory}: Rego does not compile: {error}") from None

    return LoadedBundle(
        ref=BundleRef(manifest.id, manifest.version, bundle_sha256(directory)),
        directory=directory,
        compiled=compiled,
        gates=gates,
        roles=roles,
        redactions=redactions,
        on_error=on_error,
        manifest=intents,
        reads=analyse([*sources.values(), PRELUDE]),
    )
