"""Fleets: sequential vs throttled vs Dask, and the fleet layer's cost per target.

Run: ``PYTHONPATH=. python bench/bench_fleet.py [--targets 200] [--objects 500] [--quick]``

Every measurement runs in its own Python process (clean peak RSS) and prints one line.

* ``fake``: N simulated guests (:mod:`hvmagic.testing.fleet_guests`, in-process FakeGuests:
  real PSRP over socket pairs) each answering with ``--objects`` objects, after ``--work``
  seconds of guest-side work (a real script's own run time, which costs the client nothing).
  Sequential (throttle 1) vs throttle 32. The guests run in the *same* process, so their
  serialization competes with the client's decoding for one GIL: with no guest work the
  throttle can only overlap latency, not CPU.
* ``procs``: the guests in ``--servers`` other processes, reached over TCP. Two cases, each
  sequential (throttle 1) vs throttle 32, printed with the ratio:

  - **latency-bound** (the fleet layer's concurrency): each guest's run takes a fixed
    ``--latency-work`` seconds server-side (a real VM doing the work on its own CPU) and answers
    ``--latency-objects`` objects, so neither side's CPU is the limit and the throttle's overlap
    is what is measured;
  - **CPU-shared**: ``--objects`` objects after 0.5 s of guest work. On this 2-core machine the
    guest processes serialize on the same cores the notebook decodes on (real VMs would not),
    so this ratio is bounded by CPU, not by the fleet layer.
* ``dask``: the same N targets on a Dask cluster of ``--workers`` worker *processes* (Nanny),
  each serving its own "host" with its guests living in that worker process.
* ``overhead``: the fleet layer's own cost per target: the same warm sessions run a 1-object
  script directly (a loop of ``Session.run``) and through ``fleet(throttle=1)``; the difference
  divided by N. Repeated for 100 … 1 000 targets to show it stays flat.
* ``pwsh``: a small real point: 8 local ``pwsh -s`` processes x 500 objects, sequential vs
  throttle 8 (200 real pwsh do not fit a 2-core machine; they share our CPU), with the ratio.

``--cases`` picks which to run (default: all).

Times are of a *warm* run (sessions already open, as in a notebook's second cell); the run
that opened the sessions (a one-object script) is reported beside it as ``connect_run_s``.
``client_cpu_s`` is the notebook process's CPU time during the warm run: where it is close to
the wall time the run is CPU-bound here and no throttle can make it faster.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PWSH_SCRIPT = (
    "1..$Count | ForEach-Object { [pscustomobject]@{ Index = $_; Name = \"item$_\"; "
    "Value = $_ * 1.5; Ok = ($_ % 7 -ne 0) } }"
)


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _summary(result: Any, wall: float, first: float, cpu: float = 0.0) -> dict[str, Any]:
    durations = sorted(t.duration for t in result)
    objects = sum(len(t.result.output) for t in result)
    q = statistics.quantiles(durations, n=20) if len(durations) > 1 else durations * 19
    return {
        "targets": len(result), "ok": sum(t.ok for t in result), "objects": objects,
        "wall_s": round(wall, 3), "client_cpu_s": round(cpu, 3),
        "connect_run_s": round(first, 3),
        "objects_per_s": round(objects / wall), "p50_ms": round(statistics.median(durations)
                                                               * 1000, 1),
        "p95_ms": round(q[18] * 1000, 1), "peak_rss_mb": round(_peak_mb(), 1),
    }


def _targets(n: int, objects: int, work: float, hosts: int = 1) -> list[Any]:
    from hvmagic.fleets import Target

    return [Target(f"vm{i:04d}", f"hv{i % hosts:02d}" if hosts > 1 else None,
                   {"objects": objects, "work": work}) for i in range(n)]


def mode_fake(args: argparse.Namespace) -> dict[str, Any]:
    import hvmagic
    from hvmagic.testing import fleet_guests

    targets = _targets(args.targets, args.objects, args.work)
    with hvmagic.fleet(targets, throttle=args.throttle,
                       connect=fleet_guests.connect_sim_target) as fl:
        started = time.perf_counter()
        fl.run(fleet_guests.PING)  # opens the sessions
        first = time.perf_counter() - started
        started, cpu = time.perf_counter(), time.process_time()
        result = fl.run(fleet_guests.SCRIPT)
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    fleet_guests.close_all()
    return _summary(result, wall, first, cpu)


def mode_dask(args: argparse.Namespace) -> dict[str, Any]:
    import distributed

    import hvmagic
    from hvmagic.fleet_dask import HyperVHostPlugin
    from hvmagic.testing import fleet_guests

    spec = {
        f"w{k}": {"cls": distributed.Nanny,
                  "options": {"nthreads": args.threads, "resources": {f"hyperv:hv{k:02d}": 1},
                              "memory_limit": 0}}
        for k in range(args.workers)
    }
    cluster = distributed.SpecCluster(
        workers=spec, scheduler={"cls": distributed.Scheduler,
                                 "options": {"dashboard": False}}, silence_logs=40,
    )
    client = distributed.Client(cluster)
    try:
        client.register_plugin(HyperVHostPlugin(connect=fleet_guests.connect_sim_target))
        targets = _targets(args.targets, args.objects, args.work, hosts=args.workers)
        fl = hvmagic.fleet(targets, throttle=args.throttle, cluster=client)
        started = time.perf_counter()
        fl.run(fleet_guests.PING)  # opens the sessions on the workers
        first = time.perf_counter() - started
        started, cpu = time.perf_counter(), time.process_time()
        result = fl.run(fleet_guests.SCRIPT)
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu
        summary = _summary(result, wall, first, cpu)
        workers_rss = client.run(lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
        summary["worker_peak_rss_mb"] = round(max(workers_rss.values()) / 1024, 1)
        return summary
    finally:
        client.close()
        cluster.close()


def mode_serve(args: argparse.Namespace) -> dict[str, Any]:
    """Child of ``procs``: serve ``--targets`` simulated guests over TCP until stdin closes."""
    from hvmagic.testing import fleet_guests

    ports = {}
    for i in range(args.first, args.first + args.targets):
        guest = fleet_guests.guest_for(f"vm{i:04d}", args.objects, args.work)
        ports[f"vm{i:04d}"] = guest.serve_tcp()[1]
    print(json.dumps(ports), flush=True)
    sys.stdin.read()
    return {}


def mode_procs(args: argparse.Namespace) -> dict[str, Any]:
    """The guests in ``--servers`` other processes (over TCP): their CPU is not the client's,
    as with real guests, so the throttle's overlap of guest time shows."""
    import socket

    import hvmagic
    from hvmagic.session import open_session
    from hvmagic.testing import fleet_guests
    from hvmagic.transports.base import SocketTransport

    per = -(-args.targets // args.servers)
    servers, ports = [], {}
    for k in range(args.servers):
        count = min(per, args.targets - k * per)
        server = subprocess.Popen(
            [sys.executable, __file__, "--child", "serve", "--targets", str(count),
             "--first", str(k * per), "--objects", str(args.objects), "--work", str(args.work)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        servers.append(server)
        assert server.stdout is not None
        ports.update(json.loads(server.stdout.readline()))

    def connect(target: Any, **kwargs: Any) -> Any:
        sock = socket.create_connection(("127.0.0.1", ports[target.name]))
        return open_session(SocketTransport(sock, f"tcp {target.name}"), name=target.name)

    try:
        with hvmagic.fleet(sorted(ports), throttle=args.throttle, connect=connect) as fl:
            started = time.perf_counter()
            fl.run(fleet_guests.PING)
            first = time.perf_counter() - started
            started, cpu = time.perf_counter(), time.process_time()
            result = fl.run(fleet_guests.SCRIPT)
            wall, cpu = time.perf_counter() - started, time.process_time() - cpu
        return _summary(result, wall, first, cpu)
    finally:
        for server in servers:
            server.communicate("")


def mode_overhead(args: argparse.Namespace) -> dict[str, Any]:
    import hvmagic
    from hvmagic.fleets import Target
    from hvmagic.testing import fleet_guests

    targets = [Target(f"vm{i:04d}", None, {"objects": 1}) for i in range(args.targets)]
    sessions = {t: fleet_guests.connect_sim_target(t) for t in targets}
    for session in sessions.values():
        session.run(fleet_guests.SCRIPT)  # warm
    best_direct = best_fleet = float("inf")
    fl = hvmagic.fleet(targets, throttle=1, sessions=sessions)
    throttled = hvmagic.fleet(targets, throttle=32, sessions=sessions)
    best_throttled = float("inf")
    for _ in range(args.repeat):
        started = time.perf_counter()
        for session in sessions.values():
            session.run(fleet_guests.SCRIPT)
        best_direct = min(best_direct, time.perf_counter() - started)
        started = time.perf_counter()
        result = fl.run(fleet_guests.SCRIPT)
        best_fleet = min(best_fleet, time.perf_counter() - started)
        started = time.perf_counter()
        throttled.run(fleet_guests.SCRIPT)
        best_throttled = min(best_throttled, time.perf_counter() - started)
    assert result.ok
    started = time.perf_counter()
    result.frame()
    _ = result.status
    tables = time.perf_counter() - started
    for session in sessions.values():
        session.close()
    fleet_guests.close_all()
    n = args.targets
    return {
        "targets": n, "direct_ms_per_target": round(best_direct / n * 1000, 3),
        "fleet_throttle1_ms_per_target": round(best_fleet / n * 1000, 3),
        "fleet_overhead_ms_per_target": round((best_fleet - best_direct) / n * 1000, 3),
        "fleet_throttle32_ms_per_target": round(best_throttled / n * 1000, 3),
        "frame_and_status_ms_per_target": round(tables / n * 1000, 3),
        "peak_rss_mb": round(_peak_mb(), 1),
    }


def mode_pwsh(args: argparse.Namespace) -> dict[str, Any]:
    import hvmagic
    from tests.pwsh.conftest import find_pwsh

    pwsh = find_pwsh()
    if pwsh is None:
        return {"skipped": "no pwsh"}

    def connect(target: Any, **kwargs: Any) -> Any:
        return hvmagic.connect(target.name, via="process", executable=pwsh, timeout=120)

    names = [f"p{i}" for i in range(args.targets)]
    with hvmagic.fleet(names, throttle=args.throttle, connect=connect) as fl:
        started = time.perf_counter()
        fl.run("$PID")  # starts the pwsh processes
        first = time.perf_counter() - started
        started, cpu = time.perf_counter(), time.process_time()
        result = fl.run(PWSH_SCRIPT, {"Count": args.objects})
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    return _summary(result, wall, first, cpu)


MODES = {"fake": mode_fake, "dask": mode_dask, "overhead": mode_overhead, "pwsh": mode_pwsh,
         "serve": mode_serve, "procs": mode_procs}


def _child(mode: str, **options: Any) -> dict[str, Any]:
    command = [sys.executable, __file__, "--child", mode]
    for key, value in options.items():
        command += [f"--{key}", str(value)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        return {"error": (done.stderr or done.stdout).strip().splitlines()[-1:]}
    return dict(json.loads(lines[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--child", choices=sorted(MODES), help=argparse.SUPPRESS)
    parser.add_argument("--targets", type=int, default=200)
    parser.add_argument("--objects", type=int, default=500)
    parser.add_argument("--throttle", type=int, default=32)
    parser.add_argument("--work", type=float, default=0.0)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--servers", type=int, default=2)
    parser.add_argument("--first", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--latency-work", type=float, default=0.5,
                        help="latency-bound case: seconds each guest run takes server-side")
    parser.add_argument("--latency-objects", type=int, default=20,
                        help="latency-bound case: objects each guest run answers")
    parser.add_argument("--cases", default="latency,cpu,inprocess,overhead,pwsh",
                        help="comma-separated: latency, cpu, inprocess, overhead, pwsh")
    parser.add_argument("--quick", action="store_true", help="smaller counts")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(MODES[args.child](args)))
        return
    cases = set(args.cases.split(","))
    n, objects = (40, 500) if args.quick else (args.targets, args.objects)
    ratios: list[str] = []
    if "latency" in cases:
        label = (f"latency-bound: {n} targets x {args.latency_objects} objects, each run "
                 f"{args.latency_work:g} s server-side, guests in {args.servers} processes")
        ratios.append(_compare(label, "procs", n, targets=n, objects=args.latency_objects,
                               work=args.latency_work, servers=args.servers, high=32,
                               target=10.0))
    if "cpu" in cases:
        label = (f"CPU-shared: {n} targets x {objects} objects, guest work 0.5 s, guests in "
                 f"{args.servers} processes on our 2 cores")
        ratios.append(_compare(label, "procs", n, targets=n, objects=objects, work=0.5,
                               servers=args.servers, high=32, target=10.0))
    for work in ((0.0, 0.2) if "inprocess" in cases else ()):
        label = f"{n} targets x {objects} objects, guest work {work:g} s"
        print(f"{label}, sequential :", _child("fake", targets=n, objects=objects,
                                               throttle=1, work=work), flush=True)
        print(f"{label}, throttle 32:", _child("fake", targets=n, objects=objects,
                                               throttle=32, work=work), flush=True)
        print(f"{label}, Dask {args.workers} workers:", _child(
            "dask", targets=n, objects=objects, throttle=32, work=work, workers=args.workers,
            threads=args.threads), flush=True)
    for count in (((100, 250) if args.quick else (100, 250, 500, 1000))
                  if "overhead" in cases else ()):
        print(f"overhead, {count} targets:", _child("overhead", targets=count,
                                                    repeat=args.repeat), flush=True)
    if "pwsh" in cases:
        ratios.append(_compare(f"real pwsh: 8 targets x {objects} objects (pwsh shares our CPU)",
                               "pwsh", 8, targets=8, objects=objects, high=8, target=None))
    print("\nratios (wall time, sequential / throttled):")
    for line in ratios:
        print("  " + line)


def _compare(label: str, mode: str, n: int, *, high: int, target: float | None,
             **options: Any) -> str:
    """Run ``mode`` sequentially and at throttle ``high``; print both; return the ratio line."""
    runs = {}
    for throttle in (1, high):
        runs[throttle] = _child(mode, throttle=throttle, **options)
        print(f"{label}, throttle {throttle}:", runs[throttle], flush=True)
    slow, fast = runs[1].get("wall_s"), runs[high].get("wall_s")
    if not slow or not fast:
        return f"{label}: no ratio (a run failed)"
    ratio = slow / fast
    verdict = "" if target is None else (
        f" (target >= {target:g}x: {'met' if ratio >= target else 'NOT met'})")
    cpu = runs[high].get("client_cpu_s")
    return (f"{label}: throttle {high} is {ratio:.1f}x sequential "
            f"({slow:.1f} s -> {fast:.1f} s; our CPU {cpu} s){verdict}")


if __name__ == "__main__":
    main()
