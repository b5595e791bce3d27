"""The composition root: :func:`connect` turns a target name and options into a session.

Everything below it is wired together here and nowhere else: which transport reaches the
guest (:data:`OPENERS`, a registry chosen by name), retrying while a guest reboots, the guest's
last boot time, and wrapping the live session for recording or serving a recording instead.
The modules it composes — :mod:`hvmagic.session`, :mod:`hvmagic.recording`, :mod:`hvmagic.hop`,
:mod:`hvmagic.transports`, the demo guest :mod:`hvmagic.demo` — do not know about each other
beyond what they need, and none of them imports this module (``tests/test_layers.py`` checks
the layers).

Choosing the opener
-------------------
``via`` names an opener in :data:`OPENERS`: ``direct`` (PowerShell Direct over an AF_HYPERV
socket), ``process`` (a local ``pwsh -s`` / ``powershell.exe -s``), ``sim`` (the demo guest: a
real local PowerShell with simulated Windows data), ``ssh``/``winrm`` (a remote PowerShell,
through :mod:`hvmagic.hop`), ``replay`` (a recording). ``auto`` picks ``sim`` for the target
``"sim"`` and ``direct`` where PowerShell Direct works. A ``host=`` always goes through the hop
(``via`` then says how the Hyper-V host is reached), as does ``auto`` on a Windows host whose
Python is too old for AF_HYPERV sockets.
"""

from __future__ import annotations

import datetime as _dt
import os
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hvmagic import demo, hop, recording
from hvmagic.clixml.values import PSCredential, SecureString
from hvmagic.credentials import get_password
from hvmagic.errors import (
    CredentialError,
    LegacyGuestRefusedError,
    ProtocolError,
    TransportError,
    UnsupportedPlatformError,
)
from hvmagic.host import HostUI
from hvmagic.session import open_session
from hvmagic.sessionlike import SessionLike
from hvmagic.transports.process import ProcessTransport

if TYPE_CHECKING:  # pragma: no cover - read by mypy only
    from hvmagic.hop import HopSession
    from hvmagic.recording import RecordingSession, ReplaySession
    from hvmagic.session import Session

    def _every_session_is_sessionlike(
        live: Session, hopped: HopSession, recorded: RecordingSession, replayed: ReplaySession
    ) -> tuple[SessionLike, ...]:
        """Where mypy checks each session class against the protocol (which sits below them
        all and cannot name them); never called."""
        return (live, hopped, recorded, replayed)


__all__ = ["LAST_BOOT_SCRIPT", "OPENERS", "Request", "connect", "last_boot_time"]


@dataclass(frozen=True)
class Request:
    """One :func:`connect` call's target and options, as an opener reads them.

    Passwords are :class:`SecureString` (never a plain ``str``) and kept out of the repr.
    """

    target: str
    via: str = "auto"
    username: str | None = None
    password: SecureString | None = field(default=None, repr=False)
    credential: PSCredential | None = field(default=None, repr=False)
    configuration: str | None = None
    executable: str | None = None
    allow_legacy: bool = False
    host_ui: HostUI | None = None
    timeout: float | None = None
    host: str | None = None
    host_username: str | None = None
    host_password: str | SecureString | None = field(default=None, repr=False)
    host_credential: PSCredential | None = field(default=None, repr=False)
    host_options: Mapping[str, Any] = field(default_factory=dict)
    replay: Path | None = None


#: An opener connects one :class:`Request` and returns an open session (or raises a typed
#: error: an unreachable guest as a ConnectionError/TimeoutError, which ``wait=`` retries).
Opener = Callable[[Request], SessionLike]


def _open_direct(request: Request) -> SessionLike:
    """PowerShell Direct to the VM named ``request.target`` (Windows Hyper-V host)."""
    username, password = request.username, request.password
    if request.credential is not None:
        username = username or request.credential.username
        password = password if password is not None else request.credential.password
    if not username:
        raise CredentialError(
            "PowerShell Direct needs a guest user name (username= or credential=)"
        )
    from hvmagic.transports.hvsocket import connect_vm  # AF_HYPERV: only where it exists

    # explicit value, else HVMAGIC_PASSWORD, else keyring, else a non-echoing prompt
    secret = get_password(username, password)
    kwargs: dict[str, Any] = {}
    if request.timeout is not None:
        kwargs["timeout"] = request.timeout
    transport = connect_vm(
        request.target, username=username, password=secret,
        configuration=request.configuration, allow_legacy=request.allow_legacy, **kwargs,
    )
    return open_session(transport, name=request.target, host_ui=request.host_ui,
                        timeout=request.timeout)


def _open_process(request: Request) -> SessionLike:
    """A local ``pwsh -s`` / ``powershell.exe -s`` (``executable`` picks which)."""
    transport = ProcessTransport(executable=request.executable)
    return open_session(transport, name=request.target, host_ui=request.host_ui,
                        timeout=request.timeout)


def _open_demo(request: Request) -> SessionLike:
    """Demo machine ``request.target``: a real local PowerShell with simulated Windows data.
    Without any PowerShell it raises :class:`UnsupportedPlatformError` (never retried)."""
    return demo.open_demo_session(
        executable=request.executable, host_ui=request.host_ui, timeout=request.timeout,
        name=request.target,
    )


def _open_remote(request: Request) -> SessionLike:
    """Through :mod:`hvmagic.hop`: a VM behind ``host=`` (``via`` ssh/winrm/process/auto), a
    local hop on a Windows host with an older Python, or — no host, ``via`` ssh/winrm — a
    session in ``target``'s own PowerShell."""
    options: dict[str, Any] = dict(request.host_options)
    target, host, via = request.target, request.host, request.via
    host_username, host_password = request.host_username, request.host_password
    host_credential = request.host_credential
    if host is None and via in ("ssh", "winrm"):
        return _open_plain_remote(request, options)
    if host is None:
        if not hop.local_hop_applies(target, via):
            raise ValueError(f"no Hyper-V host given for via={via!r}")
        host, via = "localhost", "process"
    if via == "auto":
        via = "winrm"  # every Windows Server has WinRM enabled
    if via not in hop.HOP_VIAS:
        raise ValueError(
            f"a VM behind host={host!r} is reached via ssh, winrm or process, not {via!r}"
        )
    if via == "process" and request.executable is not None:
        options["executable"] = request.executable
    return hop.connect_hop(
        target, host=host, via=via, username=request.username, password=request.password,
        credential=request.credential, configuration=request.configuration,
        host_username=host_username, host_password=host_password,
        host_credential=host_credential, host_ui=request.host_ui, timeout=request.timeout,
        **options,
    )


def _open_plain_remote(request: Request, options: dict[str, Any]) -> SessionLike:
    """No VM behind: the account named for the "guest" is the one that logs on to target."""
    host_credential = request.host_credential or request.credential
    host_username = request.host_username or request.username
    host_password = request.host_password if request.host_password is not None \
        else request.password
    for name, given, host_given in (
        ("username", request.username, request.host_username),
        ("password", request.password, request.host_password),
    ):
        if given is not None and host_given is not None and given is not host_given:
            raise ValueError(f"{name}= has no meaning for a session without a VM hop "
                             f"(host_{name}= is the account)")
    if request.configuration and request.via == "winrm":  # the endpoint (JEA) on the target
        options["winrm"] = {**dict(options.get("winrm") or {}),
                            "configuration": request.configuration}
    elif request.configuration:
        raise ValueError("configuration= needs WinRM (SSH has no session configurations)")
    if host_credential is not None:
        host_username = host_username or host_credential.username
        if host_password is None:
            host_password = host_credential.password
    return hop.plain_remote_session(
        request.target, via=request.via, host_username=host_username,
        host_password=host_password, host_ui=request.host_ui, timeout=request.timeout,
        **options,
    )


def _open_replay(request: Request) -> SessionLike:
    """Serve runs from the recording ``request.replay``; nothing is connected."""
    if request.replay is None:
        raise ValueError(
            f"via='replay' needs replay=FILE (or {recording.REPLAY_ENV}=DIR in the environment)"
        )
    return recording.ReplaySession(
        request.replay, name=None if request.target == "sim" else request.target
    )


#: The openers by ``via`` name. A test (or an integration) may add one; product code never
#: imports a test double to reach a guest.
OPENERS: dict[str, Opener] = {
    "direct": _open_direct,
    "process": _open_process,
    "sim": _open_demo,
    "replay": _open_replay,
    "ssh": _open_remote,
    "winrm": _open_remote,
}


def connect(
    target: str,
    *,
    via: str = "auto",
    username: str | None = None,
    password: str | SecureString | None = None,
    credential: PSCredential | None = None,
    configuration: str | None = None,
    executable: str | None = None,
    allow_legacy: bool = False,
    host_ui: HostUI | None = None,
    record: str | Path | None = None,
    replay: str | Path | None = None,
    timeout: float | None = None,
    wait: float | None = None,
    booted_after: _dt.datetime | None = None,
    host: str | None = None,
    host_username: str | None = None,
    host_password: str | SecureString | None = None,
    host_credential: PSCredential | None = None,
    host_options: Mapping[str, Any] | None = None,
) -> SessionLike:
    """Connect to ``target`` and open a PowerShell session.

    ``via``: ``"sim"`` — the demo guest: a local PowerShell (``pwsh`` or ``powershell.exe``;
    ``executable`` or ``$HVMAGIC_PWSH`` picks which) answering with simulated Windows data, one
    demo machine per ``target`` name; ``"process"`` — a local ``pwsh -s`` /
    ``powershell.exe -s``; ``"direct"`` — PowerShell Direct to the VM named ``target`` (Windows
    Hyper-V host, CPython ≥ 3.12); ``"auto"`` — ``sim`` for target ``"sim"``, else ``direct``
    where it works; ``"replay"`` — serve runs from a recording (``replay=FILE``).

    ``host="hv01"`` reaches the VM through its Hyper-V host (:mod:`hvmagic.hop`): ``via`` is then
    ``"winrm"`` (the default, ``"auto"``), ``"ssh"`` or ``"process"`` (this machine is the
    host), the host account is ``host_username``/``host_password``/``host_credential`` and
    ``host_options`` holds ``port``, ``identity_file``, ``ssh_options``, ``ssh_config``,
    ``vm_id``, ``winrm``.
    ``via="ssh"``/``"winrm"`` without ``host`` opens a session in ``target``'s own PowerShell.
    On a Windows host whose Python is < 3.12, ``via="auto"`` hops through a local
    ``powershell.exe -s``.

    ``record=FILE`` wraps the live session in a :class:`~hvmagic.recording.RecordingSession`;
    ``replay=FILE`` returns a :class:`~hvmagic.recording.ReplaySession` without connecting.
    The environment variables ``HVMAGIC_RECORD=DIR`` / ``HVMAGIC_REPLAY=DIR`` do the same for
    every ``connect`` that names no file (``DIR/<target>.hvrec.json``), for CI.

    ``wait=S`` keeps retrying for up to ``S`` seconds while the guest cannot be reached (it is
    booting or rebooting: connection refused, reset or timed out), so a runbook can reboot a
    VM and reconnect in one call. Rejected credentials and platform errors (no PowerShell for
    the demo guest, no Hyper-V here) are never retried; the password is resolved once, before
    the first attempt.

    ``booted_after=T`` (with ``wait``) also waits until the guest's last boot time is later than
    ``T`` — take ``T`` from :func:`last_boot_time` before ``Restart-Computer``. Without it a
    reconnect right after ``Restart-Computer`` can reach the guest *before* it shuts down, as
    ``Restart-Computer`` returns first.
    """
    if not isinstance(target, str) or not target.strip():
        raise ValueError(f"target must be a VM or host name, not {target!r}")
    if isinstance(password, str):
        # At the API boundary: from here on no frame (this one, the retry closure, the
        # transport's) holds the plain str, which tracebacks printing locals (IPython's
        # %xmode Verbose) would show. The transport reveals it only at its own send.
        password = SecureString(password)
    if via != "auto" and via not in OPENERS:
        raise ValueError(f"via must be one of auto, {', '.join(OPENERS)}, not {via!r}")
    if record is not None and replay is not None:
        raise ValueError("give record= or replay=, not both")
    if replay is None and record is None:
        replay = _environment_path(recording.REPLAY_ENV, "replay", target)
    request = Request(
        target, via=via, username=username, password=password, credential=credential,
        configuration=configuration, executable=executable, allow_legacy=allow_legacy,
        host_ui=host_ui, timeout=timeout, host=host, host_username=host_username,
        host_password=host_password, host_credential=host_credential,
        host_options=dict(host_options or {}),
        replay=None if replay is None else Path(replay),
    )
    if replay is not None or via == "replay":
        return OPENERS["replay"](request)
    chosen, opener = _choose(request)
    if wait and chosen in ("direct", "hop"):  # the guest's account is ours to look up
        request = _passwords_resolved(request)  # asked once, not at every attempt
    session = _retry_while_unreachable(
        lambda: _opened(opener, request, booted_after), wait or 0.0
    )
    if record is None:
        record = _environment_path(recording.RECORD_ENV, "record", target)
    if record is None:
        return session
    try:
        return recording.RecordingSession(session, record)
    except BaseException:
        session.close()
        raise


def _environment_path(variable: str, mode: str, target: str) -> Path | None:
    """``DIR/<target>.hvrec.json`` (``-2``, ``-3`` … for later sessions) when ``variable``
    names a directory, for CI runs that record or replay every session."""
    directory = os.environ.get(variable)
    return recording.next_recording_path(mode, directory, target) if directory else None


def _choose(request: Request) -> tuple[str, Opener]:
    """The opener for ``request`` and its name (``"hop"``: a VM behind a Hyper-V host)."""
    if request.host is not None or hop.local_hop_applies(request.target, request.via):
        return "hop", _open_remote
    via = _auto_via(request.target) if request.via == "auto" else request.via
    return via, OPENERS[via]


def _passwords_resolved(request: Request) -> Request:
    """``request`` with the guest's (and a WinRM host's) password looked up now — from
    ``HVMAGIC_PASSWORD``, the keyring or a prompt — so retries do not ask again."""
    username, password, credential = request.username, request.password, request.credential
    if credential is not None:
        username = username or credential.username
        password = password if password is not None else credential.password
        credential = None
    if username:
        password = get_password(username, password)
    host_password = request.host_password
    if request.host is not None and request.via in ("auto", "winrm") \
            and request.host_credential is None:
        host_password = hop.winrm_host_password(request.host_username, host_password)
    return replace(request, username=username, password=password, credential=credential,
                   host_password=host_password)


def _opened(opener: Opener, request: Request, booted_after: _dt.datetime | None) -> SessionLike:
    """One attempt: open, and with ``booted_after`` refuse a guest that has not restarted."""
    session = opener(request)
    if booted_after is None:
        return session
    try:
        booted = last_boot_time(session)
    except BaseException:
        session.close()
        raise
    if not _later(booted, booted_after):
        session.close()
        raise _NotRestartedYet(
            f"{request.target!r} answers but has not restarted yet (last boot {booted})"
        )
    return session


#: PowerShell 5.1 and 7 both have it; the value crosses as a DateTime with the guest's offset
LAST_BOOT_SCRIPT = "(Get-CimInstance -ClassName Win32_OperatingSystem).LastBootUpTime"


def last_boot_time(session: SessionLike) -> _dt.datetime:
    """When the guest last booted (``Win32_OperatingSystem.LastBootUpTime``)."""
    output = session.run(LAST_BOOT_SCRIPT).output
    if len(output) != 1 or not isinstance(output[0], _dt.datetime):
        raise ProtocolError(f"the guest answered {output!r} for its last boot time")
    return output[0]


def _later(value: _dt.datetime, reference: _dt.datetime) -> bool:
    if (value.tzinfo is None) != (reference.tzinfo is None):  # compare wall clocks then
        value, reference = value.replace(tzinfo=None), reference.replace(tzinfo=None)
    return value > reference


class _NotRestartedYet(TransportError):
    """Internal: connected, but to the guest as it was before the restart; retried."""


def _retry_while_unreachable(
    attempt: Callable[[], SessionLike], wait: float,
    sleep: Callable[[float], None] = time.sleep,
) -> SessionLike:
    deadline = time.monotonic() + wait
    delay = 0.5
    while True:
        try:
            return attempt()
        except (ConnectionError, TimeoutError) as exc:  # TransportError is a ConnectionError
            # only "unreachable" is worth waiting for: a guest that refuses (credentials, the
            # legacy handshake) or a platform that cannot connect answers the same next time
            if isinstance(exc, (CredentialError, UnsupportedPlatformError,
                                LegacyGuestRefusedError)):
                raise
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise
            sleep(min(delay, remaining))
            delay = min(delay * 1.5, 5.0)


def _auto_via(target: str) -> str:
    if target == "sim":
        return "sim"
    if sys.platform == "win32" and sys.version_info >= (3, 12):
        return "direct"
    raise UnsupportedPlatformError(
        f"PowerShell Direct to {target!r} needs a Windows Hyper-V host with CPython 3.12+ "
        f"(this is {sys.platform}, Python {sys.version_info.major}.{sys.version_info.minor}). "
        "Alternatives: via='process' for a local pwsh, or hvmagic.connect('sim') for the "
        "demo guest (a local PowerShell with simulated Windows data); from a workstation, "
        "host='HV01' reaches the VM through its Hyper-V host (via='winrm' or 'ssh')."
    )
