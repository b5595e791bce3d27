"""Shown like PowerShell shows it, bound as it arrived (issue 12 point 10), judged by PowerShell.

* tables: ``$null`` cells blank and DateTimes to the second, in the displayed table only;
* ``Write-Host -ForegroundColor/-BackgroundColor`` colours and ``-NoNewline`` lines as
  PowerShell's own client (:mod:`tests.pwsh.ownclient`) received them, live and replayed;
* nested ``Write-Progress`` activities indented under their parent.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

import hvmagic
from hvmagic import display
from hvmagic.clixml.values import ProgressRecord
from hvmagic.hosttext import console_color
from tests.pwsh.ownclient import OWN_CLIENT_SCRIPTS, own_client  # noqa: F401

HOST_SCRIPT = r"""Write-Host 'red' -ForegroundColor Red
Write-Host 'both' -ForegroundColor Yellow -BackgroundColor DarkBlue
Write-Host 'plain'
Write-Host 'a' -NoNewline; Write-Host 'b'
Write-Host 'x' -NoNewline -ForegroundColor Green; Write-Host 'y' -ForegroundColor Cyan
Write-Host -BackgroundColor Red 'background only'
"""
OWN_CLIENT_SCRIPTS["host colours"] = HOST_SCRIPT


def _live_bundles(session: Any, script: str) -> list[display.MimeBundle]:
    bundles: list[display.MimeBundle] = []
    live = display.LiveRenderer(publish_bundle=bundles.append, progress_style="none")
    session.run(script, on_event=live.on_event)
    live.finish()
    return bundles


_SPAN = re.compile(r'<span class="hvmagic-color" style="([^"]*)">([^<]*)</span>|([^<]+)')


def _pieces(bundle: display.MimeBundle) -> list[tuple[str, str | None, str | None]]:
    """(text, foreground, background) of each piece of one shown host line."""
    inner = re.sub(r"^<div[^>]*>|</div>$", "", bundle["text/html"])
    css_names = {css: name for name, css in display.CONSOLE_CSS.items()}
    pieces = []
    for style, coloured, plain in _SPAN.findall(inner):
        props = dict(p.split(":", 1) for p in style.split(";") if p)
        pieces.append((coloured or plain, css_names.get(props.get("color", "")),
                       css_names.get(props.get("background", ""))))
    return pieces


def _expected_lines(own: tuple[list[str], dict[str, Any]]) -> list[list[tuple[str, Any, Any]]]:
    """The host lines PowerShell's own client got: its PSHOST records' colours, pieces joined
    up to the one that ends the line."""
    _, streams = own
    lines: list[list[tuple[str, Any, Any]]] = [[]]
    for info in streams["information"]:
        if "PSHOST" not in info["tags"]:
            continue
        # a colour not given reads as the client host's default, -1 for a redirected console
        piece = (info["message"], console_color(info["fg"] or None),
                 console_color(info["bg"] or None))
        if lines[-1] and lines[-1][-1][1:] == piece[1:] == (None, None):
            piece = (lines[-1].pop()[0] + piece[0], None, None)  # one run of plain text
        lines[-1].append(piece)
        if not info["nonewline"]:
            lines.append([])
    return lines[:-1]


def test_write_host_colours_and_nonewline_are_what_powershells_client_received(
    own_client: dict[str, tuple[list[str], dict[str, Any]]],  # noqa: F811
    shared_pwsh_session: Any,
) -> None:
    own = own_client["host colours"]
    shown_by_powershell, _ = own
    expected = _expected_lines(own)
    # the judge really saw colours and an 'ab' line (else this test would prove nothing)
    assert expected[0] == [("red", "Red", None)] and [("ab", None, None)] in expected
    assert [("x", "Green", None), ("y", "Cyan", None)] in expected
    # issue 12 (a): a background alone kept (PowerShell reads the default foreground from the
    # host's raw UI; hvmagic's host had none, and PowerShell then dropped both colours)
    assert [("background only", None, "Red")] in expected
    bundles = _live_bundles(shared_pwsh_session, HOST_SCRIPT)
    assert [_pieces(b) for b in bundles] == expected
    # the text of each line is the line PowerShell's own console host printed
    texts = [b["text/plain"] for b in bundles]
    assert texts == [line for line in shown_by_powershell if line in texts]
    assert "ab" in texts and "xy" in texts


def test_a_replay_shows_the_same_colours(pwsh: str, tmp_path: Path) -> None:
    path = tmp_path / "colours.hvrec.json"
    with hvmagic.connect("pwsh", via="process", executable=pwsh, record=path) as live:
        recorded = _live_bundles(live, HOST_SCRIPT)
    replayed = _live_bundles(hvmagic.connect("pwsh", replay=path), HOST_SCRIPT)
    assert any('class="hvmagic-color"' in b["text/html"] for b in recorded)
    assert replayed == recorded


def test_shown_table_blanks_null_and_prints_dates_to_the_second_bound_frame_unchanged(
    shared_pwsh_session: Any, ask_pwsh: Any
) -> None:
    script = ("[pscustomobject]@{Name='a'; When=[datetime]::new(2026,1,2,3,4,5,678); "
              "Gone=$null; Count=$null}, "
              "[pscustomobject]@{Name=$null; When=$null; Gone='here'; Count=3}")
    result = shared_pwsh_session.run(script)
    frame = result.frame()
    text = display.render_frame(frame)["text/plain"]
    markup = display.render_frame(frame)["text/html"]
    # PowerShell's own table: $null cells are blank, the date has no fraction
    own = ask_pwsh(f"{script} | Format-Table -AutoSize | Out-String -Width 200")
    assert "None" not in own and "678" not in own
    for noise in ("None", "<NA>", "NaT", "NaN", ".678"):
        assert noise not in text and noise not in markup
    second = ask_pwsh("[datetime]::new(2026,1,2,3,4,5,678).ToString('yyyy-MM-dd HH:mm:ss')")
    assert second.strip() in text
    # the bound frame keeps every value as it arrived
    assert frame["When"].iloc[0].microsecond == 678000
    assert frame["Gone"].isna().iloc[0] and frame["Name"].isna().iloc[1]


class _Sink:
    def __init__(self) -> None:
        self.shown: list[display.MimeBundle] = []

    def show(self, bundle: display.MimeBundle) -> None:
        self.shown.append(bundle)

    def clear(self) -> None:
        pass


@pytest.mark.parametrize("style", ["bar", "text"])
def test_nested_progress_from_powershell_is_indented_under_its_parent(
    shared_pwsh_session: Any, style: str
) -> None:
    sink = _Sink()
    live = display.LiveRenderer(publish_bundle=lambda b: None, progress_style=style,
                                progress_sink=sink)
    result = shared_pwsh_session.run(
        "Write-Progress -Activity outer -Id 1 -Status o -PercentComplete 10\n"
        "Write-Progress -Activity inner -Id 2 -ParentId 1 -Status i -PercentComplete 20\n"
        "Write-Progress -Activity innermost -Id 3 -ParentId 2 -Status m\n",
        on_event=live.on_event)
    records = [p for p in result.progress if isinstance(p, ProgressRecord)]
    assert [(p.activity_id, p.parent_activity_id) for p in records] == [(1, -1), (2, 1), (3, 2)]
    lines = sink.shown[-1]["text/plain"].splitlines()
    assert [line.lstrip().split(":")[0] for line in lines] == ["outer", "inner", "innermost"]
    assert [len(line) - len(line.lstrip()) for line in lines] == [0, 2, 4]
    if style == "bar":
        margins = re.findall(r"margin-left:([0-9.]+)em", sink.shown[-1]["text/html"])
        assert [float(m) for m in margins] == [0.0, 1.5, 3.0]


def test_a_date_printed_as_a_value_has_no_fraction_either(
    shared_pwsh_session: Any, ask_pwsh: Any
) -> None:
    result = shared_pwsh_session.run("[datetime]::new(2026,1,2,3,4,5,678)")
    assert result.output[0].microsecond == 678000  # bound as it arrived
    shown = display.render_text_output(result.output)["text/plain"]
    second = ask_pwsh("[datetime]::new(2026,1,2,3,4,5,678).ToString('yyyy-MM-dd HH:mm:ss')")
    assert shown.startswith(second.strip()) and ".678" not in shown
