"""DataFrames sent to PowerShell (``--with df`` / ``parameters={"df": df}``): what arrives,
as PowerShell itself reports it (values, .NET types, ``$null`` for missing cells)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from hvmagic.errors import EncodeError
from hvmagic.frame_parameters import frame_to_objects

REPORT = r"""
foreach ($row in $df) {
    foreach ($p in $row.PSObject.Properties) {
        [pscustomobject]@{
            Name = $p.Name
            Type = if ($null -eq $p.Value) { '$null' } else { $p.Value.GetType().FullName }
            Text = if ($null -eq $p.Value) { '' } elseif ($p.Value -is [datetime]) {
                $p.Value.ToString('o') } else { [string]$p.Value }
        }
    }
}
"""


def _frame() -> pd.DataFrame:
    return pd.DataFrame({
        "Name": ["web01", "db01", None],
        "CPU": [1.5, np.nan, 3.25],
        "Handles": [10, 20, 3_000_000_000],
        "Running": [True, False, True],
        "Started": pd.to_datetime(["2024-01-02 03:04:05", None, "2024-03-04 05:06:07"]),
        "Uptime": pd.to_timedelta([90, 60, 1], unit="s"),
        "Role": pd.Categorical(["web", "db", "web"]),
        "Port": pd.array([80, None, 443], dtype="Int64"),
    })


def test_a_dataframe_arrives_as_one_object_per_row_typed_per_column(
    shared_pwsh_session: Any,
) -> None:
    frame = _frame()
    rows = shared_pwsh_session.run(REPORT, {"df": frame}).output
    seen = {(r["Name"], i // frame.shape[1]): (r["Type"], r["Text"]) for i, r in enumerate(rows)}
    assert len(rows) == frame.size
    assert seen[("Name", 0)] == ("System.String", "web01")
    assert seen[("Name", 2)] == ("$null", "")
    assert seen[("CPU", 0)] == ("System.Double", "1.5")
    assert seen[("CPU", 1)] == ("$null", "")  # NaN → $null
    assert seen[("Handles", 0)] == ("System.Int32", "10")
    assert seen[("Handles", 2)] == ("System.Int64", "3000000000")
    assert seen[("Running", 1)] == ("System.Boolean", "False")
    assert seen[("Started", 0)][0] == "System.DateTime"
    assert seen[("Started", 0)][1].startswith("2024-01-02T03:04:05")
    assert seen[("Started", 1)] == ("$null", "")  # NaT → $null
    assert seen[("Uptime", 0)] == ("System.TimeSpan", "00:01:30")
    assert seen[("Role", 1)] == ("System.String", "db")
    assert seen[("Port", 1)] == ("$null", "")  # pd.NA → $null
    # PowerShell works on it as on its own objects
    total = shared_pwsh_session.run(
        "($df | Measure-Object -Property CPU -Sum).Sum; ($df | Where-Object Running).Count",
        {"df": frame},
    ).output
    assert total == [4.75, 2]


def test_frames_that_cannot_become_objects_are_refused_clearly() -> None:
    with pytest.raises(EncodeError, match="column names must be strings"):
        frame_to_objects(pd.DataFrame({0: [1]}))
    duplicated = pd.DataFrame([[1, 2]], columns=["a", "a"])
    with pytest.raises(EncodeError, match="duplicate column names"):
        frame_to_objects(duplicated)
    assert [dict(o) for o in frame_to_objects(pd.DataFrame(index=range(2)))] == [{}, {}]


def test_series_and_arrays_arrive_as_lists(shared_pwsh_session: Any) -> None:
    out = shared_pwsh_session.run(
        "$s.Count; $s[1]; $a.Count; $a[0].GetType().Name; $n.GetType().Name",
        {"s": pd.Series([1, 2]), "a": np.array([1.5, 2.5]), "n": np.int64(5)},
    ).output
    assert out == [2, 2, 2, "Double", "Int32"]
