"""Live records from targets on Dask workers: they reach ``on_event``/``on_progress`` while the
targets run, bounded so that a chatty guest cannot exhaust memory, and every record is delivered
exactly once, in order, whatever the live path carried."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

import hvmagic
from hvmagic import fleet_dask_events as live_events
from hvmagic.fleet_events import FleetProgress, FleetReporter
from hvmagic.fleets import Target, TargetResult
from hvmagic.session import Result
from hvmagic.testing import FakeGuest
from hvmagic.testing.guest import HandlerContext
from tests.test_fleet import DASK_GUESTS, SCRIPT, dask_cluster  # noqa: F401 (a fixture)


def test_records_reach_the_notebook_while_the_target_still_runs_on_its_worker(
    dask_cluster: tuple[Any, Any],  # noqa: F811
) -> None:
    client, _cluster = dask_cluster
    seen_first = threading.Event()

    def waits_for_the_notebook(ctx: HandlerContext) -> None:
        ctx.output({"I": 0})
        ctx.warning("half way")
        # only a live record can release this guest: its result has not been sent yet
        ctx.guest.state["live"] = seen_first.wait(15)
        ctx.output({"I": 1})

    guest = FakeGuest()
    guest.add_handler(SCRIPT, waits_for_the_notebook)
    DASK_GUESTS["web1"] = guest
    events: list[tuple[str, str, Any]] = []
    progress: list[FleetProgress] = []

    def on_event(target: Target, stream: str, record: Any) -> None:
        events.append((target.label, stream, record))
        if stream == "warning":
            seen_first.set()

    fl = hvmagic.fleet([Target("web1", "hv01")], cluster=client)
    started = time.monotonic()
    result = fl.run(SCRIPT, on_event=on_event, on_progress=progress.append)
    assert time.monotonic() - started < 12, result.status.to_string()
    assert guest.state["live"] is True
    assert result.ok, result.status.to_string()
    assert [(s, getattr(r, "message", r)) for _l, s, r in events] == [
        ("output", {"I": 0}), ("warning", "half way"), ("output", {"I": 1})]
    assert {label for label, _s, _r in events} == {"hv01/web1"}
    states = [p.state for p in progress]
    assert states == [None, "Running", "Completed"]
    assert (progress[1].running, progress[-1].done) == (1, 1)


def test_a_chatty_guest_is_bounded_on_the_live_path_and_nothing_is_lost(
    dask_cluster: tuple[Any, Any], monkeypatch: pytest.MonkeyPatch,  # noqa: F811
) -> None:
    client, _cluster = dask_cluster
    monkeypatch.setattr(live_events, "TARGET_BYTES", 64 * 1024)
    monkeypatch.setattr(live_events, "BATCH_BYTES", 8 * 1024)
    finished_writing = threading.Event()

    def chatty(ctx: HandlerContext) -> None:
        for i in range(3000):
            ctx.warning(f"line {i:05d} " + "x" * 200)
        finished_writing.set()
        ctx.sleep(1.0)  # the live batches arrive while the target still runs
        ctx.output("end")

    guest = FakeGuest()
    guest.add_handler(SCRIPT, chatty)
    DASK_GUESTS["db1"] = guest
    arrived: list[str] = []
    before_end = [0]

    def on_event(target: Target, stream: str, record: Any) -> None:
        if stream == "warning":
            arrived.append(record.message[:10])
            if not finished_writing.is_set() or len(arrived) == 1:
                before_end[0] += 1

    fl = hvmagic.fleet([Target("db1", "hv02")], cluster=client)
    result = fl.run(SCRIPT, on_event=on_event)
    assert result.ok
    assert arrived == [f"line {i:05d}" for i in range(3000)]  # all, once, in order
    # what crossed live stayed within the target's budget (the scheduler keeps those events)
    shipped = [
        sum(len(item[2]) for item in message.get("records", ()))
        for _ts, message in client.get_events(client.id)
        if isinstance(message, dict) and message.get("target") == "hv02/db1"
    ]
    assert 0 < sum(shipped) <= 64 * 1024
    assert max(shipped) <= 8 * 1024
    assert before_end[0] > 0  # some arrived live


def test_the_client_delivers_each_record_once_across_gaps_drops_and_late_batches(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(live_events, "BATCH_BYTES", 40)
    delivered: list[tuple[str, Any]] = []
    reporter = FleetReporter(1, lambda t, s, r: delivered.append((s, r)))
    target = Target("vm1")
    run = live_events.LiveRun("run", reporter, {"vm1": target})
    sent: list[dict[str, Any]] = []
    channel = live_events.LiveChannel(sent.append, "run", "vm1")
    channel.start()
    records = [("output", i) for i in range(40)] + [("warning", "w")]
    for stream, value in records:
        channel.record(stream, value)
    channel.close()
    assert sent[0]["start"] is True and len(sent) > 3  # several bounded batches
    run.receive(sent[0])
    run.receive(sent[1])
    run.pump()
    live_count = len(delivered)
    assert 0 < live_count < 40
    # a batch lost (dropped by a full client queue) is a gap: later batches wait for the result
    monkeypatch.setattr(live_events, "CLIENT_BYTES", 0)
    run.receive(sent[2])
    assert run.dropped == 1
    monkeypatch.setattr(live_events, "CLIENT_BYTES", 1 << 20)
    for message in sent[3:]:
        run.receive(message)
    result = Result(output=list(range(40)), state="Completed")
    result.warnings.append("w")
    run.finished(TargetResult(target, "Completed", result))
    run.receive(sent[1])  # a late duplicate after the result: ignored
    run.pump()
    assert delivered == records
    assert reporter.done == 1
