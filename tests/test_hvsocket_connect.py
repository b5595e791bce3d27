"""connect_vm: VM resolution, socket creation, retries, legacy policy, per-VM serialization.

The AF_HYPERV socket is the only thing not exercised: an injected socket factory hands out one
end of a real socket pair whose other end is a fake broker or a fake guest PowerShell.
"""

from __future__ import annotations

import json
import logging
import socket
import subprocess
import threading
import time
from collections.abc import Sequence
from typing import ClassVar

import pytest

from hvmagic.errors import (
    CredentialError,
    HvMagicError,
    LegacyGuestRefusedError,
    TransportError,
    UnsupportedPlatformError,
    VMNotFoundError,
    VMStateError,
)
from hvmagic.transports import hvsocket
from hvmagic.transports.base import SocketTransport
from hvmagic.transports.hvsocket import (
    BROKER_SERVICE_ID,
    SERVER_SERVICE_ID,
    connect_vm,
    hvsocket_supported,
    hyperv_socket_factory,
)
from hvmagic.transports.vmresolve import (
    LIST_VMS_SCRIPT,
    VMInfo,
    list_vms,
    match_vm,
    parse_vm_list,
    resolve_vm,
)
from tests._hvsocket_peers import ScriptedPeer, u16, v2_broker_responses, v2_client_sends

VM_ID = "6f9e1c2a-52d4-4d3b-9a1e-0c8b7d6e5f40"
VM = VMInfo(id=VM_ID, name="vm01", state="Running", heartbeat="OkApplicationsHealthy")
TOKEN = "Tok3n+/Tok3n+/Tok3n+/Tok3n+/Tok3n+/Tok3n+/aa=="
SERVER_OK = [b"VERSION_2", b"PASS", b"PASS"]
SERVER_TOKEN_FAIL = [b"VERSION_2", b"PASS", b"FAIL"]
LEGACY_PROBE_REPLIES = [b"PASS", b"PASS", b"FAIL"]


def echo(sock: socket.socket, record: list[bytes]) -> None:
    """Stands in for the guest's OutOfProc server once the handshake is done."""
    while True:
        data = sock.recv(65536)
        if not data:
            return
        record.append(data)
        sock.sendall(data)


class FakeHost:
    """A socket factory playing the guest's broker and PowerShell services.

    ``brokers`` and ``servers`` are consumed in order, one per connection to that service; an
    exception instance in either list is raised instead of connecting (nobody listening).
    """

    def __init__(self, brokers: Sequence[object], servers: Sequence[object]) -> None:
        self.brokers = list(brokers)
        self.servers = list(servers)
        self.calls: list[tuple[str, str, float]] = []
        self.broker_peers: list[ScriptedPeer] = []
        self.server_peers: list[ScriptedPeer] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()

    def _before_server_reply(self, index: int, replies: int) -> None:
        # The set-up ends with the token verdict: count it finished before the client can see
        # it (and release its per-VM lock), or the next set-up would look concurrent.
        if index == replies - 1:
            with self._lock:
                self.in_flight -= 1

    def __call__(self, vm_id: str, service_id: str, timeout: float) -> socket.socket:
        with self._lock:
            self.calls.append((vm_id, service_id, timeout))
            is_broker = service_id == BROKER_SERVICE_ID
            item = (self.brokers if is_broker else self.servers).pop(0)
            if isinstance(item, BaseException):
                raise item
            assert isinstance(item, list)
            # A V2 broker conversation starts a set-up that ends with the server's token PASS.
            if is_broker and item and item[0].startswith(b"VERSION_"):
                self.in_flight += 1
                self.max_in_flight = max(self.max_in_flight, self.in_flight)
        client, server = socket.socketpair()
        client.settimeout(timeout)
        if is_broker:
            peer = ScriptedPeer(server, item, name="broker")
            self.broker_peers.append(peer)
        else:
            replies = len(item)
            peer = ScriptedPeer(
                server, item, name="server",
                before_reply=lambda index: self._before_server_reply(index, replies),
            )
            peer.then = lambda sock, peer=peer: echo(sock, peer.received)  # type: ignore[misc]
            self.server_peers.append(peer)
        peer.start()
        return client

    def service_calls(self) -> list[str]:
        return ["broker" if service == BROKER_SERVICE_ID else "server"
                for _, service, _ in self.calls]


def connect(host: FakeHost, sleeps: list[float] | None = None, **kw: object) -> SocketTransport:
    recorded = [] if sleeps is None else sleeps
    options: dict[str, object] = {
        "username": "CORP\\admin",
        "password": "pässword",
        "timeout": 5.0,
        "socket_factory": host,
        "resolver": lambda vm: VM,
        "sleep": recorded.append,
    }
    options.update(kw)
    return connect_vm("vm01", **options)  # type: ignore[arg-type]


def roundtrip(transport: SocketTransport, payload: bytes = b"<Command PSGuid='x' />\n") -> bytes:
    transport.send(payload)
    got = b""
    while len(got) < len(payload):
        chunk = transport.recv()
        assert chunk, "fake server closed early"
        got += chunk
    return got


def test_v2_connect_runs_broker_then_token_then_carries_bytes() -> None:
    host = FakeHost([v2_broker_responses(token=TOKEN, configuration=True)], [SERVER_OK])
    sleeps: list[float] = []
    transport = connect(host, sleeps, configuration="PowerShell.7")
    try:
        assert transport.description == "PowerShell Direct to vm01"
        assert roundtrip(transport) == b"<Command PSGuid='x' />\n"
        assert transport._sock.gettimeout() is None  # the session layer owns timing now
    finally:
        transport.close()
    assert host.calls == [(VM_ID, BROKER_SERVICE_ID, 5.0), (VM_ID, SERVER_SERVICE_ID, 5.0)]
    assert host.broker_peers[0].finish() == v2_client_sends(
        "CORP", "admin", "pässword", "PowerShell.7"
    )
    server_received = host.server_peers[0].finish()
    assert server_received[:3] == [b"VERSION", b"VERSION_2", b"TOKEN " + TOKEN.encode()]
    assert sleeps == [0.5]


def test_second_connection_is_retried_with_backoff() -> None:
    refused = [ConnectionRefusedError(111, "refused") for _ in range(3)]
    host = FakeHost([v2_broker_responses(token=TOKEN)], [*refused, SERVER_OK])
    sleeps: list[float] = []
    transport = connect(host, sleeps)
    transport.close()
    assert host.service_calls() == ["broker", "server", "server", "server", "server"]
    assert sleeps == [0.5, 0.5, 0.75, 1.125]


def test_second_connection_gives_up_after_ten_attempts() -> None:
    refused = [TimeoutError("connect timed out") for _ in range(10)]
    host = FakeHost([v2_broker_responses(token=TOKEN)], refused)
    sleeps: list[float] = []
    with pytest.raises(TransportError, match="did not accept a connection after 10 attempts"):
        connect(host, sleeps)
    assert host.service_calls() == ["broker"] + ["server"] * 10
    assert sleeps == [0.5, 0.5, 0.75, 1.125, 1.6875, 2.53125, 3.0, 3.0, 3.0, 3.0]


def test_token_fail_is_retried_once_with_a_fresh_broker_conversation() -> None:
    host = FakeHost(
        [v2_broker_responses(token="first+/="), v2_broker_responses(token=TOKEN)],
        [SERVER_TOKEN_FAIL, SERVER_OK],
    )
    transport = connect(host)
    assert roundtrip(transport, b"x\n") == b"x\n"
    transport.close()
    assert host.service_calls() == ["broker", "server", "broker", "server"]
    assert host.server_peers[0].finish()[-1] == b"TOKEN first+/="
    assert host.server_peers[1].finish()[2] == b"TOKEN " + TOKEN.encode()


def test_token_failing_twice_is_a_credential_error_without_the_token() -> None:
    host = FakeHost(
        [v2_broker_responses(token=TOKEN), v2_broker_responses(token=TOKEN)],
        [SERVER_TOKEN_FAIL, SERVER_TOKEN_FAIL],
    )
    with pytest.raises(CredentialError, match="rejected the broker's token twice") as info:
        connect(host)
    assert str(info.value).startswith("The credential is invalid.")
    assert TOKEN not in str(info.value) and TOKEN not in repr(info.value)
    assert "pässword" not in str(info.value)
    assert host.service_calls() == ["broker", "server", "broker", "server"]


def test_rejected_credentials_stop_before_the_second_connection() -> None:
    host = FakeHost([[b"VERSION_2", b"PASS", b"PASS", b"PASS", b"PASS", b"FAIL"]], [])
    with pytest.raises(CredentialError, match=r"^The credential is invalid\.$"):
        connect(host)
    assert host.service_calls() == ["broker"]


def test_legacy_guest_is_refused_by_default_after_only_the_probe() -> None:
    host = FakeHost([LEGACY_PROBE_REPLIES], [])
    with pytest.raises(LegacyGuestRefusedError) as info:
        connect(host)
    message = str(info.value)
    assert "CVE-2025-49734" in message
    assert "Windows updates" in message
    assert "allow_legacy=True" in message
    assert "vm01" in message
    assert host.service_calls() == ["broker"]
    probe = host.broker_peers[0].finish()
    assert probe == [b"VERSION", u16("?<PSDirectVMLegacy>"), b"EMPTYPW", b"FAIL"]


def test_legacy_guest_with_allow_legacy_reconnects_runs_v1_and_skips_the_token(
    caplog: pytest.LogCaptureFixture,
) -> None:
    host = FakeHost(
        [LEGACY_PROBE_REPLIES, [b"PASS", b"PASS", b"PASS", b"CONF"]],
        [[]],  # the legacy second connection has no handshake at all
    )
    with caplog.at_level(logging.WARNING, logger="hvmagic.hvsocket"):
        transport = connect(host, allow_legacy=True)
    assert roundtrip(transport, b"<Data/>\n") == b"<Data/>\n"
    transport.close()
    assert host.service_calls() == ["broker", "broker", "server"]
    assert host.broker_peers[1].finish() == [
        u16("CORP"), u16("admin"), b"NONEMPTYPW", u16("pässword"), b"EMPTYCF",
    ]
    assert host.server_peers[0].finish()[0] == b"<Data/>\n"  # PSRP straight away
    assert "unauthenticated (CVE-2025-49734)" in caplog.text


def test_broker_not_listening_is_a_transport_error_with_advice() -> None:
    host = FakeHost([ConnectionRefusedError(111, "Connection refused")], [])
    with pytest.raises(TransportError, match="vmicvmsession"):
        connect(host)


def test_setups_to_one_vm_are_serialized() -> None:
    host = FakeHost(
        [v2_broker_responses(token=TOKEN) for _ in range(3)], [SERVER_OK for _ in range(3)]
    )
    transports: list[SocketTransport] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            transports.append(connect(host, sleep=lambda s: time.sleep(0.02)))
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    for transport in transports:
        transport.close()
    assert errors == []
    assert len(transports) == 3
    assert host.max_in_flight == 1
    assert host.service_calls() == ["broker", "server"] * 3


def test_empty_user_name_fails_before_resolving() -> None:
    def resolver(vm: str) -> VMInfo:
        raise AssertionError("must not resolve")

    with pytest.raises(CredentialError, match="username cannot be empty"):
        connect(FakeHost([], []), username="", resolver=resolver)


# --- platform -------------------------------------------------------------------------------


def test_off_windows_the_default_factory_names_the_alternatives() -> None:
    if hvsocket_supported():  # pragma: no cover - only on Windows with CPython >= 3.12
        pytest.skip("this interpreter has AF_HYPERV")

    def resolver(vm: str) -> VMInfo:
        raise AssertionError("the platform check comes first")

    with pytest.raises(UnsupportedPlatformError) as info:
        connect_vm("vm01", username="admin", password="pw", resolver=resolver)
    message = str(info.value)
    assert "Python 3.12" in message
    assert "via='process'" in message and "Invoke-Command -VMName" in message
    assert "powershell.exe -s" in message and "WinRM" in message
    with pytest.raises(UnsupportedPlatformError):
        hyperv_socket_factory(VM_ID, BROKER_SERVICE_ID, 1.0)


@pytest.mark.parametrize(
    ("platform", "version", "has_af", "expected"),
    [
        ("win32", (3, 12), True, True),
        ("win32", (3, 13), True, True),
        ("win32", (3, 11), False, False),
        ("win32", (3, 11), True, False),
        ("linux", (3, 12), False, False),
        ("linux", (3, 12), True, False),
    ],
)
def test_hvsocket_supported(platform: str, version: tuple[int, int], has_af: bool,
                            expected: bool) -> None:
    assert hvsocket_supported(platform, version, has_af) is expected


# --- VM resolution --------------------------------------------------------------------------

VMS_JSON = json.dumps(
    [
        {"Id": VM_ID, "Name": "vm01", "State": "Running", "Heartbeat": "OkApplicationsHealthy"},
        {"Id": "0a1b2c3d-0000-4000-8000-000000000001", "Name": "Build", "State": "Off",
         "Heartbeat": ""},
        {"Id": "0a1b2c3d-0000-4000-8000-000000000002", "Name": "twin", "State": "Running",
         "Heartbeat": None},
        {"Id": "0a1b2c3d-0000-4000-8000-000000000003", "Name": "TWIN", "State": "Running",
         "Heartbeat": None},
    ]
)


class Runner:
    def __init__(self, stdout: str = VMS_JSON, returncode: int = 0, stderr: str = "") -> None:
        self.result = (returncode, stdout, stderr)
        self.calls: list[tuple[list[str], float]] = []

    def __call__(self, argv: Sequence[str], timeout: float) -> subprocess.CompletedProcess[str]:
        self.calls.append((list(argv), timeout))
        code, out, err = self.result
        return subprocess.CompletedProcess(list(argv), code, out, err)


def test_resolver_runs_a_constant_get_vm_script() -> None:
    runner = Runner()
    info = resolve_vm("VM01", runner)
    assert info == VM
    (argv, _timeout), = runner.calls
    assert argv == ["powershell.exe", "-NoProfile", "-NonInteractive", "-Command", LIST_VMS_SCRIPT]
    assert "vm01" not in " ".join(argv).lower()  # the name never becomes PowerShell source


def test_resolve_by_id_with_braces_and_upper_case() -> None:
    assert resolve_vm("{" + VM_ID.upper() + "}", Runner()).name == "vm01"


def test_connect_vm_uses_the_runner_when_no_resolver_is_given() -> None:
    runner = Runner()
    host = FakeHost([v2_broker_responses(token=TOKEN)], [SERVER_OK])
    transport = connect(host, resolver=None, runner=runner)
    transport.close()
    assert len(runner.calls) == 1
    assert host.calls[0][0] == VM_ID


def test_vm_not_found_lists_the_visible_vms() -> None:
    with pytest.raises(VMNotFoundError) as info:
        resolve_vm("nosuch", Runner())
    message = str(info.value)
    assert "'nosuch' does not resolve to any virtual machine" in message
    assert "Build, TWIN, twin, vm01" in message
    assert "Hyper-V Administrators" in message


def test_no_vms_visible() -> None:
    with pytest.raises(VMNotFoundError, match="VMs visible: none visible"):
        resolve_vm("vm01", Runner(stdout=""))


def test_ambiguous_name_asks_for_the_id() -> None:
    with pytest.raises(VMNotFoundError, match="matches 2 virtual machines") as info:
        resolve_vm("Twin", Runner())
    assert "0a1b2c3d-0000-4000-8000-000000000002" in str(info.value)


def test_vm_not_running() -> None:
    with pytest.raises(VMStateError) as info:
        resolve_vm("build", Runner())
    assert str(info.value).startswith("The virtual machine Build is not in running state")
    assert "state: Off" in str(info.value) and "Start-VM -Name 'Build'" in str(info.value)


def test_single_vm_object_and_bom_are_accepted() -> None:
    single = "\ufeff" + json.dumps({"Id": VM_ID, "Name": "vm01", "State": "Running"})
    assert parse_vm_list(single) == [VMInfo(VM_ID, "vm01", "Running", "")]


@pytest.mark.parametrize(
    ("stdout", "message"),
    [("not json", "not JSON"), ("42", "not a list"), ('[{"Name": "x"}]', "without Id")],
)
def test_malformed_get_vm_output(stdout: str, message: str) -> None:
    with pytest.raises(HvMagicError, match=message):
        list_vms(Runner(stdout=stdout))


def test_powershell_failure_surfaces_its_first_stderr_line() -> None:
    runner = Runner(stdout="", returncode=1,
                    stderr="Get-VM : The term 'Get-VM' is not recognized\nAt line:1 char:1\n")
    with pytest.raises(HvMagicError, match="Windows PowerShell failed: Get-VM : The term"):
        list_vms(runner)


def test_empty_vm_name() -> None:
    with pytest.raises(VMNotFoundError, match="No VM name"):
        resolve_vm("  ", Runner())


def test_match_vm_exact_name_only() -> None:
    with pytest.raises(VMNotFoundError):
        match_vm("vm0*", [VM])  # no wildcards: Get-VM -Name would have matched


def test_module_constants_match_the_protocol_notes() -> None:
    assert hvsocket.BROKER_SERVICE_ID == "999e53d4-3d5c-4c3e-8779-bed06ec056e1"
    assert hvsocket.SERVER_SERVICE_ID == "a5201c21-2770-4c11-a68e-f182edb29220"


class _FakeHyperVSocket:
    """Records what hyperv_socket_factory does with a Windows AF_HYPERV socket."""

    instances: ClassVar[list[_FakeHyperVSocket]] = []
    fail_connect: ClassVar[bool] = False

    def __init__(self, family: int, kind: int, proto: int) -> None:
        self.args = (family, kind, proto)
        self.calls: list[tuple[str, object]] = []
        self.closed = False
        _FakeHyperVSocket.instances.append(self)

    def setsockopt(self, level: int, option: int, value: int) -> None:
        self.calls.append(("setsockopt", (level, option, value)))

    def connect(self, address: tuple[str, str]) -> None:
        self.calls.append(("connect", address))
        if self.fail_connect:
            raise ConnectionRefusedError(10061, "No connection could be made")

    def settimeout(self, value: float) -> None:
        self.calls.append(("settimeout", value))

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def windows_socket_module(monkeypatch: pytest.MonkeyPatch) -> type[_FakeHyperVSocket]:
    fake_module = type(
        "FakeSocketModule", (), {
            "AF_HYPERV": 34, "SOCK_STREAM": 1, "HV_PROTOCOL_RAW": 1,
            "HVSOCKET_CONNECT_TIMEOUT": 1, "socket": _FakeHyperVSocket,
        },
    )
    _FakeHyperVSocket.instances = []
    _FakeHyperVSocket.fail_connect = False
    monkeypatch.setattr(hvsocket, "socket", fake_module)
    monkeypatch.setattr(hvsocket, "hvsocket_supported", lambda: True)
    return _FakeHyperVSocket


@pytest.mark.parametrize(("timeout", "milliseconds"), [(5.0, 5000), (0.0001, 1), (900, 300000)])
def test_hyperv_socket_factory_calls(windows_socket_module: type[_FakeHyperVSocket],
                                     timeout: float, milliseconds: int) -> None:
    sock = hyperv_socket_factory(VM_ID, BROKER_SERVICE_ID, timeout)
    (made,) = windows_socket_module.instances
    assert sock is made  # type: ignore[comparison-overlap]
    assert made.args == (34, 1, 1)  # AF_HYPERV, SOCK_STREAM, HV_PROTOCOL_RAW
    assert made.calls == [
        ("setsockopt", (1, 1, milliseconds)),  # HVSOCKET_CONNECT_TIMEOUT, clamped to 1..300000
        ("connect", (VM_ID, BROKER_SERVICE_ID)),  # GUID strings without braces
        ("settimeout", timeout),
    ]


def test_hyperv_socket_factory_closes_on_connect_failure(
    windows_socket_module: type[_FakeHyperVSocket],
) -> None:
    windows_socket_module.fail_connect = True
    with pytest.raises(ConnectionRefusedError):
        hyperv_socket_factory(VM_ID, SERVER_SERVICE_ID, 1.0)
    assert windows_socket_module.instances[0].closed
