"""The exploration: ordinary cells a Hyper-V admin types at a Windows guest, in order, as data.

Issues 12 and 13 tried ~156 such cells against the old Python simulator, which refused 26 and
answered about a dozen wrongly. They run here against the demo guest (real PowerShell with
simulated Windows data) in ONE session, in this order: later cells use variables, functions and
state (a stopped service, a written file) of earlier ones. ``tests/pwsh/test_exploration.py``
compares every cell's outcome with PowerShell's own answer; ``bench/exploration_notebook.py``
runs the same cells in a real Jupyter kernel to look at what the notebook shows.

A cell may say why part of its answer cannot be compared (``volatile``: the value depends on
the moment or the process, so only its shape is compared; ``unordered``: PowerShell's
``Hashtable`` enumerates in a per-process order) and which of the issues' named failures it
covers (``issue``).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Cell:
    script: str
    #: why the values are not comparable (the time, a process id): the shapes still are
    volatile: str | None = None
    #: the order of the output or of its objects' properties is a Hashtable's, which differs
    #: between processes (compared as sets; dictionaries always are)
    unordered: bool = False
    #: the named failure of issue 13 / 12 this cell covers
    issue: str | None = None


CELLS: list[Cell] = [
    # -- where am I ---------------------------------------------------------------------------
    Cell("$PSVersionTable.PSVersion"),
    Cell("$PSVersionTable.PSVersion.Major -ge 5"),
    Cell("$env:COMPUTERNAME"),
    Cell("hostname"),
    Cell("whoami"),
    Cell("Get-Location"),
    Cell("Get-ComputerInfo | Select-Object CsName, WindowsProductName, OsVersion, OsArchitecture"),
    Cell("Get-CimInstance Win32_OperatingSystem | Select-Object Caption, Version, LastBootUpTime"),
    Cell("(Get-ComputerInfo).OsUptime.TotalHours -lt 24"),
    Cell("$uptime = (Get-Date) - (Get-CimInstance Win32_OperatingSystem).LastBootUpTime\n"
         "'up {0:%d} days {0:hh\\:mm}' -f $uptime",
         volatile="the uptime of each guest counts from its own start"),
    # -- services -----------------------------------------------------------------------------
    Cell("Get-Service"),
    Cell("Get-Service -Name W32Time"),
    Cell("Get-Service W32Time, WinRM | Select-Object Name, Status, StartType"),
    Cell("Get-Service | Where-Object Status -eq 'Running' | Measure-Object"),
    Cell("Get-Service | Where-Object { $_.Status -eq 'Stopped' -and $_.StartType -eq 'Automatic' }"
         " | Select-Object Name, DisplayName"),
    Cell("Get-Service -Name vm* | Sort-Object Status, Name"),
    Cell("Get-Service | Group-Object Status | Select-Object Name, Count"),
    Cell("Get-Service | Group-Object StartType -NoElement | Sort-Object Count -Descending"),
    Cell("$svc = Get-Service -Name W32Time"),
    Cell("$svc.Status"),
    Cell("$svc.Status -eq 'Running'"),
    Cell('"$($svc.DisplayName) is $($svc.Status)"'),
    Cell("$svc.RequiredServices"),
    Cell("Get-Service -DisplayName '*Remote*' | Select-Object -ExpandProperty Name"),
    Cell("Get-Service | Where-Object Name -like 'win*' | ForEach-Object Name"),
    Cell("Get-Service -Name NoSuchService"),
    Cell("Get-Service -Name NoSuchService -ErrorAction SilentlyContinue; 'continued'"),
    Cell("Get-Service -Nmae W32Time", issue="a misspelt -Nmae was accepted"),
    Cell("Get-Servce"),
    Cell("gsv W32Time"),
    Cell("Stop-Service -Name BITS -WhatIf"),
    Cell("Stop-Service -Name W32Time -PassThru"),
    Cell("Get-Service W32Time | Select-Object Name, Status"),
    Cell("Start-Service W32Time; (Get-Service W32Time).Status"),
    Cell("Restart-Service -Name WinRM -WhatIf"),
    Cell("Set-Service -Name BITS -StartupType Disabled -WhatIf"),
    Cell("Stop-Service -Name RpcSs"),
    Cell("Get-Service | Sort-Object @{Expression = 'Status'; Descending = $true}, Name"
         " | Select-Object -First 5 Name, Status",
         issue="Sort-Object with hashtables"),
    # -- processes ----------------------------------------------------------------------------
    Cell("Get-Process"),
    Cell("Get-Process | Sort-Object CPU -Descending | Select-Object -First 5"),
    Cell("Get-Process | Sort-Object WS -Descending | Select-Object -First 5 Name, Id,"
         " @{Name = 'WS(MB)'; Expression = { [math]::Round($_.WS / 1MB, 1) }}"),
    Cell("Get-Process -Name svchost | Measure-Object -Property WS -Sum -Average -Maximum",
         issue="Measure-Object -Sum gave 0"),
    Cell("(Get-Process | Measure-Object WorkingSet64 -Sum).Sum / 1MB"),
    Cell("Get-Process | Sort-Object @{Expression = 'CPU'; Descending = $true},"
         " @{Expression = 'Name'; Ascending = $true} | Select-Object -First 5 Name, CPU",
         issue="Sort-Object with hashtables"),
    Cell("$procs = Get-Process"),
    Cell("$procs.Count"),
    Cell("$procs | Where-Object { $_.CPU -gt 100 } | Select-Object Name, Id, CPU"),
    Cell("Get-Process -Id 4"),
    Cell("Get-Process -Name notepad"),
    Cell("Get-Process -Id 99999"),
    Cell("Get-Process | Group-Object Company | Sort-Object Count -Descending"
         " | Select-Object -First 3 Name, Count"),
    Cell("Stop-Process -Name explorer -WhatIf"),
    Cell("ps | sort CPU -Descending | select -First 3 Name, CPU"),
    Cell("Get-Process | Where-Object Name -in 'svchost', 'lsass' | Group-Object Name -NoElement"),
    Cell("Get-Process -Name lsass | Select-Object -Property *"),
    # -- events -------------------------------------------------------------------------------
    Cell("Get-WinEvent -LogName System -MaxEvents 5"),
    Cell("Get-WinEvent -FilterHashtable @{LogName = 'System'; Level = 2}"
         " | Select-Object TimeCreated, Id, ProviderName, Message"),
    Cell("Get-WinEvent -FilterHashtable @{LogName = 'System', 'Application'; Level = 1, 2, 3}"
         " | Group-Object ProviderName | Sort-Object Count -Descending"
         " | Select-Object Count, Name"),
    Cell("Get-WinEvent -FilterHashtable @{LogName = 'Application';"
         " StartTime = (Get-Date).AddHours(-24)}"
         " | Measure-Object"),
    Cell("Get-EventLog -LogName System -Newest 5"),
    Cell("Get-EventLog -LogName System -EntryType Error | Select-Object -First 3 TimeGenerated,"
         " Source, EventID"),
    Cell("Get-WinEvent -FilterHashtable @{LogName = 'System'; Id = 9999}"),
    Cell("$events = Get-WinEvent -LogName System, Application -MaxEvents 50"),
    Cell("$events | Where-Object LevelDisplayName -eq 'Error'"
         ' | ForEach-Object { "[$($_.Id)] $($_.Message)" }'),
    Cell("$events | Group-Object LevelDisplayName -NoElement"),
    Cell("Get-EventLog -LogName Security -Newest 1"),
    # -- updates ------------------------------------------------------------------------------
    Cell("Get-HotFix"),
    Cell("Get-HotFix | Sort-Object InstalledOn -Descending | Select-Object -First 3 HotFixID,"
         " Description, InstalledOn"),
    Cell("Get-HotFix -Id KB5044281"),
    Cell("Get-HotFix | Where-Object Description -eq 'Security Update' | Measure-Object"
         " | Select-Object -ExpandProperty Count"),
    Cell("$latest = Get-HotFix | Sort-Object InstalledOn | Select-Object -Last 1\n"
         '"Last patched $(((Get-Date) - $latest.InstalledOn).Days) days ago: $($latest.HotFixID)"'),
    Cell("Get-HotFix | Group-Object Description | Select-Object Name, Count"),
    Cell("Get-HotFix -Id KB0000000"),
    # -- storage, network, registry ------------------------------------------------------------
    Cell("Get-Volume"),
    Cell("Get-Volume | Where-Object DriveLetter | Select-Object DriveLetter, FileSystemLabel,"
         " @{n = 'SizeGB'; e = { [math]::Round($_.Size / 1GB, 1) }},"
         " @{n = 'FreeGB'; e = { [math]::Round($_.SizeRemaining / 1GB, 1) }}"),
    Cell("Get-Volume | Where-Object { $_.DriveLetter -and ($_.SizeRemaining / $_.Size) -lt 0.2 }"
         " | Select-Object DriveLetter,"
         " @{n = 'PctFree'; e = { '{0:P0}' -f ($_.SizeRemaining / $_.Size) }}"),
    Cell("Get-Volume -DriveLetter C"),
    Cell("(Get-Volume -DriveLetter C).SizeRemaining / 1GB"),
    Cell("Get-NetIPAddress"),
    Cell("Get-NetIPAddress -AddressFamily IPv4 | Select-Object InterfaceAlias, IPAddress,"
         " PrefixLength"),
    Cell("Get-NetIPAddress -AddressFamily IPv4 | Where-Object IPAddress -notlike '127.*'"
         " | ForEach-Object IPAddress"),
    Cell("Get-NetAdapter", issue="Get-NetAdapter was not recognized"),
    Cell("Get-NetAdapter | Where-Object Status -eq 'Up' | Select-Object Name,"
         " InterfaceDescription, LinkSpeed, MacAddress"),
    Cell("Get-DnsClientServerAddress"),
    Cell("Get-ItemProperty 'HKLM:\\SOFTWARE\\Microsoft\\Windows NT\\CurrentVersion'"
         " | Select-Object ProductName, DisplayVersion, CurrentBuild, UBR",
         issue="Get-ItemProperty was not recognized"),
    Cell("(Get-ItemProperty 'HKLM:\\SOFTWARE\\Microsoft\\Windows NT\\CurrentVersion').ProductName"),
    Cell("Get-ItemPropertyValue 'HKLM:\\SOFTWARE\\Microsoft\\Windows NT\\CurrentVersion'"
         " -Name CurrentBuild"),
    Cell("Get-ItemProperty 'HKLM:\\SOFTWARE\\Microsoft\\Virtual Machine\\Guest\\Parameters'"
         " | Select-Object HostName, VirtualMachineName"),
    Cell("Get-ItemProperty HKLM:\\SOFTWARE\\NoSuchKey"),
    # -- roles, tasks, DSC --------------------------------------------------------------------
    Cell("Get-WindowsFeature | Where-Object Installed | Select-Object Name, InstallState"),
    Cell("Get-ScheduledTask | Where-Object State -eq 'Ready' | Select-Object TaskName, State"),
    Cell("(Get-ScheduledTask | Select-Object -First 1).State"),
    Cell("(Get-WindowsFeature -Name Web-Server).InstallState",
         issue="enum labels leaked between types (InstallState read as a task state)"),
    Cell("Get-WindowsFeature | Group-Object InstallState -NoElement"),
    Cell("Install-WindowsFeature -Name Web-Server -WhatIf"),
    Cell("Get-DscLocalConfigurationManager | Select-Object LCMState, RefreshMode"),
    # -- numbers, variables, dates ------------------------------------------------------------
    Cell("$x = 5; $x * 2"),
    Cell("[int]'42' + 1"),
    Cell("'42' + 1"),
    Cell("1 + '42'"),
    Cell("[math]::Round(2.5), [math]::Round(12.345, 1)"),
    Cell("7 / 2; [int](7 / 2); 10 % 3"),
    Cell("1GB / 1MB"),
    Cell("$a = 1..5; $a[-1]; $a.Count; $a -contains 3"),
    Cell("$a | Where-Object { $_ % 2 -eq 0 }"),
    Cell("@(1, 'two', 3.0, $true, $null).Count"),
    Cell("([datetime]'2024-03-01').AddDays(30).ToString('yyyy-MM-dd')"),
    Cell("(Get-Date).ToString('u')", volatile="the current time",
         issue="(Get-Date).ToString('u') gave 'u'"),
    Cell("Get-Date -Format 'yyyy-MM-dd HH:mm'", volatile="the current time"),
    Cell("[datetime]::ParseExact('2024-03-01 14:30', 'yyyy-MM-dd HH:mm', $null).DayOfWeek"),
    Cell("New-TimeSpan -Hours 2 -Minutes 30 | Select-Object TotalMinutes"),
    # -- format strings -----------------------------------------------------------------------
    Cell("'{0:N1}' -f 12.345", issue="'{0:N1}' -f 12.345 was not formatted"),
    Cell("'{0:N0}' -f 1234567"),
    Cell("'{0:P1}' -f 0.2567"),
    Cell("'{0,-12}|{1,8}' -f 'W32Time', 'Running'"),
    Cell("'{0:X8}' -f 255"),
    Cell("'{0:yyyy-MM-dd}' -f [datetime]'2024-03-01T10:00:00'"),
    Cell("'{0} has {1} services' -f $env:COMPUTERNAME, (Get-Service).Count"),
    Cell("(12.3456).ToString('F2')"),
    # -- strings ------------------------------------------------------------------------------
    Cell("'a,b,c' -split ','"),
    Cell("('x', 'y', 'z') -join '; '"),
    Cell("'Server-01.contoso.local' -replace '\\..*$', ''"),
    Cell("if ('KB5044281' -match 'KB(\\d+)') { $Matches[1] }"),
    Cell("'hello world'.ToUpper().Substring(0, 5)"),
    Cell("'  padded  '.Trim().Length"),
    Cell("$name = 'W32Time'\n"
         '@"\n'
         "Service: $name\n"
         "Status:  $((Get-Service $name).Status)\n"
         '"@', issue="here-strings were not recognized"),
    Cell("@'\nNo $expansion here: $name\n'@", issue="here-strings were not recognized"),
    Cell("1..3 | ForEach-Object { Write-Output \"item $_\" }",
         issue='"item $_" inside ForEach-Object lost $_'),
    Cell("Get-Service W32Time, WinRM | ForEach-Object { '{0} is {1}' -f $_.Name, $_.Status }"),
    Cell("Select-String -InputObject 'error: disk full' -Pattern 'disk'"
         " | Select-Object Line, Pattern"),
    # -- hashtables and objects ---------------------------------------------------------------
    Cell("$h = @{ Name = 'web01'; Cores = 4; MemoryGB = 16 }",
         issue="hashtable literals were not recognized"),
    Cell("$h.Name"),
    Cell("$h['Cores'] * 2"),
    Cell("$h.Keys | Sort-Object"),
    Cell("$h"),
    Cell("$h.Add('Role', 'Web'); $h.ContainsKey('Role'); $h.Count"),
    Cell("[ordered]@{ First = 1; Second = 2; Third = 3 }"),
    Cell("[pscustomobject]@{ Name = 'web01'; Cores = 4; Up = $true }"),
    Cell("$rows = foreach ($n in 1..3) { [pscustomobject]@{ Id = $n; Square = $n * $n } }; $rows"),
    Cell("$rows | Measure-Object Square -Sum -Average"),
    Cell("$h.GetEnumerator() | Sort-Object Name | ForEach-Object { \"$($_.Name)=$($_.Value)\" }"),
    # -- control flow -------------------------------------------------------------------------
    Cell("if ((Get-Service W32Time).Status -eq 'Running') { 'time service OK' }"
         " else { 'time service DOWN' }", issue="if/else was not recognized"),
    Cell("$free = (Get-Volume -DriveLetter D).SizeRemaining / 1GB\n"
         "if ($free -lt 5) { 'critical' } elseif ($free -lt 20) { 'low' } else { 'ok' }"),
    Cell("foreach ($name in 'W32Time', 'WinRM', 'BITS') {\n"
         "    $s = Get-Service $name\n"
         '    "$name : $($s.Status)"\n'
         "}", issue="foreach was not recognized"),
    Cell("for ($i = 1; $i -le 3; $i++) { \"pass $i\" }"),
    Cell("$n = 0; while ($n -lt 3) { $n++ }; $n"),
    Cell("do { $n-- } until ($n -le 0); $n"),
    Cell("switch ('Running') { 'Running' { 'up' } 'Stopped' { 'down' } default { 'unknown' } }"),
    Cell("switch -Wildcard ('web01', 'db01', 'dc01') {\n"
         "    'web*' { \"$_ is a web server\" }\n"
         "    'db*' { \"$_ is a database\" }\n"
         "    default { \"$_ is something else\" }\n"
         "}"),
    Cell("foreach ($i in 1..10) { if ($i -eq 3) { continue }; if ($i -gt 5) { break }; $i }"),
    Cell("$x -gt 3 ? 'big' : 'small'"),
    Cell("$null ?? 'default'"),
    # -- functions ----------------------------------------------------------------------------
    Cell("function Get-FreeSpace {\n"
         "    param([char] $Drive = 'C')\n"
         "    $v = Get-Volume -DriveLetter $Drive\n"
         "    [math]::Round($v.SizeRemaining / 1GB, 2)\n"
         "}"),
    Cell("Get-FreeSpace; Get-FreeSpace -Drive D"),
    Cell("function Test-ServiceUp {\n"
         "    [CmdletBinding()]\n"
         "    param([Parameter(Mandatory, ValueFromPipeline)] [string] $Name)\n"
         "    process {\n"
         "        Write-Verbose \"checking $Name\"\n"
         "        $s = Get-Service -Name $Name -ErrorAction SilentlyContinue\n"
         "        [pscustomobject]@{ Name = $Name; Up = ($s.Status -eq 'Running') }\n"
         "    }\n"
         "}"),
    Cell("'W32Time', 'BITS', 'NoSuch' | Test-ServiceUp"),
    Cell("Test-ServiceUp -Name W32Time -Verbose"),
    Cell("Test-ServiceUp -Nmae W32Time"),
    Cell("function Set-Thing {\n"
         "    [CmdletBinding(SupportsShouldProcess)]\n"
         "    param($Name)\n"
         "    if ($PSCmdlet.ShouldProcess($Name, 'Set')) { \"set $Name\" }\n"
         "}\n"
         "Set-Thing -Name first -WhatIf\n"
         "Set-Thing -Name second"),
    Cell("function Get-Double([ValidateRange(1, 10)] [int] $N) { $N * 2 }; Get-Double 20"),
    Cell("Get-Command Get-FreeSpace | Select-Object Name, CommandType"),
    # -- errors -------------------------------------------------------------------------------
    Cell("try { Get-Service NoSuch -ErrorAction Stop }"
         " catch { \"caught: $($_.Exception.Message)\" }",
         issue="try/catch was not recognized"),
    Cell("try { 1 / 0 } catch [System.DivideByZeroException] { 'divide by zero' }"
         " finally { 'cleanup' }"),
    Cell("try { [int]'abc' } catch { $_.FullyQualifiedErrorId }"),
    Cell("try { throw 'custom failure' } catch { \"got: $_\" }"),
    Cell("throw 'stop here'"),
    Cell("Write-Error 'something bad'; 'after the error'"),
    Cell("Get-Item C:\\nope"),
    Cell("1 / 0"),
    Cell("$null.Trim()"),
    Cell("Get-Service -Name W32Time | Select-Object -Propery Name"),
    Cell("Get-Foo"),
    Cell("Get-Service | Where-Object { $_.Status -eq }"),
    Cell("Get-Service NoSuch1, NoSuch2 -ErrorVariable bad -ErrorAction SilentlyContinue;"
         " $bad.Count"),
    Cell("$ErrorActionPreference = 'Stop'\n"
         "try { Get-Process -Name nosuch; 'not reached' } catch { 'stopped on the first error' }"
         " finally { $ErrorActionPreference = 'Continue' }"),
    Cell("[int]::Parse('x')"),
    Cell("Get-Process -Id 'abc'"),
    Cell("Get-Service -Name"),
    # -- streams ------------------------------------------------------------------------------
    Cell("Write-Verbose 'not shown'; 'only output'"),
    Cell("Write-Verbose 'shown' -Verbose"),
    Cell("Write-Warning 'disk D: is low'"),
    Cell("Write-Information 'info message'"),
    Cell("Write-Information 'shown info' -InformationAction Continue"),
    Cell("Write-Host 'plain host text'"),
    Cell("Write-Host 'in red' -ForegroundColor Red"),
    Cell("Write-Host -BackgroundColor Red 'x'"),
    Cell("Write-Debug 'debug detail' -Debug"),
    Cell("'first'; Write-Warning 'middle'; 'last'"),
    Cell("$VerbosePreference = 'Continue'; Write-Verbose 'now visible';"
         " $VerbosePreference = 'SilentlyContinue'"),
    Cell("Write-Output 'to output'; Write-Host 'to host'; Write-Error 'to error';"
         " Write-Warning 'to warning'"),
    # -- progress -----------------------------------------------------------------------------
    Cell("foreach ($i in 1..5) {\n"
         "    Write-Progress -Activity 'Checking services' -Status \"$i of 5\""
         " -PercentComplete ($i * 20)\n"
         "    Start-Sleep -Milliseconds 20\n"
         "}\n"
         "Write-Progress -Activity 'Checking services' -Completed\n"
         "'done'"),
    Cell("foreach ($vm in 'web01', 'db01') {\n"
         "    Write-Progress -Id 1 -Activity 'VMs' -Status $vm\n"
         "    foreach ($step in 1..2) {\n"
         "        Write-Progress -Id 2 -ParentId 1 -Activity 'Steps' -Status \"step $step\"\n"
         "    }\n"
         "}\n"
         "Write-Progress -Id 1 -Activity 'VMs' -Completed"),
    # -- discovery ----------------------------------------------------------------------------
    Cell("Get-Service W32Time | Get-Member", issue="Get-Member was not recognized"),
    Cell("Get-Service W32Time | Get-Member -MemberType Property"
         " | Select-Object -ExpandProperty Name"),
    Cell("Get-Help Get-Service", unordered=True, issue="Get-Help was not recognized"),
    Cell("(Get-Help Get-HotFix).Synopsis"),
    Cell("Get-Command -Noun Service | Select-Object Name, CommandType"),
    Cell("Get-Command Stop-Service -Syntax"),
    # -- files on the guest -------------------------------------------------------------------
    Cell("Get-ChildItem C:\\Windows\\Logs -Recurse -File | Select-Object Name, Length"),
    Cell("Get-Content C:\\Windows\\Logs\\CBS\\CBS.log -TotalCount 2",
         volatile="the log lines carry the time the demo wrote them, and their PSDrive the "
                  "host disk's Used/Free"),
    Cell("Select-String -Path C:\\Windows\\Logs\\CBS\\CBS.log -Pattern 'Error'"
         " | Select-Object LineNumber, Line",
         volatile="the log lines carry the time the demo wrote them"),
    Cell("Test-Path C:\\Windows\\Temp"),
    Cell("Set-Content -Path C:\\Windows\\Temp\\note.txt -Value 'hello'\n"
         "Get-Content C:\\Windows\\Temp\\note.txt",
         volatile="each line carries its PSDrive, whose Used/Free are the host disk's, now"),
    Cell("Get-Service | Select-Object -First 5 Name, Status"
         " | Export-Csv C:\\Windows\\Temp\\svc.csv -NoTypeInformation\n"
         "Import-Csv C:\\Windows\\Temp\\svc.csv"),
    Cell("Get-Item C:\\Windows\\Temp\\note.txt",
         volatile="the host file system's inode numbers and free space, now"),
    Cell("Get-PSDrive -Name C", volatile="Used/Free are the host disk's, now"),
    Cell("Remove-Item C:\\Windows\\Temp\\note.txt -WhatIf"),
    Cell("Get-ChildItem C:\\Windows\\Temp | Measure-Object Length -Sum"),
    Cell("dir C:\\Windows\\Logs | Select-Object Name"),
    Cell("ls C:\\Windows\\Logs | Select-Object Name"),
    Cell("cat C:\\Windows\\Temp\\note.txt",
         volatile="each line carries its PSDrive, whose Used/Free are the host disk's, now"),
    # -- conversions, formatting, odds and ends -----------------------------------------------
    Cell("Get-Service W32Time | Select-Object Name, Status | ConvertTo-Json"),
    Cell("'{\"name\":\"web01\",\"cores\":4}' | ConvertFrom-Json"),
    Cell("Get-Service | Select-Object -First 3 Name, Status | ConvertTo-Csv -NoTypeInformation"),
    Cell("Get-Service W32Time | Format-List Name, Status, StartType"),
    Cell("Get-Service | Select-Object -First 3 | Format-Table -AutoSize | Out-String"),
    Cell("Measure-Command { Get-Service } | Select-Object -ExpandProperty TotalMilliseconds",
         volatile="a duration"),
    Cell("Compare-Object -ReferenceObject 'a', 'b', 'c' -DifferenceObject 'b', 'c', 'd'"),
    Cell("1..10 | Measure-Object -Sum -Average -Minimum -Maximum"),
    Cell("'b', 'a', 'c', 'a' | Sort-Object -Unique"),
    Cell("Get-Service | Sort-Object Status, @{Expression = { $_.Name.Length }; Descending = $true}"
         " | Select-Object -First 5 Name, Status"),
    Cell("Restart-Computer -WhatIf"),
    Cell("Get-Variable -Name svc | Select-Object Name"),
    Cell("$Error.Count -gt 0"),
]
