"""PowerShell's own OutOfProc client, as a judge of what a client with a host delivers.

:func:`run_with_own_client` has a fresh ``pwsh`` open a runspace on a ``pwsh -s`` child through
PowerShell's own remoting client (``NewProcessConnectionInfo``, see ``shared/tools/README.md``)
with its console host, run ``script`` there and report what its host displayed (stdout lines)
and what landed on each of the ``PowerShell.Streams`` (as JSON).
"""

from __future__ import annotations

import base64
import json
import re
from typing import Any

import pytest

from tests.pwsh.conftest import run_pwsh

_MARK = "==HVMAGIC-JSON=="
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")

_DRIVER = r"""
$PSStyle.OutputRendering = 'PlainText'
$ci = [Activator]::CreateInstance(
    [psobject].Assembly.GetType('System.Management.Automation.Runspaces.NewProcessConnectionInfo'),
    [Reflection.BindingFlags]'NonPublic,Instance', $null, @([pscredential]$null), $null)
$rs = [runspacefactory]::CreateRunspace($Host, $ci); $rs.Open()
foreach ($encoded in @(SCRIPTS)) {
'MARK'
$ps = [powershell]::Create(); $ps.Runspace = $rs
$null = $ps.AddScript([Text.Encoding]::UTF8.GetString([Convert]::FromBase64String($encoded)))
$failed = $null
# output into a collection of our own: what came before a terminating error is kept
$collected = [System.Management.Automation.PSDataCollection[psobject]]::new()
try { $ps.Invoke([psobject[]]@(), $collected) }
catch { $failed = $_.Exception.InnerException.ErrorRecord }
$out = @($collected)
$streams = [ordered]@{
    output = @($out | ForEach-Object { "$_" })
    verbose = @($ps.Streams.Verbose | ForEach-Object Message)
    warning = @($ps.Streams.Warning | ForEach-Object Message)
    debug = @($ps.Streams.Debug | ForEach-Object Message)
    information = @($ps.Streams.Information | ForEach-Object { [ordered]@{
        message = "$($_.MessageData)"; tags = @($_.Tags); source = $_.Source
        fg = "$($_.MessageData.ForegroundColor)"; bg = "$($_.MessageData.BackgroundColor)"
        nonewline = [bool]$_.MessageData.NoNewLine
        ticks = $_.TimeGenerated.ToUniversalTime().Ticks } })
    progress = @($ps.Streams.Progress | ForEach-Object { [ordered]@{
        activity = $_.Activity; activity_id = $_.ActivityId
        status_description = $_.StatusDescription; current_operation = $_.CurrentOperation
        parent_activity_id = $_.ParentActivityId; percent_complete = $_.PercentComplete
        seconds_remaining = $_.SecondsRemaining; record_type = "$($_.RecordType)" } })
    error = @($ps.Streams.Error | ForEach-Object { [ordered]@{
        message = "$_"; fqid = $_.FullyQualifiedErrorId } })
    failed = if ($failed) { $failed.FullyQualifiedErrorId } else { $null }
    details = @(@($ps.Streams.Error) + @($failed) | Where-Object { $_ } | ForEach-Object {
        [ordered]@{ fqid = $_.FullyQualifiedErrorId; category = "$($_.CategoryInfo.Category)"
            category_info = $_.CategoryInfo.GetMessage(); target = "$($_.TargetObject)"
            position = $_.InvocationInfo.PositionMessage; stack = $_.ScriptStackTrace
            command = "$($_.InvocationInfo.MyCommand)"; exception = $_.Exception.Message } })
    rendered = @(@($ps.Streams.Error) + @($failed) | Where-Object { $_ } | ForEach-Object {
        $ErrorView = 'NormalView'; ($_ | Out-String -Width 1000).TrimEnd() })
}
[Console]::Out.Flush()
'MARK'
$streams | ConvertTo-Json -Depth 5 -Compress
}
$rs.Close()
"""


def run_with_own_client(pwsh: str, scripts: list[str]) -> list[tuple[list[str], dict[str, Any]]]:
    """For each script: (lines PowerShell's host displayed, what landed on each stream)."""
    encoded = ",".join(
        "'" + base64.b64encode(script.encode("utf-8")).decode("ascii") + "'" for script in scripts
    )
    driver = _DRIVER.replace("SCRIPTS", encoded).replace("MARK", _MARK)
    out = run_pwsh(pwsh, driver, timeout=300)
    parts = out.split(_MARK)[1:]
    answers = []
    for shown, data in zip(parts[0::2], parts[1::2], strict=True):
        lines = [_ANSI.sub("", line).rstrip("\r") for line in shown.splitlines()]
        answers.append(([line for line in lines if line.strip()], json.loads(data)))
    return answers


#: the scripts the conformance modules ask PowerShell's own client about, run in one process
#: (starting PowerShell twice more per module would cost more than the tests themselves)
OWN_CLIENT_SCRIPTS: dict[str, str] = {}


@pytest.fixture(scope="session")
def own_client(pwsh: str) -> dict[str, tuple[list[str], dict[str, Any]]]:
    """PowerShell's own client's answers for every script in :data:`OWN_CLIENT_SCRIPTS`."""
    names = list(OWN_CLIENT_SCRIPTS)
    answers = run_with_own_client(pwsh, [OWN_CLIENT_SCRIPTS[name] for name in names])
    return dict(zip(names, answers, strict=True))
