"""Simulated fleets: one :class:`FakeGuest` per target name, per process, for benchmarks.

:func:`connect_sim_target` is a fleet connect function (``hvmagic.fleet(..., connect=...)``)
that works in any process — a Dask worker process included, since Dask pickles it by
reference: the first connect to a target name creates that target's guest *in the calling
process*, the way each Hyper-V host holds its own VMs. ``Target.options`` shape the guest's
answer to :data:`SCRIPT`: ``objects`` (how many output objects, default 500) and ``work``
(seconds of simulated guest-side work before the output, default 0).
"""

from __future__ import annotations

import threading
from typing import Any

from hvmagic.testing.guest import FakeGuest, HandlerContext, to_ps_value

#: the script every simulated target answers
SCRIPT = "Get-FleetItem"
#: a one-object answer without the simulated work (opens sessions cheaply)
PING = "Get-FleetPing"

_GUESTS: dict[str, FakeGuest] = {}
_LOCK = threading.Lock()


class _Row:
    """One output object, serialized once and re-sent as is (a benchmark measures the client
    and the fleet layer, not the simulated guest's serializer)."""

    __slots__ = ("_wire", "properties")

    def __init__(self, properties: dict[str, Any]) -> None:
        self.properties = properties
        self._wire: bytes | None = None

    def wire(self, serialize: Any) -> bytes:
        if self._wire is None:
            self._wire = bytes(serialize(to_ps_value(self.properties)))
        return self._wire


def _items(ctx: HandlerContext) -> None:
    work = float(ctx.guest.state.get("work", 0.0))
    if work:
        ctx.sleep(work)  # the guest busy (a real script's own run time): no client CPU
    rows = ctx.guest.state["rows"]
    ctx.output_many(rows)


def guest_for(name: str, objects: int = 500, work: float = 0.0) -> FakeGuest:
    """This process's simulated guest called ``name`` (created on first use)."""
    with _LOCK:
        guest = _GUESTS.get(name)
        if guest is None:
            guest = FakeGuest()
            guest.add_handler(SCRIPT, _items)
            guest.add_handler(PING, lambda ctx: [1])
            _GUESTS[name] = guest
        guest.state["work"] = work
        guest.state["rows"] = [
            _Row({"Index": i, "Name": f"{name}-item{i}", "Value": i * 1.5, "Ok": i % 7 != 0})
            for i in range(objects)
        ]
        return guest


def connect_sim_target(target: Any, **kwargs: Any) -> Any:
    """Fleet connect function: a session to the target's simulated guest in this process."""
    options = dict(getattr(target, "options", {}) or {})
    guest = guest_for(target.name, int(options.get("objects", 500)),
                      float(options.get("work", 0.0)))
    return guest.connect(name=target.name)


def close_all() -> None:
    with _LOCK:
        guests = list(_GUESTS.values())
        _GUESTS.clear()
    for guest in guests:
        guest.close()
