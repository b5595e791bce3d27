"""One error taxonomy for hvmagic.

Every exception hvmagic raises on purpose is an :class:`HvMagicError`. Third-party exceptions
(psrpcore, expat, socket errors) are translated once, at the layer boundary where they happen,
with ``raise ... from exc`` so the cause stays visible to whoever debugs it.

Exception text never contains secrets: code that builds a message from user input passes it
through :func:`hvmagic.secrets.redact` first (or never includes passwords/tokens at all).
"""

from __future__ import annotations

from typing import Any


class HvMagicError(Exception):
    """Base class of every error hvmagic raises on purpose."""


class DecodeError(HvMagicError, ValueError):
    """CLIXML (or a PSRP message) could not be decoded.

    ``position`` says where: a ``line:column`` pair from the XML parser when known, else a
    character/byte offset or an element path such as ``/Objs/Obj[3]/Props/I32``.
    """

    def __init__(self, message: str, position: str | int | None = None) -> None:
        self.position = position
        where = f" (at {position})" if position is not None else ""
        super().__init__(f"{message}{where}")


class LimitExceededError(DecodeError):
    """Input exceeded a configured limit (size, nesting depth, object count, line length)."""


class EncodeError(HvMagicError, TypeError):
    """A Python value cannot be serialized to CLIXML."""


class FrameError(HvMagicError, ValueError):
    """Values cannot become a DataFrame as asked (e.g. a bad ``columns=`` argument)."""


class ProtocolError(HvMagicError):
    """The peer broke the OutOfProc/PSRP protocol (malformed packet, unexpected message)."""


class TransportError(HvMagicError, ConnectionError):
    """Moving bytes failed: connection refused/closed/reset, process exited, guest rebooted."""


class HandshakeError(TransportError):
    """The PowerShell Direct broker or server sent something malformed or unexpected."""


class CredentialError(HvMagicError, PermissionError):
    """Credentials (or a PowerShell Direct token) were rejected by the guest."""


class SessionBrokenError(TransportError):
    """The session can no longer be used (its transport died); connect again.

    Raised by a run, ``result`` is the partial :class:`hvmagic.session.Result`: whatever
    arrived before the guest died or broke the protocol is kept, not lost with the session.
    """

    def __init__(self, message: str = "", result: Any = None) -> None:
        super().__init__(message)
        #: the partial result of the run that broke (``None`` outside a run)
        self.result = result


class SessionLimitExceededError(SessionBrokenError, LimitExceededError):
    """The guest's stream exceeded a limit of the session (a message too large, too many bytes
    held for incomplete objects): a :class:`LimitExceededError` that also broke the session."""

    def __init__(self, message: str = "", result: Any = None) -> None:
        SessionBrokenError.__init__(self, message, result)
        self.position = None


class PipelineTimeoutError(HvMagicError, TimeoutError):
    """A pipeline ran longer than its timeout; it was stopped and the session stays usable."""

    def __init__(self, message: str, result: Any = None) -> None:
        super().__init__(message)
        #: the partial :class:`hvmagic.session.Result` gathered before the stop
        self.result = result


class StopNotAcknowledgedError(PipelineTimeoutError, SessionBrokenError):
    """A stop (after ``timeout=``, :meth:`Session.stop` or Ctrl-C) got no answer from the guest
    within the stop grace: the session is marked broken. ``result`` keeps what had arrived.

    Both a :class:`PipelineTimeoutError` (the partial result is on it, as for any timeout) and
    a :class:`SessionBrokenError` (connect again).
    """


class RemoteError(HvMagicError):
    """A PowerShell pipeline failed with a terminating error.

    ``record`` is the :class:`hvmagic.clixml.ErrorRecord` the guest sent (``None`` when the
    guest only sent a reason string); ``result`` the partial result gathered before the failure.
    """

    def __init__(self, message: str, record: Any = None, result: Any = None) -> None:
        super().__init__(message)
        self.record = record
        self.result = result


class FleetError(HvMagicError):
    """Some targets of a fleet run did not complete cleanly (``FleetResult.raise_for_errors``).

    ``result`` is the whole :class:`hvmagic.fleets.FleetResult`: every other target's output is
    on it, and its ``status`` table says what happened to each target.
    """

    def __init__(self, message: str, result: Any = None) -> None:
        super().__init__(message)
        self.result = result


class ReplayMismatchError(HvMagicError):
    """A replayed session was asked to run something the recording does not hold next."""


class UnsupportedPlatformError(HvMagicError, OSError):
    """This transport cannot work on this platform/Python; the message names the alternatives."""


class VMNotFoundError(HvMagicError, LookupError):
    """No virtual machine (or more than one) on this Hyper-V host matches the given name or id."""


class VMStateError(HvMagicError):
    """The virtual machine exists but cannot take a PowerShell Direct session (not Running)."""


class LegacyGuestRefusedError(HandshakeError):
    """The guest only speaks the unauthenticated legacy (V1) PowerShell Direct handshake.

    Refused unless ``allow_legacy=True``: its second connection carries no token
    (CVE-2025-49734). The fix is to install the guest's Windows updates.
    """


class SessionBusyError(HvMagicError, RuntimeError):
    """``Session.run`` was called while another ``run`` on the same session is in progress."""


class HostInteractionError(HvMagicError):
    """A host UI could not answer a guest request (``Read-Host``, a prompt) non-interactively."""


class FileCopyError(HvMagicError, OSError):
    """Copying a file into or out of the guest failed (``Session.copy_to`` / ``copy_from``)."""


class FileCopyExistsError(FileCopyError, FileExistsError):
    """The destination exists and ``overwrite`` was not given; nothing was copied."""


class FileCopySourceError(FileCopyError, FileNotFoundError):
    """The source does not exist, or is a directory and ``recurse`` was not given."""


class FileCopyPermissionError(FileCopyError, PermissionError):
    """The guest or this machine refused access to a copy's source or destination."""


class FileCopyIntegrityError(FileCopyError):
    """The SHA-256 of the copy differs from the source's; the partial copy was removed."""
