"""Stops against a guest that stops answering (issue 16, "timeouts tell the truth").

Real PowerShell cannot be made to hang on demand, so the hung guest is :class:`FakeGuest` with a
handler that holds its whole connection (``HandlerContext.stall``): no Signal acknowledgement, no
state, nothing. Whatever asks for the stop (``timeout=``, ``stop()``, Ctrl-C), the call must end
within the stop grace, say that the stop was not acknowledged and the session is broken, and keep
what arrived before.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from hvmagic import session as hvsession
from hvmagic.errors import PipelineTimeoutError, SessionBrokenError, StopNotAcknowledgedError
from hvmagic.testing import FakeGuest, HandlerContext

GRACE = 1.0


@pytest.fixture
def hung() -> Iterator[tuple[FakeGuest, threading.Event]]:
    release = threading.Event()
    guest = FakeGuest()

    @guest.handle("hang")
    def hang(ctx: HandlerContext) -> None:
        ctx.stall(release, timeout=30, first=["partial"])

    try:
        yield guest, release
    finally:
        release.set()
        guest.close()


@pytest.fixture(autouse=True)
def short_grace(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hvsession, "STOP_TIMEOUT", GRACE)


def _first_output(event: threading.Event) -> Any:
    return lambda stream, record: event.set() if stream == "output" else None


def test_timeout_against_a_hung_guest_is_bounded_and_tells_the_truth(
    hung: tuple[FakeGuest, threading.Event],
) -> None:
    guest, _ = hung
    session = guest.connect(name="hung")
    try:
        started = time.monotonic()
        with pytest.raises(StopNotAcknowledgedError) as info:
            session.run("hang", timeout=0.5)
        elapsed = time.monotonic() - started
        # before: 0.5 + the 30 s stop wait, and "the pipeline ... was stopped"
        assert elapsed < 0.5 + GRACE + 1.0
        message = str(info.value)
        assert message.startswith("the pipeline ran longer than 0.5 s; stop was not "
                                  "acknowledged; the session is broken")
        assert "was stopped" not in message
        assert isinstance(info.value, PipelineTimeoutError)
        assert isinstance(info.value, SessionBrokenError)
        assert info.value.result.output == ["partial"]
        assert info.value.result.state == "Failed"  # not "Stopped": nobody knows
        assert session.broken
        with pytest.raises(SessionBrokenError, match="connect again"):
            session.run("hang")
    finally:
        session.close()


def test_stop_from_another_thread_against_a_hung_guest_is_bounded(
    hung: tuple[FakeGuest, threading.Event],
) -> None:
    guest, _ = hung
    session = guest.connect(name="hung")
    first = threading.Event()
    stopped_at: list[float] = []

    def stop_when_output_arrived() -> None:
        if first.wait(10):
            stopped_at.append(time.monotonic())
            session.stop()

    threading.Thread(target=stop_when_output_arrived, daemon=True).start()
    try:
        # before: no bound at all — run() waited for the guest forever (no timeout given)
        with pytest.raises(StopNotAcknowledgedError, match="stop was not acknowledged") as info:
            session.run("hang", on_event=_first_output(first))
        assert time.monotonic() - stopped_at[0] < GRACE + 1.0
        assert info.value.result.output == ["partial"]
        assert session.broken
    finally:
        session.close()


def test_ctrl_c_against_a_hung_guest_is_bounded(hung: tuple[FakeGuest, threading.Event]) -> None:
    guest, _ = hung
    session = guest.connect(name="hung")
    first = threading.Event()
    interrupted_at: list[float] = []

    def interrupt_when_output_arrived() -> None:
        if first.wait(10):
            time.sleep(0.1)
            interrupted_at.append(time.monotonic())
            os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=interrupt_when_output_arrived, daemon=True).start()
    try:
        with pytest.raises(KeyboardInterrupt):
            session.run("hang", on_event=_first_output(first))
        assert time.monotonic() - interrupted_at[0] < GRACE + 1.0
        assert session.broken  # the interrupt is re-raised; the session says what it is
    finally:
        session.close()


def test_a_guest_that_acknowledges_the_stop_keeps_the_session(
    hung: tuple[FakeGuest, threading.Event],
) -> None:
    guest, _ = hung

    @guest.handle("slow")
    def slow(ctx: HandlerContext) -> None:
        ctx.output("partial")
        ctx.sleep(30)

    with guest.connect(name="fine") as session:
        with pytest.raises(PipelineTimeoutError, match="was stopped") as info:
            session.run("slow", timeout=0.3)
        assert not isinstance(info.value, StopNotAcknowledgedError)
        assert info.value.result.state == "Stopped"
        assert not session.broken
