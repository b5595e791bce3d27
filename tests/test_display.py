"""Rendering: stream lines, PowerShell-style errors, limited tables, live progress."""

from __future__ import annotations

import io

import pandas as pd
import pytest

from hvmagic import display
from hvmagic.clixml.values import (
    ErrorRecord,
    InformationalRecord,
    InformationRecord,
    ProgressRecord,
    PSEnum,
    PSObject,
)


def service_error() -> ErrorRecord:
    """An ErrorRecord shaped as Windows PowerShell 5.1 serializes `Get-Service nosuch`."""
    exception = PSObject(
        {"Message": "Cannot find any service with service name 'nosuch'."},
        ["Deserialized.Microsoft.PowerShell.Commands.ServiceCommandException",
         "Deserialized.System.Exception"],
    )
    return ErrorRecord(
        {
            "Exception": exception,
            "TargetObject": "nosuch",
            "FullyQualifiedErrorId":
                "NoServiceFoundForGivenName,Microsoft.PowerShell.Commands.GetServiceCommand",
            "ErrorCategory_Category": PSEnum(13, "ObjectNotFound"),
            "ErrorCategory_Activity": "Get-Service",
            "ErrorCategory_Reason": "ServiceCommandException",
            "ErrorCategory_TargetName": "nosuch",
            "ErrorCategory_TargetType": "String",
            "InvocationInfo_PositionMessage":
                "At line:1 char:1\n+ Get-Service nosuch\n+ ~~~~~~~~~~~~~~~~~~",
            "CommandInfo_Name": "Get-Service",
        },
        ["Deserialized.System.Management.Automation.ErrorRecord", "Deserialized.System.Object"],
        to_string="Cannot find any service with service name 'nosuch'.",
    )


def test_error_text_matches_powershell_normal_view() -> None:
    assert display.error_text(service_error()).splitlines() == [
        "Get-Service : Cannot find any service with service name 'nosuch'.",
        "At line:1 char:1",
        "+ Get-Service nosuch",
        "+ ~~~~~~~~~~~~~~~~~~",
        "    + CategoryInfo          : ObjectNotFound: (nosuch:String) [Get-Service], "
        "ServiceCommandException",
        "    + FullyQualifiedErrorId : NoServiceFoundForGivenName,"
        "Microsoft.PowerShell.Commands.GetServiceCommand",
    ]


def test_error_without_position_has_no_command_prefix_and_html_is_escaped() -> None:
    record = ErrorRecord(
        {"Exception": PSObject({"Message": "<b>boom</b> & more"}), "FullyQualifiedErrorId": "X",
         "ErrorCategory_Category": 0},
        ["System.Management.Automation.ErrorRecord"],
    )
    bundle = display.render_error(record)
    assert bundle["text/plain"].splitlines() == [
        "<b>boom</b> & more",
        "    + CategoryInfo          : NotSpecified: (:) [], ",
        "    + FullyQualifiedErrorId : X",
    ]
    assert "&lt;b&gt;boom&lt;/b&gt; &amp; more" in bundle["text/html"]
    assert 'class="hvmagic-stream hvmagic-error"' in bundle["text/html"]
    assert display.render_error("reason only")["text/plain"] == "reason only"


@pytest.mark.parametrize(
    ("stream", "record", "plain"),
    [
        ("verbose", InformationalRecord({"InformationalRecord_Message": "Loading"}),
         "VERBOSE: Loading"),
        ("warning", InformationalRecord({"InformationalRecord_Message": "disk low"}),
         "WARNING: disk low"),
        ("debug", InformationalRecord({"InformationalRecord_Message": "x=1"}), "DEBUG: x=1"),
        ("information", InformationRecord({"MessageData": "step 1", "Tags": []}), "step 1"),
        ("host", "Hello from Write-Host\n", "Hello from Write-Host"),
    ],
)
def test_stream_lines_have_console_prefix_and_css_class(stream: str, record: object,
                                                        plain: str) -> None:
    bundle = display.render_stream(stream, record)
    assert bundle["text/plain"] == plain
    assert f'class="hvmagic-stream hvmagic-{stream}"' in bundle["text/html"]
    assert plain.split(": ", 1)[-1] in bundle["text/html"]


def test_render_stream_rejects_unknown_stream() -> None:
    with pytest.raises(ValueError, match="not a text stream"):
        display.render_stream("output", "x")


def test_frame_limit_and_notice() -> None:
    frame = pd.DataFrame({"Status": ["Running"] * 25, "Name": [f"svc{i}" for i in range(25)]})
    bundle = display.render_frame(frame, 10, bound_to="svc")
    assert "svc9" in bundle["text/html"] and "svc10" not in bundle["text/html"]
    assert "showing 10 of 25 rows; all 25 are in `svc`" in bundle["text/plain"]
    assert 'class="hvmagic-notice"' in bundle["text/html"]
    full = display.render_frame(frame, 0)
    assert "svc24" in full["text/html"] and "showing" not in full["text/plain"]
    small = display.render_frame(frame.head(3), 10)
    assert "showing" not in small["text/html"]
    assert small["text/html"].count("<tr") == 4  # header + 3 rows
    assert 'class="dataframe hvmagic-frame"' in small["text/html"]


def test_text_output_detection_and_rendering() -> None:
    assert display.is_text_output(["a", "b", 3, None])
    assert not display.is_text_output(["a", PSObject({"Name": "x"})])
    bundle = display.render_text_output(["line 1", "line <2>", None], limit=2)
    assert bundle["text/plain"].splitlines()[:2] == ["line 1", "line <2>"]
    assert "showing 2 of 3 lines" in bundle["text/plain"]
    assert "line &lt;2&gt;" in bundle["text/html"]


class RecordingSink:
    def __init__(self) -> None:
        self.shown: list[dict[str, str]] = []
        self.cleared = 0

    def show(self, bundle: dict[str, str]) -> None:
        self.shown.append(bundle)

    def clear(self) -> None:
        self.cleared += 1


def test_progress_nested_activities_update_and_removal() -> None:
    sink = RecordingSink()
    view = display.ProgressView("bar", sink, min_interval=0)
    view.update(ProgressRecord("Copying", 1, "files", percent_complete=10))
    view.update(ProgressRecord("File a.txt", 2, "bytes", parent_activity_id=1, percent_complete=50,
                               current_operation="a.txt"))
    assert [r.activity for r in view.activities] == ["Copying", "File a.txt"]
    text = sink.shown[-1]["text/plain"].splitlines()
    assert text[0].startswith("Copying: files [###")
    assert text[0].endswith("10%")
    assert text[1].startswith("  File a.txt: bytes") and "50%" in text[1] and "a.txt" in text[1]
    markup = sink.shown[-1]["text/html"]
    assert '<progress value="50" max="100">' in markup and "margin-left:1.5em" in markup
    # completing the parent removes its child too; the view then empties the display
    view.update(ProgressRecord("Copying", 1, "done", record_type="Completed"))
    assert view.activities == []
    assert sink.cleared == 1
    view.finish()
    assert sink.cleared == 1  # already removed: finishing twice does not clear twice
    view.update(ProgressRecord("Again", 3, "x"))
    view.finish()
    view.finish()
    assert sink.cleared == 2


def test_progress_throttles_but_always_shows_new_activities() -> None:
    now = [0.0]
    sink = RecordingSink()
    view = display.ProgressView("text", sink, min_interval=1.0, clock=lambda: now[0])
    for pct in range(0, 100, 10):
        view.update(ProgressRecord("Loop", 1, "working", percent_complete=pct))
    assert len(sink.shown) == 1  # first one only: the rest came within the interval
    now[0] = 2.0
    view.update(ProgressRecord("Loop", 1, "working", percent_complete=95))
    assert "95%" in sink.shown[-1]["text/plain"]
    assert sink.shown[-1]["text/html"].startswith('<pre class="hvmagic-progress">')
    view.update(ProgressRecord("Inner", 2, "x", parent_activity_id=1))
    assert "Inner" in sink.shown[-1]["text/plain"]


def test_progress_style_none_shows_nothing() -> None:
    sink = RecordingSink()
    view = display.ProgressView("none", sink)
    view.update(ProgressRecord("Loop", 1, "working", percent_complete=5))
    view.finish()
    assert sink.shown == [] and sink.cleared == 0
    with pytest.raises(ValueError):
        display.ProgressView("fancy")


def test_terminal_sink_rewrites_one_line() -> None:
    out = io.StringIO()
    sink = display.TerminalLineSink(out)
    sink.show({"text/plain": "Loop: working [#.....] 10%"})
    sink.show({"text/plain": "Loop: ok"})
    sink.clear()
    assert out.getvalue().split("\r")[1:] == [
        "Loop: working [#.....] 10%", "Loop: ok" + " " * 18, " " * 8, "",
    ]


def test_live_renderer_routes_streams() -> None:
    published: list[dict[str, str]] = []
    sink = RecordingSink()
    live = display.LiveRenderer(show_streams=["warning", "host", "information"],
                                publish_bundle=published.append, progress_sink=sink)
    err = service_error()
    live.on_event("output", PSObject({"Name": "x"}))
    live.on_event("verbose", InformationalRecord({"InformationalRecord_Message": "hidden"}))
    live.on_event("warning", InformationalRecord({"InformationalRecord_Message": "careful"}))
    live.on_event("host", "hi\n")
    # PowerShell 5 also reports Write-Host as an information record tagged PSHOST: shown once;
    # a Write-Information record shows only through its host text, as in PowerShell's client
    # (tests/pwsh/test_exploration_display.py judges both)
    live.on_event("information", InformationRecord({"MessageData": "hi", "Tags": ["PSHOST"]}))
    live.on_event("information", InformationRecord({"MessageData": "info", "Tags": []}))
    live.on_event("error", err)
    live.on_event("progress", ProgressRecord("Work", 1, "s", percent_complete=1))
    live.show_missing_errors([err])  # the same object again at the end: not shown twice
    live.finish()
    assert [b["text/plain"] for b in published] == [
        "WARNING: careful", "hi", display.error_text(err),
    ]
    assert len(sink.shown) == 1 and sink.cleared == 1
    assert live.counts == {"output": 1, "verbose": 1, "warning": 1, "host": 1,
                           "information": 2, "error": 1, "progress": 1}


def test_missing_errors_counted_when_session_hands_out_copies() -> None:
    published: list[dict[str, str]] = []
    live = display.LiveRenderer(publish_bundle=published.append, progress_sink=RecordingSink())
    live.on_event("error", service_error())
    live.show_missing_errors([service_error(), service_error()])
    assert len(published) == 2


def test_records_table() -> None:
    bundle = display.render_records_table(
        [{"default": "*", "alias": "demo", "target": "demo"},
         {"default": "", "alias": "web01", "target": "WEB01"}]
    )
    assert bundle["text/plain"].splitlines() == [
        "   alias  target", "   -----  ------", "*  demo   demo", "   web01  WEB01",
    ]
    assert "<td>web01</td>" in bundle["text/html"]


def test_error_prefix_uses_invocation_name_like_powershell() -> None:
    base = dict(service_error().properties)
    typed_alias = ErrorRecord({**base, "InvocationInfo_InvocationName": "gsv"},
                              service_error().type_names)
    assert display.error_text(typed_alias).startswith("gsv : Cannot find any service")
    ampersand = ErrorRecord({**base, "InvocationInfo_InvocationName": "&",
                             "PSComputerName": "WEB01"}, service_error().type_names)
    lines = display.error_text(ampersand).splitlines()
    assert lines[0].startswith("Get-Service : ")
    assert lines[-1] == "    + PSComputerName        : WEB01"


def test_guest_text_cannot_inject_html_into_the_notebook() -> None:
    hostile = "<script>alert(1)</script>"
    frame = pd.DataFrame({"Name": [hostile]})
    assert hostile not in display.render_frame(frame, 5)["text/html"]
    assert "&lt;script&gt;" in display.render_frame(frame, 5)["text/html"]
    for stream in display.TEXT_STREAMS:
        assert hostile not in display.render_stream(stream, hostile)["text/html"]
    sink = RecordingSink()
    view = display.ProgressView("bar", sink, min_interval=0)
    view.update(ProgressRecord(hostile, 1, hostile, current_operation=hostile))
    assert hostile not in sink.shown[-1]["text/html"]


def test_format_cmdlet_output_is_recognised() -> None:
    start = PSObject({"shapeInfo": None},
                     ["Deserialized.Microsoft.PowerShell.Commands.Internal.Format.FormatStartData",
                      "Deserialized.Microsoft.PowerShell.Commands.Internal.Format.PacketInfoData"])
    entry = PSObject({"formatEntryInfo": None},
                     ["Deserialized.Microsoft.PowerShell.Commands.Internal.Format.FormatEntryData"])
    assert display.is_format_output([start, entry])
    assert not display.is_format_output([start, PSObject({"Name": "x"}, ["System.Object"])])
    assert not display.is_format_output([])
    bundle = display.render_notice(display.FORMAT_OUTPUT_NOTICE)
    assert "| Out-String" in bundle["text/plain"] and "hvmagic-notice" in bundle["text/html"]


def test_text_columns_are_left_aligned_like_powershell() -> None:
    frame = pd.DataFrame(
        {"Status": pd.Categorical(["Running"]), "Handles": pd.array([12], dtype="Int64"),
         "Name": pd.array(["vmicvss"], dtype="string"), "CPU": [1.5]}
    )
    first = display.render_frame(frame)["text/html"]
    # index is child 1: Status is 2, Handles 3 (numeric, right), Name 4, CPU 5 (numeric, right)
    table_id = first.split('id="')[1].split('"')[0]
    assert (
        f"#{table_id} td:nth-child(2), #{table_id} th:nth-child(2), "
        f"#{table_id} td:nth-child(4), #{table_id} th:nth-child(4) {{ text-align: left; }}"
    ) in first
    assert "nth-child(3)" not in first and "nth-child(5)" not in first
    assert display.render_frame(frame.copy())["text/html"] == first  # deterministic
    numbers_only = display.render_frame(pd.DataFrame({"A": [1]}))["text/html"]
    assert "<style>" not in numbers_only


def test_shown_table_blanks_missing_cells_and_drops_sub_second_noise_not_the_frame() -> None:
    import datetime as dt

    import numpy as np
    import pandas as pd

    frame = pd.DataFrame({
        "Name": [None, "x"], "Size": [1.5, np.nan], "Count": pd.array([1, None], dtype="Int64"),
        "When": pd.to_datetime(["2026-12-02 08:49:20.123456", None]),
        "Seen": [dt.datetime(2026, 1, 1, 1, 1, 1, 555), None],
        "Kind": pd.Categorical(["a", None]),
    })
    before = frame.copy()
    bundle = display.render_frame(frame)
    for noise in ("None", "NaN", "<NA>", "NaT", ".123456", ".000555"):
        assert noise not in bundle["text/plain"] and noise not in bundle["text/html"]
    assert "2026-12-02 08:49:20" in bundle["text/plain"]
    assert "2026-01-01 01:01:01" in bundle["text/html"]
    pd.testing.assert_frame_equal(frame, before)  # what -o binds is untouched


def test_write_host_pieces_join_into_one_coloured_line() -> None:
    from hvmagic.hosttext import HostText

    bundles: list[display.MimeBundle] = []
    live = display.LiveRenderer(publish_bundle=bundles.append, progress_style="none")
    live.on_event("host", HostText("a", foreground="Red", newline=False))
    live.on_event("host", HostText("b", background="DarkBlue"))
    live.on_event("host", HostText("open", newline=False))
    live.on_event("warning", "w")  # something else ends the open line first
    live.finish()
    assert [b["text/plain"] for b in bundles] == ["ab", "open", "WARNING: w"]
    assert f'color:{display.CONSOLE_CSS["Red"]}">a</span>' in bundles[0]["text/html"]
    assert f'background:{display.CONSOLE_CSS["DarkBlue"]}">b</span>' in bundles[0]["text/html"]
    import pickle

    again = pickle.loads(pickle.dumps(HostText("c", foreground="Green", newline=False)))
    assert (again, again.foreground, again.newline) == ("c", "Green", False)
