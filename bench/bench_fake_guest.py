"""How fast the simulated guest serves bulk output (server side only), beside psrpcore's writer.

Run: ``PYTHONPATH=. python bench/bench_fake_guest.py [-n 20000]``

A raw OutOfProc client opens a pool and runs ``Get-Service`` against
``FakeGuest(service_count=N)``; it only splits lines and counts ``Data`` packets until the
pipeline's CloseAck, so the client's decoding never counts. Timed in one run:

1. first run: every service serialized by the guest's direct CLIXML writer
   (:mod:`hvmagic.testing.fastwire`);
2. second run: the cached serialized objects re-sent (what repeated notebook runs cost);
3. the same objects through psrpcore's serializer (``serialize`` + ``ElementTree.tostring``),
   which the guest used before the direct writer existed.
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=20_000)
    args = parser.parse_args()
    with FakeGuest(service_count=args.n) as guest:
        assert guest.demo is not None
        client = RawClient(guest)
        client.open()
        started = time.perf_counter()
        lines = client.run_counting("Get-Service")
        first = time.perf_counter() - started
        started = time.perf_counter()
        client.run_counting("Get-Service")
        second = time.perf_counter() - started
        cipher = psrpcore.PSRemotingCrypto()
        started = time.perf_counter()
        for service in guest.demo.services:
            ElementTree.tostring(serialize(service.to_psrp(), cipher), encoding="utf-8")
        reference = time.perf_counter() - started
    n = args.n
    print(f"N = {n} Get-Service objects, {lines} Data lines")
    rows = [
        ("guest, direct writer (first run)", n / first),
        ("guest, cached objects (second run)", n / second),
        ("psrpcore serialize alone (no I/O)", n / reference),
    ]
    base = rows[-1][1]
    for name, rate in rows:
        print(f"{name:38s} {rate:10.0f} objects/s  {rate / base:6.1f}x psrpcore")
    return 0


if __name__ == "__main__":
    sys.exit(main())
