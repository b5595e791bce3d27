"""The runbooks, executed in a real kernel against the PowerShell demo guest (``connect("sim")``).

Runbooks 01, 03 and 04 are recorded live exactly as ``python -m hvmagic.demo.record`` records
them; each must show what a user expects (the same checks as their replay in
``tests/test_runbooks.py``), their recordings must equal the shipped ones (else the test shows
the drift and the command to refresh them), and a replay of what was just recorded must show
what the live run showed. ``hvmagic demo`` runs live where PowerShell is found.

The DSC runbook cannot run on PowerShell for Linux — its ``Configuration`` needs Windows
PowerShell's DSC, so no recording of it ships — and the cells that fail are pinned here, each
with its reason, so a change shows.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import nbformat
import pytest

import hvmagic
from hvmagic.__main__ import choose_mode, find_demo_notebook
from hvmagic.demo import RECORDINGS
from hvmagic.demo.record import drift as recording_drift
from hvmagic.demo.record import record_runbooks
from hvmagic.nbrun import RunSummary, kernel_env
from tests._runbooks import (
    BUNDLE,
    FLEET,
    REPO,
    TRIAGE,
    cells,
    check_bundle,
    check_fleet,
    check_triage,
    execute_live,
    executed,
    outputs_of,
    replay,
    text_of,
)

pytestmark = pytest.mark.kernel


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory, pwsh: str
             ) -> tuple[Path, dict[str, RunSummary]]:
    """The three runbooks run live and recorded, once for the module."""
    output = tmp_path_factory.mktemp("recorded")
    return output, record_runbooks(output, executable=pwsh)


def test_triage_runs_live(recorded: tuple[Path, dict[str, RunSummary]]) -> None:
    nb = executed(recorded[1][TRIAGE])
    connected = text_of(outputs_of(nb, "%load_ext hvmagic"))
    assert "demo guest 'sim' (simulated data, " in connected and "replay" not in connected
    check_triage(nb)


def test_bundle_runs_live(recorded: tuple[Path, dict[str, RunSummary]]) -> None:
    summary = recorded[1][BUNDLE]
    check_bundle(executed(summary), summary.executed.parent)


def test_fleet_runs_live(recorded: tuple[Path, dict[str, RunSummary]]) -> None:
    check_fleet(executed(recorded[1][FLEET]))


def test_shipped_recordings_are_what_the_demo_guest_answers(
    recorded: tuple[Path, dict[str, RunSummary]],
) -> None:
    report = recording_drift(RECORDINGS, recorded[0])
    if report:
        pytest.fail(report, pytrace=False)


def _shown(output: dict[str, Any]) -> str:
    text = output.get("text", "") + json.dumps(output.get("data", {}), sort_keys=True)
    if "HostName" in text and "Duration" in text:
        # a fleet's status table: its Duration column is the notebook's wall clock (a replay
        # serves the same records in no time), everything else must be the same
        # (pandas prints 0.0 where all are zero, so the column's width goes too)
        text = re.sub(r" +", " ", re.sub(r"\b\d+\.\d+\b", "<seconds>", text))
    return text


def vmps_outputs(nb: nbformat.NotebookNode) -> list[list[tuple[str, str]]]:
    """What a user sees of every %vmps cell: each output's type and its text/HTML/plain data."""
    shown = []
    for source, outputs in cells(nb):
        if not source.startswith(("%%vmps", "%vmps ", "if DEMO:")):
            continue  # cells that also connect print where they connected, which differs
        shown.append([(o["output_type"], _shown(o)) for o in outputs])
    return shown


@pytest.mark.parametrize("stem", [TRIAGE, BUNDLE, FLEET])
def test_replay_shows_what_the_live_run_showed(
    stem: str, recorded: tuple[Path, dict[str, RunSummary]], tmp_path: Path
) -> None:
    live = executed(recorded[1][stem])
    again = executed(replay(stem, tmp_path, recordings=recorded[0]))
    assert "replay of " in text_of(outputs_of(again, "%load_ext hvmagic"))
    assert len(vmps_outputs(live)) >= 3
    assert vmps_outputs(again) == vmps_outputs(live)


# -- hvmagic demo, live -----------------------------------------------------------------------
def test_hvmagic_demo_runs_live_where_powershell_is_found(tmp_path: Path, pwsh: str) -> None:
    env = kernel_env({"HVMAGIC_PWSH": pwsh, "HVMAGIC_REPLAY": None, "HVMAGIC_RECORD": None})
    done = subprocess.run(
        [sys.executable, "-m", "hvmagic", "demo", "--output", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path, check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == (
        f"Live: the demo guest is {pwsh} (a real PowerShell with simulated Windows data)."
    )
    assert lines[1].startswith(f"Executed {TRIAGE}.ipynb: 8 code cells, 3 tables, ")
    assert lines[1].endswith(", ok")
    page = (tmp_path / "out" / f"{TRIAGE}.html").read_text(encoding="utf-8")
    assert "<td>vmicheartbeat</td>" in page and page.count("hvmagic-frame") >= 3  # the table
    assert "all running" in page and "12 from 9 sources" in page  # the verdict
    assert "(simulated data, " in page  # where %vmconnect says what it connected to
    assert "replay of" not in page


def test_hvmagic_demo_replay_flag_replays_even_with_powershell(
    pwsh: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # what --replay decides with a PowerShell at hand, and that the recording then wins over
    # that PowerShell in the kernel; the replayed run itself is the one tests/test_runbooks.py
    # executes (the same runner, the same environment less HVMAGIC_PWSH)
    monkeypatch.setenv("HVMAGIC_PWSH", pwsh)
    notebook = find_demo_notebook()
    assert choose_mode(notebook).name == "live"
    mode = choose_mode(notebook, "replay")
    assert mode.name == "replay"
    assert mode.env == {"HVMAGIC_REPLAY": str(RECORDINGS / TRIAGE), "HVMAGIC_RECORD": None}
    assert mode.line.startswith("Replay (--replay): the recording of this runbook made ")
    monkeypatch.setenv("HVMAGIC_REPLAY", str(RECORDINGS / TRIAGE))
    with hvmagic.connect("sim") as session:
        assert session.description.startswith("replay of sim.hvrec.json")


# -- the DSC runbook --------------------------------------------------------------------------
def run_runbook(name: str, workdir: Path, pwsh: str) -> list[tuple[str, str | None]]:
    """Each code cell's first line and its error (``ename: evalue``), or None."""
    folder = workdir / "notebooks"
    shutil.copytree(REPO / "notebooks", folder, ignore=shutil.ignore_patterns("troubleshooting-*"))
    notebook = nbformat.read(folder / name, as_version=4)
    execute_live(notebook, folder, pwsh)
    result = []
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        errors: list[Any] = [o for o in cell.outputs if o.get("output_type") == "error"]
        error = f"{errors[0]['ename']}: {errors[0]['evalue']}" if errors else None
        result.append((cell.source.splitlines()[0], error))
    return result


def failures(cells: list[tuple[str, str | None]]) -> list[tuple[str, str]]:
    return [(first, error) for first, error in cells if error is not None]


def test_dsc_runbook_fails_only_where_linux_powershell_cannot_follow(
    tmp_path: Path, pwsh: str
) -> None:
    failed = failures(run_runbook("02-dsc-web-server.ipynb", tmp_path, pwsh))
    reasons = [(first, error.split(":")[0]) for first, error in failed]
    assert reasons == [
        # (the module upload with %vmcopy works since filecopy resolves provider paths)
        # Configuration needs Windows PowerShell's DSC (pwsh on Linux has no schema store)
        ("%%vmps", "PowerShellError"),
        # the demo has no LCM, and says so instead of configuring the machine it runs on
        ("%%vmps --timeout 1800", "PowerShellError"),
        # consequences: no Web-Server, so no W3SVC, so an empty verify frame
        ("%%vmps -o verify", "PowerShellError"),
        ("row = verify.iloc[0]", "IndexError"),
    ]
