"""A fleet run's live reports: each target's stream records and the progress over targets.

:meth:`hvmagic.fleets.Fleet.run` takes two callbacks, both called while the run goes on:

* ``on_event(target, stream, record)`` — one stream record of one target (output, error,
  warning, verbose, debug, information, progress, host), in the order the target produced it;
* ``on_progress(progress)`` — a :class:`FleetProgress` snapshot each time a target starts or
  finishes: how many targets are done, how many of those failed, how many run now.

They come from the targets' threads (or, on Dask, the client's event pump) but are never entered
twice at once: one lock serializes both, so a callback need not be thread-safe and a snapshot
is never older than an event already delivered. A callback that raises is a bug in the caller;
its exception does not reach the target (whose output must survive) — the first one is kept
and re-raised by ``run`` once every target has finished.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from hvmagic.fleet_results import Target, TargetResult

__all__ = ["FleetProgress", "FleetReporter", "OnFleetEvent", "OnFleetProgress"]

OnFleetEvent = Callable[["Target", str, Any], None]


@dataclass(frozen=True)
class FleetProgress:
    """Where a fleet run stands: ``done`` of ``total`` targets finished (``failed`` of them not
    cleanly, as :attr:`TargetResult.ok` judges), ``running`` now. ``target``/``state`` name the
    change this snapshot reports (``"Running"`` when it started, else its final state); both
    are ``None`` for the first snapshot of a run."""

    total: int
    done: int
    failed: int
    running: int
    target: Target | None = None
    state: str | None = None

    @property
    def percent(self) -> int:
        """Targets done, in percent (100 for an empty fleet)."""
        return 100 if self.total == 0 else int(100 * self.done / self.total)

    def __str__(self) -> str:
        failed = f", {self.failed} failed" if self.failed else ""
        running = f", {self.running} running" if self.running else ""
        return f"{self.done} of {self.total} target(s) done{failed}{running}"


OnFleetProgress = Callable[[FleetProgress], None]


class FleetReporter:
    """Serializes one run's ``on_event``/``on_progress`` calls and keeps the counts.

    ``finished`` outcomes given at construction (targets that could not even be resolved)
    count as done from the first snapshot on.
    """

    def __init__(
        self,
        total: int,
        on_event: OnFleetEvent | None = None,
        on_progress: OnFleetProgress | None = None,
        finished: Iterable[TargetResult] = (),
    ) -> None:
        self.on_event = on_event
        self.on_progress = on_progress
        self.total = total
        self.done = 0
        self.failed = 0
        self.running = 0
        self._lock = threading.Lock()
        #: the first exception a callback raised (re-raised by the run at its end)
        self.error: BaseException | None = None
        for outcome in finished:
            self.done += 1
            self.failed += not outcome.ok

    @property
    def wants_events(self) -> bool:
        return self.on_event is not None

    def snapshot(self, target: Target | None = None, state: str | None = None
                 ) -> FleetProgress:
        return FleetProgress(self.total, self.done, self.failed, self.running, target, state)

    def _call(self, function: Callable[..., None], *args: Any) -> None:
        try:
            function(*args)
        except Exception as exc:  # never into the target's run: see the module docstring
            if self.error is None:
                self.error = exc

    def begin(self) -> None:
        """The run starts: the first snapshot."""
        if self.on_progress is not None:
            with self._lock:
                self._call(self.on_progress, self.snapshot())

    def event(self, target: Target, stream: str, record: Any) -> None:
        if self.on_event is not None:
            with self._lock:
                self._call(self.on_event, target, stream, record)

    def events_for(self, target: Target) -> Callable[[str, Any], None] | None:
        """``Session.run``'s ``on_event`` for ``target`` (``None`` when nobody listens)."""
        if self.on_event is None:
            return None

        def forward(stream: str, record: Any) -> None:
            self.event(target, stream, record)

        return forward

    def started(self, target: Target) -> None:
        with self._lock:
            self.running += 1
            if self.on_progress is not None:
                self._call(self.on_progress, self.snapshot(target, "Running"))

    def finished(self, outcome: TargetResult, *, was_running: bool = True) -> None:
        with self._lock:
            if was_running:
                self.running = max(0, self.running - 1)
            self.done += 1
            self.failed += not outcome.ok
            if self.on_progress is not None:
                self._call(self.on_progress, self.snapshot(outcome.target, outcome.state))

    def raise_callback_error(self) -> None:
        """Re-raise the first exception a callback raised, if any (after the run)."""
        if self.error is not None:
            error, self.error = self.error, None
            raise error
