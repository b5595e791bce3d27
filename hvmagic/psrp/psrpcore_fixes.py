"""Corrections for known defects of psrpcore (0.3.1), applied when hvmagic's PSRP client loads.

Only what was seen to be wrong against real PowerShell is corrected here, each with the test
that shows it; everything else of psrpcore is used as it is.

* **TimeSpan seconds lose their zeros.** psrpcore writes a TimeSpan's seconds as
  ``f"{s:.7f}".rstrip(".0")``, which strips the zeros of whole tens as well: 10 s goes out as
  ``PT1S`` and 90 s as ``PT1M3S``. PowerShell 7.6.9 receives ``timedelta(seconds=90)`` as 63
  seconds (``tests/pwsh/test_frame_parameters.py`` and
  ``tests/pwsh/test_timespan_parameters.py``).
  psrpcore's serializer is pointed at hvmagic's own TimeSpan formatting, which the CLIXML
  encoder already uses.
"""

from __future__ import annotations

import datetime as _dt

from psrpcore.types import _serializer

from hvmagic.clixml.encode import format_timespan_ticks


def _serialize_duration(value: _dt.timedelta) -> str:
    # PSDuration carries nanoseconds beyond the microsecond; .NET keeps 100-ns ticks
    nanoseconds = getattr(value, "nanoseconds", 0) or 0
    micro = (value.days * 86_400 + value.seconds) * 1_000_000 + value.microseconds
    return format_timespan_ticks(micro * 10 + nanoseconds // 100)


def apply() -> None:
    """Install the corrections (idempotent)."""
    _serializer._serialize_duration = _serialize_duration  # type: ignore[attr-defined,unused-ignore]
