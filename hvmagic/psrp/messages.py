"""PSRP fragments and message headers, parsed without psrpcore (sans-IO).

psrpcore reassembles fragments by slicing a ``bytearray`` per fragment and then deserializes
every message with its own (slow) CLIXML reader. hvmagic reassembles fragments here, reads the
40-byte message header, and decides per message type who decodes the body: bulk records go to
hvmagic's decoder, state-driving messages to psrpcore (see :mod:`hvmagic.psrp.client`).

Wire layout (MS-PSRP 2.2.4 and 2.2.1; ``psdirect-protocol.md`` §3.4)::

    fragment: ObjectId u64 BE | FragmentId u64 BE | flags u8 (0x1 start, 0x2 end)
              | BlobLength u32 BE | blob
    message:  Destination u32 LE | MessageType u32 LE | RPID GUID (bytes_le)
              | PID GUID (bytes_le, zero for pool messages) | UTF-8 (BOM) CLIXML
"""

from __future__ import annotations

import struct
import uuid
from dataclasses import dataclass

from hvmagic.errors import LimitExceededError, ProtocolError

FRAGMENT_HEADER = struct.Struct(">QQBI")
MESSAGE_HEADER = struct.Struct("<II16s16s")
FRAGMENT_START = 0x1
FRAGMENT_END = 0x2
_BOM = b"\xef\xbb\xbf"
_NIL_BYTES = bytes(16)

#: PowerShell's own client accepts objects up to 10 MiB by default
#: (``BaseTransportManager.MaximumReceivedObjectSize``); hvmagic allows more because a notebook
#: user asking for a big object wants it, but stays bounded against a runaway peer.
DEFAULT_MAX_MESSAGE_BYTES = 256 << 20

DESTINATION_CLIENT = 1
DESTINATION_SERVER = 2


@dataclass(slots=True)
class PSRPMessage:
    """One reassembled PSRP message."""

    object_id: int
    destination: int
    message_type: int
    runspace_pool_id: uuid.UUID
    #: ``None`` for runspace-pool messages
    pipeline_id: uuid.UUID | None
    #: the whole message (header included), for handing on to psrpcore unchanged
    raw: bytes
    #: offset of the CLIXML body in :attr:`raw` (after the header and any BOM)
    body_offset: int

    @property
    def body(self) -> bytes:
        return self.raw[self.body_offset :]


def build_fragment(object_id: int, data: bytes, fragment_id: int = 0, end: bool = True) -> bytes:
    """One fragment holding ``data`` (used to hand whole messages to psrpcore)."""
    flags = (FRAGMENT_START if fragment_id == 0 else 0) | (FRAGMENT_END if end else 0)
    return FRAGMENT_HEADER.pack(object_id, fragment_id, flags, len(data)) + data


class FragmentAssembler:
    """Turn a stream of PSRP fragments into :class:`PSRPMessage` objects.

    Fragments may arrive split across or packed into ``Data`` payloads (the server writes one
    per line, but MS-PSRP allows any packing), so a partial fragment is buffered. Fragments of
    different objects may interleave (a pipeline's output and a pool message); each object's
    fragments must arrive in order, starting with the start flag, as PowerShell sends them.
    """

    def __init__(self, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> None:
        self.max_message_bytes = max_message_bytes
        self._pending = b""
        self._partial: dict[int, tuple[int, list[bytes], int]] = {}  # oid → next id, parts, size
        self._guids: dict[bytes, uuid.UUID] = {}

    def feed(self, payload: bytes) -> list[PSRPMessage]:
        """All messages completed by ``payload`` (usually zero or one)."""
        data = self._pending + payload if self._pending else payload
        messages: list[PSRPMessage] = []
        offset = 0
        size = len(data)
        unpack_from = FRAGMENT_HEADER.unpack_from
        while size - offset >= 21:
            object_id, fragment_id, flags, length = unpack_from(data, offset)
            end = offset + 21 + length
            if end > size:
                break
            blob = data[offset + 21 : end]
            offset = end
            if flags & FRAGMENT_START:
                if fragment_id != 0:
                    raise ProtocolError(
                        f"PSRP fragment {fragment_id} of object {object_id} carries the start flag"
                    )
                if object_id in self._partial:
                    raise ProtocolError(f"PSRP object {object_id} started twice")
                if flags & FRAGMENT_END:
                    messages.append(self._message(object_id, blob))
                    continue
                self._check_size(object_id, length)
                self._partial[object_id] = (1, [blob], length)
                continue
            state = self._partial.get(object_id)
            if state is None:
                raise ProtocolError(
                    f"PSRP fragment {fragment_id} of object {object_id} arrived without its start"
                )
            expected, parts, total = state
            if fragment_id != expected:
                raise ProtocolError(
                    f"PSRP object {object_id}: expected fragment {expected}, got {fragment_id}"
                )
            parts.append(blob)
            total += length
            self._check_size(object_id, total)
            if flags & FRAGMENT_END:
                del self._partial[object_id]
                messages.append(self._message(object_id, b"".join(parts)))
            else:
                self._partial[object_id] = (expected + 1, parts, total)
        self._pending = data[offset:] if offset < size else b""
        if len(self._pending) > self.max_message_bytes + 21:
            raise LimitExceededError("PSRP fragment larger than the message limit")
        return messages

    def _check_size(self, object_id: int, total: int) -> None:
        if total > self.max_message_bytes:
            self._partial.pop(object_id, None)
            raise LimitExceededError(
                f"PSRP object {object_id} exceeds the {self.max_message_bytes}-byte message limit"
            )

    def _guid(self, raw: bytes) -> uuid.UUID:
        guid = self._guids.get(raw)
        if guid is None:
            guid = uuid.UUID(bytes_le=raw)
            if len(self._guids) < 1024:
                self._guids[raw] = guid
        return guid

    def _message(self, object_id: int, raw: bytes) -> PSRPMessage:
        if len(raw) < 40:
            raise ProtocolError(f"PSRP message {object_id} is shorter than its 40-byte header")
        destination, message_type, rpid, pid = MESSAGE_HEADER.unpack_from(raw)
        body_offset = 43 if raw.startswith(_BOM, 40) else 40
        return PSRPMessage(
            object_id,
            destination,
            message_type,
            self._guid(rpid),
            None if pid == _NIL_BYTES else self._guid(pid),
            raw,
            body_offset,
        )

    @property
    def incomplete_objects(self) -> int:
        return len(self._partial)
