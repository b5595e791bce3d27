"""PowerShell Direct: Hyper-V sockets, the broker/token handshake, and connecting to a VM.

A PowerShell Direct session is two ``AF_HYPERV`` connections to the guest
(``psdirect-protocol.md`` §1-2):

1. the **broker** (service ``999e53d4-…``, the guest's ``vmicvmsession`` service) receives the
   credentials and configuration name, starts a PowerShell process as that user and, on a
   patched guest ("V2"), hands back a one-time token;
2. the **server** (service ``a5201c21-…``, that PowerShell process) checks the token and then
   speaks OutOfProc PSRP on the same socket — the framing ``pwsh -s`` speaks on stdio.

:func:`negotiate_broker` and :func:`negotiate_server` implement the two conversations over any
connected stream socket, byte for byte as PowerShell's ``RemoteSessionHyperVSocketClient`` does:
``tests/pwsh/test_psdirect_handshake.py`` runs PowerShell 7.6's own client methods and hvmagic's
against the same scripted broker and server and compares every byte and outcome, and has
PowerShell's ``ValidateToken`` (the guest's token check) judge :func:`negotiate_server`.
:func:`connect_vm` adds VM resolution, socket creation, retries and per-VM serialization, and
returns a :class:`~hvmagic.transports.base.SocketTransport` ready for the session layer.

Legacy guests and CVE-2025-49734 — the default and the trade-off
-----------------------------------------------------------------
Guests without the 2025 updates only know the legacy ("V1") broker conversation: no version
exchange, no token, and the second connection is accepted **without any authentication** — the
gap CVE-2025-49734 ("PowerShell Direct Elevation of Privilege") closed. A patched PowerShell
falls back to V1 silently unless ``RequirePsDirectAuthentication`` is set on the host.

hvmagic refuses legacy guests by default (:class:`~hvmagic.errors.LegacyGuestRefusedError`,
whose message names the fix: install the guest's Windows updates). ``allow_legacy=True`` opts in
per connection. What the opt-in costs: between the broker conversation and our connect, any
other process that can reach the guest's session service could connect to the unauthenticated
PowerShell first (and we could end up talking to a process started for someone else); what it
buys: old, unpatched lab VMs stay reachable. The refusal happens after the harmless legacy
probe PowerShell itself sends (``?<PSDirectVMLegacy>`` — a user name no account can have), so
refusing never sends real credentials to a V1 broker.

Secrets: passwords are revealed only at the ``send`` of their own token and tokens never appear
in messages, ``repr``\\s or logs; broker replies are not echoed into messages either, because
PowerShell itself declines to log them ("we don't know if it is sensitive").
"""

from __future__ import annotations

import contextlib
import logging
import socket
import sys
import threading
import time
from collections.abc import Callable
from typing import Protocol

from hvmagic.clixml.values import SecureString
from hvmagic.credentials import (
    EMPTY_USERNAME_MESSAGE,
    as_secure,
    broker_domain,
    split_username,
)
from hvmagic.errors import (
    CredentialError,
    HandshakeError,
    LegacyGuestRefusedError,
    TransportError,
    UnsupportedPlatformError,
)
from hvmagic.transports.base import SocketTransport
from hvmagic.transports.vmresolve import Runner, VMInfo, resolve_vm

__all__ = [
    "BROKER_SERVICE_ID",
    "SERVER_SERVICE_ID",
    "SocketFactory",
    "connect_vm",
    "hyperv_socket_factory",
    "negotiate_broker",
    "negotiate_server",
]

log = logging.getLogger("hvmagic.hvsocket")

#: HV_GUID_VM_SESSION_SERVICE_ID: the guest broker (vmicvmsession)
BROKER_SERVICE_ID = "999e53d4-3d5c-4c3e-8779-bed06ec056e1"
#: HV_GUID_VM_SESSION_SERVICE_ID_2: the PowerShell process the broker launched
SERVER_SERVICE_ID = "a5201c21-2770-4c11-a68e-f182edb29220"

# Handshake keywords (ASCII on the wire, no terminator).
VERSION_REQUEST = b"VERSION"
CLIENT_VERSION = b"VERSION_2"
VERSION_PREFIX = "VERSION_"
TOKEN_PREFIX = "TOKEN "
# A user name Windows cannot have ('?', '<', '>' are illegal), ≤ 20 characters for Windows
# Server 2016: sent to a broker that turned out to be legacy, to end its conversation harmlessly.
LEGACY_PROBE_USER = "?<PSDirectVMLegacy>"

# Nominal receive sizes from PowerShell's client; a reply never spans more than one recv there.
_VERSION_REPLY_SIZE = 16
_VERDICT_REPLY_SIZE = 4
_TOKEN_REPLY_SIZE = 1024
_TOKEN_VERDICT_SIZE = 256
# recv() asks for at least this much so an over-long reply is seen whole and rejected, rather
# than split and misread as the next step's reply.
_MIN_RECV = 1024

#: used for the handshake when the socket has no timeout of its own, so nothing can hang
DEFAULT_HANDSHAKE_TIMEOUT = 30.0
#: the guest PowerShell refuses a token older than this (``MAX_TOKEN_LIFE_MINUTES`` of
#: PowerShell's RemoteSessionHyperVSocketServer; the pwsh tests read the real value)
TOKEN_LIFETIME_MINUTES = 10

# Second-connection retries (§2.5, as smnsjas/go-psrp does): the broker still has to start the
# guest PowerShell process after handing out the token.
SECOND_CONNECTION_INITIAL_WAIT = 0.5
SECOND_CONNECTION_ATTEMPTS = 10
SECOND_CONNECTION_BACKOFF = 1.5
SECOND_CONNECTION_MAX_DELAY = 3.0
#: a token FAIL on the second connection is retried this many times with a fresh broker
#: conversation: parallel set-ups to one VM can cross (§6.7, PowerShell/PowerShell#15098)
TOKEN_FAIL_RETRIES = 1

INVALID_CREDENTIAL = "The credential is invalid."
LEGACY_REFUSED = (
    "The guest {vm} only supports the legacy PowerShell Direct handshake, whose second "
    "connection is not authenticated (CVE-2025-49734): another process could take over the "
    "session PowerShell starts for you. hvmagic refuses it by default. Fix: install the guest's "
    "Windows updates (the 2025 cumulative updates carry the token handshake). To connect anyway "
    "to a lab VM you trust, pass allow_legacy=True (%vmconnect --allow-legacy)."
)


def _invalid_response(peer: str, what: str) -> str:
    # PowerShell's HyperVInvalidResponse resource string, word for word.
    return f"Hyper-V {peer} sent an invalid {what} response during the connection negotiation."


def _ascii_like_dotnet(data: bytes) -> str:
    """``Encoding.ASCII.GetString``: every byte above 0x7F becomes ``?``.

    PowerShell decodes replies this way and sends the token on as it decoded it, so a token
    byte outside ASCII must become the same ``?`` here, not U+FFFD (3 bytes in UTF-8).
    """
    return data.translate(_NON_ASCII_TO_QUESTION_MARK).decode("ascii")


_NON_ASCII_TO_QUESTION_MARK = bytes(range(128)) + b"?" * 128


class _Conversation:
    """One lock-step handshake on a socket: one send per token, one recv per reply."""

    def __init__(self, sock: socket.socket, peer: str, closed_hint: str = "") -> None:
        self.sock = sock
        self.peer = peer  # "Broker" / "Server", as in PowerShell's messages
        self.closed_hint = closed_hint  # appended when the peer hangs up without an answer
        timeout = sock.gettimeout()
        self._restore_timeout: float | None = timeout
        self._changed_timeout = timeout is None
        if self._changed_timeout:
            # A blocking socket would let a silent guest hang us forever.
            sock.settimeout(DEFAULT_HANDSHAKE_TIMEOUT)
        self.timeout = sock.gettimeout()

    def finish(self) -> None:
        if self._changed_timeout:
            with contextlib.suppress(OSError):
                self.sock.settimeout(self._restore_timeout)

    def send(self, data: bytes | bytearray, step: str) -> None:
        try:
            self.sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError) as exc:
            raise HandshakeError(
                f"The Hyper-V {self.peer} closed the connection before the {step} could be sent "
                "(no response during the connection negotiation)."
            ) from exc
        except OSError as exc:
            raise HandshakeError(
                f"The Hyper-V {self.peer} connection failed while sending the {step}: "
                f"{exc.__class__.__name__}"
            ) from exc

    def send_text(self, text: str, step: str) -> None:
        """User data (domain, user, configuration) go as UTF-16LE without BOM or terminator."""
        self.send(text.encode("utf-16-le"), step)

    def receive(self, nominal_size: int, step: str) -> str:
        """One reply: ASCII, trailing NULs stripped (``ReceiveResponse``)."""
        try:
            data = self.sock.recv(max(nominal_size, _MIN_RECV))
        except TimeoutError as exc:
            raise HandshakeError(
                f"The Hyper-V {self.peer} did not answer the {step} within {self.timeout:g} s. "
                "The guest may still be booting, or its PowerShell Direct service (vmicvmsession) "
                "is hung: restart it inside the guest or restart the VM."
            ) from exc
        except (ConnectionResetError, ConnectionAbortedError) as exc:
            # A peer that closes with our request still unread resets the connection: to us
            # that is the same as closing it.
            raise self._closed_after(step) from exc
        except OSError as exc:
            raise HandshakeError(
                f"The Hyper-V {self.peer} connection failed while waiting for the reply to the "
                f"{step}: {exc.__class__.__name__}"
            ) from exc
        if not data:
            raise self._closed_after(step)
        return _ascii_like_dotnet(data).rstrip("\0")

    def _closed_after(self, step: str) -> HandshakeError:
        return HandshakeError(
            f"The Hyper-V {self.peer} closed the connection after the {step} "
            f"(no response during the connection negotiation).{self.closed_hint}"
        )


def negotiate_broker(
    sock: socket.socket,
    username: str,
    password: str | SecureString | None,
    domain: str | None = None,
    configuration: str | None = None,
    legacy: bool = False,
) -> str | None:
    """Hand the credentials to the guest broker; return the token for the second connection.

    ``sock`` is connected to the broker service (any stream socket works, which is how the
    tests drive it). ``username`` is split as PowerShell splits it (``DOMAIN\\user``,
    ``user@host``, UPN) unless ``domain`` is given; an empty domain is sent as ``localhost``,
    any other (``.`` from ``.\\Administrator`` included) as it is, as PowerShell sends them.

    Returns the token (V2), or ``None`` when

    * ``legacy=False`` and the broker turned out to be legacy: the probe conversation was
      finished harmlessly and the caller must reconnect and call again with ``legacy=True``;
    * ``legacy=True`` and the V1 conversation succeeded (there is no token in V1).

    Raises :class:`CredentialError` when the broker rejects the credentials ("The credential is
    invalid."), :class:`HandshakeError` for anything malformed, a timeout or a closed peer.
    """
    if domain is None:
        domain, user = split_username(username)
    else:
        user = username
    if not user:
        raise CredentialError(EMPTY_USERNAME_MESSAGE)
    wire_domain = broker_domain(domain)
    talk = _Conversation(sock, "Broker")
    try:
        if not legacy and not _agree_version(talk):
            return None
        verdict = _send_credentials(talk, wire_domain, user, password)
        _answer_verdict(talk, verdict, configuration)
        if legacy:
            return None
        return _receive_token(talk)
    finally:
        talk.finish()


def _agree_version(talk: _Conversation) -> bool:
    """The V2 version exchange; ``False`` when the broker is legacy (V1), after finishing the
    probe conversation harmlessly (the caller reconnects with ``legacy=True``)."""
    talk.send(VERSION_REQUEST, "version request")
    version = talk.receive(_VERSION_REPLY_SIZE, "version request")
    if not version.startswith(VERSION_PREFIX):
        # A legacy broker took "VERSION" as the domain and answered PASS. Finish its
        # conversation with a user nobody can have and no password, so it fails and
        # exits cleanly, exactly as PowerShell does; the caller then reconnects.
        log.info("Hyper-V broker is legacy (V1); finishing the probe conversation")
        talk.send_text(LEGACY_PROBE_USER, "legacy probe user name")
        talk.receive(_VERDICT_REPLY_SIZE, "legacy probe user name")
        talk.send(b"EMPTYPW", "legacy probe password marker")
        talk.receive(_VERDICT_REPLY_SIZE, "legacy probe password marker")
        talk.send(b"FAIL", "legacy probe end")
        return False
    talk.send(CLIENT_VERSION, "client version")
    talk.receive(_VERDICT_REPLY_SIZE, "client version")  # PASS; PowerShell ignores it
    return True


def _send_credentials(talk: _Conversation, wire_domain: str, user: str,
                      password: str | SecureString | None) -> str:
    """Domain, user name and password; returns the broker's verdict on them."""
    # The broker's replies to these intermediate steps are not checked by PowerShell (its
    # own tests answer them with random PASS/FAIL); only the password verdict decides.
    talk.send_text(wire_domain, "domain")
    talk.receive(_VERDICT_REPLY_SIZE, "domain")
    talk.send_text(user, "user name")
    talk.receive(_VERDICT_REPLY_SIZE, "user name")

    secure_password = as_secure(password)  # TypeError for anything but str/SecureString
    if secure_password.reveal() == "":
        # An empty password must be announced: a bare empty send would leave the broker
        # blocked in recv.
        talk.send(b"EMPTYPW", "empty-password marker")
        return talk.receive(_VERDICT_REPLY_SIZE, "empty-password marker")
    talk.send(b"NONEMPTYPW", "password marker")
    talk.receive(_VERDICT_REPLY_SIZE, "password marker")
    secret = bytearray(secure_password.reveal().encode("utf-16-le"))
    try:
        talk.send(secret, "password")
    finally:
        secret[:] = bytes(len(secret))  # do not leave the encoded password in memory
    return talk.receive(_VERDICT_REPLY_SIZE, "password")


def _answer_verdict(talk: _Conversation, verdict: str, configuration: str | None) -> None:
    """FAIL: acknowledge and raise :class:`CredentialError`; CONF: name the configuration (or
    none); PASS: a broker without configurations, acknowledged."""
    if verdict not in ("FAIL", "PASS", "CONF"):
        raise HandshakeError(_invalid_response("Broker", "Credential"))
    if verdict == "FAIL":
        talk.send(b"FAIL", "failure acknowledgement")
        raise CredentialError(INVALID_CREDENTIAL)
    if verdict == "CONF":
        # The broker supports configuration names (Windows Server 2016 TP5 and later).
        if configuration:
            talk.send(b"NONEMPTYCF", "configuration marker")
            talk.receive(_VERDICT_REPLY_SIZE, "configuration marker")
            talk.send_text(configuration, "configuration name")
        else:
            talk.send(b"EMPTYCF", "configuration marker")
    else:
        # PASS: a pre-TP5 broker that knows no configurations; PowerShell echoes it.
        if configuration:
            log.warning(
                "the guest broker does not support configuration names; %r is ignored",
                configuration,
            )
        talk.send(b"PASS", "credential acknowledgement")


def _receive_token(talk: _Conversation) -> str:
    """The V2 token for the second connection, acknowledged."""
    reply = talk.receive(_TOKEN_REPLY_SIZE, "token request")
    if not reply.startswith(TOKEN_PREFIX):
        # PowerShell appends the reply to this message; it may hold a token, so we do not.
        raise HandshakeError(_invalid_response("Broker", "Token"))
    # Passed on exactly as PowerShell passes it (trailing NULs gone, nothing trimmed): the
    # guest's check trims what it receives, so the bytes on the second connection are
    # PowerShell's too.
    token = reply[len(TOKEN_PREFIX) :]
    talk.send(b"PASS", "token acknowledgement")
    if not token.strip():
        # PowerShell acknowledges even an empty token (above, so the broker sees the same
        # conversation) and only fails on the second connection with "The credential is
        # invalid."; no guest could accept it, so we say what is wrong here.
        raise HandshakeError(_invalid_response("Broker", "Token"))
    return token


def negotiate_server(sock: socket.socket, token: str) -> None:
    """Present the broker's token to the guest PowerShell process (second connection, V2).

    On return the socket carries OutOfProc PSRP. Raises :class:`CredentialError` when the
    server rejects the token ("The credential is invalid.", as PowerShell reports it) and
    :class:`HandshakeError` for a malformed exchange, a timeout or a closed peer.
    """
    if not token:
        raise CredentialError(INVALID_CREDENTIAL)
    talk = _Conversation(sock, "Server", closed_hint=(
        " The guest PowerShell hangs up without an answer when the broker's token has expired "
        f"(it is valid for {TOKEN_LIFETIME_MINUTES} minutes) or the process failed; connect "
        "again for a fresh token."
    ))
    try:
        talk.send(VERSION_REQUEST, "version request")
        if not talk.receive(_VERSION_REPLY_SIZE, "version request").startswith(VERSION_PREFIX):
            raise HandshakeError(_invalid_response("Server", "TransportVersion"))
        talk.send(CLIENT_VERSION, "client version")
        if talk.receive(_VERDICT_REPLY_SIZE, "client version") != "PASS":
            raise HandshakeError(_invalid_response("Server", "TransportVersion"))
        talk.send((TOKEN_PREFIX + token).encode("utf-8"), "token")
        if talk.receive(_TOKEN_VERDICT_SIZE, "token") != "PASS":
            raise CredentialError(INVALID_CREDENTIAL)
    finally:
        talk.finish()


# -------------------------------------------------------------------------------------------
# Connecting to a VM


class SocketFactory(Protocol):
    """Creates a stream socket connected to ``service_id`` in VM ``vm_id``.

    Raises :class:`OSError` when nobody listens (yet); ``timeout`` (seconds) bounds the connect
    and is the socket's timeout for the handshake that follows.
    """

    def __call__(self, vm_id: str, service_id: str, timeout: float) -> socket.socket: ...


#: CPython exposes AF_HYPERV only on Windows, from 3.12 on
_HVSOCKET_MIN_PYTHON = (3, 12)
_HVSOCKET_CONNECT_TIMEOUT_MAX_MS = 300_000

UNSUPPORTED_PLATFORM = (
    "PowerShell Direct needs Hyper-V sockets (socket.AF_HYPERV), which CPython offers only on "
    "Windows with Python 3.12 or later; this is {platform}, Python {python}. Alternatives: on "
    "the Hyper-V host with an older Python, use the process transport — "
    "hvmagic.connect(vm, via='process') runs Windows PowerShell (`powershell.exe -s`) and nests "
    "`Invoke-Command -VMName` / `Enter-PSSession -VMName` inside it; from another machine, use "
    "WinRM to the Hyper-V host and PowerShell Direct from there."
)


def hvsocket_supported(platform: str | None = None, version: tuple[int, ...] | None = None,
                       has_af_hyperv: bool | None = None) -> bool:
    """Whether this interpreter can open AF_HYPERV sockets (arguments override detection)."""
    platform = sys.platform if platform is None else platform
    version = tuple(sys.version_info[:2]) if version is None else version
    has_af_hyperv = hasattr(socket, "AF_HYPERV") if has_af_hyperv is None else has_af_hyperv
    return platform == "win32" and version >= _HVSOCKET_MIN_PYTHON and has_af_hyperv


def unsupported_platform_message() -> str:
    """Why PowerShell Direct cannot run in this interpreter, and what to use instead."""
    return UNSUPPORTED_PLATFORM.format(
        platform=sys.platform, python=".".join(map(str, sys.version_info[:3]))
    )


def _unsupported_platform_error() -> UnsupportedPlatformError:
    return UnsupportedPlatformError(unsupported_platform_message())


def hyperv_socket_factory(vm_id: str, service_id: str, timeout: float) -> socket.socket:
    """A real ``AF_HYPERV`` socket connected to ``(vm_id, service_id)`` (Windows, CPython ≥ 3.12).

    The connect timeout is the Hyper-V socket option ``HVSOCKET_CONNECT_TIMEOUT`` (ms) with a
    blocking connect: whether select-based connects work on every Windows build is unknown
    (``psdirect-protocol.md`` §1.3), so the socket timeout is applied only after connecting.
    """
    if not hvsocket_supported():
        raise _unsupported_platform_error()
    # getattr: these names exist only in Windows builds of CPython (and its type stubs).
    af_hyperv = getattr(socket, "AF_HYPERV")  # noqa: B009
    hv_protocol_raw = getattr(socket, "HV_PROTOCOL_RAW", 1)
    connect_timeout_opt = getattr(socket, "HVSOCKET_CONNECT_TIMEOUT", 1)
    sock = socket.socket(af_hyperv, socket.SOCK_STREAM, hv_protocol_raw)
    try:
        timeout_ms = max(1, min(int(timeout * 1000), _HVSOCKET_CONNECT_TIMEOUT_MAX_MS))
        sock.setsockopt(hv_protocol_raw, connect_timeout_opt, timeout_ms)
        sock.connect((vm_id, service_id))  # GUID strings without braces
        sock.settimeout(timeout)
    except BaseException:
        sock.close()
        raise
    return sock


# Session set-up is serialized per VM: each session's guest PowerShell listens on the same
# service id, so two set-ups in flight can swap processes (§6.7).
_vm_locks: dict[str, threading.Lock] = {}
_vm_locks_guard = threading.Lock()


def _lock_for(vm_id: str) -> threading.Lock:
    with _vm_locks_guard:
        return _vm_locks.setdefault(vm_id.lower(), threading.Lock())


def _close_quietly(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.close()


def _connect(factory: SocketFactory, vm: VMInfo, service_id: str, timeout: float,
             what: str) -> socket.socket:
    try:
        sock = factory(vm.id, service_id, timeout)
    except (UnsupportedPlatformError, TransportError):
        raise
    except OSError as exc:
        raise TransportError(
            f"Could not connect to the {what} of VM {vm.name}: {exc.__class__.__name__}: {exc}. "
            "Is the guest fully booted and its PowerShell Direct service (vmicvmsession) enabled?"
        ) from exc
    return sock


def _connect_second(factory: SocketFactory, vm: VMInfo, timeout: float,
                    sleep: Callable[[float], None]) -> socket.socket:
    """Connect to the guest PowerShell process the broker is starting, with back-off retries."""
    sleep(SECOND_CONNECTION_INITIAL_WAIT)
    delay = SECOND_CONNECTION_INITIAL_WAIT
    last: TransportError | None = None
    for attempt in range(1, SECOND_CONNECTION_ATTEMPTS + 1):
        try:
            return _connect(factory, vm, SERVER_SERVICE_ID, timeout, "PowerShell server")
        except TransportError as exc:
            last = exc
            log.debug("second connection attempt %d to %s failed", attempt, vm.name)
            if attempt < SECOND_CONNECTION_ATTEMPTS:
                sleep(delay)
                delay = min(delay * SECOND_CONNECTION_BACKOFF, SECOND_CONNECTION_MAX_DELAY)
    raise TransportError(
        f"The PowerShell process in VM {vm.name} did not accept a connection after "
        f"{SECOND_CONNECTION_ATTEMPTS} attempts: the guest may be out of resources, or the "
        "configuration name does not exist in the guest."
    ) from last


def _broker(factory: SocketFactory, vm: VMInfo, timeout: float, username: str,
            password: str | SecureString | None, configuration: str | None,
            legacy: bool) -> str | None:
    sock = _connect(factory, vm, BROKER_SERVICE_ID, timeout, "PowerShell Direct broker")
    try:
        return negotiate_broker(sock, username, password, configuration=configuration,
                                legacy=legacy)
    finally:
        _close_quietly(sock)


def connect_vm(
    vm: str,
    *,
    username: str,
    password: str | SecureString | None,
    configuration: str | None = None,
    allow_legacy: bool = False,
    timeout: float = DEFAULT_HANDSHAKE_TIMEOUT,
    socket_factory: SocketFactory | None = None,
    resolver: Callable[[str], VMInfo] | None = None,
    runner: Runner | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> SocketTransport:
    """Open a PowerShell Direct connection to ``vm`` (name or id) on this Hyper-V host.

    Resolves the VM (``resolver``; default ``Get-VM`` through ``runner``), talks to the broker,
    connects to the guest PowerShell with retries, presents the token, and returns the socket
    as a :class:`SocketTransport` carrying OutOfProc PSRP (blocking, no timeout: the session
    layer owns timing from here). Legacy guests are refused unless ``allow_legacy`` (see the
    module docstring). ``socket_factory`` and ``sleep`` are injectable for tests; the default
    factory needs Windows and CPython ≥ 3.12 and raises :class:`UnsupportedPlatformError`
    elsewhere, naming the alternatives.
    """
    if socket_factory is None:
        if not hvsocket_supported():
            raise _unsupported_platform_error()
        socket_factory = hyperv_socket_factory
    if not username:
        raise CredentialError(EMPTY_USERNAME_MESSAGE)
    split_username(username)  # reject an unusable user name before touching the VM
    info = resolver(vm) if resolver is not None else resolve_vm(vm, runner)

    token_retries_left = TOKEN_FAIL_RETRIES
    with _lock_for(info.id):
        while True:
            token = _broker(socket_factory, info, timeout, username, password, configuration,
                            legacy=False)
            legacy = token is None
            if legacy:
                if not allow_legacy:
                    raise LegacyGuestRefusedError(LEGACY_REFUSED.format(vm=info.name))
                log.warning(
                    "VM %s speaks only the legacy PowerShell Direct handshake; its second "
                    "connection is unauthenticated (CVE-2025-49734) - connecting because "
                    "allow_legacy=True", info.name,
                )
                _broker(socket_factory, info, timeout, username, password, configuration,
                        legacy=True)
            sock = _connect_second(socket_factory, info, timeout, sleep)
            try:
                if token is not None:
                    negotiate_server(sock, token)
                sock.settimeout(None)
            except CredentialError:
                _close_quietly(sock)
                if token_retries_left > 0:
                    token_retries_left -= 1
                    # Most likely another set-up's PowerShell took our token (it then exits);
                    # a fresh broker conversation starts a fresh process for us.
                    log.info("token rejected by VM %s; retrying with a new broker conversation",
                             info.name)
                    continue
                raise CredentialError(
                    f"{INVALID_CREDENTIAL} The PowerShell process in VM {info.name} rejected the "
                    "broker's token twice; another PowerShell Direct session to this VM may have "
                    "been starting at the same time. Try again."
                ) from None
            except BaseException:
                _close_quietly(sock)
                raise
            return SocketTransport(sock, description=f"PowerShell Direct to {vm}")
