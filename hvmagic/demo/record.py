"""Make the shipped recordings of the runbooks again, and tell how they drifted.

``python -m hvmagic.demo.record`` executes the runbooks of :data:`RUNBOOKS` against the demo
guest (a real PowerShell: ``--executable``, ``$HVMAGIC_PWSH``, ``pwsh`` on PATH, or
``powershell.exe``) with ``HVMAGIC_RECORD`` set, and replaces the package's recordings
(``hvmagic/demo/recordings/<runbook>/<session>.hvrec.json``) with what they recorded — only when
every runbook ran clean. ``--check`` records into a scratch folder instead and prints how the
result differs from the shipped recordings (exit status 1 when it does).

Comparing recordings
--------------------
:func:`canonical_lines` renders a recording as lines that hold everything it says — every
script, every parameter, every record with its stream, type names, property names, CLIXML
types and values, each run's state and error — except what differs between two honest runs of
the same demo guest:

* timing: the records' offsets, the runs' durations, the session's ``recorded_at``;
* values derived from the current clock: a DateTime becomes its distance from the recording's
  start to the minute (the demo dates events, boots and installs relative to now), or "during
  the recording" when it falls in the hour the recording may take (a boot, a file written, on
  a slow machine too); a DateTime at midnight (a date, such as a hotfix's ``InstalledOn``) its
  distance in days from the recording's day; a TimeSpan its length to the minute, or "under an
  hour" (an uptime measured during the recording);
* the demo machine's folder in the temporary directory (its ``C:`` drive), a random name.

Everything else the demo produces is deterministic (its data, and the logs whose zip is copied
out, carry fixed text and times), so any other difference is drift.
"""

from __future__ import annotations

import argparse
import datetime as dt
import difflib
import json
import re
import shutil
import sys
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from hvmagic.demo import MACHINE_PREFIX, PWSH_ENV, RECORDINGS, resolve_powershell
from hvmagic.errors import HvMagicError, UnsupportedPlatformError
from hvmagic.nbrun import CHECKOUT_NOTEBOOKS, PACKAGE_NOTEBOOKS, RunSummary, run_notebook
from hvmagic.recording import RECORD_ENV, REPLAY_ENV, SUFFIX

#: the runbooks whose recordings ship; the DSC runbook (02) is not among them: PowerShell on
#: Linux cannot compile a DSC ``Configuration``, so no honest recording of it can be made here
RUNBOOKS = ("01-guest-services-triage", "03-troubleshooting-bundle", "04-fleet-patch-check")
REFRESH = "python -m hvmagic.demo.record"
#: seconds from a recording's start (which is rounded down to the second, and comes just after
#: its demo machine booted) in which a time counts as "during the recording"
DURING = (-120.0, 3600.0)
#: lines of diff shown per recording before the rest is summarised
DIFF_LIMIT = 150

_MACHINE_FOLDER = re.compile(
    r"(?:[A-Za-z]:)?[^\s\"'<>:|*?]*" + re.escape(MACHINE_PREFIX) + r"[A-Za-z0-9_]{8}"
)
_DATETIME = re.compile(
    r"^(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)?$"
)
_DURATION = re.compile(
    r"^(-)?P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?$"
)


class RecordError(HvMagicError):
    """A runbook could not be recorded (no PowerShell, or a cell failed)."""


# -- recording --------------------------------------------------------------------------------
def find_runbook(stem: str, folders: Sequence[Path] = (PACKAGE_NOTEBOOKS, CHECKOUT_NOTEBOOKS)
                 ) -> Path:
    for folder in folders:
        if (folder / f"{stem}.ipynb").is_file():
            return folder / f"{stem}.ipynb"
    raise RecordError(f"runbook {stem}.ipynb not found in {', '.join(map(str, folders))}")


def record_runbooks(
    output: Path,
    *,
    executable: str | None = None,
    notebooks: Sequence[Path] = (PACKAGE_NOTEBOOKS, CHECKOUT_NOTEBOOKS),
    runbooks: Iterable[str] = RUNBOOKS,
    timeout: float = 300,
) -> dict[str, RunSummary]:
    """Execute each runbook live against the demo guest, recording into ``output/<runbook>/``.

    The executed notebooks (and what they wrote) are kept in ``output/.runs/<runbook>/``.
    Raises :class:`RecordError` naming the first runbook with a failed cell."""
    pwsh = resolve_powershell(executable)
    summaries: dict[str, RunSummary] = {}
    for stem in runbooks:
        folder = output / stem
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        env: dict[str, str | None] = {PWSH_ENV: pwsh, RECORD_ENV: str(folder), REPLAY_ENV: None}
        summary = run_notebook(find_runbook(stem, notebooks), output / ".runs" / stem,
                               timeout=timeout, env=env)
        if summary.errors:
            raise RecordError(f"{stem}: a cell failed live, nothing to ship: {summary.errors[0]}")
        summaries[stem] = summary
    return summaries


def install(recorded: Path, target: Path = RECORDINGS, runbooks: Iterable[str] = RUNBOOKS
            ) -> list[Path]:
    """Replace the recordings in ``target`` with those of ``recorded``; the files written."""
    written: list[Path] = []
    for stem in runbooks:
        destination = target / stem
        if destination.exists():
            shutil.rmtree(destination)
        destination.mkdir(parents=True)
        for source in sorted((recorded / stem).glob(f"*{SUFFIX}")):
            written.append(Path(shutil.copy2(source, destination / source.name)))
    return written


# -- comparing --------------------------------------------------------------------------------
def _parse_datetime(text: str) -> dt.datetime | None:
    match = _DATETIME.match(text.strip())
    if not match:
        return None
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    micro = int((fraction or "0")[:6].ljust(6, "0"))
    tz: dt.tzinfo = dt.timezone.utc  # a DateTime of unspecified kind is read as UTC
    if zone and zone != "Z":
        sign = -1 if zone[0] == "-" else 1
        tz = dt.timezone(sign * dt.timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6])))
    return dt.datetime(int(year), int(month), int(day), int(hour), int(minute), int(second),
                       micro, tzinfo=tz)


def _minutes(total: float) -> str:
    minutes = round(total / 60)
    sign = "-" if minutes < 0 else "+"
    days, rest = divmod(abs(minutes), 24 * 60)
    return f"{sign}{days}d {rest // 60:02d}:{rest % 60:02d}"


def relative_datetime(text: str, anchor: dt.datetime) -> str:
    """A CLIXML DateTime as its distance from ``anchor`` (see the module doc)."""
    value = _parse_datetime(text)
    if value is None:
        return text
    if value.time() == dt.time(0):
        days = (value.date() - anchor.astimezone(value.tzinfo).date()).days
        return f"<date: recording's day {days:+d} d>"
    seconds = (value - anchor).total_seconds()
    if DURING[0] <= seconds <= DURING[1]:
        return "<time: during the recording>"
    return f"<time: recording {_minutes(seconds)}>"


def rounded_duration(text: str) -> str:
    """A CLIXML TimeSpan (``xs:duration``) to the minute."""
    match = _DURATION.match(text.strip())
    if not match:
        return text
    negative, days, hours, minutes, seconds = match.groups()
    total = (int(days or 0) * 86400 + int(hours or 0) * 3600 + int(minutes or 0) * 60
             + float(seconds or 0))
    if not negative and total < DURING[1]:
        return "<duration under an hour>"
    return f"<duration {_minutes(-total if negative else total)}>"


def _text(value: str) -> str:
    return _MACHINE_FOLDER.sub("<demo machine folder>", value)


def clixml_lines(clixml: str, anchor: dt.datetime, indent: str = "    ") -> list[str]:
    """One CLIXML value as lines: one element per line, type names resolved."""
    try:
        root = ET.fromstring(clixml)
    except ET.ParseError:
        return [indent + _text(clixml)]
    types: dict[str, list[str]] = {}
    lines: list[str] = []

    def walk(element: ET.Element, depth: int) -> None:
        pad = indent + "  " * depth
        label = element.tag + (f" {element.get('N')}" if element.get("N") is not None else "")
        if element.tag == "TN":
            names = [t.text or "" for t in element]
            types[element.get("RefId", "")] = names
            lines.append(f"{pad}TN {', '.join(names)}")
            return
        if element.tag == "TNRef":
            lines.append(f"{pad}TN {', '.join(types.get(element.get('RefId', ''), ['?']))}")
            return
        if element.tag in ("Obj", "Ref") and element.get("RefId") is not None:
            label += f" #{element.get('RefId')}"
        if len(element):
            lines.append(pad + label)
            for child in element:
                walk(child, depth + 1)
            return
        text = element.text or ""
        if element.tag == "DT":
            text = relative_datetime(text, anchor)
        elif element.tag == "TS":
            text = rounded_duration(text)
        lines.append(f"{pad}{label} = {json.dumps(_text(text), ensure_ascii=False)}")

    walk(root, 0)
    return lines


def _event_lines(event: Mapping[str, Any], anchor: dt.datetime) -> list[str]:
    head = f"  {event.get('stream')}" + (" (quiet)" if event.get("quiet") else "")
    if "clixml" in event:
        return [head + ":", *clixml_lines(str(event["clixml"]), anchor)]
    rest = {k: v for k, v in event.items() if k not in ("t", "stream", "quiet")}
    if "progress" in rest:
        rest["progress"] = {k: _text(v) if isinstance(v, str) else v
                            for k, v in rest["progress"].items()}
    elif "text" in rest:
        rest["text"] = _text(str(rest["text"]))
    return [f"{head}: {json.dumps(rest, sort_keys=True, ensure_ascii=False)}"]


def canonical_lines(document: Mapping[str, Any]) -> list[str]:
    """A recording as comparable lines (see the module doc for what is left out)."""
    session = dict(document.get("session", {}))
    recorded_at = _parse_datetime(str(session.pop("recorded_at", "")))
    anchor = recorded_at or dt.datetime.now(dt.timezone.utc)
    lines = [f"format {document.get('format')} version {document.get('version')}",
             f"session {json.dumps(session, sort_keys=True, ensure_ascii=False)}"]
    for number, run in enumerate(document.get("runs", []), 1):
        lines.append(f"run {number}: state {run.get('state')}")
        lines += ["  script:", *("    " + line.rstrip() for line in
                                 str(run.get("script", "")).strip("\n").split("\n"))]
        for name, value in run.get("parameters", {}).items():
            if "clixml" in value:
                lines += [f"  parameter ${name}:", *clixml_lines(value["clixml"], anchor)]
            else:
                lines.append(f"  parameter ${name}: {json.dumps(value, sort_keys=True)}")
        for event in run.get("events", []):
            lines += _event_lines(event, anchor)
        raised = run.get("raised")
        if raised:
            lines.append(f"  raised {raised.get('type')}: {_text(str(raised.get('message')))}")
            if raised.get("record"):
                lines += clixml_lines(str(raised["record"]), anchor)
    return lines


def _read(path: Path) -> list[str]:
    return canonical_lines(json.loads(path.read_text(encoding="utf-8")))


def drift(shipped: Path, fresh: Path, runbooks: Iterable[str] = RUNBOOKS) -> str:
    """How the recordings in ``fresh`` differ from those in ``shipped`` ("" when they agree),
    as unified diffs of their :func:`canonical_lines`."""
    parts: list[str] = []
    for stem in runbooks:
        old = {p.name: p for p in sorted((shipped / stem).glob(f"*{SUFFIX}"))}
        new = {p.name: p for p in sorted((fresh / stem).glob(f"*{SUFFIX}"))}
        if set(old) != set(new):
            parts.append(f"{stem}: shipped sessions {sorted(old)}, regenerated {sorted(new)}")
        for name in sorted(set(old) & set(new)):
            diff = list(difflib.unified_diff(
                _read(old[name]), _read(new[name]), f"shipped {stem}/{name}",
                f"regenerated {stem}/{name}", lineterm="", n=5,
            ))
            if len(diff) > DIFF_LIMIT:
                diff = [*diff[:DIFF_LIMIT], f"... {len(diff) - DIFF_LIMIT} more diff lines"]
            parts += diff
    if not parts:
        return ""
    return "\n".join([
        f"The demo guest's runbook recordings drifted from those shipped in {shipped}:", "",
        *parts, "",
        f"If the change is intended, make them again with: {REFRESH}",
        "(PowerShell 7 on PATH or in $HVMAGIC_PWSH), review the diff and commit it.",
    ])


# -- command line -----------------------------------------------------------------------------
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=REFRESH, description="Record the runbooks against the demo guest (see module doc)."
    )
    parser.add_argument("--check", action="store_true",
                        help="record into a scratch folder and show the drift; change nothing")
    parser.add_argument("--executable", default=None, help="the PowerShell to run the demo in")
    parser.add_argument("--notebooks", type=Path, default=None,
                        help="folder holding the runbooks (default: the package's, the checkout's)")
    parser.add_argument("--target", type=Path, default=RECORDINGS,
                        help="where the recordings go (default: the package's)")
    args = parser.parse_args(argv)
    folders = (args.notebooks,) if args.notebooks else (PACKAGE_NOTEBOOKS, CHECKOUT_NOTEBOOKS)
    with tempfile.TemporaryDirectory(prefix="hvmagic-record-") as scratch:
        try:
            record_runbooks(Path(scratch), executable=args.executable, notebooks=folders)
        except (RecordError, UnsupportedPlatformError) as exc:
            print(f"{REFRESH}: {exc}", file=sys.stderr)
            return 2
        report = drift(args.target, Path(scratch))
        if args.check:
            print(report or f"No drift: the recordings in {args.target} are current.")
            return 1 if report else 0
        for path in install(Path(scratch), args.target):
            print(f"{path} ({path.stat().st_size} bytes)")
        print("Changed." if report else "Unchanged (no drift).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
