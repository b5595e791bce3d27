"""hvmagic.transports.process: a PowerShell server process over stdio.

The real thing is ``pwsh -s`` (``tests/pwsh``); here the same stdio protocol is served by
``python -m hvmagic.testing.guest --stdio`` (FakeGuest with the handlers of
``tests/_stdio_guest_handlers.py``), and small fake server scripts stand in for a server that
fails (stderr text, exit code 4000).
"""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from hvmagic.errors import (
    RemoteError,
    SessionBrokenError,
    TransportError,
    UnsupportedPlatformError,
)
from hvmagic.session import open_session
from hvmagic.transports.process import (
    SERVER_ARGUMENTS,
    ProcessTransport,
    find_powershell,
)

REPO = Path(__file__).resolve().parent.parent
GUEST_COMMAND = [sys.executable, "-m", "hvmagic.testing.guest", "--stdio",
                 "--handlers", "tests._stdio_guest_handlers"]


def _env() -> dict[str, str]:
    import os

    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _fake_server(tmp_path: Path, body: str) -> list[str]:
    script = tmp_path / "fake_server.py"
    script.write_text(textwrap.dedent(body), encoding="utf-8")
    return [sys.executable, str(script)]


def test_session_over_the_simulated_guest_process() -> None:
    transport = ProcessTransport(command=GUEST_COMMAND, env=_env())
    with open_session(transport, name="proc", timeout=30) as session:
        frame = session.run("Get-Items").frame()
        assert list(frame.columns) == ["Name", "Size"]
        assert frame["Size"].tolist() == [0, 10, 20, 30]
        assert session.run("Save-Value", {"Value": 6}).state == "Completed"
        assert session.run("Get-SavedValue").output == [6]
        with pytest.raises(RemoteError, match="not recognized"):
            session.run("Invoke-NoSuchThing")
        # a failed pipeline leaves the session (and its state) usable
        assert session.run("Get-SavedValue").output == [6]
    assert transport.returncode == 0  # Close(pool) → CloseAck → stdin closed → clean exit
    assert "local PowerShell process" in transport.description


def test_exit_code_4000_and_stderr_become_a_transport_error(tmp_path: Path) -> None:
    command = _fake_server(tmp_path, """
        import sys
        sys.stdin.buffer.readline()
        sys.stderr.write("An unknown element 'DataAck' was received.\\n")
        sys.stderr.flush()
        sys.exit(4000)
    """)
    transport = ProcessTransport(command=command)
    with pytest.raises(SessionBrokenError) as info:
        open_session(transport, name="bad", timeout=20)
    message = str(info.value)
    assert "exit code 4000" in message or "exit code 160 = 4000 & 0xFF" in message
    assert "processing error" in message
    assert "An unknown element 'DataAck' was received." in message
    assert isinstance(info.value.__cause__, TransportError)


def test_process_that_exits_before_answering(tmp_path: Path) -> None:
    command = _fake_server(tmp_path, """
        import sys
        sys.stderr.write("pwsh: cannot load the runtime\\n")
        sys.exit(3)
    """)
    with pytest.raises(SessionBrokenError, match=r"exit code 3: pwsh: cannot load the runtime"):
        open_session(ProcessTransport(command=command), name="bad", timeout=20)


def test_default_command_line_is_powershells_own(tmp_path: Path) -> None:
    fake = tmp_path / "pwsh"
    fake.write_text(
        f"#!{sys.executable}\nimport sys\nsys.stderr.write(' '.join(sys.argv[1:]))\nsys.exit(1)\n",
        encoding="utf-8",
    )
    fake.chmod(0o755)
    transport = ProcessTransport(fake, working_directory=tmp_path)
    assert transport.command == [str(fake), *SERVER_ARGUMENTS, "-wd", str(tmp_path)]
    assert SERVER_ARGUMENTS == ("-s", "-NoLogo", "-NoProfile")
    with pytest.raises(TransportError, match=r"exit code 1: -s -NoLogo -NoProfile -wd"):
        transport.recv()
    transport.close()


def test_send_after_the_process_died(tmp_path: Path) -> None:
    transport = ProcessTransport(command=_fake_server(tmp_path, "import sys; sys.exit(0)\n"))
    assert transport.recv() == b""  # clean exit, nothing on stderr: plain end of stream
    with pytest.raises(TransportError):
        for _ in range(50):  # the pipe may take a moment to report the broken end
            transport.send(b"<Command PSGuid='00000000-0000-0000-0000-000000000001' />\n" * 100)
    transport.close()
    transport.close()  # idempotent


def test_missing_executable_is_a_transport_error(tmp_path: Path) -> None:
    with pytest.raises(TransportError, match="cannot start"):
        ProcessTransport(tmp_path / "no-such-pwsh")


def test_no_powershell_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("shutil.which", lambda name: None)
    with pytest.raises(UnsupportedPlatformError, match="Install PowerShell 7"):
        find_powershell()
    monkeypatch.setattr("shutil.which", lambda name: f"/opt/bin/{name}" if name == "pwsh" else None)
    assert find_powershell() == "/opt/bin/pwsh"


def test_connect_via_process_uses_the_executable(tmp_path: Path) -> None:
    from hvmagic import connect

    shim = tmp_path / "pwsh-shim"
    shim.write_text(
        f"#!/bin/sh\n# ignores PowerShell's -s -NoLogo -NoProfile, serves the simulated guest\n"
        f"PYTHONPATH='{REPO}' exec '{sys.executable}' -m hvmagic.testing.guest --stdio "
        "--handlers tests._stdio_guest_handlers\n",
        encoding="utf-8",
    )
    shim.chmod(0o755)
    with connect("localhost", via="process", executable=str(shim)) as session:
        assert "pwsh-shim" in session.description
        assert session.run("Save-Value", {"Value": "über"}).state == "Completed"
        assert session.run("Get-SavedValue").output == ["über"]
