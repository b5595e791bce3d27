"""The wrapper every run goes through, judged by PowerShell dot-sourcing the same text itself.

A cell must behave as if the user had typed ``. ([scriptblock]::Create($text))`` in a console:
state persists between cells, automatic variables are what a dot-sourced block sees, and nothing
of the wrapper (its ``__hvmagic*`` variables, its own lines) shows through.
"""

from __future__ import annotations

from typing import Any

import pytest

from hvmagic.errors import RemoteError
from tests.pwsh.dotsource import dot_source_cells


def _run_cells(session: Any, cells: list[str]) -> list[Any]:
    """hvmagic's side of :func:`dot_source_cells`: each cell's output, or ``{"failed": FQID}``."""
    answers: list[Any] = []
    for cell in cells:
        try:
            answers.append(list(session.run(cell).output))
        except RemoteError as exc:
            record = exc.record
            answers.append({"failed": record.fully_qualified_error_id if record else None})
    return answers


# Each cell sets state the next cells read back, as a console keeps it.
STATE_CELLS = [
    "$answer = 41; function Get-Answer { $answer + 1 }; "
    "New-Module -Name hvmcoremod { function Get-ModValue { 'from-module' } } | Import-Module; "
    "Set-Location ([IO.Path]::GetTempPath()); "
    "$PSDefaultParameterValues['Get-Date:Year'] = 1999; "
    "$ErrorActionPreference = 'Stop'",
    "Get-Answer; Get-ModValue; @(Get-Module hvmcoremod).Count; "
    "$PWD.Path -eq (Get-Location).Path; $PWD.Path.TrimEnd('/') -eq "
    "[IO.Path]::GetTempPath().TrimEnd('/'); (Get-Date -Month 1 -Day 2).Year; "
    "\"$ErrorActionPreference\"",
    # $ErrorActionPreference = 'Stop' persisted: a non-terminating error now ends the cell
    "Get-Item /hvmagic/no/such/path; 'not reached'",
    "$ErrorActionPreference = 'Continue'; Get-Item /hvmagic/no/such/path; 'reached'",
    "$answer += 1; Get-Answer",
]


# Automatic variables a dot-sourced block sees; all as text so JSON compares them exactly.
AUTOMATIC = (
    "\"$($args.Count)\"; \"$($MyInvocation.InvocationName)\"; "
    "\"$($MyInvocation.MyCommand.CommandType)\"; \"$($MyInvocation.CommandOrigin)\"; "
    "\"$($MyInvocation.ScriptLineNumber)\"; $input.GetType().FullName; "
    "\"$(@($PSBoundParameters.Keys).Count)\"; \"[$PSScriptRoot]\"; \"[$PSCommandPath]\"; "
    "try { Get-Item /hvmagic/no/such/path -ErrorAction Stop } catch { $_.ScriptStackTrace }; "
    "function Show-Stack { try { throw 'x' } catch { $_.ScriptStackTrace } }; Show-Stack"
)

NOT_PARSING = "$a = 1\n1 + + }"
# PowerShell's own client: a pipeline whose script does not parse fails with the
# ParseException's record (positions in the user's text)
OWN_PARSE_ERROR = (
    "$ps = [powershell]::Create(); $null = $ps.AddScript(\"`$a = 1`n1 + + }\"); "
    "try { $ps.Invoke() } catch { $r = $_.Exception.InnerException.ErrorRecord; "
    "$r.FullyQualifiedErrorId; \"$($r.CategoryInfo.Category)\"; $r.Exception.Message; "
    "$r.InvocationInfo.PositionMessage }"
)


@pytest.fixture(scope="module")
def own(pwsh: str) -> dict[str, Any]:
    """PowerShell's answers for the whole module from one pwsh (starting one is slow)."""
    answers = dot_source_cells(pwsh, [AUTOMATIC, OWN_PARSE_ERROR, *STATE_CELLS])
    return {"automatic": answers[0], "parse": answers[1], "state": answers[2:]}


def test_state_persists_between_runs_as_in_a_console(
    own: dict[str, Any], pwsh_session: Any
) -> None:
    state = own["state"]
    seen = _run_cells(pwsh_session, STATE_CELLS)
    assert seen == state
    # what PowerShell answered is the console behaviour, not an accident of both failing
    assert state[1] == [42, "from-module", 1, True, True, 1999, "Stop"]
    assert state[2] == {"failed": "PathNotFound,Microsoft.PowerShell.Commands.GetItemCommand"}
    assert state[3] == ["reached"]



def test_automatic_variables_are_those_of_a_dot_sourced_block(
    own: dict[str, Any], shared_pwsh_session: Any
) -> None:
    seen = shared_pwsh_session.run(AUTOMATIC).output
    assert seen == own["automatic"]
    # the wrapper's frame reads "line 1" like the user's own dot-source on line 1
    assert seen[9] == "at <ScriptBlock>, <No file>: line 1\nat <ScriptBlock>, <No file>: line 1"


def test_no_wrapper_variable_is_ever_visible(shared_pwsh_session: Any) -> None:
    probe = "@(Get-Variable -Name '__hvmagic*' -Scope Global | ForEach-Object Name)"
    during = shared_pwsh_session.run(probe, {"value": 1}).output
    after_parse_error = None
    try:
        shared_pwsh_session.run("1 + + }", {"value": 1})
    except RemoteError:
        after_parse_error = shared_pwsh_session.run(probe).output
    after = shared_pwsh_session.run(probe).output
    # PowerShell itself lists what exists: nothing of the wrapper, not even its script block
    assert during == []
    assert after_parse_error == []
    assert after == []


def test_hostile_parameter_values_stay_data(shared_pwsh_session: Any) -> None:
    hostile = {
        "quote": "'; $global:hvmPwned = 1; '",
        "expand": "$(Set-Variable -Name hvmPwned -Value 2 -Scope Global)",
        "here": "\"@\n$global:hvmPwned = 3\n\"@",
        "block": "{ $global:hvmPwned = 4 }",
        "nul": "a\x00b",
        # names PowerShell's hashtable would also answer as members
        "Keys": "not the key list",
        "Count": "not a count",
        "Values": "v",
    }
    script = (
        "$quote; $expand; $here; $block; $nul; $Keys; $Count; $Values; "
        "[bool](Get-Variable -Name hvmPwned -Scope Global -ErrorAction Ignore); "
        "$quote.GetType().FullName"
    )
    result = shared_pwsh_session.run(script, hostile)
    assert result.errors == []
    assert result.output == [
        *hostile.values(), False, "System.String",
    ]


def test_a_script_that_does_not_parse_fails_as_powershell_reports_it(
    own: dict[str, Any], shared_pwsh_session: Any
) -> None:
    with pytest.raises(RemoteError) as raised:
        shared_pwsh_session.run(NOT_PARSING)
    record = raised.value.record
    assert record is not None
    seen = [record.fully_qualified_error_id, record.category, record.message,
            record.position_message]
    assert seen == own["parse"]
    assert shared_pwsh_session.run("'still usable'").output == ["still usable"]


def test_a_cell_that_does_not_parse_never_runs_the_previous_one(pwsh_session: Any) -> None:
    """The old wrapper kept the previous cell's script block in a variable and dot-sourced it
    again when the new text failed to parse: a typo re-ran the cell before it."""
    pwsh_session.run("$n = 0")
    assert pwsh_session.run("$n++; 'incremented'").output == ["incremented"]
    with pytest.raises(RemoteError) as info:
        pwsh_session.run("Get-Service | Where-Object { $_.Status")
    assert info.value.result.output == []
    assert pwsh_session.run("$n").output == [1]
