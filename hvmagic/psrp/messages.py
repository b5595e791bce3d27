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
from typing import Any

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
    """One reassembled PSRP message.

    The header and the CLIXML body are kept apart: the body of a large message is built once,
    straight from its fragments, instead of joining the whole message and slicing the body
    out of it (one copy of a 100 MiB object less).
    """

    object_id: int
    destination: int
    message_type: int
    runspace_pool_id: uuid.UUID
    #: ``None`` for runspace-pool messages
    pipeline_id: uuid.UUID | None
    #: the 40-byte header and the BOM when there is one
    head: bytes
    #: the CLIXML body (after the header and any BOM)
    body: bytes

    @property
    def raw(self) -> bytes:
        """The whole message (header included), for handing on to psrpcore unchanged."""
        return self.head + self.body

    @property
    def body_offset(self) -> int:
        """Offset of the CLIXML body in :attr:`raw`."""
        return len(self.head)


def build_fragment(object_id: int, data: bytes, fragment_id: int = 0, end: bool = True) -> bytes:
    """One fragment holding ``data`` (used to hand whole messages to psrpcore)."""
    flags = (FRAGMENT_START if fragment_id == 0 else 0) | (FRAGMENT_END if end else 0)
    return FRAGMENT_HEADER.pack(object_id, fragment_id, flags, len(data)) + data


#: bytes held for objects whose last fragment has not arrived yet, all objects together.
#: PowerShell sends one object's fragments back to back (at most one object per stream is in
#: flight), so a legitimate stream holds about one message; a guest opening thousands of objects
#: and never finishing them is refused at this total instead of growing without bound.
DEFAULT_MAX_INCOMPLETE_BYTES = DEFAULT_MAX_MESSAGE_BYTES
#: objects started and not finished, all together (see above: a handful in practice)
DEFAULT_MAX_INCOMPLETE_OBJECTS = 1024

_PID_SLICE = slice(24, 40)  # the PID GUID inside a message header (the first fragment's blob)


class FragmentAssembler:
    """Turn a stream of PSRP fragments into :class:`PSRPMessage` objects.

    Fragments may arrive split across or packed into ``Data`` payloads (the server writes one
    per line, but MS-PSRP allows any packing), so a partial fragment is buffered. Fragments of
    different objects may interleave (a pipeline's output and a pool message); each object's
    fragments must arrive in order, starting with the start flag, as PowerShell sends them.

    Cost is linear in the bytes fed, however they are split: a partial fragment is kept as a
    list of payloads and joined once, when it is complete. ``max_message_bytes`` bounds one
    message; ``max_incomplete_bytes``/``max_incomplete_objects`` bound everything held for
    unfinished objects together (:class:`LimitExceededError` beyond them).
    """

    def __init__(
        self,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        max_incomplete_bytes: int = DEFAULT_MAX_INCOMPLETE_BYTES,
        max_incomplete_objects: int = DEFAULT_MAX_INCOMPLETE_OBJECTS,
    ) -> None:
        self.max_message_bytes = max_message_bytes
        self.max_incomplete_bytes = max_incomplete_bytes
        self.max_incomplete_objects = max_incomplete_objects
        # the unparsed tail: payloads kept apart until the fragment they hold is complete
        self._pending: list[bytes] = []
        self._pending_size = 0
        self._pending_needed = 21  # bytes the first pending fragment needs (header first)
        self._partial: dict[int, tuple[int, list[bytes], int]] = {}  # oid → next id, parts, size
        self._incomplete_bytes = 0  # sum of the sizes in _partial
        self._guids: dict[bytes, uuid.UUID] = {}

    def feed(self, payload: bytes) -> list[PSRPMessage]:
        """All messages completed by ``payload`` (usually zero or one)."""
        if self._pending:
            self._pending.append(payload)
            self._pending_size += len(payload)
            if self._pending_size < self._pending_needed:
                self._check_pending()
                return []
            data = b"".join(self._pending)
            self._pending.clear()
            self._pending_size = 0
        else:
            data = payload
        messages: list[PSRPMessage] = []
        offset = 0
        size = len(data)
        unpack_from = FRAGMENT_HEADER.unpack_from
        view = memoryview(data)  # blobs are sliced without a copy; kept ones become bytes
        while size - offset >= 21:
            object_id, fragment_id, flags, length = unpack_from(data, offset)
            end = offset + 21 + length
            if end > size:
                break
            blob: Any = view[offset + 21 : end]
            offset = end
            if flags & FRAGMENT_START:
                if fragment_id != 0:
                    raise ProtocolError(
                        f"PSRP fragment {fragment_id} of object {object_id} carries the start flag"
                    )
                if object_id in self._partial:
                    raise ProtocolError(f"PSRP object {object_id} started twice")
                if flags & FRAGMENT_END:
                    messages.append(self._message(object_id, [blob]))
                    continue
                self._check_size(object_id, length)
                self._partial[object_id] = (1, [bytes(blob)], length)
                self._incomplete_bytes += length
                self._check_incomplete()
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
            self._check_size(object_id, total + length)
            parts.append(bytes(blob))
            total += length
            self._incomplete_bytes += length
            if flags & FRAGMENT_END:
                del self._partial[object_id]
                self._incomplete_bytes -= total
                messages.append(self._message(object_id, parts))
            else:
                self._partial[object_id] = (expected + 1, parts, total)
                self._check_incomplete()
        if offset < size:
            tail = data[offset:]
            self._pending.append(tail)
            self._pending_size = len(tail)
            self._pending_needed = 21
            if len(tail) >= 21:
                self._pending_needed = 21 + FRAGMENT_HEADER.unpack_from(tail)[3]
            self._check_pending()
        return messages

    def discard_pipeline(self, pipeline_id: uuid.UUID) -> int:
        """Forget the incomplete objects of a pipeline that ended; returns how many."""
        pid = pipeline_id.bytes_le
        doomed = [
            oid for oid, (_, parts, _) in self._partial.items()
            if len(parts[0]) >= 40 and parts[0][_PID_SLICE] == pid
        ]
        for oid in doomed:
            self._incomplete_bytes -= self._partial.pop(oid)[2]
        return len(doomed)

    def _check_pending(self) -> None:
        if self._pending_needed > self.max_message_bytes + 21:
            raise LimitExceededError("PSRP fragment larger than the message limit")
        if self._pending_size + self._incomplete_bytes > self.max_incomplete_bytes:
            self._raise_incomplete()

    def _check_incomplete(self) -> None:
        if len(self._partial) > self.max_incomplete_objects:
            raise LimitExceededError(
                f"the guest left more than {self.max_incomplete_objects} PSRP objects incomplete"
            )
        if self._incomplete_bytes + self._pending_size > self.max_incomplete_bytes:
            self._raise_incomplete()

    def _raise_incomplete(self) -> None:
        raise LimitExceededError(
            f"incomplete PSRP objects hold more than {self.max_incomplete_bytes} bytes "
            f"({len(self._partial)} objects started and not finished)"
        )

    def _check_size(self, object_id: int, total: int) -> None:
        if total > self.max_message_bytes:
            dropped = self._partial.pop(object_id, None)
            if dropped is not None:
                self._incomplete_bytes -= dropped[2]
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

    def _message(self, object_id: int, parts: list[Any]) -> PSRPMessage:
        first = parts[0]  # bytes, or a memoryview of a message that came in one fragment
        if len(first) < 43 and len(parts) > 1:  # a header split across fragments: rare
            first = b"".join(parts)
            parts = [first]
        if len(first) < 40:
            raise ProtocolError(f"PSRP message {object_id} is shorter than its 40-byte header")
        destination, message_type, rpid, pid = MESSAGE_HEADER.unpack_from(first)
        body_offset = 43 if bytes(first[40:43]) == _BOM else 40
        if len(parts) == 1:
            body = bytes(first[body_offset:])
        else:
            body = b"".join([memoryview(first)[body_offset:], *parts[1:]])
            parts.clear()  # the caller's list: let the fragments go before decoding starts
        return PSRPMessage(
            object_id,
            destination,
            message_type,
            self._guid(rpid),
            None if pid == _NIL_BYTES else self._guid(pid),
            bytes(first[:body_offset]),
            body,
        )

    @property
    def incomplete_objects(self) -> int:
        return len(self._partial)

    @property
    def incomplete_bytes(self) -> int:
        """Bytes held for unfinished objects and an unfinished fragment."""
        return self._incomplete_bytes + self._pending_size
