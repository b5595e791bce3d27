"""File-copy throughput against FakeGuest and real PowerShell, beside the raw loopback socket.

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
FakeGuest is Python (psrpcore) on the same two cores as the client, so its copy
figures are a floor for a real guest, not a prediction.

**Real PowerShell** (``--pwsh-mb``, default 256; found as ``$HVMAGIC_PWSH``, else
``../shared/tools/pwsh``, else ``pwsh`` on PATH; ``--pwsh-mb 0`` skips it):

4. *PowerShell's limit*: a separate ``pwsh`` reads the same file in the same chunks and, timed
   alone, (to) decodes each chunk's base64 and appends it to a file, (from) reads each chunk and
   encodes it as base64 — the work the guest cannot avoid;
5. ``copy_to`` / ``copy_from`` of the file through a ``Session`` on ``pwsh -s`` (one run each,
   SHA-256 verified by both ends), with the client's and the server's CPU per MiB, and the
   ratio to PowerShell's limit (target: >= 50 %);
6. *PowerShell's own* ``Copy-Item -ToSession`` / ``-FromSession`` over a ``pwsh -s`` session of
   its own client (``--own-mb``, default 16, as it is slow), for scale;
7. what the server spends receiving one chunk: ``PSSerializer.Deserialize`` of the chunk as
   CLIXML — the part of the server's cost that PSRP itself imposes.
"""

from __future__ import annotations

import argparse
import base64
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hvmagic.filecopy import DEFAULT_CHUNK_SIZE, copy_from, copy_to
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


def find_pwsh() -> str | None:
    explicit = os.environ.get("HVMAGIC_PWSH")
    if explicit:
        return explicit
    shared = Path(os.environ.get("HVMAGIC_SHARED", Path(__file__).resolve().parents[2] / "shared"))
    for candidate in (shared / "tools" / "pwsh", Path("/work/shared/tools/pwsh")):
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return shutil.which("pwsh")


def run_pwsh(pwsh: str, script: str, timeout: float = 3600) -> str:
    encoded = base64.b64encode(script.encode("utf-16-le")).decode("ascii")
    done = subprocess.run([pwsh, "-NoLogo", "-NoProfile", "-NonInteractive", "-EncodedCommand",
                           encoded], capture_output=True, timeout=timeout, check=False)
    if done.returncode != 0:
        raise SystemExit(f"pwsh failed: {done.stderr.decode(errors='replace')[-2000:]}")
    return done.stdout.decode("utf-8", "replace")


LIMIT_SCRIPT = r"""
$source = '{source}'; $target = '{target}'; $chunk = {chunk}
$buffer = [byte[]]::new($chunk)
$in = [IO.File]::OpenRead($source)
$out = [IO.File]::Open($target, 'Create', 'Write')
$encode = [Diagnostics.Stopwatch]::new(); $decode = [Diagnostics.Stopwatch]::new()
$encodeCpu = [TimeSpan]::Zero; $decodeCpu = [TimeSpan]::Zero
function Cpu {{ [Diagnostics.Process]::GetCurrentProcess().TotalProcessorTime }}
$total = 0
while ($true) {{
    $c0 = Cpu; $encode.Start()
    $read = $in.Read($buffer, 0, $chunk)
    if ($read -le 0) {{ $encode.Stop(); break }}
    $text = [Convert]::ToBase64String($buffer, 0, $read)
    $encode.Stop(); $c1 = Cpu; $encodeCpu += $c1 - $c0
    $decode.Start()
    $bytes = [Convert]::FromBase64String($text)
    $out.Write($bytes, 0, $bytes.Length)
    $decode.Stop(); $decodeCpu += (Cpu) - $c1
    $total += $read
}}
$decode.Start(); $out.Dispose(); $decode.Stop(); $in.Dispose()
$one = [byte[]]::new($chunk); (New-Object Random 7).NextBytes($one)
$xml = [System.Management.Automation.PSSerializer]::Serialize($one)
$null = [System.Management.Automation.PSSerializer]::Deserialize($xml)
$deser = [Diagnostics.Stopwatch]::StartNew()
foreach ($i in 1..4) {{ $null = [System.Management.Automation.PSSerializer]::Deserialize($xml) }}
$deser.Stop()
"{{0}} {{1}} {{2}} {{3}} {{4}} {{5}}" -f $total, $decode.Elapsed.TotalSeconds,
    $encode.Elapsed.TotalSeconds, ($deser.Elapsed.TotalSeconds / 4),
    $decodeCpu.TotalSeconds, $encodeCpu.TotalSeconds
"""

OWN_COPY_SCRIPT = r"""
$ci = [Activator]::CreateInstance([psobject].Assembly.GetType(
    'System.Management.Automation.Runspaces.NewProcessConnectionInfo'),
    [Reflection.BindingFlags]'NonPublic,Instance', $null, @([pscredential]$null), $null)
$rs = [runspacefactory]::CreateRunspace($Host, $ci); $rs.Open()
$session = [System.Management.Automation.Runspaces.PSSession]::Create($rs, 'OutOfProc', $null)
$to = [Diagnostics.Stopwatch]::StartNew()
Copy-Item -LiteralPath '{source}' -Destination '{guest}' -ToSession $session -Force
$to.Stop()
$from = [Diagnostics.Stopwatch]::StartNew()
Copy-Item -LiteralPath '{guest}' -Destination '{back}' -FromSession $session -Force
$from.Stop()
$rs.Dispose()
"{{0}} {{1}}" -f $to.Elapsed.TotalSeconds, $from.Elapsed.TotalSeconds
"""


def child_cpu_seconds() -> float:
    """CPU time of this process's direct children (the ``pwsh -s`` of the session)."""
    total = 0
    me = str(os.getpid())
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[1] == me:
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def write_random(path: Path, mib: int) -> None:
    with path.open("wb") as handle:
        for _ in range(mib):
            handle.write(os.urandom(MIB))


def pwsh_section(pwsh: str, mib: int, own_mib: int, chunk: int) -> list[str]:
    import hvmagic

    lines = [f"real PowerShell: {pwsh}, {mib} MiB, {chunk >> 10} KiB chunks"]
    with tempfile.TemporaryDirectory() as workdir:
        work = Path(workdir)
        source = work / "payload.bin"
        write_random(source, mib)
        total, decode_s, encode_s, deser_s, decode_cpu, encode_cpu = (
            float(x) for x in run_pwsh(pwsh, LIMIT_SCRIPT.format(
                source=source, target=work / "limit.bin", chunk=chunk)).split())
        limit_to, limit_from = mib / decode_s, mib / encode_s
        assert int(total) == mib * MIB
        session = hvmagic.connect("pwsh", via="process", executable=pwsh, timeout=600)
        try:
            session.run("1")
            figures = {}
            for direction in ("to", "from"):
                wall, cpu, server = time.perf_counter(), time.process_time(), child_cpu_seconds()
                if direction == "to":
                    session.copy_to(source, str(work / "guest.bin"), chunk_size=chunk)
                else:
                    session.copy_from(str(work / "guest.bin"), work / "back.bin", chunk_size=chunk)
                figures[direction] = (time.perf_counter() - wall, time.process_time() - cpu,
                                      child_cpu_seconds() - server)
        finally:
            session.close()
        if (work / "back.bin").read_bytes() != source.read_bytes():
            raise SystemExit("copied bytes differ from the source")
        own = ""
        if own_mib:
            small = work / "own.bin"
            write_random(small, own_mib)
            own_to, own_from = (float(x) for x in run_pwsh(pwsh, OWN_COPY_SCRIPT.format(
                source=small, guest=work / "own-guest.bin", back=work / "own-back.bin")).split())
            own = f"{own_mib / own_to:.1f} / {own_mib / own_from:.1f} MiB/s"
    lines.append(f"PowerShell's limit (same chunks, in pwsh): decode base64 + write "
                 f"{limit_to:.1f} MiB/s ({1000 * decode_cpu / mib:.0f} ms CPU/MiB); "
                 f"read + encode {limit_from:.1f} MiB/s ({1000 * encode_cpu / mib:.0f} ms CPU/MiB)")
    lines.append(f"PSSerializer.Deserialize of one {chunk >> 10} KiB chunk as CLIXML in pwsh: "
                 f"{1000 * deser_s / (chunk / MIB):.0f} ms/MiB (a cost PSRP itself puts on the "
                 "receiving server)")
    for direction, limit, limit_cpu in (("to", limit_to, decode_cpu),
                                        ("from", limit_from, encode_cpu)):
        wall, cpu, server = figures[direction]
        rate = mib / wall
        lines.append(
            f"copy_{direction:<4} {rate:6.1f} MiB/s  = {rate / limit:5.1%} of PowerShell's limit "
            f"(target 50%); CPU: client {1000 * cpu / mib:.0f} + pwsh -s "
            f"{1000 * server / mib:.0f} ms/MiB, limit/(client+server) = "
            f"{limit_cpu / (cpu + server):.1%}"
        )
    if own:
        lines.append(f"PowerShell's own Copy-Item -ToSession / -FromSession ({own_mib} MiB, "
                     f"pwsh -s): {own}")
    load = os.getloadavg()
    lines.append(f"load average during the run: {load[0]:.1f} (on {os.cpu_count()} CPUs)")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=32, help="file size in MiB (default 32)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--pwsh-mb", type=int, default=256,
                        help="file size for the real-PowerShell section (0 skips it)")
    parser.add_argument("--own-mb", type=int, default=16,
                        help="file size for PowerShell's own Copy-Item (0 skips it)")
    parser.add_argument("--chunk-kb", type=int, default=DEFAULT_CHUNK_SIZE >> 10,
                        help="chunk size for the real-PowerShell section")
    parser.add_argument("--skip-sim", action="store_true", help="skip the simulated guest")
    args = parser.parse_args()
    size = args.mb * MIB

    print(f"file size {args.mb} MiB, median of {args.repeat}, Python {sys.version.split()[0]}, "
          f"{os.cpu_count()} CPUs")
    if not args.skip_sim:
        simulated(args, size)
    if args.pwsh_mb:
        pwsh = find_pwsh()
        if pwsh is None:
            print("real PowerShell: not found (set HVMAGIC_PWSH); section skipped")
        else:
            for line in pwsh_section(pwsh, args.pwsh_mb, args.own_mb, args.chunk_kb << 10):
                print(line, flush=True)
    return 0


def simulated(args: argparse.Namespace, size: int) -> None:
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
                rows.append((f"copy_to   (FakeGuest, {label})", median_rate(
                    size, args.repeat,
                    lambda c=chunk: copy_to(session, source, "C:\\Bench\\payload.bin",
                                            overwrite=True, chunk_size=c))))
                target = Path(workdir) / "back.bin"
                rows.append((f"copy_from (FakeGuest, {label})", median_rate(
                    size, args.repeat,
                    lambda c=chunk, t=target: copy_from(session, "C:\\Bench\\payload.bin", t,
                                                        overwrite=True, chunk_size=c))))
            if (Path(workdir) / "back.bin").read_bytes() != source.read_bytes():
                raise SystemExit("copied bytes differ from the source")

    width = max(len(name) for name, _ in rows)
    print(f"{'path'.ljust(width)}  {'MiB/s':>9}  {'vs loopback':>11}")
    for name, rate in rows:
        print(f"{name.ljust(width)}  {rate:9.1f}  {rate / loopback:10.3f}x")


if __name__ == "__main__":
    sys.exit(main())
