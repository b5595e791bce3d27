"""Reaching a fleet's targets: credentials per target, connecting, resolving names and globs
on Hyper-V hosts (``Get-VM`` in a shell on each host), the pool of open sessions, and running
one target with every failure turned into a state. See :mod:`hvmagic.fleets`.
"""

from __future__ import annotations

import contextlib
import fnmatch
import sys
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from hvmagic import connection
from hvmagic.clixml.values import PSCredential
from hvmagic.errors import (
    HvMagicError,
    PipelineTimeoutError,
    RemoteError,
    SessionBrokenError,
    UnsupportedPlatformError,
)
from hvmagic.fleet_results import (
    ConnectFunction,
    CredentialSource,
    CredentialValue,
    Target,
    TargetResult,
    is_glob,
)
from hvmagic.sessionlike import RESULT_LISTS, Result, SessionLike

__all__ = [
    "RESOLVE_SCRIPT",
    "HostShellResolver",
    "SessionPool",
    "connect_target",
    "credential_for",
    "credential_kwargs",
    "host_shell_opener",
    "open_host_shell",
    "run_target",
]


# --------------------------------------------------------------------------------------------
# credentials, connecting, resolving


def credential_for(
    target: Target, credentials: Mapping[str, CredentialSource] | None
) -> CredentialValue:
    """The credential (or user name) ``credentials`` gives ``target``: an exact name or
    ``host/name`` first, then the first glob that matches, else ``None``."""
    if not credentials:
        return None
    names = {target.name.casefold(), target.label.casefold()}
    chosen: CredentialSource = None
    found = False
    for pattern, value in credentials.items():
        if pattern.casefold() in names:
            chosen, found = value, True
            break
    if not found:
        for pattern, value in credentials.items():
            folded = pattern.casefold()
            if is_glob(pattern) and any(fnmatch.fnmatchcase(n, folded) for n in names):
                chosen, found = value, True
                break
    if callable(chosen):
        chosen = chosen(target)
    if chosen is not None and not isinstance(chosen, (PSCredential, str)):
        raise TypeError(
            f"credentials for {target.label!r} must be a PSCredential, a user name or None, "
            f"not {type(chosen).__name__}"
        )
    return chosen


def credential_kwargs(value: CredentialValue) -> dict[str, Any]:
    """``connect`` keyword arguments for a credential value."""
    if isinstance(value, PSCredential):
        return {"credential": value}
    if isinstance(value, str):
        return {"username": value}
    return {}


def connect_target(target: Target, **kwargs: Any) -> SessionLike:
    """The default connect function: :func:`hvmagic.connect` with the target's options,
    ``host=`` when the target names one, and the fleet's credential/timeout keywords."""
    options = {**target.options, **kwargs}
    if target.host is not None:
        options.setdefault("host", target.host)
    return connection.connect(target.name, **options)


#: Lists the running (or all) VMs on a Hyper-V host whose name matches a wildcard pattern.
#: ``Get-VM -Name`` takes PowerShell wildcards itself; a name that matches nothing is not an
#: error here (the fleet reports the pattern as matching nothing instead).
RESOLVE_SCRIPT = """\
$__fleet_vms = @(Get-VM -Name $FleetPattern -ErrorAction SilentlyContinue)
if ($FleetRunningOnly) {
    $__fleet_vms = @($__fleet_vms | Where-Object { "$($_.State)" -eq 'Running' })
}
$__fleet_vms | ForEach-Object { [string]$_.Name }
Remove-Variable -Name __fleet_vms -ErrorAction Ignore
"""


class HostShellResolver:
    """Resolve names and globs with ``Get-VM`` in a PowerShell session on the host.

    ``open_host(host)`` returns a session *on the Hyper-V host* (not in a guest); the default,
    :func:`open_host_shell`, opens a local ``powershell.exe -s`` for ``host=None`` on Windows and
    refuses a named host (give ``open_host=`` — :func:`hvmagic.fleet` does, from its connect
    options, through the same SSH/WinRM transport as the hop to that host's VMs). Host sessions
    are kept until :meth:`close`.
    """

    def __init__(self, open_host: Callable[[str | None], SessionLike] | None = None) -> None:
        self._open_host = open_host or open_host_shell
        self._sessions: dict[str, SessionLike] = {}
        self._lock = threading.Lock()

    def __call__(self, host: str | None, pattern: str, *, running_only: bool = True) -> list[str]:
        key = (host or "").casefold()
        with self._lock:
            session = self._sessions.get(key)
            if session is None or getattr(session, "broken", False):
                session = self._open_host(host)
                self._sessions[key] = session
            result = session.run(
                RESOLVE_SCRIPT,
                parameters={"FleetPattern": pattern, "FleetRunningOnly": running_only},
            )
        return [str(name) for name in result.output]

    def close(self) -> None:
        with self._lock:
            sessions, self._sessions = list(self._sessions.values()), {}
        for session in sessions:
            with contextlib.suppress(Exception):
                session.close()


#: host options that belong to the hop into a VM, not to the host's own shell
_HOP_ONLY_OPTIONS = ("pssession_arguments", "vm_id")


def open_host_shell(
    host: str | None,
    *,
    via: str | None = None,
    host_username: str | None = None,
    host_password: Any = None,
    host_credential: PSCredential | None = None,
    host_options: Mapping[str, Any] | None = None,
    timeout: float | None = None,
    connect: Callable[..., SessionLike] | None = None,
) -> SessionLike:
    """A PowerShell session on Hyper-V ``host`` itself, to ask it for its VMs.

    A named host is reached as :func:`hvmagic.connect` reaches it for a hop (``via`` ``"ssh"`` or
    ``"winrm"``, default WinRM; the same account and ``host_options``, less the VM-only ones);
    ``None`` (or ``via="process"``) is this machine's ``powershell.exe`` on Windows.
    """
    if host is None or via == "process":
        if host is not None and host.lower() not in ("localhost", ".", "127.0.0.1", "::1"):
            raise ValueError(f"via='process' is this machine; host={host!r} is another one")
        if sys.platform != "win32":
            raise UnsupportedPlatformError(
                "resolving VM names and globs needs Get-VM on a Windows Hyper-V host: name the "
                "VMs explicitly, give hosts= reached over ssh/winrm, or pass resolver="
            )
        name, via, options = "localhost", "process", {"executable": "powershell.exe"}
    else:
        name = host
        via = "winrm" if via in (None, "auto") else via
        if via not in ("ssh", "winrm"):
            raise ValueError(f"a Hyper-V host is reached via ssh or winrm, not {via!r}")
        options = {
            "host_username": host_username, "host_password": host_password,
            "host_credential": host_credential, "timeout": timeout,
            "host_options": {k: v for k, v in (host_options or {}).items()
                             if k not in _HOP_ONLY_OPTIONS},
        }
    return (connect or connection.connect)(name, via=via, **options)


def host_shell_opener(connect_options: Mapping[str, Any]) -> Callable[[str | None], SessionLike]:
    """Opens a shell on a host the way a fleet with these ``connect_options`` reaches the
    host's VMs (its ``via``, host account and ``host_options``): the opener a
    :class:`HostShellResolver` takes."""
    options = dict(connect_options)

    def open_host(host: str | None) -> SessionLike:
        return open_host_shell(
            host, via=options.get("via"), host_username=options.get("host_username"),
            host_password=options.get("host_password"),
            host_credential=options.get("host_credential"),
            host_options=options.get("host_options"), timeout=options.get("timeout"),
        )

    return open_host


# --------------------------------------------------------------------------------------------
# sessions


class SessionPool:
    """One session per target, opened on first use, replaced once broken; thread-safe."""

    def __init__(
        self,
        connect: ConnectFunction = connect_target,
        *,
        credentials: Mapping[str, CredentialSource] | None = None,
        connect_timeout: float | None = None,
        adopted: Mapping[Target, SessionLike] | None = None,
    ) -> None:
        self._connect = connect
        self._credentials = credentials
        self._connect_timeout = connect_timeout
        self._lock = threading.Lock()
        self._sessions: dict[tuple[str, str], SessionLike] = {}
        self._adopted: set[tuple[str, str]] = set()
        self._closed = False
        for target, session in (adopted or {}).items():
            self._sessions[target.key] = session
            self._adopted.add(target.key)

    def get(
        self, target: Target, *, connect: ConnectFunction | None = None,
        credential: Mapping[str, Any] | None = None,
    ) -> SessionLike:
        """The target's open session, connecting when there is none or it broke.

        ``connect``/``credential`` (connect keywords) override the pool's own for this
        connection (a Dask fleet sends them with each task)."""
        key = target.key
        with self._lock:
            if self._closed:
                raise SessionBrokenError("this fleet is closed")
            session = self._sessions.get(key)
        if session is not None and not _unusable(session):
            return session
        if session is not None:
            self.discard(target)
        kwargs = dict(credential) if credential else credential_kwargs(
            credential_for(target, self._credentials))
        if self._connect_timeout is not None:
            kwargs["timeout"] = self._connect_timeout
        # outside the lock: connects run in parallel
        session = (connect or self._connect)(target, **kwargs)
        with self._lock:
            if self._closed:
                with contextlib.suppress(Exception):
                    session.close()
                raise SessionBrokenError("this fleet was closed while connecting")
            self._sessions[key] = session
            self._adopted.discard(key)
        return session

    def discard(self, target: Target) -> None:
        """Forget the target's session (closing it unless it was adopted)."""
        with self._lock:
            session = self._sessions.pop(target.key, None)
            adopted = target.key in self._adopted
            self._adopted.discard(target.key)
        if session is not None and not adopted:
            with contextlib.suppress(Exception):
                session.close()

    def peek(self, target: Target) -> SessionLike | None:
        with self._lock:
            return self._sessions.get(target.key)

    def __len__(self) -> int:
        with self._lock:
            return len(self._sessions)

    def close(self, *, keep_sessions: bool = False) -> None:
        """Close the sessions opened here (not adopted ones); with ``keep_sessions`` only
        forget them (the caller has taken them over)."""
        with self._lock:
            self._closed = True
            owned = [s for k, s in self._sessions.items() if k not in self._adopted]
            self._sessions.clear()
            self._adopted.clear()
        for session in [] if keep_sessions else owned:
            with contextlib.suppress(Exception):
                session.close()


def _unusable(session: SessionLike) -> bool:
    # getattr: an adopted session (%vmconnect --session) may be any object with run()
    return bool(getattr(session, "broken", False) or getattr(session, "closed", False))


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def run_target(
    pool: SessionPool,
    target: Target,
    script: str,
    parameters: Mapping[str, Any] | None,
    timeout: float | None,
    on_event: Callable[[str, Any], None] | None = None,
    running: dict[tuple[str, str], SessionLike] | None = None,
    cancelled: threading.Event | None = None,
    *,
    connect: ConnectFunction | None = None,
    credential: Mapping[str, Any] | None = None,
) -> TargetResult:
    """Run ``script`` on one target; every failure becomes a state on the returned outcome.

    ``running`` (shared with whoever may interrupt) holds the target's session while its
    pipeline runs; ``cancelled`` set before the start means the target is not started.
    """
    started = time.monotonic()
    outcome = TargetResult(target)
    if cancelled is not None and cancelled.is_set():
        return outcome  # NotStarted
    try:
        session = pool.get(target, connect=connect, credential=credential)
    except Exception as exc:
        outcome.state, outcome.error = "Unreachable", _one_line(exc)
        outcome.error_type = type(exc).__name__
        outcome.duration = time.monotonic() - started
        return outcome
    # Records are kept as they arrive, so a session that dies mid-run (which raises without a
    # result) still leaves its partial output on the outcome.
    partial = outcome.result

    def record(stream: str, value: Any) -> None:
        getattr(partial, RESULT_LISTS.get(stream, "output")).append(value)
        if on_event is not None:
            on_event(stream, value)

    if running is not None:
        running[target.key] = session
    try:
        if cancelled is not None and cancelled.is_set():
            return outcome
        outcome.result = session.run(script, parameters=parameters, timeout=timeout,
                                     on_event=record)
        outcome.state = "Completed"
    except PipelineTimeoutError as exc:  # also StopNotAcknowledgedError: broken, reconnect
        stopped_by_us = cancelled is not None and cancelled.is_set()
        outcome.state = "Stopped" if stopped_by_us else "TimedOut"
        outcome.result = exc.result if isinstance(exc.result, Result) else partial
        outcome.error, outcome.error_type = _one_line(exc), type(exc).__name__
    except RemoteError as exc:
        outcome.state = "Failed"
        outcome.result = exc.result if isinstance(exc.result, Result) else partial
        outcome.error = exc.record.message if exc.record is not None else _one_line(exc)
        outcome.error_type = type(exc).__name__
    except SessionBrokenError as exc:
        outcome.state, outcome.error = "Broken", _one_line(exc)
        outcome.error_type = type(exc).__name__
        partial.state = "Failed"
    except HvMagicError as exc:
        outcome.state, outcome.error = "Failed", _one_line(exc)
        outcome.error_type = type(exc).__name__
    except Exception as exc:  # a connect seam or callback bug must not sink the fleet
        outcome.state, outcome.error = "Failed", f"{type(exc).__name__}: {_one_line(exc)}"
        outcome.error_type = type(exc).__name__
    finally:
        if running is not None:
            running.pop(target.key, None)
        outcome.duration = time.monotonic() - started
        if _unusable(session):
            pool.discard(target)  # reconnect on the next run
    if outcome.state == "Completed" and outcome.result.state == "Stopped":
        outcome.state = "Stopped"  # stop() from the interrupt path returns a Stopped result
    return outcome
