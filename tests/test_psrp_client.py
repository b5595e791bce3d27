"""hvmagic.psrp.client / messages: the sans-IO PSRP client against psrpcore's server classes.

The peer here is psrpcore's ``ServerRunspacePool``/``ServerPipeline`` driven in-process through
the OutOfProc framing, with the mediator's rules (acks, Command → ServerPipeline). Every byte
the client writes is parsed and checked against ``psdirect-protocol.md`` §3.3.
"""

from __future__ import annotations

import contextlib
import uuid
from typing import Any

import psrpcore
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from psrpcore.types import (
    ErrorCategory,
    ErrorCategoryInfo,
    HostMethodIdentifier,
    NETException,
    ProgressRecordType,
    PSCustomObject,
    PSInvocationState,
    RunspacePoolState,
)

from hvmagic.clixml.values import (
    ErrorRecord,
    InformationalRecord,
    InformationRecord,
    ProgressRecord,
    PSChar,
    PSCredential,
    PSDateTime,
    PSEnum,
    PSObject,
    PSScriptBlock,
    PSTimeSpan,
    PSUri,
    PSVersion,
    PSXmlDocument,
    SecureString,
)
from hvmagic.errors import (
    EncodeError,
    HvMagicError,
    LimitExceededError,
    ProtocolError,
    TransportError,
)
from hvmagic.psrp.client import (
    HostCall,
    KeyExchanged,
    PipelineClosed,
    PipelineFinished,
    PipelineRecord,
    PoolClosed,
    PoolOpened,
    PSRPClient,
)
from hvmagic.psrp.messages import FragmentAssembler, build_fragment
from hvmagic.psrp.outofproc import (
    NIL_GUID,
    OutOfProcPacket,
    PacketKind,
    PacketReader,
    control_packet,
    data_packet,
)

CLIENT_KINDS = {PacketKind.DATA, PacketKind.COMMAND, PacketKind.CLOSE, PacketKind.SIGNAL}


class ServerPeer:
    """psrpcore's server behind the OutOfProc mediator rules, in-process.

    ``auto_ack=False`` holds DataAcks back so tests can see what the client does meanwhile.
    """

    def __init__(self) -> None:
        self.pool = psrpcore.ServerRunspacePool()
        self.reader = PacketReader()
        self.received: list[OutOfProcPacket] = []
        self.raw_lines: list[bytes] = []
        self.pipelines: dict[uuid.UUID, psrpcore.ServerPipeline] = {}
        self.events: list[Any] = []
        self.auto_ack = True
        self.held_acks: list[bytes] = []

    def feed(self, data: bytes) -> bytes:
        """Process client bytes; return what the server writes back."""
        self.raw_lines.extend(data.splitlines(keepends=True))
        self.reader.receive_data(data)
        out: list[bytes] = []
        while (packet := self.reader.next_packet()) is not None:
            assert packet.kind in CLIENT_KINDS, f"client sent {packet.kind}"
            self.received.append(packet)
            guid = packet.guid
            if packet.kind is PacketKind.COMMAND:
                self.pipelines[guid] = psrpcore.ServerPipeline(self.pool, guid)
                out.append(control_packet(PacketKind.COMMAND_ACK, guid))
            elif packet.kind is PacketKind.DATA:
                if guid != NIL_GUID:
                    assert guid in self.pipelines, "Data(pid) before Command(pid)"
                self.pool.receive_data(psrpcore.PSRPPayload(
                    packet.data, psrpcore.StreamType.default, None if guid == NIL_GUID else guid
                ))
                while (event := self.pool.next_event()) is not None:
                    self.events.append(event)
                    if isinstance(event, psrpcore.CreatePipelineEvent):
                        self.pipelines[event.pipeline_id].start()
                out.append(self.flush())
                ack = control_packet(PacketKind.DATA_ACK, guid)
                if self.auto_ack:
                    out.append(ack)
                else:
                    self.held_acks.append(ack)
            elif packet.kind is PacketKind.SIGNAL:
                pipeline = self.pipelines.get(guid)
                if pipeline is not None and pipeline.state == PSInvocationState.Running:
                    pipeline.stop()
                out.append(self.flush())
                out.append(control_packet(PacketKind.SIGNAL_ACK, guid))
            elif packet.kind is PacketKind.CLOSE:
                if guid == NIL_GUID:
                    assert not self.pipelines, "Close(pool) while pipelines are open"
                    out.append(control_packet(PacketKind.CLOSE_ACK, guid))
                else:
                    pipeline = self.pipelines.pop(guid)
                    pipeline.close()
                    out.append(control_packet(PacketKind.CLOSE_ACK, guid))
        return b"".join(out)

    def flush(self) -> bytes:
        lines = []
        while (payload := self.pool.data_to_send(32 << 10)) is not None:
            lines.append(data_packet(payload.data, payload.pipeline_id or NIL_GUID))
        return b"".join(lines)

    def release_acks(self) -> bytes:
        acks = b"".join(self.held_acks)
        self.held_acks.clear()
        return acks


def exchange(client: PSRPClient, server: ServerPeer, rounds: int = 50) -> list[Any]:
    """Shuttle bytes until both sides are quiet; return the client's events."""
    events: list[Any] = []
    for _ in range(rounds):
        data = client.data_to_send()
        if not data:
            break
        reply = server.feed(data)
        if reply:
            client.receive_data(reply)
        events.extend(client.events())
    events.extend(client.events())
    return events


def server_to_client(client: PSRPClient, server: ServerPeer) -> list[Any]:
    client.receive_data(server.flush())
    events = list(client.events())
    return events + exchange(client, server)


@pytest.fixture
def pair() -> tuple[PSRPClient, ServerPeer]:
    client = PSRPClient()
    server = ServerPeer()
    client.open()
    events = exchange(client, server)
    assert any(isinstance(e, PoolOpened) for e in events)
    assert client.opened
    return client, server


def start(client: PSRPClient, server: ServerPeer, script: str = "Get-Thing",
          parameters: dict[str, Any] | None = None) -> tuple[uuid.UUID, psrpcore.ServerPipeline]:
    pid = client.start_script(script, parameters, use_local_scope=False)
    exchange(client, server)
    return pid, server.pipelines[pid]


# ------------------------------------------------------------------------------------------
# §3.3 rules
# ------------------------------------------------------------------------------------------


def test_open_is_one_data_line_for_the_pool_and_the_pool_opens() -> None:
    client = PSRPClient()
    client.open()
    lines = client.data_to_send().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(
        b"<Data Stream='Default' PSGuid='00000000-0000-0000-0000-000000000000'>"
    )
    server = ServerPeer()
    client.receive_data(server.feed(lines[0] + b"\n"))
    events = list(client.events())
    assert [type(e) for e in events] == [PoolOpened]
    assert client.pool.state == RunspacePoolState.Opened
    assert server.pool.state == RunspacePoolState.Opened


def test_command_ack_comes_before_the_first_pipeline_data(pair: Any) -> None:
    client, server = pair
    pid = client.start_script("Get-Date")
    first = client.data_to_send()
    assert first == control_packet(PacketKind.COMMAND, pid)  # only the Command so far
    assert client.data_to_send() == b""
    reply = server.feed(first)
    assert reply == control_packet(PacketKind.COMMAND_ACK, pid)
    client.receive_data(reply)
    data = client.data_to_send()
    packets = _parse(data)
    assert [(p.kind, p.guid) for p in packets] == [(PacketKind.DATA, pid)]
    server.feed(data)
    assert server.pipelines[pid].state == PSInvocationState.Running
    commands = [e for e in server.events if isinstance(e, psrpcore.CreatePipelineEvent)]
    assert commands[0].pipeline.commands[0].command_text == "Get-Date"


def test_at_most_one_unacknowledged_data_per_guid(pair: Any) -> None:
    client, server = pair
    big = "x" * 200_000  # ~7 fragments of 32 KiB
    pid = client.start_script("param($Blob) $Blob.Length", {"Blob": big})
    server.auto_ack = False
    client.receive_data(server.feed(client.data_to_send()))  # Command → CommandAck
    sent_data = 0
    while True:
        packets = _parse(data := client.data_to_send())
        if not packets:
            break
        assert [(p.kind, p.guid) for p in packets] == [(PacketKind.DATA, pid)]
        sent_data += 1
        client.receive_data(server.feed(data))  # processed, DataAck held back
        assert client.data_to_send() == b"", "sent Data before the previous DataAck"
        client.receive_data(server.release_acks())
    assert sent_data >= 7
    created = [e for e in server.events if isinstance(e, psrpcore.CreatePipelineEvent)]
    parameters = created[0].pipeline.commands[0].parameters
    assert parameters == [("Blob", big)]
    assert server.pipelines[pid].state == PSInvocationState.Running


def test_client_never_sends_acks_or_blank_lines(pair: Any) -> None:
    client, server = pair
    pid, pipeline = start(client, server)
    pipeline.write_output("one")
    pipeline.complete()
    server_to_client(client, server)
    client.close_pipeline(pid)
    exchange(client, server)
    client.close()
    exchange(client, server)
    assert client.closed
    for line in server.raw_lines:
        assert line.strip(), "blank line sent"
    kinds = {p.kind for p in server.received}
    assert kinds <= CLIENT_KINDS
    assert not kinds & {PacketKind.DATA_ACK, PacketKind.COMMAND_ACK, PacketKind.CLOSE_ACK,
                        PacketKind.SIGNAL_ACK}


def test_pool_close_waits_for_every_pipeline_close(pair: Any) -> None:
    client, server = pair
    pid, pipeline = start(client, server)
    pipeline.complete()
    client.receive_data(server.flush())
    assert any(isinstance(e, PipelineFinished) for e in client.events())
    client.close()
    data = client.data_to_send()
    assert _kinds(data) == [(PacketKind.CLOSE, pid)]  # the pipeline first, not the pool
    client.receive_data(server.feed(data))
    events = list(client.events())
    assert PipelineClosed(pid) in events
    data = client.data_to_send()
    assert _kinds(data) == [(PacketKind.CLOSE, NIL_GUID)]
    client.receive_data(server.feed(data))
    assert PoolClosed() in list(client.events())
    assert client.closed and client.pool.state == RunspacePoolState.Closed


def test_close_stops_a_running_pipeline_first(pair: Any) -> None:
    client, server = pair
    pid, _ = start(client, server)
    client.close()
    data = client.data_to_send()
    assert _kinds(data) == [(PacketKind.SIGNAL, pid)]
    events = []
    client.receive_data(server.feed(data))
    events += list(client.events())
    finished = [e for e in events if isinstance(e, PipelineFinished)]
    assert finished and finished[0].state == "Stopped"
    assert finished[0].error is not None
    assert finished[0].error.fully_qualified_error_id == "PipelineStopped"
    # no further call needed: the client releases the stopped pipeline, then the pool
    data = client.data_to_send()
    assert _kinds(data) == [(PacketKind.CLOSE, pid)]
    client.receive_data(server.feed(data))
    events = list(client.events()) + exchange(client, server)
    assert PoolClosed() in events and client.closed


def test_stop_before_command_ack_releases_the_command_without_a_signal(pair: Any) -> None:
    client, server = pair
    pid = client.start_script("Start-Sleep 100")
    client.stop_pipeline(pid)
    command = client.data_to_send()
    assert _kinds(command) == [(PacketKind.COMMAND, pid)]
    client.receive_data(server.feed(command))  # CommandAck
    # nothing for the server to stop: no Data, no Signal, just release the Command
    assert list(client.events()) == [PipelineFinished(pid, "Stopped")]
    assert client.pipeline_state(pid) == "Stopped"
    close = client.data_to_send()
    assert _kinds(close) == [(PacketKind.CLOSE, pid)]
    client.receive_data(server.feed(close))
    assert list(client.events()) == [PipelineClosed(pid)]
    assert client.open_pipelines == []
    assert not any(isinstance(e, psrpcore.CreatePipelineEvent) for e in server.events)
    # the pool is still fine: the next pipeline runs and completes
    pid2, pipeline = start(client, server, "Get-Next")
    pipeline.write_output("next")
    pipeline.complete()
    events = server_to_client(client, server)
    assert [e.record for e in events if isinstance(e, PipelineRecord)] == ["next"]
    assert PipelineFinished(pid2, "Completed") in events
    assert [(p.kind, p.guid) for p in server.received if p.guid == pid] == [
        (PacketKind.COMMAND, pid), (PacketKind.CLOSE, pid)]


def test_signal_waits_until_the_server_created_the_pipeline(pair: Any) -> None:
    client, server = pair
    pid = client.start_script("Start-Sleep 100")
    server.auto_ack = False
    client.receive_data(server.feed(client.data_to_send()))  # Command → CommandAck
    client.stop_pipeline(pid)  # after CommandAck: CREATE_PIPELINE goes first
    data = client.data_to_send()
    assert _kinds(data) == [(PacketKind.DATA, pid)]
    client.receive_data(server.feed(data))  # pipeline created; DataAck held back
    assert client.data_to_send() == b"", "Signal before the CREATE_PIPELINE DataAck"
    client.receive_data(server.release_acks())
    signal = client.data_to_send()
    assert _kinds(signal) == [(PacketKind.SIGNAL, pid)]
    client.receive_data(server.feed(signal))
    finished = [e for e in client.events() if isinstance(e, PipelineFinished)]
    assert [(e.pipeline_id, e.state) for e in finished] == [(pid, "Stopped")]
    assert [(p.kind, p.guid) for p in server.received if p.guid == pid] == [
        (PacketKind.COMMAND, pid), (PacketKind.DATA, pid), (PacketKind.SIGNAL, pid)]


def test_signal_waits_for_every_create_pipeline_fragment(pair: Any) -> None:
    client, server = pair
    pid = client.start_script("param($Blob) Start-Sleep 100", {"Blob": "x" * 100_000})
    server.auto_ack = False
    client.receive_data(server.feed(client.data_to_send()))  # Command → CommandAck
    client.stop_pipeline(pid)  # after CommandAck, with most CREATE_PIPELINE lines still queued
    kinds: list[tuple[PacketKind, uuid.UUID]] = []
    while data := client.data_to_send():
        kinds += _kinds(data)
        client.receive_data(server.feed(data))
        client.receive_data(server.release_acks())
    data_lines = kinds.index((PacketKind.SIGNAL, pid))
    assert data_lines >= 4  # 100 kB of parameters: several 32 KiB fragments
    assert kinds[:data_lines] == [(PacketKind.DATA, pid)] * data_lines
    assert kinds[data_lines:] == [(PacketKind.SIGNAL, pid)]
    assert server.pipelines[pid].state == PSInvocationState.Stopped
    finished = [e for e in client.events() if isinstance(e, PipelineFinished)]
    assert [(e.pipeline_id, e.state) for e in finished] == [(pid, "Stopped")]


def test_close_before_command_ack_finishes_without_a_signal(pair: Any) -> None:
    client, server = pair
    pid = client.start_script("Start-Sleep 100")
    client.close()
    events = exchange(client, server)
    assert PipelineFinished(pid, "Stopped") in events
    assert PoolClosed() in events and client.closed
    assert [p.kind for p in server.received if p.guid == pid] == [
        PacketKind.COMMAND, PacketKind.CLOSE]


# ------------------------------------------------------------------------------------------
# records, fast path and psrpcore's state
# ------------------------------------------------------------------------------------------


def _service(i: int) -> PSCustomObject:
    obj = PSCustomObject(Name=f"svc{i}", Index=i, Running=i % 2 == 0, Text="日本語 🙂 עברית")
    obj.PSObject.type_names = ["System.ServiceProcess.ServiceController", "System.Object"]
    return obj


def test_output_is_decoded_by_hvmagic_and_psrpcore_stays_consistent(pair: Any) -> None:
    client, server = pair
    pid, pipeline = start(client, server)
    for i in range(200):
        pipeline.write_output(_service(i))
    pipeline.write_output(None)
    pipeline.complete()
    events = server_to_client(client, server)
    records = [e for e in events if isinstance(e, PipelineRecord)]
    assert len(records) == 201
    first = records[0].record
    assert isinstance(first, PSObject)
    assert first["Name"] == "svc0" and first["Index"] == 0 and first["Running"] is True
    assert first["Text"] == "日本語 🙂 עברית"
    assert first.type_names[0] == "System.ServiceProcess.ServiceController"
    assert records[-1].record is None
    assert records[150].record["Index"] == 150
    finished = [e for e in events if isinstance(e, PipelineFinished)]
    assert finished == [PipelineFinished(pid, "Completed", None)]
    # psrpcore never saw the 201 outputs, yet its state machine is where it should be:
    assert client.pool.pipeline_table[pid].state == PSInvocationState.Completed
    assert client.pool.state == RunspacePoolState.Opened
    assert client.messages_received >= 204
    # ... and it still negotiates: key exchange, then a second pipeline with a SecureString.
    client.close_pipeline(pid)
    exchange(client, server)
    client.exchange_key()
    assert any(isinstance(e, KeyExchanged) for e in exchange(client, server))
    _pid2, _ = start(client, server, "param($P) 1", {"P": SecureString("s3cret!")})
    created = [e for e in server.events if isinstance(e, psrpcore.CreatePipelineEvent)]
    sent = created[-1].pipeline.commands[0].parameters[0][1]
    assert sent.decrypt() == "s3cret!"
    assert b"s3cret" not in b"".join(server.raw_lines)


def test_objects_spanning_many_fragments(pair: Any) -> None:
    client, server = pair
    _pid, pipeline = start(client, server)
    big = "Ω" * 300_000  # 600 KB of UTF-8: ~19 fragments of 32 KiB
    pipeline.write_output(big)
    pipeline.write_output("after")
    pipeline.complete()
    flushed = server.flush()
    assert flushed.count(b"\n") > 18
    client.receive_data(flushed)
    records = [e.record for e in client.events() if isinstance(e, PipelineRecord)]
    assert records == [big, "after"]


def test_every_stream_type_becomes_an_hvmagic_record(pair: Any) -> None:
    client, server = pair
    _pid, pipeline = start(client, server)
    pipeline.write_error(
        NETException(Message="Cannot find a service 'nosuch'."),
        ErrorCategoryInfo(Category=ErrorCategory.ObjectNotFound, Reason="ServiceCommandException",
                          TargetName="nosuch", TargetType="String"),
        target_object="nosuch",
        fully_qualified_error_id="NoServiceFoundForGivenName,Microsoft.PowerShell.Commands.GetServiceCommand",
    )
    pipeline.write_warning("careful")
    pipeline.write_verbose("chatty")
    pipeline.write_debug("details")
    pipeline.write_information("informative", "Write-Information")
    pipeline.write_progress("Copying", 1, "3 of 10", percent_complete=30,
                            record_type=ProgressRecordType.Processing)
    pipeline.complete()
    client.receive_data(server.flush())
    records = [(e.stream, e.record) for e in client.events() if isinstance(e, PipelineRecord)]
    streams = [s for s, _ in records]
    assert streams == ["error", "warning", "verbose", "debug", "information", "progress"]
    error = records[0][1]
    assert isinstance(error, ErrorRecord)
    assert error.message == "Cannot find a service 'nosuch'."
    assert error.category == "ObjectNotFound"
    assert error.fully_qualified_error_id.startswith("NoServiceFoundForGivenName")
    for _, record in records[1:4]:
        assert isinstance(record, InformationalRecord)
    assert [r.message for _, r in records[1:4]] == ["careful", "chatty", "details"]
    info = records[4][1]
    assert isinstance(info, InformationRecord) and info.message == "informative"
    progress = records[5][1]
    assert isinstance(progress, ProgressRecord)
    assert (progress.activity, progress.activity_id, progress.status_description,
            progress.percent_complete, progress.record_type) == (
        "Copying", 1, "3 of 10", 30, "Processing")


def test_failed_pipeline_carries_an_hvmagic_error_record(pair: Any) -> None:
    client, server = pair
    _pid, pipeline = start(client, server)
    record = psrpcore.types.ErrorRecord(
        Exception=NETException(Message="boom"),
        CategoryInfo=ErrorCategoryInfo(Category=ErrorCategory.InvalidOperation),
        FullyQualifiedErrorId="Boom",
    )
    pipeline._change_state(PSInvocationState.Failed, record)
    client.receive_data(server.flush())
    finished = [e for e in client.events() if isinstance(e, PipelineFinished)]
    assert len(finished) == 1
    assert finished[0].state == "Failed"
    assert isinstance(finished[0].error, ErrorRecord)
    assert finished[0].error.message == "boom"
    assert finished[0].error.fully_qualified_error_id == "Boom"
    assert finished[0].error.category == "InvalidOperation"


def test_host_call_and_error_response(pair: Any) -> None:
    client, server = pair
    pid, pipeline = start(client, server)
    ci = pipeline.host_call(HostMethodIdentifier.ReadLine)
    client.receive_data(server.flush())
    calls = [e for e in client.events() if isinstance(e, HostCall)]
    assert calls == [HostCall(pid, ci, "ReadLine", [])]
    assert calls[0].needs_response
    client.host_response(calls[0], error_message="nobody is watching")
    data = client.data_to_send()
    assert b"Stream='PromptResponse'" in data
    server.feed(data)
    responses = [e for e in server.events if isinstance(e, psrpcore.PipelineHostResponseEvent)]
    assert len(responses) == 1
    assert responses[0].error is not None
    assert "nobody is watching" in str(responses[0].error)


def test_host_call_value_response(pair: Any) -> None:
    client, server = pair
    _pid, pipeline = start(client, server)
    pipeline.host_call(HostMethodIdentifier.PromptForChoice, ["Caption", "Pick", [], 0])
    client.receive_data(server.flush())
    call = next(e for e in client.events() if isinstance(e, HostCall))
    assert call.method == "PromptForChoice"
    client.host_response(call, 2)
    server.feed(client.data_to_send())
    response = next(e for e in server.events if isinstance(e, psrpcore.PipelineHostResponseEvent))
    assert response.result == 2


# ------------------------------------------------------------------------------------------
# malformed input
# ------------------------------------------------------------------------------------------


def test_malformed_line_is_a_protocol_error(pair: Any) -> None:
    client, _ = pair
    with pytest.raises(ProtocolError):
        client.receive_data(b"<Data Stream='Default' PSGuid='nope'>@@@</Data>\n")


def test_unknown_element_is_a_protocol_error(pair: Any) -> None:
    client, _ = pair
    with pytest.raises(ProtocolError, match="unknown element"):
        client.receive_data(b"<Bogus PSGuid='00000000-0000-0000-0000-000000000000' />\n")


def test_server_sending_a_client_packet_is_a_protocol_error(pair: Any) -> None:
    client, _ = pair
    with pytest.raises(ProtocolError, match="client-only"):
        client.receive_data(control_packet(PacketKind.COMMAND, uuid.uuid4()))


def test_error_line_is_a_transport_error(pair: Any) -> None:
    client, _ = pair
    with pytest.raises(TransportError, match="guest went away"):
        client.receive_data(b"__HyperVSocketError__: guest went away\n")


def test_undecodable_record_is_a_protocol_error(pair: Any) -> None:
    client, server = pair
    pid, _ = start(client, server)
    body = b"\xef\xbb\xbf<Obj><S>unterminated"
    message = (
        (1).to_bytes(4, "little") + (0x41004).to_bytes(4, "little")
        + client.pool.runspace_pool_id.bytes_le + pid.bytes_le + body
    )
    with pytest.raises(ProtocolError, match="undecodable output"):
        client.receive_data(data_packet(build_fragment(99, message), pid))


def test_fragment_assembler_rules() -> None:
    header = (1).to_bytes(4, "little") + (0x41004).to_bytes(4, "little") + bytes(32)
    message = header + b"<S>hello</S>"
    assembler = FragmentAssembler()
    # split across payloads, fragment by fragment and mid-header
    whole = build_fragment(5, message[:20], 0, end=False) + build_fragment(5, message[20:], 1)
    assert assembler.feed(whole[:10]) == []
    assert assembler.feed(whole[10:50]) == []
    messages = assembler.feed(whole[50:])
    assert len(messages) == 1 and messages[0].body == b"<S>hello</S>"
    assert messages[0].pipeline_id is None and messages[0].message_type == 0x41004
    with pytest.raises(ProtocolError, match="without its start"):
        FragmentAssembler().feed(build_fragment(7, message, 1))
    with pytest.raises(ProtocolError, match="expected fragment 1"):
        FragmentAssembler().feed(
            build_fragment(7, message[:5], 0, end=False) + build_fragment(7, message[5:], 2)
        )
    with pytest.raises(ProtocolError, match="40-byte header"):
        FragmentAssembler().feed(build_fragment(8, b"short"))
    with pytest.raises(LimitExceededError):
        FragmentAssembler(max_message_bytes=100).feed(
            build_fragment(9, b"a" * 60, 0, end=False) + build_fragment(9, b"b" * 60, 1)
        )


# ------------------------------------------------------------------------------------------
# parameters: hvmagic values → hvmagic's encoder → psrpcore's message
# ------------------------------------------------------------------------------------------


def _xml(value: Any, cipher: Any = None) -> str:
    """What psrpcore's serializer writes for a value the client encoded (the hook of
    :mod:`hvmagic.psrp.psrpcore_fixes`)."""
    from xml.etree import ElementTree

    return ElementTree.tostring(
        psrpcore.types.serialize(PSRPClient().encode(value), cipher), encoding="unicode"
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1.5, "<Db>1.5</Db>"),
        (7, "<I32>7</I32>"),
        (2**40, "<I64>1099511627776</I64>"),
        (2**63 + 5, "<U64>9223372036854775813</U64>"),
        (True, "<B>true</B>"),
        (None, "<Nil />"),
        ("日本 🙂", "<S>日本 🙂</S>"),
        ("a\r\nb_x0041_", "<S>a_x000D__x000A_b_x005F_x0041_</S>"),
        (b"\x00\x01", "<BA>AAE=</BA>"),
        (PSChar("A"), "<C>65</C>"),
        (PSUri("https://example.com/"), "<URI>https://example.com/</URI>"),
        (PSVersion(10, 0, 17763), "<Version>10.0.17763</Version>"),
        (PSScriptBlock("Get-Date"), "<SBK>Get-Date</SBK>"),
        (PSXmlDocument("<a/>"), "<XD>&lt;a/&gt;</XD>"),
        (uuid.UUID(int=1), "<G>00000000-0000-0000-0000-000000000001</G>"),
        (PSEnum(4, "Running"), '<Obj RefId="0"><TN RefId="0"><T>System.Int32</T>'
         "<T>System.Enum</T><T>System.ValueType</T><T>System.Object</T></TN>"
         "<ToString>Running</ToString><I32>4</I32></Obj>"),
    ],
)
def test_parameter_types(value: Any, expected: str) -> None:
    assert _xml(value) == expected


def test_unicode_parameters_round_trip_through_hvmagics_decoder() -> None:
    from hvmagic.clixml import loads

    for text in ("日本語のテキスト", "emoji 🙂👍🏽 family 👨‍👩‍👧", "עברית ומספרים 123", "مرحبا"):
        assert loads(_xml(text)) == [text]


def test_parameter_datetime_and_timespan_keep_ticks() -> None:
    import datetime as dt

    moment = PSDateTime(2024, 2, 29, 23, 59, 58, 123456, tzinfo=dt.timezone.utc)
    moment.tick_remainder = 7
    assert _xml(moment) == "<DT>2024-02-29T23:59:58.1234567Z</DT>"
    span = PSTimeSpan(seconds=90, microseconds=5)
    span.tick_remainder = 3
    assert _xml(span) == "<TS>PT1M30.0000053S</TS>"


def test_parameter_collections_and_objects() -> None:
    assert "<LST><I32>1</I32><S>a</S></LST>" in _xml((1, "a"))
    assert "<En><S N=\"Key\">k</S><Db N=\"Value\">2.5</Db></En>" in _xml({"k": 2.5})
    obj = PSObject({"Name": "x", "Size": 3}, ["My.Type", "System.Object"])
    text = _xml(obj)
    assert "<T>My.Type</T>" in text
    assert '<S N="Name">x</S>' in text and '<I32 N="Size">3</I32>' in text


def test_encoded_values_get_refids_after_psrpcores_own() -> None:
    # PowerShell resolves <Ref RefId> within a whole message: ids of an inserted element
    # must not collide with the ones psrpcore gave the objects around it
    from xml.etree import ElementTree

    shared = ["s"]
    encoded = PSRPClient().encode({"a": shared, "b": shared})
    outer = PSCustomObject(First=PSCustomObject(X=1), Value=encoded, Last=PSCustomObject(Y=2))
    root = ElementTree.fromstring(ElementTree.tostring(psrpcore.types.serialize(outer, None)))
    ids = [node.get("RefId") for node in root.iter("Obj")]
    assert len(ids) == len(set(ids)) == 5  # outer, First, the table, its list, Last
    types_ids = [node.get("RefId") for node in root.iter("TN")]
    assert len(types_ids) == len(set(types_ids))
    (ref,) = root.iter("Ref")
    target = next(node for node in root.iter("Obj") if node.get("RefId") == ref.get("RefId"))
    assert target.find("LST") is not None and target.find("LST/S").text == "s"  # type: ignore[union-attr]


def test_parameter_secrets_need_and_use_the_session_key(pair: Any) -> None:
    client, server = pair
    with pytest.raises(EncodeError, match="secure_string_encryptor"):
        client.encode(SecureString("pw"))
    client.exchange_key()
    exchange(client, server)
    text = client.encode(SecureString("pw-Ünïcode 🙂")).clixml
    assert text.startswith("<SS>") and text.endswith("</SS>") and "pw" not in text
    # the peer reads it with the key it sent
    assert server.pool._cipher.decrypt(text[4:-5]) == "pw-Ünïcode 🙂"
    credential = client.encode(PSCredential("CORP\\admin", "pw")).clixml
    assert "<T>System.Management.Automation.PSCredential</T>" in credential
    assert '<S N="UserName">CORP\\admin</S>' in credential and '<SS N="Password">' in credential


def test_unsendable_values_raise_encode_error() -> None:
    encode = PSRPClient().encode
    with pytest.raises(EncodeError, match="Int64/UInt64"):
        encode(2**70)
    with pytest.raises(EncodeError, match=r"cannot send a builtins\.object"):
        encode(object())
    cycle: list[Any] = []
    cycle.append(cycle)
    # a cycle is a reference to the object being written, as PowerShell's serializer writes it
    assert '<Ref RefId="0" />' in encode(cycle).clixml
    deep: Any = 1
    for _ in range(60):
        deep = [deep]
    with pytest.raises(EncodeError, match="nests too deeply"):
        encode(deep)


def test_start_requires_an_open_pool() -> None:
    with pytest.raises(ProtocolError, match="not Opened"):
        PSRPClient().start_script("Get-Date")


# ------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------


def _parse(data: bytes) -> list[OutOfProcPacket]:
    reader = PacketReader()
    reader.receive_data(data)
    packets = []
    while (packet := reader.next_packet()) is not None:
        packets.append(packet)
    return packets


def _kinds(data: bytes) -> list[tuple[PacketKind, uuid.UUID]]:
    return [(p.kind, p.guid) for p in _parse(data)]


def test_secret_without_session_key_is_an_encode_error_and_leaves_no_pipeline(pair: Any) -> None:
    client, server = pair
    with pytest.raises(EncodeError, match="secure_string_encryptor"):
        client.start_script("param($P) 1", {"P": SecureString("pw")})
    assert client.pool.pipeline_table == {}
    assert client.open_pipelines == []
    assert client.data_to_send() == b""
    pid, _ = start(client, server)  # the client is still fine
    assert pid in server.pipelines


def test_secure_strings_from_the_guest_are_decrypted_but_stay_masked(pair: Any) -> None:
    client, server = pair
    client.exchange_key()
    exchange(client, server)
    _pid, pipeline = start(client, server)
    secret = psrpcore.types.PSSecureString("guest-s3cret ✓")
    pipeline.write_output(secret)
    pipeline.write_output(psrpcore.types.PSCredential(
        UserName="CORP\\svc", Password=psrpcore.types.PSSecureString("pw2")))
    pipeline.write_output(PSCustomObject(Name="x", Secret=psrpcore.types.PSSecureString("pw3")))
    pipeline.complete()
    client.receive_data(server.flush())
    values = [e.record for e in client.events() if isinstance(e, PipelineRecord)]
    assert isinstance(values[0], SecureString) and values[0].reveal() == "guest-s3cret ✓"
    assert "s3cret" not in repr(values[0])
    assert isinstance(values[1], PSCredential) and values[1].username == "CORP\\svc"
    assert values[1].password.reveal() == "pw2" and "pw2" not in repr(values[1])
    assert values[2]["Secret"].reveal() == "pw3"


def test_broken_pool_is_reported(pair: Any) -> None:
    from hvmagic.psrp.client import PoolBroken

    client, server = pair
    server.pool.set_broken(psrpcore.types.ErrorRecord(
        Exception=NETException(Message="The remote session was terminated."),
        CategoryInfo=ErrorCategoryInfo(Category=ErrorCategory.OpenError),
        FullyQualifiedErrorId="PSSessionStateBroken",
    ))
    client.receive_data(server.flush())
    events = list(client.events())
    assert len(events) == 1 and isinstance(events[0], PoolBroken)
    assert events[0].state == "Broken"
    assert "terminated" in events[0].reason
    assert not client.opened
    with pytest.raises(ProtocolError, match="Broken"):
        client.start_script("Get-Date")


# ------------------------------------------------------------------------------------------
# property tests: any split of a valid stream, and garbage, behave
# ------------------------------------------------------------------------------------------


def _messages_stream(texts: list[str]) -> tuple[bytes, list[bytes]]:
    stream = b""
    bodies = []
    for object_id, text in enumerate(texts, start=1):
        body = text.encode("utf-8")
        message = (1).to_bytes(4, "little") + (0x41004).to_bytes(4, "little") + bytes(32) + body
        cut = max(1, len(message) // 2)
        stream += build_fragment(object_id, message[:cut], 0, end=False)
        stream += build_fragment(object_id, message[cut:], 1)
        bodies.append(body)
    return stream, bodies


@settings(max_examples=60, deadline=None)
@given(st.lists(st.text(min_size=0, max_size=80), min_size=1, max_size=6), st.data())
def test_any_split_of_a_fragment_stream_gives_the_same_messages(texts: list[str],
                                                                data: Any) -> None:
    stream, bodies = _messages_stream(texts)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=8)))
    assembler = FragmentAssembler()
    messages = []
    previous = 0
    for cut in [*cuts, len(stream)]:
        messages += assembler.feed(stream[previous:cut])
        previous = cut
    assert [m.body for m in messages] == bodies
    assert assembler.incomplete_objects == 0


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=300))
def test_garbage_fragments_raise_only_typed_errors(blob: bytes) -> None:
    with contextlib.suppress(HvMagicError):  # anything else fails the test
        FragmentAssembler(max_message_bytes=1 << 16).feed(blob)


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=200))
def test_garbage_data_packets_raise_only_typed_errors(blob: bytes) -> None:
    client = PSRPClient()
    client.open()
    client.data_to_send()
    with contextlib.suppress(HvMagicError):  # anything else fails the test
        client.receive_data(data_packet(blob, NIL_GUID))
        client.receive_data(blob + b"\n")
