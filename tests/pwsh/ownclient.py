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

from tests.pwsh.conftest import run_pwsh

_MARK = "==HVMAGIC-JSON=="
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")

_DRIVER = r"""
$PSStyle.OutputRendering = 'PlainText'
$ci = [Activator]::CreateInstance(
    [psobject].Assembly.GetType('System.Management.Automation.Runspaces.NewProcessConnectionInfo'),
    [Reflection.BindingFlags]'NonPublic,Instance', $null, @([pscredential]$null), $null)
$rs = [runspacefactory]::CreateRunspace($Host, $ci); $rs.Open()
$ps = [powershell]::Create(); $ps.Runspace = $rs
$null = $ps.AddScript([Text.Encoding]::UTF8.GetString([Convert]::FromBase64String('SCRIPT')))
$failed = $null
try { $out = @($ps.Invoke()) }
catch { $out = @(); $failed = $_.Exception.InnerException.ErrorRecord }
$streams = [ordered]@{
    output = @($out | ForEach-Object { "$_" })
    verbose = @($ps.Streams.Verbose | ForEach-Object Message)
    warning = @($ps.Streams.Warning | ForEach-Object Message)
    debug = @($ps.Streams.Debug | ForEach-Object Message)
    information = @($ps.Streams.Information | ForEach-Object { [ordered]@{
        message = "$($_.MessageData)"; tags = @($_.Tags); source = $_.Source
        ticks = $_.TimeGenerated.ToUniversalTime().Ticks } })
    progress = @($ps.Streams.Progress | ForEach-Object { [ordered]@{
        activity = $_.Activity; activity_id = $_.ActivityId
        status_description = $_.StatusDescription; current_operation = $_.CurrentOperation
        parent_activity_id = $_.ParentActivityId; percent_complete = $_.PercentComplete
        seconds_remaining = $_.SecondsRemaining; record_type = "$($_.RecordType)" } })
    error = @($ps.Streams.Error | ForEach-Object { [ordered]@{
        message = "$_"; fqid = $_.FullyQualifiedErrorId } })
    failed = if ($failed) { $failed.FullyQualifiedErrorId } else { $null }
}
$rs.Close()
[Console]::Out.Flush()
'MARK'
$streams | ConvertTo-Json -Depth 5 -Compress
"""


def run_with_own_client(pwsh: str, script: str) -> tuple[list[str], dict[str, Any]]:
    """(lines PowerShell's host displayed, what landed on each stream)."""
    encoded = base64.b64encode(script.encode("utf-8")).decode("ascii")
    driver = _DRIVER.replace("SCRIPT", encoded).replace("MARK", _MARK)
    out = run_pwsh(pwsh, driver, timeout=180)
    shown, _, data = out.partition(_MARK)
    lines = [_ANSI.sub("", line).rstrip("\r") for line in shown.splitlines()]
    return [line for line in lines if line.strip()], json.loads(data)
