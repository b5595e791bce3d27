"""Test peers for hvmagic: :class:`FakeGuest`, a simulated Windows guest speaking real PSRP.

See :mod:`hvmagic.testing.guest` (the server), :mod:`hvmagic.testing.demo` (the built-in demo
command set) and :mod:`hvmagic.testing.filecopy_handlers` (the guest side of ``%vmcopy``).
"""

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
