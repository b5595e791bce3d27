"""``connect(..., via="sim")`` is the demo guest — real PowerShell — and ``wait=``/
``booted_after=`` reconnect to it after its ``Restart-Computer`` through the same retry path as a
live guest's."""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections.abc import Iterator

import pytest

import hvmagic
from hvmagic.demo import COMPUTER_NAME, forget_machine, machine_folder
from hvmagic.errors import SessionBrokenError, TransportError


@pytest.fixture
def name(pwsh: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("HVMAGIC_PWSH", pwsh)
    monkeypatch.delenv("HVMAGIC_RECORD", raising=False)
    monkeypatch.delenv("HVMAGIC_REPLAY", raising=False)
    machine = f"web-{uuid.uuid4().hex[:8]}"
    yield machine
    forget_machine(machine)


def test_via_sim_opens_a_demo_machine_of_that_name(name: str) -> None:
    with hvmagic.connect(name, via="sim", timeout=120) as session:
        assert session.name == name
        assert "demo guest" in session.description
        # PowerShell's language, the demo's data
        answer = session.run(
            "$n = 0; foreach ($i in 1..4) { if ($i % 2) { $n += $i } }; $n; $env:COMPUTERNAME"
        ).output
        assert answer == [4, COMPUTER_NAME]
        written = session.run("Set-Content -Path C:\\Windows\\Temp\\marker.txt -Value here")
        assert not written.errors, written.errors
    marker = machine_folder(name) / "C" / "Windows" / "Temp" / "marker.txt"
    assert marker.read_text(encoding="utf-8").strip() == "here"  # the machine's own C: drive


def test_wait_and_booted_after_reconnect_once_the_demo_machine_restarted(name: str) -> None:
    first = hvmagic.connect(name, via="sim", timeout=120)
    try:
        booted = hvmagic.last_boot_time(first)
        first.run("Restart-Computer -Force")  # the server process ends a moment later
        with pytest.raises((SessionBrokenError, TransportError)):
            for _ in range(100):
                first.run("Start-Sleep -Milliseconds 100")
    finally:
        first.close()
    started = time.monotonic()
    second = hvmagic.connect(name, via="sim", timeout=120, wait=60, booted_after=booted)
    try:
        assert hvmagic.last_boot_time(second) > booted
        assert time.monotonic() - started < 60
    finally:
        second.close()


def test_booted_after_refuses_a_machine_that_has_not_restarted(name: str) -> None:
    with hvmagic.connect(name, via="sim", timeout=120) as session:
        booted = hvmagic.last_boot_time(session)
    later = booted + dt.timedelta(days=1)  # a restart that never happens
    started = time.monotonic()
    with pytest.raises(TransportError, match="has not restarted yet"):
        hvmagic.connect(name, via="sim", timeout=120, wait=2, booted_after=later)
    assert time.monotonic() - started >= 2  # it kept trying until wait= ran out
