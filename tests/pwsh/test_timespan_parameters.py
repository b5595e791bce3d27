"""TimeSpan parameters arrive with their exact length (psrpcore 0.3.1 sent 90 s as 63 s and
10 s as 1 s; see hvmagic.psrp.psrpcore_fixes). PowerShell reports the ticks it received."""

from __future__ import annotations

import datetime as dt
from typing import Any

from psrpcore.types import PSDuration, _serializer

import hvmagic.psrp.client  # noqa: F401  (applies hvmagic.psrp.psrpcore_fixes)

SECONDS = [10, 20, 30, 50, 90, 600, 0.5, 1.25, 86_410.25, -30, -0.1, 0]


def test_timespans_arrive_with_the_ticks_python_sent(shared_pwsh_session: Any) -> None:
    values = [dt.timedelta(seconds=s) for s in SECONDS]
    ticks = shared_pwsh_session.run(
        "foreach ($t in $spans) { $t.Ticks }", {"spans": values}
    ).output
    assert ticks == [round(s * 10_000_000) for s in SECONDS]


def test_psrpcore_durations_keep_their_zeros() -> None:
    _serialize_duration = _serializer._serialize_duration
    assert _serialize_duration(dt.timedelta(seconds=10)) == "PT10S"
    assert _serialize_duration(dt.timedelta(seconds=90)) == "PT1M30S"
    assert _serialize_duration(dt.timedelta(days=2, seconds=30)) == "P2DT30S"
    assert _serialize_duration(PSDuration(seconds=1, nanoseconds=300)) == "PT1.0000003S"
