"""Guest side of :mod:`hvmagic.filecopy` in the simulated guest."""

from __future__ import annotations

from typing import Any


def install(guest: Any) -> None:
    return None
