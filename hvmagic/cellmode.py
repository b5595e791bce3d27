"""PowerShell cell mode (``%vmps_mode on``): plain cells run as ``%%vmps``.

An IPython input transformer; ``%load_ext hvmagic`` installs it disabled, ``%vmps_mode`` turns it
on and off.
"""

from __future__ import annotations


class PowerShellCellMode:
    """An IPython input transformer: when enabled, a plain cell becomes ``%%vmps`` + the cell.

    Left alone: empty cells, cells starting with ``%`` (magics, including ``%vmps_mode off``) or
    ``!`` (shell), cells whose first line is ``#py`` (the documented way to run Python in cell
    mode), and papermill's injected ``# Parameters`` cells.
    """

    PYTHON_MARKERS = ("#py", "# py", "#python", "# python")

    def __init__(self, magic: str = "vmps") -> None:
        self.enabled = False
        self.magic = magic

    def __call__(self, lines: list[str]) -> list[str]:
        if not self.enabled:
            return lines
        first = next((line for line in lines if line.strip()), None)
        if first is None:
            return lines
        head = first.strip()
        if head.startswith(("%", "!")):
            return lines
        lowered = head.lower()
        if lowered in self.PYTHON_MARKERS or lowered.startswith(("#py ", "# parameters")):
            return lines
        return [f"%%{self.magic}\n", *lines]


__all__ = ["PowerShellCellMode"]
