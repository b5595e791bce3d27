"""Fleets beyond one kernel: each target runs on the Dask worker that sits on its Hyper-V host.

PowerShell Direct only works from a VM's own host, so a fleet spanning hosts needs code running
on every host. :func:`hvmagic.fleet` with ``cluster=<distributed.Client>`` hands each target's
work to a worker serving the target's host; the notebook gets the same
:class:`~hvmagic.fleets.FleetResult` as a local fleet. Install with ``pip install
hvmagic[fleet]``.

Which worker serves which host
------------------------------
A worker *advertises* the Hyper-V hosts it serves, in this order of precedence:

1. :class:`HyperVHostPlugin` ``(hosts=[...])`` registered on it (``client.register_plugin``,
   or ``dask worker --preload hvmagic.fleet_dask`` which installs one);
2. worker resources named ``hyperv:<HOST>`` (``dask worker --resources "hyperv:hv01=1"``);
3. the environment variable ``HVMAGIC_FLEET_HOSTS=hv01,hv02`` on the worker;
4. else the machine's own host name (a worker started on a Hyper-V host serves that host).

A target always goes to the same worker while that worker lives (tasks are pinned with
``workers=[address]`` and ``allow_other_workers=False``): its session is cached there between
runs, and a script is never silently re-run on another worker. When the worker dies mid-run
the scheduler would keep the task waiting for it forever; the fleet notices the worker is gone
and reports its targets ``Broken`` ("the Dask worker … was lost"), every other target's output
intact. The next run picks another worker serving the host, if any.

Credentials: why no PSCredential crosses the wire
-------------------------------------------------
:class:`~hvmagic.PSCredential`/:class:`~hvmagic.SecureString` refuse to pickle on purpose (a
pickle ends up in spill files, scheduler logs, caches), and Dask moves arguments by pickle. So a
Dask fleet accepts only *user names* in ``credentials=`` (a mapping value or callable result
that is a string): each worker then finds the password where it runs — ``HVMAGIC_PASSWORD`` or
the keyring of the worker's account (``keyring set hvmagic USER``) — exactly as
:func:`hvmagic.connect` does. Full credentials can also be configured on the worker itself
(``HyperVHostPlugin(credentials={...})`` in a preload script). A fleet given a PSCredential with
``cluster=`` raises :class:`~hvmagic.errors.CredentialError` before anything is sent.

Security: a Dask worker runs whatever task its scheduler sends, here as an account that is a
Hyper-V administrator. Outside a lab, run the scheduler and workers with TLS and client
certificates (``distributed.security.Security``, ``--tls-ca-file``/``--tls-cert``/``--tls-key``)
so that only your notebooks can submit work.

Streams: ``on_event`` is called for each target's records when its result arrives (in stream
order per target), not live: records would otherwise need a pub/sub channel per run.
Interrupt (Ctrl-C) asks every worker to stop the run's pipelines and raises
:class:`~hvmagic.fleets.FleetInterrupted` with what arrived.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
import uuid
import zlib
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from hvmagic.errors import CredentialError, HvMagicError
from hvmagic.fleets import (
    ConnectFunction,
    CredentialSource,
    FleetInterrupted,
    FleetResult,
    HostShellResolver,
    OnFleetEvent,
    Resolver,
    SessionPool,
    Target,
    TargetResult,
    connect_target,
    credential_for,
    credential_kwargs,
    run_target,
)
from hvmagic.session import STOP_TIMEOUT
from hvmagic.sessionlike import RESULT_LISTS, SessionLike

try:  # the optional extra: hvmagic[fleet]
    from distributed import WorkerPlugin
except ImportError:  # pragma: no cover - without Dask, only the names below are missing
    WorkerPlugin = object  # type: ignore[misc,assignment]

__all__ = ["HOSTS_ENV", "PLUGIN_NAME", "RESOURCE_PREFIX", "DaskRunner", "HyperVHostPlugin"]

PLUGIN_NAME = "hvmagic-fleet"
RESOURCE_PREFIX = "hyperv:"
HOSTS_ENV = "HVMAGIC_FLEET_HOSTS"
_POLL = 0.25  # how often the client checks that the workers it waits on are alive



# --------------------------------------------------------------------------------------------
# worker side


class _WorkerState:
    """One worker's fleet state: the hosts it serves and its cached sessions."""

    def __init__(self, plugin: HyperVHostPlugin, worker: Any) -> None:
        self.address: str = worker.address
        self.hosts: list[str] = list(plugin.hosts) if plugin.hosts else _advertised(worker)
        self.on_host = plugin.on_host
        self.connect: ConnectFunction = plugin.connect or (
            _connect_here if plugin.on_host else connect_target)
        self.resolver: Resolver | None = plugin.resolver
        self.pool = SessionPool(self.connect, credentials=plugin.credentials,
                                connect_timeout=plugin.connect_timeout)
        self._lock = threading.Lock()
        self.running: dict[str, dict[tuple[str, str], SessionLike]] = {}
        self.cancelled: dict[str, threading.Event] = {}
        self._own_resolver: HostShellResolver | None = None

    def run(self, target: Target, script: str, parameters: Mapping[str, Any] | None,
            timeout: float | None, run_id: str, connect: ConnectFunction | None,
            credential: dict[str, Any] | None) -> TargetResult:
        with self._lock:
            running = self.running.setdefault(run_id, {})
            cancelled = self.cancelled.setdefault(run_id, threading.Event())
        try:
            return run_target(self.pool, target, script, parameters, timeout, None, running,
                              cancelled, connect=connect, credential=credential)
        finally:
            with self._lock:
                if not running and not cancelled.is_set():  # the run's last task here
                    self.running.pop(run_id, None)
                    self.cancelled.pop(run_id, None)

    def stop(self, run_id: str) -> int:
        with self._lock:
            self.cancelled.setdefault(run_id, threading.Event()).set()
            sessions = list(self.running.get(run_id, {}).values())
        for session in sessions:
            with contextlib.suppress(Exception):
                session.stop()
        return len(sessions)

    def resolve(self, host: str, pattern: str, running_only: bool) -> list[str]:
        if self.resolver is not None:
            return list(self.resolver(host, pattern, running_only=running_only))
        if self._own_resolver is None:
            self._own_resolver = HostShellResolver()
        # the worker sits on the host: ask the local Get-VM
        return self._own_resolver(None if self.on_host else host, pattern,
                                  running_only=running_only)

    def close(self) -> None:
        self.pool.close()
        if self._own_resolver is not None:
            self._own_resolver.close()


def _connect_here(target: Target, **kwargs: Any) -> SessionLike:
    """The worker is on the target's host: connect locally (PowerShell Direct), no hop."""
    return connect_target(Target(target.name, None, target.options), **kwargs)


def _advertised(worker: Any) -> list[str]:
    worker_state = getattr(worker, "state", None)  # distributed ≥ 2022.11 keeps them there
    resources = getattr(worker_state, "total_resources", None) or getattr(
        worker, "total_resources", None) or {}
    hosts = [name[len(RESOURCE_PREFIX):] for name in resources or {}
             if name.startswith(RESOURCE_PREFIX)]
    if hosts:
        return hosts
    env = os.environ.get(HOSTS_ENV, "")
    hosts = [h.strip() for h in env.split(",") if h.strip()]
    return hosts or [socket.gethostname()]


_STATES: dict[str, _WorkerState] = {}
_STATES_LOCK = threading.Lock()


class HyperVHostPlugin(WorkerPlugin):
    """Makes a Dask worker a fleet worker: the hosts it serves, how it connects and resolves.

    ``hosts``: the Hyper-V hosts this worker serves (default: see the module docstring).
    ``on_host`` (default True): the worker runs *on* those hosts, so the default connect and
    resolver work locally (PowerShell Direct, local ``Get-VM``) instead of hopping.
    ``connect``/``resolver``/``credentials``/``connect_timeout``: as for
    :func:`hvmagic.fleet`, applied on the worker (credentials here never cross the network).
    State is kept per worker (one plugin object may be shared by in-process workers).
    """

    name = PLUGIN_NAME

    def __init__(
        self,
        hosts: Sequence[str] | None = None,
        *,
        on_host: bool = True,
        connect: ConnectFunction | None = None,
        resolver: Resolver | None = None,
        credentials: Mapping[str, CredentialSource] | None = None,
        connect_timeout: float | None = None,
    ) -> None:
        self.hosts = list(hosts) if hosts else None
        self.on_host = on_host
        self.connect = connect
        self.resolver = resolver
        self.credentials = credentials
        self.connect_timeout = connect_timeout

    def setup(self, worker: Any) -> None:
        state = _WorkerState(self, worker)
        with _STATES_LOCK:
            previous = _STATES.pop(state.address, None)
            _STATES[state.address] = state
        if previous is not None:
            previous.close()

    def teardown(self, worker: Any) -> None:
        with _STATES_LOCK:
            state = _STATES.pop(worker.address, None)
        if state is not None:
            state.close()


def _state(worker: Any) -> _WorkerState:
    with _STATES_LOCK:
        state = _STATES.get(worker.address)
    if state is None:  # no plugin registered: defaults, created once per worker
        HyperVHostPlugin().setup(worker)
        with _STATES_LOCK:
            state = _STATES[worker.address]
    return state


def _worker_run(target: Target, script: str, parameters: Mapping[str, Any] | None,
                timeout: float | None, run_id: str, connect: ConnectFunction | None,
                credential: dict[str, Any] | None) -> TargetResult:
    from distributed import get_worker

    return _state(get_worker()).run(target, script, parameters, timeout, run_id, connect,
                                    credential)


def _worker_resolve(host: str, pattern: str, running_only: bool) -> list[str]:
    from distributed import get_worker

    return _state(get_worker()).resolve(host, pattern, running_only)


def _worker_hosts(dask_worker: Any) -> list[str]:
    return _state(dask_worker).hosts


def _worker_stop(run_id: str, dask_worker: Any) -> int:
    return _state(dask_worker).stop(run_id)


def dask_setup(worker: Any) -> None:
    """``dask worker --preload hvmagic.fleet_dask``: fail at start, not at the first task, when
    hvmagic is missing on the worker, and log the hosts it will serve. (The worker's fleet
    state is created on first use, once the worker has its address.)"""
    import logging

    logging.getLogger("hvmagic.fleet").info(
        "hvmagic fleet worker serving Hyper-V host(s): %s", ", ".join(_advertised(worker)))


# --------------------------------------------------------------------------------------------
# client side


class DaskRunner:
    """The client half: places targets on workers, throttles, watches for lost workers."""

    def __init__(
        self,
        client: Any,
        *,
        connect: ConnectFunction | None = None,
        credentials: Mapping[str, CredentialSource] | None = None,
        connect_timeout: float | None = None,
        resolver: Resolver | None = None,
    ) -> None:
        self.client = client
        self.connect = connect
        self.credentials = credentials
        self.connect_timeout = connect_timeout
        self.resolver = resolver
        self._placement: dict[tuple[str, str], str] = {}

    # -- where -----------------------------------------------------------------------------
    def served_hosts(self) -> dict[str, list[str]]:
        """``{worker address: [hosts]}`` as the workers advertise them now."""
        answers = self.client.run(_worker_hosts)
        return {address: list(hosts) for address, hosts in answers.items()}

    def _workers_for(self, served: Mapping[str, Iterable[str]]) -> dict[str, list[str]]:
        by_host: dict[str, list[str]] = {}
        for address, hosts in served.items():
            for host in hosts:
                by_host.setdefault(host.casefold(), []).append(address)
        return {host: sorted(addresses) for host, addresses in by_host.items()}

    def _place(self, target: Target, by_host: Mapping[str, list[str]]) -> str | None:
        candidates = by_host.get((target.host or "").casefold(), [])
        if not candidates:
            return None
        kept = self._placement.get(target.key)
        if kept in candidates:
            return kept  # its session is cached there
        chosen = candidates[zlib.crc32(target.label.casefold().encode()) % len(candidates)]
        self._placement[target.key] = chosen
        return chosen

    def resolve(self, host: str | None, pattern: str, *, running_only: bool) -> list[str]:
        if host is None:
            raise HvMagicError("a Dask fleet needs hosts=: which Hyper-V hosts to resolve on")
        address = self._place(Target(pattern, host), self._workers_for(self.served_hosts()))
        if address is None:
            raise HvMagicError(f"no Dask worker serves Hyper-V host {host!r}")
        future = self.client.submit(_worker_resolve, host, pattern, running_only,
                                    workers=[address], allow_other_workers=False, pure=False)
        return list(future.result())

    # -- running ---------------------------------------------------------------------------
    def _credential(self, target: Target) -> dict[str, Any] | None:
        value = credential_for(target, self.credentials)
        if value is not None and not isinstance(value, str):
            raise CredentialError(
                f"credentials for {target.label!r}: a Dask fleet sends only user names to its "
                "workers (a PSCredential is never pickled); give the user name and let the "
                "worker find the password (HVMAGIC_PASSWORD or its keyring), or configure "
                "credentials on the worker with HyperVHostPlugin(credentials=...)"
            )
        return credential_kwargs(value) or None

    def run(
        self, targets: list[Target], script: str, parameters: Mapping[str, Any] | None,
        timeout: float | None, on_event: OnFleetEvent | None, throttle: int, started: float,
    ) -> dict[tuple[str, str], TargetResult]:
        from distributed import TimeoutError as DaskTimeoutError
        from distributed import wait

        credentials = {t.key: self._credential(t) for t in targets}  # refuse before sending
        by_host = self._workers_for(self.served_hosts())
        run_id = uuid.uuid4().hex
        outcomes: dict[tuple[str, str], TargetResult] = {}
        queue: deque[tuple[Target, str]] = deque()
        for target in targets:
            address = self._place(target, by_host)
            if address is None:
                lost = TargetResult(target, state="Unreachable")
                lost.error = (f"no Dask worker serves Hyper-V host {target.host!r}"
                              if target.host else "a Dask fleet target needs a host")
                lost.error_type = "LookupError"
                outcomes[target.key] = lost
            else:
                queue.append((target, address))
        in_flight: dict[Any, tuple[Target, str, float]] = {}
        used: set[str] = set()

        def submit_more() -> None:
            while queue and len(in_flight) < throttle:
                target, address = queue.popleft()
                future = self.client.submit(
                    _worker_run, target, script, parameters, timeout, run_id, self.connect,
                    credentials[target.key], workers=[address], allow_other_workers=False,
                    pure=False, key=f"hvmagic-fleet-{run_id}-{len(in_flight)}-{target.label}",
                )
                in_flight[future] = (target, address, time.monotonic())
                used.add(address)

        def collect(future: Any) -> None:
            target, _address, submitted = in_flight.pop(future)
            if future.status == "finished":
                outcome = future.result()
            else:
                outcome = TargetResult(target, state="Failed")
                try:
                    error: BaseException | None = future.exception()
                except BaseException as exc:  # cancelled
                    error = exc
                outcome.error = f"{type(error).__name__}: {error}"
                outcome.error_type = type(error).__name__
                outcome.duration = time.monotonic() - submitted
            outcomes[target.key] = outcome
            if on_event is not None:
                for stream, attribute in RESULT_LISTS.items():  # in the streams' order
                    for record in getattr(outcome.result, attribute):
                        on_event(target, stream, record)

        try:
            submit_more()
            while in_flight:
                try:
                    done, _ = wait(list(in_flight), timeout=_POLL, return_when="FIRST_COMPLETED")
                except (DaskTimeoutError, TimeoutError):
                    done = set()
                for future in done:
                    collect(future)
                if not done:
                    self._fail_lost_workers(in_flight, outcomes)
                submit_more()
        except KeyboardInterrupt:
            for target, _address in queue:
                outcomes[target.key] = TargetResult(target)  # NotStarted
            queue.clear()
            with contextlib.suppress(Exception):
                alive = set(self.client.scheduler_info(n_workers=-1).get("workers", {}))
                self.client.run(_worker_stop, run_id, workers=sorted(used & alive))
            deadline = time.monotonic() + STOP_TIMEOUT + 2.0
            while in_flight and time.monotonic() < deadline:
                with contextlib.suppress(DaskTimeoutError, TimeoutError):
                    done, _ = wait(list(in_flight), timeout=_POLL,
                                   return_when="FIRST_COMPLETED")
                    for future in done:
                        collect(future)
            for future, (target, _address, _submitted) in list(in_flight.items()):
                future.cancel()
                outcomes[target.key] = TargetResult(target, state="Stopped",
                                                    error="interrupted")
            in_flight.clear()
            result = FleetResult([outcomes[t.key] for t in targets if t.key in outcomes],
                                 time.monotonic() - started)
            raise FleetInterrupted("interrupted: the fleet's pipelines were stopped",
                                   result) from None
        return outcomes

    def _fail_lost_workers(self, in_flight: dict[Any, tuple[Target, str, float]],
                           outcomes: dict[tuple[str, str], TargetResult]) -> None:
        alive = set(self.client.scheduler_info(n_workers=-1).get("workers", {}))
        for future, (target, address, submitted) in list(in_flight.items()):
            if address in alive or future.done():
                continue
            future.cancel()
            del in_flight[future]
            self._placement.pop(target.key, None)
            outcomes[target.key] = TargetResult(
                target, state="Broken",
                error=f"the Dask worker {address} serving {target.host!r} was lost mid-run",
                error_type="WorkerLost", duration=time.monotonic() - submitted,
            )

    def close(self) -> None:
        """Sessions live on the workers (cached for the next fleet); nothing to close here."""
