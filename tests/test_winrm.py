"""WinRM: hvmagic's PSRP client over pypsrp's WSMan, replayed against real Windows exchanges.

The recordings (``../shared/corpus/psrp-recordings/*.yml``, made by pypsrp against Windows
PowerShell 5.1 hosts) hold every SOAP request and the server's response. A fake HTTP layer under
a real :class:`pypsrp.wsman.WSMan` answers each request hvmagic sends with the recorded response
of the same operation, in order (matching on the operation, never on generated ids: MessageID →
RelatesTo is rewritten as a server would). Every request hvmagic sends is checked against the
shape of the recorded request of that operation: body elements and attributes, option and
selector names, and the PSRP message types inside every base64 fragment blob.

What the real Windows server answered then flows through the whole hvmagic stack — Session,
PSRPClient, the CLIXML decoder — so the run's Result holds the recorded streams.
"""

from __future__ import annotations

import base64
import pickle
import re
import threading
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import psrpcore
import pytest
import yaml
from pypsrp.exceptions import WinRMTransportError
from pypsrp.wsman import NAMESPACES, WSMan

from hvmagic.errors import SessionBrokenError
from hvmagic.hop import open_remote_session
from hvmagic.psrp.client import PSRPClient
from hvmagic.psrp.outofproc import PacketKind, control_packet
from hvmagic.session import Session
from hvmagic.transports.winrm import (
    SIGNAL_STOP,
    SIGNAL_TERMINATE,
    TIMED_OUT_CODE,
    WinRMAuthenticationError,
    WinRMTransport,
    WSManFault,
    fragment_message_types,
    translate_error,
)

RECORDINGS = "psrp-recordings"
S = "{http://www.w3.org/2003/05/soap-envelope}"
WSA = "{http://schemas.xmlsoap.org/ws/2004/08/addressing}"


def action_of(envelope: ET.Element) -> str:
    action = envelope.find(f"{S}Header/{WSA}Action")
    assert action is not None and action.text
    return action.text.rsplit("/", 1)[-1]


def kind_of(envelope: ET.Element) -> tuple[str, bool]:
    """The operation and whether it addresses a command (Receive/Send/Signal) or the shell."""
    body = envelope.find(f"{S}Body")
    scoped = body is not None and any("CommandId" in e.attrib for e in body.iter())
    return action_of(envelope), scoped


def psrp_types(text: str) -> list[int] | None:
    try:
        data = base64.b64decode(text, validate=True)
    except (ValueError, TypeError):
        return None
    types = fragment_message_types(data)
    return types or None


def shape(element: ET.Element) -> Any:
    """Tag, attribute names and children, with base64 text reduced to its PSRP message types
    (ids and payloads differ between runs; the structure must not)."""
    text = (element.text or "").strip()
    if text and (types := psrp_types(text)) is not None:
        content: Any = ("psrp", tuple(types))
    elif re.fullmatch(r"[0-9A-Fa-f-]{36}", text):
        content = "guid"
    else:
        content = text
    return (element.tag, tuple(sorted(element.attrib)), content,
            tuple(shape(child) for child in element))


def header_shape(envelope: ET.Element) -> Any:
    header = envelope.find(f"{S}Header")
    assert header is not None
    wsman = "{http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd}"
    uri = header.find(f"{wsman}ResourceURI")
    options = sorted((o.get("Name"), o.text) for o in header.iter(f"{wsman}Option"))
    selectors = sorted(str(s.get("Name")) for s in header.iter(f"{wsman}Selector"))
    return action_of(envelope), uri.text if uri is not None else None, options, selectors


class ReplayHTTP:
    """Stands in for pypsrp's ``_TransportHTTP``: answers from a recording, checks each request."""

    endpoint = "https://hv01.replay.invalid:5986/wsman"

    def __init__(self, exchanges: list[dict[str, Any]], signal_template: tuple[str, str]) -> None:
        self.exchanges = exchanges
        self.used = [False] * len(exchanges)
        self.signal_template = signal_template
        self.sent: list[tuple[str, bool]] = []
        self.signals: list[str] = []
        self.lock = threading.Lock()

    def _next(self, kind: tuple[str, bool]) -> int:
        for index, exchange in enumerate(self.exchanges):
            if not self.used[index] and kind_of(ET.fromstring(exchange["request"])) == kind:
                earlier = [kind_of(ET.fromstring(e["request"]))[0]
                           for i, e in enumerate(self.exchanges[:index]) if not self.used[i]]
                # order: nothing that opens a shell or a command may be skipped over
                assert not {"Create", "Command"} & set(earlier), (kind, earlier)
                return index
        raise AssertionError(f"hvmagic sent {kind} but the recording has no more of those")

    def send(self, message: bytes, *, retries_on_read_timeout: int = 0,
             timeout: Any = None) -> bytes:
        ours = ET.fromstring(message)
        kind = kind_of(ours)
        message_id = ours.find(f"{S}Header/{WSA}MessageID")
        assert message_id is not None
        with self.lock:
            self.sent.append(kind)
            if kind[0] == "Signal":
                # pypsrp's recordings signal WinRS commands only: compare with that shape, then
                # answer as WinRM does (an empty SignalResponse)
                code = ours.find(f"{S}Body/{{{NAMESPACES['rsp']}}}Signal/"
                                 f"{{{NAMESPACES['rsp']}}}Code")
                assert code is not None and code.text
                self.signals.append(code.text)
                recorded_text, response = self.signal_template
            else:
                index = self._next(kind)
                self.used[index] = True
                exchange = self.exchanges[index]
                recorded_text = exchange["request"]
                response = exchange["response"]
            recorded = ET.fromstring(recorded_text)
            assert header_shape(ours)[1:3] == header_shape(recorded)[1:3] or kind[0] == "Signal"
            ours_body, recorded_body = ours.find(f"{S}Body"), recorded.find(f"{S}Body")
            assert ours_body is not None and recorded_body is not None
            if kind[0] == "Signal":  # same elements and attributes; the code is PowerShell's
                for element in (*ours_body.iter(), *recorded_body.iter()):
                    if element.tag.endswith("}Code"):
                        element.text = "code"
            assert shape(ours_body) == shape(recorded_body), (
                kind, shape(ours_body), shape(recorded_body))
            relates = re.sub(r"<a:RelatesTo>[^<]*</a:RelatesTo>",
                             f"<a:RelatesTo>{message_id.text}</a:RelatesTo>", response)
            if kind[0] != "Signal" and exchange.get("transport_error"):
                error = exchange["transport_error"]
                raise WinRMTransportError(error["protocol"], error["code"], relates)
        return relates.encode("utf-8")

    def close(self) -> None:
        pass


def load(corpus_dir: Path, name: str, key: str = "messages") -> list[dict[str, Any]]:
    path = corpus_dir / RECORDINGS / f"jborean93__pypsrp__{name}.yml"
    return list(yaml.safe_load(path.read_text(encoding="utf-8"))[key])


def signal_template(corpus_dir: Path) -> tuple[str, str]:
    """The recorded Signal exchange (request, response) of a WinRS command."""
    for exchange in load(corpus_dir, "test_client_copy_file_empty"):
        if "SignalResponse" in exchange["response"]:
            return str(exchange["request"]), str(exchange["response"])
    raise AssertionError("no recorded SignalResponse")


def recorded_ids(exchanges: list[dict[str, Any]]) -> tuple[uuid.UUID, uuid.UUID]:
    """The runspace pool id (in the creationXml fragments) and the pipeline id (CommandId)."""
    create = ET.fromstring(exchanges[0]["request"])
    blob = next(e.text for e in create.iter() if e.tag.endswith("creationXml"))
    fragments = base64.b64decode(blob or "")
    pool_id = uuid.UUID(bytes_le=fragments[21 + 8 : 21 + 24])
    command = next(e for e in exchanges if "<rsp:CommandLine" in e["request"])
    command_id = uuid.UUID(re.search(r'CommandId="([^"]+)"', command["request"]).group(1))
    # pypsrp wrote the CommandId's bytes into the PSRP header big-endian and the server echoed
    # them, so the messages name the pipeline by those bytes read the .NET (little-endian) way
    return pool_id, uuid.UUID(bytes_le=command_id.bytes)


def replay_session(corpus_dir: Path, name: str, key: str = "messages"
                   ) -> tuple[Session, ReplayHTTP]:
    exchanges = load(corpus_dir, name, key)
    fake = ReplayHTTP(exchanges, signal_template(corpus_dir))

    def wsman() -> WSMan:
        real = WSMan("hv01.replay.invalid", username="u", password="p", auth="basic", ssl=True)
        real.transport = fake  # type: ignore[assignment]  # the HTTP layer only
        return real

    pool_id, pipeline_id = recorded_ids(exchanges)
    client = PSRPClient(pipeline_id_factory=lambda: pipeline_id)
    # the recorded server answers for the recorded pool: hvmagic's client takes its id
    client.pool = psrpcore.ClientRunspacePool(host=client.host_info, runspace_pool_id=pool_id)
    transport = WinRMTransport("hv01", wsman_factory=wsman, operation_timeout=5)
    session = Session(transport, name="hv01", client=client)
    session._open(30)
    return session, fake


def test_all_six_streams_from_a_real_windows_host(corpus_dir: Path) -> None:
    session, fake = replay_session(corpus_dir, "test_psrp_stream_output_invocation")
    try:
        result = session.run("anything: the recorded server answers")
        assert result.state == "Completed"
        # what the recorded script wrote to each stream (Write-Output 'output stream' …)
        assert result.output == ["output stream"]
        for name, text in (("errors", "error stream"), ("warnings", "warning stream"),
                           ("verbose", "verbose stream"), ("debug", "debug stream"),
                           ("information", "information stream")):
            assert [record.message for record in getattr(result, name)] == [text], name
        assert [p.activity for p in result.progress] == ["Preparing modules for first use."]
        assert result.errors[0].fully_qualified_error_id == (
            "Microsoft.PowerShell.Commands.WriteErrorException")
    finally:
        session.close()
    # the operations, in order: the recorded flow plus the pipeline's release (Terminate)
    assert [k[0] for k in fake.sent] == [
        "Create", "Receive", "Receive", "Command", "Receive", "Signal", "Delete",
    ]
    assert fake.signals == [SIGNAL_TERMINATE]
    assert all(fake.used)


def test_timed_out_receives_are_retried_not_fatal(corpus_dir: Path) -> None:
    """The recorded w:TimedOut faults (one over HTTP 500) only mean: ask again."""
    session, fake = replay_session(corpus_dir, "test_psrp_long_running_cmdlet")
    try:
        result = session.run("Start-Sleep")
        assert result.state == "Completed" and result.output == ["hi"]
    finally:
        session.close()
    receives = [k for k in fake.sent if k == ("Receive", True)]
    assert len(receives) == 3 and all(fake.used)


def test_host_call_from_a_real_windows_host(corpus_dir: Path) -> None:
    session, _fake = replay_session(corpus_dir, "test_psrp_pshost_methods")
    try:
        result = session.run("$host.CurrentCulture; $host.SetShouldExit(1)")
        culture = result.output[0]
        assert culture["Name"] == "en-US"
        assert culture.type_names[0] == "System.Globalization.CultureInfo"
    finally:
        session.close()


def test_stop_is_powershells_signal(corpus_dir: Path) -> None:
    """An OutOfProc Signal becomes WSMan's Signal with PowerShell's (misspelled) stop code."""
    session, fake = replay_session(corpus_dir, "test_psrp_pshost_methods")
    try:
        pid = session._client._new_pipeline_id()
        session.run("x")
        session._transport.send(control_packet(PacketKind.SIGNAL, pid))
    finally:
        session.close()
    assert fake.signals == [SIGNAL_TERMINATE, SIGNAL_STOP] == [
        SIGNAL_TERMINATE, "powershell/signal/crtl_c"]
    assert [k[0] for k in fake.sent][-3:] == ["Signal", "Signal", "Delete"]


def recorded_fault(corpus_dir: Path) -> str:
    for exchange in load(corpus_dir, "test_psrp_long_running_cmdlet"):
        if "w:TimedOut" in exchange["response"]:
            return str(exchange["response"])
    raise AssertionError("no recorded fault")


def test_recorded_fault_maps_to_a_typed_error(corpus_dir: Path) -> None:
    fault = WSMan._parse_wsman_fault(recorded_fault(corpus_dir))
    error = translate_error(fault, "PowerShell over WinRM to hv01")
    assert isinstance(error, WSManFault)
    assert error.code == TIMED_OUT_CODE
    assert "0x80338029" in str(error) and "WS-Management service" in str(error)


def test_fault_at_create_is_raised_typed_by_connect(corpus_dir: Path) -> None:
    exchanges = load(corpus_dir, "test_psrp_stream_output_invocation")[:1]
    exchanges[0] = {**exchanges[0], "response": recorded_fault(corpus_dir),
                    "transport_error": {"protocol": "http", "code": 500}}
    fake = ReplayHTTP(exchanges, signal_template(corpus_dir))

    def wsman() -> WSMan:
        real = WSMan("hv01.replay.invalid", username="u", password="p", auth="basic", ssl=True)
        real.transport = fake  # type: ignore[assignment]
        return real

    transport = WinRMTransport("hv01", wsman_factory=wsman)
    with pytest.raises(WSManFault) as caught:
        open_remote_session(transport, name="hv01", host_ui=None, timeout=10)
    assert caught.value.code == TIMED_OUT_CODE
    assert not isinstance(caught.value, SessionBrokenError)


def test_authentication_failure_is_a_credential_error() -> None:
    from pypsrp.exceptions import AuthenticationError

    error = translate_error(AuthenticationError("Failed to authenticate the user u with ntlm"),
                            "PowerShell over WinRM to hv01")
    assert isinstance(error, WinRMAuthenticationError) and isinstance(error, PermissionError)


def test_password_never_in_descriptions() -> None:
    from hvmagic.clixml.values import SecureString

    transport = WinRMTransport("hv01.invalid", username="CORP\\ops",
                               password=SecureString("hunter2"), auth="ntlm")
    try:
        assert "hunter2" not in repr(transport.__dict__.get("description"))
        assert "hunter2" not in transport.description
        # the object itself and everything it holds directly (the description alone is built
        # from the host name, so checking only it could never fail)
        assert "hunter2" not in repr(transport)
        assert "hunter2" not in repr(vars(transport))
        with pytest.raises(TypeError):
            pickle.dumps(transport)  # a live transport holding a credential never pickles
    finally:
        transport.close()
