"""signoff serve's log lines: one JSON object each, written by a thread of its own."""

import io
import json
import logging
import threading

from signoff.telemetry.logs import BackgroundHandler, JsonFormatter


class SlowStream(io.StringIO):
    """Standard error that blocks until released."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()

    def write(self, text: str) -> int:
        self.release.wait(10)
        return super().write(text)


def test_lines_are_json_with_extra_fields_and_never_wait_for_the_write() -> None:
    stream = SlowStream()
    handler = BackgroundHandler(stream)
    handler.setFormatter(JsonFormatter())
    log = logging.getLogger("signoff.test.logs")
    log.propagate = False
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        for i in range(100):  # the stream blocks: logging still returns at once
            log.info("call %d", i, extra={"code": "OK", "duration_ms": 1.5, "obj": object()})
        try:
            raise ValueError("boom")
        except ValueError:
            log.exception("failed")
        assert stream.getvalue() == ""
        stream.release.set()
    finally:
        log.removeHandler(handler)
        handler.close()  # writes what is queued
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert len(lines) == 101
    first = lines[0]
    assert first["level"] == "INFO" and first["logger"] == "signoff.test.logs"
    assert first["message"] == "call 0" and first["code"] == "OK"
    assert first["duration_ms"] == 1.5 and first["obj"].startswith("<object")
    assert first["time"].endswith("+00:00")
    assert lines[-1]["level"] == "ERROR"
    assert "ValueError: boom" in lines[-1]["exc_info"]


def test_lines_beyond_the_capacity_are_counted_not_kept() -> None:
    stream = SlowStream()
    handler = BackgroundHandler(stream, capacity=10)
    handler.setFormatter(JsonFormatter())
    record = logging.LogRecord("x", logging.INFO, __file__, 0, "line", (), None)
    for _ in range(50):
        handler.emit(record)
    stream.release.set()
    handler.close()
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert 10 <= len(lines) - 1 <= 12
    assert "log lines dropped" in lines[-1]["message"]
