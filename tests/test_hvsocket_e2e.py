"""End to end: connect_vm → a fake guest broker → token check → FakeGuest → Session.run.

Only the AF_HYPERV socket is replaced (by socket pairs). The broker here is not a script: it
parses the V2 conversation, checks the password against its accounts and issues a random
base64 token; the guest "PowerShell process" validates that token the way PowerShell's
``RemoteSessionHyperVSocketServer.ValidateToken`` does, then hands the socket's bytes to
:class:`hvmagic.testing.FakeGuest`, a PSRP server on psrpcore. The session layer on top is the
one ``hvmagic.connect(via="direct")`` uses.

A second end-to-end test drives the same path with psrpcore's own client (no hvmagic session
layer), so the PowerShell Direct path is proven even where ``hvmagic.session`` is absent.
Tests skip (with the reason) when ``hvmagic.testing.FakeGuest`` / ``hvmagic.session`` cannot
be imported.
"""

from __future__ import annotations

import base64
import contextlib
import os
import socket
import threading
from collections.abc import Iterator
from typing import Any

import psrpcore
import pytest
from psrpcore.types import PSInvocationState, RunspacePoolState

from hvmagic.errors import CredentialError
from hvmagic.psrp.outofproc import NIL_GUID, PacketKind, PacketReader, control_packet, data_packet
from hvmagic.transports.base import Transport
from hvmagic.transports.hvsocket import BROKER_SERVICE_ID, SERVER_SERVICE_ID, connect_vm
from hvmagic.transports.vmresolve import VMInfo

testing = pytest.importorskip(
    "hvmagic.testing", reason="hvmagic.testing.FakeGuest (the simulated guest) is not available"
)

VM = VMInfo(id="6f9e1c2a-52d4-4d3b-9a1e-0c8b7d6e5f40", name="vm01", state="Running")


def _text(data: bytes) -> str:
    return data.decode("utf-16-le")


class FakeVmicvmsession:
    """The guest side of PowerShell Direct: broker (service 1) and token-checking server (2)."""

    def __init__(self, guest: Any, accounts: dict[tuple[str, str], str]) -> None:
        self.guest = guest
        self.accounts = accounts
        self.pending_tokens: list[str] = []
        self.broker_log: list[str] = []  # what the broker saw (never the password itself)
        self.threads: list[threading.Thread] = []
        self.relays: list[Transport] = []

    def __call__(self, vm_id: str, service_id: str, timeout: float) -> socket.socket:
        assert vm_id == VM.id
        client, guest_end = socket.socketpair()
        client.settimeout(timeout)
        guest_end.settimeout(10)
        target = self._broker if service_id == BROKER_SERVICE_ID else self._server
        assert service_id in (BROKER_SERVICE_ID, SERVER_SERVICE_ID)
        thread = threading.Thread(target=target, args=(guest_end,), daemon=True)
        self.threads.append(thread)
        thread.start()
        return client

    # ---- broker (vmicvmsession), V2 ----------------------------------------------------------

    def _broker(self, sock: socket.socket) -> None:
        with sock:
            assert sock.recv(1024) == b"VERSION"
            sock.sendall(b"VERSION_2")
            assert sock.recv(1024).startswith(b"VERSION_")
            sock.sendall(b"PASS")
            domain = _text(sock.recv(1024))
            sock.sendall(b"PASS")
            user = _text(sock.recv(1024))
            sock.sendall(b"PASS")
            marker = sock.recv(1024)
            if marker == b"NONEMPTYPW":
                sock.sendall(b"PASS")
                password = _text(sock.recv(1024))
            else:
                assert marker == b"EMPTYPW"
                password = ""
            self.broker_log.append(f"{domain}\\{user}")
            if self.accounts.get((domain, user)) != password:
                sock.sendall(b"FAIL")
                assert sock.recv(1024) == b"FAIL"
                return
            sock.sendall(b"CONF")
            marker = sock.recv(1024)
            if marker == b"NONEMPTYCF":
                sock.sendall(b"PASS")
                self.broker_log.append("configuration " + _text(sock.recv(1024)))
            else:
                assert marker == b"EMPTYCF"
            # 264 random bits as base64: every class of base64 character can appear
            token = base64.b64encode(os.urandom(33)).decode()
            self.pending_tokens.append(token)
            sock.sendall(f"TOKEN {token}".encode())
            assert sock.recv(1024) == b"PASS"

    # ---- the PowerShell process (-V2SocketServerMode -Token …) ----------------------------

    def _server(self, sock: socket.socket) -> None:
        if sock.recv(1024) != b"VERSION":  # ValidateToken demands exactly 7 characters
            sock.close()
            return
        sock.sendall(b"VERSION_2")
        if not sock.recv(1024).startswith(b"VERSION_"):
            sock.close()
            return
        sock.sendall(b"PASS")
        presented = sock.recv(110).decode("utf-8").rstrip("\0")
        if not presented.startswith("TOKEN ") or presented[6:] not in self.pending_tokens:
            sock.sendall(b"FAIL")
            sock.close()
            return
        self.pending_tokens.remove(presented[6:])
        sock.sendall(b"PASS")
        sock.settimeout(None)
        self._relay(sock, self.guest.transport())

    def _relay(self, sock: socket.socket, guest: Transport) -> None:
        """Carry the OutOfProc bytes between the client socket and the FakeGuest."""
        self.relays.append(guest)

        def guest_to_client() -> None:
            with contextlib.suppress(OSError):
                while data := guest.recv():
                    sock.sendall(data)
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_WR)

        thread = threading.Thread(target=guest_to_client, daemon=True)
        thread.start()
        with contextlib.suppress(OSError):
            while data := sock.recv(1 << 16):
                guest.send(data)
        guest.close()
        thread.join(5)
        sock.close()


@pytest.fixture
def guest() -> Iterator[Any]:
    fake = testing.FakeGuest()

    @fake.handle("Get-DirectInfo")
    def direct_info(ctx: Any) -> list[dict[str, Any]]:
        ctx.warning("served over PowerShell Direct")
        return [
            {"Name": "vmicvmsession", "Status": "Running", "Port": 1},
            {"Name": "vmicheartbeat", "Status": "Running", "Port": 2},
        ]

    with fake:
        yield fake


def test_connect_vm_to_fakeguest_runs_a_pipeline(guest: Any) -> None:
    session_module = pytest.importorskip(
        "hvmagic.session", reason="hvmagic.session (Session.run) is not available yet"
    )
    host = FakeVmicvmsession(guest, {("CORP", "admin"): "pässwörd+/="})
    transport = connect_vm(
        "vm01",
        username="CORP\\admin",
        password="pässwörd+/=",
        configuration="Microsoft.PowerShell",
        socket_factory=host,
        resolver=lambda vm: VM,
        sleep=lambda seconds: None,
        timeout=10,
    )
    assert transport.description == "PowerShell Direct to vm01"
    with session_module.open_session(transport, name="vm01") as session:
        result = session.run("Get-DirectInfo")
        assert [item["Name"] for item in result.output] == ["vmicvmsession", "vmicheartbeat"]
        assert [item["Port"] for item in result.output] == [1, 2]
        assert [str(w.message) for w in result.warnings] == ["served over PowerShell Direct"]
        assert result.state == "Completed"
    assert host.broker_log == ["CORP\\admin", "configuration Microsoft.PowerShell"]
    assert host.pending_tokens == []  # the one token issued was consumed
    assert guest.history[-1].strip() == "Get-DirectInfo"


def test_wrong_password_never_reaches_the_guest_powershell(guest: Any) -> None:
    host = FakeVmicvmsession(guest, {("localhost", "admin"): "right"})
    with pytest.raises(CredentialError, match=r"^The credential is invalid\.$") as info:
        connect_vm("vm01", username="admin", password="wrong", socket_factory=host,
                   resolver=lambda vm: VM, sleep=lambda seconds: None, timeout=5)
    assert "wrong" not in str(info.value) and "right" not in str(info.value)
    assert host.broker_log == ["localhost\\admin"]
    assert host.pending_tokens == [] and host.relays == []


class _PsrpcoreDriver:
    """A minimal PSRP client on psrpcore + hvmagic's OutOfProc codec (one pipeline at a time)."""

    def __init__(self, transport: Transport) -> None:
        self.transport = transport
        self.reader = PacketReader()
        self.pool = psrpcore.ClientRunspacePool()
        self.controls: list[tuple[PacketKind, Any]] = []
        self.events: list[psrpcore.PSRPEvent] = []

    def _pump(self, done: Any) -> None:
        while not done():
            packet = self.reader.next_packet()
            if packet is None:
                data = self.transport.recv()
                assert data, "the guest closed the connection"
                self.reader.receive_data(data)
                continue
            if packet.kind is PacketKind.DATA:
                pid = None if packet.guid == NIL_GUID else packet.guid
                self.pool.receive_data(
                    psrpcore.PSRPPayload(packet.data, psrpcore.StreamType.default, pid)
                )
                while (event := self.pool.next_event()) is not None:
                    self.events.append(event)
            else:
                self.controls.append((packet.kind, packet.guid))

    def _send_all(self, guid: Any) -> None:
        # One un-acknowledged Data per guid (psdirect-protocol.md §3.3).
        while (payload := self.pool.data_to_send()) is not None:
            before = self.controls.count((PacketKind.DATA_ACK, guid))
            self.transport.send(data_packet(payload.data, guid))
            self._pump(lambda n=before: self.controls.count((PacketKind.DATA_ACK, guid)) > n)

    def _control(self, kind: PacketKind, ack: PacketKind, guid: Any) -> None:
        self.transport.send(control_packet(kind, guid))
        self._pump(lambda: (ack, guid) in self.controls)

    def run(self, script: str) -> list[Any]:
        self.pool.open()
        self._send_all(NIL_GUID)
        self._pump(lambda: self.pool.state == RunspacePoolState.Opened)
        pipeline = psrpcore.ClientPowerShell(self.pool)
        pipeline.add_script(script)
        pipeline.start()
        pid = pipeline.pipeline_id
        self._control(PacketKind.COMMAND, PacketKind.COMMAND_ACK, pid)
        self._send_all(pid)
        self._pump(lambda: pipeline.state
                   in (PSInvocationState.Completed, PSInvocationState.Failed))
        assert pipeline.state == PSInvocationState.Completed
        pipeline.close()
        self._control(PacketKind.CLOSE, PacketKind.CLOSE_ACK, pid)
        self.pool.close()
        self._send_all(NIL_GUID)
        self._control(PacketKind.CLOSE, PacketKind.CLOSE_ACK, NIL_GUID)
        return [event.data for event in self.events
                if isinstance(event, psrpcore.PipelineOutputEvent)]


def test_connect_vm_carries_psrp_to_fakeguest_with_psrpcore_client(guest: Any) -> None:
    host = FakeVmicvmsession(guest, {("localhost", "administrator"): ""})
    transport = connect_vm("vm01", username="administrator", password="", socket_factory=host,
                           resolver=lambda vm: VM, sleep=lambda seconds: None, timeout=10)
    try:
        output = _PsrpcoreDriver(transport).run("Get-DirectInfo")
    finally:
        transport.close()
    assert [item.Name for item in output] == ["vmicvmsession", "vmicheartbeat"]
    assert [item.Status for item in output] == ["Running", "Running"]
    assert host.broker_log == ["localhost\\administrator"]
    assert host.pending_tokens == []
    assert guest.history[-1].strip() == "Get-DirectInfo"
