"""What a :class:`~hvmagic.testing.FakeGuest` handler may raise, and what its context raises in it.

A module of its own so that handler sets (:mod:`hvmagic.testing.filecopy_handlers`) can raise
PowerShell's errors without importing the guest that installs them.
"""

from __future__ import annotations

from typing import Any

from hvmagic.errors import HvMagicError, TransportError


class TerminatingError(HvMagicError):
    """Raised by ``HandlerContext.fail``: the pipeline ends ``Failed`` with this record."""

    def __init__(
        self,
        message: str,
        *,
        category: str = "NotSpecified",
        error_id: str | None = None,
        target: Any = None,
        exception_type: str = "System.Management.Automation.RuntimeException",
        command: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.category = category
        self.error_id = error_id
        self.target = target
        self.exception_type = exception_type
        self.command = command


class PipelineStoppedError(HvMagicError):
    """Raised inside a handler once the client stopped the pipeline (``Signal``).

    PowerShell raises ``PipelineStoppedException`` in the running script the same way; a
    handler normally lets it propagate.
    """


class HostCallError(HvMagicError):
    """The client's host answered a host call with an error record (e.g. no interactive UI)."""

    def __init__(self, message: str, record: Any = None) -> None:
        super().__init__(message)
        self.record = record


class GuestUnavailableError(TransportError):
    """The guest is rebooting (or was shut down); connections are refused."""
