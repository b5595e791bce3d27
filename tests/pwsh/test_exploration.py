"""The exploration that defeated the simulator runs against the demo guest with PowerShell's
own answers (issue 13, "Done when"; issue 12).

Every cell of :data:`tests.pwsh.exploration_cells.CELLS` runs through hvmagic, in ONE demo
session, in order. PowerShell's own answer comes from the same run: a plain ``pwsh`` imports the
same ``HvmagicDemo`` module (the same setup text, its own demo machine folder) and runs the same
cells in one runspace (``exploration_judge.ps1``), while hvmagic runs them. Each cell is then
compared as a client sees it:

* output: each object after PowerShell's own serializer round trip (remoting's depth) against
  hvmagic's decoded value — kind (number, text, date, enum, list, dictionary, object), value,
  enum type and label, type names (``Deserialized.`` removed on both sides), ``ToString`` and
  every property in order;
* error records (FullyQualifiedErrorId, message, CategoryInfo, target), warnings, verbose,
  debug, information (message, tags) and progress records, and the terminating error;
* the host's lines (``Write-Host``, ``What if: ...``).

Differences that are not hvmagic's: each side's demo folder (the C: drive's real path) reads as
``<C:>``; dates and durations the demo computes from "now" (event times, boot time) may differ
by the seconds between the two runs; a cell marked ``volatile`` compares its text with digits
masked; ``unordered`` compares the output as a multiset (Hashtable order is per process).
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import os
import re
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from hvmagic.clixml.values import (
    ErrorRecord,
    PSChar,
    PSDateTime,
    PSEnum,
    PSObject,
    PSScriptBlock,
    PSTimeSpan,
    PSUri,
    PSVersion,
    PSXmlDocument,
    SecureString,
    strip_deserialized,
)
from hvmagic.demo import (
    GUEST_ENVIRONMENT,
    forget_machine,
    import_script,
    machine_folder,
    open_demo_session,
)
from hvmagic.errors import RemoteError
from hvmagic.session import Result, Session
from tests.pwsh.exploration_cells import CELLS, Cell

JUDGE = Path(__file__).with_name("exploration_judge.ps1")
#: the demo's clock-relative data (event times, boot time) differs by the seconds between runs
TIME_TOLERANCE_TICKS = 10 * 60 * 10_000_000
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
_MARKER = re.compile(r"^==HVMAGIC-(CELL|END) (\d+)==$")
_STREAM_PREFIXES = ("WARNING: ", "VERBOSE: ", "DEBUG: ")


# -- hvmagic's values in the judge's shapes ----------------------------------------------------


def _ticks(value: dt.datetime) -> int:
    aware = value if value.tzinfo is not None else value.replace(tzinfo=dt.timezone.utc)
    delta = aware - _EPOCH
    remainder = getattr(value, "tick_remainder", 0)
    return (delta.days * 86_400 + delta.seconds) * 10_000_000 + delta.microseconds * 10 + remainder


def _span_ticks(value: dt.timedelta) -> int:
    return ((value.days * 86_400 + value.seconds) * 1_000_000 + value.microseconds) * 10 + getattr(
        value, "tick_remainder", 0
    )


def _pairs(props: Any, depth: int) -> list[list[Any]]:
    return [[name, shape(value, depth + 1)] for name, value in props.items()]


def shape(value: Any, depth: int = 0) -> dict[str, Any]:
    """``value`` (as hvmagic decoded it) in the shape ``exploration_judge.ps1`` gives
    PowerShell's own deserialized object."""
    if value is None:
        return {"k": "null"}
    if depth > 8:
        return {"k": "deep"}
    if isinstance(value, PSEnum):
        type_name = strip_deserialized(value.type_names[0]) if value.type_names else None
        return {"k": "enum", "type": type_name, "v": int(value), "label": str(value)}
    if isinstance(value, PSObject) and value.value is None:
        return {
            "k": "obj",
            "types": [strip_deserialized(name) for name in value.type_names],
            # PowerShell's deserialized object without a <ToString> says "" for ToString()
            "str": value.to_string or "",
            "props": _pairs(value.properties, depth),
        }
    base = value.value if isinstance(value, PSObject) else value
    result = _primitive(base, depth)
    notes = value.properties if isinstance(value, PSObject) else getattr(value, "properties", None)
    if isinstance(notes, dict) and notes:
        result["notes"] = _pairs(notes, depth)
    return result


def _primitive(value: Any, depth: int) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"k": "bool", "v": value}
    if isinstance(value, int):
        return {"k": "int", "v": int(value)}
    if isinstance(value, float):
        return {"k": "float", "v": value if value == value and abs(value) != float("inf")
                else str(value).replace("inf", "Infinity").replace("nan", "NaN")}
    if isinstance(value, decimal.Decimal):
        return {"k": "decimal", "v": str(value)}
    if isinstance(value, PSChar):
        return {"k": "char", "v": str(value)}
    if isinstance(value, PSUri):
        return {"k": "uri", "v": str(value)}
    if isinstance(value, PSScriptBlock):
        return {"k": "scriptblock", "v": str(value)}
    if isinstance(value, PSXmlDocument):
        return {"k": "xml", "v": str(value)}
    if isinstance(value, str):
        return {"k": "str", "v": str(value)}
    if isinstance(value, PSDateTime | dt.datetime):
        return {"k": "datetime", "v": _ticks(value)}
    if isinstance(value, PSTimeSpan | dt.timedelta):
        return {"k": "timespan", "v": _span_ticks(value)}
    if isinstance(value, uuid.UUID):
        return {"k": "guid", "v": str(value)}
    if isinstance(value, PSVersion):
        return {"k": "version", "v": str(value)}
    if isinstance(value, bytes):
        import base64

        return {"k": "bytes", "v": base64.b64encode(value).decode("ascii")}
    if isinstance(value, SecureString):
        return {"k": "securestring"}
    if isinstance(value, dict):
        return {"k": "dict", "items": [[shape(k, depth + 1), shape(v, depth + 1)]
                                       for k, v in value.items()]}
    if isinstance(value, list | tuple):
        return {"k": "list", "items": [shape(item, depth + 1) for item in value]}
    return {"k": "other", "type": type(value).__name__, "v": str(value)}


def _error_shape(record: ErrorRecord) -> dict[str, Any]:
    return {
        "fqid": record.fully_qualified_error_id,
        "message": record.message,
        "category_info": record.category_info,
    }


def outcome(result: Result, failed: ErrorRecord | None) -> dict[str, Any]:
    """One cell's outcome through hvmagic, in the judge's shape."""
    return {
        "output": [shape(value) for value in result.output],
        "error": [_error_shape(record) for record in result.errors],
        "warning": [record.message for record in result.warnings],
        "verbose": [record.message for record in result.verbose],
        "debug": [record.message for record in result.debug],
        "information": [{"message": record.message, "tags": record.tags}
                        for record in result.information],
        "progress": [{
            "activity": record.activity, "activity_id": record.activity_id,
            "parent_activity_id": record.parent_activity_id, "status": record.status_description,
            "current_operation": record.current_operation, "percent": record.percent_complete,
            "seconds_remaining": record.seconds_remaining, "record_type": record.record_type,
        } for record in result.progress],
        "failed": None if failed is None else _error_shape(failed),
        "host": [line for text in result.host for line in text.splitlines()],
    }


# -- comparing ---------------------------------------------------------------------------------


@dataclass
class Masks:
    """Text that differs between the two demo machines for reasons that are not hvmagic's."""

    roots: list[str] = field(default_factory=list)
    digits: bool = False

    def text(self, value: str) -> str:
        for root in self.roots:
            value = value.replace(root, "<C:>")
        if self.digits:
            value = re.sub(r"\d+", "#", value)
        return value


def differences(ours: Any, theirs: Any, masks: Masks, where: str = "") -> list[str]:
    """Where hvmagic's shape ``ours`` differs from PowerShell's ``theirs`` (empty: the same)."""
    if isinstance(theirs, dict) and isinstance(ours, dict):
        kind = theirs.get("k")
        if kind in ("datetime", "timespan") and ours.get("k") == kind:
            if masks.digits or abs(int(ours["v"]) - int(theirs["v"])) <= TIME_TOLERANCE_TICKS:
                return []
            return [f"{where}: {kind} {ours['v']} != {theirs['v']}"]
        if kind in ("int", "float", "decimal") and masks.digits and ours.get("k") == kind:
            return []
        found: list[str] = []
        for key in sorted(set(ours) | set(theirs)):
            if key not in ours or key not in theirs:
                found.append(f"{where}.{key}: only {'PowerShell' if key in theirs else 'hvmagic'}"
                             f" has it ({theirs.get(key, ours.get(key))!r:.120})")
                continue
            found += differences(ours[key], theirs[key], masks, f"{where}.{key}")
        return found
    if isinstance(theirs, list) and isinstance(ours, list):
        if len(ours) != len(theirs):
            return [f"{where}: {len(ours)} items != PowerShell's {len(theirs)}: "
                    f"{json.dumps(ours)[:300]} vs {json.dumps(theirs)[:300]}"]
        found = []
        for index, (a, b) in enumerate(zip(ours, theirs, strict=True)):
            found += differences(a, b, masks, f"{where}[{index}]")
        return found
    if isinstance(theirs, str) and isinstance(ours, str):
        if masks.text(ours) == masks.text(theirs):
            return []
    elif isinstance(theirs, float) or isinstance(ours, float):
        if isinstance(ours, int | float) and isinstance(theirs, int | float) and (
            ours == theirs or abs(ours - theirs) <= 1e-12 * max(abs(ours), abs(theirs))
        ):
            return []
    elif ours == theirs and type(ours) is type(theirs):
        return []
    return [f"{where}: hvmagic {ours!r:.200} != PowerShell {theirs!r:.200}"]


def _sorted(value: Any, properties: bool) -> Any:
    """Dictionaries (a Hashtable's order is per process) with their entries sorted, and with
    ``properties`` also objects' properties (objects PowerShell builds from a Hashtable)."""
    if isinstance(value, dict):
        copy = {key: _sorted(item, properties) for key, item in value.items()}
        if copy.get("k") == "dict":
            copy["items"] = sorted(copy["items"], key=lambda pair: json.dumps(pair[0]))
        if properties and copy.get("k") == "obj":
            copy["props"] = sorted(copy["props"], key=lambda pair: str(pair[0]))
            copy["str"] = "(a ToString listing the properties in a Hashtable's order)"
        return copy
    if isinstance(value, list):
        return [_sorted(item, properties) for item in value]
    return value


def compare(
    cell: Cell, ours: dict[str, Any], theirs: dict[str, Any], roots: list[str]
) -> list[str]:
    masks = Masks(roots=roots, digits=cell.volatile is not None)
    ours, theirs = _sorted(ours, cell.unordered), _sorted(theirs, cell.unordered)
    if cell.unordered:
        for side in (ours, theirs):
            side["output"] = sorted(side["output"], key=lambda item: json.dumps(item))
    return differences(ours, theirs, masks)


# -- running both sides ------------------------------------------------------------------------


@dataclass
class Exploration:
    ours: list[dict[str, Any]]
    theirs: list[dict[str, Any]]
    roots: list[str]


def _host_lines(stdout: str) -> dict[int, list[str]]:
    """The console host's lines per cell, minus the stream lines (hvmagic files warnings,
    verbose and debug text in their streams, where the judge's records are compared)."""
    lines: dict[int, list[str]] = {}
    current: int | None = None
    for raw in stdout.splitlines():
        line = raw.rstrip("\r")
        marker = _MARKER.match(line)
        if marker:
            current = int(marker.group(2)) if marker.group(1) == "CELL" else None
            if current is not None:
                lines[current] = []
            continue
        if current is not None and not line.startswith(_STREAM_PREFIXES):
            lines[current].append(line.rstrip())
    return lines


def _start_judge(pwsh: str, workdir: Path, setup: str) -> tuple[subprocess.Popen[bytes], Path]:
    answer = workdir / "answer.json"
    request = workdir / "request.json"
    request.write_text(json.dumps({"setup": setup, "cells": [c.script for c in CELLS],
                                   "out": str(answer)}), encoding="utf-8")
    process = subprocess.Popen(
        [pwsh, "-NoLogo", "-NoProfile", "-NonInteractive", "-File", str(JUDGE),
         "-RequestPath", str(request)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env={**os.environ, **GUEST_ENVIRONMENT},
    )
    return process, answer


def _run_cells(session: Session) -> list[dict[str, Any]]:
    outcomes = []
    for cell in CELLS:
        failed = None
        try:
            result = session.run(cell.script, timeout=60)
        except RemoteError as exc:
            assert exc.result is not None
            result, failed = exc.result, exc.record
        outcomes.append(outcome(result, failed))
    return outcomes


@pytest.fixture(scope="module")
def exploration(pwsh: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Exploration]:
    tag = uuid.uuid4().hex[:8]
    ours_name, judge_name = f"explore-{tag}", f"explore-judge-{tag}"
    judge_folder = machine_folder(judge_name)
    setup = import_script(judge_folder / "state.json", judge_folder / "C")
    process, answer = _start_judge(pwsh, tmp_path_factory.mktemp("exploration"), setup)
    try:
        session = open_demo_session(executable=pwsh, name=ours_name, timeout=120)
        try:
            ours = _run_cells(session)
        finally:
            session.close()
        stdout, stderr = process.communicate(timeout=240)
        assert process.returncode == 0, stderr.decode("utf-8", "replace")
        theirs = json.loads(answer.read_text(encoding="utf-8"))
        hosts = _host_lines(stdout.decode("utf-8", "replace"))
        for index, item in enumerate(theirs):
            item["host"] = hosts.get(index, [])
        roots = [str(machine_folder(ours_name) / "C"), str(judge_folder / "C")]
        yield Exploration(ours, theirs, roots)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        forget_machine(ours_name)
        forget_machine(judge_name)


def test_the_exploration_has_the_issues_cells() -> None:
    # the named failures of issue 13 are all in the data
    named = {cell.issue for cell in CELLS if cell.issue}
    for failure in ("if/else", "foreach", "try/catch", "hashtable literals", "here-strings",
                    "Get-Member", "Get-Help", "Get-NetAdapter", "Get-ItemProperty",
                    "Measure-Object -Sum", "ToString('u')", "{0:N1}", "-Nmae", "item $_",
                    "enum labels", "Sort-Object with hashtables"):
        assert any(failure in text for text in named), failure
    assert len(CELLS) >= 156


@pytest.mark.parametrize(
    "index", range(len(CELLS)),
    ids=[f"{i:03d}-{c.script.splitlines()[0][:40]}" for i, c in enumerate(CELLS)],
)
def test_cell_gives_powershells_own_answer(exploration: Exploration, index: int) -> None:
    cell = CELLS[index]
    found = compare(cell, exploration.ours[index], exploration.theirs[index], exploration.roots)
    assert not found, f"{cell.script!r}:\n  " + "\n  ".join(found[:12])
