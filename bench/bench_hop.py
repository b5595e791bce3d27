"""The hop through a Hyper-V host, over SSH: hvmagic vs PowerShell's own client on the same hop.

Run: ``PYTHONPATH=. python bench/bench_hop.py [--runs 200] [-n 20000] [--pwsh PATH]``

The rig is the test rig (:class:`hvmagic.testing.sshd.LocalSSHServer`): Debian's sshd on
127.0.0.1 with the ``powershell`` subsystem. The "host" runspace is pwsh over that SSH server;
its inner session (where PowerShell Direct's ``-VMName`` would go) is a second pwsh over the same
server. Measured, each side on the same two-level hop:

1. per-run latency of a trivial run (``1``), ``--runs`` times: p50 / p95;
2. ``-n`` objects (3 properties each) through the hop, to a list (and for hvmagic a DataFrame).

hvmagic: ``hvmagic.connect(VM, host=..., via="ssh")`` → ``Session.run``.
PowerShell: a ``pwsh`` started here opens ``New-PSSession`` to the host, in it a second
``New-PSSession`` to the "VM", and times ``Invoke-Command -Session $h { Invoke-Command -Session
$i {...} }`` with a Stopwatch (PowerShell's own client at both levels, as a user would type it).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import hvmagic
from hvmagic.testing.sshd import LocalSSHServer

OBJECTS = '1..$n | ForEach-Object { [pscustomobject]@{ Id = $_; Name = "name$_"; Half = $_ / 2 } }'


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def bench_hvmagic(server: LocalSSHServer, runs: int, n: int) -> dict[str, float]:
    started = time.perf_counter()
    session = hvmagic.connect(
        "vm", host="127.0.0.1", via="ssh", host_username=server.user, timeout=180,
        host_options={**server.host_options, "pssession_arguments": server.pssession_options},
    )
    opened = time.perf_counter() - started
    try:
        session.run("1")  # warm: first-run JIT on both sides
        latencies = []
        for _ in range(runs):
            t = time.perf_counter()
            session.run("1")
            latencies.append(time.perf_counter() - t)
        session.run(OBJECTS, {"n": 200})  # warm
        t = time.perf_counter()
        result = session.run(OBJECTS, {"n": n})
        bulk = time.perf_counter() - t
        assert len(result.output) == n, len(result.output)
        t = time.perf_counter()
        frame = result.frame()
        to_frame = time.perf_counter() - t
        assert len(frame) == n
    finally:
        session.close()
    return {"open": opened, "p50": percentile(latencies, 0.5), "p95": percentile(latencies, 0.95),
            "bulk": bulk, "frame": to_frame}


def bench_powershell(server: LocalSSHServer, pwsh: str, runs: int, n: int) -> dict[str, float]:
    options = server.pssession_options
    ps_options = "; ".join(f"{k}='{v}'" for k, v in options["Options"].items())
    target = (
        f"-HostName 127.0.0.1 -Port {server.port} -UserName {server.user} -SSHTransport "
        f"-KeyFilePath '{server.client_key}' -Options @{{{ps_options}}}"
    )
    objects = OBJECTS.replace("$n", "$using:n")
    script = f"""
        $ErrorActionPreference = 'Stop'
        $open = [Diagnostics.Stopwatch]::StartNew()
        $h = New-PSSession {target}
        Invoke-Command -Session $h {{ $global:i = New-PSSession {target} }}
        $opened = $open.Elapsed.TotalSeconds
        $null = Invoke-Command -Session $h {{ Invoke-Command -Session $global:i {{ 1 }} }}
        $lat = foreach ($k in 1..{runs}) {{
            $sw = [Diagnostics.Stopwatch]::StartNew()
            $null = Invoke-Command -Session $h {{ Invoke-Command -Session $global:i {{ 1 }} }}
            $sw.Elapsed.TotalSeconds
        }}
        $n = 200
        $null = Invoke-Command -Session $h {{
            $n = $using:n; Invoke-Command -Session $global:i {{ {objects} }} }}
        $n = {n}
        $sw = [Diagnostics.Stopwatch]::StartNew()
        $out = Invoke-Command -Session $h {{
            $n = $using:n; Invoke-Command -Session $global:i {{ {objects} }} }}
        $bulk = $sw.Elapsed.TotalSeconds
        if ($out.Count -ne $n) {{ throw "got $($out.Count) objects" }}
        Remove-PSSession $h
        @{{ open = $opened; lat = @($lat); bulk = $bulk }} | ConvertTo-Json -Compress
    """
    completed = subprocess.run(
        [pwsh, "-NoLogo", "-NoProfile", "-NonInteractive", "-Command", script],
        capture_output=True, text=True, timeout=1800, check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(completed.stderr or completed.stdout)
    data = json.loads(completed.stdout.strip().splitlines()[-1])
    latencies = [float(x) for x in data["lat"]]
    return {"open": float(data["open"]), "p50": percentile(latencies, 0.5),
            "p95": percentile(latencies, 0.95), "bulk": float(data["bulk"])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("-n", type=int, default=20000)
    parser.add_argument("--pwsh", default=str(Path(__file__).resolve().parents[2] / "shared"
                                              / "tools" / "pwsh"))
    args = parser.parse_args()
    with LocalSSHServer(args.pwsh) as server:
        ours = bench_hvmagic(server, args.runs, args.n)
        theirs = bench_powershell(server, args.pwsh, args.runs, args.n)
    print(f"two-level hop over SSH (host runspace → inner session), {args.runs} trivial runs, "
          f"{args.n} objects")
    print(f"{'':28}{'open s':>9}{'p50 ms':>9}{'p95 ms':>9}{'bulk s':>9}{'obj/s':>9}")
    for label, r in (("hvmagic Session.run", ours), ("PowerShell Invoke-Command", theirs)):
        print(f"{label:28}{r['open']:9.2f}{r['p50'] * 1e3:9.1f}{r['p95'] * 1e3:9.1f}"
              f"{r['bulk']:9.2f}{args.n / r['bulk']:9.0f}")
    print(f"hvmagic Result.frame() of the {args.n} objects: {ours['frame']:.2f} s")


if __name__ == "__main__":
    main()
