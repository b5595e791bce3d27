"""The runbooks and the quick start on a machine without PowerShell (issue 13, point 3).

Runbooks 01, 03 and 04 replay the recordings made through the demo guest that ship in the
package (``hvmagic/demo/recordings``), executed as a user would (a real kernel) with no
PowerShell reachable: ``$HVMAGIC_PWSH`` unset and every PATH entry holding one dropped. Each
shows what it shows live (the same checks run live in ``tests/pwsh/test_demo_runbooks.py``).
How a recording is compared with a regenerated one is checked here on the shipped recordings.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import hvmagic
from hvmagic.demo import RECORDINGS
from hvmagic.demo.record import REFRESH, RUNBOOKS, drift, relative_datetime, rounded_duration
from hvmagic.errors import UnsupportedPlatformError
from hvmagic.nbrun import kernel_env
from tests._runbooks import (
    BUNDLE,
    FLEET,
    REPO,
    TRIAGE,
    check_bundle,
    check_fleet,
    check_triage,
    executed,
    outputs_of,
    replay,
    text_of,
    without_powershell,
)

kernel = pytest.mark.kernel


def test_every_replayable_runbook_has_its_recording_shipped() -> None:
    assert RUNBOOKS == (TRIAGE, BUNDLE, FLEET)
    shipped = {stem: sorted(p.name for p in (RECORDINGS / stem).glob("*.hvrec.json"))
               for stem in RUNBOOKS}
    assert shipped == {TRIAGE: ["sim.hvrec.json"], BUNDLE: ["sim.hvrec.json"],
                       FLEET: ["db01.hvrec.json", "web01.hvrec.json", "web02.hvrec.json"]}
    package_data = (REPO / "pyproject.toml").read_text(encoding="utf-8")
    assert '"demo/recordings/*/*.hvrec.json"' in package_data


@kernel
def test_triage_replays_services_chart_and_verdict(tmp_path: Path) -> None:
    nb = executed(replay(TRIAGE, tmp_path))
    connected = text_of(outputs_of(nb, "%load_ext hvmagic"))
    assert "replay of sim.hvrec.json (demo guest 'sim' (simulated data" in connected
    check_triage(nb)


@kernel
def test_bundle_replays_and_writes_the_same_files(tmp_path: Path) -> None:
    nb = executed(replay(BUNDLE, tmp_path))
    check_bundle(nb, tmp_path)


@kernel
def test_fleet_replays_one_recording_per_guest_and_its_verdict(tmp_path: Path) -> None:
    nb = executed(replay(FLEET, tmp_path))
    connected = text_of(outputs_of(nb, "%load_ext hvmagic"))
    for guest in ("web01", "web02", "db01"):
        assert f"replay of {guest}.hvrec.json" in connected
    check_fleet(nb)


# -- the quick start: hvmagic demo ------------------------------------------------------------
def run_demo(tmp_path: Path, *options: str) -> subprocess.CompletedProcess[str]:
    env = kernel_env(without_powershell())
    return subprocess.run(
        [sys.executable, "-m", "hvmagic", "demo", "--output", str(tmp_path / "out"), *options],
        capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path, check=False,
    )


@kernel
def test_hvmagic_demo_replays_without_powershell_and_says_so(tmp_path: Path) -> None:
    done = run_demo(tmp_path)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == (
        f"Replay (no PowerShell found): the recording of this runbook made through the demo "
        f"guest, shipped in {RECORDINGS / TRIAGE}; to run it live, install PowerShell 7 "
        "(https://aka.ms/powershell) or set $HVMAGIC_PWSH."
    )
    assert lines[1].startswith(f"Executed {TRIAGE}.ipynb: 8 code cells, 3 tables, ")
    assert lines[1].endswith(", ok")
    assert "without encryption" not in done.stderr  # no alarming kernel warning in a quick start
    page = (tmp_path / "out" / f"{TRIAGE}.html").read_text(encoding="utf-8")
    assert "Guest services triage" in page and "data:image/png;base64" in page
    assert page.count("hvmagic-frame") >= 3 and "<td>vmicheartbeat</td>" in page  # the table
    assert "all running" in page and "12 from 9 sources" in page  # the verdict
    assert "replay of sim.hvrec.json" in page


def test_hvmagic_demo_live_without_powershell_says_what_to_install(tmp_path: Path) -> None:
    done = run_demo(tmp_path, "--live")
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.startswith("hvmagic demo: --live: the demo guest runs in a local PowerShell")
    assert "Install PowerShell 7 (https://aka.ms/powershell" in done.stderr
    assert not (tmp_path / "out").exists()


def test_connect_sim_without_powershell_names_the_install_and_the_replay(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for key, value in without_powershell().items():
        if value is None:
            monkeypatch.delenv(key, raising=False)
        else:
            monkeypatch.setenv(key, value)
    monkeypatch.delenv("HVMAGIC_REPLAY", raising=False)
    monkeypatch.delenv("HVMAGIC_RECORD", raising=False)
    with pytest.raises(UnsupportedPlatformError) as caught:
        hvmagic.connect("sim")
    message = str(caught.value)
    assert "none was found (nothing on PATH, $HVMAGIC_PWSH unset)" in message
    assert "Install PowerShell 7 (https://aka.ms/powershell" in message
    assert "'hvmagic demo' replays the triage runbook" in message
    hint = re.search(r"HVMAGIC_REPLAY=(\S+)\)\.$", message)
    assert hint is not None, message
    # the folder it names replays the runbook's session, with no PowerShell
    monkeypatch.setenv("HVMAGIC_REPLAY", hint.group(1))
    session = hvmagic.connect("sim")
    try:
        result = session.run(
            "Get-Service | Where-Object { $_.Name -like 'vm*' } | Sort-Object Name"
        )
    finally:
        session.close()
    assert [str(s["Name"]) for s in result.output][:2] == ["vmicguestinterface", "vmicheartbeat"]
    assert len(result.output) == 8


# -- comparing a regenerated recording with the shipped one -----------------------------------
_DT = re.compile(r'(<DT(?: N=\\"[^"\\]*\\")?>)(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)([^<]*)(</DT>)')
_RECORDED_AT = re.compile(r'"recorded_at": "([^"]+)"')


def _made_later(text: str, by: dt.timedelta) -> str:
    """The recording as the demo guest would answer ``by`` later: its start and every time
    moved by ``by``, every date (midnight) by the days the recording's day moved, new timings."""
    match = _RECORDED_AT.search(text)
    assert match is not None
    started = dt.datetime.fromisoformat(match.group(1))
    days = dt.timedelta(days=((started + by).date() - started.date()).days)

    def moved(found: re.Match[str]) -> str:
        value = dt.datetime.strptime(found.group(2), "%Y-%m-%dT%H:%M:%S")
        midnight = value.time() == dt.time(0) and found.group(3).lstrip(".").startswith("0000000")
        value += days if midnight else by
        return f"{found.group(1)}{value:%Y-%m-%dT%H:%M:%S}{found.group(3)}{found.group(4)}"

    text = _DT.sub(moved, text)
    text = _RECORDED_AT.sub(f'"recorded_at": "{(started + by).isoformat()}"', text)
    text = re.sub(r'"t": [0-9.]+', '"t": 9.5', text)
    return re.sub(r'"duration": [0-9.]+', '"duration": 1.25', text)


def test_clock_values_are_compared_relative_to_the_recording() -> None:
    start = dt.datetime(2026, 12, 2, 3, 0, 0, tzinfo=dt.timezone.utc)
    # an event 42 minutes before, written with the guest's offset
    assert relative_datetime("2026-12-01T21:18:00.5000000-05:00", start) == (
        "<time: recording -0d 00:42>")
    # a date is a day of the guest's calendar: 2 Dec 03:00 UTC is still 1 Dec at UTC-5
    assert relative_datetime("2026-11-13T00:00:00.0000000-05:00", start) == (
        "<date: recording's day -18 d>")
    assert relative_datetime("2026-11-13T00:00:00.0000000Z", start) == (
        "<date: recording's day -19 d>")
    # a file written or a boot while the notebook ran, however slowly
    assert relative_datetime("2026-12-02T03:25:41.0000001Z", start) == (
        "<time: during the recording>")
    assert relative_datetime("2025-09-27T03:00:14.4076326Z", start) == (
        "<time: recording -431d 00:00>")
    assert rounded_duration("PT0.1684233S") == "<duration under an hour>"
    assert rounded_duration("P1D") == "<duration +1d 00:00>"
    assert rounded_duration("-PT5M") == "<duration -0d 00:05>"
    assert relative_datetime("not a date", start) == "not a date"


def _copy(tmp_path: Path) -> Path:
    fresh = tmp_path / "fresh"
    for stem in RUNBOOKS:
        shutil.copytree(RECORDINGS / stem, fresh / stem)
    return fresh


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, old
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def test_a_recording_made_later_elsewhere_is_no_drift(tmp_path: Path) -> None:
    fresh = _copy(tmp_path)
    bundle = fresh / BUNDLE / "sim.hvrec.json"
    original = bundle.read_text(encoding="utf-8")
    folder = re.search(r"hvmagic-demo-[a-z0-9_]{8}", original)
    assert folder is not None  # the demo machine's folder shows in the file copies
    for path in fresh.rglob("*.hvrec.json"):
        later = _made_later(path.read_text(encoding="utf-8"),
                            dt.timedelta(days=40, hours=7, seconds=13))
        path.write_text(later.replace(folder.group(0), "hvmagic-demo-q1w2e3r4"), encoding="utf-8")
    assert bundle.read_text(encoding="utf-8") != original
    assert drift(RECORDINGS, fresh) == ""


def _assert_drift_shown(tmp_path: Path, stem: str, path: Path, shown: str) -> None:
    report = drift(RECORDINGS, tmp_path / "fresh")
    assert report.startswith("The demo guest's runbook recordings drifted from those shipped")
    assert f"--- shipped {stem}/{path.name}" in report
    assert any(line.startswith("+") and shown in line for line in report.splitlines()), report
    assert report.rstrip().splitlines()[-2].endswith(REFRESH)


@pytest.mark.parametrize(
    ("stem", "old", "new", "shown"),
    [
        # a value
        (TRIAGE, "Hyper-V Heartbeat Service", "Hyper-V Heartbeat", '= "Hyper-V Heartbeat"'),
        # a type name
        (TRIAGE, "<T>System.ServiceProcess.ServiceController</T>",
         "<T>System.ServiceProcess.ServiceControllerX</T>", "ServiceControllerX"),
        # a property name
        (BUNDLE, 'N=\\"HotFixID\\"', 'N=\\"HotfixId\\"', "S HotfixId"),
        # a CLIXML type
        (BUNDLE, '<I32 N=\\"CsNumberOfProcessors\\">1</I32>',
         '<I64 N=\\"CsNumberOfProcessors\\">1</I64>', "I64 CsNumberOfProcessors"),
        # a script
        (FLEET, "Sort-Object InstalledOn -Descending", "Sort-Object InstalledOn |",
         "InstalledOn |"),
        # a run's state
        (TRIAGE, '"state": "Completed"', '"state": "Failed"', "state Failed"),
    ],
)
def test_drift_in_a_recording_is_shown_with_the_command_to_refresh(
    tmp_path: Path, stem: str, old: str, new: str, shown: str
) -> None:
    path = sorted((_copy(tmp_path) / stem).glob("*.hvrec.json"))[-1]
    _edit(path, old, new)
    _assert_drift_shown(tmp_path, stem, path, shown)


def test_a_date_one_day_off_is_drift(tmp_path: Path) -> None:
    path = _copy(tmp_path) / FLEET / "web01.hvrec.json"
    stamp = re.search(r'InstalledOn\\">(\d{4}-\d\d-\d\d)', path.read_text(encoding="utf-8"))
    assert stamp is not None
    earlier = dt.date.fromisoformat(stamp.group(1)) - dt.timedelta(days=1)
    _edit(path, f'InstalledOn\\">{stamp.group(1)}', f'InstalledOn\\">{earlier}')
    _assert_drift_shown(tmp_path, FLEET, path, "<date: recording's day -20 d>")


def test_a_time_minutes_off_is_drift(tmp_path: Path) -> None:
    path = _copy(tmp_path) / TRIAGE / "sim.hvrec.json"
    text = path.read_text(encoding="utf-8")
    found = re.search(r'TimeCreated\\">(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)', text)
    assert found is not None
    later = dt.datetime.fromisoformat(found.group(1)) + dt.timedelta(minutes=5)
    _edit(path, f'TimeCreated\\">{found.group(1)}', f'TimeCreated\\">{later:%Y-%m-%dT%H:%M:%S}')
    _assert_drift_shown(tmp_path, TRIAGE, path, "<time: recording -0d 00:37>")


def test_a_missing_record_or_session_is_drift(tmp_path: Path) -> None:
    fresh = _copy(tmp_path)
    (fresh / FLEET / "db01.hvrec.json").unlink()
    path = fresh / TRIAGE / "sim.hvrec.json"
    document = json.loads(path.read_text(encoding="utf-8"))
    document["runs"][0]["events"].pop()  # one service fewer
    path.write_text(json.dumps(document), encoding="utf-8")
    report = drift(RECORDINGS, fresh)
    assert (f"{FLEET}: shipped sessions ['db01.hvrec.json', 'web01.hvrec.json', "
            "'web02.hvrec.json'], regenerated ['web01.hvrec.json', 'web02.hvrec.json']") in report
    assert "-  output:" in report  # the record the regenerated run lacks
