"""The plain Python API: ``hvmagic.connect(...)`` → :class:`Session` → :meth:`Session.run`.

A :class:`Session` is one PowerShell runspace in the guest (a PSRP runspace pool with one
runspace) reached through any :class:`~hvmagic.transports.base.Transport`. The protocol work is
done by the sans-IO :class:`hvmagic.psrp.client.PSRPClient`; this module adds threads, time and
errors.

How a script runs
-----------------
Every :meth:`Session.run` sends the same fixed wrapper script (:data:`WRAPPER_SCRIPT`) with two
PSRP parameters: ``__hvmagic_script`` (the user's text) and ``__hvmagic_parameters`` (a hashtable
of the user's values, serialized as CLIXML by psrpcore). The wrapper sets one PowerShell
variable per entry with ``Set-Variable`` and dot-sources ``[scriptblock]::Create(script)`` in the
runspace's own scope, so

* state persists: variables, functions, imported modules and ``$PWD`` of one run are there in
  the next, as in a console;
* values are never pasted into script text: a parameter holding ``'; Remove-Item C:\\ -Recurse``
  is a string inside a variable, nothing more. The script text itself is also only data for the
  wrapper, and variable names must be plain identifiers (checked here) so ``Set-Variable`` can't
  be pointed at a provider path such as ``env:PATH``.
* SecureString and PSCredential values are encrypted with the PSRP session key (exchanged
  on first use, as PowerShell does) — they never travel or log in clear text.

Streams and results
-------------------
Records arrive live: ``on_event(stream, record)`` is called from the thread that called
``run`` while the pipeline runs, for ``output`` values, ``error`` ErrorRecords,
``warning``/``verbose``/``debug`` InformationalRecords, ``information`` InformationRecords,
``progress`` ProgressRecords and ``host`` text. ``Write-Host`` text (an information record
tagged ``PSHOST`` on PowerShell 5+, a ``WriteLine`` host call on older hosts, possibly both for
the same line) is reported once, as ``host``; its record is still kept in
:attr:`Result.information`.

Threads and failure rules
-------------------------
* One reader thread per session drains the transport into a queue at all times (the server
  writes without flow control, ``psdirect-protocol.md`` §3.3-3); the ``run`` caller decodes.
* One pipeline at a time: a second, concurrent ``run`` on the same session raises
  :class:`~hvmagic.errors.SessionBusyError` at once instead of queueing behind a pipeline that
  may never end (PowerShell's runspace would serialize it anyway). Open a second session for
  parallel work. :meth:`Session.stop` may be called from any thread.
* ``timeout`` → the pipeline is stopped (``Signal``) and :class:`PipelineTimeoutError` carries
  the partial :class:`Result`; Ctrl-C (KeyboardInterrupt) stops the pipeline the same way and
  re-raises; either way the session stays usable.
* A terminating error (pipeline ``Failed``) raises :class:`RemoteError` with the ErrorRecord
  and the partial result; non-terminating errors only land in :attr:`Result.errors`.
* A dead transport or a protocol violation marks the session :attr:`~Session.broken` and raises
  :class:`SessionBrokenError`; connect again.
"""

from __future__ import annotations

import collections
import contextlib
import datetime as _dt
import importlib
import os
import re
import signal
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hvmagic.clixml.values import (
    ErrorRecord,
    InformationalRecord,
    InformationRecord,
    ProgressRecord,
    PSCredential,
    PSObject,
    SecureString,
)
from hvmagic.errors import (
    CredentialError,
    EncodeError,
    HostInteractionError,
    HvMagicError,
    PipelineTimeoutError,
    ProtocolError,
    RemoteError,
    SessionBrokenError,
    SessionBusyError,
    TransportError,
    UnsupportedPlatformError,
)
from hvmagic.host import HostUI, answer_host_call
from hvmagic.psrp.client import (
    HOST_WRITE_METHODS,
    ClientEvent,
    HostCall,
    KeyExchanged,
    PipelineClosed,
    PipelineFinished,
    PipelineRecord,
    PoolBroken,
    PoolClosed,
    PoolOpened,
    PSRPClient,
)
from hvmagic.transports.base import Transport

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from hvmagic.recording import RecordingSession, ReplaySession

__all__ = ["WRAPPER_SCRIPT", "Result", "Session", "connect", "open_session"]

#: The fixed script every run sends; the user's script and values are its parameters.
#: Dot-sourced (``UseLocalScope=false``) so it runs in the runspace's scope; the helper variables
#: are removed before the user's script runs so they never shadow or leak into it.
WRAPPER_SCRIPT = """\
param($__hvmagic_script, $__hvmagic_parameters)
if ($null -ne $__hvmagic_parameters) {
    foreach ($__hvmagic_name in @($__hvmagic_parameters.Keys)) {
        Set-Variable -Name $__hvmagic_name -Value $__hvmagic_parameters[$__hvmagic_name]
    }
}
$__hvmagic_block = [scriptblock]::Create($__hvmagic_script)
Remove-Variable -Name __hvmagic_script, __hvmagic_parameters, __hvmagic_name -ErrorAction Ignore
. $__hvmagic_block
"""

#: a plain PowerShell variable name (Unicode letters allowed, as in ``$größe``); no scope or
#: provider prefix (``env:``, ``global:``) and none of the wrapper's own names
_VARIABLE_NAME = re.compile(r"[^\W\d]\w*\Z")
_RESERVED_PREFIX = "__hvmagic"

#: how long to wait for the pool to open, a stop to be acknowledged, a close to finish
OPEN_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0
CLOSE_TIMEOUT = 10.0
_POLL = 0.25  # bounded waits keep Ctrl-C responsive on Windows, where lock waits are not
_BATCH = 256  # received chunks handled per lock round (and per send of the replies)
_COALESCE_BELOW = 16 << 10
_COALESCE_AFTER = 16
_COALESCE_DELAY = 0.001

# The C module behind ``signal``: its wrappers convert handlers to and from enums through a
# caught ValueError, ~10x the cost of the call itself, and _InterruptsDeferred runs once per
# batch of received bytes (thousands of times for a large output).
try:
    import _signal as _raw_signal
except ImportError:  # pragma: no cover - not CPython
    _raw_signal = signal
_SIGINT = int(signal.SIGINT)


class _InterruptsDeferred:
    """Hold a Ctrl-C back for a short critical section, then raise it.

    A KeyboardInterrupt landing between "bytes handed to the parser" and "bytes marked as
    handled", or in the middle of a ``sendall`` (which raises after a partial write, leaving an
    unknown part of a line on the wire), would corrupt the OutOfProc line stream and break the
    session. Only the main thread receives signals, so elsewhere this does nothing.
    """

    __slots__ = ("_caught", "_previous")

    def __enter__(self) -> None:
        self._previous: Any = None
        self._caught: tuple[int, Any] | None = None
        if threading.current_thread() is not threading.main_thread():
            return
        previous = _raw_signal.getsignal(_SIGINT)
        if callable(previous):  # a Python-level handler (default: raise KeyboardInterrupt)
            self._previous = previous
            _raw_signal.signal(_SIGINT, self._catch)

    def _catch(self, signum: int, frame: Any) -> None:
        self._caught = (signum, frame)

    def __exit__(self, *exc_info: object) -> None:
        previous = self._previous
        if previous is None:
            return
        _raw_signal.signal(_SIGINT, previous)
        if self._caught is not None:
            previous(*self._caught)  # raises KeyboardInterrupt now that the section is done


@dataclass
class Result:
    """Everything one :meth:`Session.run` produced."""

    output: list[Any] = field(default_factory=list)
    errors: list[ErrorRecord] = field(default_factory=list)
    warnings: list[InformationalRecord] = field(default_factory=list)
    verbose: list[InformationalRecord] = field(default_factory=list)
    debug: list[InformationalRecord] = field(default_factory=list)
    information: list[InformationRecord] = field(default_factory=list)
    progress: list[ProgressRecord] = field(default_factory=list)
    host: list[str] = field(default_factory=list)
    #: ``"Completed"``, ``"Failed"`` or ``"Stopped"`` (``"Running"`` only inside ``on_event``)
    state: str = "Running"
    #: seconds from sending the pipeline to its final state
    duration: float = 0.0
    #: the terminating error of a ``Failed`` pipeline
    terminating_error: ErrorRecord | None = None

    @property
    def had_errors(self) -> bool:
        return bool(self.errors) or self.state == "Failed"

    def frame(self, columns: str | list[str] = "default") -> pd.DataFrame:
        """:attr:`output` as a DataFrame (see :func:`hvmagic.to_dataframe`)."""
        from hvmagic.frames import to_dataframe

        return to_dataframe(self.output, columns)

    def __repr__(self) -> str:
        counts = ", ".join(
            f"{len(getattr(self, name))} {name}"
            for name in ("output", "errors", "warnings", "verbose", "debug", "information",
                         "progress", "host")
            if getattr(self, name)
        )
        return f"<Result {self.state} in {self.duration:.3f}s: {counts or 'nothing'}>"


_STREAM_LISTS = {
    "output": "output", "error": "errors", "warning": "warnings", "verbose": "verbose",
    "debug": "debug", "information": "information", "progress": "progress", "host": "host",
}

OnEvent = Callable[[str, Any], None]


@dataclass
class _Run:
    pipeline_id: uuid.UUID
    result: Result
    on_event: OnEvent | None
    started: float
    finished: bool = False
    closed: bool = False
    #: host texts not yet matched by their twin from the other source (see _host_text)
    host_from_calls: list[str] = field(default_factory=list)
    host_from_records: list[str] = field(default_factory=list)


class _Broken(Exception):
    """Internal: the inbox delivered a transport failure."""


def _contains_secret(value: Any, depth: int = 0) -> bool:
    if depth > 64:
        return False
    if isinstance(value, (SecureString, PSCredential)):
        return True
    if isinstance(value, PSObject):
        return any(_contains_secret(v, depth + 1) for v in value.properties.values())
    if isinstance(value, Mapping):
        return any(_contains_secret(v, depth + 1) for v in value.values())
    if isinstance(value, (list, tuple, set, frozenset)):
        return any(_contains_secret(v, depth + 1) for v in value)
    return False


class Session:
    """One PowerShell session in a guest; create with :func:`connect` or :func:`open_session`."""

    def __init__(
        self,
        transport: Transport,
        *,
        name: str,
        host_ui: HostUI | None = None,
        client: PSRPClient | None = None,
        on_close: Callable[[], None] | None = None,
    ) -> None:
        self.name = name
        self.description = transport.description
        self.host_ui = host_ui if host_ui is not None else HostUI()
        self._transport = transport
        self._client = client if client is not None else PSRPClient()
        self._on_close = on_close
        # Received chunks not yet handed to the client. The reader thread appends; the run
        # thread removes a chunk only once the client buffered it, so a Ctrl-C while
        # handling a batch loses no bytes (deque append/popleft are atomic).
        self._pending: collections.deque[bytes | BaseException] = collections.deque()
        self._arrived = threading.Event()
        self._needs_parse = False  # an interrupted batch left buffered bytes unparsed
        self._sent = False  # set by each send, cleared by the reader (see _read_loop)
        self._lock = threading.RLock()  # client state + transport writes
        self._run_lock = threading.Lock()
        self._current: _Run | None = None
        self._unreleased: _Run | None = None  # a finished run whose CloseAck is still due
        self._run_thread: int | None = None
        self._broken: str | None = None
        self._closed = False
        self._reader = threading.Thread(
            target=self._read_loop, name=f"hvmagic-reader-{name}", daemon=True
        )
        self._reader.start()

    # -- public state ----------------------------------------------------------------------
    @property
    def broken(self) -> bool:
        """True once the transport died or the peer broke the protocol; connect again."""
        return self._broken is not None

    @property
    def closed(self) -> bool:
        return self._closed

    def __repr__(self) -> str:
        state = "closed" if self._closed else "broken" if self._broken else "open"
        return f"<Session {self.name!r} {state} via {self.description}>"

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- opening ---------------------------------------------------------------------------
    def _open(self, timeout: float = OPEN_TIMEOUT) -> None:
        with self._lock:
            self._client.open()
            self._flush()
        if not self._wait(lambda: self._client.opened, time.monotonic() + timeout):
            self._mark_broken("the runspace pool did not open")
            raise SessionBrokenError(
                f"{self.description}: no PowerShell session after {timeout:g} s"
            )

    def _ensure_key(self, timeout: float = OPEN_TIMEOUT) -> None:
        if self._client.key_exchanged:
            return
        with self._lock:
            self._client.exchange_key()
            self._flush()
        if not self._wait(lambda: self._client.key_exchanged, time.monotonic() + timeout):
            self._mark_broken("the session key exchange timed out")
            raise SessionBrokenError(f"{self.description}: the session key exchange timed out")

    # -- running ---------------------------------------------------------------------------
    def run(
        self,
        script: str,
        parameters: Mapping[str, Any] | None = None,
        timeout: float | None = None,
        on_event: OnEvent | None = None,
    ) -> Result:
        """Run ``script`` in the session's runspace; see the module docstring for the rules."""
        if not isinstance(script, str):
            raise EncodeError(f"script must be a str, not {type(script).__name__}")
        variables = dict(parameters or {})
        for key in variables:
            if not isinstance(key, str) or not _VARIABLE_NAME.match(key):
                raise EncodeError(
                    f"parameter name {key!r} is not a PowerShell variable name "
                    "(letters, digits and _ only, not starting with a digit)"
                )
            if key.lower().startswith(_RESERVED_PREFIX):
                raise EncodeError(f"parameter name {key!r} is reserved for hvmagic's wrapper")
        if timeout is not None and timeout <= 0:
            raise ValueError("timeout must be a positive number of seconds")
        self._check_usable()
        if not self._run_lock.acquire(blocking=False):
            raise SessionBusyError(
                f"session {self.name!r} is already running a pipeline; a session runs one at a "
                "time — wait for it, stop() it, or open a second session"
            )
        self._run_thread = threading.get_ident()
        try:
            return self._run(script, variables, timeout, on_event)
        finally:
            self._current = None
            self._run_lock.release()

    def _run(
        self, script: str, variables: dict[str, Any], timeout: float | None,
        on_event: OnEvent | None,
    ) -> Result:
        if _contains_secret(variables):
            self._ensure_key()
        started = time.monotonic()
        with self._lock:
            try:
                pid = self._client.start_script(
                    WRAPPER_SCRIPT,
                    {"__hvmagic_script": script, "__hvmagic_parameters": variables},
                    use_local_scope=False,
                )
            except ProtocolError as exc:
                self._mark_broken(str(exc))
                raise SessionBrokenError(f"{self.description}: {exc}") from exc
            run = _Run(pid, Result(), on_event, started)
            self._current = run
        deadline = None if timeout is None else started + timeout
        try:
            with self._lock:
                self._flush()  # a Ctrl-C raised right after sending must stop the pipeline too
            finished = self._wait(lambda: run.finished, deadline)
        except SessionBrokenError:
            run.result.duration = time.monotonic() - started
            raise
        except BaseException:
            # Ctrl-C or an exception from on_event: stop the pipeline, keep the session usable.
            # The callback is not called again while stopping: it (or its user) just failed.
            run.on_event = None
            self._abort(run)
            raise
        if not finished:
            self._abort(run)
            raise PipelineTimeoutError(
                f"the pipeline ran longer than {timeout:g} s and was stopped", result=run.result
            )
        # PowerShell's own client waits for CloseAck before it reports the final state; the
        # result is complete without it, so the CloseAck is collected while the next run
        # starts (one round trip less per run) and checked when that run ends.
        self._release(run, wait=False)
        if run.result.state == "Failed":
            record = run.result.terminating_error
            message = record.message if record is not None else "the pipeline failed"
            raise RemoteError(message, record=record, result=run.result)
        return run.result

    def stop(self) -> None:
        """Stop the running pipeline (``Signal``), from any thread; a no-op when idle."""
        run = self._current
        if run is None or run.finished or self.broken or self._closed:
            return
        with self._lock:
            self._client.stop_pipeline(run.pipeline_id)
            self._flush()

    def _abort(self, run: _Run) -> None:
        if self.broken:
            return
        try:
            if not run.finished:
                with self._lock:
                    self._client.stop_pipeline(run.pipeline_id)
                    self._flush()
                if not self._wait(lambda: run.finished, time.monotonic() + STOP_TIMEOUT):
                    self._mark_broken("the guest did not stop the pipeline")
                    return
            self._release(run)
        except HvMagicError:
            return  # already marked broken; the original exception is what the user sees
        except BaseException:
            self._mark_broken("interrupted while stopping a pipeline")
            raise
        finally:
            if run.result.state == "Running":
                run.result.state = "Stopped"
            run.result.duration = time.monotonic() - run.started

    def _release(self, run: _Run, wait: bool = True) -> None:
        with self._lock:
            self._client.close_pipeline(run.pipeline_id)
            self._flush()
        # (the server may answer Close(previous) after this run's lines: its handler runs
        # each line on a thread-pool work item, so it stays known until its CloseAck is in)
        previous = self._unreleased
        if previous is not None and previous is not run and not self._wait(
            lambda: previous.closed, time.monotonic() + CLOSE_TIMEOUT
        ):
            # this run's result is complete: it is returned, the next call reports the break
            self._mark_broken("the guest did not release a pipeline")
        self._unreleased = None if wait else run
        if wait and not self._wait(lambda: run.closed, time.monotonic() + CLOSE_TIMEOUT):
            self._mark_broken("the guest did not release a pipeline")
            raise SessionBrokenError(f"{self.description}: no CloseAck for a finished pipeline")

    # -- closing ---------------------------------------------------------------------------
    def close(self, timeout: float = CLOSE_TIMEOUT) -> None:
        """Close pipelines, then the pool (``Close`` → ``CloseAck``), then the transport."""
        if self._closed:
            return
        # A run in another thread owns the inbox: stop it and let it finish first.
        if self._current is not None:
            with contextlib.suppress(HvMagicError):
                self.stop()
        if self._current is not None and self._run_thread == threading.get_ident():
            idle = False  # close() from inside on_event: the run cannot finish first
        else:
            idle = self._run_lock.acquire(timeout=STOP_TIMEOUT)
        self._closed = True
        try:
            if not idle:
                self._mark_broken("closed while a pipeline would not stop")
            elif not self.broken and self._client.opened:
                with self._lock:
                    self._client.close()
                    self._flush()
                self._wait(lambda: self._client.closed, time.monotonic() + timeout)
        except (HvMagicError, OSError):
            self._broken = self._broken or "closed with errors"
        finally:
            if idle:
                self._run_lock.release()
            self._transport.close()
            self._reader.join(timeout=2.0)
            if self._on_close is not None:
                with contextlib.suppress(Exception):  # cleanup of a simulated guest
                    self._on_close()

    # -- file copy (implemented in hvmagic.filecopy) ---------------------------------------
    def copy_to(self, local: str | Path, remote: str, **options: Any) -> Any:
        """Copy a local file or directory into the guest (see :mod:`hvmagic.filecopy`)."""
        filecopy = importlib.import_module("hvmagic.filecopy")
        return filecopy.copy_to(self, local, remote, **options)

    def copy_from(self, remote: str, local: str | Path, **options: Any) -> Any:
        """Copy a guest file or directory to this machine (see :mod:`hvmagic.filecopy`)."""
        filecopy = importlib.import_module("hvmagic.filecopy")
        return filecopy.copy_from(self, remote, local, **options)

    # -- the loop --------------------------------------------------------------------------
    def _check_usable(self) -> None:
        if self._closed:
            raise SessionBrokenError(f"session {self.name!r} is closed; connect again")
        if self._broken is not None:
            raise SessionBrokenError(
                f"session {self.name!r} is broken ({self._broken}); connect again"
            )

    def _mark_broken(self, reason: str) -> None:
        if self._broken is None:
            self._broken = reason
        with contextlib.suppress(Exception):
            self._transport.close()

    def _read_loop(self) -> None:
        transport = self._transport
        try:
            unasked = 0  # small chunks in a row that no send of ours asked for
            while True:
                data = transport.recv()
                self._pending.append(data)
                self._arrived.set()
                if not data:
                    return
                if self._sent:
                    self._sent = False
                    unasked = 0
                elif len(data) < _COALESCE_BELOW:
                    unasked += 1
                    if unasked >= _COALESCE_AFTER:
                        time.sleep(_COALESCE_DELAY)
        except BaseException as exc:  # handed to the run loop, which raises it typed
            self._pending.append(exc)
            self._arrived.set()

    def _flush(self) -> None:
        # Taking the bytes from the client and writing them is one step for Ctrl-C: an
        # interrupt in between would drop them or leave half a line on the wire.
        if not self._client.has_data_to_send:
            return  # the common case while output streams in: no signal-handler swap
        with _InterruptsDeferred():
            data = self._client.data_to_send()
            if data:
                self._sent = True
                try:
                    self._transport.send(data)
                except TransportError as exc:
                    self._mark_broken(str(exc))
                    raise SessionBrokenError(f"{self.description}: {exc}") from exc

    def _wait(self, done: Callable[[], bool], deadline: float | None) -> bool:
        """Process incoming data until ``done()``; False when ``deadline`` passed first."""
        while not done():
            if self._broken is not None:
                raise SessionBrokenError(
                    f"session {self.name!r} is broken ({self._broken}); connect again"
                )
            wait = _POLL
            if deadline is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                wait = min(wait, remaining)
            if not (self._pending or self._needs_parse or self._client.has_events):
                self._arrived.clear()
                if not self._pending:  # the reader sets the event after appending
                    self._arrived.wait(wait)
                continue
            self._process()
        return True

    def _process(self) -> None:
        """Handle up to :data:`_BATCH` received chunks, then dispatch the client's events.

        Interrupt-safe: a chunk leaves :attr:`_pending` only once the client buffered it, and
        events stay in the client until dispatched, so an exception (Ctrl-C) anywhere here
        leaves the rest for the next call instead of losing it.
        """
        failure: BaseException | None = None
        pending = self._pending
        with self._lock:
            try:
                self._needs_parse = True
                self._client.process_buffered()  # what an interrupted batch left
                # The chunks up to the first failure marker are buffered as one batch: one
                # Ctrl-C-safe step per wake-up, not one per chunk (a server writes one line
                # per object, so output arrives as thousands of small chunks).
                chunks: list[bytes] = []
                for index in range(min(len(pending), _BATCH)):  # (the reader appends meanwhile)
                    item = pending[index]
                    if isinstance(item, BaseException) or not item:
                        break
                    chunks.append(item)
                if chunks:
                    with _InterruptsDeferred():
                        self._client.buffer_data(
                            chunks[0] if len(chunks) == 1 else b"".join(chunks)
                        )
                        for _ in chunks:
                            pending.popleft()
                    self._client.process_buffered()
                if len(chunks) < _BATCH and pending:
                    item = pending[0]
                    if isinstance(item, BaseException):
                        pending.popleft()
                        failure = item
                    elif not item:
                        pending.popleft()
                        if not self._client.closed:  # EOF after CloseAck(pool) is expected
                            failure = _Broken("the PowerShell server closed the connection")
                self._needs_parse = False
                self._flush()
            except ProtocolError as exc:
                self._mark_broken(f"protocol error: {exc}")
                self._fail_current()
                raise SessionBrokenError(f"{self.description}: {exc}") from exc
            except TransportError as exc:  # an error line from the server
                failure = exc
        callback_error: BaseException | None = None
        while (event := self._client.next_event()) is not None:
            # Every event is dispatched even when on_event raised, so a final state that came
            # in the same batch is not lost; the first error is re-raised afterwards.
            try:
                self._dispatch(event)
            except BaseException as exc:
                callback_error = callback_error or exc
                if self._current is not None:
                    self._current.on_event = None  # record the rest of the batch, quietly
        if callback_error is not None and failure is None:
            raise callback_error
        if failure is not None:
            if isinstance(failure, (TransportError, _Broken)):
                reason = str(failure)
            else:
                reason = f"{type(failure).__name__}: {failure}"
            self._mark_broken(reason)
            self._fail_current()
            cause = failure if isinstance(failure, Exception) else None
            where = "" if reason.startswith(self.description) else f"{self.description}: "
            raise SessionBrokenError(
                f"{where}{reason} (the session is broken; connect again)"
            ) from cause

    def _fail_current(self) -> None:
        run = self._current
        if run is not None and not run.finished and run.result.state == "Running":
            run.result.state = "Failed"

    def _dispatch(self, event: ClientEvent) -> None:
        run = self._current
        if isinstance(event, PipelineRecord):
            if run is None or event.pipeline_id != run.pipeline_id:
                return  # late records of a pipeline already given up on
            record = event.record
            stream = event.stream
            result = run.result
            getattr(result, _STREAM_LISTS[stream]).append(record)
            if stream == "information" and isinstance(record, InformationRecord) and (
                record.is_host_output
            ):
                self._host_text(run, record.message, source="record")
                return
            if run.on_event is not None:
                run.on_event(stream, record)
        elif isinstance(event, PipelineFinished):
            if run is not None and event.pipeline_id == run.pipeline_id:
                run.result.state = event.state
                run.result.terminating_error = event.error if event.state == "Failed" else None
                run.result.duration = time.monotonic() - run.started
                run.finished = True
        elif isinstance(event, PipelineClosed):
            for known in (run, self._unreleased):
                if known is not None and event.pipeline_id == known.pipeline_id:
                    known.closed = True
        elif isinstance(event, HostCall):
            self._host_call(event, run)
        elif isinstance(event, PoolBroken):
            self._mark_broken(f"the guest's runspace pool is {event.state}: {event.reason}")
            self._fail_current()
        elif isinstance(event, (PoolOpened, PoolClosed, KeyExchanged)):
            return  # state the waits read from the client directly

    def _host_text(self, run: _Run | None, text: str, source: str = "call") -> None:
        if run is not None:
            # Windows PowerShell 5.1 may send one Write-Host line twice: as a host call to
            # the client's UI and as an information record tagged PSHOST (the client-side
            # copy gets tagged FORWARDED and is not shown again). Each line is reported once:
            # a text from one source cancels the first unmatched equal text from the other.
            other = run.host_from_records if source == "call" else run.host_from_calls
            if text in other:
                other.remove(text)
                return
            mine = run.host_from_calls if source == "call" else run.host_from_records
            mine.append(text)
            if len(mine) > 1000:
                del mine[0]
            run.result.host.append(text)
            if run.on_event is not None:
                run.on_event("host", text)
        with contextlib.suppress(Exception):  # a UI's display problem must not kill the run
            self.host_ui.write(text)

    def _host_call(self, call: HostCall, run: _Run | None) -> None:
        text_index = HOST_WRITE_METHODS.get(call.method, -1)
        if call.method in HOST_WRITE_METHODS:
            params = call.parameters
            text = "" if text_index is None or len(params) <= text_index else params[text_index]
            self._host_text(run, "" if text is None else str(text))
            if call.needs_response:
                self._respond(call, None, None)
            return
        if not call.needs_response:
            return  # void calls (SetShouldExit, WriteProgress, …) need no answer
        try:
            value = answer_host_call(self.host_ui, call.method, call.parameters)
        except HostInteractionError as exc:
            self._respond(call, None, str(exc))
            return
        except Exception as exc:  # a custom UI failing: the guest gets the reason, not a hang
            self._respond(call, None, f"the host UI failed: {type(exc).__name__}: {exc}")
            return
        if _contains_secret(value) and not self._client.key_exchanged:
            self._respond(call, None, "the session key has not been exchanged yet; "
                                      "pass secrets as parameters instead")
            return
        self._respond(call, value, None)

    def _respond(self, call: HostCall, value: Any, error: str | None) -> None:
        with self._lock:
            try:
                self._client.host_response(call, value, error_message=error)
            except EncodeError as exc:
                self._client.host_response(call, None, error_message=str(exc))
            self._flush()


def open_session(
    transport: Transport,
    *,
    name: str,
    host_ui: HostUI | None = None,
    timeout: float | None = None,
    on_close: Callable[[], None] | None = None,
    exchange_key: bool | None = None,
    client: PSRPClient | None = None,
) -> Session:
    """Open a PowerShell session over a connected ``transport`` (pool open, bounded wait).

    ``exchange_key`` (default: only when a custom ``host_ui`` may return secrets) exchanges the
    PSRP session key right away instead of on the first SecureString parameter. ``client``
    supplies a configured :class:`~hvmagic.psrp.client.PSRPClient` (limits, fixed pipeline
    ids for replaying a recorded byte stream).
    """
    session = Session(transport, name=name, host_ui=host_ui, on_close=on_close, client=client)
    try:
        session._open(timeout or OPEN_TIMEOUT)
        if exchange_key or (exchange_key is None and host_ui is not None):
            session._ensure_key(timeout or OPEN_TIMEOUT)
    except BaseException:
        session.close()
        raise
    return session


_VIA = ("auto", "direct", "process", "sim", "replay")


def connect(
    target: str = "sim",
    *,
    via: str = "auto",
    username: str | None = None,
    password: str | SecureString | None = None,
    credential: PSCredential | None = None,
    configuration: str | None = None,
    executable: str | None = None,
    allow_legacy: bool = False,
    host_ui: HostUI | None = None,
    record: str | Path | None = None,
    replay: str | Path | None = None,
    timeout: float | None = None,
    wait: float | None = None,
    booted_after: _dt.datetime | None = None,
) -> Session | RecordingSession | ReplaySession:
    """Connect to ``target`` and open a PowerShell session.

    ``via``: ``"sim"`` — the built-in simulated guest (demo data, no Hyper-V needed);
    ``"process"`` — a local ``pwsh -s`` / ``powershell.exe -s`` (``executable`` picks which);
    ``"direct"`` — PowerShell Direct to the VM named ``target`` (Windows Hyper-V host,
    CPython ≥ 3.12); ``"auto"`` — ``sim`` for target ``"sim"``, else ``direct`` where it works;
    ``"replay"`` — serve runs from a recording (``replay=FILE``).

    ``record=FILE`` wraps the live session in a :class:`~hvmagic.recording.RecordingSession`;
    ``replay=FILE`` returns a :class:`~hvmagic.recording.ReplaySession` without connecting.
    The environment variables ``HVMAGIC_RECORD=DIR`` / ``HVMAGIC_REPLAY=DIR`` do the same for
    every ``connect`` that names no file (``DIR/<target>.hvrec.json``), for CI.

    ``wait=S`` keeps retrying for up to ``S`` seconds while the guest cannot be reached (it is
    booting or rebooting: connection refused, reset or timed out), so a runbook can reboot a
    VM and reconnect in one call. Rejected credentials and platform errors are never retried;
    the password is resolved once, before the first attempt.

    ``booted_after=T`` (with ``wait``) also waits until the guest's last boot time is later than
    ``T`` — take ``T`` from :func:`last_boot_time` before ``Restart-Computer``. Without it a
    reconnect right after ``Restart-Computer`` can reach the guest *before* it shuts down, as
    ``Restart-Computer`` returns first.
    """
    if via not in _VIA:
        raise ValueError(f"via must be one of {', '.join(_VIA)}, not {via!r}")
    if record is not None and replay is not None:
        raise ValueError("give record= or replay=, not both")
    from hvmagic import recording  # the recording layer wraps sessions; imported on demand

    if replay is None and record is None:
        replay_dir = os.environ.get(recording.REPLAY_ENV)
        if replay_dir:
            replay = recording.next_recording_path("replay", replay_dir, target)
    if via == "replay" and replay is None:
        raise ValueError(
            f"via='replay' needs replay=FILE (or {recording.REPLAY_ENV}=DIR in the environment)"
        )
    if replay is not None:
        return recording.ReplaySession(replay, name=None if target == "sim" else target)
    if wait and via in ("direct", "auto") and target != "sim":
        from hvmagic.credentials import get_password

        if credential is not None:
            username = username or credential.username
            password = password if password is not None else credential.password
            credential = None
        if username:  # ask once, not at every attempt
            password = get_password(username, password)
    def attempt() -> Session:
        live = _connect_live(
            target, via=via, username=username, password=password, credential=credential,
            configuration=configuration, executable=executable, allow_legacy=allow_legacy,
            host_ui=host_ui, timeout=timeout,
        )
        if booted_after is not None:
            try:
                booted = last_boot_time(live)
            except BaseException:
                live.close()
                raise
            if not _later(booted, booted_after):
                live.close()
                raise _NotRestartedYet(
                    f"{target!r} answers but has not restarted yet (last boot {booted})"
                )
        return live

    session = _retry_while_unreachable(attempt, wait or 0.0)
    if record is None:
        record_dir = os.environ.get(recording.RECORD_ENV)
        if record_dir:
            record = recording.next_recording_path("record", record_dir, target)
    if record is not None:
        try:
            return recording.RecordingSession(session, record)
        except BaseException:
            session.close()
            raise
    return session


#: PowerShell 5.1 and 7 both have it; the value crosses as a DateTime with the guest's offset
LAST_BOOT_SCRIPT = "(Get-CimInstance -ClassName Win32_OperatingSystem).LastBootUpTime"


def last_boot_time(session: Session | RecordingSession | ReplaySession) -> _dt.datetime:
    """When the guest last booted (``Win32_OperatingSystem.LastBootUpTime``)."""
    output = session.run(LAST_BOOT_SCRIPT).output
    if len(output) != 1 or not isinstance(output[0], _dt.datetime):
        raise ProtocolError(f"the guest answered {output!r} for its last boot time")
    return output[0]


def _later(value: _dt.datetime, reference: _dt.datetime) -> bool:
    if (value.tzinfo is None) != (reference.tzinfo is None):  # compare wall clocks then
        value, reference = value.replace(tzinfo=None), reference.replace(tzinfo=None)
    return value > reference


class _NotRestartedYet(TransportError):
    """Internal: connected, but to the guest as it was before the restart; retried."""


def _retry_while_unreachable(
    attempt: Callable[[], Session], wait: float, sleep: Callable[[float], None] = time.sleep
) -> Session:
    deadline = time.monotonic() + wait
    delay = 0.5
    while True:
        try:
            return attempt()
        except (ConnectionError, TimeoutError) as exc:  # TransportError is a ConnectionError
            if isinstance(exc, (CredentialError, UnsupportedPlatformError)):
                raise
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise
            sleep(min(delay, remaining))
            delay = min(delay * 1.5, 5.0)


def _connect_live(
    target: str,
    *,
    via: str,
    username: str | None,
    password: str | SecureString | None,
    credential: PSCredential | None,
    configuration: str | None,
    executable: str | None,
    allow_legacy: bool,
    host_ui: HostUI | None,
    timeout: float | None,
) -> Session:
    if via == "auto":
        via = _auto_via(target)
    if via == "sim":
        from hvmagic.testing import FakeGuest

        # One simulated machine per name for the whole process: a runbook that reboots the
        # guest and reconnects must find the same machine (files, features, boot count).
        guest = FakeGuest.shared(target)
        return open_session(guest.transport(), name=target, host_ui=host_ui, timeout=timeout)
    if via == "process":
        from hvmagic.transports.process import ProcessTransport

        proc = ProcessTransport(executable=executable)
        return open_session(proc, name=target, host_ui=host_ui, timeout=timeout)
    # direct
    if credential is not None:
        username = username or credential.username
        password = password if password is not None else credential.password
    if not username:
        raise CredentialError(
            "PowerShell Direct needs a guest user name (username= or credential=)"
        )
    from hvmagic.credentials import get_password
    from hvmagic.transports.hvsocket import connect_vm

    # explicit value, else HVMAGIC_PASSWORD, else keyring, else a non-echoing prompt
    password = get_password(username, password)
    kwargs: dict[str, Any] = {}
    if timeout is not None:
        kwargs["timeout"] = timeout
    transport = connect_vm(
        target, username=username, password=password, configuration=configuration,
        allow_legacy=allow_legacy, **kwargs,
    )
    return open_session(transport, name=target, host_ui=host_ui, timeout=timeout)


def _auto_via(target: str) -> str:
    if target == "sim":
        return "sim"
    if sys.platform == "win32" and sys.version_info >= (3, 12):
        return "direct"
    raise UnsupportedPlatformError(
        f"PowerShell Direct to {target!r} needs a Windows Hyper-V host with CPython 3.12+ "
        f"(this is {sys.platform}, Python {sys.version_info.major}.{sys.version_info.minor}). "
        "Alternatives: via='process' for a local pwsh, or hvmagic.connect('sim') for the "
        "simulated guest."
    )
