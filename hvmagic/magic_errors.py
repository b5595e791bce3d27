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
from hvmagic.sessionlike import SessionLike


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


def first_line(exc: BaseException) -> str:
    """An exception's first line (its type's name when it has no text): what a magic shows."""
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


def one_line(text: str) -> str:
    """The first non-blank line of ``text`` (a PowerShell error's message)."""
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    return lines[0] if lines else "the pipeline failed"


def raise_if_broken(session: SessionLike, alias: str, what: str) -> None:
    """After a timeout or interrupt the session is only "still usable" if stopping worked."""
    if getattr(session, "broken", False):
        raise SessionLostError(
            f"{what} and the pipeline could not be stopped cleanly; session {alias!r} "
            "is broken — reconnect with %vmconnect"
        ) from None


def session_lost(alias: str, exc: BaseException) -> SessionLostError:
    """The error for a session whose connection died under a cell or a copy."""
    return SessionLostError(
        f"session {alias!r} lost its connection ({first_line(exc)}); "
        "reconnect with %vmconnect"
    )


__all__ = [
    "CopyFailedError",
    "PipelineStopped",
    "PowerShellError",
    "SessionLostError",
    "first_line",
    "one_line",
    "raise_if_broken",
    "session_lost",
]
