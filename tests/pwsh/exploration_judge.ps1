# PowerShell's own answer for the exploration cells (tests/pwsh/test_exploration.py).
#
# Runs every cell, in order, in ONE runspace of this plain pwsh, the way a PowerShell client runs
# a script (PowerShell.AddScript, global scope: variables and functions stay for the next cell),
# after the same setup text hvmagic's demo session runs (the HvmagicDemo module imported). It
# writes, per cell, what PowerShell produced, in the shapes test_exploration.py builds from
# hvmagic's decoded values:
#
# * output: each object after a round trip through PowerShell's own serializer (PSSerializer,
#   remoting's default depth), so what is compared is what any remote client receives;
# * error/warning/verbose/debug/information/progress: the records of PowerShell.Streams;
# * host: the lines the console host displayed for the cell (Write-Host, What if: ...), found
#   between the markers this script prints around each cell;
# * failed: the terminating error, if any.
#
# The cells run in an inner runspace, so nothing this script defines is visible to them.

param(
    # a JSON file: { "setup": "...", "cells": ["...", ...], "out": "path of the answer" }
    [Parameter(Mandatory = $true)] [string] $RequestPath
)

$ErrorActionPreference = 'Stop'
$PSStyle.OutputRendering = 'PlainText'
$request = [System.IO.File]::ReadAllText($RequestPath) | ConvertFrom-Json
$epoch = [datetime]::new(1970, 1, 1, 0, 0, 0, [System.DateTimeKind]::Utc)
$integers = [type[]] @([byte], [sbyte], [int16], [uint16], [int], [uint32], [long], [uint64])

function ConvertTo-Shape([psobject] $Value, [int] $Depth = 0) {
    # [psobject], not [object]: binding to [object] would unwrap a deserialized enum to its number
    if ($null -eq $Value) { return @{ k = 'null' } }
    if ($Depth -gt 8) { return @{ k = 'deep' } }
    # $Value.PSObject, never [psobject]::AsPSObject($Value): a method call is passed the base
    # object, and a deserialized enum's type names live on its wrapper
    $object = $Value
    $base = $Value.PSObject.BaseObject
    $names = @($Value.PSObject.TypeNames)
    if ($names -contains 'Deserialized.System.Enum') {
        return [ordered]@{ k = 'enum'; type = $names[0] -replace '^(Deserialized\.)+', ''
            v = [long] $base; label = $object.ToString() }
    }
    $shape = if ($base -is [bool]) { [ordered]@{ k = 'bool'; v = $base } }
    elseif ($integers -contains $base.GetType()) { [ordered]@{ k = 'int'; v = $base } }
    elseif ($base -is [double] -or $base -is [single]) {
        if ([double]::IsNaN($base) -or [double]::IsInfinity($base)) { [ordered]@{ k = 'float'; v = "$base" } }
        else { [ordered]@{ k = 'float'; v = [double] $base } }
    }
    elseif ($base -is [decimal]) { [ordered]@{ k = 'decimal'; v = $base.ToString([cultureinfo]::InvariantCulture) } }
    elseif ($base -is [string]) { [ordered]@{ k = 'str'; v = $base } }
    elseif ($base -is [char]) { [ordered]@{ k = 'char'; v = [string] $base } }
    elseif ($base -is [datetime]) {
        $utc = if ($base.Kind -eq 'Unspecified') { [datetime]::SpecifyKind($base, 'Utc') } else { $base.ToUniversalTime() }
        [ordered]@{ k = 'datetime'; v = ($utc - $epoch).Ticks }
    }
    elseif ($base -is [timespan]) { [ordered]@{ k = 'timespan'; v = $base.Ticks } }
    elseif ($base -is [guid]) { [ordered]@{ k = 'guid'; v = $base.ToString() } }
    elseif ($base -is [version]) { [ordered]@{ k = 'version'; v = $base.ToString() } }
    elseif ($base -is [uri]) { [ordered]@{ k = 'uri'; v = $base.OriginalString } }
    elseif ($base -is [byte[]]) { [ordered]@{ k = 'bytes'; v = [Convert]::ToBase64String($base) } }
    elseif ($base -is [scriptblock]) { [ordered]@{ k = 'scriptblock'; v = $base.ToString() } }
    elseif ($base -is [xml]) { [ordered]@{ k = 'xml'; v = $base.OuterXml } }
    elseif ($base -is [securestring]) { [ordered]@{ k = 'securestring' } }
    elseif ($base -is [System.Collections.IDictionary]) {
        [ordered]@{ k = 'dict'; items = @(foreach ($key in $base.Keys) {
            , @((ConvertTo-Shape $key ($Depth + 1)), (ConvertTo-Shape $base[$key] ($Depth + 1))) }) }
    }
    elseif ($base -is [System.Collections.IEnumerable]) {
        [ordered]@{ k = 'list'; items = @(foreach ($item in $base) { ConvertTo-Shape $item ($Depth + 1) }) }
    }
    elseif ($base -is [System.Management.Automation.PSCustomObject] -or $base -isnot [System.ValueType]) {
        # a deserialized object, or one PowerShell's deserializer made live again (a
        # PSCredential): hvmagic keeps either as an object with properties
        return [ordered]@{
            k = 'obj'
            types = @($names | ForEach-Object { $_ -replace '^(Deserialized\.)+', '' })
            str = $object.ToString()
            props = @(foreach ($p in $object.PSObject.Properties) { , @($p.Name, (ConvertTo-Shape $p.Value ($Depth + 1))) })
        }
    }
    else { [ordered]@{ k = 'other'; type = $base.GetType().FullName; v = "$base" } }  # a struct
    # a primitive or collection that carries members of its own (a date's DisplayHint ...)
    $notes = @(foreach ($p in $object.PSObject.Properties) {
        if ($p.MemberType -eq 'NoteProperty') { , @($p.Name, (ConvertTo-Shape $p.Value ($Depth + 1))) } })
    if ($notes) { $shape['notes'] = $notes }
    $shape
}

# PowerShell's own client turns a record it received back into an ErrorRecord with this method;
# its CategoryInfo text can differ from the server's (a reason is shortened once it was sent)
$fromRemoting = [System.Management.Automation.ErrorRecord].GetMethod('FromPSObjectForRemoting',
    [System.Reflection.BindingFlags] 'NonPublic, Static')

function ConvertTo-ErrorShape([System.Management.Automation.ErrorRecord] $Record) {
    $sent = [System.Management.Automation.PSSerializer]::Deserialize(
        [System.Management.Automation.PSSerializer]::Serialize($Record))
    $Record = $fromRemoting.Invoke($null, @(, [psobject] $sent))
    [ordered]@{
        fqid = $Record.FullyQualifiedErrorId
        message = $Record.ToString()
        category_info = $Record.CategoryInfo.GetMessage()
    }
}

function Get-ErrorRecord([System.Exception] $Exception) {
    # Invoke's MethodInvocationException wraps what the script threw
    $first = if ($Exception -is [System.Management.Automation.MethodInvocationException]) { $Exception.InnerException } else { $Exception }
    for ($e = $first; $null -ne $e; $e = $e.InnerException) {
        # as PowerShell reports it: the record with the exception itself, not the placeholder
        # (ParentContainsErrorRecordException) an exception's own ErrorRecord holds
        if ($e -is [System.Management.Automation.IContainsErrorRecord]) {
            return [System.Management.Automation.ErrorRecord]::new($e.ErrorRecord, $e)
        }
    }
    [System.Management.Automation.ErrorRecord]::new($Exception, 'JudgeFailure', 'NotSpecified', $null)
}

function Invoke-Cell([runspace] $Runspace, [string] $Text) {
    $ps = [powershell]::Create()
    $ps.Runspace = $Runspace
    $null = $ps.AddScript($Text)
    $collected = [System.Management.Automation.PSDataCollection[psobject]]::new()
    $failed = $null
    try { $ps.Invoke([psobject[]] @(), $collected) } catch { $failed = Get-ErrorRecord $_.Exception }
    # through the cmdlets, not [PSSerializer]::Serialize($item): a .NET method is passed the base
    # object, without the members (a line's PSPath ...) that remoting sends; the list is typed
    # [psobject] for the same reason, and keeps a $null (foreach over $null runs no iteration)
    $serialized = [System.Collections.Generic.List[psobject]]::new()
    foreach ($item in $collected) {
        if ($null -eq $item) { $serialized.Add($null); continue }
        $serialized.Add((ConvertFrom-CliXml -InputObject (ConvertTo-CliXml -InputObject $item -Depth 1)))
    }
    [ordered]@{
        output = @(foreach ($item in $serialized) { ConvertTo-Shape $item })
        error = @(foreach ($record in $ps.Streams.Error) { ConvertTo-ErrorShape $record })
        warning = @($ps.Streams.Warning | ForEach-Object Message)
        verbose = @($ps.Streams.Verbose | ForEach-Object Message)
        debug = @($ps.Streams.Debug | ForEach-Object Message)
        information = @(foreach ($record in $ps.Streams.Information) {
            [ordered]@{ message = "$($record.MessageData)"; tags = @($record.Tags) } })
        progress = @(foreach ($record in $ps.Streams.Progress) {
            [ordered]@{ activity = $record.Activity; activity_id = $record.ActivityId
                parent_activity_id = $record.ParentActivityId; status = $record.StatusDescription
                current_operation = $record.CurrentOperation; percent = $record.PercentComplete
                seconds_remaining = $record.SecondsRemaining; record_type = "$($record.RecordType)" } })
        failed = $(if ($failed) { ConvertTo-ErrorShape $failed } else { $null })
    }
    $ps.Dispose()
}

$runspace = [runspacefactory]::CreateRunspace($Host)
$runspace.Open()
$setup = Invoke-Cell $runspace $request.setup
if ($setup.failed -or $setup.error) { throw "the demo module did not load: $($setup | ConvertTo-Json -Depth 5)" }

$answers = [System.Collections.Generic.List[object]]::new()
$index = 0
foreach ($cell in $request.cells) {
    [Console]::Out.WriteLine("==HVMAGIC-CELL $index==")
    $answers.Add((Invoke-Cell $runspace $cell))
    [Console]::Out.WriteLine("==HVMAGIC-END $index==")
    [Console]::Out.Flush()
    $index += 1
}
$runspace.Close()
[System.IO.File]::WriteAllText($request.out, (ConvertTo-Json -InputObject $answers.ToArray() -Depth 40 -Compress))
