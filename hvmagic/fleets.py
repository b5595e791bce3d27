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
``host=``/``hosts=`` (no host: this machine) when the fleet first runs: a glob — and, with
several hosts, a plain name, since it lives on one of them — by ``Get-VM -Name`` in a shell on
that host (:func:`~hvmagic.fleet_sessions.open_host_shell`: reached over SSH or WinRM as the hop
reaches it, with the fleet's ``connect_options``), running VMs only unless
``running_only=False``; each VM found is then reached through its host (:mod:`hvmagic.hop`).
Resolution goes through a *resolver* (``resolver=``) so it can be replaced where there is no
Hyper-V (tests, a CMDB); a host that cannot be asked is reported as one ``Unreachable`` row
named after the pattern instead of failing the fleet. The pieces live in
:mod:`hvmagic.fleet_results` and :mod:`hvmagic.fleet_sessions`; this module re-exports them.

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

``on_event(target, stream, record)`` is called live with each target's records, and
``on_progress(FleetProgress)`` each time a target starts or finishes (targets done of total,
failures counted); both from the targets' threads but never two at once, see
:mod:`hvmagic.fleet_events`.

Credentials
-----------
``credentials`` maps a target name, ``host/name`` or glob to a :class:`PSCredential`, a user
name (its password then comes from ``HVMAGIC_PASSWORD``/keyring/prompt as for ``connect``) or
a callable ``(Target) -> either``; exact names win over globs, globs match in mapping order.
They are handed to the connect function only — never stored on results or shown.

Remote runners
--------------
A :class:`Fleet` given ``remote=`` (a :class:`RemoteRunner`) hands its targets to it instead of
this kernel's threads; :func:`hvmagic.fleet` (:mod:`hvmagic.fleet_factory`) builds the Dask one
(:mod:`hvmagic.fleet_dask`) for ``cluster=``, so this module never imports Dask's runner (which
imports this module).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from hvmagic.errors import HvMagicError
from hvmagic.fleet_events import (
    FleetProgress,
    FleetReporter,
    OnFleetEvent,
    OnFleetProgress,
)
from hvmagic.fleet_results import (
    STATES,
    ConnectFunction,
    CredentialSource,
    CredentialValue,
    FleetInterrupted,
    FleetResult,
    Resolver,
    Target,
    TargetResult,
    frame_outcomes,
    is_glob,
    split_targets,
)
from hvmagic.fleet_sessions import (
    RESOLVE_SCRIPT,
    HostShellResolver,
    SessionPool,
    _one_line,
    connect_target,
    credential_for,
    credential_kwargs,
    host_shell_opener,
    open_host_shell,
    run_target,
)
from hvmagic.session import STOP_TIMEOUT
from hvmagic.sessionlike import SessionLike

__all__ = [
    "DEFAULT_THROTTLE",
    "RESOLVE_SCRIPT",
    "STATES",
    "ConnectFunction",
    "CredentialSource",
    "CredentialValue",
    "Fleet",
    "FleetInterrupted",
    "FleetProgress",
    "FleetResult",
    "HostShellResolver",
    "OnFleetEvent",
    "OnFleetProgress",
    "RemoteRunner",
    "Resolver",
    "SessionPool",
    "Target",
    "TargetResult",
    "connect_target",
    "credential_for",
    "credential_kwargs",
    "frame_outcomes",
    "host_shell_opener",
    "is_glob",
    "open_host_shell",
    "run_target",
    "split_targets",
]

#: ``Invoke-Command``'s default ``-ThrottleLimit``
DEFAULT_THROTTLE = 32

_WAIT_POLL = 0.2  # the caller's wait loop wakes this often, so Ctrl-C is handled promptly


# --------------------------------------------------------------------------------------------
# backends


@runtime_checkable
class RemoteRunner(Protocol):
    """Runs a fleet's targets elsewhere than this kernel's threads (the Dask runner of
    :mod:`hvmagic.fleet_dask`): the fleet hands it name resolution and runs.

    ``run`` returns an outcome per target key (a target it could not place is an outcome too)
    and reports through ``reporter`` (:class:`~hvmagic.fleet_events.FleetReporter`) as it goes;
    on Ctrl-C it stops what runs and raises :class:`FleetInterrupted`. A runner that can keep
    outputs where they ran honours ``lazy`` (outcomes then carry ``remote`` handles) and has a
    ``lazy_frame(outcomes, columns)`` building the lazy frame over them.
    """

    def resolve(self, host: str | None, pattern: str, *, running_only: bool) -> list[str]: ...

    def run(
        self, targets: list[Target], script: str, parameters: Mapping[str, Any] | None,
        timeout: float | None, reporter: FleetReporter, throttle: int, started: float,
        *, lazy: bool = False,
    ) -> dict[tuple[str, str], TargetResult]: ...

    def close(self) -> None: ...


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
        connect_options: Mapping[str, Any] | None = None,
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
        self._connect_options = dict(connect_options or {})
        self._resolver = resolver
        self._own_resolver: HostShellResolver | None = None
        self._resolved: list[TargetResult] | None = None
        self._connect = connect
        self._credentials = credentials
        adopted = {
            (key if isinstance(key, Target) else Target(key)): session
            for key, session in (sessions or {}).items()
        }
        connect_function = connect or connect_target
        if self._connect_options:
            shared = self._connect_options

            def connect_function(target: Target, **kwargs: Any) -> Any:
                return (connect or connect_target)(target, **{**shared, **kwargs})

        self._pool = SessionPool(
            connect_function, credentials=credentials,
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
                self._own_resolver = HostShellResolver(host_shell_opener(self._connect_options))
            resolver = self._own_resolver
        return list(resolver(host, pattern, running_only=self.running_only))

    # -- running ---------------------------------------------------------------------------
    def run(
        self,
        script: str,
        parameters: Mapping[str, Any] | None = None,
        timeout: float | None = None,
        on_event: OnFleetEvent | None = None,
        on_progress: OnFleetProgress | None = None,
        *,
        lazy: bool = False,
    ) -> FleetResult:
        """Run ``script`` (with the same ``parameters``) on every target; see the module
        docstring for states, interrupts and callbacks. ``timeout`` is per target.
        ``on_event``/``on_progress``: live reports (:mod:`hvmagic.fleet_events`); an
        exception a callback raises is re-raised once every target has finished.
        ``lazy`` (Dask fleets): each target's output stays on its worker, for
        :meth:`FleetResult.frame` ``(lazy=True)``; the result here has every other stream."""
        if not isinstance(script, str):
            raise TypeError(f"script must be a str, not {type(script).__name__}")
        if lazy and self._remote is None:
            raise ValueError("lazy=True leaves outputs on Dask workers: it needs a fleet "
                             "with cluster= (a remote runner)")
        timeout = self.timeout if timeout is None else timeout
        if timeout is not None and timeout <= 0:
            raise ValueError("timeout must be a positive number of seconds")
        if not self._run_lock.acquire(blocking=False):
            raise HvMagicError("this fleet is already running a script; wait for it")
        try:
            started = time.monotonic()
            planned = self._resolve()
            runnable = [t.target for t in planned if t.state == "NotStarted"]
            reporter = FleetReporter(
                len(planned), on_event, on_progress,
                finished=[t for t in planned if t.state != "NotStarted"],
            )
            reporter.begin()
            if self._remote is None:
                result = self._run_local(runnable, script, parameters, timeout, reporter,
                                         started)
            else:
                try:
                    outcomes = self._remote.run(runnable, script, parameters, timeout,
                                                 reporter, self.throttle, started, lazy=lazy)
                except FleetInterrupted as exc:
                    merged = self._merge({t.target.key: t for t in exc.result}, started)
                    raise FleetInterrupted(str(exc), merged) from None
                result = self._merge(outcomes, started)
                if lazy:
                    result._lazy_frame = getattr(self._remote, "lazy_frame", None)
            reporter.raise_callback_error()
            return result
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
        timeout: float | None, reporter: FleetReporter, started: float,
    ) -> FleetResult:
        outcomes: dict[tuple[str, str], TargetResult] = {}
        running: dict[tuple[str, str], SessionLike] = {}
        cancelled = threading.Event()

        def one(target: Target) -> TargetResult:
            if cancelled.is_set():
                return TargetResult(target)  # NotStarted: reported by the interrupt path
            reporter.started(target)
            outcome = TargetResult(target, state="Failed")
            try:
                outcome = run_target(self._pool, target, script, parameters, timeout,
                                     reporter.events_for(target), running, cancelled)
            finally:
                reporter.finished(outcome)
            return outcome

        if not targets:
            return self._merge(outcomes, started)
        executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=min(self.throttle, len(targets)), thread_name_prefix="hvmagic-fleet"
        )
        futures = {executor.submit(one, target): target for target in targets}
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
    def close(self, *, keep_sessions: bool = False) -> None:
        """Close the sessions the fleet opened (not adopted ones) and any host shells; with
        ``keep_sessions`` the sessions stay open for whoever took them over (``%%vmps`` keeps
        them across cells)."""
        self._pool.close(keep_sessions=keep_sessions)
        if self._own_resolver is not None:
            self._own_resolver.close()
        if self._remote is not None:
            self._remote.close()

    def __enter__(self) -> Fleet:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        where = (f"on {type(self._remote).__name__}" if self._remote is not None
                 else f"throttle {self.throttle}")
        count = f"{len(self._resolved)} target(s)" if self._resolved is not None else (
            f"{len(self._specs)} spec(s), unresolved")
        return f"<Fleet {count}, {where}, {len(self._pool)} open session(s)>"

