"""``hvmagic.fleet(...)``: builds a :class:`~hvmagic.fleets.Fleet`, choosing where it runs.

The fleet engine (:mod:`hvmagic.fleets`) runs targets on threads here or hands them to a
:class:`~hvmagic.fleets.RemoteRunner`; the Dask runner (:mod:`hvmagic.fleet_dask`) is built on
that engine. This function is the one place that knows both, so neither imports the other
the wrong way round; a fleet without ``cluster=`` never loads Dask.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from hvmagic.fleets import (
    DEFAULT_THROTTLE,
    ConnectFunction,
    CredentialSource,
    Fleet,
    RemoteRunner,
    Resolver,
    Target,
    split_targets,
)
from hvmagic.sessionlike import SessionLike

__all__ = ["fleet"]


def fleet(
    targets: str | Target | Sequence[str | Target],
    *,
    host: str | Sequence[str | None] | None = None,
    hosts: str | Sequence[str | None] | None = None,
    throttle: int = DEFAULT_THROTTLE,
    timeout: float | None = None,
    connect: ConnectFunction | None = None,
    connect_options: Mapping[str, Any] | None = None,
    credentials: Mapping[str, CredentialSource] | None = None,
    connect_timeout: float | None = None,
    resolver: Resolver | None = None,
    running_only: bool = True,
    sessions: Mapping[str | Target, SessionLike] | None = None,
    cluster: Any = None,
) -> Fleet:
    """A :class:`Fleet` over ``targets``: ``"web*,db1"``, a list of names/globs/:class:`Target`.

    ``host`` (or ``hosts``: a name, ``"hv01,hv02"`` or a list) are the Hyper-V hosts names and
    globs are resolved on, with ``Get-VM`` in a shell on each host, and whose VMs are then
    reached through that host (:mod:`hvmagic.hop`); default: this machine. ``connect_options``:
    :func:`hvmagic.connect` keywords for every target *and* the host shells that resolve them —
    ``via`` (``"ssh"``/``"winrm"``), ``host_username``, ``host_credential``, ``host_options``
    (``port``, ``identity_file``, ``ssh_config`` …). ``throttle``: at most this many targets at
    once. ``timeout``: per target, per run (``run(timeout=)`` overrides). ``connect(target,
    **kwargs)``: opens a target's session (default :func:`~hvmagic.fleets.connect_target`).
    ``credentials``: see :mod:`hvmagic.fleets`. ``sessions``: already open sessions to use
    (never closed by the fleet). ``cluster``: a ``distributed.Client`` (see
    :mod:`hvmagic.fleet_dask`), or any :class:`~hvmagic.fleets.RemoteRunner`.
    """
    if host is not None and hosts is not None:
        raise TypeError("give host= or hosts=, not both")
    hosts = host if hosts is None else hosts
    if isinstance(targets, (str, Target)):
        targets = [targets]
    if isinstance(hosts, str):
        hosts = split_targets(hosts)
    remote: RemoteRunner | None = None
    if isinstance(cluster, RemoteRunner):
        remote = cluster
    elif cluster is not None:
        # imported here: fleet_dask loads ``distributed`` (seconds) when it is installed
        from hvmagic.fleet_dask import DaskRunner

        remote = DaskRunner(
            cluster, connect=connect, credentials=credentials,
            connect_timeout=connect_timeout, resolver=resolver,
        )
    return Fleet(
        list(targets), hosts=hosts, throttle=throttle, timeout=timeout, connect=connect,
        connect_options=connect_options, credentials=credentials,
        connect_timeout=connect_timeout, resolver=resolver, running_only=running_only,
        sessions=sessions, remote=remote,
    )
