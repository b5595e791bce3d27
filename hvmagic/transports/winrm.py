"""PowerShell over WinRM: pypsrp's WSMan layer under hvmagic's own PSRP client.

pypsrp's :class:`pypsrp.wsman.WSMan` does what is hard about WinRM — NTLM, Kerberos, CredSSP,
Basic and certificate authentication, HTTPS or message encryption, proxies, timeouts and read
retries — and nothing above it is pypsrp's: PSRP is hvmagic's own
:class:`~hvmagic.psrp.client.PSRPClient` (the fast CLIXML decoder, streams, host calls), so
WinRM output takes the same path as every other transport.

The trick is that :class:`WinRMTransport` is a byte :class:`~hvmagic.transports.base.Transport`
like the others: the session writes OutOfProc packets, and this module maps each one onto the
WSMan operation PowerShell's own WinRM client uses for it (MS-PSRP §3.1.5.3), answering with the
acknowledgement the OutOfProc peer would have sent:

* first ``Data`` (pool) → ``Create`` shell with ``creationXml`` = the opening fragments;
  ``DataAck``
* later ``Data`` (pool) → ``Send`` ``stdin`` (``pr`` for prompt responses); ``DataAck``
* ``Command(pid)`` → nothing yet (the pipeline's fragments ride on the next Data);
  ``CommandAck``
* first ``Data(pid)`` → ``Command`` with ``CommandId=pid``, ``Arguments`` = the fragments;
  ``DataAck``
* later ``Data(pid)`` → ``Send`` ``stdin``/``pr`` with ``CommandId``; ``DataAck``
* ``Signal(pid)`` → ``Signal`` ``powershell/signal/crtl_c`` (sic: PowerShell's own spelling);
  ``SignalAck``
* ``Close(pid)`` → ``Signal`` ``…/signal/Terminate`` (frees the command); ``CloseAck``
* ``Close`` (pool) → ``Delete`` the shell; ``CloseAck``

Server → client data comes from ``Receive``: one ``Receive`` loop for the shell after ``Create``
(and after a key exchange) until the awaited pool message arrives, and one per pipeline until its
``CommandState`` is ``Done``; every ``stdout`` stream becomes an OutOfProc ``Data`` packet. The
receive loop runs on its own thread with its own WSMan connection, so a ``Signal`` (stop) is
never stuck behind a ``Receive`` that waits up to the operation timeout. ``w:TimedOut`` faults
on ``Receive`` (code 2150858793) only mean "nothing yet" and are retried.

WSMan faults become :class:`WSManFault` (a :class:`~hvmagic.errors.TransportError` with the
WSMan ``code``, ``machine`` and ``reason``); rejected credentials
:class:`WinRMAuthenticationError` (also a :class:`~hvmagic.errors.CredentialError`); an
unreachable endpoint :class:`WinRMUnreachableError`.
"""

from __future__ import annotations

import base64
import contextlib
import queue
import struct
import threading
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pypsrp.exceptions import AuthenticationError, WinRMError, WinRMTransportError, WSManFaultError
from pypsrp.wsman import NAMESPACES, OptionSet, SelectorSet, WSMan

from hvmagic.clixml.values import SecureString
from hvmagic.errors import CredentialError, TransportError
from hvmagic.psrp.outofproc import (
    NIL_GUID,
    OutOfProcPacket,
    PacketKind,
    PacketReader,
    control_packet,
    data_packet,
)

__all__ = [
    "RESOURCE_URI",
    "WSManFault",
    "WinRMAuthenticationError",
    "WinRMTransport",
    "WinRMUnreachableError",
    "fragment_message_types",
]

#: the default PowerShell endpoint (``-ConfigurationName`` picks another, e.g. a JEA endpoint)
RESOURCE_URI = "http://schemas.microsoft.com/powershell/Microsoft.PowerShell"
RESOURCE_URI_PREFIX = "http://schemas.microsoft.com/powershell/"
PROTOCOL_VERSION = "2.3"
#: PowerShell's stop signal, misspelled in MS-PSRP 3.1.5.3.9 and in PowerShell itself
SIGNAL_STOP = "powershell/signal/crtl_c"
SIGNAL_TERMINATE = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/signal/Terminate"
COMMAND_DONE = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/CommandState/Done"
#: ``w:TimedOut``: a Receive saw no data within the operation timeout; ask again
TIMED_OUT_CODE = 2150858793
#: pool messages that end a shell-level receive: the pool's state, the session key
_RUNSPACEPOOL_STATE = 0x00021005
_ENCRYPTED_SESSION_KEY = 0x00010006
_PUBLIC_KEY = 0x00010005
_FRAGMENT = struct.Struct(">QQBI")


class WSManFault(TransportError):
    """The WinRM service answered with a WSMan fault."""

    def __init__(self, message: str, code: int | str | None = None, machine: str | None = None,
                 reason: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.machine = machine
        self.reason = reason


class WinRMAuthenticationError(CredentialError, TransportError):
    """WinRM rejected the host account (HTTP 401 after authentication)."""


class WinRMUnreachableError(TransportError):
    """The WinRM endpoint cannot be reached (name, port, firewall, TLS)."""


def fragment_message_types(data: bytes) -> list[int]:
    """The PSRP message types of the messages that *start* in ``data`` (whole fragments)."""
    types = []
    offset = 0
    while len(data) - offset >= _FRAGMENT.size:
        _object_id, _fragment_id, flags, length = _FRAGMENT.unpack_from(data, offset)
        blob = data[offset + _FRAGMENT.size : offset + _FRAGMENT.size + length]
        if flags & 0x1 and len(blob) >= 8:
            types.append(struct.unpack_from("<I", blob, 4)[0])
        offset += _FRAGMENT.size + length
    return types


def translate_error(exc: Exception, where: str) -> TransportError:
    """A pypsrp/requests failure as hvmagic's typed error (message names WSMan's code)."""
    if isinstance(exc, TransportError):
        return exc
    if isinstance(exc, WSManFaultError):
        code = exc.code
        shown = f"0x{code:08X} ({code})" if isinstance(code, int) else str(code)
        message = f"{where}: WSMan fault {shown}: {exc.reason or exc.message}"
        if exc.machine:
            message += f" (on {exc.machine})"
        return WSManFault(message, code=code, machine=exc.machine, reason=exc.reason)
    if isinstance(exc, AuthenticationError):
        return WinRMAuthenticationError(f"{where}: the host rejected the credentials: {exc}")
    if isinstance(exc, WinRMTransportError):
        return WSManFault(f"{where}: HTTP {exc.code} from WinRM: {exc.response_text[:300]}",
                          code=exc.code)
    if isinstance(exc, WinRMError):
        return TransportError(f"{where}: {exc}")
    # requests' ConnectionError/Timeout/SSLError are OSErrors: the endpoint is unreachable
    return WinRMUnreachableError(f"{where}: {type(exc).__name__}: {exc}")


#: what a WSMan call may raise besides hvmagic's own errors (programming errors propagate)
_WSMAN_FAILURES = (WinRMError, OSError)


@dataclass
class _ReceiveTask:
    command_id: uuid.UUID | None
    #: for shell-level receives: stop once one of these message types arrived
    until: frozenset[int] = frozenset()


class WinRMTransport:
    """A PowerShell runspace on ``host`` over WinRM; see the module docstring.

    ``username``/``password``: the host account (omit both for Kerberos with the current
    ticket). ``auth``: ``negotiate`` (default), ``kerberos``, ``ntlm``, ``credssp``, ``basic``,
    ``certificate``. ``ssl``: HTTPS (port 5986) instead of HTTP with message encryption (5985).
    ``configuration``: the endpoint (``-ConfigurationName``). Other WSMan options (``proxy``,
    ``cert_validation``, ``certificate_pem``/``certificate_key_pem``, ``read_timeout``,
    ``reconnection_retries`` …) go to :class:`pypsrp.wsman.WSMan` unchanged.
    ``wsman_factory`` builds the WSMan objects (tests inject a replaying transport).
    """

    def __init__(
        self,
        host: str,
        *,
        username: str | None = None,
        password: str | SecureString | None = None,
        port: int | None = None,
        ssl: bool = False,
        auth: str = "negotiate",
        configuration: str | None = None,
        connect_timeout: float | None = None,
        operation_timeout: int = 20,
        wsman_factory: Callable[[], WSMan] | None = None,
        **wsman_options: Any,
    ) -> None:
        self.host = host
        self.description = f"PowerShell over WinRM to {host}"
        self.resource_uri = (
            RESOURCE_URI if not configuration else RESOURCE_URI_PREFIX + configuration
        )
        self.operation_timeout = operation_timeout
        if wsman_factory is None:
            secret = password.reveal() if isinstance(password, SecureString) else password
            options = dict(wsman_options)
            if connect_timeout is not None:
                options.setdefault("connection_timeout", max(1, int(connect_timeout)))

            def wsman_factory() -> WSMan:
                # one WSMan (one HTTP connection, one security context) per caller thread
                return WSMan(
                    host, port=port, username=username, password=secret, ssl=ssl, auth=auth,
                    operation_timeout=operation_timeout,
                    encryption="auto" if ssl else "always", **options,
                )

        self._control = wsman_factory()
        self._receiver = wsman_factory()
        self.shell_id = str(uuid.uuid4()).upper()
        self._selectors: SelectorSet | None = None
        self._reader = PacketReader()
        self._inbound: queue.Queue[bytes | BaseException] = queue.Queue()
        self._tasks: queue.Queue[_ReceiveTask | None] = queue.Queue()
        self._commands_started: set[uuid.UUID] = set()
        self._lock = threading.Lock()
        self._closed = False
        self._deleting = False
        self._receive_thread = threading.Thread(
            target=self._receive_loop, name=f"hvmagic-winrm-{host}", daemon=True
        )
        self._receive_thread.start()

    # -- Transport -------------------------------------------------------------------------
    def send(self, data: bytes) -> None:
        if self._closed:
            raise TransportError(f"{self.description}: the connection is closed")
        with self._lock:
            self._reader.receive_data(data)
            while (packet := self._reader.next_packet()) is not None:
                self._on_packet(packet)

    def recv(self) -> bytes:
        item = self._inbound.get()
        if isinstance(item, BaseException):
            raise item
        return item

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._tasks.put(None)
        if self._selectors is not None:
            with contextlib.suppress(Exception):  # best effort: the shell times out otherwise
                self._control.delete(self.resource_uri, selector_set=self._selectors)
            self._selectors = None
        self._inbound.put(b"")
        for wsman in (self._control, self._receiver):
            with contextlib.suppress(Exception):
                wsman.close()

    # -- client → WSMan --------------------------------------------------------------------
    def _reply(self, kind: PacketKind, guid: uuid.UUID) -> None:
        self._inbound.put(control_packet(kind, guid))

    def _on_packet(self, packet: OutOfProcPacket) -> None:
        kind, guid = packet.kind, packet.guid
        try:
            if kind is PacketKind.DATA:
                self._on_data(packet)
                self._reply(PacketKind.DATA_ACK, guid)
            elif kind is PacketKind.COMMAND:
                self._reply(PacketKind.COMMAND_ACK, guid)
            elif kind is PacketKind.SIGNAL:
                self._signal(SIGNAL_STOP, guid)
                self._reply(PacketKind.SIGNAL_ACK, guid)
            elif kind is PacketKind.CLOSE and guid != NIL_GUID:
                if guid in self._commands_started:
                    self._commands_started.discard(guid)
                    with contextlib.suppress(WSManFaultError):  # already gone: nothing to free
                        self._signal(SIGNAL_TERMINATE, guid)
                self._reply(PacketKind.CLOSE_ACK, guid)
            elif kind is PacketKind.CLOSE:
                if self._selectors is not None:
                    # a Receive still waiting on the shell fails when it goes: expected now
                    self._deleting = True
                    self._control.delete(self.resource_uri, selector_set=self._selectors)
                    self._selectors = None
                self._reply(PacketKind.CLOSE_ACK, guid)
            else:
                raise TransportError(f"{self.description}: the client sent a {kind.value} packet")
        except TransportError:
            raise
        except _WSMAN_FAILURES as exc:
            raise translate_error(exc, self.description) from exc

    def _on_data(self, packet: OutOfProcPacket) -> None:
        guid, data = packet.guid, packet.data
        stream = "pr" if packet.stream == "PromptResponse" else "stdin"
        if guid == NIL_GUID and self._selectors is None:
            self._create(data)
            self._tasks.put(_ReceiveTask(None, frozenset({_RUNSPACEPOOL_STATE})))
        elif guid == NIL_GUID:
            self._send(stream, data, None)
            if _PUBLIC_KEY in fragment_message_types(data):
                self._tasks.put(_ReceiveTask(None, frozenset({_ENCRYPTED_SESSION_KEY})))
        elif guid not in self._commands_started:
            self._command(guid, data)
            self._commands_started.add(guid)
            self._tasks.put(_ReceiveTask(guid))
        else:
            self._send(stream, data, guid)

    def _create(self, fragments: bytes) -> None:
        rsp = NAMESPACES["rsp"]
        shell = ET.Element(f"{{{rsp}}}Shell", ShellId=self.shell_id)
        ET.SubElement(shell, f"{{{rsp}}}InputStreams").text = "stdin pr"
        ET.SubElement(shell, f"{{{rsp}}}OutputStreams").text = "stdout"
        creation = ET.SubElement(shell, "creationXml", xmlns="http://schemas.microsoft.com/powershell")
        creation.text = base64.b64encode(fragments).decode("ascii")
        options = OptionSet()
        options.add_option("protocolversion", PROTOCOL_VERSION, {"MustComply": "true"})
        response = self._control.create(self.resource_uri, shell, option_set=options)
        selectors = SelectorSet()
        found = response.find(
            "wst:ResourceCreated/wsa:ReferenceParameters/wsman:SelectorSet", NAMESPACES
        )
        for selector in found if found is not None else []:
            selectors.add_option(selector.attrib["Name"], selector.text or "")
        if not selectors.values:
            selectors.add_option("ShellId", self.shell_id)
        self._selectors = selectors

    def _command(self, pipeline_id: uuid.UUID, fragments: bytes) -> None:
        rsp = NAMESPACES["rsp"]
        line = ET.Element(f"{{{rsp}}}CommandLine", CommandId=str(pipeline_id).upper())
        ET.SubElement(line, f"{{{rsp}}}Command")
        ET.SubElement(line, f"{{{rsp}}}Arguments").text = base64.b64encode(fragments).decode(
            "ascii"
        )
        options = OptionSet()  # as the recorded clients send it (a real server checks it)
        options.add_option("WINRS_SKIP_CMD_SHELL", "False")
        self._control.command(
            self.resource_uri, line, option_set=options, selector_set=self._selectors
        )

    def _send(self, stream: str, fragments: bytes, pipeline_id: uuid.UUID | None) -> None:
        rsp = NAMESPACES["rsp"]
        send = ET.Element(f"{{{rsp}}}Send")
        element = ET.SubElement(send, f"{{{rsp}}}Stream", Name=stream)
        if pipeline_id is not None:
            element.attrib["CommandId"] = str(pipeline_id).upper()
        element.text = base64.b64encode(fragments).decode("ascii")
        self._control.send(self.resource_uri, send, selector_set=self._selectors)

    def _signal(self, code: str, pipeline_id: uuid.UUID) -> None:
        rsp = NAMESPACES["rsp"]
        signal = ET.Element(f"{{{rsp}}}Signal", CommandId=str(pipeline_id).upper())
        ET.SubElement(signal, f"{{{rsp}}}Code").text = code
        self._control.signal(self.resource_uri, signal, selector_set=self._selectors)

    # -- WSMan → client --------------------------------------------------------------------
    def _receive_loop(self) -> None:
        while True:
            task = self._tasks.get()
            if task is None or self._closed:
                return
            try:
                self._receive_until_done(task)
            except _WSMAN_FAILURES as exc:
                if self._closed or self._deleting:
                    return
                if task.command_id is not None and task.command_id not in self._commands_started:
                    continue  # released (Terminate) while receiving: its receive just ends
                self._inbound.put(translate_error(exc, self.description))
                return
            except Exception as exc:  # a bug must break the session, not leave it waiting
                failure = TransportError(
                    f"{self.description}: receiving failed: {type(exc).__name__}: {exc}"
                )
                failure.__cause__ = exc
                self._inbound.put(failure)
                return

    def _receive_until_done(self, task: _ReceiveTask) -> None:
        rsp = NAMESPACES["rsp"]
        guid = task.command_id or NIL_GUID
        while not self._closed:
            receive = ET.Element(f"{{{rsp}}}Receive")
            desired = ET.SubElement(receive, f"{{{rsp}}}DesiredStream")
            desired.text = "stdout"
            if task.command_id is not None:
                desired.attrib["CommandId"] = str(task.command_id).upper()
            options = OptionSet()
            options.add_option("WSMAN_CMDSHELL_OPTION_KEEPALIVE", "True")
            try:
                response = self._receiver.receive(
                    self.resource_uri, receive, option_set=options,
                    selector_set=self._selectors, timeout=self.operation_timeout,
                )
            except WSManFaultError as fault:
                if fault.code == TIMED_OUT_CODE:
                    continue  # nothing within the operation timeout: ask again
                raise
            seen: set[int] = set()
            for stream in response.findall("rsp:ReceiveResponse/rsp:Stream", NAMESPACES):
                if not stream.text:
                    continue
                fragments = base64.b64decode(stream.text)
                seen.update(fragment_message_types(fragments))
                self._inbound.put(data_packet(fragments, guid))
            state = response.find("rsp:ReceiveResponse/rsp:CommandState", NAMESPACES)
            if task.command_id is not None:
                if state is not None and state.attrib.get("State") == COMMAND_DONE:
                    return
            elif seen & task.until:
                return
