"""The short exceptions a notebook shows instead of a Python traceback.

The magics render a PowerShell failure the way PowerShell does, then raise one of these: IPython
prints only their one line, and a notebook run headlessly still stops at the failing cell. Each
also belongs to hvmagic's own hierarchy (:mod:`hvmagic.errors`), so ``except RemoteError`` and
friends catch them in code that drives the magics.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hvmagic.errors import FileCopyError, RemoteError, SessionBrokenError


class _ShortTraceback:
    """IPython asks an exception for ``_render_traceback_`` before formatting a traceback; the
    PowerShell error is already rendered above the exception, so one line is enough."""

    def _render_traceback_(self) -> list[str]:
        return [f"{type(self).__name__}: {self}"]


class PowerShellError(_ShortTraceback, RemoteError):
    """A ``%%vmps`` cell failed: a terminating error, a timeout, or non-terminating errors
    while ``raise_on_error`` is on. ``result`` holds what the pipeline produced; ``errors``
    the error records."""

    def __init__(
        self, message: str, record: Any = None, result: Any = None, errors: Sequence[Any] = ()
    ) -> None:
        super().__init__(message, record=record, result=result)
        self.errors = list(errors)


class SessionLostError(_ShortTraceback, SessionBrokenError):
    """The session's connection died while running a cell; reconnect with ``%vmconnect``."""


class CopyFailedError(_ShortTraceback, FileCopyError):
    """``%vmcopy`` failed after it started (e.g. the SHA-256 check); nothing partial is left."""


class PipelineStopped(_ShortTraceback, KeyboardInterrupt):
    """The kernel was interrupted while a pipeline ran: the pipeline was stopped remotely and the
    session stays usable. A ``KeyboardInterrupt`` so that *Run all* stops at this cell."""


__all__ = ["CopyFailedError", "PipelineStopped", "PowerShellError", "SessionLostError"]
