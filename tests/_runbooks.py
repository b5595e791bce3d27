"""What a user sees of each runbook, checked the same way live (demo guest) and in replay.

A runbook is executed by :func:`hvmagic.nbrun.run_notebook`, the runner behind ``hvmagic demo``
and ``python -m hvmagic.demo.record``; the checks read the executed notebook's outputs (the
HTML of its tables, its chart, the text of its verdict) and the files it wrote.
"""

from __future__ import annotations

import os
import re
import shutil
import zipfile
from pathlib import Path
from typing import Any

import nbformat
from nbclient import NotebookClient

from hvmagic.demo import RECORDINGS
from hvmagic.nbrun import RunSummary, run_notebook

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = REPO / "notebooks"
TRIAGE = "01-guest-services-triage"
BUNDLE = "03-troubleshooting-bundle"
FLEET = "04-fleet-patch-check"
#: names PowerShell goes by on PATH (hvmagic.transports.process looks for these)
POWERSHELL_NAMES = ("pwsh", "pwsh.exe", "powershell", "powershell.exe")


def execute_live(notebook: nbformat.NotebookNode, folder: Path, pwsh: str,
                 timeout: float = 300) -> None:
    """Execute ``notebook`` in a real kernel against the demo guest on ``pwsh``, cells that
    fail kept as error outputs (no recording or replay from the caller's environment)."""
    env = dict(os.environ)
    for key in ("HVMAGIC_RECORD", "HVMAGIC_REPLAY"):
        env.pop(key, None)
    env["HVMAGIC_PWSH"] = pwsh
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    client = NotebookClient(notebook, timeout=timeout, kernel_name="python3", allow_errors=True,
                            resources={"metadata": {"path": str(folder)}})
    client.execute(env=env)


def without_powershell() -> dict[str, str | None]:
    """Environment changes under which no PowerShell can be found: ``$HVMAGIC_PWSH`` unset and
    every PATH entry that holds one dropped."""
    kept = [entry for entry in os.environ.get("PATH", "").split(os.pathsep)
            if entry and not any(shutil.which(name, path=entry) for name in POWERSHELL_NAMES)]
    return {"PATH": os.pathsep.join(kept), "HVMAGIC_PWSH": None}


def replay(stem: str, workdir: Path, recordings: Path = RECORDINGS) -> RunSummary:
    """Run runbook ``stem`` from ``recordings/<stem>`` with no PowerShell reachable."""
    env: dict[str, str | None] = {**without_powershell(), "HVMAGIC_REPLAY": str(recordings / stem),
                                  "HVMAGIC_RECORD": None}
    return run_notebook(NOTEBOOKS / f"{stem}.ipynb", workdir, timeout=120, env=env)


def executed(summary: RunSummary) -> nbformat.NotebookNode:
    assert summary.errors == [], summary.errors
    return nbformat.read(str(summary.executed), as_version=4)


def cells(nb: nbformat.NotebookNode) -> list[tuple[str, list[dict[str, Any]]]]:
    return [(c.source, c.get("outputs", [])) for c in nb.cells if c.cell_type == "code"]


def outputs_of(nb: nbformat.NotebookNode, prefix: str) -> list[dict[str, Any]]:
    for source, outputs in cells(nb):
        if source.startswith(prefix):
            return outputs
    raise AssertionError(f"no cell starts with {prefix!r}")


def html_of(outputs: list[dict[str, Any]]) -> str:
    return "".join(o.get("data", {}).get("text/html", "") for o in outputs)


def text_of(outputs: list[dict[str, Any]]) -> str:
    return "".join(o.get("text", "") or o.get("data", {}).get("text/plain", "") for o in outputs)


def rows(html: str) -> int:
    """Rows of the (first) table body in ``html``."""
    return html.split("<tbody>")[1].split("</tbody>")[0].count("<tr>")


def table(html: str) -> list[dict[str, str]]:
    """The (first) table in ``html`` as rows of column → cell text (index column left out)."""
    head, body = html.split("<thead>")[1].split("</thead>")[0], html.split("<tbody>")[1]
    columns = re.findall(r"<th>(.*?)</th>", head.split("</tr>")[0], re.S)[1:]
    return [dict(zip(columns, (c.strip() for c in re.findall(r"<td>(.*?)</td>", row, re.S)),
                     strict=True))
            for row in re.findall(r"<tr>(.*?)</tr>", body.split("</tbody>")[0], re.S)]


def check_triage(nb: nbformat.NotebookNode) -> None:
    integration = html_of(outputs_of(nb, "%%vmps -o integration"))
    assert "hvmagic-frame" in integration
    for service in ("vmicheartbeat", "vmicvmsession", "vmicguestinterface", "vmicvss"):
        assert f"<td>{service}</td>" in integration
    assert rows(integration) == 8  # the eight integration services
    stopped = html_of(outputs_of(nb, "%%vmps -o stopped"))
    assert rows(stopped) == 4
    assert "<td>RemoteRegistry</td>" in stopped and "<td>Stopped</td>" in stopped
    events = html_of(outputs_of(nb, "%%vmps -o events"))
    assert "<th>ProviderName</th>" in events and "Service Control Manager" in events
    assert rows(events) == 12  # the demo's errors of the last 24 hours
    chart = outputs_of(nb, "import matplotlib")
    assert any("image/png" in o.get("data", {}) for o in chart)
    verdict = text_of(outputs_of(nb, "import pandas as pd"))
    assert "all running" in verdict
    assert "edgeupdate, MapsBroker, RemoteRegistry, sppsvc" in verdict
    assert "12 from 9 sources" in verdict


def check_bundle(nb: nbformat.NotebookNode, workdir: Path) -> None:
    bundle = workdir / "troubleshooting-bundle"
    names = {p.name for p in bundle.iterdir()}
    assert names == {"system.csv", "hotfixes.csv", "volumes.csv", "events.csv",
                     "servicing-logs.zip", "summary.html", "dism.log"}
    with zipfile.ZipFile(bundle / "servicing-logs.zip") as archive:
        assert sorted(archive.namelist()) == ["CBS/CBS.log", "DISM/dism.log"]
        assert b"CBS_E_INSTALLERS_FAILED" in archive.read("CBS/CBS.log")
    assert (bundle / "dism.log").read_bytes() == zipfile.ZipFile(
        bundle / "servicing-logs.zip").read("DISM/dism.log")
    summary = (bundle / "summary.html").read_text(encoding="utf-8")
    assert "Troubleshooting bundle: SIMULATED-GUEST" in summary
    assert "KB5044281" in summary  # the newest simulated hotfix, in the findings
    findings = text_of(outputs_of(nb, "import html"))
    assert "volumes under 20 % free" in findings and "D" in findings
    copied = text_of(outputs_of(nb, "%vmcopy --force"))
    assert "SHA-256 verified" in copied


def check_fleet(nb: nbformat.NotebookNode) -> None:
    hotfixes = html_of(outputs_of(nb, "%%vmps * -o hotfixes"))
    for guest in ("web01", "web02", "db01"):
        assert f"<td>{guest}</td>" in hotfixes
    verdict = {row["VMName"]: row for row in table(html_of(outputs_of(nb, "import pandas as pd")))}
    assert list(verdict) == ["web01", "web02", "db01"]
    for guest, row in verdict.items():
        assert row["KBs"] == "KB5044025, KB5044281"
        assert row["DaysSince"] == "19"  # the demo's newest hotfixes, by the guest's clock
        if guest == "web02":  # the runbook's simulated fault
            assert (row["Verdict"], row["StoppedAutomatic"]) == ("ATTENTION", "UsoSvc")
            assert row["Reason"] == "Update Orchestrator Service (UsoSvc) stopped"
        else:
            assert (row["Verdict"], row["StoppedAutomatic"], row["Reason"]) == ("OK", "none", "")
