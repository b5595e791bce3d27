"""Record a session's runs to a file, and replay them later without the VM.

HTTP-level cassettes cannot work for hvmagic (WinRM traffic is sealed, PowerShell Direct is a
VMBus socket), so recording happens one level up: at the level of PowerShell objects and
streams. A :class:`RecordingSession` wraps any live session and writes, for every
:meth:`~hvmagic.session.Session.run`, the script, its parameters (secrets redacted), every
stream record in arrival order with its time offset (output objects as CLIXML), the final
state, the duration and any terminating error. A :class:`ReplaySession` reads that file and
serves the runs back through the same ``on_event``/:class:`~hvmagic.session.Result` path, so
notebooks display exactly what they displayed when recorded.

The file
--------
UTF-8 JSON, ``"format": "hvmagic-recording"``, ``"version": 1``, one line per run and one line
per record, so that a re-recorded runbook shows up in ``git diff`` as the runs and records that
changed. Each run is appended as it finishes and the file is complete JSON after every run (a
crash mid-notebook keeps every finished run); appending costs only the new run. Parameters whose
CLIXML exceeds :data:`INLINE_PARAMETER_LIMIT` (file-copy chunks) are kept as a SHA-256 digest:
replay still checks the same bytes are sent.

Secrets
-------
SecureString and PSCredential values — in parameters *and* in output — are replaced by a
marker before anything is written (a PSCredential keeps its user name). Replay gives back the
marker string ``"<redacted SecureString>"`` in their place. Secrets typed into the script text
itself cannot be recognised: pass them as parameters (``%%vmps --with``), never inline.

Matching policy
---------------
``match="sequential"`` (the default, and what CI wants): the n-th run must be the n-th recorded
run. ``match="script"``: the next unused recorded run with the same script is served — and once
all such runs are used, the last one again — so cells may be re-run or run out of order while
exploring. Either way the script must equal the recorded one after normalising line endings and
trailing whitespace, and every non-secret parameter must serialize to the same CLIXML; secret
parameters are compared by name only. Anything else raises
:class:`~hvmagic.errors.ReplayMismatchError` naming the first difference.
"""

from __future__ import annotations

import abc
import datetime as _dt
import difflib
import hashlib
import json
import os
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

from hvmagic import filecopy
from hvmagic.clixml import DEFAULT_MAX_DEPTH, dumps, loads
from hvmagic.clixml.values import (
    ErrorRecord,
    InformationRecord,
    ProgressRecord,
    PSVersion,
)
from hvmagic.errors import (
    HvMagicError,
    PipelineTimeoutError,
    RemoteError,
    ReplayMismatchError,
    SessionBrokenError,
)
from hvmagic.frame_parameters import prepare_parameters
from hvmagic.hosttext import HostText, console_color
from hvmagic.psrp.client import normalise_record
from hvmagic.secrets import contains_secret, redact
from hvmagic.sessionlike import (
    RESULT_LISTS,
    OnEvent,
    Result,
    SessionLike,
)
from hvmagic.version import __version__

FORMAT = "hvmagic-recording"
VERSION = 1
#: environment variables that make every ``hvmagic.connect`` in a process record or replay:
#: a directory, one file per session (``<name>.hvrec.json``)
RECORD_ENV = "HVMAGIC_RECORD"
REPLAY_ENV = "HVMAGIC_REPLAY"
SUFFIX = ".hvrec.json"

#: a record is kept as deep as the decoder accepted it from the guest (parameters are held to
#: what PowerShell accepts, :data:`hvmagic.clixml.MAX_DEPTH`, as the live run holds them)
_RECORD_DEPTH = DEFAULT_MAX_DEPTH


def recording_path(directory: str | Path, name: str, occurrence: int = 1) -> Path:
    """Where the environment-variable mode keeps the recording of session ``name``: the first
    connection of a process to ``name`` is ``name.hvrec.json``, the second ``name-2.hvrec.json``
    (a runbook that reboots the guest reconnects), and so on."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "session"
    suffix = "" if occurrence == 1 else f"-{occurrence}"
    return Path(directory) / f"{safe}{suffix}{SUFFIX}"


_occurrences: dict[tuple[str, str, str], int] = {}
_occurrences_lock = threading.Lock()


def next_recording_path(mode: str, directory: str | Path, name: str) -> Path:
    """The file for this process's next ``record``/``replay`` connection to ``name``: recording
    and replay count connections the same way, so a replay meets each recorded session in the
    order the notebook connected."""
    key = (mode, str(directory), name)
    with _occurrences_lock:
        _occurrences[key] = _occurrences.get(key, 0) + 1
        return recording_path(directory, name, _occurrences[key])


# -- (de)serializing records ------------------------------------------------------------------
def _encode_event(stream: str, record: Any, offset: float) -> dict[str, Any]:
    event: dict[str, Any] = {"t": round(offset, 4), "stream": stream}
    if stream == "host":
        event["text"] = str(record)
        if isinstance(record, HostText):  # a replay shows the same colours and line ends
            if record.foreground:
                event["fg"] = record.foreground
            if record.background:
                event["bg"] = record.background
            if not record.newline:
                event["nonewline"] = True
    elif isinstance(record, ProgressRecord):
        event["progress"] = record.fields()
    else:
        event["clixml"] = dumps(redact(record), max_depth=_RECORD_DEPTH)
    return event


def _decode_event(event: Mapping[str, Any]) -> tuple[str, Any]:
    stream = str(event["stream"])
    if "text" in event:
        return stream, HostText(str(event["text"]), foreground=console_color(event.get("fg")),
                                background=console_color(event.get("bg")),
                                newline=not event.get("nonewline"))
    if "progress" in event:
        return stream, ProgressRecord.from_fields(event["progress"])
    values = loads(event["clixml"])
    if len(values) != 1:
        raise HvMagicError(f"a recorded {stream} record holds {len(values)} values, not 1")
    # the record's class by its stream, as the live client gives it (an information record
    # is an InformationRecord, not a bare PSObject, after a replay too)
    return stream, normalise_record(stream, values[0])


def _with_quiet_records(events: list[dict[str, Any]], result: Result) -> list[dict[str, Any]]:
    """``events`` plus the information records the session kept without an ``on_event`` (the
    ``PSHOST`` twins of ``Write-Host`` text), marked ``quiet``, where they were in the run, so
    a replay's :attr:`Result.information` holds what the live one held."""
    quiet = [r for r in result.information
             if isinstance(r, InformationRecord) and r.is_host_output]
    if not quiet:
        return events
    merged: list[dict[str, Any]] = []
    pending = iter(result.information)
    for event in events:
        if event["stream"] == "information":
            for record in pending:  # the host records before this one
                if not (isinstance(record, InformationRecord) and record.is_host_output):
                    break
                merged.append({**_encode_event("information", record, event["t"]),
                               "quiet": True})
        merged.append(event)
    last = events[-1]["t"] if events else 0.0
    merged.extend({**_encode_event("information", record, last), "quiet": True}
                  for record in pending
                  if isinstance(record, InformationRecord) and record.is_host_output)
    return merged


#: parameters whose CLIXML is larger than this are recorded by digest (file-copy chunks: the
#: replay still checks that the same bytes are sent, without the recording holding them twice)
INLINE_PARAMETER_LIMIT = 16 * 1024


def _encode_parameters(parameters: Mapping[str, Any] | None) -> dict[str, Any]:
    encoded: dict[str, Any] = {}
    # DataFrames are recorded as the objects the guest receives (see Session.run)
    for name, value in prepare_parameters(parameters or {}).items():
        if contains_secret(value):
            encoded[name] = {"redacted": type(value).__name__}
            continue
        text = dumps(value)
        if len(text) > INLINE_PARAMETER_LIMIT:
            digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
            encoded[name] = {"sha256": digest, "chars": len(text)}
        else:
            encoded[name] = {"clixml": text}
    return encoded


def _normalise_script(script: str) -> str:
    lines = [line.rstrip() for line in script.replace("\r\n", "\n").split("\n")]
    return "\n".join(lines).strip("\n")


# -- recording --------------------------------------------------------------------------------
_Self = TypeVar("_Self", bound="_SessionWrapper")


class _SessionWrapper(filecopy.GuestFileCopy, abc.ABC):
    """What recording and replay sessions share: the context manager, and file copies as
    PowerShell runs (:mod:`hvmagic.filecopy`), so copies record and replay like any other run —
    the copy engine is handed this wrapper, not the session inside it."""

    def __enter__(self: _Self) -> _Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @abc.abstractmethod
    def close(self, *args: Any, **kwargs: Any) -> None:
        """Release the session (a replay only marks itself closed)."""

    @abc.abstractmethod
    def run(
        self,
        script: str,
        parameters: Mapping[str, Any] | None = None,
        timeout: float | None = None,
        on_event: OnEvent | None = None,
    ) -> Result:
        """Run (or replay) one script; see :meth:`hvmagic.session.Session.run`."""


class RecordingSession(_SessionWrapper):
    """Wraps a live session; every :meth:`run` is appended to ``path`` as it finishes."""

    def __init__(self, session: SessionLike, path: str | Path) -> None:
        self._session = session
        self.path = Path(path)
        self._lock = threading.Lock()
        self._runs_written = 0
        header = {
            "format": FORMAT,
            "version": VERSION,
            "session": {
                "name": session.name,
                "description": session.description,
                "recorded_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                "hvmagic": __version__,
                # picks the default columns of a replayed frame, as it did live
                "ps_version": None if getattr(session, "ps_version", None) is None
                else str(session.ps_version),
            },
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # '{header..., "runs": [' then the closing '\n]}\n'; each run is later written over
        # the closing and followed by it again, so the file is complete JSON after every run
        # and appending costs only the new run (a copy of many chunks stays linear).
        opening = json.dumps(header, ensure_ascii=False)[:-1] + ', "runs": ['
        self.path.write_text(opening + _CLOSING, encoding="utf-8")

    # Session surface ------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self._session.name

    @property
    def description(self) -> str:
        return f"{self._session.description} (recording to {self.path})"

    @property
    def broken(self) -> bool:
        return self._session.broken

    @property
    def closed(self) -> bool:
        return self._session.closed

    @property
    def ps_version(self) -> PSVersion | None:
        return self._session.ps_version

    @property
    def last_result(self) -> Result | None:
        return self._session.last_result

    def stop(self) -> None:
        self._session.stop()

    def __getattr__(self, item: str) -> Any:
        # the rest of the live session (host_ui, wrapper_script …), as it is
        return getattr(self._session, item)

    def __repr__(self) -> str:
        return f"<RecordingSession {self.name!r} → {self.path}>"

    def run(
        self,
        script: str,
        parameters: Mapping[str, Any] | None = None,
        timeout: float | None = None,
        on_event: OnEvent | None = None,
    ) -> Result:
        events: list[dict[str, Any]] = []
        started = time.monotonic()

        def capture(stream: str, record: Any) -> None:
            offset = time.monotonic() - started
            try:
                events.append(_encode_event(stream, record, offset))
            except Exception as exc:  # a value the encoder refuses must not stop the run
                events.append({"t": round(offset, 4), "stream": stream,
                               "text": f"<not recordable: {type(exc).__name__}: {exc}>"})
            if on_event is not None:
                on_event(stream, record)

        entry: dict[str, Any] = {
            "script": script,
            "parameters": _encode_parameters(parameters),
            "events": events,
        }
        try:
            result = self._session.run(script, dict(parameters or {}), timeout, capture)
        except (RemoteError, PipelineTimeoutError, SessionBrokenError, KeyboardInterrupt) as exc:
            # a run that broke the session is recorded too, with what arrived before the break
            partial = getattr(exc, "result", None)
            entry["state"] = partial.state if isinstance(partial, Result) else "Stopped"
            if isinstance(partial, Result):
                entry["events"] = _with_quiet_records(events, partial)
            entry["duration"] = round(time.monotonic() - started, 4)
            entry["raised"] = {"type": type(exc).__name__, "message": str(exc)}
            record = getattr(exc, "record", None)
            if record is not None:
                entry["raised"]["record"] = dumps(redact(record), max_depth=_RECORD_DEPTH)
            self._append(entry)
            raise
        entry["events"] = _with_quiet_records(events, result)
        entry["state"] = result.state
        entry["duration"] = round(result.duration, 4)
        self._append(entry)
        return result

    def close(self, *args: Any, **kwargs: Any) -> None:
        self._session.close(*args, **kwargs)

    def _append(self, entry: dict[str, Any]) -> None:
        text = ("," if self._runs_written else "") + "\n" + _run_text(entry) + _CLOSING
        data = text.encode("utf-8")
        with self._lock, open(self.path, "r+b") as handle:
            handle.seek(-len(_CLOSING_BYTES), os.SEEK_END)
            handle.write(data)
            handle.truncate()
            self._runs_written += 1


_CLOSING = "\n]}\n"
_CLOSING_BYTES = _CLOSING.encode("utf-8")


def _run_text(entry: Mapping[str, Any]) -> str:
    """One run, diff-friendly: its fields on one line, then one line per record."""
    fields = {k: v for k, v in entry.items() if k != "events"}
    head = json.dumps(fields, ensure_ascii=False)[:-1]
    events = entry.get("events", [])
    if not events:
        return head + ', "events": []}'
    lines = ",\n  ".join(json.dumps(e, ensure_ascii=False) for e in events)
    return head + ', "events": [\n  ' + lines + "\n]}"


# -- replay -----------------------------------------------------------------------------------
def load_recording(path: str | Path) -> dict[str, Any]:
    """Read and check a recording file; errors name the file and what is wrong with it."""
    path = Path(path)
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise HvMagicError(f"no recording at {path}") from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise HvMagicError(f"{path} is not a readable hvmagic recording: {exc}") from exc
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise HvMagicError(f"{path} is not an hvmagic recording (no 'format': '{FORMAT}')")
    if document.get("version") != VERSION:
        raise HvMagicError(
            f"{path} is recording format version {document.get('version')!r}; this hvmagic "
            f"reads version {VERSION}"
        )
    if not isinstance(document.get("runs"), list):
        raise HvMagicError(f"{path} has no list of runs")
    return document


def _recorded_version(text: Any) -> PSVersion | None:
    """The guest's PowerShell version a recording names (absent in older recordings)."""
    try:
        return PSVersion.parse(text) if isinstance(text, str) and len(text) < 64 else None
    except ValueError:
        return None


class ReplaySession(_SessionWrapper):
    """Serves a recording back: same ``run``/``Result``/``on_event`` contract as a Session.

    ``pace=True`` reproduces the recorded timing between records (for demos); by default records
    are delivered at once.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        name: str | None = None,
        match: str = "sequential",
        pace: bool = False,
    ) -> None:
        if match not in ("sequential", "script"):
            raise ValueError("match must be 'sequential' or 'script'")
        self.path = Path(path)
        self._document = load_recording(self.path)
        self._runs: list[dict[str, Any]] = self._document["runs"]
        recorded = self._document.get("session", {})
        self.name = name or str(recorded.get("name", self.path.stem))
        self.description = f"replay of {self.path.name} ({recorded.get('description', '?')})"
        self.ps_version = _recorded_version(recorded.get("ps_version"))
        self.match = match
        self.pace = pace
        self._next = 0
        self._used: set[int] = set()
        self._last_for_script: dict[str, int] = {}
        self.closed = False
        self.broken = False
        self.last_result: Result | None = None

    def __repr__(self) -> str:
        return f"<ReplaySession {self.name!r} {self._next}/{len(self._runs)} runs from {self.path}>"

    @property
    def remaining(self) -> int:
        """Recorded runs not served yet."""
        return len(self._runs) - len(self._used)

    def stop(self) -> None:
        """Nothing runs remotely during a replay; present for the Session contract."""

    def close(self, *args: Any, **kwargs: Any) -> None:
        self.closed = True

    def run(
        self,
        script: str,
        parameters: Mapping[str, Any] | None = None,
        timeout: float | None = None,
        on_event: OnEvent | None = None,
    ) -> Result:
        if self.closed:
            raise HvMagicError(f"replay session {self.name!r} is closed")
        index = self._pick(script)
        entry = self._runs[index]
        self._check_parameters(index, entry, parameters)
        # only now is the recorded run consumed: a corrected re-run meets the same run again
        if self.match == "sequential":
            self._next = index + 1
        self._used.add(index)
        self._last_for_script[_normalise_script(script)] = index
        result = Result(ps_version=self.ps_version)
        self.last_result = result  # as Session.last_result: whatever the outcome
        for stream, record, quiet in self._events(entry):
            getattr(result, RESULT_LISTS[stream]).append(record)
            if on_event is not None and not quiet:
                on_event(stream, record)
        result.state = str(entry.get("state", "Completed"))
        result.duration = float(entry.get("duration", 0.0))
        raised = entry.get("raised")
        if raised:
            if str(raised.get("type", "")).startswith("Session"):
                self.broken = True  # the live session broke here; nothing was recorded after
            self._raise(raised, result)
        return result

    def _events(self, entry: Mapping[str, Any]) -> Iterator[tuple[str, Any, bool]]:
        started = time.monotonic()
        for event in entry.get("events", []):
            if self.pace:
                delay = float(event.get("t", 0.0)) - (time.monotonic() - started)
                if delay > 0:
                    time.sleep(delay)
            yield (*_decode_event(event), bool(event.get("quiet")))

    def _pick(self, script: str) -> int:
        wanted = _normalise_script(script)
        if self.match == "sequential":
            if self._next >= len(self._runs):
                raise ReplayMismatchError(
                    f"{self.path.name}: the recording holds {len(self._runs)} runs and all were "
                    f"replayed; this run was not recorded: {_headline(script)}\n{_preview(script)}"
                )
            index = self._next
            recorded = _normalise_script(self._runs[index]["script"])
            if recorded != wanted:
                raise ReplayMismatchError(
                    f"{self.path.name}: run {index + 1} differs from the recording "
                    f"(match='sequential'): {_headline(script)}\n{_diff(recorded, wanted)}"
                )
            return index
        for index, entry in enumerate(self._runs):
            if index not in self._used and _normalise_script(entry["script"]) == wanted:
                return index
        if wanted in self._last_for_script:
            return self._last_for_script[wanted]
        raise ReplayMismatchError(
            f"{self.path.name}: no recorded run has this script (match='script'): "
            f"{_headline(script)}\n{_preview(script)}"
        )

    def _check_parameters(
        self, index: int, entry: Mapping[str, Any], parameters: Mapping[str, Any] | None
    ) -> None:
        recorded: Mapping[str, Any] = entry.get("parameters", {})
        given = _encode_parameters(parameters)
        if set(recorded) != set(given):
            raise ReplayMismatchError(
                f"{self.path.name}: run {index + 1} was recorded with parameters "
                f"{sorted(recorded)} but is replayed with {sorted(given)}"
            )
        for name, value in given.items():
            if "redacted" in value or "redacted" in recorded[name]:
                continue  # secrets are never written, so only their presence can be compared
            if value != recorded[name]:
                raise ReplayMismatchError(
                    f"{self.path.name}: run {index + 1}: parameter ${name} differs from the "
                    "recorded value"
                )

    @staticmethod
    def _raise(raised: Mapping[str, Any], result: Result) -> None:
        kind = raised.get("type")
        message = str(raised.get("message", ""))
        if kind == "RemoteError":
            record = None
            if raised.get("record"):
                decoded = loads(raised["record"])
                record = decoded[0] if decoded else None
            if isinstance(record, ErrorRecord):
                result.terminating_error = record
            raise RemoteError(message, record=record, result=result)
        if kind == "PipelineTimeoutError":
            raise PipelineTimeoutError(message, result=result)
        if kind == "KeyboardInterrupt":
            raise KeyboardInterrupt
        if kind in ("SessionBrokenError", "SessionLimitExceededError"):
            raise SessionBrokenError(message, result=result)
        raise HvMagicError(f"recorded run ended with {kind}: {message}")


def _headline(script: str, limit: int = 60) -> str:
    """The script's first non-blank line, short: a one-line error names the run it is about."""
    first = next((line.strip() for line in script.splitlines() if line.strip()), "(empty)")
    return first if len(first) <= limit else first[:limit] + "…"


def _preview(script: str, limit: int = 400) -> str:
    text = script.strip()
    return text if len(text) <= limit else text[:limit] + "…"


def _diff(recorded: str, given: str) -> str:
    lines = difflib.unified_diff(
        recorded.split("\n"), given.split("\n"), "recorded", "this run", lineterm="", n=1
    )
    return "\n".join(list(lines)[:40])
