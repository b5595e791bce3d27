"""FakeGuest against a psrpcore client we did not write (``tests/_psrp_test_client.py``).

Core protocol tests use the minimal psrpcore client over a real socket pair, so they do not
depend on hvmagic's session code; a few tests at the end go through ``hvmagic.session`` to
check the wrapper convention end to end. FakeGuest answers with handlers only: what PowerShell
itself does is judged by real PowerShell in ``tests/pwsh``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
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
    with FakeGuest() as guest:
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


def test_every_data_line_is_one_whole_fragment_with_a_bom_payload(
    guest: FakeGuest, client: MiniClient
) -> None:
    guest.add_handler(
        "Get-Many",
        lambda ctx: [{"Name": f"service{i}", "DisplayName": f"Service number {i}", "Index": i}
                     for i in range(150)],
    )
    result = client.run("Get-Many")
    assert result.state == PSInvocationState.Completed
    assert [o.Index for o in result.output] == list(range(150))
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


def test_strings_needing_escapes_survive_the_guests_direct_string_writer(
    guest: FakeGuest, client: MiniClient
) -> None:
    # plain strings skip psrpcore's serializer (hvmagic.testing.fastwire); these need escapes
    tricky = [
        "a_x0041_b", "_X0041_", "<&>", "tab\there", "line\nbreak", "\x00nul", "ünï 𝄞 漢字",
        "quote \" '", "",
    ]
    guest.add_handler("Get-Tricky", lambda ctx: tricky)
    assert client.run("Get-Tricky").output == tricky


def test_command_ack_and_close_ack_per_pipeline(guest: FakeGuest, client: MiniClient) -> None:
    guest.add_handler("Set-Nothing", lambda ctx: None)
    assert client.run("Set-Nothing").state == PSInvocationState.Completed
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


def test_stop_wakes_a_sleeping_handler(guest: FakeGuest, client: MiniClient) -> None:
    observed: dict[str, Any] = {}

    guest.add_handler("Get-Five", lambda ctx: 5)

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
    assert client.run("Get-Five").output == [5]


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


def test_host_call_error_fails_the_pipeline(guest: FakeGuest, client: MiniClient) -> None:
    guest.add_handler(
        "Read-Password", lambda ctx: ctx.read_host("Password", as_secure_string=True)
    )
    refusal = ErrorRecord(
        Exception=NETException(Message="This host cannot prompt: not interactive"),
        CategoryInfo=ErrorCategoryInfo(Category=ErrorCategory.NotImplemented),
        FullyQualifiedErrorId="HostNotInteractive",
    )
    result = client.run("Read-Password", host_responses={"Prompt": refusal})
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


# ---- transports and faults ------------------------------------------------------------------


def test_tcp_transport(guest: FakeGuest) -> None:
    import socket

    guest.add_handler("hostname", lambda ctx: COMPUTER_NAME)
    host, port = guest.serve_tcp()
    sock = socket.create_connection((host, port))
    c = MiniClient(SocketTransport(sock, "tcp"))
    c.open()
    assert c.run("hostname").output == [COMPUTER_NAME]
    c.close()


def test_stdio_mode_like_pwsh_s(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "hvmagic.testing.guest", "--stdio",
         "--handlers", "tests._stdio_guest_handlers"],
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
    assert c.run("Get-Answer").output == [42]  # a handler the command line installed
    unknown = c.run("Get-Service")
    assert unknown.state == PSInvocationState.Failed
    assert "'Get-Service' is not recognized" in unknown.reason_message
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
    guest.add_handler("hostname", lambda ctx: COMPUTER_NAME)

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
    guest.add_handler("Get-BootTime", lambda ctx: ctx.guest.boot_time)
    host, port = guest.serve_tcp()
    guest.reboot(1.0)
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
    uptime = c.run("Get-BootTime").output[0]
    assert abs((uptime - guest.boot_time).total_seconds()) < 1
    c.close()


# ---- through hvmagic.session (the wrapper convention) ---------------------------------------


def test_session_wrapper_round_trip(guest: FakeGuest) -> None:
    @guest.handle("Add-Numbers")
    def add(ctx: HandlerContext) -> Any:
        ctx.variables["total"] = ctx.parameters["a"] + ctx.parameters["b"]
        return ctx.variables["total"]

    guest.add_handler("Get-Total", lambda ctx: ctx.variables["total"])
    guest.add_handler(
        "Get-Heartbeat",
        lambda ctx: {"PSTypeName": "System.ServiceProcess.ServiceController", "Status": "Running",
                     "Name": "vmicheartbeat", "DisplayName": "Hyper-V Heartbeat Service",
                     "StartType": "Manual"},
    )
    with guest.connect() as session:
        # the session's wrapper is removed: the handler sees the user's text and parameters
        assert session.run("Add-Numbers", {"a": 40, "b": 2}).output == [42]
        assert guest.history[-1] == "Add-Numbers"
        assert session.run("Get-Total").output == [42]  # per-session state
        frame = session.run("Get-Heartbeat").frame()
        assert list(frame.columns) == ["Status", "Name", "DisplayName"]
        assert frame.iloc[0].tolist() == ["Running", "vmicheartbeat", "Hyper-V Heartbeat Service"]


def test_pipeline_ids_are_independent(guest: FakeGuest, client: MiniClient) -> None:
    client.run("$a = 1")
    client.run("$a")
    acked = [p.guid for p in client.packets if p.kind is PacketKind.COMMAND_ACK]
    assert len(set(acked)) == 2
    assert all(isinstance(g, uuid.UUID) and g != NIL_GUID for g in acked)


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
