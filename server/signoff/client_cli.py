"""The client commands of `signoff`: pending, approve, reject, watch, instances.

They talk to a running server through the SDK (signoff_client.Signoff), as the principal of
`--token` or $SIGNOFF_TOKEN, so they work against any server. cli.py registers them with
`add_commands`; `target_flags` and `credentials` serve `mcp-proxy` too.

`approve` can edit before it approves: `--set amount=3000` (a dotted path for a nested
key; the value as JSON when it parses, else as a string) or `--params-json FILE` (the
complete new params; `-` reads standard input). It shows the change, asks for
confirmation on a terminal (`--yes` skips it, and is required elsewhere), and submits the
edit bound to the action_sha256 it showed, so a change made meanwhile is refused
(EVIDENCE_CHANGED) rather than overwritten.
"""

from __future__ import annotations

import argparse
import copy
import functools
import json
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import json_format

from signoff.v1 import types_pb2 as pb
from signoff_client.errors import SignoffError
from signoff_client.sdk import Signoff, json_numbers

DEFAULT_TARGET = "127.0.0.1:50051"


class UsageError(Exception):
    """Input the command refuses before it changes anything (exit 2, one line)."""


def target_flags() -> argparse.ArgumentParser:
    """The flags every client command takes: where the server is, and who calls."""
    target = argparse.ArgumentParser(add_help=False)
    target.add_argument(
        "--target",
        default=os.environ.get("SIGNOFF_TARGET", DEFAULT_TARGET),
        help=f"server address (default {DEFAULT_TARGET})",
    )
    for flag, env, what in (
        ("--tls-ca", "SIGNOFF_TLS_CA", "CA certificate (PEM) to trust: connect with TLS"),
        ("--tls-cert", "SIGNOFF_TLS_CERT", "client certificate (PEM), for mTLS"),
        ("--tls-key", "SIGNOFF_TLS_KEY", "client private key (PEM), for mTLS"),
    ):
        target.add_argument(flag, default=os.environ.get(env, ""), help=what)
    target.add_argument(
        "--token",
        default="",
        help="bearer token (default $SIGNOFF_TOKEN): you act as its principal",
    )
    return target


def credentials(args: argparse.Namespace) -> grpc.ChannelCredentials | None:
    if not args.tls_ca:
        return None
    # TLS, and mTLS when a client certificate is given (a server with `mtls` needs one).
    return grpc.ssl_channel_credentials(
        root_certificates=Path(args.tls_ca).read_bytes(),
        private_key=Path(args.tls_key).read_bytes() if args.tls_key else None,
        certificate_chain=Path(args.tls_cert).read_bytes() if args.tls_cert else None,
    )


def _client(args: argparse.Namespace) -> Signoff:
    return Signoff.connect(args.target, token=args.token or None, credentials=credentials(args))


def _short(enum_type: Any, prefix: str, number: int) -> str:
    return str(enum_type.Name(number)).removeprefix(prefix)


def _params(action: pb.Action) -> dict[str, Any]:
    """The params as the agent sent them: whole numbers stay integers (4200, not 4200.0)."""
    return dict(json_numbers(json_format.MessageToDict(action.params)))


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(", ", ": "))


# ---- pending, watch, instances ----------------------------------------------------------


def _pending(args: argparse.Namespace) -> int:
    with _client(args) as client:
        actions = client.list_pending(args.tenant, limit=args.limit)
    for action in actions:
        print(
            f"{action.action_id}  {action.tool}  "
            f"{_short(pb.RiskClass, 'RISK_CLASS_', action.risk_class)}  "
            f"gates={','.join(action.gate_ids)}  instance={action.instance_id}  "
            f"{_json(_params(action))}"
        )
    if not actions:
        print("no actions wait for a decision")
    return 0


def _watch(args: argparse.Namespace) -> int:
    with _client(args) as client:
        for message in client.watch_responses(args.instance_id, args.after):
            if message.HasField("bookmark"):
                print(f"-- current at revision {message.bookmark.revision}", flush=True)
                continue
            event = message.event
            parts = [f"#{event.revision}", _short(pb.EventType, "EVENT_TYPE_", event.type)]
            parts.append(
                "instance=" + _short(pb.InstanceState, "INSTANCE_STATE_", event.instance_state)
            )
            if event.action_id:
                parts.append(f"action={event.action_id}")
                parts.append(_short(pb.ActionState, "ACTION_STATE_", event.action_state))
            if event.actor:
                parts.append(f"by {event.actor}")
            if event.reason:
                parts.append(f"({event.reason})")
            print("  ".join(parts), flush=True)
    return 0


def _instances(args: argparse.Namespace) -> int:
    with _client(args) as client:
        instances = client.list_instances(args.tenant, args.state, args.limit)
    for instance in instances:
        print(
            f"{instance.instance_id}  "
            f"{_short(pb.InstanceState, 'INSTANCE_STATE_', instance.state)}  "
            f"tenant={instance.tenant_id}  intent={instance.input.intent}  "
            f"revision={instance.revision}  {_spend(instance.budget)}"
        )
    if not instances:
        print("no instances")
    return 0


def _spend(budget: pb.BudgetReport) -> str:
    """Tool calls and cost against their limits: "calls=3/8  cost_cents=12.5/25 (5 waiting)"."""
    calls, cost = (
        str(budget.tool_calls_used),
        f"{budget.cost_spent_cents + budget.cost_reserved_cents:g}",
    )
    if budget.max_tool_calls:
        calls += f"/{budget.max_tool_calls}"
    if budget.max_cost_cents:
        cost += f"/{budget.max_cost_cents:g}"
    if budget.cost_reserved_cents:
        cost += f" ({budget.cost_reserved_cents:g} waiting)"
    return f"calls={calls}  cost_cents={cost}"


# ---- approve and reject, with edits -----------------------------------------------------


def _evidence_hash(value: str) -> str:
    """--evidence-hash is checked here too, so a typo never reaches the server."""
    from signoff.api.validation import SHA256

    if value and not SHA256.match(value):
        raise argparse.ArgumentTypeError(
            f"{value!r} is not an action_sha256 (sha256: and 64 lowercase hex digits)"
        )
    return value


def _assignment(text: str) -> tuple[list[str], Any]:
    """`path=value` of --set: the path split at dots, the value as JSON, else a string."""
    path, equals, raw = text.partition("=")
    keys = path.split(".")
    if not equals or not all(keys):
        raise UsageError(f"--set {text!r}: expected KEY=VALUE (KEY may be a.b.c)")
    try:
        value = json.loads(raw)
    except ValueError:
        value = raw
    return keys, value


def apply_sets(params: dict[str, Any], assignments: list[str]) -> dict[str, Any]:
    """A copy of `params` with each --set applied in order (missing objects are created)."""
    edited = copy.deepcopy(params)
    for text in assignments:
        keys, value = _assignment(text)
        node = edited
        for depth, key in enumerate(keys[:-1]):
            child = node.setdefault(key, {})
            if not isinstance(child, dict):
                where = ".".join(keys[: depth + 1])
                raise UsageError(f"--set {text!r}: {where} is {_json(child)}, not an object")
            node = child
        node[keys[-1]] = value
    return edited


def _read_params(source: str) -> dict[str, Any]:
    try:
        text = sys.stdin.read() if source == "-" else Path(source).read_text()
    except OSError as error:
        raise UsageError(f"--params-json {source}: {error.strerror or error}") from None
    try:
        params = json.loads(text)
    except ValueError as error:
        raise UsageError(f"--params-json {source}: not JSON ({error})") from None
    if not isinstance(params, dict):
        raise UsageError(f"--params-json {source}: the params must be a JSON object")
    return params


def params_diff(before: Any, after: Any, path: str = "") -> Iterator[str]:
    """One line per changed leaf: `~ key: old -> new`, `+ key: new`, `- key: old`."""
    if isinstance(before, dict) and isinstance(after, dict):
        for key in [*before, *(k for k in after if k not in before)]:
            where = f"{path}.{key}" if path else key
            if key not in after:
                yield f"- {where}: {_json(before[key])}"
            elif key not in before:
                yield f"+ {where}: {_json(after[key])}"
            else:
                yield from params_diff(before[key], after[key], where)
    elif before != after or type(before) is not type(after):
        yield f"~ {path}: {_json(before)} -> {_json(after)}"


def _waiting_action(client: Signoff, action_id: str) -> pb.Action:
    for action in client.list_pending():
        if action.action_id == action_id:
            return action
    raise UsageError(
        f"no action {action_id} waits for a decision that you can see "
        "(unknown, already decided, or another tenant's)"
    )


def _confirm(args: argparse.Namespace) -> None:
    if args.yes:
        return
    if args.params_json == "-" or not sys.stdin.isatty():
        raise UsageError("not confirmed: pass --yes to approve the edit without a prompt")
    answer = input("approve with these params? [y/N] ")
    if answer.strip().lower() not in ("y", "yes"):
        raise UsageError("not approved: nothing was submitted")


def _edit(args: argparse.Namespace, client: Signoff) -> tuple[dict[str, Any], str]:
    """The edited params and the action_sha256 they were edited from, after confirmation."""
    if args.set and args.params_json:
        raise UsageError("give --set or --params-json, not both")
    action = _waiting_action(client, args.action_id)
    before = _params(action)
    after = _read_params(args.params_json) if args.params_json else apply_sets(before, args.set)
    changes = list(params_diff(before, after))
    if not changes:
        raise UsageError(f"the edit leaves the params of {action.action_id} as they are")
    print(f"{action.action_id}  {action.tool}  {action.action_sha256}")
    for line in changes:
        print(f"  {line}")
    _confirm(args)
    if args.evidence_hash and args.evidence_hash != action.action_sha256:
        raise UsageError(
            f"--evidence-hash {args.evidence_hash} is not the action's current "
            f"{action.action_sha256}: review it again"
        )
    return after, action.action_sha256


def _decide(args: argparse.Namespace, verdict: str) -> int:
    with _client(args) as client:
        edited, reviewed = None, args.evidence_hash
        if getattr(args, "set", None) or getattr(args, "params_json", ""):
            edited, reviewed = _edit(args, client)
        response = client.submit_decision(
            args.action_id,
            verdict,
            args.reason,
            request_id=args.request_id or None,
            evidence_snapshot_hash=reviewed,
            edited_params=edited,
        )
    action, record_id = response.action, response.record.record_id
    state = _short(pb.ActionState, "ACTION_STATE_", action.state)
    how = " with edited params" if edited is not None else ""
    if record_id:
        print(f"{action.action_id} {state} by {action.decided_by}{how} (record {record_id})")
    else:
        tally = ", ".join(f"{g.gate_id} {g.approvals}/{g.quorum}" for g in action.gates)
        print(f"{action.action_id} {state}: vote counted{how} ({tally})")
    return 0


# ---- registration -------------------------------------------------------------------------


def _run(command: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Errors as one line on standard error: 2 for refused input, 1 for signoff's answer."""

    def run(args: argparse.Namespace) -> int:
        try:
            return command(args)
        except UsageError as error:
            print(f"signoff {args.command}: {error}", file=sys.stderr)
            return 2
        except SignoffError as error:
            print(f"signoff: {error}", file=sys.stderr)
            return 1

    return run


def add_commands(commands: Any, target: argparse.ArgumentParser) -> None:
    """Registers pending, approve, reject, watch and instances on `signoff`'s subparsers."""
    pending = commands.add_parser("pending", parents=[target], help="list actions that wait")
    pending.add_argument("--tenant", default="")
    pending.add_argument("--limit", type=int, default=100)
    pending.set_defaults(run=_run(_pending))

    for name, verdict in (("approve", "APPROVE"), ("reject", "REJECT")):
        decide = commands.add_parser(name, parents=[target], help=f"{name} a waiting action")
        decide.add_argument("action_id", metavar="ACTION")
        decide.add_argument("--reason", required=True)
        decide.add_argument(
            "--evidence-hash",
            default="",
            type=_evidence_hash,
            help="the action_sha256 you reviewed (sha256:<64 hex digits>)",
        )
        decide.add_argument("--request-id", default="", help="idempotency key (default: new)")
        if name == "approve":
            decide.add_argument(
                "--set",
                action="append",
                default=[],
                metavar="KEY=VALUE",
                help="approve with this param changed (repeatable; KEY may be a.b.c; VALUE "
                "is JSON when it parses, else a string)",
            )
            decide.add_argument(
                "--params-json",
                default="",
                metavar="FILE",
                help="approve with these params instead (a JSON object; - reads stdin)",
            )
            decide.add_argument(
                "--yes", action="store_true", help="submit an edit without asking to confirm"
            )
        decide.set_defaults(run=_run(functools.partial(_decide, verdict=verdict)))

    watch = commands.add_parser("watch", parents=[target], help="follow an instance's events")
    watch.add_argument("instance_id")
    watch.add_argument("--after", type=int, default=0, help="start after this revision")
    watch.set_defaults(run=_run(_watch))

    listing = commands.add_parser("instances", parents=[target], help="list instances")
    listing.add_argument("--tenant", default="")
    listing.add_argument(
        "--state", choices=["RUNNING", "WAITING_FOR_HUMAN", "COMPLETED", "TERMINATED"]
    )
    listing.add_argument("--limit", type=int, default=50)
    listing.set_defaults(run=_run(_instances))
