"""FakeGuest, the test peer: a PSRP server on psrpcore's server classes, speaking OutOfProc.

:class:`FakeGuest` is the test-suite's guest for faults and protocol checks. It is a
real protocol peer, not a mock of hvmagic's client: every connection runs psrpcore's
``ServerRunspacePool``/``ServerPipeline`` behind the OutOfProc framing of
``psdirect-protocol.md`` §3, with the server-side rules PowerShell's mediator follows:

* ``DataAck`` after each client ``Data`` has been processed, ``CommandAck`` for ``Command``,
  ``SignalAck`` for ``Signal`` (always), ``CloseAck`` for ``Close``;
* one PSRP fragment (≤ 32 KiB) per ``Data`` line, CLIXML payloads as UTF-8 with a BOM;
* one server thread per connection, one worker thread per running pipeline, so a ``Signal``
  or a host-call response is processed while a handler runs.

Scripts are answered by *handlers* only: ``guest.handle(pattern)`` registers a function that
gets a :class:`HandlerContext`. A script no handler matches fails like PowerShell does for an
unknown command (``CommandNotFoundException``). FakeGuest imitates no PowerShell language: what
PowerShell does is judged by real PowerShell (``tests/pwsh``, and the demo guest in
:mod:`hvmagic.demo`); FakeGuest is for what PowerShell cannot produce on demand — a killed,
stalled or rebooting guest, hostile bytes, protocol faults.

Handlers::

    guest = FakeGuest()

    @guest.handle("Get-Widget")                      # exact text, else substring
    def widgets(ctx):
        ctx.verbose("counting widgets")              # .warning .debug .information .host_write
        ctx.progress("Counting", "half way", 50)     # Write-Progress (activity_id, parent_id…)
        ctx.error("widget 3 is broken", category="InvalidData", target=3)   # non-terminating
        name = ctx.read_host("Widget name")          # host call, answered by the client's host
        ctx.sleep(0.5)                               # wakes with PipelineStoppedError on Signal
        ctx.variables["last"] = name                 # per session: next run sees it
        return [{"Name": name, "Size": 3}]           # dicts → PSCustomObject; lists enumerate

    guest.add_handler(r"^Remove-Widget (\\w+)$", lambda ctx: ctx.fail("locked"), regex=True)

``ctx.parameters`` holds the run's parameters, ``ctx.script`` the user's text (the session's
wrapper removed, see :func:`extract_user_script`), ``ctx.input()`` the pipeline input,
``ctx.output_clixml(path_or_text)`` serves CLIXML documents, ``ctx.host_call(method, *args)``
any ``$Host.UI`` method. A handler that raises (or calls ``ctx.fail``) ends the pipeline
``Failed`` with an ErrorRecord carrying PowerShell's ``At line:L char:C`` position.

Pipelines queue for the pool's runspaces (sessions ask for one), so a second pipeline waits
for the first as in PowerShell. Fault injection: :meth:`FakeGuest.kill_connections` (the
guest's PowerShell dies mid-pipeline) and :meth:`FakeGuest.reboot` (connections drop; new ones
are refused until the reboot is over).

Run ``python -m hvmagic.testing.guest --stdio`` to serve one session on stdin/stdout exactly like
``pwsh -s`` (errors on stderr, exit code 4000 after a processing error — 160 on POSIX, which
keeps only the low 8 bits of an exit status), or ``--tcp HOST:PORT`` to listen on TCP;
``--handlers MODULE`` (repeatable) calls ``MODULE.install(guest)`` to add handlers first.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import importlib
import os
import re
import socket
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from xml.etree import ElementTree

import psrpcore
from psrpcore._payload import create_fragment, create_message
from psrpcore.types import (
    ChoiceDescription,
    CommandOrigin,
    ErrorCategory,
    ErrorCategoryInfo,
    ErrorRecord,
    FieldDescription,
    HostMethodIdentifier,
    InvocationInfo,
    NETException,
    ProgressRecordType,
    PSCustomObject,
    PSDateTime,
    PSDict,
    PSDouble,
    PSDuration,
    PSInvocationState,
    PSList,
    PSObject,
    PSPrimitiveDictionary,
    PSRPMessageType,
    PSVersion,
    RunspacePoolState,
    add_note_property,
    deserialize_clixml,
    serialize,
)

from hvmagic.errors import ProtocolError, TransportError
from hvmagic.psrp.outofproc import (
    NIL_GUID,
    PacketKind,
    PacketReader,
    control_packet,
    data_packet,
)
from hvmagic.testing import filecopy_handlers
from hvmagic.testing.fastwire import clixml_text
from hvmagic.testing.handler_errors import (
    GuestUnavailableError,
    HostCallError,
    PipelineStoppedError,
    TerminatingError,
)
from hvmagic.transports.base import SocketTransport, Transport

if TYPE_CHECKING:
    from hvmagic.session import Session

#: what the simulated guest calls itself wherever a computer name appears
COMPUTER_NAME = "SIMULATED-GUEST"

#: PowerShell's server fragments at 32 KiB (``BaseTransportManager.DefaultFragmentSize``)
FRAGMENT_SIZE = 32 << 10
_FRAGMENT_HEADER = 21
_MESSAGE_HEADER = 40
_BOM = b"\xef\xbb\xbf"

#: Windows PowerShell 5.1 on Windows Server 2022, as a guest reports it
PS_VERSION_TABLE = {
    "PSVersion": "5.1.20348.2849",
    "PSEdition": "Desktop",
    "PSCompatibleVersions": ["1.0", "2.0", "3.0", "4.0", "5.0", "5.1.20348.2849"],
    "BuildVersion": "10.0.20348.2849",
    "CLRVersion": "4.0.30319.42000",
    "WSManStackVersion": "3.0",
    "PSRemotingProtocolVersion": "2.3",
    "SerializationVersion": "1.1.0.1",
}


def private_version_table() -> PSPrimitiveDictionary:
    """``$PSVersionTable`` as a 5.1 server puts it in APPLICATION_PRIVATE_DATA: a primitive
    dictionary whose versions are ``System.Version`` values, not strings."""
    table = PSPrimitiveDictionary()
    for key, value in PS_VERSION_TABLE.items():
        if isinstance(value, list):
            table[key] = [PSVersion(v) for v in value]
        elif key in ("PSEdition",):
            table[key] = value
        else:
            table[key] = PSVersion(str(value))
    return table


# --------------------------------------------------------------------------------------------
# Building records the way PowerShell does
# --------------------------------------------------------------------------------------------


def position_message(script: str, token: str | None = None) -> tuple[str, int, int, str]:
    """PowerShell's ``At line:L char:C`` block for ``token`` in ``script``.

    Returns ``(message, line_number, column, line_text)``. The token defaults to the first word
    of the first non-empty line, which is where PowerShell points for a failing command.
    """
    lines = script.splitlines() or [""]
    line_no, column, length = 1, 1, 1
    found = False
    if token:
        for index, text in enumerate(lines, start=1):
            pos = text.find(token)
            if pos >= 0:
                line_no, column, length, found = index, pos + 1, len(token), True
                break
    if not found:
        for index, text in enumerate(lines, start=1):
            stripped = text.strip()
            if stripped:
                first = stripped.split()[0]
                line_no, column, length = index, text.find(first) + 1, len(first)
                break
    line_text = lines[line_no - 1] if lines else ""
    marker = " " * (column - 1) + "~" * max(length, 1)
    message = f"At line:{line_no} char:{column}\n+ {line_text}\n+ {marker}"
    return message, line_no, column, line_text


def make_invocation_info(script: str, command: str | None = None) -> InvocationInfo:
    message, line_no, column, line_text = position_message(script, command)
    return InvocationInfo(
        BoundParameters=PSDict(),
        CommandOrigin=CommandOrigin.Internal,
        DisplayScriptPosition=None,
        ExpectingInput=False,
        HistoryId=1,
        InvocationName=command or "",
        Line=line_text,
        MyCommand=None,
        OffsetInLine=column,
        PipelineLength=1,
        PipelinePosition=1,
        PositionMessage=message,
        PSCommandPath=None,
        PSScriptRoot="",
        ScriptLineNumber=line_no,
        ScriptName="",
        UnboundArguments=PSList(),
    )


def make_exception(message: str, exception_type: str) -> NETException:
    exception = NETException(Message=message, HResult=-2146233087)
    base_names = list(exception.PSObject.type_names)
    names = [exception_type]
    if exception_type.endswith("Exception") and exception_type != "System.Exception":
        if exception_type.startswith("System.Management.Automation.") and (
            exception_type != "System.Management.Automation.RuntimeException"
        ):
            names.append("System.Management.Automation.RuntimeException")
        names.append("System.SystemException")
    names.extend(n for n in base_names if n not in names)
    exception.PSObject.type_names = names
    return exception


def make_error_record(
    message: str,
    *,
    script: str = "",
    category: str = "NotSpecified",
    error_id: str | None = None,
    target: Any = None,
    exception_type: str = "System.Management.Automation.RuntimeException",
    command: str | None = None,
    reason: str | None = None,
) -> ErrorRecord:
    """An ErrorRecord with InvocationInfo (position) as a PowerShell 5.1 guest sends it."""
    try:
        category_enum = ErrorCategory[category]
    except KeyError as exc:
        raise ValueError(f"unknown PowerShell ErrorCategory {category!r}") from exc
    short_type = exception_type.rsplit(".", 1)[-1]
    target_type = None if target is None else _ps_type_name(target)
    invocation = make_invocation_info(script, command)
    record = ErrorRecord(
        Exception=make_exception(message, exception_type),
        CategoryInfo=ErrorCategoryInfo(
            Category=category_enum,
            Activity=command or "",
            Reason=reason or short_type,
            TargetName="" if target is None else str(target),
            TargetType=target_type or "",
        ),
        TargetObject=target,
        FullyQualifiedErrorId=error_id or short_type,
        InvocationInfo=invocation,
        PipelineIterationInfo=PSList([0, 1]),
        ScriptStackTrace=f"at <ScriptBlock>, <No file>: line {invocation.ScriptLineNumber}",
    )
    record.serialize_extended_info = True
    return record


def _ps_type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "Boolean"
    if isinstance(value, int):
        return "Int32"
    if isinstance(value, str):
        return "String"
    ps_object = getattr(value, "PSObject", None)
    if ps_object is not None and ps_object.type_names:
        return str(ps_object.type_names[0]).rsplit(".", 1)[-1]
    return type(value).__name__


def to_ps_value(value: Any) -> Any:
    """Python convenience values → what psrpcore serializes like PowerShell would.

    ``dict`` becomes a ``PSCustomObject`` (what ``[pscustomobject]@{...}`` produces, and what a
    DataFrame wants; pass a psrpcore ``PSDict`` for a real hashtable), nested recursively;
    ``float`` a Double, aware ``datetime`` a ``DateTime`` with its offset, ``timedelta`` a
    ``TimeSpan``.
    """
    if isinstance(value, PSObject) or value is None or isinstance(value, (str, bool)):
        return value
    if isinstance(value, dict):
        type_name = value.get("PSTypeName")
        props = {k: to_ps_value(v) for k, v in value.items() if k != "PSTypeName"}
        obj = PSCustomObject(**props)
        if type_name:
            obj.PSObject.type_names.insert(0, str(type_name))
        return obj
    if isinstance(value, (list, tuple)):
        return [to_ps_value(v) for v in value]
    if isinstance(value, float):
        return PSDouble(value)
    if isinstance(value, _dt.datetime):
        aware = value if value.tzinfo else value.astimezone()
        return PSDateTime(
            aware.year,
            aware.month,
            aware.day,
            aware.hour,
            aware.minute,
            aware.second,
            aware.microsecond,
            tzinfo=aware.tzinfo,
        )
    if isinstance(value, _dt.timedelta):
        return PSDuration(seconds=value.total_seconds())
    return value


# --------------------------------------------------------------------------------------------
# Handlers
# --------------------------------------------------------------------------------------------

Handler = Callable[["HandlerContext"], Any]


@dataclass
class _Registration:
    pattern: str
    function: Handler
    regex: re.Pattern[str] | None
    exact: bool


class HandlerContext:
    """What a handler gets: the script, its parameters, the session and the streams.

    Every write method raises :class:`PipelineStoppedError` once the client stopped the
    pipeline, the way PowerShell interrupts a running script.
    """

    def __init__(
        self,
        connection: _GuestConnection,
        pipeline: _RunningPipeline,
        script: str,
        parameters: dict[str, Any],
        match: re.Match[str] | None,
    ) -> None:
        self._connection = connection
        self._pipeline = pipeline
        #: the user's script text (the session's wrapper removed)
        self.script = script
        #: the parameters the client passed (PowerShell variables of the same name)
        self.parameters = parameters
        #: the regular-expression match when the handler was registered with ``regex=True``
        self.match = match
        #: per-session variables: survive between pipelines of one connection
        self.variables: dict[str, Any] = connection.variables
        #: the :class:`FakeGuest` (guest-wide state, ``guest.root`` file system, reboot)
        self.guest: FakeGuest = connection.guest
        #: the command name errors and positions refer to (set by interpreters)
        self.command: str | None = None

    # ---- state ------------------------------------------------------------------------------

    @property
    def stopped(self) -> bool:
        """True once the client sent ``Signal`` (or the connection died)."""
        return self._pipeline.stop_event.is_set()

    def check_stopped(self) -> None:
        if self.stopped:
            raise PipelineStoppedError("The pipeline has been stopped.")

    def sleep(self, seconds: float) -> None:
        """Wait ``seconds``, waking immediately (with :class:`PipelineStoppedError`) on stop."""
        if self._pipeline.stop_event.wait(max(0.0, seconds)):
            raise PipelineStoppedError("The pipeline has been stopped.")

    def stall(
        self, until: threading.Event, timeout: float = 60.0, *, first: Iterable[Any] = ()
    ) -> None:
        """Fault: the guest stops answering altogether until ``until`` is set (or ``timeout``).

        The whole connection is held, not just this pipeline: a ``Signal`` is neither
        acknowledged nor acted on, no state or output is sent — a hung guest, which real
        PowerShell cannot be made to be on demand. ``first``: output objects written once the
        connection is held, so a client that stops the pipeline when they arrive always meets
        the hung guest (written before the stall, its Signal could be answered in between).
        """
        with self._connection._lock:
            self.output_many(first)
            until.wait(timeout)

    def input(self, timeout: float | None = None) -> Iterator[Any]:
        """The pipeline input the client sends (``$input``), until end of input."""
        while True:
            item = self._pipeline.next_input(timeout)
            if item is _END_OF_INPUT:
                return
            yield item

    # ---- streams ----------------------------------------------------------------------------

    def output(self, value: Any) -> None:
        """Write one object to the output stream (lists are written as one array object)."""
        self._connection.write_output(self._pipeline, value)

    def output_many(self, values: Iterable[Any]) -> None:
        """Write each value as its own output object (PowerShell's enumeration)."""
        for value in values:
            self._connection.write_output(self._pipeline, value)

    def output_clixml(self, path_or_text: str | os.PathLike[str]) -> int:
        """Serve the objects of a CLIXML document (an ``Export-Clixml`` file or its text).

        The objects keep their original type names (one ``Deserialized.`` is removed, since the
        client adds it again as PowerShell does). Returns how many objects were written.
        """
        text = str(path_or_text)
        if not text.lstrip().startswith("<"):
            text = Path(path_or_text).read_text(encoding="utf-8-sig")
        values = deserialize_clixml(text, self._connection.pool._cipher)
        for value in values:
            _strip_one_deserialized(value)
            self.output(value)
        return len(values)

    def error(
        self,
        message: str,
        *,
        category: str = "NotSpecified",
        error_id: str | None = None,
        target: Any = None,
        exception_type: str = "Microsoft.PowerShell.Commands.WriteErrorException",
    ) -> None:
        """A non-terminating error (``Write-Error``): the pipeline carries on."""
        record = make_error_record(
            message,
            script=self.script,
            category=category,
            error_id=error_id
            or (
                "Microsoft.PowerShell.Commands.WriteErrorException"
                if self.command is None
                else f"{exception_type.rsplit('.', 1)[-1]},{self.command}"
            ),
            target=target,
            exception_type=exception_type,
            command=self.command,
        )
        self._connection.write_record(self._pipeline, "error", record)

    def fail(
        self,
        message: str,
        *,
        category: str = "NotSpecified",
        error_id: str | None = None,
        target: Any = None,
        exception_type: str = "System.Management.Automation.RuntimeException",
    ) -> TerminatingError:
        """End the pipeline with a terminating error (``throw``); never returns."""
        raise TerminatingError(
            message,
            category=category,
            error_id=error_id,
            target=target,
            exception_type=exception_type,
            command=self.command,
        )

    def warning(self, message: str) -> None:
        self._connection.write_record(self._pipeline, "warning", str(message))

    def verbose(self, message: str) -> None:
        self._connection.write_record(self._pipeline, "verbose", str(message))

    def debug(self, message: str) -> None:
        self._connection.write_record(self._pipeline, "debug", str(message))

    def information(
        self, message_data: Any, *, tags: list[str] | None = None, source: str | None = None
    ) -> None:
        """``Write-Information``: an information record (PowerShell 5+)."""
        self._connection.write_information(
            self._pipeline,
            message_data,
            tags or [],
            source or (self.command or "Write-Information"),
        )

    def host_write(
        self,
        text: str,
        *,
        foreground: str | None = None,
        background: str | None = None,
        no_newline: bool = False,
    ) -> None:
        """``Write-Host``: PowerShell 5 sends an information record tagged ``PSHOST`` whose
        MessageData is a ``HostInformationMessage``."""
        message = PSObject()
        message.PSObject.type_names = [
            "System.Management.Automation.HostInformationMessage",
            "System.Object",
        ]
        add_note_property(message, "Message", str(text))
        add_note_property(message, "NoNewLine", bool(no_newline))
        add_note_property(message, "ForegroundColor", foreground)
        add_note_property(message, "BackgroundColor", background)
        message.PSObject.to_string = str(text)
        self._connection.write_information(self._pipeline, message, ["PSHOST"], "Write-Host")

    def progress(
        self,
        activity: str,
        status: str = "Processing",
        percent: int = -1,
        *,
        activity_id: int = 0,
        parent_id: int = -1,
        current_operation: str | None = None,
        seconds_remaining: int = -1,
        completed: bool = False,
    ) -> None:
        """``Write-Progress`` (``completed=True`` is ``Write-Progress -Completed``)."""
        self._connection.write_progress(
            self._pipeline,
            activity=activity,
            activity_id=activity_id,
            status_description=status,
            current_operation=current_operation,
            parent_activity_id=parent_id,
            percent_complete=percent,
            record_type=ProgressRecordType.Completed
            if completed
            else ProgressRecordType.Processing,
            seconds_remaining=seconds_remaining,
        )

    # ---- host calls -------------------------------------------------------------------------

    def host_call(
        self, method: str | HostMethodIdentifier, *parameters: Any, timeout: float | None = 60.0
    ) -> Any:
        """Call a method of the client's host (``$Host.UI.*``) and wait for its answer.

        Void methods (``WriteLine2`` …) return ``None`` at once. A host that answers with an
        error raises :class:`HostCallError`; a stop raises :class:`PipelineStoppedError`.
        """
        if isinstance(method, str):
            try:
                method = HostMethodIdentifier[method]
            except KeyError as exc:
                raise ValueError(f"unknown host method {method!r}") from exc
        return self._connection.host_call(self._pipeline, method, list(parameters), timeout)

    def read_host(self, prompt: str | None = None, *, as_secure_string: bool = False) -> Any:
        """``Read-Host [-Prompt p] [-AsSecureString]`` as PowerShell 5.1 implements it:
        with a prompt it calls ``Prompt`` with one field, else ``ReadLine``."""
        if prompt is None:
            method = "ReadLineAsSecureString" if as_secure_string else "ReadLine"
            return self.host_call(method)
        field_description = FieldDescription(
            Name=prompt,
            ParameterTypeName="String",
            ParameterTypeFullName="System.String",
            ParameterAssemblyFullName=(
                "mscorlib, Version=4.0.0.0, Culture=neutral, PublicKeyToken=b77a5c561934e089"
            ),
            Label="",
        )
        if as_secure_string:
            field_description.ParameterTypeName = "SecureString"
            field_description.ParameterTypeFullName = "System.Security.SecureString"
            field_description.ParameterAssemblyFullName = (
                "mscorlib, Version=4.0.0.0, Culture=neutral, PublicKeyToken=b77a5c561934e089"
            )
        answer = self.host_call(
            "Prompt",
            "",
            "",
            [FieldDescription.ToPSObjectForRemoting(field_description, for_host=True)],
        )
        if isinstance(answer, dict):
            return answer.get(prompt, next(iter(answer.values()), None))
        return answer

    def prompt_for_credential(
        self,
        caption: str = "Windows PowerShell credential request",
        message: str = "Enter your credentials.",
        username: str | None = None,
        target_name: str = "",
    ) -> Any:
        return self.host_call("PromptForCredential1", caption, message, username, target_name)

    def prompt_for_choice(
        self, caption: str, message: str, choices: list[str], default: int = -1
    ) -> int:
        descriptions = [
            ChoiceDescription.ToPSObjectForRemoting(ChoiceDescription(Label=c), for_host=True)
            for c in choices
        ]
        return int(self.host_call("PromptForChoice", caption, message, descriptions, default))


def _strip_one_deserialized(value: Any) -> None:
    ps_object = getattr(value, "PSObject", None)
    if ps_object is None:
        return
    names = ps_object.type_names
    if names and all(str(n).startswith("Deserialized.") for n in names):
        ps_object.type_names = [str(n)[len("Deserialized.") :] for n in names]
    for prop in list(ps_object.adapted_properties) + list(ps_object.extended_properties):
        with contextlib.suppress(Exception):  # a getter-less property holds nothing to fix
            _strip_one_deserialized(prop.get_value(value))


class _EndOfInput:
    pass


_END_OF_INPUT = _EndOfInput()


# --------------------------------------------------------------------------------------------
# One connection = one runspace pool
# --------------------------------------------------------------------------------------------


@dataclass
class _RunningPipeline:
    pipeline: psrpcore.ServerPipeline
    guid: uuid.UUID
    stop_event: threading.Event = field(default_factory=threading.Event)
    input_items: list[Any] = field(default_factory=list)
    input_done: bool = False
    input_cond: threading.Condition = field(default_factory=threading.Condition)
    host_replies: dict[int, tuple[threading.Event, list[Any]]] = field(default_factory=dict)
    thread: threading.Thread | None = None

    def next_input(self, timeout: float | None) -> Any:
        deadline = None if timeout is None else time.monotonic() + timeout
        with self.input_cond:
            while not self.input_items and not self.input_done:
                if self.stop_event.is_set():
                    raise PipelineStoppedError("The pipeline has been stopped.")
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise TimeoutError("no pipeline input arrived in time")
                self.input_cond.wait(0.1 if remaining is None else min(remaining, 0.1))
            if self.input_items:
                return self.input_items.pop(0)
            return _END_OF_INPUT


class _GuestConnection:
    """Serves one OutOfProc connection (one runspace pool) until end of stream."""

    def __init__(
        self,
        guest: FakeGuest,
        send: Callable[[bytes], None],
        recv: Callable[[], bytes],
        close: Callable[[], None],
        name: str,
        error_prefix: str = "__HyperVSocketError__:",
    ) -> None:
        self.guest = guest
        self.name = name
        self._send = send
        self._recv = recv
        self._close = close
        self._error_prefix = error_prefix
        self._lock = threading.RLock()
        self.pool = psrpcore.ServerRunspacePool(
            application_private_data={"PSVersionTable": private_version_table()}
        )
        self.pipelines: dict[uuid.UUID, _RunningPipeline] = {}
        self.variables: dict[str, Any] = {}
        self._runspace_permits: threading.Semaphore | None = None
        self.closed = threading.Event()
        #: how long Close(pool) waits for open pipelines (PowerShell's client gives up at 60 s)
        self.pool_close_timeout = 60.0
        self.error: BaseException | None = None
        self._dead = False

    # ---- transport side ---------------------------------------------------------------------

    def serve(self) -> None:
        """Read packets until EOF; raises :class:`ProtocolError` on a malformed stream."""
        reader = PacketReader()
        try:
            while True:
                try:
                    data = self._recv()
                except OSError:
                    data = b""
                if not data:
                    return
                reader.receive_data(data)
                while (packet := reader.next_packet()) is not None:
                    self._dispatch(packet.kind, packet.guid, packet.data, packet.stream)
        finally:
            self._shutdown_pipelines()
            self.closed.set()

    def kill(self) -> None:
        """Drop the connection without goodbye (the guest process died)."""
        self._dead = True
        self._shutdown_pipelines()
        with contextlib.suppress(OSError):
            self._close()

    def _write(self, data: bytes) -> None:
        if self._dead:
            raise PipelineStoppedError("the connection is gone")
        try:
            self._send(data)
        except (OSError, TransportError) as exc:
            self._dead = True
            raise PipelineStoppedError(f"the connection is gone: {exc}") from exc

    def report_error(self, message: str) -> None:
        """An error line, as PowerShell's hvsocket mediator writes one before giving up."""
        with contextlib.suppress(PipelineStoppedError):
            self._write(f"{self._error_prefix}{message}\n".encode())

    # ---- packet dispatch (reader thread) ------------------------------------------------------

    def _dispatch(self, kind: PacketKind, guid: uuid.UUID, data: bytes, stream: str) -> None:
        if kind is PacketKind.DATA:
            self._on_data(guid, data, stream)
        elif kind is PacketKind.COMMAND:
            if guid == NIL_GUID:
                raise ProtocolError("a Command packet needs a pipeline PSGuid")
            with self._lock:
                if guid not in self.pipelines:
                    pipeline = psrpcore.ServerPipeline(self.pool, guid)
                    self.pipelines[guid] = _RunningPipeline(pipeline, guid)
                self._write(control_packet(PacketKind.COMMAND_ACK, guid))
        elif kind is PacketKind.SIGNAL:
            if guid == NIL_GUID:
                raise ProtocolError("a Signal packet needs a pipeline PSGuid")
            self._on_signal(guid)
        elif kind is PacketKind.CLOSE:
            self._on_close(guid)
        else:
            # Acks only flow server → client; PowerShell treats them as unknown elements.
            raise ProtocolError(f"An unknown element {kind.value!r} was received by the server")

    def _on_data(self, guid: uuid.UUID, data: bytes, stream: str) -> None:
        stream_type = (
            psrpcore.StreamType.prompt_response
            if stream == "PromptResponse"
            else psrpcore.StreamType.default
        )
        pipeline_id = None if guid == NIL_GUID else guid
        started: list[_RunningPipeline] = []
        with self._lock:
            try:
                self.pool.receive_data(psrpcore.PSRPPayload(data, stream_type, pipeline_id))
                while (event := self.pool.next_event()) is not None:
                    self._on_event(event, started)
            except psrpcore.PSRPCoreError as exc:
                raise ProtocolError(f"PSRP message rejected: {exc}") from exc
            self._flush()
            self._write(control_packet(PacketKind.DATA_ACK, guid))
        for running in started:
            running.thread = threading.Thread(
                target=self._run_pipeline,
                args=(running,),
                daemon=True,
                name=f"fakeguest-pipeline-{running.guid}",
            )
            running.thread.start()

    def _on_event(self, event: psrpcore.PSRPEvent, started: list[_RunningPipeline]) -> None:
        if isinstance(event, psrpcore.CreatePipelineEvent):
            running = self.pipelines.get(event.pipeline_id)
            if running is None:  # Data before Command: PowerShell has no transport for it
                raise ProtocolError(f"CREATE_PIPELINE for {event.pipeline_id} before its Command")
            running.pipeline.start()
            started.append(running)
        elif isinstance(event, psrpcore.PipelineInputEvent):
            running = self.pipelines.get(event.pipeline_id)
            if running is not None:
                with running.input_cond:
                    running.input_items.append(event.data)
                    running.input_cond.notify_all()
        elif isinstance(event, psrpcore.EndOfPipelineInputEvent):
            running = self.pipelines.get(event.pipeline_id)
            if running is not None:
                with running.input_cond:
                    running.input_done = True
                    running.input_cond.notify_all()
        elif isinstance(event, psrpcore.PipelineHostResponseEvent):
            running = self.pipelines.get(event.pipeline_id)
            if running is not None and event.ci in running.host_replies:
                waiter, slot = running.host_replies[event.ci]
                slot.append((event.result, event.error))
                waiter.set()
        elif isinstance(
            event,
            (psrpcore.SetMaxRunspacesEvent, psrpcore.SetMinRunspacesEvent),
        ):
            self.pool.runspace_availability_response(event.ci, True)
        elif isinstance(event, psrpcore.ResetRunspaceStateEvent):
            self.variables.clear()
            self.pool.runspace_availability_response(event.ci, True)
        elif isinstance(event, psrpcore.GetAvailableRunspacesEvent):
            busy = sum(1 for p in self.pipelines.values() if p.thread and p.thread.is_alive())
            self.pool.runspace_availability_response(
                event.ci, max(self.pool.max_runspaces - busy, 0)
            )

    def _on_signal(self, guid: uuid.UUID) -> None:
        with self._lock:
            running = self.pipelines.get(guid)
            if running is not None:
                running.stop_event.set()
                with running.input_cond:
                    running.input_cond.notify_all()
                for waiter, _slot in running.host_replies.values():
                    waiter.set()
                if running.pipeline.state in (
                    PSInvocationState.Running,
                    PSInvocationState.Stopping,
                ):
                    running.pipeline.stop()
                    self._flush()
            # PowerShell always acknowledges a Signal, even for an unknown pipeline.
            self._write(control_packet(PacketKind.SIGNAL_ACK, guid))

    def _on_close(self, guid: uuid.UUID) -> None:
        if guid != NIL_GUID:
            with self._lock:
                running = self.pipelines.pop(guid, None)
                if running is not None:
                    running.stop_event.set()
                    if running.pipeline.state in (
                        PSInvocationState.Running,
                        PSInvocationState.Stopping,
                    ):
                        running.pipeline.stop()
                        self._flush()
                    running.pipeline.close()
                self._write(control_packet(PacketKind.CLOSE_ACK, guid))
            return
        # Closing the pool: PowerShell waits until every command has been closed, while it
        # keeps processing packets (each line is its own work item) — so wait on a side
        # thread and let the reader go on handling the client's Close(pid) packets.
        if self.pipelines:
            waiter = threading.Thread(
                target=self._close_pool_when_idle, daemon=True, name=f"fakeguest-{self.name}-close"
            )
            waiter.start()
        else:
            self._close_pool_when_idle()

    def _close_pool_when_idle(self) -> None:
        deadline = time.monotonic() + self.pool_close_timeout
        while self.pipelines and time.monotonic() < deadline and not self._dead:
            time.sleep(0.01)
        with self._lock:
            self._shutdown_pipelines()
            for running in list(self.pipelines.values()):
                with contextlib.suppress(psrpcore.PSRPCoreError):
                    running.pipeline.close()
            self.pipelines.clear()
            if self.pool.state == RunspacePoolState.Opened:
                with contextlib.suppress(psrpcore.PSRPCoreError):
                    self.pool.close()
            with contextlib.suppress(PipelineStoppedError):
                self._write(control_packet(PacketKind.CLOSE_ACK, NIL_GUID))

    def _shutdown_pipelines(self) -> None:
        for running in list(self.pipelines.values()):
            running.stop_event.set()
            with running.input_cond:
                running.input_cond.notify_all()
            for waiter, _slot in running.host_replies.values():
                waiter.set()

    # ---- sending ----------------------------------------------------------------------------

    def _flush(self) -> None:
        """Send what psrpcore queued: one fragment per ``Data`` line, payloads with a BOM.

        Draining psrpcore's queue ourselves (instead of ``data_to_send``) lets the guest
        fragment exactly as PowerShell does and prefix the CLIXML with the BOM PowerShell's
        serializer writes; the fragments and message headers are still psrpcore's.
        """
        queue = self.pool._send_buffer
        if not queue:
            return
        lines: list[bytes] = []
        for message in queue:
            raw = message.data
            if len(raw) > _MESSAGE_HEADER and not raw.startswith(_BOM, _MESSAGE_HEADER):
                raw = raw[:_MESSAGE_HEADER] + _BOM + raw[_MESSAGE_HEADER:]
            stream = (
                "PromptResponse"
                if message.stream_type is psrpcore.StreamType.prompt_response
                else "Default"
            )
            self._fragment_lines(
                lines, message.object_id, raw, message.pipeline_id or NIL_GUID, stream
            )
        queue.clear()
        self._write(b"".join(lines))

    @staticmethod
    def _fragment_lines(
        lines: list[bytes], object_id: int, raw: bytes, guid: uuid.UUID, stream: str = "Default"
    ) -> None:
        size = FRAGMENT_SIZE - _FRAGMENT_HEADER
        count = max(1, -(-len(raw) // size))
        for index in range(count):
            chunk = raw[index * size : (index + 1) * size]
            fragment = create_fragment(object_id, index, chunk, index == count - 1)
            lines.append(data_packet(fragment, guid, stream))

    def _send_raw_message(
        self, running: _RunningPipeline, message_type: PSRPMessageType, clixml: bytes
    ) -> None:
        """Queue-bypassing send of an already serialized message (bulk output)."""
        self._flush()
        raw = create_message(
            False, message_type, _BOM + clixml, self.pool.runspace_pool_id, running.guid
        )
        lines: list[bytes] = []
        self._fragment_lines(lines, self.pool._fragment_counter, raw, running.guid)
        self._write(b"".join(lines))

    def _ensure_running(self, running: _RunningPipeline) -> None:
        if running.stop_event.is_set() or running.pipeline.state != PSInvocationState.Running:
            raise PipelineStoppedError("The pipeline has been stopped.")

    def serialize_output(self, value: Any) -> bytes:
        if type(value) is str:  # bulk text (file chunks, logs): skip the ElementTree round trip
            return b"<S>" + clixml_text(value).encode("utf-8") + b"</S>"
        wire = getattr(value, "wire", None)
        if wire is not None and callable(wire):  # objects that cache their serialized form
            return bytes(wire(self._serialize))
        return self._serialize(to_ps_value(value))

    def _serialize(self, value: Any) -> bytes:
        element = serialize(
            value,
            self.pool._cipher,
            our_capability=self.pool.our_capability,
            their_capability=self.pool.their_capability,
        )
        return ElementTree.tostring(element, encoding="utf-8", method="xml")

    def write_output(self, running: _RunningPipeline, value: Any) -> None:
        clixml = self.serialize_output(value)
        with self._lock:
            self._ensure_running(running)
            self._send_raw_message(running, PSRPMessageType.PipelineOutput, clixml)

    def write_record(self, running: _RunningPipeline, stream: str, record: Any) -> None:
        with self._lock:
            self._ensure_running(running)
            pipeline = running.pipeline
            if stream == "error":
                record.serialize_extended_info = True
                pipeline.prepare_message(record, message_type=PSRPMessageType.ErrorRecord)
            elif stream == "warning":
                pipeline.write_warning(record)
            elif stream == "verbose":
                pipeline.write_verbose(record)
            elif stream == "debug":
                pipeline.write_debug(record)
            else:
                raise ValueError(f"unknown stream {stream!r}")
            self._flush()

    def write_information(
        self, running: _RunningPipeline, message_data: Any, tags: list[str], source: str
    ) -> None:
        with self._lock:
            self._ensure_running(running)
            running.pipeline.write_information(
                to_ps_value(message_data),
                source,
                tags=PSList(tags),
                user=f"{COMPUTER_NAME}\\Administrator",
                computer=COMPUTER_NAME,
                process_id=4242,
                native_thread_id=1,
                managed_thread_id=1,
            )
            self._flush()

    def write_progress(self, running: _RunningPipeline, **kwargs: Any) -> None:
        with self._lock:
            self._ensure_running(running)
            running.pipeline.write_progress(**kwargs)
            self._flush()

    def host_call(
        self,
        running: _RunningPipeline,
        method: HostMethodIdentifier,
        parameters: list[Any],
        timeout: float | None,
    ) -> Any:
        waiter = threading.Event()
        slot: list[Any] = []
        with self._lock:
            self._ensure_running(running)
            ci = running.pipeline.host_call(method, [to_ps_value(p) for p in parameters])
            if not method.is_void():
                running.host_replies[ci] = (waiter, slot)
            self._flush()
        if method.is_void():
            return None
        try:
            if not waiter.wait(timeout):
                raise TimeoutError(f"the client did not answer the {method.name} host call")
            if not slot:
                raise PipelineStoppedError("The pipeline has been stopped.")
            result, error = slot[0]
        finally:
            running.host_replies.pop(ci, None)
        if error is not None:
            exception = getattr(error, "Exception", None)
            message = getattr(exception, "Message", None) or str(error)
            raise HostCallError(str(message), error)
        return result

    # ---- running a pipeline (worker thread) ---------------------------------------------------

    def _runspaces(self) -> threading.Semaphore:
        """One permit per runspace of the pool: with ``MaxRunspaces`` 1 (what sessions ask
        for) a second pipeline waits for the first, as it does in a real runspace pool."""
        with self._lock:
            if self._runspace_permits is None:
                self._runspace_permits = threading.Semaphore(max(1, self.pool.max_runspaces))
            return self._runspace_permits

    def _run_pipeline(self, running: _RunningPipeline) -> None:
        permits = self._runspaces()
        while not permits.acquire(timeout=0.05):
            if running.stop_event.is_set():
                return
        try:
            self._run_pipeline_in_runspace(running)
        finally:
            permits.release()

    def _run_pipeline_in_runspace(self, running: _RunningPipeline) -> None:
        commands = running.pipeline.metadata.commands if running.pipeline.metadata else []
        script, parameters = extract_user_script(commands)
        try:
            handler, match = self.guest.find_handler(script)
            ctx = HandlerContext(self, running, script, parameters, match)
            result = handler(ctx)
            if result is not None:
                for item in _enumerate_output(result):
                    ctx.output(item)
            self._finish(running, None)
        except PipelineStoppedError:
            return
        except TerminatingError as exc:
            self._finish(
                running,
                make_error_record(
                    exc.message,
                    script=script,
                    category=exc.category,
                    error_id=exc.error_id,
                    target=exc.target,
                    exception_type=exc.exception_type,
                    command=exc.command,
                ),
            )
        except HostCallError as exc:
            self._finish(
                running,
                make_error_record(
                    str(exc),
                    script=script,
                    category="NotImplemented",
                    error_id="HostFunctionNotImplemented",
                    exception_type="System.Management.Automation.Host.HostException",
                ),
            )
        except Exception as exc:  # a handler bug is a PowerShell RuntimeException to the client
            self._finish(
                running,
                make_error_record(
                    f"{type(exc).__name__}: {exc}",
                    script=script,
                    category="NotSpecified",
                    error_id=type(exc).__name__,
                ),
            )

    def _finish(self, running: _RunningPipeline, error: ErrorRecord | None) -> None:
        with self._lock:
            if running.stop_event.is_set() or self._dead:
                return
            if running.pipeline.state != PSInvocationState.Running:
                return
            try:
                if error is None:
                    running.pipeline.complete()
                else:
                    running.pipeline._change_state(PSInvocationState.Failed, error=error)
                self._flush()
            except PipelineStoppedError:
                return


def _enumerate_output(result: Any) -> Iterator[Any]:
    """A handler's return value as PowerShell would enumerate it onto the output stream."""
    if isinstance(result, (str, bytes, dict, PSObject)) or not isinstance(result, Iterable):
        yield result
        return
    yield from result


# --------------------------------------------------------------------------------------------
# The session's wrapper → the user's script
# --------------------------------------------------------------------------------------------

#: parameter names under which a session wrapper may pass the user's script text
SCRIPT_PARAMETER_NAMES = ("HvMagicScript", "__hvmagic_script", "UserScript", "Script")
#: parameter names under which a wrapper may pass the user's variables as one hashtable
VARIABLES_PARAMETER_NAMES = (
    "HvMagicParameters",
    "__hvmagic_parameters",
    "UserParameters",
    "Parameters",
    "Variables",
)


def extract_user_script(commands: list[Any]) -> tuple[str, dict[str, Any]]:
    """Find the user's script and parameters in a pipeline's commands.

    A session may send the script as is (``AddScript(script)`` + parameters), or wrap it:
    ``AddScript(wrapper)`` with the user's text in a parameter named in
    :data:`SCRIPT_PARAMETER_NAMES` and their values either as sibling parameters or as one
    hashtable named in :data:`VARIABLES_PARAMETER_NAMES`. Handlers always see the user's
    text and the user's parameters.
    """
    if not commands:
        return "", {}
    for command in commands:
        named = {name: value for name, value in command.parameters if name}
        for key in SCRIPT_PARAMETER_NAMES:
            for name, value in named.items():
                if name.lower() == key.lower() and isinstance(value, str):
                    rest = {k: v for k, v in named.items() if k != name}
                    for var_key in VARIABLES_PARAMETER_NAMES:
                        for other, other_value in list(rest.items()):
                            if other.lower() == var_key.lower() and isinstance(other_value, dict):
                                rest.pop(other)
                                rest.update({str(k): v for k, v in other_value.items()})
                    return value, rest
    first = commands[0]
    parameters = {name: value for name, value in first.parameters if name}
    texts = [str(c.command_text) for c in commands]
    if len(texts) == 1 or all(c.is_script for c in commands):
        return "\n".join(texts) if len(texts) > 1 else texts[0], parameters
    return " | ".join(texts), parameters


# --------------------------------------------------------------------------------------------
# FakeGuest
# --------------------------------------------------------------------------------------------


class FakeGuest:
    """A simulated Windows guest speaking PSRP over OutOfProc; see the module docstring.

    ``handlers`` maps patterns to handler functions (same as :meth:`add_handler`); a script
    none matches fails with PowerShell's ``CommandNotFoundException``. ``root`` is the
    directory the guest's ``C:\\`` drive lives in (a temporary directory by default), used by
    the file-copy handlers (:mod:`hvmagic.testing.filecopy_handlers`).
    """

    def __init__(
        self,
        handlers: dict[str, Handler] | None = None,
        *,
        root: str | os.PathLike[str] | None = None,
        reboot_seconds: float = 2.0,
    ) -> None:
        self._registrations: list[_Registration] = []
        self._lock = threading.Lock()
        self._connections: list[_GuestConnection] = []
        self._threads: list[threading.Thread] = []
        self._listeners: list[socket.socket] = []
        self._down_until = 0.0
        self._closed = False
        self._tempdir: tempfile.TemporaryDirectory[str] | None = None
        self._root = Path(root) if root is not None else None
        #: guest-wide state handlers may use (survives connections, reset by nothing)
        self.state: dict[str, Any] = {}
        self.boot_time = _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0)
        self.boot_count = 1
        self.reboot_seconds = reboot_seconds
        #: scripts the guest ran, in order (user text, after unwrapping) — for tests
        self.history: list[str] = []
        for pattern, function in (handlers or {}).items():
            self.add_handler(pattern, function)
        filecopy_handlers.install(self)

    # ---- handlers ---------------------------------------------------------------------------

    def add_handler(self, pattern: str, function: Handler, *, regex: bool = False) -> None:
        """Register ``function`` for scripts matching ``pattern``.

        Matching, in order: a handler whose pattern equals the (stripped) script exactly; then
        regex handlers (``re.search``, DOTALL) and substring handlers, most recently registered
        first. A script none matches fails like an unknown command.
        """
        compiled = re.compile(pattern, re.DOTALL) if regex else None
        self._registrations.append(_Registration(pattern, function, compiled, not regex))

    def handle(self, pattern: str, *, regex: bool = False) -> Callable[[Handler], Handler]:
        """Decorator form of :meth:`add_handler`."""

        def register(function: Handler) -> Handler:
            self.add_handler(pattern, function, regex=regex)
            return function

        return register

    def find_handler(self, script: str) -> tuple[Handler, re.Match[str] | None]:
        self.history.append(script)
        text = script.strip()
        for registration in reversed(self._registrations):
            if registration.exact and registration.pattern.strip() == text:
                return registration.function, None
        for registration in reversed(self._registrations):
            if registration.regex is not None:
                match = registration.regex.search(script)
                if match is not None:
                    return registration.function, match
            elif registration.pattern and registration.pattern in script:
                return registration.function, None
        return _unknown_command_handler, None

    # ---- file system ------------------------------------------------------------------------

    @property
    def root(self) -> Path:
        """The host directory holding the guest's drives (``C:\\x`` → ``root/C/x``)."""
        if self._root is None:
            self._tempdir = tempfile.TemporaryDirectory(prefix="hvmagic-guest-")
            self._root = Path(self._tempdir.name)
        return self._root

    def host_path(self, guest_path: str) -> Path:
        """Map a Windows guest path (``C:\\Users\\x``) to the host path inside :attr:`root`."""
        text = str(guest_path).strip().strip('"').strip("'").replace("/", "\\")
        match = re.match(r"^([A-Za-z]):\\?(.*)$", text)
        if match is None:
            if text.startswith("\\"):
                raise ValueError(f"UNC and rooted paths are not simulated: {guest_path!r}")
            drive, rest = "C", "Users\\Administrator\\Documents\\" + text
        else:
            drive, rest = match.group(1).upper(), match.group(2)
        parts = [p for p in rest.split("\\") if p not in ("", ".")]
        if ".." in parts:
            raise ValueError(f"'..' is not allowed in simulated guest paths: {guest_path!r}")
        return self.root.joinpath(drive, *parts)

    def guest_path(self, host_path: Path) -> str:
        relative = host_path.relative_to(self.root)
        drive, *rest = relative.parts
        return f"{drive}:\\" + "\\".join(rest)

    # ---- transports -------------------------------------------------------------------------

    @property
    def is_up(self) -> bool:
        return not self._closed and time.monotonic() >= self._down_until

    def _check_up(self) -> None:
        if self._closed:
            raise GuestUnavailableError("the simulated guest has been shut down")
        remaining = self._down_until - time.monotonic()
        if remaining > 0:
            raise GuestUnavailableError(
                f"connection refused: the simulated guest is rebooting ({remaining:.1f} s left)"
            )

    def transport(self) -> Transport:
        """A fresh client end of a socket pair; a server thread serves the other end."""
        self._check_up()
        client, server = socket.socketpair()
        self._start_socket_connection(server, "socketpair")
        return SocketTransport(client, f"simulated guest {COMPUTER_NAME} (socket pair)")

    def connect(self, **kwargs: Any) -> Session:
        """Open a :class:`hvmagic.session.Session` to this guest over a socket pair."""
        from hvmagic.session import open_session

        kwargs.setdefault("name", COMPUTER_NAME)
        return open_session(self.transport(), **kwargs)

    def serve_tcp(self, host: str = "127.0.0.1", port: int = 0) -> tuple[str, int]:
        """Listen on TCP loopback; each accepted connection is one session. Returns the address."""
        listener = socket.create_server((host, port))
        self._listeners.append(listener)
        thread = threading.Thread(
            target=self._accept_loop, args=(listener,), daemon=True, name="fakeguest-accept"
        )
        thread.start()
        address = listener.getsockname()
        return str(address[0]), int(address[1])

    def _accept_loop(self, listener: socket.socket) -> None:
        while not self._closed:
            try:
                sock, _ = listener.accept()
            except OSError:
                return
            if not self.is_up:
                sock.close()  # a rebooting guest refuses sessions
                continue
            self._start_socket_connection(sock, "tcp")

    def _start_socket_connection(self, sock: socket.socket, kind: str) -> _GuestConnection:
        def close() -> None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

        connection = _GuestConnection(
            self,
            sock.sendall,
            lambda: sock.recv(1 << 16),
            close,
            f"{kind}-{len(self._connections)}",
        )
        with self._lock:
            self._connections.append(connection)
        thread = threading.Thread(
            target=self._serve_socket,
            args=(connection,),
            daemon=True,
            name=f"fakeguest-{connection.name}",
        )
        self._threads.append(thread)
        thread.start()
        return connection

    def _serve_socket(self, connection: _GuestConnection) -> None:
        try:
            connection.serve()
        except (ProtocolError, TransportError) as exc:
            connection.error = exc
            connection.report_error(str(exc))
        except PipelineStoppedError:
            connection.error = None  # the client went away while we were answering: not a fault
        finally:
            connection.kill()
            with self._lock:
                if connection in self._connections:
                    self._connections.remove(connection)

    def serve_stdio(self, stdin: Any = None, stdout: Any = None, stderr: Any = None) -> int:
        """Serve one session on binary streams like ``pwsh -s``; returns the exit code."""
        stdin = stdin or sys.stdin.buffer
        stdout = stdout or sys.stdout.buffer
        stderr = stderr or sys.stderr
        write_lock = threading.Lock()

        def send(data: bytes) -> None:
            with write_lock:
                stdout.write(data)
                stdout.flush()

        def recv() -> bytes:
            reader = getattr(stdin, "read1", None)
            return reader(1 << 16) if reader is not None else stdin.read(1 << 16)

        connection = _GuestConnection(self, send, recv, lambda: None, "stdio", error_prefix="")
        with self._lock:
            self._connections.append(connection)
        try:
            connection.serve()
        except (ProtocolError, TransportError) as exc:
            # pwsh -s: the error text goes to stderr and the process exits with 4000 (0x0FA0).
            stderr.write(f"{exc}\n")
            stderr.flush()
            return 4000
        except PipelineStoppedError:
            return 0
        return 0

    # ---- fault injection --------------------------------------------------------------------

    @property
    def connections(self) -> int:
        with self._lock:
            return len(self._connections)

    def kill_connections(self) -> int:
        """Drop every live connection at once (the guest's PowerShell died). Returns how many."""
        with self._lock:
            victims = list(self._connections)
        for connection in victims:
            connection.kill()
        return len(victims)

    def reboot(self, seconds: float | None = None) -> None:
        """Reboot the guest: drop connections; refuse new ones for ``seconds``."""
        seconds = self.reboot_seconds if seconds is None else seconds
        self._down_until = time.monotonic() + seconds
        self.kill_connections()
        self.boot_count += 1
        self.boot_time = (
            _dt.datetime.now(_dt.timezone.utc) + _dt.timedelta(seconds=seconds)
        ).replace(microsecond=0)

    def schedule_reboot(self, delay: float = 0.2, seconds: float | None = None) -> None:
        """Reboot after ``delay`` seconds (``Restart-Computer`` returns before the drop)."""
        timer = threading.Timer(delay, self.reboot, args=(seconds,))
        timer.daemon = True
        timer.start()

    def wait_until_up(self, timeout: float = 30.0) -> bool:
        deadline = time.monotonic() + timeout
        while not self.is_up:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)
        return True

    # ---- lifetime ---------------------------------------------------------------------------

    def close(self) -> None:
        self._closed = True
        for listener in self._listeners:
            with contextlib.suppress(OSError):
                listener.close()
        self.kill_connections()
        for thread in self._threads:
            thread.join(timeout=2)
        if self._tempdir is not None:
            self._tempdir.cleanup()
            self._tempdir = None

    def __enter__(self) -> FakeGuest:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"<FakeGuest {COMPUTER_NAME} handlers={len(self._registrations)} "
            f"connections={self.connections}>"
        )


def unknown_command_error(name: str) -> TerminatingError:
    """PowerShell's CommandNotFoundException for ``name``."""
    return TerminatingError(
        f"The term '{name}' is not recognized as the name of a cmdlet, function, script file, "
        "or operable program. Check the spelling of the name, or if a path was included, verify "
        "that the path is correct and try again.",
        category="ObjectNotFound",
        error_id="CommandNotFoundException",
        target=name,
        exception_type="System.Management.Automation.CommandNotFoundException",
        command=name,
    )


def first_command_name(script: str) -> str:
    """The first word of the first statement: what PowerShell reports as not found."""
    for line in script.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            return re.split(r"[\s|;({]", stripped, maxsplit=1)[0] or stripped
    return script.strip() or "<empty>"


def _unknown_command_handler(ctx: HandlerContext) -> None:
    raise unknown_command_error(first_command_name(ctx.script))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m hvmagic.testing.guest",
        description="Serve the simulated hvmagic guest (PSRP over OutOfProc).",
    )
    parser.add_argument(
        "--stdio", action="store_true", help="serve one session on stdin/stdout like `pwsh -s`"
    )
    parser.add_argument(
        "--tcp",
        metavar="HOST:PORT",
        help="listen on TCP (one session per connection) until interrupted",
    )
    parser.add_argument("--root", help="directory holding the guest's C: drive")
    parser.add_argument(
        "--handlers",
        metavar="MODULE",
        action="append",
        default=[],
        help="import MODULE and call its install(guest) to add handlers (repeatable)",
    )
    args = parser.parse_args(argv)
    guest = FakeGuest(root=args.root)
    for module_name in args.handlers:
        importlib.import_module(module_name).install(guest)
    try:
        if args.tcp:
            host, _, port = args.tcp.rpartition(":")
            address = guest.serve_tcp(host or "127.0.0.1", int(port or 0))
            print(f"listening on {address[0]}:{address[1]}", file=sys.stderr, flush=True)
            with contextlib.suppress(KeyboardInterrupt):
                threading.Event().wait()
            return 0
        if not args.stdio:
            parser.error("choose --stdio or --tcp HOST:PORT")
        return guest.serve_stdio()
    finally:
        guest.close()


if __name__ == "__main__":
    sys.exit(main())
