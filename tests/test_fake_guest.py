"""FakeGuest against a psrpcore client we did not write (``tests/_psrp_test_client.py``).

Core protocol tests use the minimal psrpcore client over a real socket pair, so they do not
depend on hvmagic's session code; a few tests at the end go through ``hvmagic.session`` to
check the wrapper convention end to end.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import os
import struct
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import psrpcore
import pytest
from psrpcore.types import (
    ErrorCategory,
    ErrorCategoryInfo,
    ErrorRecord,
    HostMethodIdentifier,
    NETException,
    PSCredential,
    PSCustomObject,
    PSInvocationState,
    PSSecureString,
    serialize_clixml,
)

from hvmagic.errors import TransportError
from hvmagic.psrp.outofproc import NIL_GUID, PacketKind, control_packet
from hvmagic.testing import (
    COMPUTER_NAME,
    FakeGuest,
    GuestUnavailableError,
    HandlerContext,
    PipelineStoppedError,
)
from hvmagic.testing.guest import extract_user_script, position_message
from hvmagic.transports.base import SocketTransport
from tests._psrp_test_client import MiniClient

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def guest() -> Any:
    with FakeGuest() as g:
        yield g


@pytest.fixture
def client(guest: FakeGuest) -> Any:
    c = MiniClient(guest.transport())
    c.open()
    yield c
    if c.reader_error is None and not guest._closed:
        with contextlib.suppress(ConnectionError, OSError, TransportError):
            c.close()


# ---- protocol -------------------------------------------------------------------------------


def test_pool_open_and_close_follow_the_ack_rules() -> None:
    with FakeGuest(demo=False) as guest:
        c = MiniClient(guest.transport())
        events = c.open()
        kinds = [type(e).__name__ for e in events]
        assert "SessionCapabilityEvent" in kinds
        assert "ApplicationPrivateDataEvent" in kinds
        assert c.pool.state == psrpcore.types.RunspacePoolState.Opened
        # The server answers the opening Data with its messages, then the DataAck (§3.4).
        pool_packets = [p.kind for p in c.packets if p.guid == NIL_GUID]
        assert pool_packets[-1] is PacketKind.DATA_ACK
        assert pool_packets.count(PacketKind.DATA) == 3
        private = c.pool.application_private_data["PSVersionTable"]
        assert str(private["PSVersion"]) == "5.1.20348.2849"
        assert c.pool.their_capability.protocolversion == psrpcore.types.PSVersion("2.3")
        c.close()
        assert c.packets[-1].kind is PacketKind.CLOSE_ACK
        assert c.packets[-1].guid == NIL_GUID


def test_every_data_line_is_one_whole_fragment_with_a_bom_payload(client: MiniClient) -> None:
    result = client.run("Get-Service")
    assert result.state == PSInvocationState.Completed
    data_packets = [p for p in client.packets if p.kind is PacketKind.DATA]
    assert len(data_packets) > 100
    for packet in data_packets:
        _object_id, fragment_id, flags, length = struct.unpack(">QQBI", packet.data[:21])
        assert len(packet.data) == 21 + length  # exactly one fragment per line
        if fragment_id == 0:
            assert flags & 1
            # PowerShell writes the CLIXML as UTF-8 with a BOM after the 40-byte header
            if length > 40:
                assert packet.data[21 + 40 : 21 + 43] == b"\xef\xbb\xbf"


def test_large_output_spans_many_fragments(guest: FakeGuest, client: MiniClient) -> None:
    big = "x" * 300_000 + "ünïcødé ✓ 漢字"

    @guest.handle("Get-Big")
    def handler(ctx: HandlerContext) -> str:
        return big

    result = client.run("Get-Big")
    assert result.output == [big]
    pipeline_fragments = [
        p for p in client.packets if p.kind is PacketKind.DATA and p.guid != NIL_GUID
    ]
    assert len(pipeline_fragments) >= 10
    assert max(len(p.data) for p in pipeline_fragments) <= 32 * 1024


def test_command_ack_and_close_ack_per_pipeline(client: MiniClient) -> None:
    client.run("$x = 1")
    pids = {p.guid for p in client.packets if p.kind is PacketKind.COMMAND_ACK}
    assert len(pids) == 1
    pid = pids.pop()
    kinds = [p.kind for p in client.packets if p.guid == pid]
    assert kinds[0] is PacketKind.COMMAND_ACK
    assert kinds[-1] is PacketKind.CLOSE_ACK
    assert PacketKind.DATA_ACK in kinds


def test_ack_from_client_is_a_protocol_error(guest: FakeGuest) -> None:
    transport = guest.transport()
    transport.send(control_packet(PacketKind.DATA_ACK, NIL_GUID))
    received = b""
    while True:
        chunk = transport.recv()
        if not chunk:
            break
        received += chunk
    assert received.startswith(b"__HyperVSocketError__:")
    assert b"DataAck" in received


# ---- handler context ------------------------------------------------------------------------


def test_streams_reach_the_client_with_real_values(guest: FakeGuest, client: MiniClient) -> None:
    @guest.handle("Invoke-Everything")
    def handler(ctx: HandlerContext) -> None:
        ctx.output(
            {
                "Name": "alpha",
                "Size": 3,
                "When": dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.timezone.utc),
            }
        )
        ctx.warning("disk almost full")
        ctx.verbose("checking volume C")
        ctx.debug("debug detail")
        ctx.information({"Kind": "note"}, tags=["audit"])
        ctx.host_write("Hello from Write-Host", foreground="Green")
        ctx.progress(
            "Scanning", "volume C", 40, activity_id=2, parent_id=1, current_operation="reading MFT"
        )
        ctx.progress("Scanning", "done", 100, activity_id=2, completed=True)
        ctx.error(
            "quota exceeded on D:", category="QuotaExceeded", error_id="Quota,Test", target="D:"
        )
        ctx.output("last")

    result = client.run("Invoke-Everything")
    assert result.state == PSInvocationState.Completed
    first = result.output[0]
    assert first.Name == "alpha" and first.Size == 3
    assert first.When.year == 2024 and first.When.hour == 12
    assert "System.Management.Automation.PSCustomObject" in str(first.PSObject.type_names)
    assert result.output[1] == "last"
    assert result.warnings == ["disk almost full"]
    assert result.verbose == ["checking volume C"]
    assert result.debug == ["debug detail"]
    info, host = result.information
    assert info.Tags == ["audit"] and info.MessageData.Kind == "note"
    assert host.Tags == ["PSHOST"]
    assert host.MessageData.Message == "Hello from Write-Host"
    assert host.MessageData.ForegroundColor == "Green"
    assert host.Computer == COMPUTER_NAME
    running, done = result.progress
    assert (running.Activity, running.StatusDescription, running.PercentComplete) == (
        "Scanning",
        "volume C",
        40,
    )
    assert (running.ActivityId, running.ParentActivityId) == (2, 1)
    assert running.CurrentOperation == "reading MFT"
    assert done.RecordType == psrpcore.types.ProgressRecordType.Completed
    (error,) = result.errors
    assert error.Exception.Message == "quota exceeded on D:"
    assert error.CategoryInfo.Category == ErrorCategory.QuotaExceeded
    assert error.FullyQualifiedErrorId == "Quota,Test"
    assert error.TargetObject == "D:"


def test_terminating_error_fails_the_pipeline_with_position(
    guest: FakeGuest, client: MiniClient
) -> None:
    @guest.handle("Remove-Thing", regex=False)
    def handler(ctx: HandlerContext) -> None:
        ctx.output("before")
        ctx.command = "Remove-Thing"
        ctx.fail(
            "thing is locked",
            category="ResourceBusy",
            error_id="Locked,Remove-Thing",
            exception_type="System.IO.IOException",
        )

    result = client.run("$a = 1\nRemove-Thing -Name x")
    assert result.state == PSInvocationState.Failed
    assert result.output == ["before"]
    assert result.reason_message == "thing is locked"
    record = result.reason
    assert record.FullyQualifiedErrorId == "Locked,Remove-Thing"
    assert record.InvocationInfo.ScriptLineNumber == 2
    assert record.InvocationInfo.OffsetInLine == 1
    # psrpcore's client rebuilds InvocationInfo and drops the text; read it off the wire
    wire = _pipeline_state_clixml(client)
    assert (
        '<S N="InvocationInfo_PositionMessage">At line:2 char:1_x000A_+ Remove-Thing -Name x'
        "_x000A_+ ~~~~~~~~~~~~</S>" in wire
    )
    assert record.CategoryInfo.Category == ErrorCategory.ResourceBusy
    assert "System.IO.IOException" in record.Exception.PSObject.type_names[0]


def _pipeline_state_clixml(client: MiniClient) -> str:
    """The CLIXML of the last PIPELINE_STATE message the guest sent (single fragment)."""
    texts = []
    for packet in client.packets:
        if packet.kind is PacketKind.DATA and packet.guid != NIL_GUID:
            blob = packet.data[21:]
            if len(blob) > 40 and struct.unpack("<I", blob[4:8])[0] == 0x00041006:
                texts.append(blob[43:].decode("utf-8"))
    return texts[-1]


def test_python_exception_in_handler_becomes_runtime_exception(
    guest: FakeGuest, client: MiniClient
) -> None:
    @guest.handle("Get-Broken")
    def handler(ctx: HandlerContext) -> None:
        raise KeyError("missing")

    result = client.run("Get-Broken")
    assert result.state == PSInvocationState.Failed
    assert "KeyError" in result.reason_message


def test_unknown_command_is_command_not_found(client: MiniClient) -> None:
    result = client.run("Get-Unicorn -Color pink")
    assert result.state == PSInvocationState.Failed
    assert result.reason_message.startswith(
        "The term 'Get-Unicorn' is not recognized as the name of a cmdlet"
    )
    error = result.reason
    assert error.FullyQualifiedErrorId == "CommandNotFoundException"
    assert error.CategoryInfo.Category == ErrorCategory.ObjectNotFound
    assert error.TargetObject == "Get-Unicorn"


def test_unknown_script_without_demo() -> None:
    with FakeGuest(demo=False) as guest:
        c = MiniClient(guest.transport())
        c.open()
        result = c.run("Get-Service")
        assert result.state == PSInvocationState.Failed
        assert "'Get-Service' is not recognized" in result.reason_message
        c.close()


def test_matching_exact_regex_substring_and_priority(guest: FakeGuest, client: MiniClient) -> None:
    guest.add_handler("Get-Item", lambda ctx: "substring")
    guest.add_handler(
        r"^Get-Item\s+-Path\s+(?P<path>\S+)$", lambda ctx: ctx.match["path"], regex=True
    )
    guest.add_handler("Get-Item -Path exact", lambda ctx: "exact")
    assert client.run("Get-Item -Path exact").output == ["exact"]
    assert client.run("Get-Item -Path C:\\x").output == ["C:\\x"]
    assert client.run("Get-Item  something else").output == ["substring"]
    assert guest.history[-3:] == [
        "Get-Item -Path exact",
        "Get-Item -Path C:\\x",
        "Get-Item  something else",
    ]


def test_parameters_and_session_variables(guest: FakeGuest) -> None:
    @guest.handle("Set-Counter")
    def set_counter(ctx: HandlerContext) -> None:
        ctx.variables["counter"] = ctx.parameters["Start"] + 1

    @guest.handle("Get-Counter")
    def get_counter(ctx: HandlerContext) -> Any:
        return ctx.variables.get("counter", "unset")

    first = MiniClient(guest.transport())
    first.open()
    second = MiniClient(guest.transport())
    second.open()
    first.run("Set-Counter", {"Start": 41})
    assert first.run("Get-Counter").output == [42]
    assert second.run("Get-Counter").output == ["unset"]  # variables are per session
    first.close()
    second.close()


def test_demo_variable_assignment_and_echo(client: MiniClient) -> None:
    assert client.run("$x = 42").output == []
    assert client.run("$x").output == [42]
    assert client.run("$x * 2; $x -gt 40").output == [84, True]
    assert client.run("$name = 'vm' + 'ic'; \"svc: $name\"").output == ["svc: vmic"]


def test_stop_wakes_a_sleeping_handler(guest: FakeGuest, client: MiniClient) -> None:
    observed: dict[str, Any] = {}

    @guest.handle("Watch-Forever")
    def handler(ctx: HandlerContext) -> None:
        try:
            for index in range(1000):
                ctx.output(index)
                ctx.sleep(0.05)
        except PipelineStoppedError:
            observed["stopped"] = ctx.stopped
            raise

    started = time.monotonic()
    result = client.run("Watch-Forever", stop_after=3)
    assert time.monotonic() - started < 5
    assert result.state == PSInvocationState.Stopped
    assert 3 <= len(result.output) < 100
    deadline = time.monotonic() + 2
    while "stopped" not in observed and time.monotonic() < deadline:
        time.sleep(0.01)
    assert observed == {"stopped": True}
    assert any(p.kind is PacketKind.SIGNAL_ACK for p in client.packets)
    # the session is still usable
    assert client.run("$y = 5; $y").output == [5]


def test_demo_start_sleep_is_stoppable(client: MiniClient) -> None:
    started = time.monotonic()
    result = client.run("Write-Output 'a'; Start-Sleep -Seconds 30; 'never'", stop_after=1)
    assert result.state == PSInvocationState.Stopped
    assert result.output == ["a"]
    assert time.monotonic() - started < 5


def test_host_calls_read_host_and_credentials(guest: FakeGuest, client: MiniClient) -> None:
    @guest.handle("Ask-Me")
    def handler(ctx: HandlerContext) -> Any:
        name = ctx.read_host("Your name")
        line = ctx.read_host()
        credential = ctx.prompt_for_credential(username="admin")
        choice = ctx.prompt_for_choice("Continue?", "Really?", ["&Yes", "&No"], default=1)
        return [name, line, credential.UserName, choice]

    answers = {
        "Prompt": {"Your name": "Ada"},
        "ReadLine": "plain line",
        "PromptForCredential1": PSCredential(UserName="admin", Password=PSSecureString("s3cret")),
        "PromptForChoice": 0,
    }
    client.pool.exchange_key()
    result = client.run("Ask-Me", host_responses=answers)
    assert result.state == PSInvocationState.Completed, result.reason
    assert result.output == ["Ada", "plain line", "admin", 0]
    methods = [c.method_identifier for c in result.host_calls]
    assert methods == [
        HostMethodIdentifier.Prompt,
        HostMethodIdentifier.ReadLine,
        HostMethodIdentifier.PromptForCredential1,
        HostMethodIdentifier.PromptForChoice,
    ]
    prompt_fields = result.host_calls[0].method_parameters[2]
    assert prompt_fields[0].Name == "Your name"


def test_host_call_error_fails_the_pipeline(client: MiniClient) -> None:
    refusal = ErrorRecord(
        Exception=NETException(Message="This host cannot prompt: not interactive"),
        CategoryInfo=ErrorCategoryInfo(Category=ErrorCategory.NotImplemented),
        FullyQualifiedErrorId="HostNotInteractive",
    )
    result = client.run(
        "Read-Host -Prompt 'Password' -AsSecureString", host_responses={"Prompt": refusal}
    )
    assert result.state == PSInvocationState.Failed
    assert result.reason_message == "This host cannot prompt: not interactive"
    (call,) = result.host_calls
    assert call.method_identifier == HostMethodIdentifier.Prompt


def test_pipeline_input_reaches_the_handler(guest: FakeGuest, client: MiniClient) -> None:
    @guest.handle("Measure-Input")
    def handler(ctx: HandlerContext) -> Any:
        return sum(int(v) for v in ctx.input())

    result = client.run("Measure-Input", input_data=[1, 2, 3, 4])
    assert result.output == [10]


def test_output_clixml_serves_generated_objects(
    guest: FakeGuest, client: MiniClient, tmp_path: Path
) -> None:
    objects = [
        PSCustomObject(PSTypeName="Contoso.Widget", Name=f"widget{i}", Weight=i * 1.5)
        for i in range(3)
    ]
    text = serialize_clixml(objects, psrpcore.PSRemotingCrypto())
    path = tmp_path / "widgets.xml"
    path.write_text(text, encoding="utf-8")

    @guest.handle("Get-Widget")
    def from_file(ctx: HandlerContext) -> None:
        ctx.output_clixml(path)

    @guest.handle("Get-WidgetText")
    def from_text(ctx: HandlerContext) -> None:
        ctx.output_clixml(text)

    for script in ("Get-Widget", "Get-WidgetText"):
        result = client.run(script)
        assert [o.Name for o in result.output] == ["widget0", "widget1", "widget2"]
        assert [o.Weight for o in result.output] == [0.0, 1.5, 3.0]
        assert result.output[1].PSObject.type_names[0] == "Deserialized.Contoso.Widget"


def test_extract_user_script_from_session_wrapper() -> None:
    ps = psrpcore.ClientPowerShell(psrpcore.ClientRunspacePool())
    ps.add_script(
        "param($__hvmagic_script, $__hvmagic_parameters) . ([scriptblock]::Create("
        "$__hvmagic_script))"
    )
    ps.add_parameter("__hvmagic_script", "Get-Service vm*")
    ps.add_parameter("__hvmagic_parameters", {"limit": 5})
    assert extract_user_script(ps.metadata.commands) == ("Get-Service vm*", {"limit": 5})
    plain = psrpcore.ClientPowerShell(psrpcore.ClientRunspacePool())
    plain.add_script("Get-Process")
    plain.add_parameter("Name", "lsass")
    assert extract_user_script(plain.metadata.commands) == ("Get-Process", {"Name": "lsass"})


def test_position_message_points_at_the_token() -> None:
    message, line, column, text = position_message("$a = 1\n  Get-Foo -X 1", "Get-Foo")
    assert (line, column, text) == (2, 3, "  Get-Foo -X 1")
    assert message == "At line:2 char:3\n+   Get-Foo -X 1\n+   ~~~~~~~"


# ---- demo handlers --------------------------------------------------------------------------


def test_demo_integration_services_filter(client: MiniClient) -> None:
    result = client.run(
        "Get-Service | Where-Object { $_.Status -eq 'Running' -and $_.Name -like 'vm*' }"
    )
    names = [o.Name for o in result.output]
    assert names == [
        "vmicheartbeat",
        "vmickvpexchange",
        "vmicrdv",
        "vmicshutdown",
        "vmictimesync",
        "vmicvmsession",
        "vmicvss",
    ]
    service = result.output[0]
    assert service.PSObject.type_names[0] == (
        "Deserialized.System.ServiceProcess.ServiceController"
    )
    assert service.Status == 4 and str(service.Status.PSObject.to_string) == "Running"
    assert service.StartType == 3
    assert service.DisplayName == "Hyper-V Heartbeat Service"
    assert service.PSComputerName == COMPUTER_NAME
    stopped = client.run("Get-Service vmicguestinterface").output[0]
    assert stopped.Status == 1


def test_demo_stopped_automatic_services(client: MiniClient) -> None:
    result = client.run(
        "Get-Service | Where-Object {$_.StartType -eq 'Automatic' -and "
        "$_.Status -ne 'Running'} | Select-Object Name, Status, StartType"
    )
    assert [o.Name for o in result.output] == [
        "edgeupdate",
        "MapsBroker",
        "RemoteRegistry",
        "sppsvc",
    ]
    assert result.output[0].PSObject.type_names[0] == (
        "Deserialized.Selected.System.ServiceProcess.ServiceController"
    )


def test_demo_get_service_missing_name_is_non_terminating(client: MiniClient) -> None:
    result = client.run("Get-Service -Name nosuch, WinRM")
    assert [o.Name for o in result.output] == ["WinRM"]
    (error,) = result.errors
    assert error.Exception.Message == "Cannot find any service with service name 'nosuch'."
    assert error.FullyQualifiedErrorId == (
        "NoServiceFoundForGivenName,Microsoft.PowerShell.Commands.GetServiceCommand"
    )


def test_demo_event_errors_of_last_day(client: MiniClient) -> None:
    result = client.run(
        "Get-WinEvent -FilterHashtable @{LogName='System'; Level=1,2; "
        "StartTime=(Get-Date).AddHours(-24)} | Select-Object TimeCreated, ProviderName, Id, "
        "LevelDisplayName"
    )
    assert len(result.output) == 10
    assert {o.LevelDisplayName for o in result.output} == {"Error", "Critical"}
    assert "Service Control Manager" in {o.ProviderName for o in result.output}
    now = dt.datetime.now(dt.timezone.utc)
    assert all(now - o.TimeCreated < dt.timedelta(hours=24) for o in result.output)
    newest_first = [o.TimeCreated for o in result.output]
    assert newest_first == sorted(newest_first, reverse=True)


def test_demo_inventory_commands(client: MiniClient) -> None:
    info = client.run("Get-ComputerInfo").output[0]
    assert info.CsName == COMPUTER_NAME
    assert "SIMULATED GUEST" in info.HvMagicSimulation
    assert info.WindowsProductName == "Windows Server 2022 Datacenter"
    processes = client.run(
        "Get-Process | Sort-Object WS -Descending | Select-Object -First 2 Name, Id"
    ).output
    assert [(p.Name, p.Id) for p in processes] == [("MsMpEng", 2376), ("ServerManager", 4016)]
    hotfixes = client.run("Get-HotFix").output
    assert hotfixes[0].HotFixID == "KB5044281" and hotfixes[0].Source == COMPUTER_NAME
    volumes = client.run(
        "Get-Volume | Select-Object DriveLetter, @{N='SizeGB';E={[math]::Round($_.Size/1GB,2)}}"
    ).output
    assert [(v.DriveLetter, v.SizeGB) for v in volumes][:2] == [("C", 127.0), ("D", 64.0)]
    addresses = client.run("Get-NetIPAddress -AddressFamily IPv4").output
    assert [a.IPAddress for a in addresses] == ["172.20.48.17", "127.0.0.1"]
    tasks = client.run("Get-ScheduledTask | Where-Object State -eq 'Disabled'").output
    assert [t.TaskName for t in tasks] == ["SynchronizeTime"]
    version = client.run("$PSVersionTable.PSVersion").output[0]
    assert str(version) == "5.1.20348.2849"
    table = client.run("$PSVersionTable").output[0]
    assert table["PSEdition"] == "Desktop"


def test_demo_stream_examples(client: MiniClient) -> None:
    result = client.run(
        "Write-Verbose 'v' -Verbose; Write-Verbose 'hidden'; "
        "Write-Warning 'w'; Write-Error 'e'; Write-Host 'h'; "
        "Write-Progress -Activity 'Copy' -Status 'half' -PercentComplete 50; "
        "'out'"
    )
    assert result.output == ["out"]
    assert result.verbose == ["v"]
    assert result.warnings == ["w"]
    assert [e.Exception.Message for e in result.errors] == ["e"]
    assert result.information[0].MessageData.Message == "h"
    assert result.progress[0].PercentComplete == 50


def test_demo_files_test_path_and_hash(client: MiniClient, guest: FakeGuest) -> None:
    path = guest.host_path("C:\\Data\\report.txt")
    path.parent.mkdir(parents=True)
    path.write_bytes(b"hello guest")
    assert client.run("Test-Path C:\\Data\\report.txt").output == [True]
    assert client.run("Test-Path 'C:\\Data\\nothing.txt'").output == [False]
    digest = client.run("Get-FileHash -Path C:\\Data\\report.txt -Algorithm SHA256").output[0]
    assert digest.Hash == hashlib.sha256(b"hello guest").hexdigest().upper()
    assert digest.Path == "C:\\Data\\report.txt"


def test_demo_dsc_reboot_and_reconnect(guest: FakeGuest, client: MiniClient) -> None:
    guest.reboot_seconds = 1.5
    mof = guest.host_path("C:\\Dsc\\WebServer\\localhost.mof")
    mof.parent.mkdir(parents=True)
    mof.write_text(
        "instance of MSFT_RoleResource as $MSFT_RoleResource1ref\n{\n"
        'ResourceID = "[WindowsFeature]WebServer";\n Name = "Web-Server";\n'
        ' Ensure = "Present";\n ModuleName = "PSDesiredStateConfiguration";\n};\n'
    )
    assert client.run("(Get-WindowsFeature Web-Server).Installed").output == [False]
    seen: list[str] = []

    def on_event(event: Any) -> None:
        if isinstance(event, psrpcore.VerboseRecordEvent):
            seen.append(event.record.Message)

    result = client.run(
        "Start-DscConfiguration -Path C:\\Dsc\\WebServer -Wait -Verbose -Force", on_event=on_event
    )
    assert result.state == PSInvocationState.Completed, result.reason
    assert any("[[WindowsFeature]WebServer] Installation started" in v for v in result.verbose)
    assert any("A reboot is required to progress further" in w for w in result.warnings)
    assert len(seen) == len(result.verbose) > 10
    lcm = client.run("Get-DscLocalConfigurationManager").output[0]
    assert lcm.LCMState == "PendingReboot"
    boots = guest.boot_count
    assert client.run("Restart-Computer -Force").state == PSInvocationState.Completed
    deadline = time.monotonic() + 3
    while guest.boot_count == boots and time.monotonic() < deadline:
        time.sleep(0.02)
    assert guest.boot_count == boots + 1
    with pytest.raises(GuestUnavailableError):
        guest.transport()
    assert guest.wait_until_up(5)
    again = MiniClient(guest.transport())
    again.open()
    assert again.run("(Get-WindowsFeature Web-Server).Installed").output == [True]
    assert again.run("(Get-DscLocalConfigurationManager).LCMState").output == ["Idle"]
    assert again.run("Test-DscConfiguration").output == [True]
    assert [s.Name for s in again.run("Get-Service W3SVC").output] == ["W3SVC"]
    again.close()


def test_many_services_are_served_and_their_wire_form_cached() -> None:
    with FakeGuest(service_count=3000) as guest:
        assert guest.demo is not None
        c = MiniClient(guest.transport())
        c.open()
        result = c.run("Get-Service")
        assert len(result.output) == 3000
        assert result.output[-1].DisplayName.endswith("(synthetic)")
        wires = [service._wire for service in guest.demo.services]
        assert all(isinstance(w, bytes) for w in wires)
        assert len(c.run("Get-Service").output) == 3000
        # the second run sent the very same serialized objects (serialized once)
        assert all(s._wire is w for s, w in zip(guest.demo.services, wires, strict=True))
        # a changed object is serialized again
        c.run("Stop-Service -Name WinRM")
        winrm = next(s for s in guest.demo.services if s.get("Name") == "WinRM")
        assert winrm._wire is None
        assert c.run("(Get-Service WinRM).Status").output[0] == 1
        c.close()


# ---- transports and faults ------------------------------------------------------------------


def test_tcp_transport(guest: FakeGuest) -> None:
    import socket

    host, port = guest.serve_tcp()
    sock = socket.create_connection((host, port))
    c = MiniClient(SocketTransport(sock, "tcp"))
    c.open()
    assert c.run("hostname").output == [COMPUTER_NAME]
    c.close()


def test_stdio_mode_like_pwsh_s(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "hvmagic.testing.guest", "--stdio"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )

    class PipeTransport:
        description = "stdio"

        def send(self, data: bytes) -> None:
            assert process.stdin is not None
            process.stdin.write(data)
            process.stdin.flush()

        def recv(self) -> bytes:
            assert process.stdout is not None
            return process.stdout.read1(65536)

        def close(self) -> None:
            assert process.stdin is not None
            process.stdin.close()

    c = MiniClient(PipeTransport(), timeout=30)
    c.open()
    assert [o.Name for o in c.run("Get-Service vmicheartbeat").output] == ["vmicheartbeat"]
    c.close()
    assert process.wait(timeout=10) == 0
    assert process.stderr is not None
    assert process.stderr.read() == b""  # a pwsh -s client treats stderr text as an error


def test_stdio_mode_exits_4000_on_a_bad_packet() -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "hvmagic.testing.guest", "--stdio"],
        input=b"<Bogus PSGuid='00000000-0000-0000-0000-000000000000' />\n",
        capture_output=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=30,
    )
    # pwsh -s exits with 4000; POSIX keeps only the low 8 bits of an exit status (160)
    assert completed.returncode == (4000 if os.name == "nt" else 4000 & 0xFF)
    assert b"Bogus" in completed.stderr
    assert completed.stdout == b""


def test_kill_connections_mid_pipeline(guest: FakeGuest) -> None:
    @guest.handle("Slow-Stream")
    def handler(ctx: HandlerContext) -> None:
        for index in range(100):
            ctx.output(index)
            ctx.sleep(0.05)

    c = MiniClient(guest.transport())
    c.open()
    killer = threading.Timer(0.3, guest.kill_connections)
    killer.start()
    with pytest.raises(ConnectionError):
        c.run("Slow-Stream")
    killer.join()
    deadline = time.monotonic() + 2
    while guest.connections and time.monotonic() < deadline:
        time.sleep(0.01)
    assert guest.connections == 0
    fresh = MiniClient(guest.transport())
    fresh.open()
    assert fresh.run("hostname").output == [COMPUTER_NAME]
    fresh.close()


def test_reboot_refuses_then_accepts(guest: FakeGuest) -> None:
    host, port = guest.serve_tcp()
    guest.reboot(2.0)
    assert not guest.is_up
    with pytest.raises(GuestUnavailableError, match="rebooting"):
        guest.transport()
    import socket

    refused = socket.create_connection((host, port))
    assert refused.recv(10) == b""  # accepted and dropped while "rebooting"
    refused.close()
    assert guest.wait_until_up(3)
    c = MiniClient(guest.transport())
    c.open()
    uptime = c.run("(Get-ComputerInfo).OsLastBootUpTime").output[0]
    assert abs((uptime - guest.boot_time).total_seconds()) < 1
    c.close()


# ---- through hvmagic.session (the wrapper convention) ---------------------------------------


def test_session_wrapper_round_trip(guest: FakeGuest) -> None:
    session_module = pytest.importorskip("hvmagic.session")
    assert hasattr(session_module, "open_session")
    with guest.connect() as session:
        result = session.run("$total = $a + $b; $total", {"a": 40, "b": 2})
        assert result.output == [42]
        assert session.run("$total").output == [42]
        frame = session.run("Get-Service vmic* | Where-Object Status -eq 'Running'").frame()
        assert list(frame.columns[:3]) == ["Status", "Name", "DisplayName"]
        assert len(frame) == 7
        assert guest.history[-1] == "Get-Service vmic* | Where-Object Status -eq 'Running'"


def test_pipeline_ids_are_independent(guest: FakeGuest, client: MiniClient) -> None:
    client.run("$a = 1")
    client.run("$a")
    acked = [p.guid for p in client.packets if p.kind is PacketKind.COMMAND_ACK]
    assert len(set(acked)) == 2
    assert all(isinstance(g, uuid.UUID) and g != NIL_GUID for g in acked)


def _normalized(value: Any) -> Any:
    """A comparable view of a psrpcore-deserialized value (list type names aside: the direct
    writer sends ``Object[]`` like PowerShell, psrpcore's writer an ``ArrayList``)."""
    if isinstance(value, list):
        return [_normalized(v) for v in value]
    ps_object = getattr(value, "PSObject", None)
    if ps_object is None:
        return value
    view: dict[str, Any] = {
        "type_names": list(ps_object.type_names),
        "to_string": ps_object.to_string,
    }
    if isinstance(value, int):
        view["int"] = int(value)
    for prop in ps_object.adapted_properties + ps_object.extended_properties:
        view[prop.name] = _normalized(prop.get_value(value))
    return view


def test_direct_demo_writer_matches_psrpcore_serializer(guest: FakeGuest) -> None:
    from xml.etree import ElementTree

    from psrpcore.types import deserialize, serialize

    from hvmagic.testing.fastwire import demo_clixml

    shell = guest.demo
    assert shell is not None
    cipher = psrpcore.PSRemotingCrypto()
    samples = shell.services[:5] + shell._processes()[:5] + shell._events()[:3] + shell.features[:3]
    samples.append(shell.get_computerinfo(None, None, []))  # type: ignore[arg-type]
    for demo_object in samples:
        direct = deserialize(ElementTree.fromstring(demo_clixml(demo_object)), cipher)
        reference = deserialize(serialize(demo_object.to_psrp(), cipher), cipher)
        assert _normalized(direct) == _normalized(reference), demo_object
    tricky = shell.services[0]
    tricky.set("DisplayName", "a_x0041_b <&> ünï\ncode 𝄞")
    direct = deserialize(ElementTree.fromstring(demo_clixml(tricky)), cipher)
    assert direct.DisplayName == "a_x0041_b <&> ünï\ncode 𝄞"


def test_shared_guest_survives_reconnects() -> None:
    try:
        first = FakeGuest.shared("test-shared")
        assert FakeGuest.shared("test-shared") is first
        first.state["marker"] = 1
        first.reboot(0.05)
        assert first.wait_until_up(2)
        again = FakeGuest.shared("test-shared")
        assert again is first and again.state["marker"] == 1 and again.boot_count == 2
    finally:
        FakeGuest.close_shared("test-shared")
    assert FakeGuest.shared("test-shared") is not first
    FakeGuest.close_shared("test-shared")


@pytest.mark.parametrize(
    ("script", "expected"),
    [
        (
            "Get-Service | ? {$_.Name -match '^vmic(heart|vss)'} | Select-Object -ExpandProperty "
            "Name",
            ["vmicheartbeat", "vmicvss"],
        ),
        ("gsv | where Status -eq Running | measure | select -exp Count", [63]),
        ("(Get-Service).Count", [121]),
        ("@(Get-Service vm*).Count", [8]),
        ("$svc = Get-Service vm*; $svc.Count; $svc[1].Name", [8, "vmicheartbeat"]),
        (
            "Get-Service | Where-Object -Property Status -EQ -Value Stopped | Select -First 1 "
            "-ExpandProperty Name",
            ["AppIDSvc"],
        ),
        (
            "Get-Service | Sort-Object Status, Name -Descending | Select -First 1 -Expand Name",
            ["WpnService"],
        ),
        ("Get-Process -Name svchost | Measure-Object | Select -ExpandProperty Count", [7]),
        (
            "Get-Service | Where-Object Name -like 'vm*' | ForEach-Object Name | Select -Last 1",
            ["vmicvss"],
        ),
        ("1..4 | ForEach-Object { $_ * $_ } | Measure-Object -Sum | Select -Expand Sum", [30.0]),
        ("'{0}-{1}' -f 'a', 'b'", ["a-b"]),
        ("[math]::Round(10 / 4, 1); [int]'41' + 1", [2.5, 42]),
        ("$list = @(); $list += 'x'; $list += 'y'; $list -join ','", ["x,y"]),
        ("'Hyper-V' -like 'hyper-*'; 'abc' -cmatch 'B'; 3 -in 1,2,3", [True, False, True]),
        (
            "Get-Service wuauserv | Format-Table | Out-String",
            [
                "\nStatus  Name     DisplayName\n------  ----     -----------\n"
                "Stopped wuauserv Windows Update\n"
            ],
        ),
        (
            "hostname; whoami; $env:COMPUTERNAME",
            [COMPUTER_NAME, "simulated-guest\\administrator", COMPUTER_NAME],
        ),
    ],
)
def test_demo_understands_common_syntax(
    client: MiniClient, script: str, expected: list[Any]
) -> None:
    result = client.run(script)
    assert result.state == PSInvocationState.Completed, result.reason_message
    assert result.errors == []
    assert result.output == expected


def test_demo_refuses_what_it_cannot_read(client: MiniClient) -> None:
    result = client.run("Get-Service | Where-Object { $_.Name -eq 'x' ")
    assert result.state == PSInvocationState.Failed
    assert result.reason_message == "Missing closing '}' in the script."
    assert result.reason.FullyQualifiedErrorId == "SimulatedGuestCannotParse"


def test_pool_close_waits_for_open_pipelines(guest: FakeGuest) -> None:
    @guest.handle("Hold-On")
    def handler(ctx: HandlerContext) -> None:
        ctx.sleep(30)

    c = MiniClient(guest.transport())
    c.open()
    ps = psrpcore.ClientPowerShell(c.pool)
    ps.add_script("Hold-On")
    c.transport.send(control_packet(PacketKind.COMMAND, ps.pipeline_id))
    c._wait_for(PacketKind.COMMAND_ACK, ps.pipeline_id, [])
    ps.start()
    c._send_pending(ps.pipeline_id, [])
    # Close(pool) while the pipeline is open: no CloseAck until the pipeline is closed (§3.2)
    c.transport.send(control_packet(PacketKind.CLOSE, NIL_GUID))
    time.sleep(0.3)
    assert not any(p.kind is PacketKind.CLOSE_ACK for p in c.packets)
    c.transport.send(control_packet(PacketKind.SIGNAL, ps.pipeline_id))
    c.transport.send(control_packet(PacketKind.CLOSE, ps.pipeline_id))
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not any(
        p.kind is PacketKind.CLOSE_ACK and p.guid == NIL_GUID for p in c.packets
    ):
        time.sleep(0.01)
    acks = [p.guid for p in c.packets if p.kind is PacketKind.CLOSE_ACK]
    assert acks == [ps.pipeline_id, NIL_GUID]
    c.transport.close()


CONFIGURATION = r"""
Configuration WebServer {
    Import-DscResource -ModuleName PSDesiredStateConfiguration
    Import-DscResource -ModuleName ContosoDsc
    Node 'localhost' {
        WindowsFeature IIS {
            Name   = 'Web-Server'
            Ensure = 'Present'
        }
        Service W3SVC {
            Name        = 'W3SVC'
            StartupType = 'Automatic'
            State       = 'Running'
            DependsOn   = '[WindowsFeature]IIS'
        }
        ContosoSite Default {
            SiteName = 'Default'
            Port     = 8080
        }
    }
}
WebServer -OutputPath C:\Dsc
"""


def test_demo_compiles_and_applies_a_configuration(guest: FakeGuest, client: MiniClient) -> None:
    missing = client.run(CONFIGURATION)
    assert missing.state == PSInvocationState.Failed
    assert missing.reason_message == "Could not find the module 'ContosoDsc'."
    # the custom resource module arrives (in the runbook: %vmcopy -r), then it compiles
    guest.host_path("C:\\Program Files\\WindowsPowerShell\\Modules\\ContosoDsc").mkdir()
    compiled = client.run(CONFIGURATION)
    assert [o.FullName for o in compiled.output] == ["C:\\Dsc\\localhost.mof"]
    mof = guest.host_path("C:\\Dsc\\localhost.mof").read_text(encoding="utf-8")
    assert "instance of MSFT_RoleResource as $MSFT_RoleResource1ref" in mof
    assert 'ResourceID = "[Service]W3SVC";' in mof
    assert 'ModuleName = "ContosoDsc";' in mof
    applied = client.run("Start-DscConfiguration -Path C:\\Dsc -Wait -Verbose")
    assert applied.state == PSInvocationState.Completed, applied.reason_message
    assert any("[[ContosoSite]Default] Resource ContosoSite applied" in v for v in applied.verbose)
    w3svc = client.run("Get-Service W3SVC").output[0]
    assert (w3svc.Status, w3svc.StartType) == (4, 2)
    status = client.run("Get-DscConfigurationStatus").output[0]
    assert status.Status == "Success" and status.RebootRequested is True


def test_demo_functions_persist_between_runs(client: MiniClient) -> None:
    assert client.run("function Get-Double($n) { $n * 2 }").output == []
    assert client.run("Get-Double 21; Get-Double -n 5").output == [42, 10]
    client.run(
        "function Get-IntegrationService { param($Pattern) "
        "Get-Service $Pattern | Select-Object -ExpandProperty Name }"
    )
    assert client.run("Get-IntegrationService vmic*s* | Select-Object -First 2").output == [
        "vmicguestinterface",
        "vmicshutdown",
    ]
    # assignments inside a function stay in its scope; `return` ends it
    assert client.run(
        "function Test-It { $x = 5; return $x + 1; 'never' }; Test-It; $x"
    ).output == [6]


def test_second_pipeline_waits_for_the_single_runspace(guest: FakeGuest) -> None:
    timeline: list[str] = []

    @guest.handle("Step-One")
    def one(ctx: HandlerContext) -> None:
        timeline.append("one:start")
        ctx.sleep(0.3)
        timeline.append("one:end")

    @guest.handle("Step-Two")
    def two(ctx: HandlerContext) -> None:
        timeline.append("two:start")

    c = MiniClient(guest.transport())
    c.open()  # psrpcore's client asks for MinRunspaces = MaxRunspaces = 1
    assert c.pool.max_runspaces == 1
    pipelines = []
    for script in ("Step-One", "Step-Two"):
        ps = psrpcore.ClientPowerShell(c.pool)
        ps.add_script(script)
        c.transport.send(control_packet(PacketKind.COMMAND, ps.pipeline_id))
        c._wait_for(PacketKind.COMMAND_ACK, ps.pipeline_id, [])
        ps.start()
        c._send_pending(ps.pipeline_id, [])
        pipelines.append(ps)
    deadline = time.monotonic() + 5
    while len(timeline) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert timeline == ["one:start", "one:end", "two:start"]
    c.transport.close()


def test_pscustomobject_hash_literal_in_an_expression() -> None:
    with FakeGuest() as guest, guest.connect() as session:
        result = session.run(
            "[pscustomobject]@{\n    Name = 'web'\n    Count = (Get-Service vm*).Count\n"
            "    Up = (Get-Service vmicheartbeat).Status -eq 'Running'\n}"
        )
    (row,) = result.output
    assert row["Name"] == "web" and row["Count"] == 8 and row["Up"] is True
    assert row.type_name == "System.Management.Automation.PSCustomObject"
