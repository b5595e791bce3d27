"""The six streams, Write-Host and Write-Progress, judged by PowerShell's own client.

PowerShell's own OutOfProc client with a host (:mod:`tests.pwsh.ownclient`) runs the same
script against its own ``pwsh -s``; what lands on its ``Streams`` and what its host shows is
what hvmagic must deliver — each line once, in its stream — and ``on_event`` must report the
records in the order the script produced them.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from hvmagic.clixml.values import InformationRecord, ProgressRecord
from hvmagic.display import stream_message
from tests.pwsh.ownclient import OWN_CLIENT_SCRIPTS, own_client  # noqa: F401

# Every record carries its place in the script's order (the number in its text).
STREAMS_SCRIPT = r"""Write-Verbose 'v1' -Verbose
Write-Warning 'w2'
Write-Debug 'd3' -Debug
Write-Host 'h4'
Write-Information 'i5' -Tags t1,t2
Write-Progress -Activity 'outer' -Id 1 -Status 's6' -PercentComplete 10
Write-Progress -Activity 'inner' -Id 2 -ParentId 1 -Status 's7' -CurrentOperation 'op7' `
    -SecondsRemaining 5
Write-Error 'e8'
'o9'
Write-Progress -Activity 'inner' -Id 2 -ParentId 1 -Status 's10' -Completed
$Host.UI.WriteVerboseLine('direct11')
Write-Host 'h12' -NoNewline
Write-Information ([pscustomobject]@{n=13}) -Tags obj
Write-Warning 'w14'; Write-Verbose 'v14' -Verbose; Write-Verbose 'v14' -Verbose
"""


OWN_CLIENT_SCRIPTS["streams"] = STREAMS_SCRIPT


@pytest.fixture(scope="module")
def own(
    own_client: dict[str, tuple[list[str], dict[str, Any]]],  # noqa: F811
) -> tuple[list[str], dict[str, Any]]:
    return own_client["streams"]


@pytest.fixture(scope="module")
def seen(shared_pwsh_session: Any) -> tuple[Any, list[tuple[str, Any]]]:
    events: list[tuple[str, Any]] = []
    result = shared_pwsh_session.run(
        STREAMS_SCRIPT, on_event=lambda stream, record: events.append((stream, record))
    )
    return result, events


def test_each_record_lands_once_in_the_stream_powershell_puts_it(
    own: tuple[list[str], dict[str, Any]], seen: tuple[Any, list[tuple[str, Any]]]
) -> None:
    _, streams = own
    result, _ = seen
    assert [str(v) for v in result.output] == streams["output"]
    # the host-call copies of Write-Verbose/Warning/Debug are not delivered a second time;
    # $Host.UI.WriteVerboseLine without a record lands on the verbose stream, as in PowerShell
    assert [r.message for r in result.verbose] == streams["verbose"]
    assert [r.message for r in result.warnings] == streams["warning"]
    assert [r.message for r in result.debug] == streams["debug"]
    assert [
        {"message": str(r.message_data), "tags": r.tags, "source": r.source}
        for r in result.information
    ] == [{k: i[k] for k in ("message", "tags", "source")} for i in streams["information"]]
    assert [
        {name: getattr(p, name) for name in streams["progress"][0]} for p in result.progress
    ] == streams["progress"]
    assert [{"message": r.message, "fqid": r.fully_qualified_error_id}
            for r in result.errors] == streams["error"]
    assert result.state == "Completed" and streams["failed"] is None


def test_host_text_is_what_powershells_host_shows(
    own: tuple[list[str], dict[str, Any]], seen: tuple[Any, list[tuple[str, Any]]]
) -> None:
    shown, streams = own
    result, events = seen
    # the Write-Host lines PowerShell's console host displayed, each once
    host_lines = [i["message"] for i in streams["information"] if "PSHOST" in i["tags"]]
    assert [line for line in shown if line in host_lines] == host_lines
    assert [stream_message("host", text) for text in result.host] == host_lines
    assert [stream_message("host", r) for s, r in events if s == "host"] == host_lines
    # the PSHOST records are still kept on the information stream, not announced twice
    assert [r.message for r in result.information if r.is_host_output] == host_lines


def _order(stream: str, record: Any) -> int:
    if isinstance(record, ProgressRecord):
        text = record.status_description or ""
    elif isinstance(record, InformationRecord) and not isinstance(record.message_data, str):
        text = str(record.message_data.get("n"))  # the object one
    else:
        text = stream_message(stream, record)
    match = re.search(r"\d+", text)
    assert match, f"no sequence number in {stream} {record!r}"
    return int(match.group())


def test_on_event_reports_records_in_the_order_powershell_produced_them(
    own: tuple[list[str], dict[str, Any]], seen: tuple[Any, list[tuple[str, Any]]]
) -> None:
    _, streams = own
    result, events = seen
    order = [_order(stream, record) for stream, record in events]
    assert order == sorted(order)
    assert set(order) == set(range(1, 15))
    # every record reached on_event exactly once, and nothing else did
    assert len(events) == sum(
        len(getattr(result, name)) for name in
        ("output", "errors", "warnings", "verbose", "debug", "progress", "host")
    ) + len([r for r in result.information if not r.is_host_output])
    # PowerShell's own timestamps agree with the order the records were delivered in
    stamps = [r.time_generated for s, r in events if s == "information"]
    assert stamps == sorted(stamps) and len(stamps) == 2
    assert len(streams["information"]) == len(result.information)
