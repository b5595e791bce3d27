"""Live stream records from Dask workers to the notebook, while a fleet runs, within bounds.

A target on a Dask worker produces its records there; the notebook's ``on_event``/
``on_progress`` want them as they come, not when the target's result arrives. They travel as
Dask *events*: the worker logs them (``Worker.log_event``) under the client's own topic (the
client's id: the scheduler truncates that topic when the client leaves), the scheduler forwards
them to the subscribed client (``Client.subscribe_topic``), and the fleet's wait loop hands
them to the callbacks on the notebook's thread.

Each record carries its index in its stream, so the live path and the final result never
disagree: the client delivers a target's records live only while they arrive without a gap, and
when the target's result arrives it delivers from there whatever the live path did not — every
record exactly once, in stream order, whether the live path carried all, some or none of it.

Bounds, so a chatty guest cannot exhaust anyone's memory (module constants, per run):

* the worker ships at most :data:`TARGET_BYTES` of pickled records live per target, in batches
  of at most :data:`BATCH_BYTES` sent every :data:`FLUSH_SECONDS`; past the budget, or for a
  single record larger than a batch, the target's live stream stops (the rest comes with its
  result, which the run keeps anyway);
* the scheduler keeps at most ``distributed.admin.low-level-log-length`` events per topic (1 000
  by default), so at most that many batches;
* the client queues at most :data:`CLIENT_BYTES` of received batches between two turns of the
  wait loop; a batch that does not fit is dropped, which is a gap: that target's records then
  come with its result.
"""

from __future__ import annotations

import pickle
import threading
from collections import deque
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from hvmagic.sessionlike import RESULT_LISTS

if TYPE_CHECKING:  # pragma: no cover
    from hvmagic.fleet_events import FleetReporter
    from hvmagic.fleet_results import Target, TargetResult

__all__ = ["BATCH_BYTES", "CLIENT_BYTES", "FLUSH_SECONDS", "TARGET_BYTES", "LiveChannel",
           "LiveRun", "subscribe"]

#: one event's records at most (pickled bytes)
BATCH_BYTES = 32 * 1024
#: what one target may ship live in one run
TARGET_BYTES = 4 * 1024 * 1024
#: received batches the client holds between two turns of its wait loop
CLIENT_BYTES = 32 * 1024 * 1024
#: a batch waits at most this long for more records before it is sent
FLUSH_SECONDS = 0.1

#: the key that marks an event as a fleet's (the client's topic carries Dask's own events too)
_MARK = "hvmagic-fleet"


# --------------------------------------------------------------------------------------------
# worker side


class LiveChannel:
    """One target's live records on a worker: ``record`` is its ``on_event``.

    ``send(message)`` logs one event (``Worker.log_event`` under the client's topic).
    ``output=False`` keeps output records off the live path (a lazy run leaves them on the
    worker)."""

    def __init__(self, send: Callable[[dict[str, Any]], None], run_id: str, label: str,
                 *, output: bool = True) -> None:
        self._send = send
        self._head = {_MARK: run_id, "target": label}
        self._output = output
        self._lock = threading.Lock()
        self._batch: list[tuple[str, int, bytes]] = []
        self._batch_bytes = 0
        self._sent = 0
        self._counts: dict[str, int] = {}
        self._stopped = False
        self._timer: threading.Timer | None = None

    def start(self) -> None:
        self._send({**self._head, "start": True})

    def record(self, stream: str, value: Any) -> None:
        index = self._counts.get(stream, 0)
        self._counts[stream] = index + 1
        if self._stopped or (stream == "output" and not self._output):
            return
        try:
            blob = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception:  # the result carries it (or says why it cannot)
            self._stop()
            return
        if len(blob) > BATCH_BYTES or self._sent + self._batch_bytes + len(blob) > TARGET_BYTES:
            self._stop()
            return
        with self._lock:
            if self._batch_bytes + len(blob) > BATCH_BYTES:
                self._flush_locked()
            self._batch.append((stream, index, blob))
            self._batch_bytes += len(blob)
            if self._timer is None:
                self._timer = threading.Timer(FLUSH_SECONDS, self.flush)
                self._timer.daemon = True
                self._timer.start()

    def flush(self) -> None:
        with self._lock:
            self._flush_locked()

    def _flush_locked(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._batch:
            return
        batch, self._batch = self._batch, []
        self._sent += self._batch_bytes
        self._batch_bytes = 0
        self._send({**self._head, "records": [list(item) for item in batch]})

    def _stop(self) -> None:
        self.flush()
        self._stopped = True

    def close(self) -> None:
        """The target's run ended: send what is pending."""
        self.flush()


# --------------------------------------------------------------------------------------------
# client side


class LiveRun:
    """One run's receiving end: :meth:`receive` is called on the client's event loop,
    :meth:`pump` on the caller's thread delivers to the reporter."""

    def __init__(self, run_id: str, reporter: FleetReporter, targets: Mapping[str, Target],
                 *, output: bool = True) -> None:
        self.run_id = run_id
        self._reporter = reporter
        self._targets = dict(targets)
        self._output = output
        self._lock = threading.Lock()
        self._queue: deque[dict[str, Any]] = deque()
        self._queued_bytes = 0
        self._delivered: dict[str, dict[str, int]] = {}
        self._gapped: set[str] = set()
        self._finished: set[str] = set()
        self._started: set[str] = set()
        #: batches dropped because the client's queue was full (diagnostics, tests)
        self.dropped = 0
        #: records delivered live (before their target's result arrived)
        self.live_records = 0

    def receive(self, message: dict[str, Any]) -> None:
        size = sum(len(item[2]) for item in message.get("records", ()))
        with self._lock:
            if self._queued_bytes + size > CLIENT_BYTES:
                self.dropped += 1
                self._gapped.add(message["target"])
                return
            self._queue.append(message)
            self._queued_bytes += size

    def pump(self) -> None:
        """Deliver what arrived: start reports, then records without a gap."""
        with self._lock:
            messages = list(self._queue)
            self._queue.clear()
            self._queued_bytes = 0
        for message in messages:
            label = message["target"]
            target = self._targets.get(label)
            if target is None or label in self._finished:
                continue
            if message.get("start"):
                self.started(target)
                continue
            self._deliver(label, target, message.get("records", ()))

    def _deliver(self, label: str, target: Target, records: Any) -> None:
        counts = self._delivered.setdefault(label, {})
        for stream, index, blob in records:
            if label in self._gapped:
                return
            expected = counts.get(stream, 0)
            if index < expected:
                continue  # already delivered
            if index > expected:
                self._gapped.add(label)  # a batch went missing: the rest comes with the result
                return
            counts[stream] = expected + 1
            self.live_records += 1
            self._reporter.event(target, stream, pickle.loads(blob))

    def started(self, target: Target) -> None:
        if target.label not in self._started:
            self._started.add(target.label)
            self._reporter.started(target)

    def finished(self, outcome: TargetResult) -> None:
        """The target's result arrived: deliver what the live path did not, then report it."""
        self.pump()
        label = outcome.target.label
        self.started(outcome.target)
        counts = self._delivered.get(label, {})
        self._finished.add(label)
        if self._reporter.wants_events:
            for stream, attribute in RESULT_LISTS.items():  # in the streams' order
                if stream == "output" and not self._output:
                    continue
                for record in getattr(outcome.result, attribute)[counts.get(stream, 0):]:
                    self._reporter.event(outcome.target, stream, record)
        self._reporter.finished(outcome)


_RUNS: dict[str, LiveRun] = {}
_RUNS_LOCK = threading.Lock()
_SUBSCRIBED: set[str] = set()


def _dispatch(event: tuple[float, Any]) -> None:
    """The client's handler for its topic: fleet batches go to their run, the rest is Dask's."""
    _timestamp, message = event
    if not isinstance(message, dict) or _MARK not in message:
        return
    with _RUNS_LOCK:
        run = _RUNS.get(message[_MARK])
    if run is not None:
        run.receive(message)


def subscribe(client: Any, run: LiveRun) -> str:
    """Route the client's fleet events to ``run``; returns the topic workers log them under."""
    topic = str(client.id)
    with _RUNS_LOCK:
        _RUNS[run.run_id] = run
        first = topic not in _SUBSCRIBED
        _SUBSCRIBED.add(topic)
    if first:
        client.subscribe_topic(topic, _dispatch)
    return topic


def unsubscribe(run: LiveRun) -> None:
    """The run ended: late batches for it are ignored."""
    with _RUNS_LOCK:
        _RUNS.pop(run.run_id, None)
