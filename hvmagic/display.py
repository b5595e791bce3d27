"""How PowerShell results look in Jupyter and in a terminal.

Everything here turns values into *mime bundles* (``{"text/plain": ..., "text/html": ...}``).
Notebooks pick the HTML, terminals the plain text, so one code path serves both and a saved
notebook keeps both representations. The magics decide *what* to show; this module decides
*how*:

* output objects → a DataFrame table with a row limit and a visible "showing N of M rows" notice;
  strings and other scalars → plain text, one per line, as PowerShell prints them;
* verbose / warning / debug / information / ``Write-Host`` records → one line each, styled per
  stream (CSS classes ``hvmagic-verbose``, ``hvmagic-warning``, ``hvmagic-debug``,
  ``hvmagic-information``, ``hvmagic-host``; plain-text prefixes ``VERBOSE: ``, ``WARNING: ``,
  ``DEBUG: `` as the PowerShell console writes them). Live, an information record shows as
  PowerShell's client shows it: through the host text the guest sends with it (Write-Host,
  ``Write-Information -InformationAction Continue``), never by itself;
* ``Write-Host`` keeps its ``-ForegroundColor``/``-BackgroundColor`` (inline CSS in the console
  palette) and ``-NoNewline`` pieces join the next host text on one line;
* shown tables print ``$null`` as a blank cell and DateTimes to the second, as PowerShell does;
  only the displayed copy is changed, never the frame ``-o`` binds;
* error records → PowerShell's own layout (message, ``At line:1 char:1`` block,
  ``+ CategoryInfo``, ``+ FullyQualifiedErrorId``), class ``hvmagic-error``;
* ``Write-Progress`` records → :class:`ProgressView`, a live display (nested activities indented)
  updated in place through display ids and removed when the pipeline finishes, as the
  PowerShell console removes its progress pane.
"""

from __future__ import annotations

import html
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from hvmagic.clixml.values import (
    ErrorRecord,
    InformationalRecord,
    InformationRecord,
    ProgressRecord,
    PSObject,
)
from hvmagic.views import double_text

MimeBundle = dict[str, str]

#: the streams that are shown as one styled line each (``error`` and ``progress`` have their own
#: renderers; ``output`` becomes the table)
TEXT_STREAMS = ("warning", "verbose", "debug", "information", "host")

# PowerShell's console writes these three streams with a fixed prefix (Windows PowerShell and
# pwsh alike); information and host text is written as-is.
_PREFIX = {"warning": "WARNING: ", "verbose": "VERBOSE: ", "debug": "DEBUG: "}

# Inline styles as well as classes: a notebook viewer that strips <style> blocks (GitHub,
# nbviewer, sanitised HTML exports) still shows the stream colours.
_STYLE = {
    "warning": "color:#8a5a00;background:#fff8e1",
    "verbose": "color:#00707a",
    "debug": "color:#6a3d9a",
    "information": "color:inherit",
    "host": "color:inherit",
    "error": "color:#b00020;background:#fdecea",
}
_LINE_STYLE = "margin:0;padding:1px 4px;white-space:pre-wrap;font-family:monospace"


# --------------------------------------------------------------------------------------------
# streams


def stream_message(stream: str, record: Any) -> str:
    """The text of one stream record, without any prefix."""
    if isinstance(record, (InformationalRecord, InformationRecord)):
        return record.message
    if isinstance(record, ErrorRecord):
        return record.message
    if isinstance(record, str):
        # host text arrives with the newline Write-Host appended; the display adds its own
        return record[:-1] if record.endswith("\n") else record
    return str(record)


def stream_text(stream: str, record: Any) -> str:
    """One stream record as the PowerShell console prints it (``WARNING: disk low``)."""
    return _PREFIX.get(stream, "") + stream_message(stream, record)


def render_stream(stream: str, record: Any) -> MimeBundle:
    """A mime bundle for one verbose/warning/debug/information/host record."""
    if stream not in TEXT_STREAMS:
        raise ValueError(f"not a text stream: {stream!r} (expected one of {TEXT_STREAMS})")
    if stream == "host":
        return render_host_line([record])
    message = stream_message(stream, record)
    prefix = _PREFIX.get(stream, "")
    prefix_html = (
        f'<span class="hvmagic-prefix">{html.escape(prefix)}</span>' if prefix else ""
    )
    markup = (
        f'<div class="hvmagic-stream hvmagic-{stream}" style="{_STYLE[stream]};{_LINE_STYLE}">'
        f"{prefix_html}{html.escape(message)}</div>"
    )
    return {"text/plain": prefix + message, "text/html": markup}


#: ConsoleColor → CSS, the Windows console's own palette (Windows Terminal "Campbell")
CONSOLE_CSS = {
    "Black": "#0c0c0c", "DarkBlue": "#0037da", "DarkGreen": "#13a10e", "DarkCyan": "#3a96dd",
    "DarkRed": "#c50f1f", "DarkMagenta": "#881798", "DarkYellow": "#c19c00", "Gray": "#cccccc",
    "DarkGray": "#767676", "Blue": "#3b78ff", "Green": "#16c60c", "Cyan": "#61d6d6",
    "Red": "#e74856", "Magenta": "#b4009e", "Yellow": "#f9f1a5", "White": "#f2f2f2",
}


def render_host_line(pieces: Sequence[Any]) -> MimeBundle:
    """One console line of ``Write-Host`` text: the pieces written with ``-NoNewline`` and the
    one that ended the line, each in its ``-ForegroundColor``/``-BackgroundColor``
    (:class:`hvmagic.hosttext.HostText`; a plain string has none)."""
    texts = [stream_message("host", piece) for piece in pieces]
    spans = []
    for piece, text in zip(pieces, texts, strict=True):
        styles = [f"{prop}:{CONSOLE_CSS[color]}" for prop, color in (
            ("color", getattr(piece, "foreground", None)),
            ("background", getattr(piece, "background", None)),
        ) if color in CONSOLE_CSS]
        escaped = html.escape(text)
        spans.append(f'<span class="hvmagic-color" style="{";".join(styles)}">{escaped}</span>'
                     if styles else escaped)
    markup = (
        f'<div class="hvmagic-stream hvmagic-host" style="{_STYLE["host"]};{_LINE_STYLE}">'
        f'{"".join(spans)}</div>'
    )
    return {"text/plain": "".join(texts), "text/html": markup}


def render_feedback(rows: int, seconds: float | None) -> MimeBundle:
    """The one-line summary after a cell (``%config VmMagics.feedback = True``)."""
    parts = [f"{rows} row" + ("" if rows == 1 else "s")]
    if seconds is not None:
        parts.append(f"{seconds:.2f} s")
    text = " · ".join(parts)
    return {"text/plain": text,
            "text/html": f'<div class="hvmagic-feedback"><small>{html.escape(text)}</small></div>'}


# --------------------------------------------------------------------------------------------
# errors


def _command_name(record: ErrorRecord) -> str | None:
    """The name PowerShell writes before the message (``Get-Service : Cannot find…``).

    Windows PowerShell's ErrorInstance view uses ``InvocationInfo.InvocationName`` (what was
    typed, so an alias shows as typed) unless that is empty, ``&`` or ``.``, and then the
    command's own name.
    """
    if record.invoked_by_wrapper:
        return None  # the "command" is the cell itself; PowerShell's client names none
    info = record.get("InvocationInfo")
    invocation = record.get("InvocationInfo_InvocationName")
    if invocation is None and isinstance(info, PSObject):
        invocation = info.get("InvocationName")
    if invocation and str(invocation) not in ("&", "."):
        return str(invocation)
    for key in ("CommandInfo_Name", "InvocationInfo_MyCommand"):
        value = record.get(key)
        if isinstance(value, PSObject):
            value = value.get("Name", value.to_string)
        if value:
            return str(value)
    if isinstance(info, PSObject):
        command = info.get("MyCommand")
        if isinstance(command, PSObject):
            command = command.get("Name", command.to_string)
        if command:
            return str(command)
    return None


def error_text(record: ErrorRecord | BaseException | str) -> str:
    """An error as PowerShell's console prints it (``$ErrorView = 'NormalView'``)::

        Get-Service : Cannot find any service with service name 'nosuch'.
        At line:1 char:1
        + Get-Service nosuch
        + ~~~~~~~~~~~~~~~~~~
            + CategoryInfo          : ObjectNotFound: (nosuch:String) [Get-Service], Servic…
            + FullyQualifiedErrorId : NoServiceFoundForGivenName,Microsoft.PowerShell.Comma…

    (lines shortened here; the real ones are complete). The ``Command :`` prefix appears when
    the record names its invocation or command, as in PowerShell's ErrorInstance view. The
    ``+ CategoryInfo`` block is indented by four spaces as Windows PowerShell 5.1 prints it, and
    flush left for a record from PowerShell 6+ (whose view dropped the indent).
    A parse error that names no command shows no position: its message already holds them.
    """
    if not isinstance(record, ErrorRecord):
        return str(record)
    message = record.message
    command = _command_name(record)
    position = record.position_message
    if position and record.category == "ParserError" and not _has_command(record):
        position = None  # as the view does: the parser's message already quotes each spot
    details = record.get("PSMessageDetails")
    lines = [f"{command} : {message}" if command else message]
    if details:
        lines[0] += f" : {details}"
    if position:
        lines.extend(position.rstrip("\n").splitlines())
    indent = "" if record.from_powershell_core else "    "
    category_info = record.category_info
    if category_info:
        lines.append(f"{indent}+ CategoryInfo          : {category_info}")
    fqid = record.fully_qualified_error_id
    if fqid:
        lines.append(f"{indent}+ FullyQualifiedErrorId : {fqid}")
    computer = record.get("PSComputerName")
    if computer:  # errors that crossed a remoting hop name the machine they came from
        lines.append(f"{indent}+ PSComputerName        : {computer}")
    return "\n".join(lines)


def _has_command(record: ErrorRecord) -> bool:
    info = record.get("InvocationInfo")
    command = record.get("InvocationInfo_MyCommand")
    if command is None and isinstance(info, PSObject):
        command = info.get("MyCommand")
    return bool(command)


def render_error(record: ErrorRecord | BaseException | str) -> MimeBundle:
    """A mime bundle for an error record (or a plain reason string / exception)."""
    text = error_text(record)
    markup = (
        f'<pre class="hvmagic-stream hvmagic-error" style="{_STYLE["error"]};{_LINE_STYLE}">'
        f"{html.escape(text)}</pre>"
    )
    return {"text/plain": text, "text/html": markup}


# --------------------------------------------------------------------------------------------
# output


_SCALARS = (str, int, float, bool, bytes)


def is_text_output(values: Sequence[Any]) -> bool:
    """True when PowerShell would print the output as lines rather than a table.

    Strings and other scalars (numbers, dates, booleans, ``None``) have no properties to tabulate;
    a pipeline of them is shown as text, one value per line.
    """
    import datetime as _dt
    import decimal
    import uuid

    scalar = (*_SCALARS, _dt.datetime, _dt.timedelta, decimal.Decimal, uuid.UUID)
    return all(v is None or (isinstance(v, scalar) and not isinstance(v, PSObject)) for v in values)


_FORMAT_TYPE_PREFIX = "Microsoft.PowerShell.Commands.Internal.Format."
FORMAT_OUTPUT_NOTICE = (
    "This pipeline ends in Format-Table/Format-List/Format-Wide, which emit PowerShell's "
    "formatting instructions rather than objects. Drop the Format-* command to get a "
    "DataFrame (choose columns with --columns or Select-Object), or end the pipeline with "
    "| Out-String to see PowerShell's own text layout."
)


def is_format_output(values: Sequence[Any]) -> bool:
    """True when every value is one of the ``Format-*`` cmdlets' internal layout objects."""
    return bool(values) and all(
        isinstance(v, PSObject) and (v.type_name or "").startswith(_FORMAT_TYPE_PREFIX)
        for v in values
    )


#: type names of Get-Help's answer for one topic (``HelpInfoShort``, a list of topics, is a table)
_HELP_TYPES = frozenset({"HelpInfo", "MamlCommandHelpInfo", "CmdletHelpInfo",
                         "ExtendedCmdletHelpInfo", "ProviderHelpInfo", "AliasHelpInfo"})


def is_help_output(values: Sequence[Any]) -> bool:
    """True when every value is Get-Help's help object for one topic (PowerShell prints it as
    text through its help views; a table of its parts would be noise)."""
    return bool(values) and all(
        isinstance(v, PSObject) and (v.type_name or "").split("#")[0] in _HELP_TYPES
        for v in values
    )


def render_help(values: Sequence[Any]) -> MimeBundle:
    """Get-Help's answer shown as its name and synopsis, with the way to PowerShell's full
    text: the help object is PowerShell's data for its help view, not a table."""
    lines = []
    for value in values:
        details = value.get("details")
        name = value.get("Name") or (
            details.get("name") if isinstance(details, Mapping) else None) or "?"
        synopsis = str(value.get("Synopsis") or "").strip()
        lines.append(f"{name}: {synopsis}" if synopsis else str(name))
    names = [str(v.get("Name") or "") for v in values]
    hint = (f"This is PowerShell's help object; `Get-Help {names[0]} | Out-String` prints the "
            "help text as PowerShell shows it (add -Full or -Examples for more), and Shift-Tab "
            "on a command in a %%vmps cell shows its synopsis and syntax.")
    text = "\n".join(lines)
    return {
        "text/plain": f"{text}\n[{hint}]",
        "text/html": f'<pre class="hvmagic-text">{html.escape(text)}</pre>'
                     f'<div class="hvmagic-notice"><em>{html.escape(hint)}</em></div>',
    }


def render_notice(text: str) -> MimeBundle:
    """A one-paragraph hint shown instead of (or beside) a result."""
    return {
        "text/plain": text,
        "text/html": f'<div class="hvmagic-notice"><em>{html.escape(text)}</em></div>',
    }


def render_text_output(values: Iterable[Any], limit: int | None = None,
                       ps_version: Any = None) -> MimeBundle:
    """Scalars as lines of text (``None`` prints as an empty line, like ``$null`` in a list);
    ``ps_version`` is the guest's (:func:`~hvmagic.views.double_text`)."""
    items = list(values)
    shown = items if not limit or limit <= 0 else items[:limit]
    text = "\n".join(_scalar_text(v, ps_version) for v in shown)
    notice = _rows_notice(len(shown), len(items), what="lines")
    plain = text + (f"\n[{notice}]" if notice else "")
    markup = f'<pre class="hvmagic-text">{html.escape(text)}</pre>'
    if notice:
        markup += f'<div class="hvmagic-notice">{html.escape(notice)}</div>'
    return {"text/plain": plain, "text/html": markup}


def _scalar_text(value: Any, ps_version: Any = None) -> str:
    """One output value as PowerShell prints it on its own line: ``$null`` empty, a Double with
    15 significant digits (``2``, not Python's ``2.0``), a DateTime without its fraction."""
    if value is None:
        return ""
    if isinstance(value, float):
        return double_text(value, ps_version)
    return str(_to_the_second(value))


def _to_the_second(value: Any) -> Any:
    """A DateTime as PowerShell prints it, without its fraction of a second (display only)."""
    import datetime as _dt

    if isinstance(value, _dt.datetime) and value.microsecond:
        return value.replace(microsecond=0)
    return value


def _rows_notice(shown: int, total: int, *, what: str = "rows", bound_to: str | None = None) -> str:
    if shown >= total:
        return ""
    where = f"; all {total} are in `{bound_to}`" if bound_to else ""
    return (
        f"showing {shown} of {total} {what}{where} "
        f"(change with %config VmMagics.displaylimit = N, 0 = all)"
    )


def render_frame(
    frame: Any, limit: int | None = None, *, bound_to: str | None = None
) -> MimeBundle:
    """A DataFrame as an HTML table limited to ``limit`` rows with a "showing N of M" notice.

    ``limit`` of ``None`` or ``0`` shows every row. ``bound_to`` names the Python variable that
    holds the complete frame, so the notice can say where the rest is.
    """
    total = len(frame)
    head = frame if not limit or limit <= 0 or total <= limit else frame.head(limit)
    notice = _rows_notice(len(head), total, bound_to=bound_to)
    table_id, style = _text_alignment(head)
    shown = _as_powershell_prints(head)
    table_html = style + shown.to_html(classes="hvmagic-frame", border=0, max_rows=None,
                                       max_cols=None, table_id=table_id, na_rep="")
    table_text = shown.to_string(max_rows=None, max_cols=None, na_rep="")
    if notice:
        table_html += f'<div class="hvmagic-notice"><em>{html.escape(notice)}</em></div>'
        table_text += f"\n[{notice}]"
    return {"text/plain": table_text, "text/html": table_html}


def _as_powershell_prints(frame: Any) -> Any:
    """A copy of ``frame`` for display only, its cells as PowerShell's tables print them:
    ``$null`` blank (``na_rep`` does that for None/NaN/NaT; the nullable dtypes' ``<NA>`` needs
    the column as objects) and dates to the second (PowerShell prints a DateTime without its
    fraction). The frame itself, bound by ``-o``, is never changed."""
    import datetime as _dt

    import pandas as pd
    from pandas.api.types import (
        is_datetime64_any_dtype,
        is_extension_array_dtype,
        is_float_dtype,
    )

    def second(value: Any) -> Any:
        if isinstance(value, pd.Timestamp):
            return value if value is pd.NaT else value.floor("s")
        if isinstance(value, _dt.datetime):
            return value.replace(microsecond=0)
        return value

    shown = None
    for position, dtype in enumerate(frame.dtypes):
        column = frame.iloc[:, position]
        if is_datetime64_any_dtype(dtype):
            if not (column.dt.floor("s") != column).any():
                continue
            replacement = column.dt.floor("s")  # NaT prints as na_rep
        elif is_float_dtype(dtype) and not is_extension_array_dtype(dtype):
            continue  # NaN prints as na_rep
        else:
            cells = column.astype(object)  # categories and nullable dtypes too
            missing = cells.isna()
            dated = cells.map(lambda v: isinstance(v, _dt.datetime) and bool(
                v.microsecond or getattr(v, "nanosecond", 0)))
            if not missing.any() and not dated.any():
                continue
            # "" rather than None: an object column prints None as "None" whatever na_rep says
            replacement = cells.map(second).where(~missing, "")
        if shown is None:
            shown = frame.copy()
        shown.isetitem(position, replacement)
    return frame if shown is None else shown


def _text_alignment(frame: Any) -> tuple[str | None, str]:
    """PowerShell's tables left-align text and right-align numbers; Jupyter right-aligns every
    cell. A scoped rule left-aligns the text columns (not those the view right-aligns). The
    table id is derived from the columns, not random, so the same result renders to the same
    HTML (a replayed notebook compares equal).
    """
    import hashlib

    from pandas.api.types import is_bool_dtype, is_numeric_dtype

    right = frame.attrs.get("hvmagic_align", {})  # text the view right-aligns (66.34 GB)
    text_columns = [
        position
        for position, (name, dtype) in enumerate(zip(frame.columns, frame.dtypes, strict=True),
                                                  start=2)  # nth-child: 1 is the index
        if (not is_numeric_dtype(dtype) or is_bool_dtype(dtype)) and right.get(name) != "right"
    ]
    if not text_columns:
        return None, ""
    key = repr((list(map(str, frame.columns)), text_columns)).encode("utf-8")
    table_id = "hvmagic-" + hashlib.sha1(key, usedforsecurity=False).hexdigest()[:12]
    cells = ", ".join(
        f"#{table_id} td:nth-child({n}), #{table_id} th:nth-child({n})" for n in text_columns
    )
    return table_id, f"<style>{cells} {{ text-align: left; }}</style>"


# --------------------------------------------------------------------------------------------
# progress


class DisplaySink(Protocol):
    """Where a live display goes: IPython's display machinery or a terminal line."""

    def show(self, bundle: MimeBundle) -> None: ...

    def clear(self) -> None: ...


class DisplayHandleSink:
    """Shows a bundle once with a display id, then updates it in place (``update_display``)."""

    def __init__(self, display_function: Callable[..., Any] | None = None) -> None:
        if display_function is None:
            from IPython.display import display

            display_function = display
        self._display: Callable[..., Any] = display_function
        self._handle: Any = None

    def show(self, bundle: MimeBundle) -> None:
        if self._handle is None:
            self._handle = self._display(bundle, raw=True, display_id=True)
        else:
            self._handle.update(bundle, raw=True)

    def clear(self) -> None:
        if self._handle is not None:
            # an empty bundle removes the bar from the notebook but keeps the output slot, so
            # later outputs do not jump around while the cell is still running
            self._handle.update({"text/plain": "", "text/html": ""}, raw=True)


class TerminalLineSink:
    """Rewrites one terminal line with ``\\r`` (terminal IPython has no updatable displays)."""

    def __init__(self, stream: Any = None) -> None:
        self._stream = stream if stream is not None else sys.stdout
        self._width = 0

    def show(self, bundle: MimeBundle) -> None:
        # a terminal line shows only the innermost activity; nesting needs several lines
        line = bundle.get("text/plain", "").splitlines()[-1:] or [""]
        text = line[0].strip()
        pad = max(0, self._width - len(text))
        self._stream.write("\r" + text + " " * pad)
        self._stream.flush()
        self._width = len(text)

    def clear(self) -> None:
        if self._width:
            self._stream.write("\r" + " " * self._width + "\r")
            self._stream.flush()
            self._width = 0


@dataclass
class _Activity:
    record: ProgressRecord
    order: int


def _bar(percent: int, width: int = 30) -> str:
    filled = round(width * max(0, min(100, percent)) / 100)
    return "[" + "#" * filled + "." * (width - filled) + "]"


#: how many activities a progress display keeps; lines shown; indentation levels; updates that
#: skip the throttle per interval (new activities and removals)
MAX_ACTIVITIES = 256
MAX_LINES = 20
MAX_INDENT = 10
FORCED_UPDATES = 3


class ProgressView:
    """Live ``Write-Progress`` display: one line per running activity, children indented.

    Feed it every :class:`ProgressRecord` with :meth:`update`; a ``Completed`` record removes
    that activity (and its children); :meth:`finish` removes the whole display. ``style`` is
    ``"bar"`` (HTML ``<progress>`` bars plus a text bar), ``"text"`` (text only) or ``"none"``.
    Updates are throttled to ``min_interval`` seconds, except the first one and removals, so a
    loop that writes thousands of records does not flood the frontend.

    A guest is not trusted to be reasonable: a new activity or a removal shows at once only
    :data:`FORCED_UPDATES` times per interval (a flood of them is throttled like any update),
    at most :data:`MAX_ACTIVITIES` activities are kept (the oldest go first), nesting is
    indented at most :data:`MAX_INDENT` levels and at most :data:`MAX_LINES` lines are shown.
    Rendering is linear in the activities kept, so the cost per record is bounded.
    """

    def __init__(
        self,
        style: str = "bar",
        sink: DisplaySink | None = None,
        *,
        min_interval: float = 0.1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if style not in ("bar", "text", "none"):
            raise ValueError(f"progress style must be bar, text or none, not {style!r}")
        self.style = style
        self._sink = sink
        self._activities: dict[int, _Activity] = {}
        self._counter = 0
        self._min_interval = min_interval
        self._clock = clock
        self._last_shown: float | None = None
        self._forced_in_interval = 0
        self._dirty = False
        self._cleared = False
        #: how many times the display was shown/updated (first show included); for diagnostics
        self.updates = 0

    @property
    def activities(self) -> list[ProgressRecord]:
        """The running activities in display order (parents before their children)."""
        return [a.record for a in self._ordered()]

    def update(self, record: ProgressRecord) -> None:
        if self.style == "none":
            return
        if record.completed:
            self._remove(record.activity_id)
            self._publish(force=True)
            return
        existing = self._activities.get(record.activity_id)
        order = existing.order if existing else self._next_order()
        self._activities[record.activity_id] = _Activity(record, order)
        if existing is None and len(self._activities) > MAX_ACTIVITIES:
            # the oldest still running go; a quarter at once, as dropping one at a time from
            # the front of a dict is quadratic under a flood
            kept = list(self._activities.items())[-(MAX_ACTIVITIES * 3 // 4):]
            self._activities = dict(kept)
        self._publish(force=existing is None)

    def finish(self) -> None:
        """The pipeline ended: remove whatever is still shown (PowerShell does the same)."""
        self._activities.clear()
        if self._sink is not None and self.updates and not self._cleared:
            self._sink.clear()
            self._cleared = True

    # internals ------------------------------------------------------------------------------
    def _next_order(self) -> int:
        self._counter += 1
        return self._counter

    def _remove(self, activity_id: int) -> None:
        if activity_id not in self._activities:
            return
        children: dict[int, list[int]] = {}
        for aid, act in self._activities.items():
            children.setdefault(act.record.parent_activity_id, []).append(aid)
        doomed, stack = set(), [activity_id]
        while stack:  # children of a finished activity go with it (one linear pass)
            aid = stack.pop()
            if aid not in doomed:
                doomed.add(aid)
                stack.extend(children.get(aid, ()))
        for aid in doomed:
            self._activities.pop(aid, None)

    def _ordered_with_depth(self) -> list[tuple[_Activity, int]]:
        """Parents before their children, each with its nesting depth; linear, no recursion
        (a guest may chain thousands of activities), and activities whose parents form a
        cycle are still shown."""
        activities = self._activities
        children: dict[int, list[_Activity]] = {}
        roots: list[_Activity] = []
        for act in sorted(activities.values(), key=lambda a: a.order):
            parent = act.record.parent_activity_id
            if parent in activities and parent != act.record.activity_id:
                children.setdefault(parent, []).append(act)
            else:
                roots.append(act)
        out: list[tuple[_Activity, int]] = []
        seen: set[int] = set()
        leftovers = iter(sorted(activities.values(), key=lambda a: a.order))
        pending = list(reversed(roots))
        while True:
            stack = [(act, 0) for act in pending]
            while stack:
                act, depth = stack.pop()
                if act.record.activity_id in seen:
                    continue
                seen.add(act.record.activity_id)
                out.append((act, depth))
                stack.extend((child, depth + 1)
                             for child in reversed(children.get(act.record.activity_id, [])))
            if len(seen) >= len(activities):
                return out
            pending = [next(a for a in leftovers if a.record.activity_id not in seen)]

    def _ordered(self) -> list[_Activity]:
        return [act for act, _ in self._ordered_with_depth()]

    def _publish(self, *, force: bool) -> None:
        if self._sink is None:
            self._sink = DisplayHandleSink()
        now = self._clock()
        within = self._last_shown is not None and now - self._last_shown < self._min_interval
        if within and force:
            # new activities and removals show at once, but a guest sending thousands of
            # them gets the same throttle as any update
            self._forced_in_interval += 1
            force = self._forced_in_interval <= FORCED_UPDATES
        if within and not force:
            self._dirty = True
            return
        if not within:
            self._forced_in_interval = 0
        self._last_shown = now
        self._dirty = False
        if not self._activities:
            if self.updates and not self._cleared:
                self._sink.clear()
                self._cleared = True
            return
        self._sink.show(self.render())
        self._cleared = False
        self.updates += 1

    def render(self) -> MimeBundle:
        """The bundle for the current activities."""
        text_lines: list[str] = []
        html_lines: list[str] = []
        ordered = self._ordered_with_depth()
        for act, nesting in ordered[:MAX_LINES]:
            rec = act.record
            depth = min(nesting, MAX_INDENT)
            status = rec.status_description or ""
            pct = rec.percent_complete
            line = "  " * depth + f"{rec.activity}: {status}"
            if pct >= 0:
                line += f" {_bar(pct)} {pct}%"
            if rec.seconds_remaining >= 0:
                line += f" ({rec.seconds_remaining}s remaining)"
            if rec.current_operation:
                line += f" {rec.current_operation}"
            text_lines.append(line)
            if self.style == "bar":
                bar = (
                    f'<progress value="{pct}" max="100"></progress> {pct}%'
                    if pct >= 0
                    else '<progress></progress>'
                )
                remaining = (
                    f' <span class="hvmagic-progress-remaining">'
                    f"{rec.seconds_remaining}s remaining</span>"
                    if rec.seconds_remaining >= 0
                    else ""
                )
                operation = (
                    f' <span class="hvmagic-progress-operation">'
                    f"{html.escape(rec.current_operation)}</span>"
                    if rec.current_operation
                    else ""
                )
                html_lines.append(
                    f'<div class="hvmagic-progress-activity" data-activity-id="{rec.activity_id}"'
                    f' style="margin-left:{1.5 * depth}em">'
                    f"<b>{html.escape(rec.activity)}</b> {html.escape(status)} "
                    f"{bar}{remaining}{operation}</div>"
                )
        hidden = len(ordered) - MAX_LINES
        if hidden > 0:
            more = f"… and {hidden} more activities"
            text_lines.append(more)
            html_lines.append(f'<div class="hvmagic-progress-more">{html.escape(more)}</div>')
        bundle = {"text/plain": "\n".join(text_lines)}
        if self.style == "bar":
            bundle["text/html"] = (
                '<div class="hvmagic-progress">' + "".join(html_lines) + "</div>"
            )
        else:
            bundle["text/html"] = (
                '<pre class="hvmagic-progress">' + html.escape(bundle["text/plain"]) + "</pre>"
            )
        return bundle


# --------------------------------------------------------------------------------------------
# a running pipeline


def publish(bundle: MimeBundle) -> None:
    """Show a bundle in the current frontend (rich in notebooks, ``text/plain`` in terminals)."""
    from IPython.display import display

    display(bundle, raw=True)


def in_kernel() -> bool:
    """True inside a Jupyter kernel (its displays can be updated in place), False in a terminal."""
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython is a dependency
        return False
    shell = get_ipython()
    return shell is not None and "ipykernel" in type(shell.display_pub).__module__


class LiveRenderer:
    """Shows a pipeline's stream records as they arrive; its :meth:`on_event` is the
    ``on_event`` callback of :meth:`hvmagic.session.Session.run`.

    Output appears in the order PowerShell produced it, as in a console. Output values are
    collected into *segments* of one kind — objects (a table) or plain values (lines of text) —
    and a segment is shown by ``show_output`` when something else must appear after it: a
    stream record or error that is shown, or output of the other kind (PowerShell's
    ``Out-Default`` also ends a table when the shape changes). Plain values collected for
    :data:`TEXT_FLUSH_SECONDS` are shown when the next one arrives, so a long stream of text
    appears as it goes (a value followed by a long silence waits for whatever comes next: the
    renderer runs only when the guest sends something). What is still
    pending at the end is left to the caller (:meth:`flush_output`, or one table of the whole
    result when nothing came between). Progress never ends a segment: it is transient.

    Error records are shown at once, in stream order, and remembered so that a record the
    session also reports in the final result or a terminating exception is not shown twice.
    """

    #: plain output values waiting longer than this are shown before the next one is collected
    TEXT_FLUSH_SECONDS = 0.5

    def __init__(
        self,
        *,
        show_streams: Iterable[str] = TEXT_STREAMS,
        progress_style: str = "bar",
        publish_bundle: Callable[[MimeBundle], None] = publish,
        progress_sink: DisplaySink | None = None,
        show_output: Callable[[list[Any]], None] | None = None,
    ) -> None:
        self.show_streams = frozenset(show_streams)
        self._publish_bundle = publish_bundle
        if progress_sink is None and progress_style != "none" and not in_kernel():
            progress_sink = TerminalLineSink()
        self.progress = ProgressView(progress_style, progress_sink)
        self._shown_errors: list[Any] = []
        #: how many records of each stream arrived (shown or not)
        self.counts: dict[str, int] = {}
        self._show_output = show_output
        self._pending: list[Any] = []
        self._pending_text = False
        self._pending_since = 0.0
        #: output segments already shown (0: the caller may show the whole result as one)
        self.segments_shown = 0
        #: Write-Host -NoNewline pieces of the line not yet ended
        self._open_host_line: list[Any] = []

    def _publish(self, bundle: MimeBundle) -> None:
        self.flush_output()  # what the pipeline wrote earlier appears first
        self._end_host_line()
        self._publish_bundle(bundle)

    def _end_host_line(self) -> None:
        """Show the pieces of an unfinished Write-Host line (something else comes next)."""
        if self._open_host_line:
            pieces, self._open_host_line = self._open_host_line, []
            self._publish_bundle(render_host_line(pieces))

    def _show_host_text(self, text: Any) -> None:
        # Write-Host -NoNewline 'a'; Write-Host 'b' is one line "ab", as in a console
        self.flush_output()
        self._open_host_line.append(text)
        if getattr(text, "newline", True):
            pieces, self._open_host_line = self._open_host_line, []
            self._publish_bundle(render_host_line(pieces))

    def _collect(self, value: Any) -> None:
        text = is_text_output([value])
        if self._pending and text != self._pending_text:
            self.flush_output()
        if not self._pending:
            self._pending_since = time.monotonic()
            self._pending_text = text
        self._pending.append(value)
        if text and time.monotonic() - self._pending_since >= self.TEXT_FLUSH_SECONDS:
            self.flush_output()

    @property
    def pending_output(self) -> list[Any]:
        """Output values collected but not shown yet."""
        return list(self._pending)

    def flush_output(self) -> None:
        """Show the pending segment now (a table, or lines of text)."""
        if not self._pending or self._show_output is None:
            return
        self._end_host_line()
        values, self._pending = self._pending, []
        self.segments_shown += 1
        self._show_output(values)

    def discard_output(self) -> None:
        """Forget the pending segment (the caller shows the whole result itself)."""
        self._pending = []

    def on_event(self, stream: str, record: Any) -> None:
        self.counts[stream] = self.counts.get(stream, 0) + 1
        if stream == "output":
            if self._show_output is not None:
                self._collect(record)
            return
        if stream == "error":
            self.show_error(record)
        elif stream == "progress":
            if isinstance(record, ProgressRecord):
                self.progress.update(record)
        elif stream in self.show_streams and stream in TEXT_STREAMS:
            if stream == "information":
                # PowerShell's client shows an information record only through its host:
                # Write-Host (tagged PSHOST) and Write-Information -InformationAction Continue
                # also arrive as host text, which is shown; a record without it (Write-Information
                # under the default SilentlyContinue) is not shown by PowerShell either. The
                # records stay in Result.information.
                return
            if stream == "host":
                self._show_host_text(record)
                return
            self._publish(render_stream(stream, record))

    def already_shown(self, record: Any) -> bool:
        # identity, not equality: a loop that writes the same error three times shows it thrice
        return any(record is seen for seen in self._shown_errors)

    def show_error(self, record: Any) -> None:
        if self.already_shown(record):
            return
        self._shown_errors.append(record)
        self._publish(render_error(record))

    def show_missing_errors(self, errors: Sequence[Any]) -> None:
        """Show the errors of a finished run that did not arrive through :meth:`on_event`."""
        missing = [e for e in errors if not self.already_shown(e)]
        if self._shown_errors and len(missing) == len(errors):
            # the session handed out copies rather than the live objects: count, don't compare
            missing = list(errors[len(self._shown_errors):])
        for record in missing:
            self.show_error(record)

    def finish(self) -> None:
        self.progress.finish()
        self._end_host_line()


def render_records_table(rows: Sequence[Mapping[str, Any]]) -> MimeBundle:
    """A small table of plain dicts (``%vmsessions``), without pandas."""
    if not rows:
        return {"text/plain": "", "text/html": ""}
    headers = list(rows[0])
    cells = [[str(row.get(h, "")) for h in headers] for row in rows]
    # the "default" column holds only the '*' marker and has no visible header
    shown_headers = ["" if h == "default" else h for h in headers]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(shown_headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(shown_headers, widths, strict=True)).rstrip()]
    lines.append("  ".join(("-" * w if h != "default" else " " * w)
                           for h, w in zip(headers, widths, strict=True)).rstrip())
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
              for row in cells]
    head = "".join(f"<th>{html.escape(h)}</th>" for h in shown_headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in cells
    )
    markup = (
        f'<table class="hvmagic-sessions"><thead><tr>{head}</tr></thead>'
        f"<tbody>{body}</tbody></table>"
    )
    return {"text/plain": "\n".join(lines), "text/html": markup}
