"""The log line of every committed state transition, the trace id log lines carry, and how
`signoff serve` writes its lines: one JSON object per line (or text), built with one
json.dumps where it is logged, and written to standard error by a thread of its own, so
that the event loop never waits on the write. (One line per call is written by
api/calls.py.)"""

import json
import logging
import queue
import sys
import threading
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, TextIO

from opentelemetry import trace

from signoff.domain.models import Event

transitions = logging.getLogger("signoff.transitions")


def current_trace_id() -> str:
    """The trace id of the current OpenTelemetry span, or "" when there is none."""
    span = trace.get_current_span().get_span_context()
    return trace.format_trace_id(span.trace_id) if span.is_valid else ""


def log_transitions(events: Iterable[Event]) -> None:
    """One INFO line per event of a transaction that committed. Ids and states only: never
    the reason (free text that can quote customer data), params, outputs or tokens."""
    if not transitions.isEnabledFor(logging.INFO):
        return
    current = current_trace_id()
    for event in events:
        fields: dict[str, Any] = {
            "event": event.type.value,
            "tenant_id": event.tenant_id,
            "instance_id": event.instance_id,
            "revision": event.revision,
            "instance_state": event.instance_state.value,
            "action_id": event.action_id,
            "action_state": event.action_state.value if event.action_state else "",
            "tool": event.tool,
            "gate_id": event.gate_id,
            "actor": event.actor,
            # The trace the event belongs to (the agent's, stored with it), else this call's.
            "trace_id": event.trace_id or current,
        }
        transitions.info(
            "%s %s#%d",
            event.type.value,
            event.instance_id,
            event.revision,
            extra={key: value for key, value in fields.items() if value != ""},
        )


# -- writing lines -------------------------------------------------------------------------------

# The attributes every LogRecord has: any other is a field a line's `extra` added.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message",
    "asctime",
    "taskName",
}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: level, logger, message, the fields of `extra`, exc_info and
    stack_info when present, and time (ISO 8601, UTC). A value JSON cannot hold is its str()."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD:
                line[key] = value
        if record.exc_info:
            line["exc_info"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exc_info"] = record.exc_text
        if record.stack_info:
            line["stack_info"] = self.formatStack(record.stack_info)
        line["time"] = datetime.fromtimestamp(record.created, UTC).isoformat()
        return json.dumps(line, default=str)


class BackgroundHandler(logging.Handler):
    """Formats each record where it is logged (one json.dumps), and hands the line to a
    writer thread: a slow or blocked standard error never stalls the event loop. Lines
    beyond `capacity` waiting are dropped and counted, and the count is written with the
    next line that fits. close() (logging.shutdown, at exit) writes what is queued first."""

    def __init__(self, stream: TextIO | None = None, capacity: int = 100_000) -> None:
        super().__init__()
        self.stream = stream if stream is not None else sys.stderr
        # SimpleQueue: put is one C call, no Python-level condition to notify per line.
        self._lines: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self._capacity = capacity
        self._dropped = 0
        self._writer = threading.Thread(target=self._write, name="signoff-log-writer", daemon=True)
        self._writer.start()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
        except Exception:  # noqa: BLE001 - logging never raises
            self.handleError(record)
            return
        if self._lines.qsize() < self._capacity:
            self._lines.put(line)
        else:
            self._dropped += 1

    def _write(self) -> None:
        while True:
            line = self._lines.get()
            batch = []
            while line is not None:
                batch.append(line)
                if len(batch) >= 1000:
                    break
                try:
                    line = self._lines.get_nowait()
                except queue.Empty:
                    break
            if self._dropped:
                dropped, self._dropped = self._dropped, 0
                batch.append(
                    self.format(
                        logging.LogRecord(
                            "signoff.logs",
                            logging.WARNING,
                            __file__,
                            0,
                            "%d log lines dropped: standard error did not keep up",
                            (dropped,),
                            None,
                        )
                    )
                )
            if batch:
                try:
                    self.stream.write("\n".join(batch) + "\n")
                    self.stream.flush()
                except (OSError, ValueError):  # a closed or broken standard error
                    pass
            if line is None:
                return

    def flush(self) -> None:
        """Waits (briefly) until the lines logged so far are written."""
        deadline = 50
        while not self._lines.empty() and self._writer.is_alive() and deadline:
            time.sleep(0.01)
            deadline -= 1

    def close(self) -> None:
        if self._writer.is_alive():
            self._lines.put(None)
            self._writer.join(timeout=5)
        super().close()
