"""Fleets: one script on many guests, the way ``Invoke-Command -VMName a,b,c`` does it.

(The module is ``fleets`` so that ``hvmagic.fleet`` stays the function: a submodule of that
name would replace the package attribute once imported.)

``hvmagic.fleet(["web*", "db1"]).run(script)`` runs ``script`` in every target's session, at
most ``throttle`` at a time (``-ThrottleLimit``, default 32), and returns a :class:`FleetResult`
holding every target's :class:`~hvmagic.session.Result` — or, for a target that failed, timed
out, broke (its guest rebooted or died) or could not be reached, what arrived before that and
why. One target's trouble never costs another target its output.

Targets
-------
A target is a VM name, a glob (``web*``) or a :class:`Target` (name, Hyper-V host, extra
:func:`hvmagic.connect` keyword arguments). Names and globs are resolved on each host given as
``hosts=`` (no host: this machine) when the fleet first runs: a glob — and, with several hosts,
a plain name, since it lives on one of them — by ``Get-VM -Name`` on that host, running VMs only
unless ``running_only=False``. Resolution goes through a *resolver* (``resolver=``) so it can be
replaced where there is no Hyper-V (tests, a CMDB); a host that cannot be asked is reported as
one ``Unreachable`` row named after the pattern instead of failing the fleet.

Sessions
--------
Sessions open lazily, on a target's first run, and persist between runs like single sessions
(state, variables, modules); a session that broke (guest rebooted, process died, a stop went
unanswered) is dropped and the next run connects again. ``close()`` (or ``with``) closes them.
Sessions the fleet was *given* (``sessions=``, the magics' open sessions) are never closed by it.

Threads and failure rules
-------------------------
``run`` uses one thread per running target. Per-target outcome states (:data:`STATES`):
``Completed`` (non-terminating errors only count in ``Errors``), ``Failed`` (terminating
error), ``TimedOut`` (``timeout=`` per target; the pipeline is stopped), ``Broken`` (the session
died mid-run: partial output kept, reconnect next run), ``Unreachable`` (no session could be
opened), ``Stopped``/``NotStarted`` (interrupted). A KeyboardInterrupt in the caller stops every
running pipeline (:meth:`Session.stop`), waits for them within the stop grace and raises
:class:`FleetInterrupted` carrying the :class:`FleetResult` of what arrived.

``on_event(target, stream, record)`` is called live, from the targets' threads but never two
at once (a lock serializes it, so a callback need not be thread-safe).

Credentials
-----------
``credentials`` maps a target name, ``host/name`` or glob to a :class:`PSCredential`, a user
name (its password then comes from ``HVMAGIC_PASSWORD``/keyring/prompt as for ``connect``) or
a callable ``(Target) -> either``; exact names win over globs, globs match in mapping order.
They are handed to the connect function only — never stored on results or shown.

Dask
----
``cluster=<distributed.Client>`` runs each target on the worker serving its host; see
:mod:`hvmagic.fleet_dask`. A :class:`Fleet` only knows the :class:`RemoteRunner` it is given;
:func:`hvmagic.fleet` (:mod:`hvmagic.fleet_factory`) builds the Dask one, so this module never
imports Dask's backend (which imports this module).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import fnmatch
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from hvmagic.clixml.values import PSCredential
from hvmagic.connection import connect
from hvmagic.errors import (
    FleetError,
    HvMagicError,
    PipelineTimeoutError,
    RemoteError,
    SessionBrokenError,
    UnsupportedPlatformError,
)
from hvmagic.session import STOP_TIMEOUT
from hvmagic.sessionlike import RESULT_LISTS, Result, SessionLike

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

__all__ = [
    "DEFAULT_THROTTLE",
    "RESOLVE_SCRIPT",
    "STATES",
    "Fleet",
    "FleetInterrupted",
    "FleetResult",
    "HostShellResolver",
    "RemoteRunner",
    "SessionPool",
    "Target",
    "TargetResult",
]

#: ``Invoke-Command``'s default ``-ThrottleLimit``
DEFAULT_THROTTLE = 32

STATES = ("Completed", "Failed", "TimedOut", "Broken", "Unreachable", "Stopped", "NotStarted")

_GLOB_CHARS = frozenset("*?[")
_WAIT_POLL = 0.2  # the caller's wait loop wakes this often, so Ctrl-C is handled promptly


@dataclass(frozen=True)
class Target:
    """One guest of a fleet: a VM ``name`` on Hyper-V ``host`` (``None``: this machine).

    ``options`` are extra keyword arguments for the connect function (``via``, ``executable``,
    ``configuration`` …); they take no part in equality: a VM is its host and name.
    """

    name: str
    host: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def label(self) -> str:
        """``name``, or ``host/name`` for a VM on a named host (unique within a fleet)."""
        return self.name if self.host is None else f"{self.host}/{self.name}"

    @property
    def key(self) -> tuple[str, str]:
        # Hyper-V compares VM and host names case-insensitively
        return ((self.host or "").casefold(), self.name.casefold())

    def __repr__(self) -> str:
        return f"Target({self.label!r})"


CredentialValue = PSCredential | str | None
CredentialSource = CredentialValue | Callable[[Target], CredentialValue]
ConnectFunction = Callable[..., SessionLike]
#: ``resolver(host, pattern, running_only=...)`` → the VM names on ``host`` matching ``pattern``
Resolver = Callable[..., list[str]]
OnFleetEvent = Callable[[Target, str, Any], None]


class RemoteRunner(Protocol):
    """Runs a fleet's targets elsewhere (the Dask runner of :mod:`hvmagic.fleet_dask`): the
    fleet hands it name resolution and runs and keeps its own bookkeeping."""

    def resolve(self, host: str | None, pattern: str, *, running_only: bool) -> list[str]: ...

    def run(
        self, targets: list[Target], script: str, parameters: Mapping[str, Any] | None,
        timeout: float | None, on_event: OnFleetEvent | None, throttle: int, started: float,
    ) -> dict[tuple[str, str], TargetResult]: ...

    def close(self) -> None: ...


def is_glob(text: str) -> bool:
    return any(char in _GLOB_CHARS for char in text)


def split_targets(spec: str) -> list[str]:
    """``"web*, db1"`` → ``["web*", "db1"]``."""
    return [part.strip() for part in spec.split(",") if part.strip()]


# --------------------------------------------------------------------------------------------
# per-target results


@dataclass
class TargetResult:
    """What one target produced in one fleet run; picklable (it crosses Dask workers)."""

    target: Target
    state: str = "NotStarted"
    #: the target's Result: complete, or what arrived before the failure (empty if none)
    result: Result = field(default_factory=Result)
    #: one line saying why the target did not complete (the terminating error's message …)
    error: str | None = None
    #: the exception class behind :attr:`error`, by name (exceptions are not kept: they may
    #: hold sessions and do not all survive pickling)
    error_type: str | None = None
    #: seconds from the start of this target's work (connect included) to its end
    duration: float = 0.0

    @property
    def name(self) -> str:
        return self.target.name

    @property
    def host(self) -> str | None:
        return self.target.host

    @property
    def ok(self) -> bool:
        """Completed without any error record."""
        return self.state == "Completed" and not self.result.errors

    def __repr__(self) -> str:
        why = f": {self.error}" if self.error else ""
        return f"<TargetResult {self.target.label} {self.state}{why} {self.result!r}>"


def _row_count(value: Any) -> int:
    # to_dataframe enumerates one level of a list written as one object; rows must line up
    return len(value) if isinstance(value, list) else 1


class FleetResult:
    """Every target's outcome of one :meth:`Fleet.run`, in target order."""

    def __init__(self, targets: Iterable[TargetResult], duration: float = 0.0) -> None:
        self.targets: list[TargetResult] = list(targets)
        #: wall-clock seconds of the whole run
        self.duration = duration

    def __len__(self) -> int:
        return len(self.targets)

    def __iter__(self) -> Iterator[TargetResult]:
        return iter(self.targets)

    def __getitem__(self, label: str) -> TargetResult:
        """The outcome for ``label`` (``name`` or ``host/name``; case-insensitive)."""
        wanted = label.casefold()
        matches = [t for t in self.targets if t.target.label.casefold() == wanted]
        if not matches:
            matches = [t for t in self.targets if t.target.name.casefold() == wanted]
        if len(matches) != 1:
            what = "no target" if not matches else f"{len(matches)} targets"
            raise KeyError(f"{what} named {label!r} in this fleet result")
        return matches[0]

    @property
    def results(self) -> dict[str, Result]:
        """``{label: Result}`` for every target (partial or empty where it failed)."""
        return {t.target.label: t.result for t in self.targets}

    @property
    def failed(self) -> list[TargetResult]:
        """Targets that did not complete cleanly (any state but Completed, or error records)."""
        return [t for t in self.targets if not t.ok]

    @property
    def ok(self) -> bool:
        return not self.failed

    def frame(self, columns: str | list[str] = "default") -> pd.DataFrame:
        """Every target's output as one DataFrame with ``VMName`` and ``HostName`` first.

        The objects are framed together (one column set for the fleet, by PowerShell's default
        columns of each type) and each row is labelled with the VM and host it came from.
        """
        import pandas as pd

        from hvmagic.frames import to_dataframe

        values: list[Any] = []
        names: list[str] = []
        hosts: list[str | None] = []
        for outcome in self.targets:
            output = outcome.result.output
            rows = sum(_row_count(v) for v in output)
            values.extend(output)
            names.extend([outcome.target.name] * rows)
            hosts.extend([outcome.target.host] * rows)
        frame = to_dataframe(values, columns)
        # objects relayed by a host hop may carry their own VMName/PSComputerName: ours wins,
        # it is the target the fleet ran on
        frame = frame.drop(columns=[c for c in ("VMName", "HostName") if c in frame.columns])
        frame.insert(0, "HostName", pd.Series(hosts, index=frame.index, dtype=object))
        frame.insert(0, "VMName", pd.Series(names, index=frame.index, dtype=object))
        return frame

    @property
    def status(self) -> pd.DataFrame:
        """One row per target: VMName, HostName, State, Duration (s), Output, Errors, Error."""
        import pandas as pd

        rows = [
            {
                "VMName": t.target.name,
                "HostName": t.target.host,
                "State": t.state,
                "Duration": round(t.duration, 3),
                "Output": sum(_row_count(v) for v in t.result.output),
                "Errors": len(t.result.errors),
                "Error": t.error,
            }
            for t in self.targets
        ]
        columns = ["VMName", "HostName", "State", "Duration", "Output", "Errors", "Error"]
        return pd.DataFrame(rows, columns=columns)

    def raise_for_errors(self) -> None:
        """Raise :class:`~hvmagic.errors.FleetError` (carrying this result) unless every target
        completed without error records."""
        failed = self.failed
        if not failed:
            return
        shown = ", ".join(
            f"{t.target.label} ({t.state}"
            + (f": {t.error}" if t.error else f", {len(t.result.errors)} error(s)")
            + ")"
            for t in failed[:5]
        )
        more = f" and {len(failed) - 5} more" if len(failed) > 5 else ""
        raise FleetError(
            f"{len(failed)} of {len(self.targets)} target(s) did not complete cleanly: "
            f"{shown}{more}",
            result=self,
        )

    def __repr__(self) -> str:
        counts: dict[str, int] = {}
        for t in self.targets:
            counts[t.state] = counts.get(t.state, 0) + 1
        summary = ", ".join(f"{n} {state}" for state, n in counts.items()) or "no targets"
        return f"<FleetResult {len(self.targets)} target(s) in {self.duration:.3f}s: {summary}>"


class FleetInterrupted(KeyboardInterrupt):
    """Ctrl-C during :meth:`Fleet.run`: every running pipeline was stopped; ``result`` holds
    what arrived (``Stopped``/``NotStarted`` for the targets cut short)."""

    def __init__(self, message: str, result: FleetResult) -> None:
        super().__init__(message)
        self.result = result


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
    return connect(target.name, **options)


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

    ``open_host(host)`` returns a session *on the Hyper-V host* (not in a guest); the default
    opens a local ``powershell.exe -s`` for ``host=None`` on Windows and refuses anything else
    (a remote host's own shell comes with the remote-host transports; pass your own opener, or
    use a Dask fleet, whose workers resolve on their own hosts). Host sessions are kept.
    """

    def __init__(self, open_host: Callable[[str | None], SessionLike] | None = None) -> None:
        self._open_host = open_host or _open_local_host_shell
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


def _open_local_host_shell(host: str | None) -> SessionLike:
    if host is not None:
        raise UnsupportedPlatformError(
            f"cannot ask Hyper-V host {host!r} for its VMs from here: name the VMs, pass "
            "resolver=, or run the fleet on Dask (each worker resolves on its own host)"
        )
    if sys.platform != "win32":
        raise UnsupportedPlatformError(
            "resolving VM names and globs needs Get-VM on a Windows Hyper-V host: name the "
            "VMs explicitly or pass resolver="
        )
    return connect("localhost", via="process", executable="powershell.exe")


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

    def close(self) -> None:
        with self._lock:
            self._closed = True
            owned = [s for k, s in self._sessions.items() if k not in self._adopted]
            self._sessions.clear()
            self._adopted.clear()
        for session in owned:
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


# --------------------------------------------------------------------------------------------
# the fleet


class Fleet:
    """Many targets, one script; see the module docstring. Create with :func:`fleet`."""

    def __init__(
        self,
        targets: Sequence[str | Target],
        *,
        hosts: Sequence[str | None] | None = None,
        throttle: int = DEFAULT_THROTTLE,
        timeout: float | None = None,
        connect: ConnectFunction | None = None,
        credentials: Mapping[str, CredentialSource] | None = None,
        connect_timeout: float | None = None,
        resolver: Resolver | None = None,
        running_only: bool = True,
        sessions: Mapping[str | Target, SessionLike] | None = None,
        remote: RemoteRunner | None = None,
    ) -> None:
        if throttle < 1:
            raise ValueError("throttle must be at least 1")
        if timeout is not None and timeout <= 0:
            raise ValueError("timeout must be a positive number of seconds")
        self.throttle = throttle
        self.timeout = timeout
        self.running_only = running_only
        self._specs = list(targets)
        self._hosts: list[str | None] = list(hosts) if hosts else [None]
        self._resolver = resolver
        self._own_resolver: HostShellResolver | None = None
        self._resolved: list[TargetResult] | None = None
        self._connect = connect
        self._credentials = credentials
        adopted = {
            (key if isinstance(key, Target) else Target(key)): session
            for key, session in (sessions or {}).items()
        }
        self._pool = SessionPool(
            connect or connect_target, credentials=credentials,
            connect_timeout=connect_timeout, adopted=adopted,
        )
        self._run_lock = threading.Lock()
        self._remote = remote

    # -- targets ---------------------------------------------------------------------------
    @property
    def targets(self) -> list[Target]:
        """The resolved targets (resolving on first use); see :meth:`resolve`."""
        return [t.target for t in self._resolve() if t.state == "NotStarted"]

    def resolve(self, refresh: bool = False) -> list[Target]:
        """Resolve names and globs on their hosts (again, with ``refresh``: VMs come and go)."""
        if refresh:
            self._resolved = None
        return self.targets

    def _resolve(self) -> list[TargetResult]:
        if self._resolved is None:
            self._resolved = self._resolve_specs()
        return self._resolved

    def _resolve_specs(self) -> list[TargetResult]:
        resolved: list[TargetResult] = []
        seen: set[tuple[str, str]] = set()

        def add(outcome: TargetResult) -> None:
            if outcome.target.key not in seen:
                seen.add(outcome.target.key)
                resolved.append(outcome)

        for spec in self._specs:
            if isinstance(spec, Target):
                add(TargetResult(spec))
                continue
            for pattern in split_targets(spec):
                if not is_glob(pattern) and len(self._hosts) == 1:
                    add(TargetResult(Target(pattern, self._hosts[0])))
                    continue
                for host in self._hosts:
                    try:
                        names = self._resolve_on(host, pattern)
                    except Exception as exc:
                        # one unreachable host must not hide the others' VMs: report it
                        unreachable = TargetResult(Target(pattern, host), state="Unreachable")
                        unreachable.error = f"could not resolve {pattern!r}: {_one_line(exc)}"
                        unreachable.error_type = type(exc).__name__
                        add(unreachable)
                        continue
                    for name in names:
                        add(TargetResult(Target(name, host)))
        return resolved

    def _resolve_on(self, host: str | None, pattern: str) -> list[str]:
        if self._remote is not None and self._resolver is None:
            return self._remote.resolve(host, pattern, running_only=self.running_only)
        resolver = self._resolver
        if resolver is None:
            if self._own_resolver is None:
                self._own_resolver = HostShellResolver()
            resolver = self._own_resolver
        return list(resolver(host, pattern, running_only=self.running_only))

    # -- running ---------------------------------------------------------------------------
    def run(
        self,
        script: str,
        parameters: Mapping[str, Any] | None = None,
        timeout: float | None = None,
        on_event: OnFleetEvent | None = None,
    ) -> FleetResult:
        """Run ``script`` (with the same ``parameters``) on every target; see the module
        docstring for states, interrupts and callbacks. ``timeout`` is per target."""
        if not isinstance(script, str):
            raise TypeError(f"script must be a str, not {type(script).__name__}")
        timeout = self.timeout if timeout is None else timeout
        if timeout is not None and timeout <= 0:
            raise ValueError("timeout must be a positive number of seconds")
        if not self._run_lock.acquire(blocking=False):
            raise HvMagicError("this fleet is already running a script; wait for it")
        try:
            started = time.monotonic()
            planned = self._resolve()
            runnable = [t.target for t in planned if t.state == "NotStarted"]
            if self._remote is None:
                return self._run_local(runnable, script, parameters, timeout, on_event, started)
            try:
                outcomes = self._remote.run(runnable, script, parameters, timeout, on_event,
                                          self.throttle, started)
            except FleetInterrupted as exc:
                merged = self._merge({t.target.key: t for t in exc.result}, started)
                raise FleetInterrupted(str(exc), merged) from None
            return self._merge(outcomes, started)
        finally:
            self._run_lock.release()

    def _merge(self, outcomes: dict[tuple[str, str], TargetResult], started: float
               ) -> FleetResult:
        merged = [
            outcomes.get(t.target.key, t) if t.state == "NotStarted" else t
            for t in self._resolve()
        ]
        return FleetResult(merged, time.monotonic() - started)

    def _run_local(
        self, targets: list[Target], script: str, parameters: Mapping[str, Any] | None,
        timeout: float | None, on_event: OnFleetEvent | None, started: float,
    ) -> FleetResult:
        outcomes: dict[tuple[str, str], TargetResult] = {}
        running: dict[tuple[str, str], SessionLike] = {}
        cancelled = threading.Event()
        callback_lock = threading.Lock()

        def events_for(target: Target) -> Callable[[str, Any], None] | None:
            if on_event is None:
                return None

            def forward(stream: str, record: Any) -> None:
                with callback_lock:
                    on_event(target, stream, record)

            return forward

        if not targets:
            return self._merge(outcomes, started)
        executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=min(self.throttle, len(targets)), thread_name_prefix="hvmagic-fleet"
        )
        futures = {
            executor.submit(
                run_target, self._pool, target, script, parameters, timeout,
                events_for(target), running, cancelled,
            ): target
            for target in targets
        }
        try:
            pending = set(futures)
            while pending:
                finished, pending = concurrent.futures.wait(
                    pending, timeout=_WAIT_POLL, return_when=concurrent.futures.FIRST_COMPLETED
                )
                for future in finished:
                    outcomes[futures[future].key] = future.result()
        except KeyboardInterrupt:
            cancelled.set()
            for session in list(running.values()):
                with contextlib.suppress(Exception):
                    session.stop()
            # every stopped pipeline ends within the stop grace (else its session is broken)
            concurrent.futures.wait(futures, timeout=STOP_TIMEOUT + 2.0)
            for future, target in futures.items():
                if future.done() and not future.cancelled() and target.key not in outcomes:
                    outcomes[target.key] = future.result()
            executor.shutdown(wait=False, cancel_futures=True)
            result = self._merge(outcomes, started)
            stopped = sum(t.state in ("Stopped", "NotStarted") for t in result)
            raise FleetInterrupted(
                f"interrupted: {stopped} of {len(result)} target(s) stopped or not started",
                result,
            ) from None
        executor.shutdown(wait=True)
        return self._merge(outcomes, started)

    # -- lifetime --------------------------------------------------------------------------
    def close(self) -> None:
        """Close the sessions the fleet opened (not adopted ones) and any host shells."""
        self._pool.close()
        if self._own_resolver is not None:
            self._own_resolver.close()
        if self._remote is not None:
            self._remote.close()

    def __enter__(self) -> Fleet:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        where = "on Dask" if self._remote is not None else f"throttle {self.throttle}"
        count = f"{len(self._resolved)} target(s)" if self._resolved is not None else (
            f"{len(self._specs)} spec(s), unresolved")
        return f"<Fleet {count}, {where}, {len(self._pool)} open session(s)>"
