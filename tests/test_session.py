"""hvmagic.session: Session/Result/connect through real PSRP peers over real sockets.

Most tests talk to :class:`hvmagic.testing.FakeGuest` (psrpcore's server classes behind the
OutOfProc framing, over a socket pair). The wrapper/parameter tests use a bare psrpcore server
(``EchoPeer``) so they can see exactly what the guest received.
"""

from __future__ import annotations

import datetime
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psrpcore
import pytest
from psrpcore.types import PSInvocationState

import hvmagic
from hvmagic.clixml.values import (
    PSCredential,
    SecureString,
)
from hvmagic.connection import connect
from hvmagic.errors import (
    CredentialError,
    EncodeError,
    LegacyGuestRefusedError,
    PipelineTimeoutError,
    ProtocolError,
    RemoteError,
    SessionBrokenError,
    SessionBusyError,
    TransportError,
    UnsupportedPlatformError,
)
from hvmagic.host import ScriptedHostUI
from hvmagic.psrp.outofproc import NIL_GUID, PacketKind, PacketReader, control_packet, data_packet
from hvmagic.session import WRAPPER_SCRIPT, Session, open_session
from hvmagic.testing import FakeGuest, HandlerContext
from hvmagic.transports.base import SocketTransport

UNICODE_SAMPLES = [
    "日本語のテキスト", "emoji 🙂👍🏽 family 👨‍👩‍👧", "עברית ומספרים 123", "مرحبا بالعالم",
]


@pytest.fixture
def guest() -> Iterator[FakeGuest]:
    fake = FakeGuest()
    state: dict[str, Any] = {"stopped": threading.Event(), "first": threading.Event()}
    fake.state.update(state)

    @fake.handle(r"^emit (\d+)$", regex=True)
    def emit(ctx: HandlerContext) -> None:
        assert ctx.match is not None
        ctx.output_many(range(int(ctx.match.group(1))))

    @fake.handle("echo-params")
    def echo(ctx: HandlerContext) -> None:
        for name in sorted(ctx.parameters):
            ctx.output({"Name": name, "Value": ctx.parameters[name]})

    @fake.handle("echo-script")
    def echo_script(ctx: HandlerContext) -> None:
        ctx.output(ctx.script)

    @fake.handle("slow")
    def slow(ctx: HandlerContext) -> None:
        ctx.output("first")
        try:
            ctx.sleep(30)
        finally:
            if ctx.stopped:
                ctx.guest.state["stopped"].set()

    @fake.handle("die")
    def die(ctx: HandlerContext) -> None:
        ctx.output("partial")
        time.sleep(0.1)
        ctx.guest.kill_connections()

    @fake.handle("big")
    def big(ctx: HandlerContext) -> None:
        for i in range(40):
            ctx.output(f"{i:02d}" + "Ω" * 150_000)  # 300 KB of UTF-8 each, 12 MB in all

    @fake.handle("read-host")
    def read_host(ctx: HandlerContext) -> None:
        ctx.output(ctx.read_host())

    @fake.handle("read-host-prompt")
    def read_host_prompt(ctx: HandlerContext) -> None:
        ctx.output(ctx.read_host("Server name"))

    @fake.handle("read-host-secure")
    def read_host_secure(ctx: HandlerContext) -> None:
        secret = ctx.read_host(as_secure_string=True)
        ctx.output(secret.decrypt() == "typed s3cret")

    @fake.handle("credential")
    def credential(ctx: HandlerContext) -> None:
        cred = ctx.prompt_for_credential("Login", "Enter", "admin")
        ctx.output(cred.UserName)
        ctx.output(cred.Password.decrypt() == "pa55-wörd")

    @fake.handle("host-lines")
    def host_lines(ctx: HandlerContext) -> None:
        # PowerShell < 5 (and $Host.UI.WriteLine) reach the client as host calls
        ctx.host_call("WriteLine2", "legacy line ✓")
        ctx.host_call("Write1", "no newline")
        ctx.host_call("WriteWarningLine", "host warning")
        ctx.output("done")

    @fake.handle("host-twice")
    def host_twice(ctx: HandlerContext) -> None:
        # Windows PowerShell 5.1 style: the same Write-Host line as a host call and a record
        ctx.host_call("WriteLine2", "dup")
        ctx.host_write("dup")
        ctx.host_write("again")  # record first, then the call
        ctx.host_call("WriteLine2", "again")
        ctx.host_write("solo")
        ctx.host_write("solo")  # a real repeat: two records, no calls
        ctx.host_call("WriteLine2", "call only")

    @fake.handle("choice")
    def choice(ctx: HandlerContext) -> None:
        ctx.output(ctx.prompt_for_choice("Restart?", "Really?", ["&Yes", "&No"], 0))

    yield fake
    fake.close()


@pytest.fixture
def session(guest: FakeGuest) -> Iterator[Session]:
    with guest.connect() as sess:
        yield sess


# ------------------------------------------------------------------------------------------
# open, run, close
# ------------------------------------------------------------------------------------------


def test_pool_open_run_and_close(guest: FakeGuest) -> None:
    sess = guest.connect(name="vm01")
    assert sess.name == "vm01"
    assert "socket pair" in sess.description
    assert guest.connections == 1
    result = sess.run("emit 3")
    assert result.output == [0, 1, 2]
    assert result.state == "Completed"
    assert not result.had_errors
    assert result.duration > 0
    sess.close()
    assert sess.closed and not sess.broken
    deadline = time.monotonic() + 5
    while guest.connections and time.monotonic() < deadline:
        time.sleep(0.02)
    assert guest.connections == 0
    sess.close()  # idempotent
    with pytest.raises(SessionBrokenError, match="closed"):
        sess.run("emit 1")


def test_many_pipelines_in_sequence(session: Session, guest: FakeGuest) -> None:
    for i in range(60):
        assert session.run(f"emit {i % 5}").output == list(range(i % 5))
    assert len(guest.history) == 60


def _direct_to(guest: FakeGuest, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """``connect(..., via="direct")`` reaches ``guest`` instead of a VM over hvsocket: connect()'s
    own logic (record/replay wrapping, waiting for a reboot) runs unchanged. Returns the VM names
    it was asked for."""
    asked: list[str] = []

    def connect_vm(vm: str, **kwargs: Any) -> Any:
        asked.append(vm)
        return guest.transport()

    monkeypatch.setattr("hvmagic.transports.hvsocket.connect_vm", connect_vm)
    return asked


DIRECT = {"via": "direct", "username": "admin", "password": "pw"}


def test_connect_argument_errors() -> None:
    with pytest.raises(ValueError, match="via must be one of"):
        connect("vm01", via="carrier-pigeon")
    with pytest.raises(ValueError, match="not both"):
        connect("vm01", record="a.json", replay="b.json")
    with pytest.raises(ValueError, match="needs replay=FILE"):
        connect("vm01", via="replay")


def test_connect_records_and_replays(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, guest: FakeGuest
) -> None:
    from hvmagic.recording import RecordingSession, ReplaySession

    monkeypatch.delenv("HVMAGIC_RECORD", raising=False)
    monkeypatch.delenv("HVMAGIC_REPLAY", raising=False)
    asked = _direct_to(guest, monkeypatch)
    path = tmp_path / "demo.hvrec.json"
    with connect("vm01", record=path, **DIRECT) as live:
        assert isinstance(live, RecordingSession)
        recorded = live.run("echo-params", {"Limit": 2}).output
    with connect("vm01", replay=path) as replayed:
        assert isinstance(replayed, ReplaySession)
        again = replayed.run("echo-params", {"Limit": 2}).output
    assert [(o["Name"], o["Value"]) for o in again] == [
        (o["Name"], o["Value"]) for o in recorded
    ] == [("Limit", 2)]
    assert asked == ["vm01"]  # the replay reached no guest
    # the environment-variable mode: one file per target in a directory
    monkeypatch.setenv("HVMAGIC_RECORD", str(tmp_path / "rec"))
    (tmp_path / "rec").mkdir()
    with connect("vm01", **DIRECT) as live:
        assert live.run("emit 1").output == [0]
    with connect("vm01", **DIRECT) as live:  # a reconnect (after a reboot, say) gets its own file
        assert live.run("emit 2").output == [0, 1]
    assert (tmp_path / "rec" / "vm01.hvrec.json").is_file()
    assert (tmp_path / "rec" / "vm01-2.hvrec.json").is_file()
    monkeypatch.delenv("HVMAGIC_RECORD")
    monkeypatch.setenv("HVMAGIC_REPLAY", str(tmp_path / "rec"))
    with connect("vm01", **DIRECT) as replayed:
        assert isinstance(replayed, ReplaySession)
        assert replayed.run("emit 1").output == [0]
    with connect("vm01", **DIRECT) as replayed:  # served in the order the sessions were recorded
        assert replayed.run("emit 2").output == [0, 1]
    assert asked == ["vm01"] * 3


def test_connect_auto_names_the_alternatives(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.platform", "linux")
    with pytest.raises(UnsupportedPlatformError, match=r"via='process'.*'sim'"):
        connect("vm01")


# ------------------------------------------------------------------------------------------
# streams, errors
# ------------------------------------------------------------------------------------------


def test_output_spanning_many_fragments(session: Session) -> None:
    result = session.run("big")
    assert len(result.output) == 40
    assert sum(len(o.encode()) for o in result.output) > 10 * 1024 * 1024
    assert result.output[7] == "07" + "Ω" * 150_000


# ------------------------------------------------------------------------------------------
# stop, timeout, interrupt, concurrency
# ------------------------------------------------------------------------------------------


def _run_in_thread(sess: Session, script: str, **kwargs: Any) -> tuple[threading.Thread,
                                                                        dict[str, Any]]:
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["result"] = sess.run(script, **kwargs)
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=target)
    thread.start()
    return thread, box


def test_stop_mid_stream_leaves_the_session_usable(session: Session, guest: FakeGuest) -> None:
    first = threading.Event()
    thread, box = _run_in_thread(session, "slow", on_event=lambda s, r: first.set())
    assert first.wait(10)
    session.stop()
    thread.join(10)
    result = box["result"]
    assert result.state == "Stopped"
    assert result.output == ["first"]
    assert guest.state["stopped"].wait(5)
    assert session.run("emit 1").output == [0]


def test_second_concurrent_run_raises_busy(session: Session) -> None:
    first = threading.Event()
    thread, box = _run_in_thread(session, "slow", on_event=lambda s, r: first.set())
    assert first.wait(10)
    with pytest.raises(SessionBusyError, match="already running"):
        session.run("emit 1")
    session.stop()
    thread.join(10)
    assert box["result"].state == "Stopped"
    assert session.run("emit 1").output == [0]


def test_close_from_another_thread_stops_the_running_pipeline_first(guest: FakeGuest) -> None:
    sess = guest.connect()
    first = threading.Event()
    thread, box = _run_in_thread(sess, "slow", on_event=lambda s, r: first.set())
    assert first.wait(10)
    sess.close()
    thread.join(10)
    assert box["result"].state == "Stopped"
    assert sess.closed and not sess.broken
    assert guest.state["stopped"].wait(5)


def test_close_from_inside_on_event_does_not_hang(session: Session) -> None:
    started = time.monotonic()
    with pytest.raises(SessionBrokenError):
        session.run("slow", on_event=lambda s, r: session.close())
    assert time.monotonic() - started < 10
    assert session.closed


def test_timeout_stops_the_pipeline_with_the_partial_result(session: Session,
                                                            guest: FakeGuest) -> None:
    started = time.monotonic()
    with pytest.raises(PipelineTimeoutError, match=r"longer than 0\.5 s") as info:
        session.run("slow", timeout=0.5)
    assert time.monotonic() - started < 10
    assert info.value.result.output == ["first"]
    assert info.value.result.state == "Stopped"
    assert guest.state["stopped"].wait(5)
    assert not session.broken
    assert session.run("emit 2").output == [0, 1]


class _SlowCommandAck:
    """A transport that holds each ``CommandAck`` back a little and records what was sent, so
    a stop is requested before the guest acknowledged the Command — every time."""

    def __init__(self, inner: Any, delay: float) -> None:
        self.inner = inner
        self.delay = delay
        self.description = inner.description
        self.sent = PacketReader()
        self.sent_packets: list[Any] = []

    def send(self, data: bytes) -> None:
        self.sent.receive_data(data)
        while (packet := self.sent.next_packet()) is not None:
            self.sent_packets.append(packet)
        self.inner.send(data)

    def recv(self) -> bytes:
        data: bytes = self.inner.recv()
        if b"<CommandAck" in data:
            time.sleep(self.delay)
        return data

    def close(self) -> None:
        self.inner.close()


def test_timeout_before_command_ack_stops_quickly_and_keeps_the_session(
    guest: FakeGuest,
) -> None:
    transport = _SlowCommandAck(guest.transport(), delay=0.3)
    sess = open_session(transport, name="early-stop", timeout=10)
    try:
        started = time.monotonic()
        with pytest.raises(PipelineTimeoutError) as info:
            sess.run("slow", timeout=0.001)
        assert time.monotonic() - started < 5
        assert info.value.result.state == "Stopped"
        assert info.value.result.output == []
        assert not sess.broken
        # the guest never got the pipeline, so nothing was signalled: Command, then Close
        pid = next(p.guid for p in transport.sent_packets if p.kind is PacketKind.COMMAND)
        assert [p.kind for p in transport.sent_packets if p.guid == pid] == [
            PacketKind.COMMAND, PacketKind.CLOSE]
        assert not guest.state["stopped"].is_set()
        transport.delay = 0
        assert sess.run("emit 3").output == [0, 1, 2]
    finally:
        sess.close()
    assert not sess.broken


def test_keyboard_interrupt_stops_the_pipeline_and_reraises(session: Session,
                                                            guest: FakeGuest) -> None:
    def interrupt(stream: str, record: Any) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        session.run("slow", on_event=interrupt)
    assert guest.state["stopped"].wait(5)
    assert not session.broken
    assert session.run("emit 3").output == [0, 1, 2]


def test_real_ctrl_c_while_waiting_stops_the_pipeline(session: Session,
                                                      guest: FakeGuest) -> None:
    import _thread

    first = threading.Event()

    def interrupt_later() -> None:
        if first.wait(10):
            time.sleep(0.2)  # the run is now blocked waiting for the guest
            _thread.interrupt_main()

    threading.Thread(target=interrupt_later, daemon=True).start()
    with pytest.raises(KeyboardInterrupt):
        session.run("slow", on_event=lambda s, r: first.set())
    assert guest.state["stopped"].wait(5)
    assert not session.broken
    assert session.run("emit 2").output == [0, 1]


def test_interrupt_during_a_fast_stream_is_not_raised_again(guest: FakeGuest) -> None:
    @guest.handle("flood")
    def flood(ctx: HandlerContext) -> None:
        for i in range(20_000):
            ctx.output(i)

    calls = []

    def interrupt(stream: str, record: Any) -> None:
        calls.append(record)
        raise KeyboardInterrupt

    with guest.connect() as sess:
        with pytest.raises(KeyboardInterrupt):
            sess.run("flood", on_event=interrupt)
        assert calls == [0]  # called once; records that arrive while stopping are not shown
        assert not sess.broken
        assert sess.run("emit 2").output == [0, 1]


@pytest.mark.parametrize("nth", [1, 7, 12])
def test_interrupt_while_handling_received_bytes_loses_nothing(guest: FakeGuest,
                                                                nth: int) -> None:
    @guest.handle("bulk")
    def bulk(ctx: HandlerContext) -> None:
        for i in range(400):
            ctx.check_stopped()
            ctx.output({"Name": f"n{i}", "Text": "x" * 20_000})

    with guest.connect() as sess:
        reader = sess._client._reader
        original = reader.receive_data
        calls = {"n": 0}

        def interrupted(data: bytes) -> None:
            # Ctrl-C on the Nth received chunk, before the parser got it
            calls["n"] += 1
            if calls["n"] == nth:
                raise KeyboardInterrupt
            original(data)

        reader.receive_data = interrupted  # type: ignore[method-assign]
        with pytest.raises(KeyboardInterrupt):
            sess.run("bulk")
        assert calls["n"] > nth  # the chunk and the rest of its batch were handled afterwards
        assert not sess.broken
        assert sess.run("emit 5").output == [0, 1, 2, 3, 4]
        out = sess.run("bulk").output
        assert [o["Name"] for o in out] == [f"n{i}" for i in range(400)]
        assert not sess.broken


def test_interrupt_during_a_send_does_not_lose_the_bytes(guest: FakeGuest) -> None:
    import _thread

    transport = _SlowCommandAck(guest.transport(), delay=0)
    sess = open_session(transport, name="send-interrupt", timeout=10)
    inner_send = transport.send
    fired = {"done": False}

    def send(data: bytes) -> None:
        if b"<Command " in data and not fired["done"]:
            fired["done"] = True
            _thread.interrupt_main()  # Ctrl-C while the Command is being written
        inner_send(data)

    transport.send = send  # type: ignore[method-assign]
    try:
        started = time.monotonic()
        with pytest.raises(KeyboardInterrupt):
            sess.run("slow")
        assert time.monotonic() - started < 5
        assert fired["done"]
        assert not sess.broken
        pid = next(p.guid for p in transport.sent_packets if p.kind is PacketKind.COMMAND)
        kinds = [p.kind for p in transport.sent_packets if p.guid == pid]
        assert kinds[0] is PacketKind.COMMAND and kinds[-1] is PacketKind.CLOSE
        assert sess.run("emit 2").output == [0, 1]
    finally:
        sess.close()


def test_on_event_exception_propagates_and_session_survives(session: Session) -> None:
    def explode(stream: str, record: Any) -> None:
        raise LookupError("display failed")

    with pytest.raises(LookupError, match="display failed"):
        session.run("slow", on_event=explode)
    assert session.run("emit 1").output == [0]


# ------------------------------------------------------------------------------------------
# broken peers
# ------------------------------------------------------------------------------------------


def test_server_dying_mid_pipeline_breaks_the_session(session: Session,
                                                      guest: FakeGuest) -> None:
    seen: list[Any] = []
    with pytest.raises(SessionBrokenError, match="broken") as info:
        session.run("die", on_event=lambda s, r: seen.append(r))
    assert isinstance(info.value, TransportError)
    assert seen == ["partial"]
    assert session.broken
    with pytest.raises(SessionBrokenError, match="connect again"):
        session.run("emit 1")
    session.close()
    with guest.connect() as fresh:  # a new connection works
        assert fresh.run("emit 2").output == [0, 1]


def _raw_peer(script: Callable[[socket.socket, PacketReader], None]) -> Session:
    client, server = socket.socketpair()

    def serve() -> None:
        reader = PacketReader()
        try:
            script(server, reader)
        finally:
            server.close()

    threading.Thread(target=serve, daemon=True).start()
    return open_session(SocketTransport(client, "raw test peer"), name="raw", timeout=5)


def _wait_packet(sock: socket.socket, reader: PacketReader) -> Any:
    while (packet := reader.next_packet()) is None:
        data = sock.recv(65536)
        if not data:
            return None
        reader.receive_data(data)
    return packet


def test_malformed_packet_breaks_the_session() -> None:
    def script(sock: socket.socket, reader: PacketReader) -> None:
        _wait_packet(sock, reader)
        sock.sendall(b"<Data Stream='Default' PSGuid='" + str(NIL_GUID).encode()
                     + b"'>not base64!</Data>\n")
        time.sleep(0.5)

    with pytest.raises(SessionBrokenError, match="base64") as info:
        _raw_peer(script)
    assert isinstance(info.value.__cause__, ProtocolError)


def test_error_line_from_the_server_breaks_the_session() -> None:
    def script(sock: socket.socket, reader: PacketReader) -> None:
        _wait_packet(sock, reader)
        sock.sendall(b"__HyperVSocketError__: The virtual machine is shutting down.\n")
        time.sleep(0.5)

    with pytest.raises(SessionBrokenError, match="shutting down"):
        _raw_peer(script)


def test_peer_closing_during_open_breaks_the_session() -> None:
    def script(sock: socket.socket, reader: PacketReader) -> None:
        _wait_packet(sock, reader)

    with pytest.raises(SessionBrokenError, match="closed the connection"):
        _raw_peer(script)


# ------------------------------------------------------------------------------------------
# host calls
# ------------------------------------------------------------------------------------------


def test_host_write_calls_are_kept_as_host_text(guest: FakeGuest) -> None:
    ui = ScriptedHostUI()
    seen: list[tuple[str, Any]] = []
    with guest.connect(host_ui=ui) as sess:
        result = sess.run("host-lines", on_event=lambda s, r: seen.append((s, r)))
    assert result.host == ["legacy line ✓", "no newline"]
    # a WriteWarningLine with no record before it ($Host.UI.WriteWarningLine) is a warning
    assert [w.message for w in result.warnings] == ["host warning"]
    assert result.output == ["done"]
    assert seen == [("host", "legacy line ✓"), ("host", "no newline"),
                    ("warning", result.warnings[0]), ("output", "done")]
    assert ui.written == ["legacy line ✓", "no newline"]


def test_scripted_host_answers_prompt_fields_and_secure_lines(guest: FakeGuest) -> None:
    ui = ScriptedHostUI(fields={"Server name": "dc01"}, lines=[SecureString("typed s3cret")])
    with guest.connect(host_ui=ui) as sess:
        assert sess.run("read-host-prompt").output == ["dc01"]
        assert sess.run("read-host-secure").output == [True]
    # Read-Host 'Server name' reaches the host as a one-field Prompt; the UI sees a Read-Host
    assert ui.asked == [("ReadLine", "Server name"), ("ReadLineAsSecureString", "")]


def test_default_host_refuses_prompts_and_credentials(session: Session) -> None:
    for script in ("read-host-prompt", "credential", "read-host-secure"):
        with pytest.raises(RemoteError, match="non-interactive"):
            session.run(script)
    assert session.run("emit 1").output == [0]


def test_write_host_sent_twice_is_reported_once(session: Session) -> None:
    seen: list[Any] = []
    result = session.run("host-twice", on_event=lambda s, r: seen.append((s, r)))
    assert result.host == ["dup", "again", "solo", "solo", "call only"]
    assert [r for s, r in seen if s == "host"] == result.host
    assert len(result.information) == 4  # every PSHOST record is still kept


def test_default_host_refuses_read_host_clearly(session: Session) -> None:
    with pytest.raises(RemoteError, match="non-interactive"):
        session.run("read-host")
    assert session.run("emit 1").output == [0]


def test_scripted_host_answers_read_host_choice_and_credential(guest: FakeGuest) -> None:
    ui = ScriptedHostUI(
        lines=["typed 日本 🙂"],
        choices=["&No"],
        credentials=[PSCredential("CORP\\admin", "pa55-wörd")],
    )
    with guest.connect(host_ui=ui) as sess:
        assert sess.run("read-host").output == ["typed 日本 🙂"]
        assert sess.run("choice").output == [1]
        assert sess.run("credential").output == ["CORP\\admin", True]
    assert [kind for kind, _ in ui.asked] == ["ReadLine", "PromptForChoice", "PromptForCredential"]


# ------------------------------------------------------------------------------------------
# parameters through FakeGuest
# ------------------------------------------------------------------------------------------


def test_unicode_both_ways(session: Session, guest: FakeGuest) -> None:
    params = {f"p{i}": text for i, text in enumerate(UNICODE_SAMPLES)}
    result = session.run("echo-params", params)
    assert {o["Name"]: o["Value"] for o in result.output} == params
    script = "echo-script # " + " | ".join(UNICODE_SAMPLES)
    assert session.run(script).output == [script]
    assert guest.history[-1] == script


def test_parameter_names_are_checked(session: Session) -> None:
    with pytest.raises(EncodeError, match="variable name"):
        session.run("echo-params", {"env:PATH": "x"})
    with pytest.raises(EncodeError, match="variable name"):
        session.run("echo-params", {"a b": 1})
    with pytest.raises(EncodeError, match="reserved"):
        session.run("echo-params", {"__HvMagic_script": "x"})
    with pytest.raises(EncodeError, match="variable name"):
        session.run("echo-params", {"1st": 1})
    assert session.run("echo-params", {"größe": 3}).output[0]["Value"] == 3
    with pytest.raises(EncodeError, match="cannot send"):
        session.run("echo-params", {"x": object()})
    assert session.run("emit 1").output == [0]


# ------------------------------------------------------------------------------------------
# the wrapper and every parameter type, against a bare psrpcore server
# ------------------------------------------------------------------------------------------


class EchoPeer:
    """psrpcore's server over a socket pair; each pipeline writes back what it received."""

    def __init__(self) -> None:
        self.client_sock, self.server_sock = socket.socketpair()
        self.pool = psrpcore.ServerRunspacePool()
        self.commands: list[Any] = []
        self.decrypted: list[str] = []
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def send(self, lines: list[bytes]) -> None:
        while (payload := self.pool.data_to_send(32 << 10)) is not None:
            lines.append(data_packet(payload.data, payload.pipeline_id or NIL_GUID))
        if lines:
            self.server_sock.sendall(b"".join(lines))

    def serve(self) -> None:
        reader = PacketReader()
        pipelines: dict[uuid.UUID, psrpcore.ServerPipeline] = {}
        try:
            while data := self.server_sock.recv(65536):
                reader.receive_data(data)
                while (packet := reader.next_packet()) is not None:
                    lines: list[bytes] = []
                    guid = packet.guid
                    if packet.kind is PacketKind.COMMAND:
                        pipelines[guid] = psrpcore.ServerPipeline(self.pool, guid)
                        lines.append(control_packet(PacketKind.COMMAND_ACK, guid))
                    elif packet.kind is PacketKind.DATA:
                        self.pool.receive_data(psrpcore.PSRPPayload(
                            packet.data, psrpcore.StreamType.default,
                            None if guid == NIL_GUID else guid))
                        while (event := self.pool.next_event()) is not None:
                            if isinstance(event, psrpcore.CreatePipelineEvent):
                                self.run(pipelines[event.pipeline_id], event.pipeline)
                        self.send(lines)
                        lines = [control_packet(PacketKind.DATA_ACK, guid)]
                    elif packet.kind is PacketKind.CLOSE:
                        pipelines.pop(guid, None)
                        if guid in self.pool.pipeline_table:
                            self.pool.pipeline_table[guid].close()
                        lines.append(control_packet(PacketKind.CLOSE_ACK, guid))
                    self.send(lines)
        except OSError:
            return

    def run(self, pipeline: psrpcore.ServerPipeline, metadata: Any) -> None:
        self.commands.append(metadata.commands)
        pipeline.start()
        command = metadata.commands[0]
        values = dict(command.parameters).get("__hvmagic_parameters") or {}
        for name in sorted(values):
            value = values[name]
            if isinstance(value, psrpcore.types.PSSecureString):
                self.decrypted.append(value.decrypt())
                value = "<secure>"
            elif isinstance(value, psrpcore.types.PSCredential):
                self.decrypted.append(f"{value.UserName}:{value.Password.decrypt()}")
                value = "<credential>"
            pipeline.write_output(value)
        pipeline.complete()


@pytest.fixture
def echo() -> Iterator[tuple[EchoPeer, Session]]:
    peer = EchoPeer()
    sess = open_session(SocketTransport(peer.client_sock, "echo peer"), name="echo", timeout=10)
    yield peer, sess
    sess.close()
    peer.server_sock.close()


HOSTILE = [
    "'; Remove-Item C:\\ -Recurse -Force; '",
    '"; $(Stop-Computer) "',
    "`$(Get-Process)`n$env:PATH",
    "}; Invoke-Expression 'evil' ; {",
    "@'\nhere-string\n'@ | iex",
    "#requires -RunAsAdministrator\n<# comment #>",
]


def test_wrapper_is_fixed_dot_sourced_and_values_are_only_parameters(echo: Any) -> None:
    peer, sess = echo
    script = "Get-ChildItem $Path | Where-Object Name -Like $Pattern"
    variables = {f"v{i}": text for i, text in enumerate(HOSTILE)}
    result = sess.run(script, variables)
    assert result.output == [variables[k] for k in sorted(variables)]
    (commands,) = peer.commands
    (command,) = commands
    assert command.command_text == WRAPPER_SCRIPT  # the same text every time
    assert command.is_script is True
    assert command.use_local_scope is False  # dot-sourced into the runspace's scope
    parameters = dict(command.parameters)
    assert set(parameters) == {"__hvmagic_script", "__hvmagic_parameters"}
    assert parameters["__hvmagic_script"] == script
    assert dict(parameters["__hvmagic_parameters"]) == variables
    for text in HOSTILE:
        assert text not in command.command_text


def test_hostile_script_text_is_only_a_parameter(echo: Any) -> None:
    peer, sess = echo
    for text in HOSTILE:
        sess.run(text)
    for commands, text in zip(peer.commands, HOSTILE, strict=True):
        assert commands[0].command_text == WRAPPER_SCRIPT
        assert dict(commands[0].parameters)["__hvmagic_script"] == text


def test_result_repr_and_frame(session: Session) -> None:
    result = session.run("emit 3")
    assert repr(result).startswith("<Result Completed in ")
    assert "3 output" in repr(result)
    frame = result.frame()
    assert list(frame.iloc[:, 0]) == [0, 1, 2]


def test_lazy_top_level_connect_is_session_connect() -> None:
    assert hvmagic.connect is connect
    assert PSInvocationState.Stopped.name == "Stopped"  # the state names Result.state uses


def test_connect_direct_wires_credentials_to_connect_vm(monkeypatch: pytest.MonkeyPatch,
                                                        guest: FakeGuest) -> None:
    calls: list[dict[str, Any]] = []

    def fake_connect_vm(vm: str, **kwargs: Any) -> Any:
        calls.append({"vm": vm, **kwargs})
        return guest.transport()

    monkeypatch.setattr("hvmagic.transports.hvsocket.connect_vm", fake_connect_vm)
    monkeypatch.delenv("HVMAGIC_PASSWORD", raising=False)
    credential = PSCredential("CORP\\admin", "pa55-wörd")
    with connect("vm01", via="direct", credential=credential, configuration="JEA") as sess:
        assert sess.name == "vm01"
        assert sess.run("emit 2").output == [0, 1]
    (call,) = calls
    assert call["vm"] == "vm01" and call["username"] == "CORP\\admin"
    assert isinstance(call["password"], SecureString)
    assert call["password"].reveal() == "pa55-wörd"
    assert call["configuration"] == "JEA" and call["allow_legacy"] is False
    monkeypatch.setenv("HVMAGIC_PASSWORD", "from-env")
    with connect("vm02", via="direct", username="admin") as sess:
        assert not sess.broken
    assert calls[1]["password"].reveal() == "from-env"


def test_connect_direct_needs_a_user_name() -> None:
    from hvmagic.errors import CredentialError

    with pytest.raises(CredentialError, match="user name"):
        connect("vm01", via="direct")


def test_connect_wait_reconnects_after_a_simulated_reboot(
    guest: FakeGuest, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hvmagic.connection import LAST_BOOT_SCRIPT, last_boot_time

    _direct_to(guest, monkeypatch)
    guest.boot_time -= datetime.timedelta(hours=1)  # up for a while, so a reboot is later
    guest.reboot_seconds = 0.3
    guest.add_handler(LAST_BOOT_SCRIPT, lambda ctx: ctx.guest.boot_time)
    # Restart-Computer returns before the guest goes down
    guest.add_handler("Restart-Computer -Force", lambda ctx: ctx.guest.schedule_reboot(0.1))
    first = hvmagic.connect("reboot-wait", **DIRECT)
    boot = last_boot_time(first)
    first.run("Restart-Computer -Force")
    first.close()
    started = time.monotonic()
    second = hvmagic.connect("reboot-wait", wait=30, booted_after=boot, **DIRECT)
    assert time.monotonic() - started < 10
    assert guest.boot_count == 2
    assert last_boot_time(second) > boot
    second.close()
    guest.reboot(5)
    with pytest.raises(TransportError, match="rebooting"):
        hvmagic.connect("reboot-wait", **DIRECT)  # no wait: refused at once


def test_wait_never_retries_rejected_credentials() -> None:
    from hvmagic.connection import _retry_while_unreachable

    calls: list[int] = []
    sleeps: list[float] = []

    def rejected() -> Any:
        calls.append(1)
        raise CredentialError("The credential is invalid.")

    with pytest.raises(CredentialError):
        _retry_while_unreachable(rejected, 60, sleep=sleeps.append)
    assert calls == [1] and sleeps == []

    def legacy() -> Any:
        calls.append(3)
        raise LegacyGuestRefusedError("only the legacy handshake")

    with pytest.raises(LegacyGuestRefusedError):
        _retry_while_unreachable(legacy, 600, sleep=sleeps.append)
    assert calls.count(3) == 1 and sleeps == []  # refused at once, not retried for 10 minutes

    def refused() -> Any:
        calls.append(2)
        raise TransportError("connection refused")

    with pytest.raises(TransportError):
        _retry_while_unreachable(refused, 0.01, sleep=sleeps.append)
    assert calls.count(2) >= 1 and all(s <= 0.5 for s in sleeps)


class _HeldCloseAck:
    """A transport that holds the guest's first ``hold`` ``CloseAck(pid)`` lines back: until
    the client sends its second packet starting with ``release_on`` (the next run's), or for
    good (``None``). One the guest only sends after that is let through."""

    def __init__(self, inner: Any, release_on: bytes | None, hold: int = 1 << 30) -> None:
        self.inner = inner
        self.description = inner.description
        self.release_on = release_on
        self.hold = hold
        self.triggers = 0
        self.held: list[bytes] = []
        self.ready: list[bytes] = []
        self.rest = b""

    def send(self, data: bytes) -> None:
        if self.release_on is not None and self.release_on in data:
            self.triggers += 1
        if self.triggers >= 2:
            self.hold = 0
            self.ready += self.held
            self.held.clear()
        self.inner.send(data)

    def recv(self) -> bytes:
        while True:
            data: bytes = self.inner.recv()
            if not data:
                return data
            data, cut = self.rest + data, (self.rest + data).rfind(b"\n") + 1
            self.rest = data[cut:]
            kept = []
            for line in data[:cut].splitlines(keepends=True):
                if line.startswith(b"<CloseAck") and str(NIL_GUID).encode() not in line and (
                    self.hold > 0
                ):
                    self.hold -= 1
                    self.held.append(line)
                else:
                    kept.append(line)
            out = b"".join(self.ready + kept)
            self.ready.clear()
            if out:
                return out

    def close(self) -> None:
        self.inner.close()


def test_a_run_returns_without_waiting_for_its_close_ack(guest: FakeGuest) -> None:
    # PowerShell's client waits for CloseAck(pid) before reporting the final state; hvmagic
    # returns on the state and collects the CloseAck during the next run: one round trip less.
    # The first CloseAck comes when the next run sends its Command, or (as a real pwsh -s may
    # answer lines out of order) only after that run's own Close.
    for release_on in (b"<Command ", b"<Close "):
        transport = _HeldCloseAck(guest.transport(), release_on=release_on, hold=1)
        sess = open_session(transport, name="close-ack", timeout=10)
        try:
            started = time.monotonic()
            assert sess.run("emit 2").output == [0, 1]  # its CloseAck is held back
            assert sess.run("emit 3").output == [0, 1, 2]  # releases the first CloseAck
            assert sess.run("emit 1").output == [0]
            assert time.monotonic() - started < 5
            assert not sess.broken
        finally:
            sess.close()
        assert not sess.broken  # the pool closed cleanly once every CloseAck was in


def test_a_close_ack_that_never_comes_breaks_the_session_after_the_next_result(
    guest: FakeGuest, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("hvmagic.session.CLOSE_TIMEOUT", 0.5)
    transport = _HeldCloseAck(guest.transport(), release_on=None)
    sess = open_session(transport, name="no-close-ack", timeout=10)
    try:
        assert sess.run("emit 1").output == [0]
        assert sess.run("emit 2").output == [0, 1]  # complete: returned, nothing lost
        assert sess.broken
        with pytest.raises(SessionBrokenError, match="did not release a pipeline"):
            sess.run("emit 1")
    finally:
        sess.close()
