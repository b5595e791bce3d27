"""hvmagic.connection: how connect() picks an opener, retries, and routes hosts through the hop.

Openers that reach a peer here use :class:`~hvmagic.testing.FakeGuest` handlers over a real
socket (the registry is the seam: the product never imports the test peer). The demo guest's
own path (``via="sim"``, real PowerShell) is tested in ``tests/pwsh/test_connect_demo.py``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import hvmagic
from hvmagic import connection, hop
from hvmagic.clixml.values import PSCredential, SecureString
from hvmagic.connection import OPENERS, Request, connect
from hvmagic.demo import NO_POWERSHELL
from hvmagic.errors import (
    CredentialError,
    TransportError,
    UnsupportedPlatformError,
)
from hvmagic.recording import RecordingSession
from hvmagic.session import open_session
from hvmagic.sessionlike import SessionLike
from hvmagic.testing import FakeGuest, HandlerContext


@pytest.fixture
def guest() -> Iterator[FakeGuest]:
    fake = FakeGuest()

    @fake.handle("whoami")
    def whoami(ctx: HandlerContext) -> None:
        ctx.output("fake-guest")

    yield fake
    fake.close()


@pytest.fixture(autouse=True)
def _no_ci_recording(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HVMAGIC_RECORD", raising=False)
    monkeypatch.delenv("HVMAGIC_REPLAY", raising=False)


def test_the_top_level_names_are_the_composition_roots() -> None:
    assert hvmagic.connect is connect
    assert hvmagic.last_boot_time is connection.last_boot_time


def test_a_target_is_required() -> None:
    with pytest.raises(TypeError):
        connect()  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="target must be"):
        connect("  ")


def test_an_unknown_via_names_the_registry() -> None:
    with pytest.raises(ValueError) as info:
        connect("vm01", via="carrier-pigeon")
    for name in ("auto", "direct", "process", "sim", "replay", "ssh", "winrm"):
        assert name in str(info.value)


def test_an_opener_added_to_the_registry_is_chosen_by_name(
    guest: FakeGuest, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    seen: list[Request] = []

    def fake_opener(request: Request) -> SessionLike:
        seen.append(request)
        return open_session(guest.transport(), name=request.target, host_ui=request.host_ui)

    monkeypatch.setitem(OPENERS, "fake", fake_opener)
    with connect("vm07", via="fake", username="admin", password="pw") as session:
        assert session.name == "vm07"
        assert session.run("whoami").output == ["fake-guest"]
    (request,) = seen
    assert request.target == "vm07" and request.username == "admin"
    assert isinstance(request.password, SecureString) and request.password.reveal() == "pw"
    assert "pw" not in repr(request)
    # the recording wrapper comes from the root too, whatever the opener
    with connect("vm07", via="fake", record=tmp_path / "vm07.hvrec.json") as recorded:
        assert isinstance(recorded, RecordingSession)
        assert recorded.run("whoami").output == ["fake-guest"]
    assert "whoami" in (tmp_path / "vm07.hvrec.json").read_text(encoding="utf-8")


def test_wait_retries_an_unreachable_guest_through_any_opener(
    guest: FakeGuest, monkeypatch: pytest.MonkeyPatch
) -> None:
    attempts: list[float] = []

    def booting(request: Request) -> SessionLike:
        attempts.append(time.monotonic())
        if len(attempts) < 3:
            raise TransportError("connection refused")
        return open_session(guest.transport(), name=request.target)

    monkeypatch.setitem(OPENERS, "booting", booting)
    with pytest.raises(TransportError):  # no wait: the first refusal is the answer
        connect("vm01", via="booting")
    attempts.clear()
    with connect("vm01", via="booting", wait=30) as session:
        assert session.run("whoami").output == ["fake-guest"]
    assert len(attempts) == 3
    assert attempts[1] - attempts[0] >= 0.4  # it waited between attempts


def test_wait_never_retries_a_platform_that_cannot_connect(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[str] = []

    def impossible(request: Request) -> SessionLike:
        calls.append(request.target)
        raise UnsupportedPlatformError("not here")

    monkeypatch.setitem(OPENERS, "impossible", impossible)
    started = time.monotonic()
    with pytest.raises(UnsupportedPlatformError):
        connect("vm01", via="impossible", wait=60)
    assert calls == ["vm01"] and time.monotonic() - started < 5


def test_sim_without_any_powershell_says_what_to_install_at_once(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A fresh machine: no $HVMAGIC_PWSH and no PowerShell on PATH. The demo guest is refused
    at once (with wait=, too) and the message is the demo's own."""
    monkeypatch.delenv("HVMAGIC_PWSH", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr("sys.platform", "linux")  # no powershell.exe fallback either
    started = time.monotonic()
    with pytest.raises(UnsupportedPlatformError) as info:
        connect("sim", wait=60)
    assert time.monotonic() - started < 5
    message = str(info.value)
    assert message == NO_POWERSHELL.format(detail="nothing on PATH, $HVMAGIC_PWSH unset")
    assert "Install PowerShell 7" in message and "replay" in message
    with pytest.raises(UnsupportedPlatformError, match="no file"):
        connect("web01", via="sim", executable=str(tmp_path / "pwsh"))


def test_a_host_goes_through_the_hop_with_winrm_by_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[dict[str, Any]] = []

    def fake_hop(vm: str, **kwargs: Any) -> Any:
        calls.append({"vm": vm, **kwargs})
        return "hop-session"

    monkeypatch.setattr(hop, "connect_hop", fake_hop)
    credential = PSCredential("CORP\\admin", SecureString("pw"))
    assert connect("vm01", host="hv01", credential=credential,
                   host_options={"port": 5986}) == "hop-session"
    assert connect("vm02", host="hv01", via="ssh", username="admin",
                   host_username="ops") == "hop-session"
    first, second = calls
    assert first["vm"] == "vm01" and first["host"] == "hv01" and first["via"] == "winrm"
    assert first["credential"] is credential and first["port"] == 5986
    assert second["via"] == "ssh" and second["username"] == "admin"
    assert second["host_username"] == "ops"
    with pytest.raises(ValueError, match="ssh, winrm or process"):
        connect("vm03", host="hv01", via="direct")


def test_ssh_without_a_host_is_a_session_in_the_targets_own_powershell(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[dict[str, Any]] = []

    def fake_plain(target: str, **kwargs: Any) -> Any:
        calls.append({"target": target, **kwargs})
        return "plain-session"

    monkeypatch.setattr(hop, "plain_remote_session", fake_plain)
    assert connect("srv01", via="ssh", username="ops") == "plain-session"
    assert calls[0]["target"] == "srv01" and calls[0]["via"] == "ssh"
    assert calls[0]["host_username"] == "ops"  # the account that logs on to srv01
    with pytest.raises(ValueError, match="username= has no meaning"):
        connect("srv01", via="ssh", username="a", host_username="b")
    with pytest.raises(ValueError, match="configuration= needs WinRM"):
        connect("srv01", via="ssh", configuration="JEA")


def test_wait_asks_for_the_guest_password_once(
    guest: FakeGuest, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[str] = []
    seen: list[SecureString | None] = []

    def ask(username: str, password: Any = None, **_: Any) -> SecureString:
        asked.append(username)
        return SecureString("from-the-prompt")

    def direct(request: Request) -> SessionLike:
        seen.append(request.password)
        if len(seen) < 2:
            raise TransportError("connection refused")
        return open_session(guest.transport(), name=request.target)

    monkeypatch.setattr(connection, "get_password", ask)
    monkeypatch.setitem(OPENERS, "direct", direct)
    with connect("vm01", via="direct", username="admin", wait=30):
        pass
    assert asked == ["admin"]
    assert [p.reveal() for p in seen if p is not None] == ["from-the-prompt"] * 2


def test_direct_needs_a_user_name() -> None:
    with pytest.raises(CredentialError, match="user name"):
        connect("vm01", via="direct")
