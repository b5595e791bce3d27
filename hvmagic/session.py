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
:attr:`Result.information`. ``Write-Verbose``/``Write-Warning``/``Write-Debug`` reach a client with
a host UI twice (the record, then a ``Write*Line`` host call with the same text); each line is
reported once, in its stream, as PowerShell's own client files it.

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
  re-raises; :meth:`Session.stop` from another thread makes ``run`` return the ``Stopped``
  result. Either way the session stays usable.
* A stop is bounded: the guest gets :data:`STOP_TIMEOUT` seconds (the *stop grace*, 10 s) to
  acknowledge it and release the pipeline. A guest that does not is not answering at all, so
  the session is marked broken and :class:`StopNotAcknowledgedError` (a
  :class:`PipelineTimeoutError` *and* a :class:`SessionBrokenError`) carries the partial result
  ("stop was not acknowledged; the session is broken"). ``run(timeout=T)`` therefore returns
  within ``T`` + the grace, whatever the guest does.
* Guest prompts (``Read-Host``, ``Get-Credential`` …) are answered by the host UI on a helper
  thread, so the run keeps watching its timeout and :meth:`stop` while a prompt is open; an
  answer given after the pipeline stopped is dropped.
* A terminating error (pipeline ``Failed``) raises :class:`RemoteError` with the ErrorRecord
  and the partial result; non-terminating errors only land in :attr:`Result.errors`.
* A dead transport or a protocol violation marks the session :attr:`~Session.broken` and raises
  :class:`SessionBrokenError`, whose ``result`` holds what arrived before; connect again. Any
  exception while handling the guest's bytes counts as a violation (only typed errors leave
  ``run``); a guest exceeding a limit (bytes held for unfinished objects) raises
  :class:`~hvmagic.errors.SessionLimitExceededError`, both a ``LimitExceededError`` and a
  ``SessionBrokenError``. :attr:`Session.last_result` is the latest run's result whatever its
  outcome (a Ctrl-C carries none).
"""

from __future__ import annotations

import collections
import contextlib
import contextvars
import re
import signal
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from hvmagic import filecopy
from hvmagic.clixml.values import (
    InformationalRecord,
    InformationRecord,
    PSVersion,
)
from hvmagic.errors import (
    EncodeError,
    HostInteractionError,
    HvMagicError,
    LimitExceededError,
    PipelineTimeoutError,
    ProtocolError,
    RemoteError,
    SessionBrokenError,
    SessionBusyError,
    SessionLimitExceededError,
    StopNotAcknowledgedError,
    TransportError,
)
from hvmagic.frame_parameters import is_dataframe, prepare_parameters
from hvmagic.host import HostUI, answer_host_call
from hvmagic.hosttext import HostText
from hvmagic.psrp.client import (
    HOST_STREAM_METHODS,
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
from hvmagic.secrets import contains_secret
from hvmagic.sessionlike import RESULT_LISTS, OnEvent, Result
from hvmagic.transports.base import Transport

__all__ = ["RESULT_LISTS", "WRAPPER_SCRIPT", "OnEvent", "Result", "Session", "open_session"]

#: The fixed script every run sends; the user's script and values are its parameters.
#: Dot-sourced (``UseLocalScope=false``) so it runs in the runspace's scope. Why it is built so:
#:
#: * the user's block is created and the helper variables removed inside ``$( … )``, the
#:   argument of ``.``: the block never lives in a variable, so no ``__hvmagic*`` name is visible
#:   to the user's script (``Get-Variable``), not even the block itself;
#: * one line: the wrapper's frame in ``ScriptStackTrace`` reads ``line 1``, exactly as when a
#:   user dot-sources ``[scriptblock]::Create($text)`` on the first line of a script;
#: * ``get_Keys()``, not ``.Keys``: a parameter *named* ``Keys`` must not replace the key list;
#: * a parse error is rethrown as PowerShell's own ``ParseException`` (FQID and positions of the
#:   user's text), as PowerShell's client reports a script that does not parse.
WRAPPER_SCRIPT = (
    "param($__hvmagic_script, $__hvmagic_parameters) . $("
    " if ($null -ne $__hvmagic_parameters) {"
    " foreach ($__hvmagic_name in @($__hvmagic_parameters.get_Keys())) {"
    " Set-Variable -Name $__hvmagic_name -Value $__hvmagic_parameters[$__hvmagic_name] } };"
    " try { [scriptblock]::Create($__hvmagic_script) }"
    " catch [System.Management.Automation.MethodInvocationException] {"
    " throw $_.Exception.InnerException }"
    " finally { Remove-Variable -Name __hvmagic_script, __hvmagic_parameters, __hvmagic_name"
    " -ErrorAction Ignore } )\n"
)

_S = TypeVar("_S", bound="Session")

#: a plain PowerShell variable name (Unicode letters allowed, as in ``$größe``); no scope or
#: provider prefix (``env:``, ``global:``) and none of the wrapper's own names
_VARIABLE_NAME = re.compile(r"[^\W\d]\w*\Z")
_RESERVED_PREFIX = "__hvmagic"

#: how long to wait for the pool to open, a stop to be acknowledged, a close to finish.
#: STOP_TIMEOUT is the *stop grace*: after a timeout, stop() or Ctrl-C the guest has this long
#: to report the pipeline stopped and release it, else the session is declared broken. PowerShell
#: stops a pipeline as soon as the running command checks for it (Start-Sleep, the pipeline
#: between objects: milliseconds); 10 s leaves room for a guest (or a test machine) under heavy
#: load, where 5 s was seen to run out; a command blocked in one long .NET call can take
#: longer — raise it (``hvmagic.session.STOP_TIMEOUT = 30``) for such guests.
OPEN_TIMEOUT = 60.0
STOP_TIMEOUT = 10.0
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
class _Run:
    pipeline_id: uuid.UUID
    result: Result
    on_event: OnEvent | None
    started: float
    finished: bool = False
    closed: bool = False
    #: when a stop() from another thread stops counting as acknowledged (None: no stop asked)
    stop_deadline: float | None = None
    #: host texts not yet matched by their twin from the other source (see _host_text)
    host_from_calls: list[str] = field(default_factory=list)
    host_from_records: list[str] = field(default_factory=list)
    #: verbose/warning/debug messages whose host-call copy has not arrived yet (see
    #: HOST_STREAM_METHODS), per stream
    stream_copies_due: dict[str, list[str]] = field(default_factory=dict)


def _overdue(deadline: float | None) -> bool:
    return deadline is not None and time.monotonic() >= deadline


class _Broken(Exception):
    """Internal: the inbox delivered a transport failure."""


_VERSION_TEXT = re.compile(r"(\d{1,9})\.(\d{1,9})(?:\.(\d{1,9}))?(?:\.(\d{1,9}))?")


def _private_ps_version(private_data: Any) -> PSVersion | None:
    """``PSVersionTable.PSVersion`` of APPLICATION_PRIVATE_DATA, whatever the guest sent."""
    table = private_data.get("PSVersionTable") if isinstance(private_data, Mapping) else None
    return _parse_ps_version(table.get("PSVersion") if isinstance(table, Mapping) else None)


def _parse_ps_version(value: Any) -> PSVersion | None:
    """A version the guest reported (``5.1.20348.2849``), or ``None`` for anything else."""
    match = _VERSION_TEXT.fullmatch(str(value)[:64]) if value is not None else None
    if match is None:
        return None
    return PSVersion(*(int(part) for part in match.groups() if part is not None))


class Session(filecopy.GuestFileCopy):
    """One PowerShell session in a guest; create with :func:`hvmagic.connect` or
    :func:`open_session`."""

    #: the fixed script every run sends (a hop through a Hyper-V host relays it: hvmagic.hop)
    wrapper_script: str = WRAPPER_SCRIPT

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
        self._closer: threading.Thread | None = None
        self._closed = False
        self._ps_version: PSVersion | None = None
        self._ps_version_read = False
        self.last_result: Result | None = None
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

    @property
    def ps_version(self) -> PSVersion | None:
        """The guest's ``$PSVersionTable.PSVersion`` (``5.1.20348.2849``, ``7.6.9``), from the
        data a PowerShell server sends when the pool opens (no round trip); ``None`` if absent."""
        if not self._ps_version_read and self._client.opened:
            self._ps_version = _private_ps_version(self._client.pool.application_private_data)
            self._ps_version_read = True
        return self._ps_version

    def set_ps_version(self, text: Any) -> None:
        """Use ``text`` (``"5.1.20348.2849"``) as the guest's version for default columns, as
        a hop does with the VM's own version; anything unparsable leaves it unknown."""
        self._ps_version = _parse_ps_version(text)
        self._ps_version_read = True

    def __enter__(self: _S) -> _S:
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
        if any(is_dataframe(value) for value in variables.values()):
            variables = prepare_parameters(variables)  # one PSCustomObject per row
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
        except SessionBrokenError as exc:
            run = self._current
            if run is not None and exc.result is None:
                exc.result = run.result  # what arrived before the break is not lost
            raise
        finally:
            if self._current is not None:
                #: the Result of the latest run, whatever its outcome (a Ctrl-C carries none)
                self.last_result = self._current.result
            self._current = None
            self._run_lock.release()

    def _run(
        self, script: str, variables: dict[str, Any], timeout: float | None,
        on_event: OnEvent | None,
    ) -> Result:
        if contains_secret(variables):
            self._ensure_key()
        started = time.monotonic()
        with self._lock:
            try:
                pid = self._client.start_script(
                    self.wrapper_script,
                    {"__hvmagic_script": script, "__hvmagic_parameters": variables},
                    use_local_scope=False,
                )
            except ProtocolError as exc:
                self._mark_broken(str(exc))
                raise SessionBrokenError(f"{self.description}: {exc}") from exc
            run = _Run(pid, Result(ps_version=self.ps_version), on_event, started)
            self._current = run
        deadline = None if timeout is None else started + timeout
        try:
            with self._lock:
                self._flush()  # a Ctrl-C raised right after sending must stop the pipeline too
            finished = self._wait(lambda: run.finished or _overdue(run.stop_deadline), deadline)
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
            if not self._abort(run):
                raise self._stop_failed(run, f"the pipeline ran longer than {timeout:g} s")
            raise PipelineTimeoutError(
                f"the pipeline ran longer than {timeout:g} s and was stopped", result=run.result
            )
        if not run.finished:  # stop() from another thread went unanswered
            self._mark_broken(f"the guest did not acknowledge a stop within {STOP_TIMEOUT:g} s")
            self._fail_current()
            raise self._stop_failed(run, "stop() was requested")
        if run.stop_deadline is None:
            # PowerShell's own client waits for CloseAck before it reports the final state;
            # the result is complete without it, so the CloseAck is collected while the next
            # run starts (one round trip less per run) and checked when that run ends.
            self._release(run, wait=False)
        else:
            try:
                self._release(run, time.monotonic() + STOP_TIMEOUT)
            except SessionBrokenError as exc:
                raise self._stop_failed(run, "stop() was requested") from exc
        if run.result.state == "Failed":
            record = run.result.terminating_error
            message = record.message if record is not None else "the pipeline failed"
            raise RemoteError(message, record=record, result=run.result)
        return run.result

    def _stop_failed(self, run: _Run, what: str) -> StopNotAcknowledgedError:
        run.result.duration = time.monotonic() - run.started
        return StopNotAcknowledgedError(
            f"{what}; stop was not acknowledged; the session is broken ({self._broken}); "
            "connect again",
            result=run.result,
        )

    def stop(self) -> None:
        """Stop the running pipeline (``Signal``), from any thread; a no-op when idle."""
        run = self._current
        if run is None or run.finished or self.broken or self._closed:
            return
        if run.stop_deadline is None:  # the run gives the guest the stop grace from now
            run.stop_deadline = time.monotonic() + STOP_TIMEOUT
        with self._lock:
            self._client.stop_pipeline(run.pipeline_id)
            self._flush()

    def _abort(self, run: _Run) -> bool:
        """Stop ``run`` and release it within the stop grace; False (and the session marked
        broken) when the guest did not acknowledge in time."""
        if self.broken:
            return False
        deadline = time.monotonic() + STOP_TIMEOUT  # one grace for the stop and the release
        if run.stop_deadline is None:
            run.stop_deadline = deadline  # a prompt answered from now on comes too late
        try:
            if not run.finished:
                with self._lock:
                    self._client.stop_pipeline(run.pipeline_id)
                    self._flush()
                if not self._wait(lambda: run.finished, deadline):
                    self._mark_broken(
                        f"the guest did not acknowledge a stop within {STOP_TIMEOUT:g} s"
                    )
                    self._fail_current()  # not "Stopped": nobody knows what the guest did
                    return False
            self._release(run, deadline)
            return True
        except HvMagicError:
            return False  # marked broken; the original exception is what the user sees
        except BaseException:
            self._mark_broken("interrupted while stopping a pipeline")
            raise
        finally:
            if run.result.state == "Running":
                run.result.state = "Stopped"
            run.result.duration = time.monotonic() - run.started

    def _release(self, run: _Run, deadline: float | None = None, *, wait: bool = True) -> None:
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
        if not wait:
            return
        if deadline is None:
            deadline = time.monotonic() + CLOSE_TIMEOUT
        if not self._wait(lambda: run.closed, deadline):
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
            # the run ends within the stop grace (then it is stopped or the session broken)
            idle = self._run_lock.acquire(timeout=STOP_TIMEOUT + CLOSE_TIMEOUT)
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
            if self._closer is not None:  # a broken session's transport is closing already
                self._closer.join(timeout=timeout)
            self._transport.close()
            self._reader.join(timeout=2.0)
            if self._on_close is not None:
                with contextlib.suppress(Exception):  # the caller's cleanup (a test peer)
                    self._on_close()

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
        # Closing may take a while (a process is given time to exit, WinRM sends a Delete over
        # HTTP); the caller — often a timeout or stop that just went unanswered — must not wait
        # for it, or "timeout + stop grace" would not bound the call. close() waits instead.
        if self._closer is None:
            self._closer = threading.Thread(
                target=self._close_transport_quietly, daemon=True,
                name=f"hvmagic-close-{self.name}",
            )
            self._closer.start()

    def _close_transport_quietly(self) -> None:
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
        failure, violation = self._take_received()
        failure, callback_error = self._dispatch_events(failure, violation)
        if violation is not None:
            self._fail_current()
            raise violation
        if callback_error is not None and failure is None:
            raise callback_error
        if failure is not None:
            self._break_on(failure)

    def _take_received(self) -> tuple[BaseException | None, SessionBrokenError | None]:
        """Buffer a batch of received chunks and let the client parse them, under the lock.

        Returns ``(failure, violation)``: what ended the connection (an error line, EOF, a
        reader's exception), and what broke the session while parsing (raised only once the
        records that came before it are dispatched)."""
        failure: BaseException | None = None
        violation: SessionBrokenError | None = None
        with self._lock:
            try:
                self._needs_parse = True
                self._client.process_buffered()  # what an interrupted batch left
                failure = self._buffer_batch(self._pending)
                self._needs_parse = False
                self._flush()
            except ProtocolError as exc:
                self._mark_broken(f"protocol error: {exc}")
                violation = SessionBrokenError(f"{self.description}: {exc}")
                violation.__cause__ = exc
            except TransportError as exc:  # an error line from the server
                failure = exc
            except LimitExceededError as exc:
                self._mark_broken(f"limit exceeded: {exc}")
                violation = SessionLimitExceededError(
                    f"{self.description}: {exc} (the session is broken; connect again)"
                )
                violation.__cause__ = exc
            except Exception as exc:
                # Anything else from parsing the guest's bytes (a bug meeting hostile input)
                # leaves the client's state unknown: the session cannot go on.
                self._mark_broken(f"{type(exc).__name__} handling the guest's data: {exc}")
                violation = SessionBrokenError(
                    f"{self.description}: {type(exc).__name__}: {exc} "
                    "(the session is broken; connect again)"
                )
                violation.__cause__ = exc
        return failure, violation

    def _buffer_batch(self, pending: collections.deque[bytes | BaseException]
                      ) -> BaseException | None:
        """Hand the chunks up to the first failure marker to the client as one batch; return
        the failure marker when the batch ended at one (a reader's exception, or EOF)."""
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
                return item
            if not item:
                pending.popleft()
                if not self._client.closed:  # EOF after CloseAck(pool) is expected
                    return _Broken("the PowerShell server closed the connection")
        return None

    def _dispatch_events(self, failure: BaseException | None,
                         violation: SessionBrokenError | None
                         ) -> tuple[BaseException | None, BaseException | None]:
        """Dispatch every event the client has; returns ``failure`` (or a host call's protocol
        error) and the first exception a callback raised."""
        callback_error: BaseException | None = None
        while (event := self._client.next_event()) is not None:
            # Every event is dispatched even when on_event raised, so a final state that came
            # in the same batch is not lost; the first error is re-raised afterwards. After a
            # protocol violation only the records are kept: no host call is answered.
            if violation is not None and not isinstance(event, PipelineRecord):
                continue
            try:
                self._dispatch(event)
            except ProtocolError as exc:  # answering a host call broke the protocol
                failure = failure or exc
            except BaseException as exc:
                callback_error = callback_error or exc
                if self._current is not None:
                    self._current.on_event = None  # record the rest of the batch, quietly
        return failure, callback_error

    def _break_on(self, failure: BaseException) -> None:
        """The connection failed: mark the session broken, fail the run, raise."""
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
            getattr(result, RESULT_LISTS[stream]).append(record)
            if stream == "information" and isinstance(record, InformationRecord) and (
                record.is_host_output
            ):
                self._host_text(run, HostText.from_message(record.message, record.message_data),
                                source="record")
                return
            if stream in ("verbose", "warning", "debug"):
                due = run.stream_copies_due.setdefault(stream, [])
                due.append(record.message)
                if len(due) > 1000:  # a server that never sends the copies: stay bounded
                    del due[0]
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
            if self._closed and event.state == "Closed":
                return  # PowerShell reports Closed before its CloseAck when we close the pool
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
        stream = HOST_STREAM_METHODS.get(call.method)
        if stream is not None and run is not None:
            self._stream_copy(call, run, stream)
            return
        text_index = HOST_WRITE_METHODS.get(call.method, -1)
        if call.method in HOST_WRITE_METHODS:
            params = call.parameters
            text = "" if text_index is None or len(params) <= text_index else params[text_index]
            self._host_text(run, HostText.from_call(call.method, "" if text is None else str(text),
                                                    params))
            if call.needs_response:
                self._respond(call, None, None)
            return
        if not call.needs_response:
            return  # void calls (SetShouldExit, WriteProgress, …) need no answer
        if run is None or getattr(self.host_ui, "answer_on_caller_thread", False):
            self._answer(call, run, on_caller=True)
            return
        # A prompt may wait for a person: ask on a helper thread so this thread keeps reading
        # the guest and watching the timeout and stop(). Context variables go along (a
        # kernel's notion of the executing cell lives there).
        context = contextvars.copy_context()
        threading.Thread(
            target=context.run, args=(self._answer_quietly, call, run), daemon=True,
            name=f"hvmagic-host-ui-{self.name}",
        ).start()

    def _answer_quietly(self, call: HostCall, run: _Run) -> None:
        with contextlib.suppress(BaseException):  # the run thread reports a broken session
            self._answer(call, run, on_caller=False)

    def _answer(self, call: HostCall, run: _Run | None, *, on_caller: bool) -> None:
        try:
            value = answer_host_call(self.host_ui, call.method, call.parameters)
        except HostInteractionError as exc:
            self._respond(call, None, str(exc), run)
            return
        except Exception as exc:  # a custom UI failing: the guest gets the reason, not a hang
            self._respond(call, None, f"the host UI failed: {type(exc).__name__}: {exc}", run)
            return
        except KeyboardInterrupt:
            if on_caller:
                raise  # Ctrl-C at a prompt on the caller's thread: the run stops the pipeline
            self._respond(call, None, "the prompt was cancelled", run)
            return
        if contains_secret(value) and not self._client.key_exchanged:
            self._respond(call, None, "the session key has not been exchanged yet; "
                                      "pass secrets as parameters instead", run)
            return
        self._respond(call, value, None, run)

    def _stream_copy(self, call: HostCall, run: _Run, stream: str) -> None:
        """A ``Write{Verbose,Warning,Debug}Line`` host call: the host copy of a record that
        already arrived is dropped; a call without a record (``$Host.UI.WriteVerboseLine``)
        is delivered as a record of its stream, so the line still appears once."""
        text = str(call.parameters[0]) if call.parameters else ""
        due = run.stream_copies_due.get(stream, [])
        if text in due:
            due.remove(text)
        else:
            record = InformationalRecord({"InformationalRecord_Message": text}, [], text)
            getattr(run.result, RESULT_LISTS[stream]).append(record)
            if run.on_event is not None:
                run.on_event(stream, record)
        if call.needs_response:
            self._respond(call, None, None)

    def _respond(
        self, call: HostCall, value: Any, error: str | None, run: _Run | None = None
    ) -> None:
        with self._lock:
            if run is not None and (
                run.finished or run.stop_deadline is not None or self._current is not run
                or self._broken is not None or self._closed
            ):
                return  # answered too late: the pipeline stopped meanwhile
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
