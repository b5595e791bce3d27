"""Remote runners: the fleet engine never imports its Dask runner (hvmagic.fleet builds it);
any object with a runner's methods can run a fleet's targets."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

import hvmagic
from hvmagic.fleet_events import FleetReporter
from hvmagic.fleets import RemoteRunner, Target, TargetResult
from hvmagic.session import Result

ROOT = Path(__file__).resolve().parent.parent


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_the_fleet_engine_does_not_import_its_dask_runner() -> None:
    assert "hvmagic.fleet_dask" not in _imported_modules(ROOT / "hvmagic" / "fleets.py")
    assert "hvmagic.fleets" in _imported_modules(ROOT / "hvmagic" / "fleet_dask.py")
    # and at run time: a plain fleet pulls in neither the backend nor Dask
    code = ("import sys, hvmagic; hvmagic.fleet(['a']); "
            "print('hvmagic.fleet_dask' in sys.modules, 'distributed' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, cwd=ROOT)
    assert done.stdout.split() == ["False", "False"]


class ListBackend:
    """A backend that runs nothing remotely: each target 'answers' its own name."""

    def __init__(self) -> None:
        self.ran: list[str] = []
        self.closed = False

    def resolve(self, host: str | None, pattern: str, *, running_only: bool) -> list[str]:
        return [f"{pattern.rstrip('*')}{i}" for i in (1, 2)]

    def run(self, targets: list[Target], script: str, parameters: Mapping[str, Any] | None,
            timeout: float | None, reporter: FleetReporter, throttle: int, started: float,
            *, lazy: bool = False) -> dict[tuple[str, str], TargetResult]:
        outcomes = {}
        for target in targets:
            reporter.started(target)
            self.ran.append(target.label)
            reporter.event(target, "output", target.name)
            outcome = TargetResult(target, "Completed", Result(output=[target.name],
                                                               state="Completed"))
            reporter.finished(outcome)
            outcomes[target.key] = outcome
        return outcomes

    def close(self) -> None:
        self.closed = True


def test_any_object_with_the_backend_methods_runs_the_fleet() -> None:
    backend = ListBackend()
    assert isinstance(backend, RemoteRunner)
    events: list[tuple[str, str]] = []
    with hvmagic.fleet("web*", host="hv01", cluster=backend) as fl:
        result = fl.run("x", on_event=lambda t, s, r: events.append((t.label, r)))
    assert backend.closed
    assert backend.ran == ["hv01/web1", "hv01/web2"]
    assert list(result.frame()["HostName"]) == ["hv01", "hv01"]
    assert events == [("hv01/web1", "web1"), ("hv01/web2", "web2")]


def test_host_and_hosts_are_one_option() -> None:
    with pytest.raises(TypeError, match="host= or hosts="):
        hvmagic.fleet("web*", host="hv01", hosts="hv02")
    seen: list[str | None] = []

    def resolver(host: str | None, pattern: str, *, running_only: bool) -> list[str]:
        seen.append(host)
        return ["web1"]

    fl = hvmagic.fleet("web*", host="hv01,hv02", resolver=resolver)
    assert [t.label for t in fl.targets] == ["hv01/web1", "hv02/web1"]
    assert seen == ["hv01", "hv02"]


def test_lazy_needs_a_backend_that_keeps_outputs() -> None:
    with pytest.raises(ValueError, match=r"needs a fleet with cluster= \(a remote runner\)"):
        hvmagic.fleet(["a"], connect=lambda t, **k: None).run("x", lazy=True)
    # a backend without lazy_frame: the result says what is missing instead of a frame
    result = hvmagic.fleet(["web*"], host="hv01", cluster=ListBackend()).run("x", lazy=True)
    with pytest.raises(ValueError, match="needs a run whose outputs stayed on Dask workers"):
        result.frame(lazy=True)
