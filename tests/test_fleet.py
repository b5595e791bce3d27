"""Fleets under failure, with fault-injecting simulated guests (what PowerShell cannot do on
demand: die mid-run, hang without acknowledging a stop, refuse connections while rebooting).

Real PowerShell fleets are in tests/pwsh/test_fleet_pwsh.py.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

import hvmagic
from hvmagic import session as session_module
from hvmagic.clixml.values import PSCredential
from hvmagic.errors import FleetError, TransportError
from hvmagic.fleets import FleetInterrupted, FleetResult, Target, TargetResult, credential_for
from hvmagic.testing import FakeGuest
from hvmagic.testing.guest import HandlerContext

SCRIPT = "Get-Widget"


class Guests:
    """Named simulated guests and a connect seam reaching them."""

    def __init__(self) -> None:
        self.guests: dict[str, FakeGuest] = {}
        self.connects: list[tuple[str, dict[str, Any]]] = []
        self.release = threading.Event()  # frees stalled guests at teardown

    def add(self, name: str, handler: Any) -> FakeGuest:
        guest = FakeGuest()
        guest.add_handler(SCRIPT, handler)
        self.guests[name] = guest
        return guest

    def connect(self, target: Target, **kwargs: Any) -> Any:
        self.connects.append((target.name, kwargs))
        return self.guests[target.name].connect(name=target.name)

    def close(self) -> None:
        self.release.set()
        for guest in self.guests.values():
            guest.close()


def widgets(ctx: HandlerContext) -> list[dict[str, Any]]:
    ctx.warning("checking widgets")
    me = ctx.variables.setdefault("me", f"run-{len(ctx.guest.history)}")
    return [{"Index": i, "Session": me, "Greeting": ctx.parameters.get("Greeting")}
            for i in range(3)]


@pytest.fixture
def guests() -> Iterator[Guests]:
    pool = Guests()
    try:
        yield pool
    finally:
        pool.close()


@pytest.fixture
def short_stop_grace(monkeypatch: pytest.MonkeyPatch) -> None:
    # a hung guest costs the stop grace; the rule is the same at 0.5 s as at 5 s
    monkeypatch.setattr(session_module, "STOP_TIMEOUT", 0.5)


def test_every_other_target_keeps_its_output_when_some_fail(
    guests: Guests, short_stop_grace: None
) -> None:
    guests.add("web1", widgets)
    guests.add("web2", widgets)

    def failing(ctx: HandlerContext) -> None:
        ctx.output({"Index": 0})
        ctx.fail("the disk is full")

    def sleeper(ctx: HandlerContext) -> None:
        ctx.output({"Index": 0})
        ctx.sleep(30)

    def staller(ctx: HandlerContext) -> None:
        ctx.stall(guests.release, timeout=30, first=[{"Index": 0}])

    killed_ready = threading.Event()

    def dies(ctx: HandlerContext) -> None:
        ctx.output_many([{"Index": i} for i in range(2)])
        killed_ready.set()
        ctx.sleep(30)

    guests.add("db1", failing)
    guests.add("slow1", sleeper)
    guests.add("hung1", staller)
    victim = guests.add("dies1", dies)
    rebooting = guests.add("off1", widgets)
    rebooting.reboot(seconds=60)  # refuses connections: unreachable

    def kill_when_ready() -> None:
        if killed_ready.wait(10):
            time.sleep(0.3)  # let the two objects reach the client first
            victim.kill_connections()

    threading.Thread(target=kill_when_ready, daemon=True).start()
    names = ["web1", "web2", "db1", "slow1", "hung1", "dies1", "off1"]
    started = time.monotonic()
    with hvmagic.fleet(names, connect=guests.connect, timeout=1.5) as fl:
        result = fl.run(SCRIPT, parameters={"Greeting": "hello"})
    elapsed = time.monotonic() - started

    status = result.status.set_index("VMName")
    assert status["State"].to_dict() == {
        "web1": "Completed", "web2": "Completed", "db1": "Failed", "slow1": "TimedOut",
        "hung1": "TimedOut", "dies1": "Broken", "off1": "Unreachable",
    }
    assert status.loc["db1", "Error"] == "the disk is full"
    assert "rebooting" in status.loc["off1", "Error"]
    assert "broken" in status.loc["hung1", "Error"]
    assert status["Output"].to_dict() == {
        "web1": 3, "web2": 3, "db1": 1, "slow1": 1, "hung1": 1, "dies1": 2, "off1": 0,
    }
    # in parallel: the whole fleet took about one timeout plus the stop grace, not their sum
    assert elapsed < 1.5 + 0.5 + 3.0
    frame = result.frame()
    assert list(frame.columns[:2]) == ["VMName", "HostName"]
    assert frame.groupby("VMName").size().to_dict() == {
        "web1": 3, "web2": 3, "db1": 1, "slow1": 1, "hung1": 1, "dies1": 2,
    }
    assert set(frame.loc[frame.VMName == "web2", "Greeting"]) == {"hello"}
    assert [w.message for w in result["web1"].result.warnings] == ["checking widgets"]
    with pytest.raises(FleetError) as raised:
        result.raise_for_errors()
    assert raised.value.result is result
    assert "5 of 7 target(s)" in str(raised.value)


def test_sessions_persist_and_broken_ones_reconnect(guests: Guests) -> None:
    guests.add("web1", widgets)
    rebooter = guests.add("web2", widgets)
    with hvmagic.fleet("web1,web2", connect=guests.connect) as fl:
        first = fl.run(SCRIPT)
        assert first.ok
        rebooter.kill_connections()  # web2's PowerShell dies between runs
        time.sleep(0.1)
        second = fl.run(SCRIPT)
        third = fl.run(SCRIPT)
    assert second["web1"].state == "Completed"
    # the dead session is only noticed by using it: Broken once, then a fresh session
    assert second["web2"].state == "Broken"
    assert third["web2"].state == "Completed"
    # web1 kept its runspace (its per-session variable) across all three runs
    sessions_web1 = {o["Session"] for r in (first, second, third)
                     for o in r["web1"].result.output}
    assert len(sessions_web1) == 1
    assert [name for name, _ in guests.connects].count("web1") == 1
    assert [name for name, _ in guests.connects].count("web2") == 2


def test_throttle_limits_concurrency(guests: Guests) -> None:
    lock = threading.Lock()
    active = [0]
    peak = [0]

    def counted(ctx: HandlerContext) -> list[int]:
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        ctx.sleep(0.15)
        with lock:
            active[0] -= 1
        return [1]

    names = [f"vm{i}" for i in range(8)]
    for name in names:
        guests.add(name, counted)
    with hvmagic.fleet(names, connect=guests.connect, throttle=3) as fl:
        result = fl.run(SCRIPT)
    assert result.ok
    assert peak[0] == 3


def test_on_event_gets_each_targets_records_one_call_at_a_time(guests: Guests) -> None:
    for name in ("a", "b", "c"):
        guests.add(name, widgets)
    seen: list[tuple[str, str]] = []
    inside = [0]

    def on_event(target: Target, stream: str, record: Any) -> None:
        inside[0] += 1
        assert inside[0] == 1, "on_event was entered twice at once"
        time.sleep(0.001)
        seen.append((target.name, stream))
        inside[0] -= 1

    with hvmagic.fleet(["a", "b", "c"], connect=guests.connect) as fl:
        fl.run(SCRIPT, on_event=on_event)
    for name in ("a", "b", "c"):
        assert seen.count((name, "output")) == 3
        assert seen.count((name, "warning")) == 1


def test_globs_resolve_on_every_host_and_an_unreachable_host_is_reported() -> None:
    inventory = {"hv01": ["web1", "web2", "db1"], "hv02": ["web3", "app1"]}
    asked: list[tuple[str | None, str, bool]] = []

    def resolver(host: str | None, pattern: str, *, running_only: bool) -> list[str]:
        asked.append((host, pattern, running_only))
        if host == "hv03":
            raise TransportError("hv03: connection refused")
        import fnmatch

        return [n for n in inventory[str(host)] if fnmatch.fnmatch(n, pattern)]

    fl = hvmagic.fleet("web*,db1", hosts="hv01,hv02,hv03", resolver=resolver,
                       connect=lambda t, **k: None)
    assert [t.label for t in fl.targets] == ["hv01/web1", "hv01/web2", "hv02/web3", "hv01/db1"]
    assert ("hv01", "web*", True) in asked
    planned = fl._resolve()
    unreachable = [t for t in planned if t.state == "Unreachable"]
    assert [(t.target.label, t.error) for t in unreachable] == [
        ("hv03/web*", "could not resolve 'web*': hv03: connection refused"),
        ("hv03/db1", "could not resolve 'db1': hv03: connection refused"),
    ]


def test_credentials_exact_before_glob_and_never_on_results(guests: Guests) -> None:
    admin = PSCredential("CORP\\admin", "s3cret-admin")
    tenant = PSCredential("tenant\\ops", "s3cret-tenant")
    creds: dict[str, Any] = {"web*": admin, "web2": tenant, "db*": "dbuser"}
    assert credential_for(Target("web1"), creds) is admin
    assert credential_for(Target("web2"), creds) is tenant
    assert credential_for(Target("DB1"), creds) == "dbuser"
    assert credential_for(Target("app1"), creds) is None
    assert credential_for(Target("x"), {"x": lambda t: f"user-{t.name}"}) == "user-x"
    for name in ("web1", "web2", "db1"):
        guests.add(name, widgets)
    with hvmagic.fleet(["web1", "web2", "db1"], connect=guests.connect,
                       credentials=creds) as fl:
        result = fl.run(SCRIPT)
    given = dict(guests.connects)
    assert given["web1"] == {"credential": admin}
    assert given["web2"] == {"credential": tenant}
    assert given["db1"] == {"username": "dbuser"}
    text = repr(result) + repr(list(result)) + result.status.to_string() + repr(fl)
    assert "s3cret" not in text


def test_interrupt_stops_every_running_pipeline_and_keeps_what_arrived(
    guests: Guests,
) -> None:
    import _thread

    def long(ctx: HandlerContext) -> None:
        ctx.output({"Index": 0})
        ctx.sleep(30)

    names = ["a", "b", "c", "d"]
    for name in names:
        guests.add(name, long)
    fl = hvmagic.fleet(names, connect=guests.connect, throttle=3)
    arrived: list[str] = []

    def interrupt_once_three_run(target: Target, stream: str, record: Any) -> None:
        arrived.append(target.name)
        if len(arrived) == 3:  # Ctrl-C while three pipelines run and the fourth waits
            _thread.interrupt_main()

    started = time.monotonic()
    with pytest.raises(FleetInterrupted) as raised:
        fl.run(SCRIPT, on_event=interrupt_once_three_run)
    assert time.monotonic() - started < 4.0
    states = {t.name: t.state for t in raised.value.result}
    assert sorted(states.values()) == ["NotStarted", "Stopped", "Stopped", "Stopped"]
    assert all(len(t.result.output) == 1 for t in raised.value.result if t.state == "Stopped")
    # the stopped sessions stay usable
    for guest in guests.guests.values():
        guest.add_handler("Get-Quick", lambda ctx: [1])
    assert fl.run("Get-Quick").ok
    fl.close()


def test_result_pickles_and_frame_of_an_empty_fleet() -> None:
    import pickle

    from hvmagic.session import Result

    outcome = TargetResult(Target("web1", "hv01"), state="Completed",
                           result=Result(output=[{"A": 1}], state="Completed"))
    copy = pickle.loads(pickle.dumps(FleetResult([outcome])))
    assert copy["hv01/web1"].result.output == [{"A": 1}]
    assert copy["web1"].target == Target("web1", "hv01")
    empty = FleetResult([])
    assert empty.ok and list(empty.frame().columns) == ["VMName", "HostName"]


# --------------------------------------------------------------------------------------------
# Dask: workers on a LocalCluster-like SpecCluster, each serving its own "Hyper-V host"

#: guests reachable from the in-process Dask workers (the connect seam below finds them here;
#: module-level so Dask pickles the seam by reference)
DASK_GUESTS: dict[str, FakeGuest] = {}
DASK_CONNECTS: list[tuple[str, str | None, dict[str, Any]]] = []
INVENTORY = {"hv01": ["web1", "web2", "old1"], "hv02": ["db1", "db2", "web3"], "hv03": ["app1"]}


def dask_connect(target: Target, **kwargs: Any) -> Any:
    import distributed

    DASK_CONNECTS.append((target.name, target.host, kwargs))
    guest = DASK_GUESTS[target.name]
    guest.state["worker"] = distributed.get_worker().name  # which worker connected
    return guest.connect(name=target.name)


def inventory_resolver(host: str | None, pattern: str, *, running_only: bool) -> list[str]:
    import fnmatch

    names = INVENTORY.get(str(host), [])
    return [n for n in names if fnmatch.fnmatch(n, pattern)
            and not (running_only and n.startswith("old"))]


@pytest.fixture
def dask_cluster() -> Iterator[tuple[Any, Any]]:
    distributed = pytest.importorskip("distributed")
    from hvmagic.fleet_dask import HyperVHostPlugin

    spec = {
        f"w-{host}": {"cls": distributed.Worker,
                      "options": {"nthreads": 4, "resources": {f"hyperv:{host}": 1}}}
        for host in ("hv01", "hv02", "hv03")
    }
    cluster = distributed.SpecCluster(
        workers=spec, scheduler={"cls": distributed.Scheduler, "options": {"dashboard": False}}
    )
    client = distributed.Client(cluster)
    client.register_plugin(HyperVHostPlugin(connect=dask_connect, resolver=inventory_resolver))
    DASK_CONNECTS.clear()
    try:
        yield client, cluster
    finally:
        for guest in DASK_GUESTS.values():
            guest.close()
        DASK_GUESTS.clear()
        client.close()
        cluster.close()


def test_dask_fleet_runs_each_target_on_its_hosts_worker_and_survives_a_lost_worker(
    dask_cluster: tuple[Any, Any],
) -> None:
    client, cluster = dask_cluster
    on_hv03 = threading.Event()

    def where(ctx: HandlerContext) -> list[dict[str, Any]]:
        return [{"Worker": ctx.guest.state["worker"], "I": i} for i in range(2)]

    def failing(ctx: HandlerContext) -> None:
        ctx.output({"Worker": "?", "I": 0})
        ctx.fail("service missing")

    def held(ctx: HandlerContext) -> None:
        ctx.output({"Worker": "hv03", "I": 0})
        on_hv03.set()
        ctx.sleep(30)

    for name, handler in (("web1", where), ("web2", where), ("db1", failing), ("db2", where),
                          ("app1", held)):
        guest = FakeGuest()
        guest.add_handler(SCRIPT, handler)
        DASK_GUESTS[name] = guest

    def kill_hv03() -> None:
        if on_hv03.wait(10):
            worker = cluster.workers["w-hv03"]
            cluster.sync(worker.close, executor_wait=False, nanny=False)

    targets = [Target("web1", "hv01"), Target("web2", "hv01"), Target("db1", "hv02"),
               Target("db2", "hv02"), Target("app1", "hv03"), Target("x1", "hv09")]
    fl = hvmagic.fleet(targets, cluster=client, credentials={"db*": "dbadmin"})
    threading.Thread(target=kill_hv03, daemon=True).start()
    started = time.monotonic()
    result = fl.run(SCRIPT)
    assert time.monotonic() - started < 10, result.status.to_string()
    status = result.status.set_index("VMName")
    assert status["State"].to_dict() == {
        "web1": "Completed", "web2": "Completed", "db1": "Failed", "db2": "Completed",
        "app1": "Broken", "x1": "Unreachable",
    }, status.to_string()
    assert "serving 'hv03' was lost mid-run" in status.loc["app1", "Error"]
    assert status.loc["x1", "Error"] == "no Dask worker serves Hyper-V host 'hv09'"
    frame = result.frame()
    # each target ran on the worker serving its host
    ran_on = {name: set(group["Worker"]) for name, group in frame.groupby("VMName")}
    assert ran_on == {"web1": {"w-hv01"}, "web2": {"w-hv01"}, "db1": {"?"}, "db2": {"w-hv02"}}
    assert list(frame["HostName"].unique()) == ["hv01", "hv02"]
    # user names (not PSCredentials) cross to the workers
    assert {(n, k.get("username")) for n, _h, k in DASK_CONNECTS} >= {("db1", "dbadmin")}

    # sessions stay cached on the workers between runs
    again = fl.run(SCRIPT)
    assert again["web1"].state == "Completed" and again["db2"].state == "Completed"
    assert again["app1"].state == "Unreachable"  # its only worker is gone
    assert [n for n, _h, _k in DASK_CONNECTS].count("web1") == 1


def test_dask_fleet_resolves_globs_on_each_hosts_worker_and_refuses_pscredentials(
    dask_cluster: tuple[Any, Any],
) -> None:
    client, _cluster = dask_cluster
    fl = hvmagic.fleet("web*", hosts=["hv01", "hv02"], cluster=client)
    assert [t.label for t in fl.targets] == ["hv01/web1", "hv01/web2", "hv02/web3"]
    secret = PSCredential("admin", "s3cret")
    guarded = hvmagic.fleet([Target("web1", "hv01")], cluster=client,
                            credentials={"*": secret})
    with pytest.raises(hvmagic.errors.CredentialError, match="only user names"):
        guarded.run(SCRIPT)
    assert DASK_CONNECTS == []  # refused before anything was sent


# --------------------------------------------------------------------------------------------
# %%vmps on a fleet


def test_vmps_cell_on_matching_sessions_shows_one_frame_status_and_prefixed_streams(
    guests: Guests,
) -> None:
    from IPython.core.interactiveshell import InteractiveShell
    from IPython.utils.capture import capture_output

    from hvmagic.magic_errors import PowerShellError

    def failing(ctx: HandlerContext) -> None:
        ctx.output({"Index": 0})
        ctx.fail("the disk is full")

    guests.add("web1", widgets)
    guests.add("web2", widgets)
    guests.add("db1", failing)
    guests.add("other", widgets)
    shell = InteractiveShell.instance()
    shell.extension_manager.load_extension("hvmagic")
    try:
        for name in ("web1", "web2", "db1", "other"):
            shell.user_ns[f"s_{name}"] = guests.connect(Target(name))
            with capture_output():
                shell.run_line_magic("vmconnect", f"{name} --session s_{name}")
        shell.user_ns["Greeting"] = "hi"
        with capture_output() as captured:
            shell.run_cell_magic("vmps", "web*,db1 -o out --with Greeting --no-raise",
                                 SCRIPT)
        frame = shell.user_ns["out"]
        assert frame.groupby("VMName").size().to_dict() == {"web1": 3, "web2": 3, "db1": 1}
        assert set(frame.loc[frame.VMName == "web1", "Greeting"]) == {"hi"}
        fleet_result = shell.user_ns["_vmps_result"]
        assert fleet_result.status.set_index("VMName")["State"].to_dict() == {
            "web1": "Completed", "web2": "Completed", "db1": "Failed"}
        shown = "\n".join(o.data.get("text/plain", "") for o in captured.outputs)
        assert "[web1] WARNING: checking widgets" in shown
        assert "[db1] WARNING" not in shown
        assert "the disk is full" in shown  # the status table
        with capture_output():
            cell = shell.run_cell(f'%%vmps --vms "web*"\n{SCRIPT}')
        assert cell.success
        with capture_output():
            failed = shell.run_cell(f"%%vmps web1,db1\n{SCRIPT}")
        assert isinstance(failed.error_in_exec, PowerShellError)
        assert "1 of 2 target(s)" in str(failed.error_in_exec)
        with capture_output():
            missing = shell.run_cell(f"%%vmps nothing*\n{SCRIPT}")
        assert "no open session matches 'nothing*'" in str(missing.error_in_exec)
    finally:
        shell.run_line_magic("vmclose", "--all")
        shell.extension_manager.unload_extension("hvmagic")
        shell.user_ns.pop("_vmps_result", None)


def test_dask_interrupt_stops_the_pipelines_on_the_workers(
    dask_cluster: tuple[Any, Any],
) -> None:
    import _thread

    client, _cluster = dask_cluster
    running = threading.Semaphore(0)

    def long(ctx: HandlerContext) -> None:
        ctx.output({"Index": 0})
        running.release()
        ctx.sleep(30)

    for name in ("web1", "db1"):
        guest = FakeGuest()
        guest.add_handler(SCRIPT, long)
        guest.add_handler("Get-Quick", lambda ctx: [2])
        DASK_GUESTS[name] = guest
    fl = hvmagic.fleet([Target("web1", "hv01"), Target("db1", "hv02")], cluster=client)

    def interrupt_when_both_run() -> None:
        if running.acquire(timeout=10) and running.acquire(timeout=10):
            time.sleep(0.2)  # the first object reaches the worker's client
            _thread.interrupt_main()

    threading.Thread(target=interrupt_when_both_run, daemon=True).start()
    started = time.monotonic()
    with pytest.raises(FleetInterrupted) as raised:
        fl.run(SCRIPT)
    assert time.monotonic() - started < 12
    outcomes = {t.name: (t.state, t.result.output) for t in raised.value.result}
    assert outcomes == {"web1": ("Stopped", [{"Index": 0}]), "db1": ("Stopped", [{"Index": 0}])}
    # the workers' sessions stayed usable
    assert {t.name: t.result.output for t in fl.run("Get-Quick")} == {"web1": [2], "db1": [2]}
