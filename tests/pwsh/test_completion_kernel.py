"""Tab completion and Shift-Tab help in a real kernel, answered by real PowerShell.

A real ``ipykernel`` gets ``%load_ext hvmagic`` and a session on ``pwsh -s``; the tests send the
kernel ``complete_request`` / ``inspect_request`` messages exactly as JupyterLab does and compare
what comes back with PowerShell's own ``TabExpansion2`` / ``Get-Command -Syntax`` answers for the
same text, asked in a separate ``pwsh`` in the same run.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from jupyter_client.manager import KernelManager

from hvmagic.completion import script_at_cursor, word_at

REPO = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.kernel, pytest.mark.timeout(180)]


class Kernel:
    def __init__(self, client: Any) -> None:
        self.client = client

    def run(self, code: str) -> str:
        out: list[str] = []

        def collect(msg: dict[str, Any]) -> None:
            if msg["msg_type"] == "stream":
                out.append(msg["content"]["text"])
            elif msg["msg_type"] in ("display_data", "execute_result"):
                out.append(msg["content"]["data"].get("text/plain", "") + "\n")
            elif msg["msg_type"] == "error":
                out.append("\n".join(msg["content"]["traceback"]))

        reply = self.client.execute_interactive(code, output_hook=collect, timeout=60)
        assert reply["content"]["status"] == "ok", "".join(out)
        return "".join(out)

    def complete(self, code: str, cursor: int | None = None) -> dict[str, Any]:
        reply = self.client.complete(code, len(code) if cursor is None else cursor, reply=True,
                                     timeout=120)
        content: dict[str, Any] = reply["content"]
        return content

    def inspect(self, code: str, cursor: int | None = None) -> dict[str, Any]:
        reply = self.client.inspect(code, len(code) if cursor is None else cursor, reply=True,
                                    timeout=120)
        content: dict[str, Any] = reply["content"]
        return content


@pytest.fixture(scope="module")
def kernel(pwsh: str) -> Iterator[Kernel]:
    km = KernelManager(kernel_name="python3")
    km.start_kernel(env={**os.environ, "PYTHONPATH": str(REPO), "HVMAGIC_PWSH": pwsh})
    client = km.client()
    client.start_channels()
    try:
        client.wait_for_ready(timeout=60)
        k = Kernel(client)
        k.run(
            "%load_ext hvmagic\n"
            "import os, hvmagic\n"
            "pwsh_session = hvmagic.connect('pwsh', via='process', "
            "executable=os.environ['HVMAGIC_PWSH'])\n"
            "%vmconnect pwshA --session pwsh_session\n"
        )
        k.run("%%vmps\n$hvTestVariable = 42\nfunction Get-HvTestThing { param($Alpha, $Beta) }")
        yield k
    finally:
        client.stop_channels()
        km.shutdown_kernel(now=True)


def _ps_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


SETUP = "$hvTestVariable = 42; function Get-HvTestThing { param($Alpha, $Beta) }"
TYPED = {
    "command": "Get-ChildI",
    "variable-from-earlier-cell": "$hvTestV",
    "parameter": "Get-HvTestThing -Al",
    "member": "$hvTestVariable.Comp",
    "guest-path": "Get-ChildItem /us",
    "line-parameter": "Get-ChildItem -Rec",
}


@pytest.fixture(scope="module")
def powershell_answers(ask_pwsh: Any) -> dict[str, tuple[int, list[str]]]:
    """PowerShell's own TabExpansion2 answers for every case, from one fresh pwsh."""
    cases = "; ".join(
        f"$c = TabExpansion2 -inputScript {_ps_literal(t)} -cursorColumn {len(t)}; "
        f"[pscustomobject]@{{ Case = {_ps_literal(k)}; Index = $c.ReplacementIndex; "
        "Texts = @($c.CompletionMatches.CompletionText) }"
        for k, t in TYPED.items()
    )
    found = ask_pwsh(f"{SETUP}; {cases}", as_json=True)
    return {item["Case"]: (int(item["Index"]), [str(x) for x in item["Texts"]])
            for item in found}


@pytest.mark.parametrize("case", list(TYPED)[:5])
def test_tab_in_a_cell_offers_what_powershell_offers(
    kernel: Kernel, powershell_answers: dict[str, tuple[int, list[str]]], case: str
) -> None:
    typed = TYPED[case]
    cell = "%%vmps\n" + typed
    reply = kernel.complete(cell)
    index, expected = powershell_answers[case]
    assert expected, f"PowerShell offers nothing for {typed!r}; the case proves nothing"
    assert reply["matches"] == expected
    # the replaced fragment is the one PowerShell names, in cell coordinates
    assert reply["cursor_start"] == len("%%vmps\n") + index
    assert reply["cursor_end"] == len(cell)


def test_tab_on_a_vmps_line_inside_a_python_cell(
    kernel: Kernel, powershell_answers: dict[str, tuple[int, list[str]]]
) -> None:
    cell = "x = 1\n%vmps --timeout 5 Get-ChildItem -Rec\ny = 2"
    cursor = cell.index("\ny = 2")
    reply = kernel.complete(cell, cursor)
    assert reply["matches"] == powershell_answers["line-parameter"][1]
    assert cell[reply["cursor_start"]:reply["cursor_end"]] == "-Rec"


def test_python_cells_still_complete_python(kernel: Kernel) -> None:
    reply = kernel.complete("import o")
    assert "os" in reply["matches"]


def test_session_aliases_complete_after_vmuse_and_session_option(kernel: Kernel) -> None:
    assert kernel.complete("%vmuse pw")["matches"] == ["pwshA"]
    assert kernel.complete("%%vmps -s pw")["matches"] == ["pwshA"]


def test_shift_tab_shows_the_guests_syntax(kernel: Kernel, ask_pwsh: Any) -> None:
    cell = "%%vmps\nGet-ChildItem -Path /tmp"
    reply = kernel.inspect(cell, cell.index("ChildItem"))
    assert reply["found"] is True
    text = reply["data"]["text/plain"]
    syntax = ask_pwsh("(Get-Command Get-ChildItem -Syntax | Out-String).Trim()").strip()
    assert syntax and syntax.replace("\r\n", "\n") in text.replace("\r\n", "\n")
    assert text.startswith("Get-ChildItem (Cmdlet, Microsoft.PowerShell.Management)")
    # an alias resolves to its command, as Get-Help does
    alias = kernel.inspect("%%vmps\ngci /tmp", len("%%vmps\ngc"))
    assert alias["data"]["text/plain"].startswith("Get-ChildItem (Cmdlet")
    # an unknown word is "not found", not an error
    assert kernel.inspect("%%vmps\nNo-SuchCommand", len("%%vmps\nNo-Su"))["found"] is False
    # Python keeps IPython's own inspection
    assert kernel.inspect("len", 2)["found"] is True


def test_questions_leave_no_trace_in_the_session(kernel: Kernel) -> None:
    before = kernel.run("%%vmps\n$Error.Count")
    kernel.complete("%%vmps\nGet-NoSuchThing -Foo $(throw 'x'")
    kernel.complete("%%vmps\n$hvTestV")
    kernel.inspect("%%vmps\nNo-SuchCommand", 8)
    after = kernel.run("%%vmps\n$Error.Count\n(Get-Variable hvmagic* -ErrorAction Ignore).Count")
    assert after.split() == [before.strip(), "0"]


def test_a_slow_guest_never_freezes_the_notebook(kernel: Kernel) -> None:
    # The user's runspace may override TabExpansion2 (PowerShell calls whatever is defined);
    # one that hangs stands in for a slow guest.
    kernel.run("%config VmMagics.completion_timeout = 1.5")
    kernel.run("%%vmps\nfunction TabExpansion2 { Start-Sleep -Seconds 300 }")
    try:
        started = time.monotonic()
        reply = kernel.complete("%%vmps\n$hvTestV")
        elapsed = time.monotonic() - started
        # (IPython's own matchers may still offer Python names; none came from the guest)
        assert "$hvTestVariable" not in reply["matches"]
        # generous for a loaded 2-core machine: without the limit this takes 300 s
        assert elapsed < 60, f"completion took {elapsed:.1f} s with a 1.5 s limit"
        # the stuck question was stopped: the session answers the next cell at once
        assert kernel.run("%%vmps\n$hvTestVariable").strip() == "42"
    finally:
        kernel.run("%%vmps\nRemove-Item function:TabExpansion2")
        kernel.run("%config VmMagics.completion_timeout = 2.0")


# ---------------------------------------------------------------------------------------------
# where the PowerShell is in a cell (pure functions)


def _split(line: str) -> tuple[str, str]:
    from hvmagic.magic_args import split_leading_options
    from hvmagic.magics import _VMPS_FLAG_OPTIONS, _VMPS_VALUE_OPTIONS

    return split_leading_options(line, _VMPS_VALUE_OPTIONS, _VMPS_FLAG_OPTIONS)


def test_script_at_cursor_finds_cell_bodies_lines_and_cell_mode() -> None:
    cell = "%%vmps web01 -o x\nGet-Service W"
    found = script_at_cursor(cell, len(cell), split_line=_split)
    assert found is not None
    assert (found.script, found.cursor, found.session_ref) == ("Get-Service W", 13, "web01")
    assert script_at_cursor(cell, 3, split_line=_split) is None  # on the magic line
    line = "a = 1\n%vmps -s db Get-Item C:\\\nb = 2"
    found = script_at_cursor(line, line.index("\nb"), split_line=_split)
    assert found is not None
    assert (found.script, found.session_ref) == ("Get-Item C:\\", "db")
    assert found.offset == line.index("Get-Item")
    assert script_at_cursor("import os", 9, split_line=_split) is None
    plain = script_at_cursor("Get-Proc", 8, cell_mode=True, split_line=_split)
    assert plain is not None and plain.script == "Get-Proc"
    assert script_at_cursor("#py\nimport o", 11, cell_mode=True, split_line=_split) is None


def test_word_at_keeps_powershell_command_names_whole() -> None:
    text = "Get-Service | Microsoft.PowerShell.Management\\Get-Item x"
    assert word_at(text, 5) == "Get-Service"
    assert word_at(text, text.index("Get-Item") + 2) == (
        "Microsoft.PowerShell.Management\\Get-Item"
    )
    assert word_at("   ", 1) is None


def test_session_aliases_complete_only_where_a_session_is_named() -> None:
    from hvmagic.completion import _alias_being_typed

    assert _alias_being_typed("%vmuse pw", _split) == "pw"
    assert _alias_being_typed("%vmclose ", _split) == ""
    assert _alias_being_typed("%%vmps web01 --session pw", _split) == "pw"
    assert _alias_being_typed("%vmps -o x -s pw", _split) == "pw"
    # -s inside the PowerShell of a %vmps line is PowerShell's
    assert _alias_being_typed("%vmps Get-Service -Name win -s pw", _split) is None
    assert _alias_being_typed("%vmps Get-Service -s pw", _split) is None


def test_a_session_whose_question_timed_out_is_left_alone_for_a_while(pwsh: str) -> None:
    import hvmagic
    from hvmagic import completion

    session = hvmagic.connect("slow", via="process", executable=pwsh, timeout=60)
    try:
        session.run("function TabExpansion2 { Start-Sleep -Seconds 300 }")
        started = time.monotonic()
        assert completion.complete(session, "$x", 2, timeout=1.0) is None
        first = time.monotonic() - started
        started = time.monotonic()
        assert completion.complete(session, "$x", 2, timeout=1.0) is None
        assert time.monotonic() - started < 0.1 < first  # the second Tab does not wait again
        assert not session.broken
        assert session.run("1 + 1").output == [2]
    finally:
        session.close()
