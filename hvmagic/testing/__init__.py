"""Test peers for hvmagic: :class:`FakeGuest`, a guest speaking real PSRP whose scripts are
answered by handlers, for what PowerShell cannot produce on demand (faults, hostile bytes).

See :mod:`hvmagic.testing.guest` (the server) and :mod:`hvmagic.testing.filecopy_handlers` (the
guest side of ``%vmcopy``). What PowerShell itself does is judged by real PowerShell
(``tests/pwsh``); the demo guest is real PowerShell too (:mod:`hvmagic.demo`).

Names are loaded lazily so ``python -m hvmagic.testing.guest --stdio`` does not import the
module twice (which makes Python warn on stderr — noise a ``pwsh -s`` client reads as errors).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover - names for type checkers only
    from hvmagic.testing.guest import (
        COMPUTER_NAME,
        FakeGuest,
        GuestUnavailableError,
        HandlerContext,
        HostCallError,
        PipelineStoppedError,
        TerminatingError,
    )

__all__ = [
    "COMPUTER_NAME",
    "FakeGuest",
    "GuestUnavailableError",
    "HandlerContext",
    "HostCallError",
    "PipelineStoppedError",
    "TerminatingError",
]


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(importlib.import_module("hvmagic.testing.guest"), name)
    raise AttributeError(f"module 'hvmagic.testing' has no attribute {name!r}")
