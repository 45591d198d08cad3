"""The compiled context: which tools, rules, evidence and gates are in force for an intent.

A bundle declares it in its data (examples/policies/intents.yaml):

    tools:      per tool, its risk binding (approval_mode) and a JSON Schema for its params
    intents:    per intent, the tools it may use, the rules and gates in force, the evidence it
                needs (templates over the envelope), redactions, and optionally per context
                pack a narrower tool list

InvokeAgent compiles it once per instance; what was compiled is stored with the instance and
is what RequestDecision and CheckPlan check against, even if the bundle changes later. An
intent the bundle does not declare compiles to an open context: no tool manifest, so no tool
is refused for being outside it (policy still decides every action).
"""

import re
from dataclasses import dataclass, field
from typing import Any, Literal

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from signoff.domain.canonical import sha256_of
from signoff.domain.models import Json
from signoff.domain.states import RiskClass
from signoff.problems import summary

_RISK_ORDER = list(RiskClass)
_TEMPLATE_FIELD = re.compile(r"\{([A-Za-z0-9_.]+)\}")


class ManifestError(ValueError):
    """The bundle's tools or intents are not well formed; the message says where."""


@dataclass(frozen=True)
class Refusal:
    """Why an action is outside the compiled context: a stable reason and the details."""

    reason: str
    message: str
    field: str = ""


@dataclass(frozen=True)
class CompiledContext:
    """What is in force for one instance, as stored with it (JSON, see as_json)."""

    document: Json = field(default_factory=dict)

    @property
    def is_open(self) -> bool:
        return not self.document.get("manifests", {}).get("tool_manifest")

    @property
    def sha256(self) -> str:
        return sha256_of(self.document) if self.document else ""

    def binding(self, tool: str) -> Json | None:
        bindings: Json = self.document.get("manifests", {}).get("tool_bindings", {})
        return bindings.get(tool)

    def gates_active(self) -> list[str]:
        return list(self.document.get("runtime_controls", {}).get("approval_gates_active", []))

    def refusal(
        self, tool: str, params: Json, risk_class: RiskClass, where: str = "action"
    ) -> Refusal | None:
        """Why `tool` with `params` at `risk_class` may not run here, or None if it may.
        Checked before policy: a tool outside the manifest never reaches the rules."""
        if self.is_open:
            return None
        binding = self.binding(tool)
        if binding is None:
            return Refusal(
                "TOOL_NOT_IN_MANIFEST",
                f"{tool} is not in the tool manifest of intent {self.document.get('intent')}",
                f"{where}.tool",
            )
        bound = RiskClass(binding["approval_mode"])
        if _RISK_ORDER.index(risk_class) < _RISK_ORDER.index(bound):
            return Refusal(
                "RISK_CLASS_BELOW_BINDING",
                f"{tool} is bound to {bound.value.lower()}; "
                f"it cannot be requested as {risk_class.value.lower()}",
                f"{where}.risk_class",
            )
        problem = params_problem(binding.get("params_schema"), params)
        if problem is not None:
            pointer, message = problem
            return Refusal("PARAMS_INVALID", message, f"{where}.params{pointer}")
        return None


def params_problem(schema: Json | None, params: Json) -> tuple[str, str] | None:
    """The first way `params` fails `schema` as (JSON pointer, message), or None."""
    if not schema:
        return None
    error = min(
        Draft202012Validator(schema).iter_errors(params),
        key=lambda e: list(e.absolute_path),
        default=None,
    )
    if error is None:
        return None
    pointer = "".join(f"/{p}" for p in error.absolute_path)
    return pointer, f"params{pointer or ''}: {error.message}"


@dataclass(frozen=True)
class Manifest:
    tools: dict[str, Json]
    intents: dict[str, Json]

    def compile(self, envelope: Json, bundle_id: str) -> CompiledContext:
        """The context in force for `envelope`: its intent's manifest narrowed by its packs."""
        intent = str(envelope.get("input", {}).get("intent", ""))
        spec = self.intents.get(intent)
        if spec is None:
            return CompiledContext()
        tools = list(spec.get("tools", []))
        for pack in envelope.get("context_pack_refs", []):
            narrowed = spec.get("packs", {}).get(pack, {}).get("tools")
            if narrowed is not None:
                tools = [t for t in tools if t in narrowed]
        adapters: dict[str, list[str]] = {}
        for tool in tools:
            adapter, _, capability = tool.partition(".")
            adapters.setdefault(adapter, []).append(capability)
        evidence = [
            ref for t in spec.get("evidence", []) if (ref := _render(t, envelope)) is not None
        ]
        return CompiledContext(
            {
                "intent": intent,
                "manifests": {
                    "policy_manifest": [
                        {"bundle_id": bundle_id, "rule_ids": list(spec.get("rules", []))}
                    ],
                    "tool_manifest": [
                        {"adapter_id": a, "capabilities": caps} for a, caps in adapters.items()
                    ],
                    "evidence_manifest": [{"evidence_ref": ref} for ref in evidence],
                    "tool_bindings": {t: self.tools[t] for t in tools},
                },
                "runtime_controls": {
                    "approval_gates_active": list(spec.get("gates", [])),
                    "must_refuse": list(spec.get("must_refuse", [])),
                    "must_escalate": list(spec.get("must_escalate", [])),
                    "redaction_rules_active": list(spec.get("redactions", [])),
                },
            }
        )


def _render(template: str, envelope: Json) -> str | None:
    """`template` with each {dotted.path} replaced from the envelope; None if one is missing."""
    missing = False

    def value(match: re.Match[str]) -> str:
        nonlocal missing
        node: Any = envelope
        for part in match.group(1).split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if node is None or isinstance(node, dict | list):
            missing = True
            return ""
        return str(node)

    rendered = _TEMPLATE_FIELD.sub(value, template)
    return None if missing else rendered


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ToolSpec(_Strict):
    """A tool under `tools`: its risk binding and, optionally, a JSON Schema for its params."""

    approval_mode: Literal["read_only", "local_write", "network", "delegated", "destructive"]
    params: Json | None = None
    description: str = ""

    @field_validator("params")
    @classmethod
    def _is_a_schema(cls, schema: Json | None) -> Json | None:
        if schema is not None:
            try:
                Draft202012Validator.check_schema(schema)
            except SchemaError as error:
                raise ValueError(f"not a JSON Schema: {error.message}") from None
        return schema


class PackSpec(_Strict):
    """A context pack narrows its intent's tools."""

    tools: list[str]


class IntentSpec(_Strict):
    """An intent under `intents`: what is in force for it."""

    description: str = ""
    tools: list[str] = []
    rules: list[str] = []
    gates: list[str] = []
    evidence: list[str] = []
    redactions: list[str] = []
    must_refuse: list[str] = []
    must_escalate: list[str] = []
    packs: dict[str, PackSpec] = {}


class ManifestData(_Strict):
    tools: dict[str, ToolSpec] = {}
    intents: dict[str, IntentSpec] = {}

    @field_validator("tools", mode="before")
    @classmethod
    def _mode_alone(cls, tools: Any) -> Any:
        # `adp_kg.query: read_only` is short for `{approval_mode: read_only}`.
        if isinstance(tools, dict):
            return {t: {"approval_mode": s} if isinstance(s, str) else s for t, s in tools.items()}
        return tools


def load_manifest(data: Json, gates: set[str], redactions: set[str]) -> Manifest:
    """The `tools` and `intents` of a bundle's data, checked against its gates and redactions."""
    try:
        spec = ManifestData.model_validate(
            {key: data[key] for key in ("tools", "intents") if data.get(key) is not None}
        )
    except ValidationError as error:
        raise ManifestError(summary(error)) from None
    for tool in spec.tools:
        if "." not in tool:
            raise ManifestError(f"tools.{tool}: a tool is named adapter.capability")
    for name, intent in spec.intents.items():
        where = f"intents.{name}"
        named = [
            (f"{where}.tools", intent.tools, set(spec.tools), "is not declared under tools"),
            (f"{where}.gates", intent.gates, gates, "is not a defined gate"),
            (f"{where}.redactions", intent.redactions, redactions, "is not a defined redaction"),
            *(
                (
                    f"{where}.packs.{pack}",
                    narrowing.tools,
                    set(intent.tools),
                    "is not among its tools",
                )
                for pack, narrowing in intent.packs.items()
            ),
        ]
        for field_name, values, known, problem in named:
            for value in values:
                if value not in known:
                    raise ManifestError(f"{field_name}: {value} {problem}")
    return Manifest(
        tools={
            tool: {"approval_mode": t.approval_mode.upper(), "params_schema": t.params}
            for tool, t in spec.tools.items()
        },
        intents={name: i.model_dump(exclude={"description"}) for name, i in spec.intents.items()},
    )
