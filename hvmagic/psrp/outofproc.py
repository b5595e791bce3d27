"""The OutOfProc packet framing shared by PowerShell Direct and ``pwsh -s`` (sans-IO).

Each packet is one XML element on one line (``psdirect-protocol.md`` §3.1-3.2)::

    <Data Stream='Default' PSGuid='00000000-0000-0000-0000-000000000000'>BASE64</Data>
    <DataAck PSGuid='…' />   <Command …/>   <CommandAck …/>   <Close …/>   <CloseAck …/>
    <Signal …/>   <SignalAck …/>

:func:`encode_packet` writes exactly the text PowerShell writes (single quotes, lower-case GUID,
``\\n`` line ends — PowerShell's ``ReadLine`` accepts ``\\n`` and ``\\r\\n``).
:class:`PacketReader` is tolerant the way PowerShell's XmlReader is: either quote style, any
attribute order and spacing, ``\\r\\n``, a leading BOM, comments and processing instructions.
It is strict where PowerShell is strict: unknown elements, a ``Data`` element without exactly
``Stream`` and ``PSGuid``, a control element with anything but ``PSGuid``, bad base64, an
over-long line. Error lines (``__HyperVSocketError__:`` on the Hyper-V socket,
``__NamedPipeError__:`` on named pipes and ``-sshs``) become :class:`TransportError`.

Bulk output arrives here as thousands of ``Data`` lines, so the common shape is matched by one
precompiled regular expression and GUID objects are cached; only unusual lines take the general
path.
"""

from __future__ import annotations

import base64
import binascii
import enum
import re
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from hvmagic.errors import ProtocolError, TransportError

NIL_GUID = uuid.UUID(int=0)

#: ``DataPriorityType`` names PowerShell accepts in ``Stream='…'``
DATA_STREAMS = ("Default", "PromptResponse")


class PacketKind(enum.Enum):
    DATA = "Data"
    DATA_ACK = "DataAck"
    COMMAND = "Command"
    COMMAND_ACK = "CommandAck"
    CLOSE = "Close"
    CLOSE_ACK = "CloseAck"
    SIGNAL = "Signal"
    SIGNAL_ACK = "SignalAck"


_KIND_BY_NAME = {kind.value: kind for kind in PacketKind}


@dataclass(frozen=True, slots=True)
class OutOfProcPacket:
    kind: PacketKind
    guid: uuid.UUID
    data: bytes = b""
    stream: str = "Default"

    def __repr__(self) -> str:
        extra = f", {len(self.data)} bytes, {self.stream}" if self.kind is PacketKind.DATA else ""
        return f"<{self.kind.value} {self.guid}{extra}>"


def data_packet(data: bytes, guid: uuid.UUID = NIL_GUID, stream: str = "Default") -> bytes:
    """One ``<Data>`` line carrying ``data`` (PSRP fragments) for ``guid``."""
    if stream not in DATA_STREAMS:
        raise ValueError(f"unknown OutOfProc data stream {stream!r}")
    return b"<Data Stream='%s' PSGuid='%s'>%s</Data>\n" % (
        stream.encode("ascii"),
        str(guid).encode("ascii"),
        binascii.b2a_base64(data, newline=False),
    )


def control_packet(kind: PacketKind, guid: uuid.UUID = NIL_GUID) -> bytes:
    """One ``<Command|Close|Signal|…Ack PSGuid='…' />`` line."""
    if kind is PacketKind.DATA:
        raise ValueError("use data_packet() for Data packets")
    return b"<%s PSGuid='%s' />\n" % (kind.value.encode("ascii"), str(guid).encode("ascii"))


def encode_packet(packet: OutOfProcPacket) -> bytes:
    if packet.kind is PacketKind.DATA:
        return data_packet(packet.data, packet.guid, packet.stream)
    return control_packet(packet.kind, packet.guid)


# The exact shape PowerShell (and encode_packet) writes; everything else goes the general way.
_FAST_DATA = re.compile(
    rb"<Data Stream='(Default|PromptResponse)' PSGuid='([0-9a-fA-F-]{36})'>([A-Za-z0-9+/=]*)</Data>"
)
_ELEMENT = re.compile(
    rb"<([A-Za-z]+)((?:\s+[A-Za-z_:][\w.:-]*\s*=\s*(?:'[^'<]*'|\"[^\"<]*\"))*)\s*"
    rb"(?:/>|>([^<]*)</\1\s*>)",
)
_ATTRIBUTE = re.compile(rb"([A-Za-z_:][\w.:-]*)\s*=\s*(?:'([^']*)'|\"([^\"]*)\")")
_BOM = b"\xef\xbb\xbf"
#: a Data line of the default stream up to its GUID (31 bytes; the GUID is 36, then "'>")
_DATA_DEFAULT = b"<Data Stream='Default' PSGuid='"
_DATA_DEFAULT_MIN = len(_DATA_DEFAULT) + 36 + 2 + len(b"</Data>")
#: ``a2b_base64(strict_mode=True)`` rejects exactly what ``b64decode(validate=True)`` rejects
#: and more (misplaced padding), in one C pass instead of a regex check and a decode
_STRICT_BASE64 = sys.version_info >= (3, 11)
_a2b_base64: Callable[..., bytes] = binascii.a2b_base64  # (typed for 3.10, which lacks it)


class PacketReader:
    """Split a byte stream into lines and parse each into an :class:`OutOfProcPacket`.

    Feed bytes with :meth:`receive_data`; take packets with :meth:`next_packet` until it
    returns ``None``. ``max_line_bytes`` bounds memory for a peer that never sends a newline
    (PowerShell's own limit is the 10 MiB per-object receive limit spread over ≤32 KiB
    fragments per line, so 64 MiB is generous).
    """

    def __init__(
        self,
        max_line_bytes: int = 64 << 20,
        error_prefixes: tuple[str, ...] = ("__HyperVSocketError__:", "__NamedPipeError__:"),
    ) -> None:
        self.max_line_bytes = max_line_bytes
        self._error_prefixes = tuple(p.encode("ascii") for p in error_prefixes)
        self._buffer = bytearray()
        self._start = 0  # parse position in _buffer; compacted lazily to avoid O(n²) copies
        self._first_line = True
        self._guids: dict[bytes, uuid.UUID] = {}
        self.lines_read = 0

    def receive_data(self, data: bytes) -> None:
        self._buffer += data

    @property
    def pending_bytes(self) -> int:
        """Bytes received but not yet part of a returned packet (an incomplete line)."""
        return len(self._buffer) - self._start

    def next_packet(self) -> OutOfProcPacket | None:
        buffer = self._buffer
        while True:
            start = self._start
            end = buffer.find(b"\n", start)
            if end < 0:
                if len(buffer) - start > self.max_line_bytes:
                    raise ProtocolError(
                        f"OutOfProc line longer than {self.max_line_bytes} bytes without a newline"
                    )
                self._compact()
                return None
            self._start = end + 1
            if end - start > self.max_line_bytes:
                raise ProtocolError(f"OutOfProc line longer than {self.max_line_bytes} bytes")
            self.lines_read += 1
            if _STRICT_BASE64 and not self._first_line and buffer.startswith(_DATA_DEFAULT, start):
                packet = self._default_data(buffer, start, end)
                if packet is not None:
                    return packet
            packet = self._parse_line(bytes(buffer[start:end]))
            if packet is not None:
                return packet

    def _default_data(self, buffer: bytearray, start: int, end: int) -> OutOfProcPacket | None:
        """The line PowerShell writes for every output object, read in place: no regex over
        the base64 and no copy of the line. ``None`` sends anything unexpected (a GUID not
        seen yet, bad base64, another shape) to the general path, which decides and reports."""
        stop = end - 1 if end > start and buffer[end - 1] == 13 else end  # "\r\n" endings
        if (
            stop - start < _DATA_DEFAULT_MIN
            or not buffer.startswith(b"'>", start + 67)
            or not buffer.endswith(b"</Data>", start, stop)
        ):
            return None
        guid = self._guids.get(bytes(buffer[start + 31 : start + 67]))
        if guid is None:
            return None
        try:
            data = _a2b_base64(buffer[start + 69 : stop - 7], strict_mode=True)
        except binascii.Error:
            return None
        return OutOfProcPacket(PacketKind.DATA, guid, data, "Default")

    def _compact(self) -> None:
        if self._start:
            del self._buffer[: self._start]
            self._start = 0

    def _guid(self, text: bytes) -> uuid.UUID:
        guid = self._guids.get(text)
        if guid is None:
            try:
                guid = uuid.UUID(text.decode("ascii"))
            except ValueError as exc:
                raise ProtocolError(f"invalid PSGuid {_preview(text)}") from exc
            if len(self._guids) < 4096:  # a session sees a handful of pipelines; stay bounded
                self._guids[text] = guid
        return guid

    def _parse_line(self, line: bytes) -> OutOfProcPacket | None:
        if line.endswith(b"\r"):
            line = line[:-1]
        if self._first_line:
            self._first_line = False
            if line.startswith(_BOM):
                line = line[3:]
        match = _FAST_DATA.fullmatch(line)
        if match is not None:
            return OutOfProcPacket(
                PacketKind.DATA,
                self._guid(match.group(2)),
                _b64decode(match.group(3)),
                match.group(1).decode("ascii"),
            )
        stripped = line.strip()
        if not stripped or stripped.startswith((b"<?", b"<!--")):
            return None  # blank lines, comments and PIs carry nothing (XmlReader skips them too)
        for prefix in self._error_prefixes:
            if stripped.startswith(prefix):
                text = stripped[len(prefix) :].decode("utf-8", "replace").strip()
                raise TransportError(f"PowerShell server reported an error: {text}")
        return self._parse_general(stripped)

    def _parse_general(self, line: bytes) -> OutOfProcPacket:
        match = _ELEMENT.fullmatch(line)
        if match is None:
            raise ProtocolError(f"malformed OutOfProc packet: {_preview(line)}")
        name = match.group(1).decode("ascii")
        kind = _KIND_BY_NAME.get(name)
        if kind is None:
            raise ProtocolError(f"An unknown element {name!r} was received in an OutOfProc packet")
        attributes: dict[str, bytes] = {}
        for attr in _ATTRIBUTE.finditer(match.group(2)):
            key = attr.group(1).decode("ascii")
            if key in attributes:
                raise ProtocolError(f"duplicate attribute {key!r} in {name} packet")
            value = attr.group(2) if attr.group(2) is not None else attr.group(3)
            attributes[key] = value
        body = match.group(3)
        if kind is PacketKind.DATA:
            if set(attributes) != {"Stream", "PSGuid"}:
                raise ProtocolError(
                    "a Data packet needs exactly the attributes Stream and PSGuid: "
                    + _preview(line)
                )
            stream = attributes["Stream"].decode("ascii")
            if stream not in DATA_STREAMS:
                raise ProtocolError(f"unknown Data stream {stream!r}")
            if body is None:
                raise ProtocolError("a Data packet must contain base64 text")
            return OutOfProcPacket(
                kind, self._guid(attributes["PSGuid"]), _b64decode(body.strip()), stream
            )
        if set(attributes) != {"PSGuid"}:
            raise ProtocolError(f"a {name} packet needs exactly the attribute PSGuid")
        if body is not None and body.strip():
            raise ProtocolError(f"a {name} packet carries no content: {_preview(line)}")
        return OutOfProcPacket(kind, self._guid(attributes["PSGuid"]))


def _b64decode(text: bytes) -> bytes:
    try:
        # validate=True rejects characters outside the alphabet (a2b_base64's strict_mode
        # would too, but only exists on Python >= 3.11).
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ProtocolError(f"invalid base64 in Data packet: {exc}") from exc


def _preview(data: bytes, limit: int = 120) -> str:
    text = data[:limit].decode("utf-8", "replace")
    return repr(text + ("…" if len(data) > limit else ""))
