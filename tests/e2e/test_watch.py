"""WatchInstance guarantees: replay then live, ordered, gapless, unique, resumable,
bookmarks on idle streams, OK after the terminal event, bounded memory for slow readers."""

import asyncio
import queue
import threading
from collections.abc import Iterator

import grpc
import pytest

from signoff.domain.models import Event
from signoff.domain.states import EventType, InstanceState
from signoff.store.hub import Hub
from signoff.v1 import execution_service_pb2 as execution_pb
from signoff.v1 import types_pb2 as pb
from tests.support import (
    ServerProcess,
    Stubs,
    decide,
    envelope,
    error_info,
    events,
    lookup_action,
    waiting_refund,
)

TIMEOUT = 30  # generous: a guard against hanging, never an assertion on speed


def watch(stubs: Stubs, instance_id: str, after: int = 0) -> "grpc.Future":
    return stubs.execution.WatchInstance(
        execution_pb.WatchInstanceRequest(instance_id=instance_id, after_revision=after),
        timeout=TIMEOUT,
    )


class Reader:
    """Reads a watch stream on a thread, so the test can act while the stream is open."""

    def __init__(self, stream: Iterator[execution_pb.WatchInstanceResponse]) -> None:
        self.stream = stream
        self.messages: queue.Queue[execution_pb.WatchInstanceResponse | Exception | None] = (
            queue.Queue()
        )
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        try:
            for message in self.stream:
                self.messages.put(message)
            self.messages.put(None)  # ended with OK
        except Exception as error:  # noqa: BLE001 - handed to the test
            self.messages.put(error)

    def next_event(self) -> pb.Event:
        while True:
            message = self.messages.get(timeout=TIMEOUT)
            assert isinstance(message, execution_pb.WatchInstanceResponse), message
            if message.HasField("event"):
                return message.event

    def events_until_end(self) -> list[pb.Event]:
        events = []
        while (message := self.messages.get(timeout=TIMEOUT)) is not None:
            assert isinstance(message, execution_pb.WatchInstanceResponse), message
            if message.HasField("event"):
                events.append(message.event)
        return events

    def next_bookmark(self) -> execution_pb.Bookmark:
        while True:
            message = self.messages.get(timeout=TIMEOUT)
            assert isinstance(message, execution_pb.WatchInstanceResponse), message
            if message.HasField("bookmark"):
                return message.bookmark


def start(stubs: Stubs) -> tuple[str, str]:
    instance_id, waiting = waiting_refund(stubs)
    return instance_id, waiting.action_id


def complete(stubs: Stubs, instance_id: str) -> None:
    stubs.execution.CompleteInstance(execution_pb.CompleteInstanceRequest(instance_id=instance_id))


def test_watch_after_the_end_replays_everything_and_closes(stubs: Stubs) -> None:
    instance_id, action_id = start(stubs)
    decide(stubs, action_id, "lead", reason="ok")
    complete(stubs, instance_id)
    replayed = list(events(watch(stubs, instance_id)))
    assert [event.revision for event in replayed] == [1, 2, 3, 4]
    assert replayed[-1].type == pb.EVENT_TYPE_INSTANCE_COMPLETED
    assert list(watch(stubs, instance_id, after=4)) == []  # nothing newer, and the end is known
    assert [event.revision for event in events(watch(stubs, instance_id, after=2))] == [3, 4]


def test_watcher_connected_before_the_decision_sees_it_live(stubs: Stubs) -> None:
    instance_id, action_id = start(stubs)
    reader = Reader(watch(stubs, instance_id))
    assert [reader.next_event().revision for _ in range(2)] == [1, 2]
    decide(stubs, action_id, "lead", reason="ok")
    decided = reader.next_event()
    assert decided.type == pb.EVENT_TYPE_ACTION_DECIDED and decided.action_id == action_id
    assert decided.outcome == pb.OUTCOME_APPROVED and decided.actor == "lead"
    assert decided.instance_state == pb.INSTANCE_STATE_RUNNING
    complete(stubs, instance_id)
    assert [e.type for e in reader.events_until_end()] == [pb.EVENT_TYPE_INSTANCE_COMPLETED]


def test_reconnecting_with_the_last_revision_gets_exactly_what_was_missed(stubs: Stubs) -> None:
    instance_id, action_id = start(stubs)
    stream = watch(stubs, instance_id)
    seen = [next(stream).event.revision, next(stream).event.revision]
    stream.cancel()
    decide(stubs, action_id, "lead", reason="ok")  # happens while disconnected
    for i in range(3):
        stubs.execution.RequestDecision(
            execution_pb.RequestDecisionRequest(
                instance_id=instance_id, action=lookup_action(f"tc_{i}")
            )
        )
    complete(stubs, instance_id)
    rest = [event.revision for event in events(watch(stubs, instance_id, after=seen[-1]))]
    assert seen + rest == list(range(1, 8))


def test_idle_streams_get_bookmarks_with_the_current_revision(stubs: Stubs) -> None:
    instance_id, _ = start(stubs)
    reader = Reader(watch(stubs, instance_id))
    assert [reader.next_event().revision for _ in range(2)] == [1, 2]
    assert reader.next_bookmark().revision == 2
    assert reader.next_bookmark().revision == 2  # keeps coming while idle
    stubs.execution.CancelInstance(execution_pb.CancelInstanceRequest(instance_id=instance_id))
    ending = reader.events_until_end()
    assert [e.type for e in ending] == [
        pb.EVENT_TYPE_ACTION_CANCELLED,
        pb.EVENT_TYPE_INSTANCE_TERMINATED,
    ]
    assert ending[0].outcome == pb.OUTCOME_TERMINATED


def test_concurrent_writers_are_streamed_in_order_without_gaps(server: ServerProcess) -> None:
    stubs = server.stubs()
    instance_id = stubs.execution.InvokeAgent(envelope()).instance.instance_id
    reader = Reader(watch(stubs, instance_id))
    writers = [server.stubs() for _ in range(4)]

    def write(w: int) -> None:
        for i in range(15):
            writers[w].execution.RequestDecision(
                execution_pb.RequestDecisionRequest(
                    instance_id=instance_id, action=lookup_action(f"tc_{w}_{i}")
                )
            )

    threads = [threading.Thread(target=write, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    complete(stubs, instance_id)
    revisions = [e.revision for e in reader.events_until_end()]
    assert revisions == list(range(1, 63))


def test_a_reader_that_falls_behind_still_gets_every_event(server: ServerProcess) -> None:
    stubs = server.stubs()
    instance_id = stubs.execution.InvokeAgent(envelope()).instance.instance_id
    stream = events(watch(stubs, instance_id))
    assert next(stream).revision == 1  # subscribed; now stop reading while 300 events land
    for i in range(300):
        stubs.execution.RequestDecision(
            execution_pb.RequestDecisionRequest(
                instance_id=instance_id, action=lookup_action(f"tc_{i}")
            )
        )
    complete(stubs, instance_id)
    assert [event.revision for event in stream] == list(range(2, 303))


def test_watch_errors(stubs: Stubs) -> None:
    instance_id, _ = start(stubs)
    with pytest.raises(grpc.RpcError) as ahead:
        list(watch(stubs, instance_id, after=99))
    assert ahead.value.code() == grpc.StatusCode.OUT_OF_RANGE
    assert error_info(ahead.value).reason == "REVISION_OUT_OF_RANGE"
    with pytest.raises(grpc.RpcError) as missing:
        list(watch(stubs, "ins_missing"))
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as negative:
        list(watch(stubs, instance_id, after=-1))
    assert negative.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def _event(revision: int) -> Event:
    return Event("ins_1", "t", revision, EventType.ACTION_REQUESTED, None, InstanceState.RUNNING)  # type: ignore[arg-type]


def test_hub_queue_is_bounded_and_reports_overflow() -> None:
    async def scenario() -> None:
        hub = Hub(max_queued=3)
        subscription = hub.subscribe("ins_1")
        hub.publish(_event(r) for r in range(1, 3))
        assert await subscription.wait(0)
        events, overflowed = subscription.take()
        assert [e.revision for e in events] == [1, 2] and not overflowed
        hub.publish(_event(r) for r in range(3, 10))
        events, overflowed = subscription.take()
        assert overflowed and len(events) <= 3  # dropped, never more than the bound
        assert not await subscription.wait(0)
        hub.unsubscribe(subscription)
        assert hub.watcher_count == 0

        open_one = hub.subscribe("ins_2")
        hub.close()
        assert open_one.closed and await open_one.wait(0)
        assert hub.subscribe("ins_3").closed  # no new watch starts on a closing server

    asyncio.run(scenario())
