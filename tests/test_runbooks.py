"""The runbook notebooks, executed as a user would (a real kernel, nbclient), against the
simulated guest — and recorded in one test, replayed in another with identical output."""

from __future__ import annotations

import json
import os
import shutil
import zipfile
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = REPO / "notebooks"
TRIAGE = "01-guest-services-triage.ipynb"
DSC = "02-dsc-web-server.ipynb"
BUNDLE = "03-troubleshooting-bundle.ipynb"

pytestmark = pytest.mark.kernel


def execute(name: str, workdir: Path, **env: str) -> nbformat.NotebookNode:
    """Run notebook ``name`` in a copy of ``notebooks/`` under ``workdir``; fail on any error."""
    folder = workdir / "notebooks"
    if not folder.exists():
        shutil.copytree(NOTEBOOKS, folder, ignore=shutil.ignore_patterns("troubleshooting-*"))
    notebook = nbformat.read(folder / name, as_version=4)
    kernel_env = dict(os.environ)
    kernel_env.pop("HVMAGIC_RECORD", None)
    kernel_env.pop("HVMAGIC_REPLAY", None)
    kernel_env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(REPO), kernel_env.get("PYTHONPATH", "")) if p
    )
    kernel_env.update(env)
    client = NotebookClient(
        notebook, timeout=120, kernel_name="python3",
        resources={"metadata": {"path": str(folder)}},
    )
    client.execute(env=kernel_env)
    return notebook


def cells(notebook: nbformat.NotebookNode) -> list[tuple[str, list[dict[str, Any]]]]:
    return [(c.source, c.get("outputs", [])) for c in notebook.cells if c.cell_type == "code"]


def outputs_of(notebook: nbformat.NotebookNode, prefix: str) -> list[dict[str, Any]]:
    for source, outputs in cells(notebook):
        if source.startswith(prefix):
            return outputs
    raise AssertionError(f"no cell starts with {prefix!r}")


def html_of(outputs: list[dict[str, Any]]) -> str:
    return "".join(o.get("data", {}).get("text/html", "") for o in outputs)


def text_of(outputs: list[dict[str, Any]]) -> str:
    return "".join(
        o.get("text", "") or o.get("data", {}).get("text/plain", "") for o in outputs
    )


def assert_no_errors(notebook: nbformat.NotebookNode) -> None:
    for source, outputs in cells(notebook):
        errors = [o for o in outputs if o.get("output_type") == "error"]
        assert not errors, f"{source[:60]!r} failed: {errors[0].get('evalue')}"


def test_triage_runbook_shows_services_events_chart_and_verdict(tmp_path: Path) -> None:
    nb = execute(TRIAGE, tmp_path)
    assert_no_errors(nb)
    integration = html_of(outputs_of(nb, "%%vmps -o integration"))
    assert "hvmagic-frame" in integration
    for service in ("vmicheartbeat", "vmicvmsession", "vmicguestinterface", "vmicvss"):
        assert f"<td>{service}</td>" in integration
    assert integration.split("<tbody>")[1].count("<tr>") == 8  # the eight integration services
    stopped = html_of(outputs_of(nb, "%%vmps -o stopped"))
    assert "<td>RemoteRegistry</td>" in stopped and "<td>Stopped</td>" in stopped
    events = html_of(outputs_of(nb, "%%vmps -o events"))
    assert "<th>ProviderName</th>" in events and "Service Control Manager" in events
    chart = outputs_of(nb, "import matplotlib")
    assert any("image/png" in o.get("data", {}) for o in chart)
    verdict = text_of(outputs_of(nb, "import pandas as pd"))
    assert "all running" in verdict and "edgeupdate" in verdict


def test_dsc_runbook_streams_verbose_reboots_and_verifies(tmp_path: Path) -> None:
    nb = execute(DSC, tmp_path)
    assert_no_errors(nb)
    copied = text_of(outputs_of(nb, "%vmcopy -r"))
    assert "Copied 2 file(s)" in copied and "SHA-256 verified" in copied
    apply = outputs_of(nb, "%%vmps --timeout 1800")
    verbose = [o for o in apply if "hvmagic-verbose" in o.get("data", {}).get("text/html", "")]
    assert len(verbose) > 10
    assert any("[WindowsFeature]IIS" in text_of([o]) for o in verbose)
    assert "WARNING: " in text_of(apply) and "reboot is required" in text_of(apply)
    assert "Reboot required: True" in text_of(outputs_of(nb, "reboot_needed ="))
    verify = text_of(outputs_of(nb, "%%vmps -o verify"))
    assert "Installed" in verify and "Running" in verify and "Configured by hvmagic" in verify
    assert "in the desired state" in text_of(outputs_of(nb, "row = verify.iloc[0]"))


def test_bundle_runbook_writes_csvs_logs_and_summary(tmp_path: Path) -> None:
    nb = execute(BUNDLE, tmp_path)
    assert_no_errors(nb)
    bundle = tmp_path / "notebooks" / "troubleshooting-bundle"
    names = {p.name for p in bundle.iterdir()}
    assert {"system.csv", "hotfixes.csv", "volumes.csv", "events.csv", "servicing-logs.zip",
            "summary.html", "dism.log"} <= names
    with zipfile.ZipFile(bundle / "servicing-logs.zip") as archive:
        assert any(n.endswith("CBS.log") for n in archive.namelist())
    summary = (bundle / "summary.html").read_text(encoding="utf-8")
    assert "Troubleshooting bundle: SIMULATED-GUEST" in summary
    assert "KB5044281" in summary  # the newest simulated hotfix, in the findings
    assert "hvmagic" not in (bundle / "hotfixes.csv").read_text().lower()


# -- record in one test, replay in another ----------------------------------------------------

_RECORDINGS: dict[str, tuple[Path, nbformat.NotebookNode]] = {}


def _recorded(name: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    if name not in _RECORDINGS:
        workdir = tmp_path_factory.mktemp("record")
        recordings = workdir / "recordings"
        recordings.mkdir()
        nb = execute(name, workdir, HVMAGIC_RECORD=str(recordings))
        assert_no_errors(nb)
        _RECORDINGS[name] = (recordings, nb)
    return _RECORDINGS[name]


def vmps_outputs(nb: nbformat.NotebookNode) -> list[list[tuple[str, str]]]:
    """What a user sees of every %vmps cell: each output's type and its text/HTML/plain data."""
    shown = []
    for source, outputs in cells(nb):
        if not source.startswith(("%%vmps", "%vmps ")):
            continue  # cells that also connect print where they connected, which differs
        shown.append(
            [(o["output_type"], o.get("text", "") + json.dumps(o.get("data", {}), sort_keys=True))
             for o in outputs]
        )
    return shown


@pytest.mark.parametrize("name", [TRIAGE, DSC])
def test_record_a_runbook(name: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    recordings, _ = _recorded(name, tmp_path_factory)
    files = sorted(p.name for p in recordings.iterdir())
    assert "sim.hvrec.json" in files
    if name == DSC:  # connected again after the reboot: a second recording
        assert files == ["sim-2.hvrec.json", "sim.hvrec.json"]
    document = json.loads((recordings / "sim.hvrec.json").read_text(encoding="utf-8"))
    scripts = [run["script"] for run in document["runs"]]
    assert any("Get-Service" in s or "Configuration WebServer" in s for s in scripts)


@pytest.mark.parametrize("name", [TRIAGE, DSC])
def test_replay_shows_what_was_recorded(
    name: str, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    recordings, live = _recorded(name, tmp_path_factory)
    # no simulated guest can answer here: every %vmps cell must come from the recording
    replayed = execute(name, tmp_path, HVMAGIC_REPLAY=str(recordings))
    assert_no_errors(replayed)
    assert "replay of sim" in text_of(outputs_of(replayed, "%load_ext hvmagic"))
    assert vmps_outputs(replayed) == vmps_outputs(live)
    assert len(vmps_outputs(live)) >= 3


def test_quick_start_demo_command(tmp_path: Path) -> None:
    """The README's first quick-start command, after the install: ``hvmagic demo``."""
    import subprocess
    import sys

    env = dict(os.environ, PYTHONPATH=str(REPO))
    env.pop("HVMAGIC_REPLAY", None)
    env.pop("HVMAGIC_RECORD", None)
    done = subprocess.run(
        [sys.executable, "-m", "hvmagic", "demo", "--output", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path, check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("Executed 01-guest-services-triage.ipynb: 8 code cells, 3 tables")
    assert lines[0].endswith(", ok")
    assert "Result of the last cell:" in lines and "integration services" in done.stdout
    assert "without encryption" not in done.stderr  # no alarming kernel warning in a quick start
    page = (tmp_path / "out" / "01-guest-services-triage.html").read_text(encoding="utf-8")
    assert "Guest services triage" in page and "vmicheartbeat" in page
    assert "hvmagic-frame" in page and "data:image/png;base64" in page
