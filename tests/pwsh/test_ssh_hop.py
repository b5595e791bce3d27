"""SSH and the Hyper-V host hop, end to end against real PowerShell over a real OpenSSH server.

The rig (:class:`hvmagic.testing.sshd.LocalSSHServer`): Debian's ``sshd`` on 127.0.0.1, a random
port, a throw-away host key, key-only authentication with a throw-away client key and
``Subsystem powershell <pwsh> -sshs -NoLogo -NoProfile``.

* The SSH transport is hvmagic's own ``ssh -s 127.0.0.1 powershell``.
* The hop: the "Hyper-V host" runspace is pwsh over that SSH server; its inner session goes to a
  second PowerShell over the same server through the one seam (``pssession_arguments``) that
  replaces only ``New-PSSession``'s ``-VMName``/``-Credential`` arguments. Everything else — the
  Invoke-Command relay, failure rethrow, stop, state, copy — runs as shipped.
* Expectations come from PowerShell in the same run: a direct session on the same kind of
  PowerShell (hvmagic over SSH without the hop), and PowerShell's own client doing the same
  nested ``Invoke-Command -Session`` (for type names).
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import hvmagic
from hvmagic.errors import (
    CredentialError,
    PipelineTimeoutError,
    RemoteError,
    UnsupportedPlatformError,
)
from hvmagic.hop import HopSession, connect_hop, open_remote_session
from hvmagic.host import Field, HostUI
from hvmagic.testing.sshd import LocalSSHServer, find_sshd
from hvmagic.transports.ssh import (
    SSHAuthenticationError,
    SSHHostKeyError,
    SSHSubsystemError,
    SSHTransport,
    SSHUnreachableError,
)
from tests.pwsh.conftest import REQUIRE_ENV, run_pwsh

VM = "vm-under-test"


@pytest.fixture(scope="module")
def ssh_server(pwsh: str) -> Iterator[LocalSSHServer]:
    if find_sshd() is None:
        reason = "no sshd (Debian: apt-get install openssh-server)"
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"{REQUIRE_ENV}=1 but {reason}")
        pytest.skip(reason)
    with LocalSSHServer(pwsh) as server:
        yield server


class Answers(HostUI):
    """Answers Read-Host: a direct session asks ReadLine; through the host, PowerShell's relay
    turns it into $Host.UI.Prompt with one field — both must reach the notebook's UI."""

    def read_line(self, prompt: str | None = None) -> str:
        return "typed"

    def prompt(self, caption: str, message: str, fields: list[Field]) -> dict[str, Any]:
        return {field.name: "typed" for field in fields}


@pytest.fixture(scope="module")
def direct(ssh_server: LocalSSHServer) -> Iterator[Any]:
    """hvmagic over SSH to a PowerShell, no hop: the reference for the hop's behaviour."""
    session = hvmagic.connect(
        "127.0.0.1", via="ssh", host_ui=Answers(), timeout=90,
        host_username=ssh_server.user, host_options=ssh_server.host_options,
    )
    try:
        yield session
    finally:
        session.close()


@pytest.fixture(scope="module")
def hop(ssh_server: LocalSSHServer) -> Iterator[HopSession]:
    session = hvmagic.connect(
        VM, host="127.0.0.1", via="ssh", host_ui=Answers(), timeout=120,
        host_username=ssh_server.user,
        host_options={**ssh_server.host_options,
                      "pssession_arguments": ssh_server.pssession_options},
    )
    assert isinstance(session, HopSession)
    try:
        yield session
    finally:
        session.close()


# -- the SSH transport ----------------------------------------------------------------------


def test_ssh_session_is_the_servers_powershell(direct: Any, ask_pwsh: Any) -> None:
    result = direct.run("$PSVersionTable.PSVersion.ToString(); [Environment]::UserName; $PID")
    expected = ask_pwsh("$PSVersionTable.PSVersion.ToString(); [Environment]::UserName").split()
    assert result.output[:2] == expected
    assert result.output[2] != os.getpid()
    assert "SSH to" in direct.description


def _ssh_session(server: LocalSSHServer, **changes: Any) -> None:
    options = {**server.client_options, **changes}
    transport = SSHTransport("127.0.0.1", **options)

    session = open_remote_session(transport, name="x", host_ui=None, timeout=30)
    session.close()


def test_ssh_wrong_key_is_an_authentication_error(
    ssh_server: LocalSSHServer, tmp_path: Path
) -> None:
    import subprocess

    stranger = tmp_path / "stranger"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(stranger)],
                   check=True, capture_output=True)
    with pytest.raises(SSHAuthenticationError, match="Permission denied") as caught:
        _ssh_session(ssh_server, identity_file=str(stranger))
    assert isinstance(caught.value, CredentialError)  # never retried by connect(wait=)


def test_ssh_closed_port_is_unreachable(ssh_server: LocalSSHServer) -> None:
    import socket

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(SSHUnreachableError, match="Connection refused"):
        _ssh_session(ssh_server, port=port)


def test_ssh_unknown_host_key_is_refused_not_asked(
    ssh_server: LocalSSHServer, tmp_path: Path
) -> None:
    config = tmp_path / "ssh_config"
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    config.write_text(f"Host *\n  UserKnownHostsFile {empty}\n  StrictHostKeyChecking yes\n")
    with pytest.raises(SSHHostKeyError, match="Host key verification failed"):
        _ssh_session(ssh_server, config_file=str(config))


def test_ssh_server_without_the_subsystem(ssh_server: LocalSSHServer) -> None:
    transport = SSHTransport("127.0.0.1", subsystem="no-such-subsystem",
                             **ssh_server.client_options)

    with pytest.raises(SSHSubsystemError, match="subsystem request failed"):
        open_remote_session(transport, name="x", host_ui=None, timeout=30)


# -- the hop ---------------------------------------------------------------------------------


def test_hop_state_lives_in_the_inner_session(hop: HopSession) -> None:
    hop.run("$kept = 41; function Get-Kept { $kept + 1 }; Set-Location /tmp")
    result = hop.run("Get-Kept; $PWD.Path; $PID")
    assert result.output[:2] == [42, "/tmp"]
    guest_pid = result.output[2]
    host = hop.run_on_host("$PID; [bool](Get-Variable kept -ErrorAction Ignore); "
                           "@(Get-Variable hvmagic_* -ErrorAction Ignore).Count")
    # the VM's runspace is another process; the host runspace holds none of the user's state
    # and no leftover of the open script (the guest credential lived in hvmagic_target)
    assert host.output[0] != guest_pid
    assert host.output[1:] == [False, 0]


def test_hop_values_travel_as_parameters(hop: HopSession) -> None:
    hostile = "'; Remove-Item -Recurse / ; '"
    values = {"text": hostile, "number": 2**40, "nested": {"a": [1, 2.5, None]},
              "secret": hvmagic.SecureString("s3cr3t")}
    result = hop.run(
        "$text; $number.GetType().Name; $nested['a'].Count;"
        "[System.Net.NetworkCredential]::new('', $secret).Password", values,
    )
    assert result.output == [hostile, "Int64", 3, "s3cr3t"]
    assert "s3cr3t" not in repr(result) and "s3cr3t" not in repr(hop)


STREAMS_SCRIPT = (
    "'out'; Write-Warning 'warn'; Write-Verbose 'verb' -Verbose; Write-Debug 'dbg' -Debug;"
    "Write-Information 'info'; Write-Host 'host text'; Write-Error 'soft';"
    "Write-Progress -Activity 'act' -Status 'st' -PercentComplete 40; 'out2'"
)


def _stream_view(result: Any) -> dict[str, Any]:
    return {
        "output": result.output, "warnings": [r.message for r in result.warnings],
        "verbose": [r.message for r in result.verbose], "debug": [r.message for r in result.debug],
        "information": [r.message for r in result.information],
        "host": result.host, "errors": [r.message for r in result.errors],
        "progress": [(p.activity, p.status_description, p.percent_complete)
                     for p in result.progress],
        "state": result.state,
    }


def test_hop_streams_match_a_direct_session(hop: HopSession, direct: Any) -> None:
    seen: list[str] = []
    hopped = hop.run(STREAMS_SCRIPT, on_event=lambda stream, record: seen.append(stream))
    assert _stream_view(hopped) == _stream_view(direct.run(STREAMS_SCRIPT))
    assert {"output", "warning", "error", "progress", "host"} <= set(seen)
    # errors name the VM (PowerShell's OriginInfo does not survive the host's serializer)
    assert hopped.errors[0]["PSComputerName"] == VM


@pytest.mark.parametrize("script", [
    "'before'; throw 'boom'; 'after'",
    "'before'; Get-Item /no/such/path -ErrorAction Stop; 'after'",
    "$ErrorActionPreference = 'Stop'; 'before'; Write-Error 'strict'; 'after'",
])
def test_hop_failures_match_a_direct_session(hop: HopSession, direct: Any, script: str) -> None:
    with pytest.raises(RemoteError) as expected:
        direct.run(script)
    with pytest.raises(RemoteError) as hopped:
        hop.run(script)
    assert str(hopped.value) == f"[{VM}] {expected.value}"
    assert hopped.value.result.output == expected.value.result.output == ["before"]
    assert [e.message for e in hopped.value.result.errors] == [
        e.message for e in expected.value.result.errors
    ]
    assert hopped.value.record.fully_qualified_error_id == (
        expected.value.record.fully_qualified_error_id
    )
    assert hop.run("'still usable'").output == ["still usable"]


def test_hop_host_calls_reach_the_notebook(hop: HopSession, direct: Any) -> None:
    script = "Read-Host 'Name?'"
    assert hop.run(script).output == direct.run(script).output == ["typed"]


def test_hop_timeout_stops_the_pipeline_in_the_vm(hop: HopSession, tmp_path: Path) -> None:
    ticks = tmp_path / "ticks"
    script = ("1..600 | ForEach-Object { Add-Content -Path $file -Value $_;"
              " Start-Sleep -Milliseconds 50 }")
    started = time.monotonic()
    with pytest.raises(PipelineTimeoutError) as caught:
        hop.run(script, {"file": str(ticks)}, timeout=1.5)
    assert time.monotonic() - started < 20
    assert caught.value.result.state == "Stopped"
    count = len(ticks.read_text().split())
    time.sleep(1.0)
    assert len(ticks.read_text().split()) == count < 600  # nothing runs on in the VM
    assert hop.run("'after the stop'").output == ["after the stop"]


def test_hop_stop_from_another_thread(hop: HopSession) -> None:
    first, done = threading.Event(), threading.Event()

    def stop_once_running() -> None:
        if first.wait(30):  # 'first' arrived: the VM's pipeline is in its Start-Sleep
            time.sleep(0.2)
            if not done.is_set():
                hop.stop()

    threading.Thread(target=stop_once_running, daemon=True).start()
    started = time.monotonic()
    try:
        result = hop.run("'first'; Start-Sleep -Seconds 60; 'never'",
                         on_event=lambda stream, record: first.set())
    finally:
        done.set()
    assert result.state == "Stopped" and result.output == ["first"]
    assert time.monotonic() - started < 30


def test_hop_ctrl_c_stops_the_vm_pipeline_and_keeps_the_session(
    hop: HopSession, tmp_path: Path
) -> None:
    import _thread

    ticks = tmp_path / "ticks"
    done = threading.Event()

    def interrupt_once_ticking() -> None:
        deadline = time.monotonic() + 30
        while not done.is_set() and time.monotonic() < deadline:
            if ticks.exists() and len(ticks.read_text().split()) >= 5:  # the VM's loop runs
                _thread.interrupt_main()  # the notebook's interrupt
                return
            time.sleep(0.05)

    threading.Thread(target=interrupt_once_ticking, daemon=True).start()
    try:
        with pytest.raises(KeyboardInterrupt):
            hop.run("1..600 | ForEach-Object { Add-Content -Path $file -Value $_;"
                    " Start-Sleep -Milliseconds 50 }", {"file": str(ticks)})
    finally:
        done.set()
    count = len(ticks.read_text().split())
    time.sleep(1.0)
    assert len(ticks.read_text().split()) == count < 600
    assert hop.run("'after Ctrl-C'").output == ["after Ctrl-C"]


def test_hop_copy_both_ways(hop: HopSession, tmp_path: Path) -> None:
    payload = os.urandom(300_000) + b"end"
    source = tmp_path / "source.bin"
    source.write_bytes(payload)
    guest_dir = tmp_path / "guest"
    guest_dir.mkdir()
    hop.copy_to(source, str(guest_dir / "in.bin"))
    # the "VM" is this machine here, so its file can be checked on disk
    assert (guest_dir / "in.bin").read_bytes() == payload
    back = tmp_path / "back.bin"
    hop.copy_from(str(guest_dir / "in.bin"), back)
    assert hashlib.sha256(back.read_bytes()).digest() == hashlib.sha256(payload).digest()


def test_hop_type_names_match_powershells_own_nested_client(
    hop: HopSession, ssh_server: LocalSSHServer, pwsh: str
) -> None:
    ours = hop.run("Get-Item /tmp").output[0]
    options = ssh_server.pssession_options
    ps_options = "; ".join(f"{k}='{v}'" for k, v in options["Options"].items())
    connect = (
        f"-HostName 127.0.0.1 -Port {ssh_server.port} -UserName {ssh_server.user} -SSHTransport "
        f"-KeyFilePath '{ssh_server.client_key}' -Options @{{{ps_options}}}"
    )
    theirs = run_pwsh(pwsh, f"""
        $h = New-PSSession {connect} -ErrorAction Stop
        $o = Invoke-Command -Session $h -ScriptBlock {{
            $i = New-PSSession {connect} -ErrorAction Stop
            Invoke-Command -Session $i -ScriptBlock {{ Get-Item /tmp }}
            Remove-PSSession $i
        }}
        $o.PSObject.TypeNames -join '|'
        $o.PSComputerName
        Remove-PSSession $h
    """, timeout=180).split()
    assert "|".join(ours.type_names) == theirs[0]
    assert ours["PSComputerName"] == theirs[1] == "127.0.0.1"
    assert ours["Name"] == "tmp"


def test_local_hop_through_a_powershell_process(
    ssh_server: LocalSSHServer, pwsh: str
) -> None:
    """The Windows-host-with-old-Python path: a local ``pwsh -s`` runs the same hop code."""
    session = connect_hop(
        VM, host="localhost", via="process", executable=pwsh, timeout=120,
        pssession_arguments=ssh_server.pssession_options,
    )
    try:
        assert session.run("$x = 5").state == "Completed"
        assert session.run("$x * 2").output == [10]
        assert "local PowerShell process" in session.description
        # the VM's session gone (VM reset, host restarted the service): runs fail, not
        # "complete" with the error as a mere record
        session.run_on_host("Remove-PSSession -Session $global:__hvmagic_hop")
        with pytest.raises(RemoteError, match=VM):
            session.run("'unreachable'")
    finally:
        session.close()


# -- doctor for a remote host ----------------------------------------------------------------


def test_doctor_over_ssh_reaches_logs_on_and_asks_the_host(ssh_server: LocalSSHServer) -> None:
    report = hvmagic.doctor(VM, host="127.0.0.1", via="ssh", host_username=ssh_server.user,
                            host_options=ssh_server.host_options, timeout=90)
    status = {check.name: check.status for check in report.checks}
    assert status["SSH endpoint"] == "ok" and status["Host logon"] == "ok"
    # the "host" is PowerShell on Linux: truthfully no Hyper-V module and no Hyper-V admin
    assert status["Hyper-V module"] == "fail" and status["Hyper-V admin rights"] == "fail"
    assert status["VM found"] == "skipped" and not report.ok
    fixes = {check.name: check.fix for check in report.checks}
    assert "Hyper-V-PowerShell" in fixes["Hyper-V module"]


def test_doctor_explains_a_rejected_key(ssh_server: LocalSSHServer, tmp_path: Path) -> None:
    import subprocess

    stranger = tmp_path / "stranger"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(stranger)],
                   check=True, capture_output=True)
    report = hvmagic.doctor(VM, host="127.0.0.1", via="ssh", host_username=ssh_server.user,
                            host_options={**ssh_server.host_options,
                                          "identity_file": str(stranger)}, timeout=30)
    logon = next(check for check in report.checks if check.name == "Host logon")
    assert logon.status == "fail" and "Permission denied" in logon.explanation
    assert "ssh-agent" in logon.fix
    assert {c.name: c.status for c in report.checks}["Hyper-V module"] == "skipped"


def test_doctor_explains_an_unreachable_host() -> None:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    report = hvmagic.doctor(VM, host="127.0.0.1", via="ssh", host_options={"port": port})
    endpoint = next(check for check in report.checks if check.name == "SSH endpoint")
    assert endpoint.status == "fail" and f"127.0.0.1:{port}" in endpoint.explanation
    assert "sshd" in endpoint.fix
    assert {c.name: c.status for c in report.checks}["Host logon"] == "skipped"


def test_vmname_line_as_shipped_fails_typed_on_a_host_without_hyper_v(pwsh: str) -> None:
    """The real ``New-PSSession -VMName … -Credential …`` line, run by real PowerShell on a host
    without Hyper-V: it raises a statement-terminating error, which inside the open script's
    try/finally alone only ended the statement (the hop "opened" with no session: the defect
    this guards) — the hop must fail, typed, and never show the guest password."""
    started = time.monotonic()
    with pytest.raises(UnsupportedPlatformError) as caught:
        connect_hop(VM, host="localhost", via="process", executable=pwsh, timeout=120,
                    username="CORP\\admin", password="Pa55-w0rd-not-shown")
    message = str(caught.value)
    assert "Hyper-V Module for PowerShell is not available" in message and VM in message
    assert "Pa55-w0rd-not-shown" not in message + repr(caught.value)
    assert time.monotonic() - started < 120
