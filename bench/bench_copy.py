"""File-copy throughput against the simulated guest, beside the raw loopback socket, in one run.

Run: ``PYTHONPATH=. python bench/bench_copy.py [--mb 32] [--repeat 3]``

Measures, on this machine and in this process:

1. **raw loopback**: bytes pushed through a ``socket.socketpair()`` by one thread and drained by
   another (64 KiB sends) — the ceiling any byte stream here can reach;
2. **raw OutOfProc**: the same bytes as base64 ``<Data>`` lines (32 KiB fragments, one DataAck per
   line as PowerShell's client waits for) — what the framing alone costs;
3. **copy_to / copy_from** through a real :class:`hvmagic.session.Session` to a
   :class:`~hvmagic.testing.FakeGuest` (PSRP over OutOfProc over a socket pair, the guest side
   written to a temporary directory), for a few chunk sizes, SHA-256 verified on both ends.

Each figure is the median of ``--repeat`` runs; ratios are against the raw loopback figure.
The simulated guest is Python (psrpcore) on the same two cores as the client, so the copy
figures are a floor for a real guest, not a prediction.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hvmagic.filecopy import copy_from, copy_to
from hvmagic.psrp.outofproc import (
    PacketKind,
    PacketReader,
    control_packet,
    data_packet,
)
from hvmagic.testing import FakeGuest

MIB = 1 << 20


def median_rate(size: int, repeat: int, run: Callable[[], None]) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return size / MIB / statistics.median(times)


def raw_loopback(size: int) -> None:
    left, right = socket.socketpair()
    block = os.urandom(64 << 10)

    def drain() -> None:
        remaining = size
        while remaining > 0:
            data = right.recv(1 << 20)
            if not data:
                break
            remaining -= len(data)

    reader = threading.Thread(target=drain)
    reader.start()
    sent = 0
    while sent < size:
        left.sendall(block)
        sent += len(block)
    reader.join()
    left.close()
    right.close()


def raw_outofproc(size: int) -> None:
    """Client → server Data lines with a DataAck round trip per line (§3.3 flow control)."""
    left, right = socket.socketpair()
    guid = uuid.uuid4()
    fragment = os.urandom(32 << 10)

    def server() -> None:
        reader = PacketReader()
        ack = control_packet(PacketKind.DATA_ACK, guid)
        while True:
            data = right.recv(1 << 20)
            if not data:
                return
            reader.receive_data(data)
            while (packet := reader.next_packet()) is not None:
                right.sendall(ack if packet.kind is PacketKind.DATA else b"")

    thread = threading.Thread(target=server)
    thread.start()
    line = data_packet(fragment, guid)
    reader = PacketReader()
    sent = 0
    while sent < size:
        left.sendall(line)
        sent += len(fragment)
        while True:
            packet = reader.next_packet()
            if packet is not None:
                break
            reader.receive_data(left.recv(65536))
    left.shutdown(socket.SHUT_WR)
    thread.join()
    left.close()
    right.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=32, help="file size in MiB (default 32)")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    size = args.mb * MIB

    print(f"file size {args.mb} MiB, median of {args.repeat}, Python {sys.version.split()[0]}, "
          f"{os.cpu_count()} CPUs")
    loopback = median_rate(size, args.repeat, lambda: raw_loopback(size))
    rows = [("raw loopback socketpair (64 KiB sends)", loopback)]
    rows.append(("raw OutOfProc Data lines + DataAck (32 KiB)",
                 median_rate(size, args.repeat, lambda: raw_outofproc(size))))

    with tempfile.TemporaryDirectory() as workdir, FakeGuest() as guest:
        source = Path(workdir) / "payload.bin"
        with source.open("wb") as handle:
            for _ in range(args.mb):
                handle.write(os.urandom(MIB))
        with guest.connect() as session:
            for chunk in (256 << 10, 1 << 20, 4 << 20):
                label = f"{chunk >> 10} KiB chunks"
                rows.append((f"copy_to   (sim guest, {label})", median_rate(
                    size, args.repeat,
                    lambda c=chunk: copy_to(session, source, "C:\\Bench\\payload.bin",
                                            overwrite=True, chunk_size=c))))
                target = Path(workdir) / "back.bin"
                rows.append((f"copy_from (sim guest, {label})", median_rate(
                    size, args.repeat,
                    lambda c=chunk, t=target: copy_from(session, "C:\\Bench\\payload.bin", t,
                                                        overwrite=True, chunk_size=c))))
            if (Path(workdir) / "back.bin").read_bytes() != source.read_bytes():
                raise SystemExit("copied bytes differ from the source")

    width = max(len(name) for name, _ in rows)
    print(f"{'path'.ljust(width)}  {'MiB/s':>9}  {'vs loopback':>11}")
    for name, rate in rows:
        print(f"{name.ljust(width)}  {rate:9.1f}  {rate / loopback:10.3f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
