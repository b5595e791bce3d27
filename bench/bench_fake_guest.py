"""How fast FakeGuest (the test guest) serves bulk output, server side only.

Run: ``PYTHONPATH=. python bench/bench_fake_guest.py [-n 20000]``

A raw OutOfProc client opens a pool and runs a handler that returns N service-like objects; it
only splits lines and counts ``Data`` packets until the pipeline's state message, so the
client's decoding never counts. Timed in one run:

1. plain ``dict`` rows: each object converted and serialized by psrpcore on every run (what a
   test handler returning dicts costs);
2. pre-serialized rows (:mod:`hvmagic.testing.fleet_guests`: each object serialized once and
   re-sent as is, what ``bench/bench_fleet.py``'s simulated targets use);
3. the same objects through psrpcore's serializer alone (``serialize`` +
   ``ElementTree.tostring``, no I/O).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from xml.etree import ElementTree

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psrpcore
from psrpcore.types import serialize

from hvmagic.psrp.outofproc import (
    NIL_GUID,
    PacketKind,
    PacketReader,
    control_packet,
    data_packet,
)
from hvmagic.testing import FakeGuest
from hvmagic.testing.fleet_guests import _Row
from hvmagic.testing.guest import to_ps_value


class RawClient:
    def __init__(self, guest: FakeGuest) -> None:
        self.transport = guest.transport()
        self.reader = PacketReader()
        self.pool = psrpcore.ClientRunspacePool()

    def packet(self):  # type: ignore[no-untyped-def]
        while (packet := self.reader.next_packet()) is None:
            self.reader.receive_data(self.transport.recv())
        return packet

    def send_all(self, guid) -> None:  # type: ignore[no-untyped-def]
        while (payload := self.pool.data_to_send(32768)) is not None:
            self.transport.send(data_packet(payload.data, guid))
            while not ((p := self.packet()).kind is PacketKind.DATA_ACK and p.guid == guid):
                self.feed(p)

    def feed(self, packet) -> None:  # type: ignore[no-untyped-def]
        if packet.kind is PacketKind.DATA and packet.guid == NIL_GUID:
            self.pool.receive_data(psrpcore.PSRPPayload(packet.data,
                                                        psrpcore.StreamType.default, None))
            while self.pool.next_event() is not None:
                pass

    def open(self) -> None:
        self.pool.open()
        self.send_all(NIL_GUID)
        while self.pool.state != psrpcore.types.RunspacePoolState.Opened:
            self.feed(self.packet())

    def run_counting(self, script: str) -> int:
        ps = psrpcore.ClientPowerShell(self.pool)
        ps.add_script(script)
        self.transport.send(control_packet(PacketKind.COMMAND, ps.pipeline_id))
        while self.packet().kind is not PacketKind.COMMAND_ACK:
            pass
        ps.start()
        self.send_all(ps.pipeline_id)
        lines = 0
        # the pipeline ends with a PIPELINE_STATE message (type 0x00041006)
        while True:
            packet = self.packet()
            if packet.kind is PacketKind.DATA and packet.guid == ps.pipeline_id:
                lines += 1
                if packet.data[21 + 4: 21 + 8] == (0x00041006).to_bytes(4, "little"):
                    break
        ps.state = psrpcore.types.PSInvocationState.Completed
        ps.close()
        self.transport.send(control_packet(PacketKind.CLOSE, ps.pipeline_id))
        while self.packet().kind is not PacketKind.CLOSE_ACK:
            pass
        return lines


def _rows(n: int) -> list[dict[str, object]]:
    return [
        {"PSTypeName": "System.ServiceProcess.ServiceController", "Status": "Running",
         "Name": f"service{i:05d}", "DisplayName": f"Benchmark service number {i}",
         "StartType": "Automatic", "CanStop": i % 3 != 0}
        for i in range(n)
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=20_000)
    args = parser.parse_args()
    n = args.n
    rows = _rows(n)
    cached = [_Row(row) for row in rows]
    with FakeGuest() as guest:
        guest.add_handler("Get-Plain", lambda ctx: ctx.output_many(rows))
        guest.add_handler("Get-Cached", lambda ctx: ctx.output_many(cached))
        client = RawClient(guest)
        client.open()
        client.run_counting("Get-Cached")  # serializes each cached row once (not timed)
        started = time.perf_counter()
        lines = client.run_counting("Get-Plain")
        plain = time.perf_counter() - started
        started = time.perf_counter()
        client.run_counting("Get-Cached")
        again = time.perf_counter() - started
    cipher = psrpcore.PSRemotingCrypto()
    started = time.perf_counter()
    for row in rows:
        ElementTree.tostring(serialize(to_ps_value(row), cipher), encoding="utf-8")
    reference = time.perf_counter() - started
    print(f"N = {n} objects, {lines} Data lines")
    results = [
        ("guest, dict rows (psrpcore per object)", n / plain),
        ("guest, pre-serialized rows", n / again),
        ("psrpcore serialize alone (no I/O)", n / reference),
    ]
    base = results[-1][1]
    for name, rate in results:
        print(f"{name:40s} {rate:10.0f} objects/s  {rate / base:6.1f}x psrpcore")
    return 0


if __name__ == "__main__":
    sys.exit(main())
