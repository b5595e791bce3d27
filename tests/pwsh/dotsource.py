"""PowerShell's own answer for "a user dot-sources this text", to compare hvmagic's runs with.

hvmagic runs every cell as if the user had typed ``. ([scriptblock]::Create($text))`` in a
console. :func:`dot_source_cells` has a fresh ``pwsh`` do exactly that, cell after cell on line 1
of its command (so positions and stack traces are comparable), and returns each cell's output
as JSON — or, for a cell that failed, ``{"failed": FQID}``.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from tests.pwsh.conftest import run_pwsh


def _literal(text: str) -> str:
    encoded = base64.b64encode(text.encode("utf-8")).decode("ascii")
    return f"[Text.Encoding]::UTF8.GetString([Convert]::FromBase64String('{encoded}'))"


def dot_source_cells(pwsh: str, cells: list[str], prelude: str = "") -> list[Any]:
    """Each cell's output (a JSON list) after dot-sourcing the cells in one PowerShell."""
    steps = []
    for cell in cells:
        steps.append(
            "try { $__o = @(. ([scriptblock]::Create(" + _literal(cell) + "))); "
            "$__r.Add((ConvertTo-Json -InputObject $__o -Depth 4 -Compress)) } "
            "catch { $__r.Add((ConvertTo-Json -InputObject @{failed = $_.FullyQualifiedErrorId}"
            " -Compress)) }"
        )
    script = (
        prelude + "$__r = [Collections.Generic.List[string]]::new(); " + "; ".join(steps)
        + "; '[' + ($__r -join ',') + ']'"
    )
    return list(json.loads(run_pwsh(pwsh, script)))
