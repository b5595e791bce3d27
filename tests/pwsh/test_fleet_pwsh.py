"""Fleets of real PowerShell processes (``pwsh -s``), judged by PowerShell.

Each target is its own ``pwsh`` with its own runspace: a terminating error, a pipeline that runs
past its timeout and an interrupt happen in real PowerShell, and the other targets' output must
survive them. Dask placement is exercised with real PowerShell targets too.
"""

from __future__ import annotations

import _thread
import threading
from collections.abc import Iterator
from typing import Any

import pytest

import hvmagic
from hvmagic.fleets import FleetInterrupted, Target
from tests.pwsh.conftest import AskPwsh, find_pwsh

NAMES = ("p1", "p2", "p3")
SCRIPT = """\
if ($slow) { "before $Tag"; Start-Sleep -Seconds 30 }
if ($bad) { throw "bad target $Tag" }
1..3 | ForEach-Object { [pscustomobject]@{ N = $_; ProcessId = $PID; Tag = $Tag } }
"""
RESET = "Remove-Variable -Name slow, bad -ErrorAction Ignore"


#: open pwsh sessions a connect may take over instead of starting another pwsh (each start
#: costs seconds on a loaded machine); in-process Dask workers see it too
HANDOVER: dict[str, Any] = {}


def pwsh_connect(target: Target, **kwargs: Any) -> Any:
    """Connect seam: each target is its own local pwsh (module-level: Dask pickles it by name)."""
    handed = HANDOVER.pop(target.name, None)
    if handed is not None:
        return handed
    return hvmagic.connect(target.name, via="process", executable=find_pwsh(), timeout=60)


@pytest.fixture(scope="module")
def pwsh_sessions(pwsh: str) -> Iterator[dict[str, Any]]:
    sessions: dict[str, Any] = {}
    try:
        for name in NAMES:
            sessions[name] = pwsh_connect(Target(name))
        yield sessions
    finally:
        for session in sessions.values():
            session.close()


def test_failure_and_timeout_in_real_powershell_keep_the_other_targets_output(
    pwsh_sessions: dict[str, Any], ask_pwsh: AskPwsh
) -> None:
    for session in pwsh_sessions.values():
        session.run(RESET)
    pwsh_sessions["p2"].run("$slow = $true")
    pwsh_sessions["p3"].run("$bad = $true")
    fl = hvmagic.fleet(list(NAMES), sessions=pwsh_sessions, connect=pwsh_connect, timeout=2.5)
    result = fl.run(SCRIPT, parameters={"Tag": "patch-night"})
    status = result.status.set_index("VMName")
    assert status["State"].to_dict() == {"p1": "Completed", "p2": "TimedOut", "p3": "Failed"}
    # the message we report is PowerShell's own for the same throw
    expected = ask_pwsh('try { throw "bad target patch-night" } catch { $_.Exception.Message }')
    assert status.loc["p3", "Error"] == expected.strip()
    assert result["p2"].result.output == ["before patch-night"]  # arrived before the timeout
    frame = result.frame()
    p1_rows = frame[frame.VMName == "p1"]
    assert list(p1_rows["N"]) == [1, 2, 3]
    assert set(p1_rows["Tag"]) == {"patch-night"}
    p1_pid = pwsh_sessions["p1"].run("$PID").output[0]
    assert set(p1_rows["ProcessId"]) == {p1_pid}
    # real PowerShell acknowledged the stop: p2 is still the same, usable process
    p2_pid = pwsh_sessions["p2"].run("$PID").output[0]
    again = fl.run(f"{RESET}; $PID")
    assert again.ok
    assert again["p2"].result.output == [p2_pid]
    fl.close()
    assert not pwsh_sessions["p1"].closed  # adopted sessions are not the fleet's to close


class _Sink:
    def __init__(self) -> None:
        self.shown: list[str] = []

    def show(self, bundle: dict[str, str]) -> None:
        self.shown.append(bundle["text/plain"])

    def clear(self) -> None:
        self.shown.append("")


def test_real_write_progress_shows_under_the_bar_over_targets_labelled_per_target(
    pwsh_sessions: dict[str, Any],
) -> None:
    from hvmagic.fleet_display import FleetLiveDisplay

    for session in pwsh_sessions.values():
        session.run(RESET)
    sink = _Sink()
    live = FleetLiveDisplay(progress_sink=sink, publish_bundle=lambda bundle: None)
    script = """\
Write-Progress -Activity "Patching $Tag" -Status 'KB5034441' -PercentComplete 40
Start-Sleep -Milliseconds 700
Write-Progress -Activity "Patching $Tag" -Completed
'patched'
"""
    fl = hvmagic.fleet(list(NAMES), sessions=pwsh_sessions, connect=pwsh_connect)
    result = fl.run(script, {"Tag": "now"}, on_event=live.on_event, on_progress=live.on_progress)
    live.finish()
    assert result.ok, result.status.to_string()
    # the record as PowerShell sent it is what each target's labelled line shows
    record = result["p1"].result.progress[0]
    assert (record.activity, record.status_description, record.percent_complete) == (
        "Patching now", "KB5034441", 40)
    together = [text for text in sink.shown
                if all(f"[{name}] Patching now: KB5034441" in text for name in NAMES)]
    assert together, sink.shown
    assert together[0].splitlines()[0].startswith("Fleet: 0 of 3 target(s) done, 3 running")
    assert sink.shown[-1] == ""  # the display leaves when the run ends


def test_interrupt_stops_every_real_pipeline(pwsh_sessions: dict[str, Any]) -> None:
    for session in pwsh_sessions.values():
        session.run(f"{RESET}; $slow = $true")
    fl = hvmagic.fleet(list(NAMES), sessions=pwsh_sessions, connect=pwsh_connect)
    arrived: list[str] = []

    def interrupt_once_all_run(target: Target, stream: str, record: Any) -> None:
        arrived.append(target.name)
        if len(arrived) == len(NAMES):  # every pwsh is inside Start-Sleep now
            threading.Timer(0.3, _thread.interrupt_main).start()

    with pytest.raises(FleetInterrupted) as raised:
        fl.run(SCRIPT, parameters={"Tag": "x"}, on_event=interrupt_once_all_run)
    stopped_in = max(t.duration for t in raised.value.result)
    assert stopped_in < 10  # not the 30 s of Start-Sleep
    assert {t.name: t.state for t in raised.value.result} == dict.fromkeys(NAMES, "Stopped")
    assert all(t.result.output == ["before x"] for t in raised.value.result)
    after = fl.run(f"{RESET}; 'alive'")
    assert {t.name: t.result.output for t in after} == {name: ["alive"] for name in NAMES}


def test_dask_workers_each_run_their_hosts_real_powershell_targets(
    pwsh_sessions: dict[str, Any],
) -> None:
    # last in the module: the workers take the module's pwsh sessions over and close them
    distributed = pytest.importorskip("distributed")
    for name, session in zip(("a", "b", "c"), pwsh_sessions.values(), strict=True):
        HANDOVER[name] = session
    from hvmagic.fleet_dask import HyperVHostPlugin

    spec = {
        f"w-{host}": {"cls": distributed.Worker,
                      "options": {"nthreads": 2, "resources": {f"hyperv:{host}": 1}}}
        for host in ("hv01", "hv02")
    }
    cluster = distributed.SpecCluster(
        workers=spec, scheduler={"cls": distributed.Scheduler, "options": {"dashboard": False}}
    )
    client = distributed.Client(cluster)
    try:
        client.register_plugin(HyperVHostPlugin(connect=pwsh_connect))
        targets = [Target("a", "hv01"), Target("b", "hv02"), Target("c", "hv02")]
        with hvmagic.fleet(targets, cluster=client) as fl:
            first = fl.run("$PID; $env:HVMAGIC_FLEET_PROBE")
            second = fl.run("$PID")
        assert first.ok, first.status.to_string()
        pids = {t.name: t.result.output[0] for t in first}
        assert len(set(pids.values())) == 3  # one pwsh per target
        # the sessions stayed open on their workers: the same processes answered again
        assert {t.name: t.result.output[0] for t in second} == pids
        frame = second.frame()
        assert list(frame["VMName"]) == ["a", "b", "c"]
        assert list(frame["HostName"]) == ["hv01", "hv02", "hv02"]
    finally:
        HANDOVER.clear()
        client.close()
        cluster.close()  # the plugin's teardown closes the sessions cached on each worker
