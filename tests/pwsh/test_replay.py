"""Record a session against real PowerShell, replay it without PowerShell: same Results, same text.

The live run's Results and what hvmagic displays for them (tables, stream lines, error text)
are kept; the replay must give back equal Results and byte-identical display text.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

import hvmagic
from hvmagic import display
from hvmagic.clixml.values import ProgressRecord
from hvmagic.errors import RemoteError
from tests.pwsh.conftest import AskPwsh

CELLS: list[tuple[str, dict[str, Any] | None]] = [
    ("Get-Item -LiteralPath $PSHOME | Select-Object Name, FullName, Attributes, "
     "CreationTimeUtc, @{n='Size'; e={[long]42}}", None),
    ("Write-Verbose 'v' -Verbose; Write-Warning 'w'; Write-Host 'h'; "
     "Write-Information 'i' -Tags x; Write-Progress -Activity a -Id 3 -PercentComplete 50; "
     "Write-Error 'e'; 'text'; 1.5; [guid]::Empty; [datetime]::new(638397050456789019, 'Utc')",
     None),
    ("$n * 2; [ordered]@{ a = $s; b = @(1, $null) }", {"n": 21, "s": "ä ✓"}),
    ("Get-Item /hvm/replay/missing -ErrorAction Stop", None),
    ("throw [pscustomobject]@{ Code = 7 }", None),
]


def _display(result: Any, raised: BaseException | None) -> list[str]:
    """The plain text hvmagic shows for a run, event by event and then the output."""
    texts: list[str] = []
    for stream in ("warnings", "verbose", "debug", "information", "host"):
        name = {"warnings": "warning"}.get(stream, stream)
        texts.extend(display.render_stream(name, r)["text/plain"] for r in getattr(result, stream))
    texts.extend(display.render_error(r)["text/plain"] for r in result.errors)
    texts.extend(repr(p) for p in result.progress)
    if raised is not None:
        texts.append(display.render_error(getattr(raised, "record", None) or str(raised))
                     ["text/plain"])
    if display.is_text_output(result.output):
        texts.append(display.render_text_output(result.output)["text/plain"])
    elif result.output:
        texts.append(display.render_frame(result.frame())["text/plain"])
    return texts


def _run_all(session: Any) -> list[tuple[Any, list[str], list[tuple[str, Any]]]]:
    runs = []
    for script, parameters in CELLS:
        events: list[tuple[str, Any]] = []
        raised: BaseException | None = None
        try:
            result = session.run(script, parameters,
                                 on_event=lambda s, r, events=events: events.append((s, r)))
        except RemoteError as exc:
            raised, result = exc, exc.result
        runs.append((result, _display(result, raised), events))
    return runs


def _comparable(result: Any) -> dict[str, Any]:
    return {
        "output": result.output, "state": result.state,
        "errors": [(e.fully_qualified_error_id, e.message, display.error_text(e))
                   for e in result.errors],
        "terminating": None if result.terminating_error is None
        else display.error_text(result.terminating_error),
        **{name: [getattr(r, "message", r) for r in getattr(result, name)]
           for name in ("warnings", "verbose", "debug", "information", "host")},
        "progress": [(p.activity, p.activity_id, p.percent_complete) for p in result.progress
                     if isinstance(p, ProgressRecord)],
    }


def test_a_recorded_powershell_session_replays_identically(pwsh: str, tmp_path: Path) -> None:
    path = tmp_path / "pwsh.hvrec.json"
    with hvmagic.connect("pwsh", via="process", executable=pwsh, record=path) as live:
        recorded = _run_all(live)
    replayed = _run_all(hvmagic.connect("pwsh", replay=path))
    assert len(replayed) == len(recorded) == len(CELLS)
    for (live_result, live_text, live_events), (again, again_text, again_events) in zip(
        recorded, replayed, strict=True
    ):
        assert _comparable(again) == _comparable(live_result)
        assert again_text == live_text
        assert [s for s, _ in again_events] == [s for s, _ in live_events]
    # the runs really held what they claim: PowerShell answered, errors failed the run
    assert recorded[2][0].output[0] == 42
    assert recorded[3][0].state == "Failed" and recorded[4][0].state == "Failed"
    assert recorded[1][0].errors and recorded[1][0].host == ["h"]


def test_vmconnect_records_then_replays_the_same_cell_outputs(
    pwsh: str, ask_pwsh: AskPwsh, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """%vmconnect --record against a local PowerShell, then --replay: every cell shows the same."""
    from IPython.core.interactiveshell import InteractiveShell
    from IPython.utils.capture import capture_output

    found = tmp_path / "bin"  # --via process starts the `pwsh` on PATH
    found.mkdir()
    (found / "pwsh").symlink_to(pwsh)
    monkeypatch.setenv("PATH", f"{found}{os.pathsep}{os.environ.get('PATH', '')}")
    recording = tmp_path / "triage.hvrec.json"
    cells = [
        "%%vmps -o home\nGet-Item -LiteralPath $PSHOME | Select-Object Name, Attributes\n",
        "%%vmps\nWrite-Warning 'disk low'\nWrite-Verbose 'details' -Verbose\n"
        "Write-Host 'hi'\n'text out'\n",
        "%%vmps\nWrite-Error 'boom'\n",
    ]
    shell = InteractiveShell.instance()
    shell.extension_manager.load_extension("hvmagic")

    def run_all() -> list[Any]:
        seen = []
        for cell in cells:
            with capture_output() as captured:
                result = shell.run_cell(cell)
            seen.append(([o.data for o in captured.outputs], repr(result.error_in_exec)))
        return seen

    try:
        with capture_output() as captured:
            shell.run_line_magic("vmconnect", f"judge --via process --record {recording}")
        assert f"(recording to {recording})" in captured.stdout
        live = run_all()
        with capture_output():
            shell.run_line_magic("vmclose", "")
        with capture_output() as captured:
            shell.run_line_magic("vmconnect", f"--replay {recording}")
        assert captured.stdout.startswith(
            "Connected 'triage' via replay: replay of triage.hvrec.json"
        )
        replayed = run_all()
    finally:
        with capture_output():
            shell.run_line_magic("vmclose", "--all")
        shell.extension_manager.unload_extension("hvmagic")
    assert replayed == live
    # the live run held PowerShell's own answers
    home = ask_pwsh("(Get-Item -LiteralPath $PSHOME).Name").strip()
    assert f"<td>{home}</td>" in live[0][0][0]["text/html"]
    assert [d["text/plain"] for d in live[1][0]] == [
        "WARNING: disk low", "VERBOSE: details", "hi", "text out"]
    assert live[2][1].startswith("PowerShellError(")
