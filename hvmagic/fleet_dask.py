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

Streams: ``on_event``/``on_progress`` are called live, while targets run on their workers
(:mod:`hvmagic.fleet_dask_events`: Dask events under the client's topic, bounded per target and
per client; whatever the live path did not carry is delivered when the target's result arrives).
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
from hvmagic.fleet_dask_events import LiveChannel, LiveRun, subscribe, unsubscribe
from hvmagic.fleet_events import FleetReporter
from hvmagic.fleets import (
    ConnectFunction,
    CredentialSource,
    FleetInterrupted,
    FleetResult,
    HostShellResolver,
    Resolver,
    SessionPool,
    Target,
    TargetResult,
    connect_target,
    credential_for,
    credential_kwargs,
    frame_outcomes,
    run_target,
)
from hvmagic.session import STOP_TIMEOUT
from hvmagic.sessionlike import SessionLike

try:  # the optional extra: hvmagic[fleet]
    from distributed import WorkerPlugin
except ImportError:  # pragma: no cover - without Dask, only the names below are missing
    WorkerPlugin = object  # type: ignore[misc,assignment]

__all__ = ["HOSTS_ENV", "PLUGIN_NAME", "RESOURCE_PREFIX", "DaskRunner", "HyperVHostPlugin"]

PLUGIN_NAME = "hvmagic-fleet"
RESOURCE_PREFIX = "hyperv:"
HOSTS_ENV = "HVMAGIC_FLEET_HOSTS"
_POLL = 0.5  # how often the client checks that the workers it waits on are alive
_PUMP = 0.1  # how often the client hands the workers' live records to the callbacks


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
            credential: dict[str, Any] | None, live: LiveChannel | None = None
            ) -> TargetResult:
        with self._lock:
            running = self.running.setdefault(run_id, {})
            cancelled = self.cancelled.setdefault(run_id, threading.Event())
        try:
            if live is not None:
                live.start()
            return run_target(self.pool, target, script, parameters, timeout,
                              live.record if live is not None else None, running,
                              cancelled, connect=connect, credential=credential)
        finally:
            if live is not None:
                live.close()
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
                credential: dict[str, Any] | None, topic: str | None = None,
                live_output: bool = True) -> TargetResult:
    from distributed import get_worker

    worker = get_worker()
    live = None
    if topic is not None:
        live = LiveChannel(lambda message: worker.log_event(topic, message), run_id,
                           target.label, output=live_output)
    return _state(worker).run(target, script, parameters, timeout, run_id, connect,
                              credential, live)


def _worker_summary(outcome: TargetResult) -> TargetResult:
    """A lazy run's view of a target's result for the notebook: everything but the output,
    which stays on this worker (:attr:`TargetResult.remote_output` counts its rows)."""
    return outcome.without_output()


def _worker_frame(outcome: TargetResult, columns: str | list[str]) -> Any:
    """One target's output framed where it is, labelled like :meth:`FleetResult.frame`."""
    return frame_outcomes([outcome], columns)


def _frame_schema(frame: Any) -> list[tuple[str, str]]:
    return [(str(name), str(dtype)) for name, dtype in frame.dtypes.items()]


def _conform(frame: Any, columns: list[str], dtypes: dict[str, str]) -> Any:
    """A partition with the fleet's columns, in order, with the fleet's dtypes."""
    return frame.reindex(columns=columns).astype(dtypes)


def lazy_frame(outcomes: list[TargetResult], columns: str | list[str] = "default") -> Any:
    """A ``dask.dataframe.DataFrame`` with one partition per target whose output stayed on its
    worker: each framed there (:func:`_worker_frame`), the fleet's columns the union of theirs
    (first seen first; a column missing from some, or with differing dtypes, is ``object``)."""
    import dask
    import pandas as pd

    try:
        import dask.dataframe as dd
    except ImportError as exc:  # dask[dataframe] also needs pyarrow
        raise ImportError(f"frame(lazy=True) needs dask.dataframe ({exc}): "
                          "pip install 'hvmagic[fleet]'") from exc

    held = [t for t in outcomes if t.remote is not None]
    if not held:
        raise ValueError("no output of this run is held on the workers any more "
                         "(released, or the run was not lazy)")
    client = held[0].remote.client
    # each runs where its target's result is (Dask places a task by its data)
    frames = [client.submit(_worker_frame, t.remote, columns, pure=False) for t in held]
    schemas = client.gather([client.submit(_frame_schema, f, pure=False) for f in frames])
    order: list[str] = []
    seen: dict[str, set[str]] = {}
    for schema in schemas:
        for name, dtype in schema:
            if name not in seen:
                order.append(name)
            seen.setdefault(name, set()).add(dtype)
    everywhere = set.intersection(*({n for n, _ in schema} for schema in schemas))
    dtypes = {name: (next(iter(kinds)) if len(kinds) == 1 and name in everywhere else "object")
              for name, kinds in seen.items()}
    meta = pd.DataFrame({name: pd.Series(dtype=dtypes[name]) for name in order})
    parts = [client.submit(_conform, f, order, dtypes, pure=False) for f in frames]
    # Dask turns object columns into strings by default: PowerShell values of mixed types
    # (numbers, dates, nested objects) must stay the values they are
    with dask.config.set({"dataframe.convert-string": False}):
        return dd.from_delayed(parts, meta=meta, verify_meta=False)


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
        timeout: float | None, reporter: FleetReporter, throttle: int, started: float,
        *, lazy: bool = False,
    ) -> dict[tuple[str, str], TargetResult]:
        """Run on the workers; see :class:`_Run`. ``lazy``: outputs stay on the workers."""
        credentials = {t.key: self._credential(t) for t in targets}  # refuse before sending
        run = _Run(self, targets, reporter, throttle, lazy=lazy)
        topic = subscribe(self.client, run.live)
        try:
            return run.run(script, parameters, timeout, credentials, topic, started)
        finally:
            unsubscribe(run.live)

    @staticmethod
    def lazy_frame(outcomes: list[TargetResult], columns: str | list[str] = "default") -> Any:
        """A ``dask.dataframe`` over the outputs a lazy run left on the workers; see
        :meth:`hvmagic.fleets.FleetResult.frame`."""
        return lazy_frame(outcomes, columns)

    def lost_workers(self, addresses: Iterable[str]) -> set[str]:
        """Which of ``addresses`` the scheduler no longer knows."""
        alive = set(self.client.scheduler_info(n_workers=-1).get("workers", {}))
        return set(addresses) - alive

    def stop(self, run_id: str, addresses: Iterable[str]) -> None:
        """Ask the workers still alive among ``addresses`` to stop the run's pipelines."""
        with contextlib.suppress(Exception):
            alive = sorted(set(addresses) - self.lost_workers(addresses))
            self.client.run(_worker_stop, run_id, workers=alive)

    def close(self) -> None:
        """Sessions live on the workers (cached for the next fleet); nothing to close here."""


class _Run:
    """One fleet run on Dask, client side: placing, throttling, collecting, watching workers.

    ``live`` receives the workers' events (:mod:`hvmagic.fleet_dask_events`); the wait loop
    pumps it every :data:`_PUMP` seconds, so records reach the callbacks while targets run.
    A lazy run keeps each target's full result on its worker (``remote``) and gathers only a
    summary (:func:`_worker_summary`) for the status and the callbacks.
    """

    def __init__(self, runner: DaskRunner, targets: list[Target], reporter: FleetReporter,
                 throttle: int, *, lazy: bool) -> None:
        self.runner = runner
        self.client = runner.client
        self.targets = targets
        self.reporter = reporter
        self.throttle = throttle
        self.lazy = lazy
        self.run_id = uuid.uuid4().hex
        self.live = LiveRun(self.run_id, reporter, {t.label: t for t in targets},
                            output=not lazy)
        self.outcomes: dict[tuple[str, str], TargetResult] = {}
        self.queue: deque[tuple[Target, str]] = deque()
        self.in_flight: dict[Any, tuple[Target, str, float]] = {}
        self.used: set[str] = set()
        #: a lazy run's futures of the full results, kept on the workers, by target key
        self.remote: dict[tuple[str, str], Any] = {}

    def run(self, script: str, parameters: Mapping[str, Any] | None, timeout: float | None,
            credentials: Mapping[tuple[str, str], dict[str, Any] | None], topic: str,
            started: float) -> dict[tuple[str, str], TargetResult]:
        self._place()
        try:
            self._submit_more(script, parameters, timeout, credentials, topic)
            last_check = time.monotonic()
            while self.in_flight:
                done = self._wait(_PUMP)
                self.live.pump()
                for future in done:
                    self._collect(future)
                if not done and time.monotonic() - last_check >= _POLL:
                    self._fail_lost_workers()
                    last_check = time.monotonic()
                self._submit_more(script, parameters, timeout, credentials, topic)
        except KeyboardInterrupt:
            self._interrupt(started)
        return self.outcomes

    def _place(self) -> None:
        by_host = self.runner._workers_for(self.runner.served_hosts())
        for target in self.targets:
            address = self.runner._place(target, by_host)
            if address is not None:
                self.queue.append((target, address))
                continue
            lost = TargetResult(target, state="Unreachable", error_type="LookupError")
            lost.error = (f"no Dask worker serves Hyper-V host {target.host!r}"
                          if target.host else "a Dask fleet target needs a host")
            self.outcomes[target.key] = lost
            self.reporter.finished(lost, was_running=False)

    def _submit_more(self, script: str, parameters: Mapping[str, Any] | None,
                     timeout: float | None,
                     credentials: Mapping[tuple[str, str], dict[str, Any] | None],
                     topic: str) -> None:
        while self.queue and len(self.in_flight) < self.throttle:
            target, address = self.queue.popleft()
            placement = {"workers": [address], "allow_other_workers": False, "pure": False}
            key = f"hvmagic-fleet-{self.run_id}-{len(self.remote) + len(self.outcomes)}"
            future = self.client.submit(
                _worker_run, target, script, parameters, timeout, self.run_id,
                self.runner.connect, credentials[target.key], topic, not self.lazy,
                key=f"{key}-{target.label}", **placement,
            )
            if self.lazy:
                self.remote[target.key] = future
                future = self.client.submit(_worker_summary, future,
                                            key=f"{key}-summary-{target.label}", **placement)
            self.in_flight[future] = (target, address, time.monotonic())
            self.used.add(address)

    def _wait(self, timeout: float) -> set[Any]:
        from distributed import TimeoutError as DaskTimeoutError
        from distributed import wait

        try:
            done, _ = wait(list(self.in_flight), timeout=timeout,
                           return_when="FIRST_COMPLETED")
        except (DaskTimeoutError, TimeoutError):
            return set()
        return set(done)

    def _collect(self, future: Any) -> None:
        target, _address, submitted = self.in_flight.pop(future)
        if future.status == "finished":
            outcome: TargetResult = future.result()
        else:
            outcome = TargetResult(target, state="Failed")
            try:
                error: BaseException | None = future.exception()
            except BaseException as exc:  # cancelled
                error = exc
            outcome.error = f"{type(error).__name__}: {error}"
            outcome.error_type = type(error).__name__
            outcome.duration = time.monotonic() - submitted
            self.remote.pop(target.key, None)
        outcome.remote = self.remote.pop(target.key, None)
        self.outcomes[target.key] = outcome
        self.live.finished(outcome)

    def _fail_lost_workers(self) -> None:
        lost = self.runner.lost_workers({address for _t, address, _s in self.in_flight.values()})
        for future, (target, address, submitted) in list(self.in_flight.items()):
            if address not in lost or future.done():
                continue
            future.cancel()
            del self.in_flight[future]
            self.remote.pop(target.key, None)
            self.runner._placement.pop(target.key, None)
            outcome = TargetResult(
                target, state="Broken",
                error=f"the Dask worker {address} serving {target.host!r} was lost mid-run",
                error_type="WorkerLost", duration=time.monotonic() - submitted,
            )
            self.outcomes[target.key] = outcome
            self.live.finished(outcome)

    def _interrupt(self, started: float) -> None:
        for target, _address in self.queue:
            self.outcomes[target.key] = TargetResult(target)  # NotStarted
        self.queue.clear()
        self.runner.stop(self.run_id, self.used)
        deadline = time.monotonic() + STOP_TIMEOUT + 2.0
        while self.in_flight and time.monotonic() < deadline:
            for future in self._wait(_POLL):
                self._collect(future)
        for future, (target, _address, _submitted) in list(self.in_flight.items()):
            future.cancel()
            self.outcomes[target.key] = TargetResult(target, state="Stopped",
                                                     error="interrupted")
        self.in_flight.clear()
        result = FleetResult([self.outcomes[t.key] for t in self.targets
                              if t.key in self.outcomes], time.monotonic() - started)
        raise FleetInterrupted("interrupted: the fleet's pipelines were stopped",
                               result) from None
