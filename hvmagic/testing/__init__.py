"""Test peers for hvmagic: :class:`FakeGuest`, a simulated Windows guest speaking real PSRP.

See :mod:`hvmagic.testing.guest` (the server), :mod:`hvmagic.testing.demo` (the built-in demo
command set) and :mod:`hvmagic.testing.filecopy_handlers` (the guest side of ``%vmcopy``).

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
