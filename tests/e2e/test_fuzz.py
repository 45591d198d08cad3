"""Hostile requests to every RPC of every service: random and mutated messages, raw corrupt
bytes, NaN and Infinity in Structs, huge strings, unknown enums, deep nesting, missing and
doubled credentials. Seeded and bounded (a few thousand requests on SQLite).

Holds: no answer is INTERNAL or UNKNOWN; nothing is logged with a traceback; the server
still serves afterwards; a batch of requests that are all refused changes no row, and
neither does any refused request to an RPC that writes.
Run with -s to see the answers counted by status code.
"""

import math
import random
import sqlite3
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import (
    descriptor_pool,
    json_format,
    message_factory,
    struct_pb2,
    timestamp_pb2,
)
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2

from signoff.api.server import SIGNOFF_SERVICES
from signoff.v1 import approval_service_pb2 as approval_pb
from signoff.v1 import audit_service_pb2 as audit_pb
from signoff.v1 import execution_service_pb2 as execution_pb
from signoff.v1 import policy_service_pb2 as policy_pb
from signoff.v1 import types_pb2 as pb
from tests.support import (
    AGENT_TOKEN,
    ServerProcess,
    decide,
    envelope,
    lookup_action,
    mint,
    refund_action,
)

SEED = 20261202
REQUESTS = 3000  # the random phase
REFUSED_ROUNDS = 12  # the all-refused phase: rounds over every writing RPC
# Approvals are for humans; this one may also read the audit trail.
HUMAN_TOKEN = mint("usr_fuzz_lead", "human", "*", ("admin",))
HEALTH = "/grpc.health.v1.Health/"
REFLECTION = "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"
WRITES = {
    "InvokeAgent",
    "RequestDecision",
    "ConsumeGrant",
    "ReportExecution",
    "CompleteInstance",
    "CancelInstance",
    "SubmitDecision",
    "CheckPlan",
    "SubmitPlan",
    "RecordCheckpoint",
}
NEVER = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN}


@dataclass(frozen=True)
class Method:
    path: str
    request: type[Message]
    streaming: bool

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[1]


def all_methods() -> list[Method]:
    pool = descriptor_pool.Default()
    found = []
    for service in SIGNOFF_SERVICES:
        for m in pool.FindServiceByName(service).methods:
            request = _message_class(m.input_type)
            found.append(Method(f"/{service}/{m.name}", request, m.server_streaming))
    found.append(Method(HEALTH + "Check", health_pb2.HealthCheckRequest, False))
    found.append(Method(HEALTH + "Watch", health_pb2.HealthCheckRequest, True))
    return found


def _message_class(descriptor: Descriptor) -> type[Message]:
    return message_factory.GetMessageClass(descriptor)  # type: ignore[no-any-return]


# -- what a hostile caller sends -------------------------------------------------------------

HUGE = "x" * 200_000
WEIRD_STRINGS = [
    "",
    " ",
    "a\x00b",
    "é" * 300,
    "\u202e\u0000",
    "🙂" * 50,
    "sha256:" + "f" * 64,
    "sha256:XYZ",
    "../../etc/passwd",
    "'; DROP TABLE actions; --",
    "x" * 129,
    "x" * 70_000,
    "a.b",
    "adp_payments.issue_refund",
]
NUMBERS = [0.0, -0.0, 1.5, -1.0, 1e308, -1e308, 5e-324, math.nan, math.inf, -math.inf]
INTS = [0, 1, -1, 7, 2**31 - 1, -(2**31), 1000]
INTS64 = [*INTS, 2**63 - 1, -(2**63)]


class Hostile:
    """Seeded generators of request bytes. `known` holds real ids, so that some requests
    get past validation and reach the services and the database."""

    def __init__(self, rng: random.Random, known: list[str]) -> None:
        self.rng = rng
        self.known = known

    def string(self) -> str:
        r = self.rng.random()
        if r < 0.4:
            return self.rng.choice(self.known)
        if r < 0.45:
            return HUGE
        if r < 0.55:
            return f"fz_{uuid.UUID(int=self.rng.getrandbits(128)).hex[:12]}"
        return self.rng.choice(WEIRD_STRINGS)

    def struct_value(self, value: struct_pb2.Value, depth: int) -> None:
        r = self.rng.random()
        if r < 0.3:
            value.number_value = self.rng.choice(NUMBERS)
        elif r < 0.5:
            value.string_value = self.string()
        elif r < 0.6:
            value.bool_value = self.rng.random() < 0.5
        elif r < 0.65:
            value.null_value = struct_pb2.NULL_VALUE
        elif r < 0.8 and depth < 6:
            for _ in range(self.rng.randrange(3)):
                self.struct_value(value.list_value.values.add(), depth + 1)
        elif depth < 6:
            self.struct(value.struct_value, depth + 1)
        # else: a Value with no kind at all

    def struct(self, message: struct_pb2.Struct, depth: int = 0) -> None:
        if depth == 0 and self.rng.random() < 0.05:
            inner = message
            for _ in range(self.rng.choice([20, 60, 200])):  # past protobuf's depth limit
                inner = inner.fields["deeper"].struct_value
            return
        for _ in range(self.rng.randrange(4)):
            self.struct_value(message.fields[self.string()[:100]], depth)

    def scalar(self, field: FieldDescriptor) -> Any:
        t = field.type
        if t == FieldDescriptor.TYPE_STRING:
            return self.string()
        if t == FieldDescriptor.TYPE_BYTES:
            return self.rng.randbytes(self.rng.randrange(40))
        if t == FieldDescriptor.TYPE_BOOL:
            return self.rng.random() < 0.5
        if t in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
            return self.rng.choice(NUMBERS)
        if t == FieldDescriptor.TYPE_ENUM:
            numbers = [v.number for v in field.enum_type.values]
            return self.rng.choice([*numbers, 99, -3, 2**31 - 1])
        if t in (FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_SINT64):
            return self.rng.choice(INTS64)
        if t in (FieldDescriptor.TYPE_UINT32, FieldDescriptor.TYPE_FIXED32):
            return abs(self.rng.choice(INTS))
        if t in (FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_FIXED64):
            return abs(self.rng.choice(INTS64)) % 2**64
        return self.rng.choice(INTS)

    def fill(self, message: Message, depth: int = 0) -> Message:
        for field in message.DESCRIPTOR.fields:
            if self.rng.random() < 0.35:
                continue
            if field.message_type is not None:
                self._message_field(message, field, depth)
            elif field.is_repeated:
                count = self.rng.choice([0, 1, 2, 3, 70])
                getattr(message, field.name).extend(self.scalar(field) for _ in range(count))
            else:
                setattr(message, field.name, self.scalar(field))
        return message

    def _message_field(self, message: Message, field: FieldDescriptor, depth: int) -> None:
        kind = field.message_type.full_name
        repeated = field.is_repeated
        if field.message_type.GetOptions().map_entry:
            value_field = field.message_type.fields_by_name["value"]
            if value_field.message_type is None:
                for _ in range(self.rng.randrange(3)):
                    getattr(message, field.name)[self.string()[:64]] = self.scalar(value_field)
            return
        if depth > 3:
            return
        if kind == "google.protobuf.Struct":
            self.struct(getattr(message, field.name))
        elif kind == "google.protobuf.Timestamp":
            stamp = timestamp_pb2.Timestamp(seconds=self.rng.choice(INTS64))
            getattr(message, field.name).CopyFrom(stamp)
        elif repeated:
            for _ in range(self.rng.randrange(3)):
                self.fill(getattr(message, field.name).add(), depth + 1)
        else:
            self.fill(getattr(message, field.name), depth + 1)

    def mutated(self, valid: bytes) -> bytes:
        data = bytearray(valid or b"\x00")
        for _ in range(self.rng.randrange(1, 6)):
            r, at = self.rng.random(), self.rng.randrange(len(data))
            if r < 0.4:
                data[at] = self.rng.randrange(256)
            elif r < 0.6:
                del data[at:]
                data = data or bytearray(b"\x80")
            elif r < 0.8:
                data[at:at] = self.rng.randbytes(self.rng.randrange(1, 8))
            else:
                data += data[at:]
        return bytes(data)

    def bad_utf8(self, request: type[Message], valid: bytes) -> bytes:
        """`valid` followed by one of the message's string fields holding invalid UTF-8."""
        strings = [
            f.number for f in request.DESCRIPTOR.fields if f.type == FieldDescriptor.TYPE_STRING
        ]
        number = self.rng.choice(strings) if strings else 1
        junk = self.rng.choice([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"ok\xfe"])
        return valid + bytes([number << 3 | 2, len(junk)]) + junk


# -- the server under test -------------------------------------------------------------------


@dataclass
class World:
    """Real ids of a seeded server, and one valid request for each RPC."""

    known: list[str]
    valid: dict[str, Message]


def seed(server: ServerProcess) -> World:
    stubs = server.stubs()
    invoked = envelope()
    instance = stubs.execution.InvokeAgent(invoked).instance
    waiting = stubs.execution.RequestDecision(
        execution_pb.RequestDecisionRequest(
            instance_id=instance.instance_id, action=refund_action("tc_wait")
        )
    )
    approved = stubs.execution.RequestDecision(
        execution_pb.RequestDecisionRequest(
            instance_id=instance.instance_id, action=lookup_action("tc_ok")
        )
    )
    other = stubs.execution.InvokeAgent(envelope()).instance
    decided = stubs.execution.RequestDecision(
        execution_pb.RequestDecisionRequest(
            instance_id=other.instance_id, action=refund_action("tc_decided")
        )
    )
    record = decide(server, decided.action_id, "usr_fuzz_lead").record
    known = [
        instance.instance_id,
        other.instance_id,
        waiting.action_id,
        approved.action_id,
        decided.action_id,
        approved.grant_token or "grant_none",
        record.record_id,
        invoked.request_id,
        "tenant_acme_prod",
        waiting.action_sha256,
    ]
    edited = struct_pb2.Struct()
    edited.update({"order_id": "ord_881", "amount": 100, "currency": "INR"})
    valid: dict[str, Message] = {
        "InvokeAgent": envelope(),
        "RequestDecision": execution_pb.RequestDecisionRequest(
            instance_id=instance.instance_id, action=refund_action("tc_fuzz")
        ),
        "WatchInstance": execution_pb.WatchInstanceRequest(instance_id=instance.instance_id),
        "ConsumeGrant": execution_pb.ConsumeGrantRequest(
            action_id=approved.action_id, grant_token=approved.grant_token or "grant_none"
        ),
        "ReportExecution": execution_pb.ReportExecutionRequest(
            action_id=approved.action_id,
            result=execution_pb.EXECUTION_RESULT_SUCCEEDED,
            evidence_ref="receipt:1",
            grant_token=approved.grant_token,
        ),
        "CompleteInstance": execution_pb.CompleteInstanceRequest(instance_id=other.instance_id),
        "CancelInstance": execution_pb.CancelInstanceRequest(
            instance_id=instance.instance_id, reason="fuzz"
        ),
        "GetInstance": execution_pb.GetInstanceRequest(instance_id=instance.instance_id),
        "ListInstances": execution_pb.ListInstancesRequest(page_size=5),
        "CheckPlan": json_format.ParseDict(
            {
                "instance_id": instance.instance_id,
                "plan": {
                    "plan_id": "plan_fuzz",
                    "intent": "support.refund",
                    "steps": [
                        {"id": "s1", "tool": "adp_orders.lookup", "params": {"order_id": "o"}},
                        {
                            "id": "s2",
                            "tool": "adp_queue.append",
                            "depends_on": ["s1"],
                            "execute_when": {"<": [{"var": "outputs.s1.confidence"}, 0.7]},
                        },
                    ],
                },
            },
            execution_pb.CheckPlanRequest(),
        ),
        "SubmitPlan": json_format.ParseDict(
            {
                "instance_id": instance.instance_id,
                "plan": {
                    "plan_id": "plan_fuzz",
                    "intent": "support.refund",
                    "steps": [
                        {"id": "s1", "tool": "adp_orders.lookup", "params": {"order_id": "o"}},
                        {
                            "id": "s2",
                            "tool": "adp_payments.issue_refund",
                            "depends_on": ["s1"],
                            "params": {"order_id": "o", "amount": 4200, "currency": "INR"},
                            "approval_mode": "RISK_CLASS_DESTRUCTIVE",
                        },
                    ],
                },
            },
            execution_pb.SubmitPlanRequest(),
        ),
        "RecordCheckpoint": json_format.ParseDict(
            {
                "instance_id": instance.instance_id,
                "decision_id": "support.refund.eligibility",
                "outcome": "eligible",
                "evidence_refs": ["tool:adp_policy.eval:tc_119"],
                "outputs": {"eligible": True, "amount": 4200},
            },
            execution_pb.RecordCheckpointRequest(),
        ),
        "ListPendingApprovals": approval_pb.ListPendingApprovalsRequest(page_size=5),
        "SubmitDecision": approval_pb.SubmitDecisionRequest(
            action_id=waiting.action_id,
            verdict=pb.VERDICT_APPROVE,
            reason="fuzz",
            request_id="dec_fuzz",
            edited_params=edited,
            evidence_snapshot_hash=waiting.action_sha256,
        ),
        "WatchApprovals": approval_pb.WatchApprovalsRequest(),
        "GetDecisionRecord": audit_pb.GetDecisionRecordRequest(record_id=record.record_id),
        "ListDecisionRecords": audit_pb.ListDecisionRecordsRequest(page_size=5),
        "ListEvents": audit_pb.ListEventsRequest(instance_id=instance.instance_id),
        "VerifyChain": audit_pb.VerifyChainRequest(instance_id=instance.instance_id),
        "EvaluatePolicy": policy_pb.EvaluatePolicyRequest(
            instance_id=instance.instance_id, action=refund_action()
        ),
        "GetPolicy": policy_pb.GetPolicyRequest(),
        "Check": health_pb2.HealthCheckRequest(),
        "Watch": health_pb2.HealthCheckRequest(),
    }
    return World(known, valid)


class Caller:
    """Sends bytes to any method, as anyone, and counts the answers by status code."""

    def __init__(self, server: ServerProcess) -> None:
        self.channel = server.channel(None)  # credentials go in each call's metadata
        self.codes: Counter[str] = Counter()
        self.by_method: dict[str, Counter[str]] = {}

    def call(self, method: Method, data: bytes, metadata: list[tuple[str, str]]) -> str:
        try:
            if method.streaming:
                responses = self.channel.unary_stream(method.path)(
                    data, metadata=metadata, timeout=5
                )
                for _ in responses:
                    break  # one answer is enough: the stream works
                responses.cancel()
            else:
                self.channel.unary_unary(method.path)(data, metadata=metadata, timeout=30)
            code = grpc.StatusCode.OK
        except grpc.RpcError as error:
            code = error.code()
        if code in NEVER:
            raise AssertionError(f"{method.path} answered {code.name} to {data[:200]!r}")
        self.codes[code.name] += 1
        self.by_method.setdefault(method.name, Counter())[code.name] += 1
        return str(code.name)


def credentials(method: Method) -> list[tuple[str, str]]:
    token = HUMAN_TOKEN if "ApprovalService" in method.path else AGENT_TOKEN
    return [("authorization", f"Bearer {token}")]


def table_dump(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as connection:
        tables = [
            row[0]
            for row in connection.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"
            )
        ]
        return {
            t: connection.execute(f'SELECT * FROM "{t}" ORDER BY rowid').fetchall() for t in tables
        }


# -- the test --------------------------------------------------------------------------------


def refused_only(
    rng: random.Random, hostile: Hostile, method: Method, valid: Message
) -> tuple[bytes, list[tuple[str, str]]]:
    """A request that would change rows, made certain to be refused by one injection."""
    good = valid.SerializeToString()
    request = type(valid)()
    request.CopyFrom(valid)
    choices: list[Callable[[], tuple[bytes, list[tuple[str, str]]]]] = [
        lambda: (good, []),  # no credentials
        lambda: (good, credentials(method) * 2),  # two authorization headers
        lambda: (hostile.bad_utf8(method.request, good), credentials(method)),
        lambda: (good[: max(1, len(good) // 2)] + b"\xff\xff", credentials(method)),
    ]
    structs = [
        f.name
        for f in request.DESCRIPTOR.fields
        if f.message_type is not None and f.message_type.full_name == "google.protobuf.Struct"
    ]
    if method.name == "RequestDecision":
        structs = ["action.params"]
    elif method.name == "InvokeAgent":
        structs = ["input.context"]

    def with_nan() -> tuple[bytes, list[tuple[str, str]]]:
        target: Any = request
        for part in rng.choice(structs).split("."):
            target = getattr(target, part)
        target.update({"amount": rng.choice([math.nan, math.inf, -math.inf])})
        return request.SerializeToString(), credentials(method)

    def with_long_id() -> tuple[bytes, list[tuple[str, str]]]:
        ids = [f.name for f in request.DESCRIPTOR.fields if f.name.endswith("_id")]
        setattr(request, rng.choice(ids), "i" * 129)
        return request.SerializeToString(), credentials(method)

    if structs:
        choices.append(with_nan)
    if any(f.name.endswith("_id") for f in request.DESCRIPTOR.fields):
        choices.append(with_long_id)
    return rng.choice(choices)()


def test_hostile_requests_get_precise_answers_and_change_nothing_when_refused(
    tmp_path: Path,
) -> None:
    rng = random.Random(SEED)
    database = tmp_path / "fuzz.db"
    methods = all_methods()
    with ServerProcess(f"sqlite:///{database}", tmp_path) as server:
        world = seed(server)
        hostile = Hostile(rng, world.known)
        caller = Caller(server)

        # 1. Requests that are all refused: not one row changes.
        before = table_dump(database)
        writes = [m for m in methods if m.name in WRITES]
        for _ in range(REFUSED_ROUNDS):
            for method in writes:
                data, metadata = refused_only(rng, hostile, method, world.valid[method.name])
                code = caller.call(method, data, metadata)
                assert code != "OK", (method.name, data[:200])
        assert table_dump(database) == before

        # 2. Anything, to anything; a writing RPC that is refused changes no row either.
        for _ in range(REQUESTS):
            method = rng.choice(methods)
            valid = world.valid[method.name].SerializeToString()
            r = rng.random()
            if r < 0.45:
                data = hostile.fill(method.request()).SerializeToString()
            elif r < 0.7:
                data = hostile.mutated(valid)
            elif r < 0.8:
                data = hostile.bad_utf8(method.request, valid)
            elif r < 0.9:
                data = rng.randbytes(rng.randrange(1, 300))
            else:
                data = valid
            metadata = credentials(method)
            r = rng.random()
            if r < 0.08:
                metadata = []
            elif r < 0.12:
                metadata = metadata * 2
            before = table_dump(database) if method.name in WRITES else {}
            if caller.call(method, data, metadata) != "OK" and before:
                assert table_dump(database) == before, (method.name, data[:200])

        # Reflection (a bidirectional stream) and oversized messages.
        reflection = server.channel(None).stream_stream(REFLECTION)
        for data in (b"\xff\xff", b"\x0a\x03\xff\xfe\xfd", rng.randbytes(64)):
            try:
                list(reflection(iter([data]), timeout=5))
                code = grpc.StatusCode.OK
            except grpc.RpcError as error:
                code = error.code()
            assert code not in NEVER, code
            caller.codes[code.name] += 1
        invoke = next(m for m in methods if m.name == "InvokeAgent")
        big = envelope(request_id="r" * 5_000_000).SerializeToString()
        caller.call(invoke, big, credentials(invoke))

        # The server still serves: health, reflection and signoff itself.
        health = server.channel(None).unary_unary(HEALTH + "Check")(b"", timeout=10)
        assert health_pb2.HealthCheckResponse.FromString(health).status == 1  # SERVING
        listing = reflection_pb2.ServerReflectionRequest(list_services="")
        answers = list(reflection(iter([listing.SerializeToString()]), timeout=10))
        services = reflection_pb2.ServerReflectionResponse.FromString(answers[0])
        assert set(SIGNOFF_SERVICES) <= {s.name for s in services.list_services_response.service}
        assert server.stubs().execution.InvokeAgent(envelope()).instance.instance_id

    assert "Traceback" not in server.log_path.read_text()
    total = sum(caller.codes.values())
    print(f"\nfuzz: {total} requests, seed {SEED}; by status code:")
    for name, count in caller.codes.most_common():
        print(f"  {name:20} {count}")
    print("by method:", {m: dict(c) for m, c in sorted(caller.by_method.items())})
