"""The three runbooks, executed in a real kernel against the PowerShell demo guest.

``connect("sim")`` opens the demo guest (:func:`hvmagic.demo.open_demo_session`) on the pwsh
under test, which the kernel finds through ``HVMAGIC_PWSH``. Triage and troubleshooting run
clean. The DSC runbook cannot run on PowerShell for Linux — its ``Configuration`` needs
Windows PowerShell's DSC, so its demo is its recording — and the cells that fail are pinned
here, each with its reason, so a change shows.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.kernel


def run_runbook(name: str, workdir: Path, pwsh: str) -> list[tuple[str, str | None]]:
    """Each code cell's first line and its error (``ename: evalue``), or None."""
    folder = workdir / "notebooks"
    shutil.copytree(REPO / "notebooks", folder, ignore=shutil.ignore_patterns("troubleshooting-*"))
    notebook = nbformat.read(folder / name, as_version=4)
    env = dict(os.environ)
    for key in ("HVMAGIC_RECORD", "HVMAGIC_REPLAY"):
        env.pop(key, None)
    env["HVMAGIC_PWSH"] = pwsh
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    client = NotebookClient(
        notebook,
        timeout=300,
        kernel_name="python3",
        allow_errors=True,
        resources={"metadata": {"path": str(folder)}},
    )
    client.execute(env=env)
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


@pytest.mark.parametrize(
    "name", ["01-guest-services-triage.ipynb", "03-troubleshooting-bundle.ipynb"]
)
def test_runbook_runs_clean_against_the_demo_guest(name: str, tmp_path: Path, pwsh: str) -> None:
    cells = run_runbook(name, tmp_path, pwsh)
    assert len(cells) > 5
    assert failures(cells) == []
    if name.startswith("03"):
        bundle = tmp_path / "notebooks" / "troubleshooting-bundle"
        assert (bundle / "servicing-logs.zip").stat().st_size > 200
        assert "SIMULATED-GUEST" in (bundle / "summary.html").read_text(encoding="utf-8")


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
