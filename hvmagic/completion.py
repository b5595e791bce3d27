"""Tab completion and Shift-Tab help inside ``%%vmps`` cells, answered by the connected guest.

PowerShell users rely on Tab: command names, parameters, variables defined in earlier cells,
paths on the guest's file system, members after ``.``. Only the guest knows these, so completion
asks the guest's own engine (``TabExpansion2``, the function PowerShell's console calls on Tab)
in the session's runspace, which sees everything earlier cells defined. Shift-Tab on a command
shows its synopsis and syntax from the guest (``Get-Help`` / ``Get-Command -Syntax``).

Rules that keep the notebook responsive and the session clean:

* every question has a short timeout (:data:`COMPLETION_TIMEOUT`): a slow or busy guest yields
  no completions; a session that is running a cell is not asked. A question that timed out is
  stopped like any pipeline — a completer stuck in one long .NET call (an argument completer
  querying AD, say) holds Tab until it returns or the stop grace
  (``hvmagic.session.STOP_TIMEOUT``) runs out — and that session is then not asked again for
  :data:`BACKOFF` seconds, so one slow completer costs one wait, not one per keystroke;
* the question is a normal run with the user's text passed as a parameter, never pasted into
  script text; its two variables are removed again, and no ``$Error`` entry is left behind;
* only live sessions are asked: a recording session would otherwise record the question into
  the runbook's recording (and a replay could not answer it), so for those the live session
  underneath is asked, and a replay session gives no completions.

The IPython glue (:func:`install`) adds a context matcher for complete_request and wraps the
kernel's ``do_inspect`` for inspect_request; everything else here is plain functions that take
a session, usable without IPython.
"""

from __future__ import annotations

import contextlib
import inspect
import re
import time
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from hvmagic.errors import HvMagicError, PipelineTimeoutError
from hvmagic.recording import RecordingSession, ReplaySession
from hvmagic.session import Session
from hvmagic.sessionlike import SessionLike

#: seconds a completion or help question may take before the notebook gives up on it
COMPLETION_TIMEOUT = 2.0
#: seconds a session is left alone after one of its questions timed out
BACKOFF = 60.0
_slow_until: weakref.WeakKeyDictionary[SessionLike, float] = weakref.WeakKeyDictionary()

# The user's text and cursor reach TabExpansion2 as parameters. ``& { }`` keeps its locals out of
# the session's scope; the finally block removes the two parameter variables the wrapper set,
# and errors the completer raised are taken off ``$Error`` so a Tab press never shows up there.
_COMPLETE_SCRIPT = r"""
$hvmagicErrorCount = $Error.Count
try {
    & {
        $c = TabExpansion2 -inputScript $hvmagicTabInput -cursorColumn $hvmagicTabCursor
        [pscustomobject]@{ Index = $c.ReplacementIndex; Length = $c.ReplacementLength }
        foreach ($m in $c.CompletionMatches) {
            [pscustomobject]@{ Text = $m.CompletionText; Kind = [string]$m.ResultType
                               Tip = [string]$m.ToolTip }
        }
    }
} catch {
} finally {
    while ($Error.Count -gt $hvmagicErrorCount) { $Error.RemoveAt(0) }
    Remove-Variable -Name hvmagicTabInput, hvmagicTabCursor, hvmagicErrorCount -ErrorAction Ignore
}
"""

_HELP_SCRIPT = r"""
$hvmagicErrorCount = $Error.Count
try {
    & {
        $cmd = Get-Command -Name $hvmagicHelpName -ErrorAction Stop | Select-Object -First 1
        if ($cmd.CommandType -eq 'Alias') { $cmd = $cmd.ResolvedCommand }
        $help = Get-Help -Name $cmd.Name -ErrorAction SilentlyContinue
        [pscustomobject]@{
            Name = $cmd.Name
            CommandType = [string]$cmd.CommandType
            Source = [string]$cmd.Source
            Synopsis = if ($help) { ([string]$help.Synopsis).Trim() } else { '' }
            Syntax = (Get-Command -Name $cmd.Name -Syntax | Out-String).Trim()
        }
    }
} catch {
} finally {
    while ($Error.Count -gt $hvmagicErrorCount) { $Error.RemoveAt(0) }
    Remove-Variable -Name hvmagicHelpName, hvmagicErrorCount -ErrorAction Ignore
}
"""


@dataclass(frozen=True)
class GuestCompletion:
    """One completion the guest offered: the text, its kind (``Command``, ``ParameterName``,
    ``Variable``, ``ProviderItem``, ``Property``, ``Method`` …) and the guest's tool tip."""

    text: str
    kind: str
    tooltip: str = ""


@dataclass(frozen=True)
class CompletionReply:
    """What replaces ``script[start:end]`` (offsets into the script that was asked about)."""

    start: int
    end: int
    matches: tuple[GuestCompletion, ...]


@dataclass(frozen=True)
class CommandHelp:
    name: str
    command_type: str
    source: str
    synopsis: str
    syntax: str

    def text(self) -> str:
        head = f"{self.name} ({self.command_type}{', ' + self.source if self.source else ''})"
        parts = [head]
        # without installed help, Get-Help's synopsis is the syntax again: show it once
        synopsis = self.synopsis.strip()
        if synopsis and synopsis != self.name and synopsis not in self.syntax:
            parts.append(synopsis)
        if self.syntax:
            parts.append("SYNTAX\n" + self.syntax)
        return "\n\n".join(parts)


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def complete(
    session: SessionLike, script: str, cursor: int, timeout: float = COMPLETION_TIMEOUT
) -> CompletionReply | None:
    """Ask the guest what completes ``script`` at ``cursor``; ``None`` when it could not say
    in time (busy, slow, broken session) — completion is a convenience, never an error."""
    if not 0 <= cursor <= len(script):
        raise ValueError(f"cursor {cursor} is outside the script (length {len(script)})")
    output = _ask(
        session, _COMPLETE_SCRIPT,
        {"hvmagicTabInput": script, "hvmagicTabCursor": cursor}, timeout,
    )
    if not output:
        return None
    head, *rest = output
    try:
        start = int(head["Index"])
        end = start + int(head["Length"])
    except (KeyError, TypeError, ValueError):
        return None
    if not 0 <= start <= end <= len(script):
        return None  # a confused (or hostile) guest: offer nothing rather than corrupt the cell
    matches = tuple(
        GuestCompletion(_text(m.get("Text")), _text(m.get("Kind")), _text(m.get("Tip")))
        for m in rest
        if hasattr(m, "get") and m.get("Text")
    )
    return CompletionReply(start, end, matches)


def command_help(
    session: SessionLike, name: str, timeout: float = COMPLETION_TIMEOUT
) -> CommandHelp | None:
    """The guest's synopsis and syntax for the command ``name`` (aliases resolved), or
    ``None`` when there is no such command or the guest did not answer in time."""
    output = _ask(session, _HELP_SCRIPT, {"hvmagicHelpName": name}, timeout)
    if len(output) != 1 or not hasattr(output[0], "get"):
        return None
    found = output[0]
    return CommandHelp(
        _text(found.get("Name")), _text(found.get("CommandType")), _text(found.get("Source")),
        _text(found.get("Synopsis")), _text(found.get("Syntax")),
    )


def _ask(
    session: SessionLike, script: str, parameters: dict[str, Any], timeout: float
) -> list[Any]:
    with contextlib.suppress(TypeError):  # an object that cannot be weakly referenced
        if _slow_until.get(session, 0.0) > time.monotonic():
            return []
    try:
        return list(session.run(script, parameters, timeout=timeout).output)
    except PipelineTimeoutError:
        with contextlib.suppress(TypeError):
            _slow_until[session] = time.monotonic() + BACKOFF
        return []
    except HvMagicError:  # busy, broken: no answer this time
        return []


def live_session(session: object) -> Session | None:
    """The session a question may go to: the live session itself, the live session under a
    recording (so questions are not recorded), nothing for a replay."""
    if isinstance(session, RecordingSession):
        session = session._session  # same package: the recorder's own live session
    if isinstance(session, ReplaySession) or not isinstance(session, Session):
        return None
    if session.broken or session.closed:
        return None
    return session


# --------------------------------------------------------------------------------------------
# where the PowerShell is in an IPython cell

_VMPS_CELL = re.compile(r"\A[ \t]*%%vmps\b(?P<options>[^\n]*)\n")
_VMPS_LINE = re.compile(r"^(?P<indent>[ \t]*)%vmps(?=[ \t])(?P<rest>[^\n]*)$", re.MULTILINE)
_SESSION_OPTION = re.compile(r"(?:^|\s)(?:-s|--session)(?:\s+|=)(?P<alias>\S+)")
_TARGET = re.compile(r"^\s*(?P<target>[^-\s]\S*)")


@dataclass(frozen=True)
class ScriptAtCursor:
    """The PowerShell part of a cell around the cursor."""

    script: str
    cursor: int  # offset of the cursor inside ``script``
    offset: int  # where ``script`` starts inside the cell
    session_ref: str | None  # -s ALIAS / TARGET given on the magic line, else None (default)


def script_at_cursor(
    cell: str,
    cursor: int,
    *,
    cell_mode: bool = False,
    split_line: Callable[[str], tuple[str, str]] | None = None,
) -> ScriptAtCursor | None:
    """Find the PowerShell the cursor is in: the body of a ``%%vmps`` cell, the script part
    of a ``%vmps`` line, or the whole cell in PowerShell cell mode. ``None`` for Python."""
    cell_match = _VMPS_CELL.match(cell)
    if cell_match is not None:
        if cursor < cell_match.end():
            return None  # on the magic line itself: its options are IPython's business
        options = cell_match.group("options")
        return ScriptAtCursor(
            cell[cell_match.end():], cursor - cell_match.end(), cell_match.end(),
            _session_ref(options, allow_target=True),
        )
    for line_match in _VMPS_LINE.finditer(cell):
        if not line_match.start() <= cursor <= line_match.end():
            continue
        rest = line_match.group("rest")
        rest_start = line_match.start("rest")
        if split_line is None:
            return None
        options, script = split_line(rest)
        if not script:
            return None
        # the script is the line's stripped tail, so it ends where the stripped line ends
        start = rest_start + len(rest.rstrip()) - len(script)
        if cursor < start:
            return None
        return ScriptAtCursor(script, cursor - start, start, _session_ref(options))
    if cell_mode and not cell.lstrip().startswith(("%", "!", "#py")):
        return ScriptAtCursor(cell, cursor, 0, None)
    return None


def _session_ref(options: str, *, allow_target: bool = False) -> str | None:
    match = _SESSION_OPTION.search(options)
    if match is not None:
        return match.group("alias").strip("'\"")
    if allow_target:
        target = _TARGET.match(options)
        if target is not None:
            return target.group("target")
    return None


_COMMAND_WORD = re.compile(r"[\w][\w\-.:\\]*")


def word_at(text: str, cursor: int) -> str | None:
    """The command-like word the cursor touches (``Get-Service``, ``Microsoft.PowerShell.
    Management\\Get-Item``); Python's tokenizer would split these at ``-``."""
    for match in _COMMAND_WORD.finditer(text):
        if match.start() <= cursor <= match.end():
            return match.group(0).rstrip(".:")
        if match.start() > cursor:
            break
    return None


# --------------------------------------------------------------------------------------------
# IPython glue


def install(
    ipython: Any,
    *,
    sessions: Callable[[str | None], SessionLike],
    aliases: Callable[[], Iterable[str]],
    cell_mode: Callable[[], bool],
    split_line: Callable[[str], tuple[str, str]],
    timeout: Callable[[], float],
) -> Callable[[], None]:
    """Hook completion and inspection into ``ipython``; returns the function that unhooks them.

    ``sessions(ref)`` returns the session object for an alias (or the default for ``None``) or
    raises :class:`LookupError`; ``aliases()`` lists session aliases (completed after
    ``%vmuse``, ``%vmclose`` and ``-s``); ``cell_mode()`` tells whether plain cells are
    PowerShell; ``split_line`` splits a ``%vmps`` line into options and script.
    """
    from IPython.core.completer import SimpleCompletion, context_matcher

    def guest_for(ref: str | None) -> Session | None:
        try:
            session = sessions(ref)
        except LookupError:
            return None
        return live_session(session)

    @context_matcher()  # type: ignore[untyped-decorator,unused-ignore]
    def vmps_matcher(context: Any) -> dict[str, Any]:
        lines = context.full_text.split("\n")
        offset = sum(len(line) + 1 for line in lines[: context.cursor_line])
        offset += context.cursor_position
        alias_result = _alias_completions(context.line_with_cursor[: context.cursor_position],
                                          aliases, SimpleCompletion, split_line)
        if alias_result is not None:
            return alias_result
        found = script_at_cursor(
            context.full_text, offset, cell_mode=cell_mode(), split_line=split_line
        )
        if found is None:
            return {"completions": [], "suppress": False}
        guest = guest_for(found.session_ref)
        reply = complete(guest, found.script, found.cursor, timeout()) if guest else None
        if reply is None:
            # IPython only lets a matcher with completions suppress the others, so Python's
            # own matchers may still offer something here; nothing comes from the guest.
            return {"completions": [], "suppress": False}
        # IPython replaces the fragment that ends at the cursor; the guest may also replace
        # text after the cursor (completing in the middle of a word), which is left alone.
        fragment = found.script[reply.start:found.cursor] if reply.start <= found.cursor else ""
        return {
            "completions": [SimpleCompletion(m.text, type=_kind(m.kind)) for m in reply.matches],
            "suppress": True,
            "matched_fragment": fragment,
            "ordered": True,  # the guest's order (PowerShell sorts by relevance) is kept
        }

    ipython.Completer.custom_matchers.insert(0, vmps_matcher)

    kernel: Any = getattr(ipython, "kernel", None)
    original_inspect = getattr(kernel, "do_inspect", None) if kernel is not None else None

    async def do_inspect(code: str, cursor_pos: int | None, detail_level: int = 0,
                         omit_sections: Any = ()) -> Any:
        cursor = len(code) if cursor_pos is None else cursor_pos
        found = script_at_cursor(code, cursor, cell_mode=cell_mode(), split_line=split_line)
        if found is not None:
            word = word_at(found.script, found.cursor)
            guest = guest_for(found.session_ref) if word else None
            found_help = command_help(guest, word, timeout()) if guest and word else None
            if found_help is not None:
                return {"status": "ok", "found": True, "metadata": {},
                        "data": {"text/plain": found_help.text()}}
            return {"status": "ok", "found": False, "data": {}, "metadata": {}}
        assert original_inspect is not None
        reply = original_inspect(code, cursor_pos, detail_level, omit_sections)
        return await reply if inspect.isawaitable(reply) else reply

    if original_inspect is not None:
        kernel.do_inspect = do_inspect

    def uninstall() -> None:
        if vmps_matcher in ipython.Completer.custom_matchers:
            ipython.Completer.custom_matchers.remove(vmps_matcher)
        if original_inspect is not None and getattr(kernel, "do_inspect", None) is do_inspect:
            kernel.do_inspect = original_inspect

    return uninstall


_ALIAS_MAGIC = re.compile(r"^\s*%(?:vmuse|vmclose)\s+(\S*)$")
_ALIAS_CELL_OPTION = re.compile(r"^\s*%%vmps\b(?:.*\s)?(?:-s|--session)\s+(\S*)$")
_VMPS_LINE_HEAD = re.compile(r"^\s*%vmps\s+(.*?)(\S*)$")
_ENDS_WITH_SESSION_OPTION = re.compile(r"(?:^|\s)(?:-s|--session)\s+$")


def _alias_being_typed(
    before_cursor: str, split_line: Callable[[str], tuple[str, str]]
) -> str | None:
    """The partial session alias at the cursor: after ``%vmuse``/``%vmclose``, or as the value
    of ``-s``/``--session`` among a magic's options — never a ``-s`` inside the PowerShell of a
    ``%vmps`` line (``Get-Service -Name win -s…`` is PowerShell's)."""
    for pattern in (_ALIAS_MAGIC, _ALIAS_CELL_OPTION):
        match = pattern.match(before_cursor)
        if match is not None:
            return match.group(1)
    line = _VMPS_LINE_HEAD.match(before_cursor)
    if line is None or not _ENDS_WITH_SESSION_OPTION.search(line.group(1)):
        return None
    _, script = split_line(line.group(1) + "x")  # "x" stands for the alias being typed
    return line.group(2) if not script else None


def _alias_completions(
    before_cursor: str, aliases: Callable[[], Iterable[str]], make: Callable[..., Any],
    split_line: Callable[[str], tuple[str, str]],
) -> dict[str, Any] | None:
    typed = _alias_being_typed(before_cursor, split_line)
    if typed is None:
        return None
    names = sorted(a for a in aliases() if a.casefold().startswith(typed.casefold()))
    return {"completions": [make(name, type="session") for name in names],
            "suppress": True, "matched_fragment": typed}


def _kind(result_type: str) -> str:
    """PowerShell's CompletionResultType → the short type JupyterLab shows beside a match."""
    return {
        "Command": "function", "ParameterName": "param", "ParameterValue": "value",
        "Variable": "variable", "Property": "property", "Method": "method",
        "ProviderItem": "file", "ProviderContainer": "path", "Type": "class",
        "Keyword": "keyword", "Namespace": "module",
    }.get(result_type, result_type.lower() or "text")
