"""Errors as PowerShell's own client receives and prints them.

PowerShell's own OutOfProc client (:mod:`tests.pwsh.ownclient`) runs each script against its own
``pwsh -s`` and renders every error record it received with ``Out-String`` under
``$ErrorView = 'NormalView'``; hvmagic runs the same script and must hold the same category,
FQID, target, position and stack trace, and print the same text.
"""

from __future__ import annotations

from typing import Any

import pytest

from hvmagic.display import error_text
from hvmagic.errors import RemoteError
from tests.pwsh.ownclient import OWN_CLIENT_SCRIPTS, own_client  # noqa: F401

SCRIPTS = {
    "errors-nonterminating": (
        "Get-Item /hvm/nope\n"
        "Write-Error -Message 'bad data' -Category InvalidData -ErrorId MyId -TargetObject 42\n"
        "Write-Error 'plain'\n"
        "[int]::Parse('x')\n"
        "$long = 'a' * 200; Get-Item \"/hvm/nope$long\"\n"
        "$e = [System.Management.Automation.ErrorRecord]::new("
        "[InvalidOperationException]::new('custom'), 'CustomId', 'InvalidOperation', $null)\n"
        "$e.ErrorDetails = 'details text'; Write-Error -ErrorRecord $e\n"
        "function Get-Deep { Get-Item /hvm/deep }; Get-Deep\n"
        "'still running'"
    ),
    "errors-throw": "'before'; throw 'boom'",
    "errors-throw-object": "throw [pscustomobject]@{ Code = 7 }",
    "errors-action-preference": (
        "$ErrorActionPreference = 'Stop'\n"
        "try { function Get-Thing { Get-Item /hvm/nope }; Get-Thing; 'not reached' }\n"
        "finally { $ErrorActionPreference = 'Continue' }"
    ),
    "errors-parse": "$a = 1\n1 + + }",
}
OWN_CLIENT_SCRIPTS.update(SCRIPTS)

# The one frame PowerShell's own client does not have: hvmagic's wrapper, dot-sourcing the
# cell from line 1 (see hvmagic.session.WRAPPER_SCRIPT).
WRAPPER_FRAME = "\nat <ScriptBlock>, <No file>: line 1"


def _run(session: Any, script: str) -> tuple[Any, list[Any], list[dict[str, Any]]]:
    """hvmagic's result and records, and PowerShell's own view of the same records in the same
    session: ``$Error`` rendered by ``Out-String`` under NormalView, and their positions."""
    session.run("$Error.Clear()")
    try:
        result = session.run(script)
        records = list(result.errors)
    except RemoteError as exc:
        assert exc.record is not None
        result, records = exc.result, [*exc.result.errors, exc.record]
    # the newest len(records) entries: a failed run may also leave the exception that ended it
    server = session.run(
        f"$ErrorView = 'NormalView'; foreach ($e in @($Error)[{len(records) - 1}..0]) {{ "
        "if ($e -isnot [System.Management.Automation.ErrorRecord]) { $e = $e.ErrorRecord }; "
        "@{ text = ($e | Out-String -Width 1000).TrimEnd(); "
        "position = $e.InvocationInfo.PositionMessage } }; $ErrorView = 'ConciseView'"
    ).output
    return result, records, server


@pytest.mark.parametrize("name", list(SCRIPTS))
def test_error_records_hold_what_powershell_has(
    name: str, own_client: dict[str, Any], shared_pwsh_session: Any,  # noqa: F811
) -> None:
    _, streams = own_client[name]
    result, records, server = _run(shared_pwsh_session, SCRIPTS[name])
    assert result.state == ("Completed" if streams["failed"] is None else "Failed")
    own = streams["details"]
    assert len(records) == len(own) == len(server) > 0
    for record, expected, live in zip(records, own, server, strict=True):
        assert record.fully_qualified_error_id == expected["fqid"]
        assert record.category == expected["category"]
        assert record.category_info == expected["category_info"]
        assert str(record.target_object or "") == expected["target"]
        assert record.exception_message == expected["exception"]
        own_stack = expected["stack"]
        if own_stack:  # the wrapper is one frame further out
            assert record.script_stack_trace == own_stack + WRAPPER_FRAME
        # the position PowerShell computed, unless it is the wrapper's own line
        if not record.invoked_by_wrapper:
            assert (record.position_message or None) == (live["position"] or None)
        else:
            assert record.position_message is None and not expected["position"]
        # PowerShell's own names work on the record too
        assert str(record["CategoryInfo"]["Category"]) == expected["category"]
        assert str(record.CategoryInfo.Category) == expected["category"]
        assert (record.CategoryInfo.TargetName or "") == expected["target"]
        if expected["command"]:
            assert str(record.InvocationInfo.MyCommand) == expected["command"]


@pytest.mark.parametrize("name", list(SCRIPTS))
def test_error_text_is_what_powershell_prints(
    name: str, own_client: dict[str, Any], shared_pwsh_session: Any,  # noqa: F811
) -> None:
    _, streams = own_client[name]
    _, records, server = _run(shared_pwsh_session, SCRIPTS[name])
    for record, live, own_text in zip(records, server, streams["rendered"], strict=True):
        if record.invoked_by_wrapper:
            # PowerShell's server-side text would quote hvmagic's wrapper line; the user sees
            # what PowerShell's own client prints for a top-level Write-Error instead
            assert error_text(record) == own_text
        else:
            assert error_text(record) == live["text"]


def test_a_terminating_error_raises_remote_error_with_the_partial_result(
    own_client: dict[str, Any], shared_pwsh_session: Any,  # noqa: F811
) -> None:
    _, streams = own_client["errors-throw"]
    seen: list[Any] = []
    with pytest.raises(RemoteError) as raised:
        shared_pwsh_session.run(SCRIPTS["errors-throw"],
                                on_event=lambda stream, record: seen.append(record))
    exc = raised.value
    record = exc.record
    assert record is not None and record.fully_qualified_error_id == streams["failed"]
    assert str(exc) == record.message == streams["details"][-1]["exception"]
    # what ran before the throw is kept, as PowerShell's own client keeps it
    assert exc.result.state == "Failed" and exc.result.output == streams["output"] == ["before"]
    assert exc.result.terminating_error is record and exc.result.had_errors
    assert seen == ["before"]
    assert shared_pwsh_session.run("'usable'").output == ["usable"]
