"""The OutOfProc packet codec against the exact text PowerShell writes (psdirect-protocol §3.2)."""

from __future__ import annotations

import base64
import uuid

import pytest

from hvmagic.errors import ProtocolError, TransportError
from hvmagic.psrp.outofproc import (
    NIL_GUID,
    OutOfProcPacket,
    PacketKind,
    PacketReader,
    control_packet,
    data_packet,
    encode_packet,
)

PID = uuid.UUID("9f1c2b57-3d0e-4c6a-8e61-0b5a3cc0d2f4")


def read_all(*chunks: bytes, **kwargs: object) -> list[OutOfProcPacket]:
    reader = PacketReader(**kwargs)  # type: ignore[arg-type]
    packets = []
    for chunk in chunks:
        reader.receive_data(chunk)
        while (packet := reader.next_packet()) is not None:
            packets.append(packet)
    return packets


def test_encoding_matches_powershell_text() -> None:
    assert data_packet(b"\x00\x01abc") == (
        b"<Data Stream='Default' PSGuid='00000000-0000-0000-0000-000000000000'>AAFhYmM=</Data>\n"
    )
    assert control_packet(PacketKind.COMMAND, PID) == (
        b"<Command PSGuid='9f1c2b57-3d0e-4c6a-8e61-0b5a3cc0d2f4' />\n"
    )
    assert encode_packet(OutOfProcPacket(PacketKind.DATA, PID, b"x", "PromptResponse")) == (
        b"<Data Stream='PromptResponse' PSGuid='9f1c2b57-3d0e-4c6a-8e61-0b5a3cc0d2f4'>eA==</Data>\n"
    )
    with pytest.raises(ValueError):
        data_packet(b"", stream="Urgent")
    with pytest.raises(ValueError):
        control_packet(PacketKind.DATA)


@pytest.mark.parametrize("kind", list(PacketKind))
def test_every_packet_round_trips(kind: PacketKind) -> None:
    data = bytes(range(256)) * 3 if kind is PacketKind.DATA else b""
    packet = OutOfProcPacket(kind, PID, data)
    assert read_all(encode_packet(packet)) == [packet]


def test_split_anywhere_and_crlf_bom_quotes_spacing() -> None:
    payload = base64.b64encode(b"hello").decode()
    text = (
        "\ufeff<DataAck PSGuid=\"00000000-0000-0000-0000-000000000000\"/>\r\n"
        f"<Data PSGuid = '{PID}'  Stream=\"Default\" >{payload}</Data>\r\n"
        "<!-- ignored -->\n"
        "\n"
        f"<CommandAck PSGuid='{str(PID).upper()}'></CommandAck>\n"
    ).encode()
    whole = read_all(text)
    assert whole == [
        OutOfProcPacket(PacketKind.DATA_ACK, NIL_GUID),
        OutOfProcPacket(PacketKind.DATA, PID, b"hello"),
        OutOfProcPacket(PacketKind.COMMAND_ACK, PID),
    ]
    # byte-by-byte delivery yields the same packets
    assert read_all(*(text[i : i + 1] for i in range(len(text)))) == whole


def test_incomplete_line_waits_for_more() -> None:
    reader = PacketReader()
    line = data_packet(b"abc", PID)
    reader.receive_data(line[:-5])
    assert reader.next_packet() is None
    assert reader.pending_bytes == len(line) - 5
    reader.receive_data(line[-5:])
    assert reader.next_packet() == OutOfProcPacket(PacketKind.DATA, PID, b"abc")
    assert reader.pending_bytes == 0


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (b"<Bogus PSGuid='00000000-0000-0000-0000-000000000000' />", "unknown element"),
        (f"<Data Stream='Default' PSGuid='{PID}'>not base64!</Data>".encode(), "base64"),
        (f"<Data Stream='Default' PSGuid='{PID}'>abc</Data>".encode(), "base64"),
        (f"<Data PSGuid='{PID}'>AAAA</Data>".encode(), "exactly the attributes"),
        (f"<Data Stream='Fast' PSGuid='{PID}'>AAAA</Data>".encode(), "unknown Data stream"),
        (f"<Close PSGuid='{PID}' Extra='1' />".encode(), "exactly the attribute PSGuid"),
        (b"<Close PSGuid='not-a-guid' />", "invalid PSGuid"),
        (b"plain text from a crashed process", "malformed"),
        (f"<Signal PSGuid='{PID}' PSGuid='{PID}' />".encode(), "duplicate"),
    ],
)
def test_malformed_lines_raise_protocol_error(line: bytes, message: str) -> None:
    with pytest.raises(ProtocolError, match=message):
        read_all(line + b"\n")


def test_error_prefixed_lines_are_transport_errors() -> None:
    with pytest.raises(TransportError, match="process exited: access denied"):
        read_all(b"__HyperVSocketError__: process exited: access denied\r\n")
    with pytest.raises(TransportError, match="pipe broke"):
        read_all(b"__NamedPipeError__:pipe broke\n")


def test_oversize_line_is_rejected_without_newline() -> None:
    reader = PacketReader(max_line_bytes=1024)
    reader.receive_data(b"<Data Stream='Default' PSGuid='" + b"A" * 2000)
    with pytest.raises(ProtocolError, match="longer than 1024"):
        reader.next_packet()


def test_many_lines_in_one_chunk_keep_order() -> None:
    lines = b"".join(data_packet(i.to_bytes(4, "big"), PID) for i in range(5000))
    packets = read_all(lines)
    assert [int.from_bytes(p.data, "big") for p in packets] == list(range(5000))


def test_repeated_data_lines_read_in_place_agree_with_the_general_reader() -> None:
    # After the first line of a GUID, Data lines of the default stream take a fast path:
    # CRLF endings, empty payloads, misplaced padding and stray bytes must come out exactly
    # as the general path reads (or rejects) them.
    first = data_packet(b"first", PID)
    good = [b"", b"x", b"\x00\xffpayload" * 50]
    lines = [data_packet(payload, PID) for payload in good]
    crlf = [line[:-1] + b"\r\n" for line in lines]
    packets = read_all(first, *lines, *crlf)
    assert [p.data for p in packets] == [b"first", *good, *good]
    assert {(p.kind, p.guid, p.stream) for p in packets} == {(PacketKind.DATA, PID, "Default")}
    prefix = b"<Data Stream='Default' PSGuid='%s'>" % str(PID).encode()
    for body in (b"QQ==QQ==", b"QQ=", b"Q Q==", b"=QQ=", b"QQ==</Data><Data>", b"QUJD\x00"):
        with pytest.raises(ProtocolError):
            read_all(first, prefix + body + b"</Data>\n")
    # a payload with surrounding whitespace is what the general path strips, and accepts
    assert read_all(first, prefix + b" QUJD </Data>\n")[-1].data == b"ABC"
