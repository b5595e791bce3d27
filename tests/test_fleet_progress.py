"""Progress over a fleet: one bar over the targets (done of total, failures counted) plus each
target's own Write-Progress activities, labelled with the target — in the API (``on_progress``)
and in a ``%%vmps`` fleet cell. Real PowerShell's Write-Progress through a fleet is in
tests/pwsh/test_fleet_pwsh.py."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

import hvmagic
from hvmagic import display as hvdisplay
from hvmagic.fleet_display import MAX_TARGETS, FleetLiveDisplay, FleetProgressView
from hvmagic.fleet_events import FleetProgress
from hvmagic.fleets import Target
from hvmagic.testing import FakeGuest
from hvmagic.testing.guest import HandlerContext

SCRIPT = "Get-Patch"


class Sink:
    """Records what a display would show (one updatable display)."""

    def __init__(self) -> None:
        self.shown: list[dict[str, str]] = []
        self.cleared = 0

    def show(self, bundle: dict[str, str]) -> None:
        self.shown.append(dict(bundle))

    def clear(self) -> None:
        self.cleared += 1


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def guests() -> Iterator[dict[str, FakeGuest]]:
    made: dict[str, FakeGuest] = {}
    try:
        yield made
    finally:
        for guest in made.values():
            guest.close()


def _guest(made: dict[str, FakeGuest], name: str, handler: Any) -> None:
    guest = FakeGuest()
    guest.add_handler(SCRIPT, handler)
    made[name] = guest


def test_on_progress_counts_targets_done_and_failed_as_they_finish(
    guests: dict[str, FakeGuest],
) -> None:
    gate = threading.Event()

    def patched(ctx: HandlerContext) -> list[int]:
        gate.wait(10)
        return [1]

    def failing(ctx: HandlerContext) -> None:
        ctx.fail("no disk")

    for name in ("web1", "web2"):
        _guest(guests, name, patched)
    _guest(guests, "db1", failing)

    def connect(target: Target, **kwargs: Any) -> Any:
        if target.name == "gone":
            raise ConnectionRefusedError("gone is rebooting")
        return guests[target.name].connect(name=target.name)

    snapshots: list[FleetProgress] = []
    inside = [0]

    def on_progress(progress: FleetProgress) -> None:
        inside[0] += 1
        assert inside[0] == 1, "on_progress entered twice at once"
        snapshots.append(progress)
        if progress.failed == 2:
            gate.set()  # the slow targets finish after both failures were counted
        inside[0] -= 1

    with hvmagic.fleet(["web1", "web2", "db1", "gone"], connect=connect) as fl:
        result = fl.run(SCRIPT, on_progress=on_progress)
    assert snapshots[0] == FleetProgress(total=4, done=0, failed=0, running=0)
    assert str(snapshots[0]) == "0 of 4 target(s) done"
    final = snapshots[-1]
    assert (final.total, final.done, final.failed, final.running) == (4, 4, 2, 0)
    assert str(final) == "4 of 4 target(s) done, 2 failed"
    started = [p.target.name for p in snapshots if p.state == "Running" and p.target]
    assert sorted(started) == ["db1", "gone", "web1", "web2"]
    ended = {p.target.name: p.state for p in snapshots if p.state not in (None, "Running")
             and p.target}
    assert ended == {t.name: t.state for t in result}
    assert ended["gone"] == "Unreachable" and ended["db1"] == "Failed"
    done = [p.done for p in snapshots]
    assert done == sorted(done)  # never goes back
    # both failures were counted while the two slow targets still ran
    when_failed = next(p for p in snapshots if p.failed == 2)
    assert when_failed.done == 2 and when_failed.running == 2 and when_failed.percent == 50


def test_a_failing_progress_callback_does_not_cost_any_target_its_output(
    guests: dict[str, FakeGuest],
) -> None:
    _guest(guests, "a", lambda ctx: [1, 2])

    def broken(progress: FleetProgress) -> None:
        raise ValueError("callback bug")

    fl = hvmagic.fleet(["a"], connect=lambda t, **k: guests[t.name].connect(name=t.name))
    with pytest.raises(ValueError, match="callback bug"):
        fl.run(SCRIPT, on_progress=broken)
    assert fl.run(SCRIPT)["a"].result.output == [1, 2]
    fl.close()


def _progress_record(activity: str, percent: int, activity_id: int = 1) -> Any:
    from hvmagic.clixml.values import ProgressRecord

    return ProgressRecord(activity=activity, activity_id=activity_id,
                          status_description="working", percent_complete=percent)


def test_one_display_holds_the_bar_over_targets_and_each_targets_labelled_activities() -> None:
    sink, clock = Sink(), Clock()
    view = FleetProgressView("bar", sink, clock=clock)
    live = FleetLiveDisplay(progress_sink=sink, publish_bundle=lambda b: None)
    live.progress = view
    web1, web2 = Target("web1", "hv01"), Target("web2")
    live.on_progress(FleetProgress(3, 0, 0, 0))
    live.on_progress(FleetProgress(3, 0, 0, 1, web1, "Running"))
    clock.now += 1
    live.on_event(web1, "progress", _progress_record("Installing KB5034441", 40))
    clock.now += 1
    live.on_event(web2, "progress", _progress_record("Scanning", 10))
    clock.now += 1
    live.on_progress(FleetProgress(3, 1, 1, 1, Target("db1"), "Failed"))
    text = sink.shown[-1]["text/plain"].splitlines()
    assert text[0].startswith("Fleet: 1 of 3 target(s) done, 1 failed, 1 running [")
    assert text[0].endswith("33%")
    assert text[1].startswith("[hv01/web1] Installing KB5034441: working [")
    assert text[2].startswith("[web2] Scanning: working [")
    markup = sink.shown[-1]["text/html"]
    assert markup.count('class="hvmagic-fleet-target"') == 2
    assert '<progress value="1" max="3">' in markup and "1 failed" in markup
    # web1 finished: its activities leave the one display, the bar stays
    clock.now += 1
    live.on_progress(FleetProgress(3, 2, 1, 0, web1, "Completed"))
    assert view.target_labels == ["web2"]
    assert "[hv01/web1]" not in sink.shown[-1]["text/plain"]
    live.finish()
    assert sink.cleared == 1 and view.target_labels == []


def test_the_fleet_display_is_bounded_and_throttled() -> None:
    sink, clock = Sink(), Clock()
    view = FleetProgressView("text", sink, clock=clock, min_interval=0.5)
    for i in range(MAX_TARGETS + 5):
        view.target_sink(f"vm{i}").show({"text/plain": f"Act{i}: x", "text/html": ""})
        clock.now += 1
    text = sink.shown[-1]["text/plain"].splitlines()
    assert len(text) == 1 + MAX_TARGETS + 1
    assert text[-1] == "… and 5 more target(s) with progress"
    assert sink.shown[-1]["text/html"].startswith('<pre class="hvmagic-progress">')
    # a flood within one interval is shown at most FORCED_UPDATES times
    before = len(sink.shown)
    for done in range(1, 200):
        view.update(FleetProgress(200, done, 0, 1))
    assert len(sink.shown) - before == hvdisplay.FORCED_UPDATES + 1
    quiet = FleetProgressView("none", sink)
    quiet.update(FleetProgress(1, 0, 0, 0))
    assert quiet.updates == 0


def test_vmps_fleet_cell_shows_one_progress_display_over_the_targets(
    guests: dict[str, FakeGuest], monkeypatch: pytest.MonkeyPatch,
) -> None:
    from IPython.core.interactiveshell import InteractiveShell
    from IPython.utils.capture import capture_output

    def patching(ctx: HandlerContext) -> list[str]:
        ctx.progress("Installing updates", "step 1", 50)
        ctx.sleep(0.3)
        ctx.progress("Installing updates", completed=True)
        return ["patched"]

    for name in ("web1", "web2"):
        _guest(guests, name, patching)
    monkeypatch.setattr(hvdisplay, "in_kernel", lambda: True)  # updatable displays
    shell = InteractiveShell.instance()
    shell.extension_manager.load_extension("hvmagic")
    try:
        for name in ("web1", "web2"):
            shell.user_ns[f"s_{name}"] = guests[name].connect(name=name)
            with capture_output():
                shell.run_line_magic("vmconnect", f"{name} --session s_{name}")
        with capture_output() as captured:
            shell.run_cell_magic("vmps", "web1,web2", SCRIPT)
    finally:
        shell.run_line_magic("vmclose", "--all")
        shell.extension_manager.unload_extension("hvmagic")
        shell.user_ns.pop("_vmps_result", None)
    progress = [o for o in captured.outputs
                if "hvmagic-progress" in o.data.get("text/html", "")
                or (o.update and o.data.get("text/plain") == "")]
    ids = {o.transient.get("display_id") for o in progress if o.transient}
    assert len(ids) == 1, "one progress display for the whole fleet"
    texts = [o.data["text/plain"] for o in progress if o.data.get("text/plain")]
    assert texts[0].startswith("Fleet: 0 of 2 target(s) done")
    both = [t for t in texts if "[web1] Installing updates: step 1" in t
            and "[web2] Installing updates: step 1" in t]
    assert both, texts
    assert both[0].splitlines()[0].startswith("Fleet: 0 of 2 target(s) done, 2 running")
    assert progress[-1].update and progress[-1].data["text/plain"] == ""  # removed at the end
