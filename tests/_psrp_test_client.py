"""A deliberately small PSRP client (psrpcore ``ClientRunspacePool``) for FakeGuest's own tests.

It does not use ``hvmagic.session`` so the guest's tests stand on a peer we did not write. It
obeys the OutOfProc client rules of ``psdirect-protocol.md`` §3.3: Command → CommandAck before a
pipeline's Data, one unacknowledged Data per PSGuid, never an ack, pipelines closed before the
pool. A reader thread drains the socket continuously and records every packet.
"""

from __future__ import annotations

import queue
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any

import psrpcore
from psrpcore.types import PSInvocationState, RunspacePoolState

from hvmagic.psrp.outofproc import (
    NIL_GUID,
    OutOfProcPacket,
    PacketKind,
    PacketReader,
    control_packet,
    data_packet,
)
from hvmagic.transports.base import Transport


@dataclass
class PipelineResult:
    output: list[Any] = field(default_factory=list)
    errors: list[Any] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    verbose: list[str] = field(default_factory=list)
    debug: list[str] = field(default_factory=list)
    information: list[Any] = field(default_factory=list)
    progress: list[Any] = field(default_factory=list)
    host_calls: list[Any] = field(default_factory=list)
    state: PSInvocationState | None = None
    reason: Any = None  # the ErrorRecord of a Failed/Stopped pipeline
    reason_message: str | None = None
    events: list[Any] = field(default_factory=list)


class MiniClient:
    def __init__(self, transport: Transport, timeout: float = 10.0) -> None:
        self.transport = transport
        self.timeout = timeout
        self.pool = psrpcore.ClientRunspacePool()
        self.packets: list[OutOfProcPacket] = []
        self.raw_lines: list[bytes] = []
        self._incoming: queue.Queue[OutOfProcPacket | None] = queue.Queue()
        self.reader_error: BaseException | None = None
        self._reader = threading.Thread(target=self._read_loop, daemon=True)
        self._reader.start()

    # ---- plumbing ----------------------------------------------------------------------------

    def _read_loop(self) -> None:
        reader = PacketReader()
        try:
            while True:
                data = self.transport.recv()
                if not data:
                    break
                self.raw_lines.extend(data.splitlines())
                reader.receive_data(data)
                while (packet := reader.next_packet()) is not None:
                    self.packets.append(packet)
                    self._incoming.put(packet)
        except BaseException as exc:  # surfaced to the test through next_packet
            self.reader_error = exc
        finally:
            self._incoming.put(None)

    def next_packet(self, timeout: float | None = None) -> OutOfProcPacket:
        packet = self._incoming.get(timeout=timeout or self.timeout)
        if packet is None:
            self._incoming.put(None)
            raise ConnectionError(f"server closed the connection ({self.reader_error!r})")
        return packet

    def _send_pending(self, guid: uuid.UUID, events: list[Any]) -> None:
        """Send queued PSRP data for ``guid`` one Data at a time, waiting for each DataAck."""
        while True:
            payload = self.pool.data_to_send(32768)
            if payload is None:
                return
            target = payload.pipeline_id or NIL_GUID
            stream = (
                "PromptResponse"
                if payload.stream_type == psrpcore.StreamType.prompt_response
                else "Default"
            )
            self.transport.send(data_packet(payload.data, target, stream))
            self._wait_for(PacketKind.DATA_ACK, target, events)

    def _wait_for(self, kind: PacketKind, guid: uuid.UUID, events: list[Any]) -> None:
        while True:
            packet = self.next_packet()
            if packet.kind is kind and packet.guid == guid:
                return
            self._handle(packet, events)

    def _handle(self, packet: OutOfProcPacket, events: list[Any]) -> None:
        if packet.kind is PacketKind.DATA:
            pid = None if packet.guid == NIL_GUID else packet.guid
            self.pool.receive_data(
                psrpcore.PSRPPayload(packet.data, psrpcore.StreamType.default, pid)
            )
            while (event := self.pool.next_event()) is not None:
                events.append(event)

    # ---- API --------------------------------------------------------------------------------

    def open(self) -> list[Any]:
        events: list[Any] = []
        self.pool.open()
        self._send_pending(NIL_GUID, events)
        while self.pool.state != RunspacePoolState.Opened:
            self._handle(self.next_packet(), events)
        return events

    def run(
        self,
        script: str,
        parameters: dict[str, Any] | None = None,
        *,
        input_data: list[Any] | None = None,
        host_responses: dict[str, Any] | None = None,
        stop_after: int | None = None,
        on_event: Any = None,
    ) -> PipelineResult:
        """Run ``script``; answer host calls from ``host_responses`` (method name → value);
        send Signal after ``stop_after`` output objects."""
        ps = psrpcore.ClientPowerShell(self.pool, no_input=input_data is None)
        ps.add_script(script)
        for name, value in (parameters or {}).items():
            ps.add_parameter(name, value)
        return self.run_pipeline(
            ps,
            input_data=input_data,
            host_responses=host_responses,
            stop_after=stop_after,
            on_event=on_event,
        )

    def run_pipeline(
        self,
        ps: psrpcore.ClientPowerShell,
        *,
        input_data: list[Any] | None = None,
        host_responses: dict[str, Any] | None = None,
        stop_after: int | None = None,
        on_event: Any = None,
    ) -> PipelineResult:
        result = PipelineResult()
        guid = ps.pipeline_id
        self.transport.send(control_packet(PacketKind.COMMAND, guid))
        self._wait_for(PacketKind.COMMAND_ACK, guid, result.events)
        ps.start()
        if input_data is not None:
            for item in input_data:
                ps.send(item)
            ps.send_eof()
        self._send_pending(guid, result.events)
        signalled = False
        seen = 0
        while True:
            while seen < len(result.events):
                event = result.events[seen]
                seen += 1
                if on_event is not None:
                    on_event(event)
                self._collect(event, result, ps, host_responses or {})
            if result.state is not None and result.state not in (
                PSInvocationState.Running,
                PSInvocationState.Stopping,
            ):
                break
            if stop_after is not None and not signalled and len(result.output) >= stop_after:
                signalled = True
                self.transport.send(control_packet(PacketKind.SIGNAL, guid))
            self._send_pending(guid, result.events)
            self._handle(self.next_packet(), result.events)
        # SignalAck may come before or after the state; make sure we saw it
        if signalled and not any(
            p.kind is PacketKind.SIGNAL_ACK and p.guid == guid for p in self.packets
        ):
            self._wait_for(PacketKind.SIGNAL_ACK, guid, result.events)
        ps.close()
        self.transport.send(control_packet(PacketKind.CLOSE, guid))
        self._wait_for(PacketKind.CLOSE_ACK, guid, result.events)
        return result

    def _collect(
        self, event: Any, result: PipelineResult, ps: Any, host_responses: dict[str, Any]
    ) -> None:
        if isinstance(event, psrpcore.PipelineOutputEvent):
            result.output.append(event.data)
        elif isinstance(event, psrpcore.ErrorRecordEvent):
            result.errors.append(event.record)
        elif isinstance(event, psrpcore.WarningRecordEvent):
            result.warnings.append(event.record.Message)
        elif isinstance(event, psrpcore.VerboseRecordEvent):
            result.verbose.append(event.record.Message)
        elif isinstance(event, psrpcore.DebugRecordEvent):
            result.debug.append(event.record.Message)
        elif isinstance(event, psrpcore.InformationRecordEvent):
            result.information.append(event.record)
        elif isinstance(event, psrpcore.ProgressRecordEvent):
            result.progress.append(event.record)
        elif isinstance(event, psrpcore.PipelineHostCallEvent):
            result.host_calls.append(event)
            name = event.method_identifier.name
            if name in host_responses:
                answer = host_responses[name]
                if callable(answer):
                    answer = answer(event)
                if isinstance(answer, psrpcore.types.ErrorRecord):
                    ps.host_response(event.ci, error_record=answer)
                else:
                    ps.host_response(event.ci, answer)
        elif isinstance(event, psrpcore.PipelineStateEvent):
            result.state = event.state
            result.reason = event.reason
            exception = getattr(event.reason, "Exception", None)
            result.reason_message = getattr(exception, "Message", None)

    def close(self) -> None:
        events: list[Any] = []
        self.pool.close()
        self.transport.send(control_packet(PacketKind.CLOSE, NIL_GUID))
        self._wait_for(PacketKind.CLOSE_ACK, NIL_GUID, events)
        self.transport.close()
