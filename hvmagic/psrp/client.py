"""A sans-IO PSRP client over the OutOfProc framing: psrpcore for state, hvmagic for bulk data.

:class:`PSRPClient` is fed the bytes the server wrote (:meth:`~PSRPClient.receive_data`), hands
out events (:meth:`~PSRPClient.next_event`) and the bytes to write back
(:meth:`~PSRPClient.data_to_send`). It never touches a socket or a thread; the session layer
(:mod:`hvmagic.session`) does.

Who decodes what (the bulk-output strategy)
-------------------------------------------
psrpcore deserializes ~700-1 500 objects/s, so bulk records never reach it. Fragments are
reassembled here (:mod:`hvmagic.psrp.messages`) and every message is routed by its type:

* PIPELINE_OUTPUT, ERROR_RECORD, WARNING/VERBOSE/DEBUG_RECORD, INFORMATION_RECORD and
  PROGRESS_RECORD are decoded by :func:`hvmagic.clixml.loads_fragment` (shape-compiled,
  expat-verified; ~20× psrpcore end to end) into hvmagic's own values. psrpcore's client
  does nothing with these messages (its ``_process_PipelineOutput`` & co. are no-ops), so
  skipping them leaves its state machine exactly where it would have been — tests check pool
  and pipeline states and key exchange after bulk output.
* Everything that drives state — SESSION_CAPABILITY, APPLICATION_PRIVATE_DATA,
  RUNSPACEPOOL_STATE, RUNSPACEPOOL_INIT_DATA, ENCRYPTED_SESSION_KEY, PUBLIC_KEY_REQUEST,
  PIPELINE_STATE, host calls, RUNSPACE_AVAILABILITY — is handed to psrpcore unchanged (re-wrapped
  as one whole fragment), and its events are translated. PIPELINE_STATE is additionally decoded
  by hvmagic so a terminating error arrives as an :class:`~hvmagic.clixml.ErrorRecord`.

The alternative — serializing in the guest with ``[PSSerializer]::Serialize(objects, depth)``
in batches and shipping strings — was measured (``bench/bench_session.py``, 20 000
Get-Service-shaped objects) and not chosen: on the client it is within about 10 % of the
direct path either way (runs measured 21k vs 23k and 31k vs 29k objects/s to a DataFrame: the
same decoder still runs once per object, after the strings themselves were decoded), it adds a
serialization pass in the guest, whose CPU is the scarcer one, and it changes what the
user gets — objects at the chosen ``-Depth`` instead of the remoting serializer's per-type depth,
and a wrapper that must enumerate output itself. Its one gain is ~25 % fewer bytes on the wire
(type names shared across a batch), which does not matter on a local Hyper-V socket. Decoding
PIPELINE_OUTPUT directly keeps PowerShell's own remoting view of every object — the type names
and depth ``Invoke-Command`` shows (hvmagic keeps type names as sent; see
:attr:`hvmagic.PSObject.type_name` for the ``Deserialized.``-free form).

§3.3 rules this client enforces (``psdirect-protocol.md``)
----------------------------------------------------------
1. at most one un-acknowledged ``Data`` per PSGuid — the rest waits in a per-guid queue;
2. ``Command(pid)`` first, and no ``Data(pid)`` before ``CommandAck(pid)``;
3. the client never sends an ack or an empty line;
4. ``Close(empty)`` only after every pipeline got its ``CloseAck``;
5. ``Signal(pid)`` stops a pipeline only once the server has created it (the ``DataAck`` of
   its last CREATE_PIPELINE ``Data``): a Signal ahead of the first ``Data(pid)`` finds nothing
   to stop and is never answered. A stop requested before any ``Data(pid)`` left drops the
   queued CREATE_PIPELINE, sends ``Close(pid)`` after ``CommandAck`` and finishes the pipeline
   as ``Stopped`` locally.

SecureStrings the guest sends are decrypted with the session key (psrpcore's cipher) into
:class:`~hvmagic.SecureString` values that hold the plain text but never show it.
"""

from __future__ import annotations

import base64
import collections
import gc
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import psrpcore
import psrpcore.types as pst
from psrpcore.types import (
    ErrorCategory,
    ErrorCategoryInfo,
    HostInfo,
    NETException,
    PSInvocationState,
    PSRPMessageType,
    RunspacePoolState,
)

from hvmagic.clixml import dumps, loads_fragment
from hvmagic.clixml.encode import MAX_DEPTH, POWERSHELL_MAX_DEPTH
from hvmagic.clixml.values import (
    ErrorRecord,
    InformationalRecord,
    InformationRecord,
    ProgressRecord,
    PSCredential,
    PSObject,
    SecureString,
)
from hvmagic.errors import DecodeError, EncodeError, HvMagicError, ProtocolError
from hvmagic.hosttext import HOST_DEFAULT_COLORS
from hvmagic.psrp import psrpcore_fixes
from hvmagic.psrp.messages import (
    DEFAULT_MAX_INCOMPLETE_BYTES,
    DEFAULT_MAX_MESSAGE_BYTES,
    FragmentAssembler,
    PSRPMessage,
    build_fragment,
)
from hvmagic.psrp.outofproc import (
    NIL_GUID,
    OutOfProcPacket,
    PacketKind,
    PacketReader,
    control_packet,
    data_packet,
)
from hvmagic.psrp.psrpcore_fixes import Encoded

psrpcore_fixes.apply()

#: PowerShell's own fragment size for client → server data (``DefaultFragmentSize``)
FRAGMENT_SIZE = 32 << 10

_OUTPUT = PSRPMessageType.PipelineOutput.value
#: message type → hvmagic stream name, for the messages decoded by hvmagic (the fast path)
FAST_STREAMS: dict[int, str] = {
    PSRPMessageType.PipelineOutput.value: "output",
    PSRPMessageType.ErrorRecord.value: "error",
    PSRPMessageType.WarningRecord.value: "warning",
    PSRPMessageType.VerboseRecord.value: "verbose",
    PSRPMessageType.DebugRecord.value: "debug",
    PSRPMessageType.InformationRecord.value: "information",
    PSRPMessageType.ProgressRecord.value: "progress",
}
_PIPELINE_STATE = PSRPMessageType.PipelineState.value
_MARKUP_DECLARATION = b"<!"

#: host methods whose only effect is text on the console: kept as "host" records
HOST_WRITE_METHODS = {
    "Write1": 0, "Write2": 2, "WriteLine1": None, "WriteLine2": 0, "WriteLine3": 2,
    "WriteErrorLine": 0, "WriteDebugLine": 0, "WriteVerboseLine": 0, "WriteWarningLine": 0,
}  # method name → index of the text parameter (None: an empty line)

#: host methods PowerShell calls *beside* writing a stream record: with a host UI offered, a
#: server's ``Write-Verbose``/``Write-Warning``/``Write-Debug`` sends the record first and then
#: the same text to the host (``InternalHostUserInterface.Write*Record``). PowerShell's own
#: client shows the host copy and files the record; hvmagic delivers the record and drops the
#: copy, so each line appears once, in its stream.
HOST_STREAM_METHODS = {
    "WriteVerboseLine": "verbose", "WriteWarningLine": "warning", "WriteDebugLine": "debug",
}


# ------------------------------------------------------------------------------------------
# Events
# ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PoolOpened:
    """The runspace pool reached ``Opened``: pipelines may start."""


@dataclass(frozen=True, slots=True)
class PoolBroken:
    """The pool went ``Broken``/``Closed`` on the server's initiative."""

    state: str
    reason: str


@dataclass(frozen=True, slots=True)
class PoolClosed:
    """``CloseAck`` for the pool: the session is over."""


@dataclass(frozen=True, slots=True)
class KeyExchanged:
    """The session key arrived; SecureString/PSCredential values can now be sent."""


@dataclass(frozen=True, slots=True)
class PipelineRecord:
    """One record of a pipeline: ``stream`` is one of :data:`hvmagic.clixml.STREAMS`."""

    pipeline_id: uuid.UUID
    stream: str
    record: Any


@dataclass(frozen=True, slots=True)
class HostCall:
    """A host method call (``Read-Host``, ``Write-Host`` on older hosts, prompts …).

    ``call_id`` is ``-100`` for void methods, which need no response.
    """

    pipeline_id: uuid.UUID | None
    call_id: int
    method: str
    parameters: list[Any]

    @property
    def needs_response(self) -> bool:
        return self.call_id != -100


@dataclass(frozen=True, slots=True)
class PipelineFinished:
    """The pipeline reached a final state: ``Completed``, ``Failed`` or ``Stopped``."""

    pipeline_id: uuid.UUID
    state: str
    error: ErrorRecord | None = None


@dataclass(frozen=True, slots=True)
class PipelineClosed:
    """``CloseAck(pid)``: the server released the pipeline."""

    pipeline_id: uuid.UUID


@dataclass(frozen=True, slots=True)
class SignalAcknowledged:
    pipeline_id: uuid.UUID


ClientEvent = (
    PoolOpened | PoolBroken | PoolClosed | KeyExchanged | PipelineRecord | HostCall
    | PipelineFinished | PipelineClosed | SignalAcknowledged
)


# ------------------------------------------------------------------------------------------
# hvmagic values → the wire (parameters and host responses)
# ------------------------------------------------------------------------------------------

#: the most levels a parameter's value may nest: a CREATE_PIPELINE message holds it 7 levels
#: below its top (PowerShell → Cmds → Command → Args → CommandParameter …), and PowerShell's
#: deserializer refuses a message deeper than :data:`~hvmagic.clixml.encode.POWERSHELL_MAX_DEPTH`
PARAMETER_MAX_DEPTH = POWERSHELL_MAX_DEPTH - 7


def host_error_record(message: str, error_id: str = "HvMagicHostNotInteractive") -> Any:
    """A psrpcore ErrorRecord for answering a host call with an error."""
    return pst.ErrorRecord(
        Exception=NETException(Message=message),
        CategoryInfo=ErrorCategoryInfo(
            Category=ErrorCategory.NotImplemented, Reason="HostException"
        ),
        FullyQualifiedErrorId=error_id,
    )


# ------------------------------------------------------------------------------------------
# record normalisation
# ------------------------------------------------------------------------------------------


def _as(cls: type[PSObject], value: Any) -> PSObject:
    if isinstance(value, cls):
        return value
    if isinstance(value, PSObject):
        return cls(value.properties, value.type_names, value.to_string, value.value, value.adapted)
    return cls({"Message": "" if value is None else str(value)}, [], None if value is None
               else str(value))


def _progress_record(value: Any) -> ProgressRecord:
    if isinstance(value, ProgressRecord):
        return value
    return ProgressRecord.from_properties(value if isinstance(value, PSObject) else {})


def normalise_record(stream: str, value: Any) -> Any:
    """``value`` as the record class of ``stream`` (ErrorRecord, InformationRecord …)."""
    return _normalise(stream, value)


def _normalise(stream: str, value: Any) -> Any:
    if stream == "output":
        return value
    if stream == "error":
        return _as(ErrorRecord, value)
    if stream == "information":
        return _as(InformationRecord, value)
    if stream == "progress":
        return _progress_record(value)
    return _as(InformationalRecord, value)


# ------------------------------------------------------------------------------------------
# the client
# ------------------------------------------------------------------------------------------


@dataclass
class _PipelineWire:
    command_acked: bool = False
    data_sent: bool = False  # the first Data(pid) (CREATE_PIPELINE) left
    created: bool = False  # CREATE_PIPELINE fully acknowledged: the server has the pipeline
    signal_wanted: bool = False
    signal_sent: bool = False
    close_sent: bool = False
    finished: bool = False
    state: str = "Running"




def default_host_info() -> HostInfo:
    """A host with a UI and a raw UI, as PowerShell's own client describes itself: the server
    forwards ``Write-Host``/prompts as host calls (as to ``Enter-PSSession``) instead of
    failing them, and reads the raw UI's defaults from this data instead of failing too
    (``Write-Host -BackgroundColor Red`` alone reads the default foreground: without a raw UI
    it dropped both colours). The sizes are what PowerShell's own client sends when its output
    is redirected (80x24: ``Out-String`` keeps its width); raw UI methods that need the
    terminal (``ReadKey``) are refused by the session's host."""
    size = pst.Size(Width=80, Height=24)
    origin = pst.Coordinates(X=0, Y=0)
    foreground, background = (pst.ConsoleColor[name] for name in HOST_DEFAULT_COLORS)
    data = pst.HostDefaultData(
        ForegroundColor=foreground, BackgroundColor=background, CursorPosition=origin,
        WindowPosition=origin, CursorSize=100, BufferSize=size, WindowSize=size,
        MaxWindowSize=size, MaxPhysicalWindowSize=size, WindowTitle="",
    )
    return HostInfo(IsHostNull=False, IsHostUINull=False, IsHostRawUINull=False,
                    UseRunspaceHost=True, HostDefaultData=data)


@dataclass
class _SendQueue:
    items: collections.deque[tuple[bytes, str]] = field(default_factory=collections.deque)
    unacked: bool = False


class PSRPClient:
    """One runspace pool (one PowerShell session) and its pipelines, sans-IO.

    ``host_info``: psrpcore ``HostInfo`` sent with the pool and every pipeline; by default
    :func:`default_host_info`.
    ``max_message_bytes`` bounds one reassembled PSRP message, ``max_incomplete_bytes`` all
    objects still missing fragments together, ``max_line_bytes`` one OutOfProc
    line (see :class:`~hvmagic.psrp.outofproc.PacketReader`). ``pipeline_id_factory`` makes
    pipeline ids deterministic (replaying a recorded server stream needs the recorded ids).
    """

    def __init__(
        self,
        *,
        host_info: HostInfo | None = None,
        application_arguments: dict[str, Any] | None = None,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        max_line_bytes: int = 64 << 20,
        pipeline_id_factory: Callable[[], uuid.UUID] = uuid.uuid4,
        max_incomplete_bytes: int = DEFAULT_MAX_INCOMPLETE_BYTES,
    ) -> None:
        self._new_pipeline_id = pipeline_id_factory
        self.host_info = host_info or default_host_info()
        self.pool = psrpcore.ClientRunspacePool(
            application_arguments=application_arguments, host=self.host_info
        )
        self._reader = PacketReader(max_line_bytes=max_line_bytes)
        self._assembler = FragmentAssembler(max_message_bytes, max_incomplete_bytes)
        self._events: collections.deque[ClientEvent] = collections.deque()
        self._outgoing: list[bytes] = []
        self._queues: dict[uuid.UUID, _SendQueue] = {}
        self._pipelines: dict[uuid.UUID, _PipelineWire] = {}
        self._pool_close_wanted = False
        self._pool_close_sent = False
        self.closed = False
        self.key_exchanged = False
        self.messages_received = 0

    # -- state -------------------------------------------------------------------------
    @property
    def opened(self) -> bool:
        return self.pool.state == RunspacePoolState.Opened

    @property
    def pool_state(self) -> str:
        return str(self.pool.state.name)

    def pipeline_state(self, pipeline_id: uuid.UUID) -> str | None:
        wire = self._pipelines.get(pipeline_id)
        return None if wire is None else wire.state

    @property
    def open_pipelines(self) -> list[uuid.UUID]:
        """Pipelines created and not yet released by ``CloseAck``."""
        return list(self._pipelines)

    # -- actions -------------------------------------------------------------------------
    def open(self) -> None:
        """Queue SESSION_CAPABILITY + INIT_RUNSPACEPOOL (one ``Data`` for the pool)."""
        self._guard(self.pool.open)
        self._pump()

    def exchange_key(self) -> None:
        """Queue PUBLIC_KEY; :class:`KeyExchanged` follows when the session key arrives."""
        if self.key_exchanged:
            return
        self._guard(self.pool.exchange_key)
        self._pump()

    def start_script(
        self,
        script: str,
        parameters: Mapping[str, Any] | None = None,
        *,
        use_local_scope: bool | None = None,
    ) -> uuid.UUID:
        """Create a pipeline running ``script`` with named ``parameters``; returns its id.

        Sends ``Command(pid)`` now; CREATE_PIPELINE follows once ``CommandAck`` arrives.
        ``use_local_scope=False`` runs the script in the runspace's scope (dot-sourced).
        """
        if not self.opened:
            raise ProtocolError(f"the runspace pool is {self.pool_state}, not Opened")
        converted = {
            name: self.encode(value, max_depth=PARAMETER_MAX_DEPTH)
            for name, value in (parameters or {}).items()
        }
        ps = psrpcore.ClientPowerShell(
            self.pool, host=self.host_info, no_input=True, pipeline_id=self._new_pipeline_id()
        )
        ps.add_script(script, use_local_scope=use_local_scope)
        for name, value in converted.items():
            ps.add_parameter(name, value)

        try:
            ps.start()  # serializes CREATE_PIPELINE; nothing is queued when this fails
        except (psrpcore.PSRPCoreError, ValueError, TypeError, KeyError, AttributeError) as exc:
            self.pool.pipeline_table.pop(ps.pipeline_id, None)
            raise EncodeError(f"cannot serialize the pipeline's parameters: {exc}") from exc
        except BaseException:
            self.pool.pipeline_table.pop(ps.pipeline_id, None)
            raise
        pid = ps.pipeline_id
        self._pipelines[pid] = _PipelineWire()
        self._outgoing.append(control_packet(PacketKind.COMMAND, pid))
        self._pump()
        return pid

    def stop_pipeline(self, pipeline_id: uuid.UUID) -> None:
        """Ask the server to stop the pipeline (``Signal``); idempotent."""
        wire = self._pipelines.get(pipeline_id)
        if wire is None or wire.finished or wire.signal_wanted:
            return
        wire.signal_wanted = True
        ps = self.pool.pipeline_table.get(pipeline_id)
        if ps is not None and ps.state == PSInvocationState.Running:
            self._guard(ps.begin_stop)
        if wire.command_acked and not wire.data_sent:
            self._stop_before_creation(pipeline_id, wire)
        else:
            self._send_signal_if_ready(pipeline_id, wire)

    def close_pipeline(self, pipeline_id: uuid.UUID) -> None:
        """Release a finished pipeline (``Close(pid)``); :class:`PipelineClosed` follows."""
        wire = self._pipelines.get(pipeline_id)
        if wire is None or wire.close_sent:
            return
        wire.close_sent = True
        # after its final state nothing more of the pipeline's objects can arrive: what is
        # incomplete now never completes (and a run returns before the CloseAck comes back)
        self._assembler.discard_pipeline(pipeline_id)
        self._outgoing.append(control_packet(PacketKind.CLOSE, pipeline_id))

    def close(self) -> None:
        """Close every pipeline, then the pool once their ``CloseAck``\\ s are in."""
        self._pool_close_wanted = True
        for pid in list(self._pipelines):
            wire = self._pipelines[pid]
            if not wire.finished:
                self.stop_pipeline(pid)
            else:
                self.close_pipeline(pid)
        self._maybe_close_pool()

    def host_response(
        self, call: HostCall, value: Any = None, *, error_message: str | None = None
    ) -> None:
        """Answer a host call with a value or an error the guest sees as an exception."""
        if not call.needs_response:
            return
        error = host_error_record(error_message) if error_message is not None else None
        converted = None if value is None else self.encode(value)
        self._guard(lambda: self.pool.host_response(call.call_id, converted, error))
        self._pump()

    def encode(self, value: Any, max_depth: int = MAX_DEPTH) -> Encoded:
        """``value`` as the guest will receive it: :func:`hvmagic.clixml.dumps`, with this
        session's key for SecureStrings once it is exchanged (:meth:`exchange_key`)."""
        encryptor = self._encrypt if self.key_exchanged else None
        return Encoded(dumps(value, secure_string_encryptor=encryptor, max_depth=max_depth))

    def _encrypt(self, plain: bytes) -> bytes:
        # psrpcore's cipher takes text and returns base64; dumps deals in bytes
        text = plain.decode("utf-16-le", "surrogatepass")
        return base64.b64decode(self.pool._cipher.encrypt(text))

    # -- I/O surface ---------------------------------------------------------------------
    @property
    def has_data_to_send(self) -> bool:
        """True when :meth:`data_to_send` would return bytes (a cheap check before a write)."""
        return bool(self._outgoing)

    def data_to_send(self) -> bytes:
        """The OutOfProc lines to write now (``b""`` when nothing may be sent yet)."""
        if not self._outgoing:
            return b""
        data = b"".join(self._outgoing)
        self._outgoing.clear()
        return data

    def receive_data(self, data: bytes) -> None:
        """Feed bytes the server wrote; parse as far as they go (events queue up)."""
        self.buffer_data(data)
        self.process_buffered()

    def buffer_data(self, data: bytes) -> None:
        """Only keep ``data`` for :meth:`process_buffered`; a caller that must neither lose
        nor repeat bytes when interrupted records that they are buffered before parsing."""
        self._reader.receive_data(data)

    def process_buffered(self) -> None:
        """Parse every complete packet buffered so far (events queue up)."""
        # Bulk output allocates many acyclic objects that stay alive (the run's result): the
        # cyclic collector, when it runs every few hundred allocations, walks them again and
        # again (~20 % of decoding). It is paused for one batch, as loads() does for a document.
        paused = gc.isenabled()
        if paused:
            gc.disable()
        try:
            next_packet = self._reader.next_packet
            while True:
                packet = next_packet()
                if packet is None:
                    break
                self._on_packet(packet)
        finally:
            if paused:
                gc.enable()

    @property
    def has_events(self) -> bool:
        return bool(self._events)

    def next_event(self) -> ClientEvent | None:
        return self._events.popleft() if self._events else None

    def events(self) -> Iterable[ClientEvent]:
        while self._events:
            yield self._events.popleft()

    # -- internals -----------------------------------------------------------------------
    @staticmethod
    def _guard(action: Any) -> Any:
        try:
            return action()
        except HvMagicError:
            raise
        except psrpcore.PSRPCoreError as exc:
            raise ProtocolError(f"PSRP state error: {exc}") from exc
        except Exception as exc:
            # psrpcore deserializes what the guest sent: a hostile message can make it raise
            # anything (RecursionError on deep nesting, OverflowError on an infinite number,
            # ElementTree's ParseError). Whatever it is, the peer broke the protocol.
            raise ProtocolError(f"PSRP error: {type(exc).__name__}: {exc}") from exc

    def _pump(self) -> None:
        """Move psrpcore's queued messages into per-guid queues and send what §3.3 allows."""
        while True:
            payload = self.pool.data_to_send(FRAGMENT_SIZE)
            if payload is None:
                break
            guid = payload.pipeline_id or NIL_GUID
            stream = (
                "PromptResponse"
                if payload.stream_type == psrpcore.StreamType.prompt_response
                else "Default"
            )
            self._queues.setdefault(guid, _SendQueue()).items.append((payload.data, stream))
        for guid, queue in self._queues.items():
            self._send_next(guid, queue)

    def _send_next(self, guid: uuid.UUID, queue: _SendQueue) -> None:
        if queue.unacked or not queue.items:
            return
        if guid != NIL_GUID:
            wire = self._pipelines.get(guid)
            if wire is None or not wire.command_acked:
                return  # rule 2: no Data(pid) before CommandAck(pid)
            wire.data_sent = True
        data, stream = queue.items.popleft()
        self._outgoing.append(data_packet(data, guid, stream))
        queue.unacked = True

    def _send_signal_if_ready(self, pipeline_id: uuid.UUID, wire: _PipelineWire) -> None:
        if (
            wire.signal_wanted and not wire.signal_sent and wire.created
            and not wire.finished and not wire.close_sent
        ):
            wire.signal_sent = True
            self._outgoing.append(control_packet(PacketKind.SIGNAL, pipeline_id))

    def _stop_before_creation(self, pipeline_id: uuid.UUID, wire: _PipelineWire) -> None:
        # The server never saw CREATE_PIPELINE, so there is nothing to signal: forget the
        # queued data, release the Command and report the stop ourselves.
        self._queues.pop(pipeline_id, None)
        wire.finished = True
        wire.state = "Stopped"
        wire.close_sent = True
        self._outgoing.append(control_packet(PacketKind.CLOSE, pipeline_id))
        self._events.append(PipelineFinished(pipeline_id, "Stopped"))

    def _maybe_close_pool(self) -> None:
        if self._pool_close_wanted and not self._pool_close_sent and not self._pipelines:
            self._pool_close_sent = True
            self._outgoing.append(control_packet(PacketKind.CLOSE, NIL_GUID))

    def _on_packet(self, packet: OutOfProcPacket) -> None:
        kind = packet.kind
        guid = packet.guid
        if kind is PacketKind.DATA:
            for message in self._assembler.feed(packet.data):
                self._on_message(message)
        elif kind is PacketKind.DATA_ACK:
            queue = self._queues.get(guid)
            if queue is not None:
                queue.unacked = False
                self._send_next(guid, queue)
            wire = self._pipelines.get(guid) if guid != NIL_GUID else None
            # CREATE_PIPELINE may span several Data lines: created once all of them are acked
            all_acked = queue is None or (not queue.items and not queue.unacked)
            if wire is not None and wire.data_sent and not wire.created and all_acked:
                wire.created = True
                self._send_signal_if_ready(guid, wire)
        elif kind is PacketKind.COMMAND_ACK:
            wire = self._pipelines.get(guid)
            if wire is not None:
                wire.command_acked = True
                if wire.signal_wanted and not wire.data_sent:
                    self._stop_before_creation(guid, wire)
                else:
                    queue = self._queues.get(guid)
                    if queue is not None:
                        self._send_next(guid, queue)
        elif kind is PacketKind.SIGNAL_ACK:
            self._events.append(SignalAcknowledged(guid))
        elif kind is PacketKind.CLOSE_ACK:
            if guid == NIL_GUID:
                # The server only acks after every Command was closed, so psrpcore's table
                # may be cleared; a pool that never opened just ends.
                self.pool.pipeline_table.clear()
                if self.pool.state in (RunspacePoolState.Opened, RunspacePoolState.Closing):
                    self._guard(self.pool.close)
                self.closed = True
                self._events.append(PoolClosed())
            else:
                # fragments of an object the pipeline never finished can never complete now
                self._assembler.discard_pipeline(guid)
                self._pipelines.pop(guid, None)
                self._queues.pop(guid, None)
                self.pool.pipeline_table.pop(guid, None)
                self._events.append(PipelineClosed(guid))
                self._maybe_close_pool()
        else:
            raise ProtocolError(f"the server sent a client-only {kind.value} packet")

    def _on_message(self, message: PSRPMessage) -> None:
        self.messages_received += 1
        message_type = message.message_type
        stream = FAST_STREAMS.get(message_type)
        if stream is not None:
            pid = message.pipeline_id
            if pid is None:
                raise ProtocolError(f"{stream} record without a pipeline id")
            if message_type == _OUTPUT and not message.body:
                value: Any = None  # an empty PIPELINE_OUTPUT is $null
            else:
                body = message.body
                try:
                    value = loads_fragment(body)
                except DecodeError as exc:
                    raise ProtocolError(f"undecodable {stream} record: {exc}") from exc
                if b"<SS" in body:  # rare: only then walk the value
                    value = self._reveal(value, 0)
            self._events.append(PipelineRecord(pid, stream, _normalise(stream, value)))
            return
        error: ErrorRecord | None = None
        if message_type == _PIPELINE_STATE:
            error = self._state_error(message)
            if message.pipeline_id not in self.pool.pipeline_table:
                return  # a state for a pipeline we already released: nothing to update
        self._to_psrpcore(message, error)

    def _reveal(self, value: Any, depth: int) -> Any:
        """Decrypt session-key SecureStrings the guest sent (``Read-Host -AsSecureString``,
        ``Get-Credential``) into SecureStrings that hold the plain text — still masked in
        every repr; :meth:`SecureString.reveal` gives the text to code that asks for it."""
        if depth > 64:
            return value
        if isinstance(value, SecureString):
            ciphertext = value.ciphertext
            if ciphertext is None or not self.key_exchanged:
                return value
            try:
                plain = self.pool._cipher.decrypt(base64.b64encode(ciphertext).decode("ascii"))
            except (ValueError, psrpcore.PSRPCoreError):
                return value  # not ours to read (another key); keep the ciphertext
            return SecureString(plain)
        if isinstance(value, PSCredential):
            value.password = self._reveal(value.password, depth + 1)
        elif isinstance(value, PSObject):
            props = value.properties
            for key, item in props.items():
                props[key] = self._reveal(item, depth + 1)
            if value.value is not None:
                value.value = self._reveal(value.value, depth + 1)
        elif isinstance(value, list):
            value[:] = [self._reveal(item, depth + 1) for item in value]
        elif isinstance(value, dict):
            for key, item in value.items():
                value[key] = self._reveal(item, depth + 1)
        return value

    @staticmethod
    def _state_error(message: PSRPMessage) -> ErrorRecord | None:
        try:
            state = loads_fragment(message.body)
        except DecodeError as exc:
            raise ProtocolError(f"undecodable PIPELINE_STATE: {exc}") from exc
        if isinstance(state, PSObject):
            record = state.get("ExceptionAsErrorRecord")
            if record is not None:
                return _as(ErrorRecord, record)  # type: ignore[return-value]
        return None

    def _to_psrpcore(self, message: PSRPMessage, error: ErrorRecord | None) -> None:
        if _MARKUP_DECLARATION in message.body:
            # psrpcore parses with ElementTree, which accepts a DTD (and expands its internal
            # entities). PowerShell's serializer never writes one — "<" in text is "&lt;" —
            # so "<!" anywhere (DOCTYPE, ENTITY, CDATA, comment) is refused here as hvmagic's
            # own decoder refuses it on the output path.
            raise ProtocolError(
                f"PSRP message type 0x{message.message_type:08X} carries a DTD or other markup "
                "declaration; refused"
            )
        payload = psrpcore.PSRPPayload(
            build_fragment(message.object_id, message.raw), psrpcore.StreamType.default,
            message.pipeline_id,
        )
        self._guard(lambda: self.pool.receive_data(payload))
        while True:
            event = self._guard(self.pool.next_event)
            if event is None:
                break
            self._guard(lambda event=event: self._translate(event, error))
        self._pump()  # psrpcore may have queued a reply (PUBLIC_KEY after PUBLIC_KEY_REQUEST)

    def _translate(self, event: Any, error: ErrorRecord | None) -> None:
        if isinstance(event, psrpcore.RunspacePoolStateEvent):
            pool_state = event.state
            if pool_state == RunspacePoolState.Opened:
                self._events.append(PoolOpened())
            elif pool_state in (RunspacePoolState.Broken, RunspacePoolState.Closed):
                reason = str(event.reason) if event.reason is not None else pool_state.name
                self._events.append(PoolBroken(pool_state.name, reason))
        elif isinstance(event, psrpcore.EncryptedSessionKeyEvent):
            self.key_exchanged = True
            self._events.append(KeyExchanged())
        elif isinstance(event, psrpcore.PipelineStateEvent):
            pid: uuid.UUID | None = event.pipeline_id
            wire = self._pipelines.get(pid) if pid is not None else None
            if pid is None or wire is None:
                return
            wire.state = event.state.name
            if event.state in (
                PSInvocationState.Completed, PSInvocationState.Failed, PSInvocationState.Stopped
            ):
                wire.finished = True
                self._events.append(PipelineFinished(pid, wire.state, error))
                if self._pool_close_wanted:
                    self.close_pipeline(pid)  # close() stopped it; now release it
        elif isinstance(
            event, (psrpcore.PipelineHostCallEvent, psrpcore.RunspacePoolHostCallEvent)
        ):
            self._events.append(
                HostCall(getattr(event, "pipeline_id", None), int(event.ci),
                         event.method_identifier.name, list(event.method_parameters or []))
            )
