"""The fleet patch-check runbook, executed in a real kernel against three PowerShell demo guests.

The runbook stops ``UsoSvc`` on ``web02`` (its labelled, simulated fault) and the test makes
``db01``'s hotfix query fail; the verdict must name those two guests, each for its own reason,
and the hotfix columns of the guests that answered must be what ``Get-HotFix`` says in a
separate PowerShell that loads the demo module without hvmagic in between.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import nbformat
import pandas as pd
import pytest

from hvmagic.demo import MODULE_MANIFEST
from tests._runbooks import execute_live
from tests.pwsh.conftest import AskPwsh

REPO = Path(__file__).resolve().parents[2]
NOTEBOOK = REPO / "notebooks" / "04-fleet-patch-check.ipynb"
FAULTY = "web02"

pytestmark = pytest.mark.kernel

#: appended in memory (the notebook is not edited): the verdict as data the test can read
DUMP_VERDICT = 'print("VERDICT " + verdict.to_json(orient="records", date_format="iso"))'
#: the same questions put to the demo module in a plain pwsh (state in memory: a fresh machine)
ASK_DEMO_MODULE = """\
Import-Module '{manifest}' -DisableNameChecking -ArgumentList '', ''
$fixes = @(Get-HotFix | Sort-Object InstalledOn -Descending)
$newest = $fixes[0].InstalledOn
[pscustomobject]@{{
    Newest = $newest.ToUniversalTime().ToString('o')
    KBs = @($fixes | Where-Object InstalledOn -eq $newest | ForEach-Object HotFixID |
        Sort-Object) -join ', '
    Days = ((Get-Date) - $newest).Days
    UsoSvc = (Get-Service -Name UsoSvc).DisplayName
}}"""


def run_runbook(
    workdir: Path, pwsh: str, after_setup: str | None = None
) -> tuple[list[str], list[dict[str, Any]]]:
    """The errors of the runbook's cells and its verdict table's rows; ``after_setup``, a cell
    run after the demo's fault cell."""
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    if after_setup is not None:
        [fault] = [i for i, c in enumerate(notebook.cells) if "Stop-Service" in c.source]
        notebook.cells.insert(fault + 1, nbformat.v4.new_code_cell(after_setup))
    notebook.cells.append(nbformat.v4.new_code_cell(DUMP_VERDICT))
    execute_live(notebook, workdir, pwsh, timeout=120)
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    errors = [f"{o['ename']}: {o['evalue']}" for o in outputs if o.get("output_type") == "error"]
    printed = "".join(o.get("text", "") for o in notebook.cells[-1].outputs)
    rows = json.loads(printed.split("VERDICT ", 1)[1]) if "VERDICT " in printed else []
    return errors, rows


def test_verdict_names_the_faulty_guest_the_silent_one_and_powershells_own_hotfixes(
    tmp_path: Path, pwsh: str, ask_pwsh: AskPwsh
) -> None:
    # one run, both faults (a full fleet run is three PowerShells and a kernel): db01's hotfix
    # query fails (real PowerShell: a function defined in the session shadows the demo
    # module's command), web02's UsoSvc is stopped by the runbook's own fault cell
    broken = "%vmps -s db01 function Get-HotFix { throw 'RPC server unavailable' }"
    errors, rows = run_runbook(tmp_path, pwsh, after_setup=broken)
    assert errors == []  # --no-raise: the failure is in the status table, not a stopped runbook
    manifest = str(MODULE_MANIFEST).replace("'", "''")
    [truth] = ask_pwsh(ASK_DEMO_MODULE.format(manifest=manifest), as_json=True)
    verdict = {row["VMName"]: row for row in rows}
    assert list(verdict) == ["web01", "web02", "db01"]
    for vm in ("web01", "web02"):  # the guests that answered: PowerShell's own hotfixes
        row = verdict[vm]
        assert pd.Timestamp(row["LatestHotFix"]) == pd.Timestamp(truth["Newest"])
        assert row["KBs"] == truth["KBs"]
        assert row["DaysSince"] == truth["Days"]
    faulty = verdict[FAULTY]
    assert faulty["Verdict"] == "ATTENTION"
    assert faulty["StoppedAutomatic"] == "UsoSvc"
    assert faulty["Reason"] == f"{truth['UsoSvc']} (UsoSvc) stopped"
    # the same demo data, not stopped: what Windows leaves stopped anyway is no finding
    assert (verdict["web01"]["Verdict"], verdict["web01"]["StoppedAutomatic"],
            verdict["web01"]["Reason"]) == ("OK", "none", "")
    # the guest that did not answer is a finding, and the others' answers are kept
    silent = verdict["db01"]
    assert silent["Verdict"] == "ATTENTION"
    assert silent["Reason"] == "not answered (Failed); no hotfix found"
    assert silent["LatestHotFix"] is None and silent["KBs"] == ""
    assert silent["StoppedAutomatic"] == "none"  # its service query still answered
