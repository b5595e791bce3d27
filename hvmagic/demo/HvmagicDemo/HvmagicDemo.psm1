# hvmagic's demo guest: real PowerShell answering with SIMULATED Windows data.
#
# Every object this module emits is invented (DemoData.json, the demo's labelled inventory and
# its only source): the computer is SIMULATED-GUEST and Get-ComputerInfo carries a banner saying so.
# The objects are PSCustomObjects whose type names are the Windows ones, so hvmagic's views, the
# formatting and type data of PowerShell itself (Format-Table, Get-Member, alias properties) and
# comparisons such as $_.Status -eq 'Running' treat them as the real thing. Enums are real .NET
# enums: the System.ServiceProcess ones ship with PowerShell 7 everywhere; the Windows-only ones
# (ServerManager InstallState, ScheduledTask StateEnum ...) are defined here with the same full names.
#
# The functions deliberately shadow commands of the same name where PowerShell has them natively
# (Get-Process, Restart-Computer on Linux; every one of them on Windows): functions come before
# cmdlets in PowerShell's command lookup, so the demo answers consistently from one inventory
# instead of mixing the host's real processes with a simulated Windows machine.
#
# State (service status, installed features, boot time, pending reboot, last DSC run) lives in a
# JSON file beside the demo's C: drive, so it survives a simulated Restart-Computer, which ends
# the server process the way a real restart drops a PowerShell Direct session.

param(
    # where this machine's state is kept between sessions; empty = in memory only
    [string] $StatePath = '',
    # the folder that becomes the demo's C: drive; empty = leave the drives alone
    [string] $DriveRoot = ''
)

Set-StrictMode -Off
# Windows PowerShell 5.1 loads System.ServiceProcess only with its own Get-Service; the enums
# below need it either way (PowerShell 7 has it loaded already, on every platform)
Add-Type -AssemblyName System.ServiceProcess -ErrorAction Ignore

$script:Data = [System.IO.File]::ReadAllText((Join-Path $PSScriptRoot 'DemoData.json')) | ConvertFrom-Json
$script:ComputerName = $script:Data.ComputerName
$script:StatePath = $StatePath

# ---- enums PowerShell only has on Windows (same full names, so the CLIXML says the same) ----

function New-DemoEnumType([string] $FullName, [System.Collections.IDictionary] $Members) {
    $existing = $FullName -as [type]
    if ($null -ne $existing) { return $existing }  # a second Import-Module in the same process
    if ($null -eq $script:EnumModule) {
        $assembly = [System.Reflection.Emit.AssemblyBuilder]::DefineDynamicAssembly(
            [System.Reflection.AssemblyName]::new('HvmagicDemoEnums'), 'Run')
        $script:EnumModule = $assembly.DefineDynamicModule('HvmagicDemoEnums')
    }
    $builder = $script:EnumModule.DefineEnum($FullName, 'Public', [int])
    foreach ($name in $Members.Keys) { $null = $builder.DefineLiteral($name, [int] $Members[$name]) }
    $builder.CreateType()
}

$script:EnumModule = $null
$script:InstallState = New-DemoEnumType 'Microsoft.Windows.ServerManager.Commands.InstallState' ([ordered]@{
    Available = 0; Installed = 1; InstallPending = 2; Removed = 3; UninstallPending = 4 })
$script:RestartState = New-DemoEnumType 'Microsoft.Windows.ServerManager.Commands.RestartState' ([ordered]@{
    No = 0; Yes = 1; Maybe = 2 })
$script:ExitCode = New-DemoEnumType 'Microsoft.Windows.ServerManager.Commands.FeatureOperationExitCode' ([ordered]@{
    Success = 0; NoChangeNeeded = 1003 })
$script:TaskState = New-DemoEnumType 'Microsoft.PowerShell.Cmdletization.GeneratedTypes.ScheduledTask.StateEnum' ([ordered]@{
    Unknown = 0; Disabled = 1; Queued = 2; Ready = 3; Running = 4 })

# ---- state -------------------------------------------------------------------------------------

function New-DemoState {
    $services = @{}
    foreach ($s in $script:Data.Services) {
        $services[$s.Name] = @{ Running = [bool] $s.Running; StartType = [string] $s.StartType }
    }
    $features = @($script:Data.Features | Where-Object Installed | ForEach-Object Name)
    @{
        BootTime = [datetime]::Now.ToUniversalTime().ToString('o')
        BootCount = 1
        PendingReboot = $false
        Services = $services
        Features = $features
        DscLastRun = $null
        PoweredOff = $false
        StoppedProcesses = @()
    }
}

function Read-DemoState {
    if ($script:StatePath -and (Test-Path -LiteralPath $script:StatePath)) {
        $json = [System.IO.File]::ReadAllText($script:StatePath) | ConvertFrom-Json
        $services = @{}
        foreach ($p in $json.Services.PSObject.Properties) {
            $services[$p.Name] = @{ Running = [bool] $p.Value.Running; StartType = [string] $p.Value.StartType }
        }
        return @{
            BootTime = [string] $json.BootTime
            BootCount = [int] $json.BootCount
            PendingReboot = [bool] $json.PendingReboot
            Services = $services
            Features = @($json.Features)
            DscLastRun = $json.DscLastRun
            PoweredOff = [bool] $json.PoweredOff
            StoppedProcesses = @($json.StoppedProcesses | Where-Object { $null -ne $_ } | ForEach-Object { [int] $_ })
        }
    }
    New-DemoState
}

function Save-DemoState {
    if ($script:StatePath) {
        $text = $script:State | ConvertTo-Json -Depth 5
        [System.IO.File]::WriteAllText($script:StatePath, $text)
    }
}

$script:State = Read-DemoState
$script:LoadedAt = [datetime]::Now

function Get-DemoBootTime {
    # the state keeps UTC text; a guest reports its local time (as Windows does)
    [datetime]::Parse($script:State.BootTime, [cultureinfo]::InvariantCulture,
        [System.Globalization.DateTimeStyles]::RoundtripKind).ToLocalTime()
}

# ---- objects -----------------------------------------------------------------------------------

function New-DemoObject([string[]] $TypeNames, [System.Collections.IDictionary] $Properties) {
    $object = [pscustomobject] $Properties
    $object.PSTypeNames.Clear()
    foreach ($name in $TypeNames) { $object.PSTypeNames.Add($name) }
    $object
}

function Test-DemoLike([string] $Value, [object[]] $Patterns) {
    foreach ($pattern in $Patterns) { if ($Value -like $pattern) { return $true } }
    $false
}

function Write-DemoError([System.Management.Automation.PSCmdlet] $Cmdlet, [string] $Message,
        [string] $ErrorId, [System.Management.Automation.ErrorCategory] $Category, [object] $Target,
        [switch] $Terminating) {
    $record = [System.Management.Automation.ErrorRecord]::new(
        [System.InvalidOperationException]::new($Message), $ErrorId, $Category, $Target)
    if ($Terminating) { $Cmdlet.ThrowTerminatingError($record) }
    $Cmdlet.WriteError($record)
}

$script:ServiceTypeNames = 'System.ServiceProcess.ServiceController', 'System.ComponentModel.Component',
    'System.MarshalByRefObject', 'System.Object'
# services Windows refuses to stop (CanStop is false while they run)
$script:Unstoppable = 'rpcss', 'dcomlaunch', 'rpceptmapper', 'samss', 'lsm', 'brokerinfrastructure',
    'plugplay', 'power', 'eventsystem'
$script:CanShutdown = 'eventlog', 'lanmanserver', 'w32time', 'winmgmt', 'wuauserv'

function Get-DemoServiceRows {
    $rows = @($script:Data.Services)
    if ($script:State.Features -contains 'Web-Server') {
        $rows = @($rows + @($script:Data.WebServerServices) | Sort-Object { $_.Name.ToLowerInvariant() })
    }
    $rows
}

function New-DemoService($Row) {
    $state = $script:State.Services[$Row.Name]
    if ($null -eq $state) {
        $state = @{ Running = [bool] $Row.Running; StartType = [string] $Row.StartType }
        $script:State.Services[$Row.Name] = $state
    }
    $running = [bool] $state.Running
    $depends = [string[]] @($Row.DependsOn)
    New-DemoObject $script:ServiceTypeNames ([ordered]@{
        # Name and RequiredServices are PowerShell's own alias properties (types.ps1xml) of
        # ServiceName and ServicesDependedOn; listed so the order matches Windows' output
        Name = $Row.Name
        RequiredServices = $depends
        CanPauseAndContinue = $false
        CanShutdown = $running -and ($script:CanShutdown -contains $Row.Name.ToLowerInvariant())
        CanStop = $running -and ($script:Unstoppable -notcontains $Row.Name.ToLowerInvariant())
        DisplayName = $Row.DisplayName
        DependentServices = [string[]] @()
        MachineName = '.'
        ServiceName = $Row.Name
        ServicesDependedOn = $depends
        ServiceHandle = $null
        Status = [System.ServiceProcess.ServiceControllerStatus] $(if ($running) { 'Running' } else { 'Stopped' })
        ServiceType = [System.ServiceProcess.ServiceType] $Row.ServiceType
        StartType = [System.ServiceProcess.ServiceStartMode] $state.StartType
        Site = $null
        Container = $null
        PSComputerName = $script:ComputerName
    })
}

function Get-Service {
    <#
    .SYNOPSIS
    Gets the services of the demo guest. (hvmagic demo guest: simulated data)
    #>
    [CmdletBinding(DefaultParameterSetName = 'Default')]
    param(
        [Parameter(Position = 0, ValueFromPipeline = $true, ValueFromPipelineByPropertyName = $true,
            ParameterSetName = 'Default')]
        [Alias('ServiceName')] [string[]] $Name,
        [Parameter(ParameterSetName = 'DisplayName', Mandatory = $true)] [string[]] $DisplayName,
        [string[]] $Include,
        [string[]] $Exclude
    )
    process {
        $rows = Get-DemoServiceRows
        $found = [System.Collections.Generic.List[object]]::new()
        if ($PSCmdlet.ParameterSetName -eq 'DisplayName') {
            foreach ($pattern in $DisplayName) {
                $hits = @($rows | Where-Object { $_.DisplayName -like $pattern })
                if (-not $hits -and -not [System.Management.Automation.WildcardPattern]::ContainsWildcardCharacters($pattern)) {
                    Write-DemoError $PSCmdlet "Cannot find any service with display name '$pattern'." `
                        'NoServiceFoundForGivenDisplayName' ObjectNotFound $pattern
                }
                foreach ($h in $hits) { if (-not $found.Contains($h)) { $found.Add($h) } }
            }
        } elseif ($Name) {
            foreach ($pattern in $Name) {
                $hits = @($rows | Where-Object { $_.Name -like $pattern })
                if (-not $hits -and -not [System.Management.Automation.WildcardPattern]::ContainsWildcardCharacters($pattern)) {
                    Write-DemoError $PSCmdlet "Cannot find any service with service name '$pattern'." `
                        'NoServiceFoundForGivenName' ObjectNotFound $pattern
                }
                foreach ($h in $hits) { if (-not $found.Contains($h)) { $found.Add($h) } }
            }
        } else {
            $found.AddRange([object[]] $rows)
        }
        foreach ($row in $found) {
            if ($Include -and -not (Test-DemoLike $row.Name $Include)) { continue }
            if ($Exclude -and (Test-DemoLike $row.Name $Exclude)) { continue }
            New-DemoService $row
        }
    }
}

function Set-DemoServiceState {
    param($Cmdlet, [string[]] $Name, [object[]] $InputObject, [string] $Verb, [bool] $PassThru,
        [bool] $Force)
    $targets = if ($InputObject) { @($InputObject | ForEach-Object { $_.Name }) } else { $Name }
    foreach ($serviceName in $targets) {
        foreach ($service in @(Get-Service -Name $serviceName)) {
            $label = "$($service.DisplayName) ($($service.Name))"
            if (-not $Cmdlet.ShouldProcess($label)) { continue }
            if ($Verb -ne 'Start' -and $service.Status -eq 'Running' -and -not $service.CanStop) {
                Write-DemoError $Cmdlet "Service '$label' cannot be stopped due to the following error: Cannot stop $($service.Name) service on computer '.'." `
                    'CouldNotStopService' CloseError $service
                continue
            }
            if ($Verb -ne 'Stop' -and $service.StartType -eq 'Disabled') {
                Write-DemoError $Cmdlet "Service '$label' cannot be started due to the following error: Cannot start service $($service.Name) on computer '.'." `
                    'CouldNotStartService' OpenError $service
                continue
            }
            $script:State.Services[$service.Name].Running = ($Verb -ne 'Stop')
            Save-DemoState
            if ($PassThru) { Get-Service -Name $service.Name }
        }
    }
}

function Start-Service {
    <#
    .SYNOPSIS
    Starts a service of the demo guest. (hvmagic demo guest: simulated data)
    #>
    [CmdletBinding(SupportsShouldProcess = $true, DefaultParameterSetName = 'Default')]
    param(
        [Parameter(Position = 0, Mandatory = $true, ValueFromPipelineByPropertyName = $true, ParameterSetName = 'Default')]
        [Alias('ServiceName')] [string[]] $Name,
        [Parameter(Position = 0, Mandatory = $true, ValueFromPipeline = $true, ParameterSetName = 'InputObject')]
        [object[]] $InputObject,
        [switch] $PassThru
    )
    process { Set-DemoServiceState $PSCmdlet $Name $InputObject 'Start' $PassThru.IsPresent $false }
}

function Stop-Service {
    <#
    .SYNOPSIS
    Stops a service of the demo guest. (hvmagic demo guest: simulated data)
    #>
    [CmdletBinding(SupportsShouldProcess = $true, DefaultParameterSetName = 'Default')]
    param(
        [Parameter(Position = 0, Mandatory = $true, ValueFromPipelineByPropertyName = $true, ParameterSetName = 'Default')]
        [Alias('ServiceName')] [string[]] $Name,
        [Parameter(Position = 0, Mandatory = $true, ValueFromPipeline = $true, ParameterSetName = 'InputObject')]
        [object[]] $InputObject,
        [switch] $PassThru,
        [switch] $Force,
        [switch] $NoWait
    )
    process { Set-DemoServiceState $PSCmdlet $Name $InputObject 'Stop' $PassThru.IsPresent $Force.IsPresent }
}

function Restart-Service {
    <#
    .SYNOPSIS
    Restarts a service of the demo guest. (hvmagic demo guest: simulated data)
    #>
    [CmdletBinding(SupportsShouldProcess = $true, DefaultParameterSetName = 'Default')]
    param(
        [Parameter(Position = 0, Mandatory = $true, ValueFromPipelineByPropertyName = $true, ParameterSetName = 'Default')]
        [Alias('ServiceName')] [string[]] $Name,
        [Parameter(Position = 0, Mandatory = $true, ValueFromPipeline = $true, ParameterSetName = 'InputObject')]
        [object[]] $InputObject,
        [switch] $PassThru,
        [switch] $Force
    )
    process { Set-DemoServiceState $PSCmdlet $Name $InputObject 'Restart' $PassThru.IsPresent $Force.IsPresent }
}

# ---- processes ---------------------------------------------------------------------------------

function Get-Process {
    <#
    .SYNOPSIS
    Gets the processes of the demo guest. (hvmagic demo guest: simulated data)
    #>
    [CmdletBinding(DefaultParameterSetName = 'Name')]
    param(
        [Parameter(Position = 0, ValueFromPipelineByPropertyName = $true, ParameterSetName = 'Name')]
        [Alias('ProcessName')] [string[]] $Name,
        [Parameter(Mandatory = $true, ValueFromPipelineByPropertyName = $true, ParameterSetName = 'Id')]
        [Alias('PID')] [int[]] $Id
    )
    process {
        $boot = Get-DemoBootTime
        $stopped = @($script:State.StoppedProcesses)
        $rows = @($script:Data.Processes | Where-Object { $stopped -notcontains $_.Id })
        if ($PSCmdlet.ParameterSetName -eq 'Id') {
            $selected = foreach ($wanted in $Id) {
                $hit = @($rows | Where-Object Id -EQ $wanted)
                if (-not $hit) {
                    Write-DemoError $PSCmdlet "Cannot find a process with the process identifier $wanted." `
                        'NoProcessFoundForGivenId' ObjectNotFound $wanted
                }
                $hit
            }
        } elseif ($Name) {
            $selected = foreach ($pattern in $Name) {
                $hit = @($rows | Where-Object { $_.Name -like $pattern })
                if (-not $hit -and -not [System.Management.Automation.WildcardPattern]::ContainsWildcardCharacters($pattern)) {
                    Write-DemoError $PSCmdlet "Cannot find a process with the name `"$pattern`". Verify the process name and call the cmdlet again." `
                        'NoProcessFoundForGivenName' ObjectNotFound $pattern
                }
                $hit
            }
        } else {
            $selected = $rows
        }
        foreach ($row in $selected) {
            $ws = [long] $row.WorkingSet64
            New-DemoObject 'System.Diagnostics.Process', 'System.ComponentModel.Component', 'System.MarshalByRefObject', 'System.Object' ([ordered]@{
                Name = $row.Name
                SI = [int] $row.SessionId
                Handles = [int] $row.Handles
                VM = [long] ($ws * 3 + 2147483648)
                WS = $ws
                PM = [long] $row.PagedMemorySize64
                NPM = [long] $row.NonpagedSystemMemorySize64
                Path = $row.Path
                Company = $row.Company
                CPU = $(if ($null -ne $row.CPU) { [double] $row.CPU } else { $null })
                Description = $row.Description
                # shadows for the script properties PowerShell's type data reads from a live
                # process (MainModule ...): there is none behind a demo object
                FileVersion = $null
                Product = $null
                ProductVersion = $null
                CommandLine = $null
                Parent = $null
                Id = [int] $row.Id
                ProcessName = $row.Name
                HandleCount = [int] $row.Handles
                WorkingSet64 = $ws
                PagedMemorySize64 = [long] $row.PagedMemorySize64
                NonpagedSystemMemorySize64 = [long] $row.NonpagedSystemMemorySize64
                VirtualMemorySize64 = [long] ($ws * 3 + 2147483648)
                StartTime = $(if ($row.Id -lt 400) { $null } else { $boot.AddSeconds([math]::Floor($row.Id / 40)) })
                SessionId = [int] $row.SessionId
                PSComputerName = $script:ComputerName
            })
        }
    }
}

# ---- hotfixes, events --------------------------------------------------------------------------

$script:HotFixTypeNames = 'System.Management.ManagementObject#root\cimv2\Win32_QuickFixEngineering',
    'System.Management.ManagementObject', 'System.Management.ManagementBaseObject',
    'System.ComponentModel.Component', 'System.MarshalByRefObject', 'System.Object'

function Get-HotFix {
    <#
    .SYNOPSIS
    Gets the installed updates of the demo guest. (hvmagic demo guest: simulated data)
    #>
    [CmdletBinding()]
    param(
        [Parameter(Position = 0)] [Alias('HFID')] [string[]] $Id,
        [string] $Description
    )
    $midnight = [datetime]::Today
    foreach ($wanted in $Id) {
        # as on Windows: an id the machine does not have is an error, not an empty answer
        if (-not ($script:Data.HotFixes | Where-Object HotFixID -EQ $wanted)) {
            Write-DemoError $PSCmdlet "Cannot find the requested hotfix on the 'localhost' computer. Verify the input and run the command again." `
                'GetHotFixNoEntriesFound' ObjectNotFound $wanted
        }
    }
    foreach ($row in $script:Data.HotFixes) {
        if ($Id -and $Id -notcontains $row.HotFixID) { continue }
        if ($Description -and $row.Description -notlike $Description) { continue }
        New-DemoObject $script:HotFixTypeNames ([ordered]@{
            Source = $script:ComputerName
            Description = $row.Description
            HotFixID = $row.HotFixID
            InstalledBy = 'NT AUTHORITY\SYSTEM'
            InstalledOn = $midnight.AddDays(-[int] $row.DaysAgo)
            Caption = "https://support.microsoft.com/help/$($row.HotFixID.Substring(2))"
            CSName = $script:ComputerName
            PSComputerName = $script:ComputerName
        })
    }
}

# record ids count up in the file's order; the log is read newest first, equal times in file order
$script:EventRows = @(for ($i = 0; $i -lt $script:Data.Events.Count; $i++) {
    [pscustomobject] @{ Row = $script:Data.Events[$i]; Ordinal = $i }
}) | Sort-Object @{ Expression = { [double] $_.Row.HoursAgo } }, Ordinal | ForEach-Object Row

$script:LevelNames = @{ 1 = 'Critical'; 2 = 'Error'; 3 = 'Warning'; 4 = 'Information'; 5 = 'Verbose' }

function Get-DemoEvents {
    # newest first, as Get-WinEvent returns them; dated relative to when the module loaded
    $recordIds = @{ System = 48211; Application = 20377 }
    foreach ($row in $script:EventRows) {
        $recordIds[$row.LogName] += 1
        New-DemoObject 'System.Diagnostics.Eventing.Reader.EventLogRecord', 'System.Diagnostics.Eventing.Reader.EventRecord', 'System.Object' ([ordered]@{
            Message = $row.Message
            Id = [int] $row.Id
            Version = [byte] 0
            Qualifiers = $null
            Level = [byte] $row.Level
            Task = 0
            Opcode = [int16] 0
            Keywords = [long] $(if ($row.LogName -eq 'System') { -9187343239835811840 } else { 36028797018963968 })
            RecordId = [long] $recordIds[$row.LogName]
            ProviderName = $row.ProviderName
            LogName = $row.LogName
            ProcessId = 4412
            MachineName = $script:ComputerName
            TimeCreated = $script:LoadedAt.AddHours(-[double] $row.HoursAgo)
            LevelDisplayName = $script:LevelNames[[int] $row.Level]
            TaskDisplayName = $null
            KeywordsDisplayNames = [string[]] @('Classic')
            PSComputerName = $script:ComputerName
        })
    }
}

function Get-WinEvent {
    <#
    .SYNOPSIS
    Gets events from the demo guests System and Application logs. (hvmagic demo guest: simulated data)
    #>
    [CmdletBinding(DefaultParameterSetName = 'GetLogSet')]
    param(
        [Parameter(Position = 0, ParameterSetName = 'GetLogSet')] [string[]] $LogName,
        [Parameter(Mandatory = $true, ParameterSetName = 'HashQuerySet')] [hashtable[]] $FilterHashtable,
        [Parameter(ParameterSetName = 'GetProviderSet')] [string[]] $ProviderName,
        [long] $MaxEvents = -1,
        [switch] $Oldest
    )
    $events = @(Get-DemoEvents)
    $selected = [System.Collections.Generic.List[object]]::new()
    $filters = if ($FilterHashtable) { $FilterHashtable } else { @(@{}) }
    foreach ($filter in $filters) {
        $keys = @{}
        foreach ($key in $filter.Keys) { $keys[$key.ToLowerInvariant()] = $filter[$key] }
        $logs = if ($keys.ContainsKey('logname')) { @($keys['logname']) } elseif ($LogName) { $LogName } else { $null }
        $providers = if ($keys.ContainsKey('providername')) { @($keys['providername']) } elseif ($ProviderName) { $ProviderName } else { $null }
        foreach ($record in $events) {
            if ($logs -and -not (Test-DemoLike $record.LogName $logs)) { continue }
            if ($providers -and -not (Test-DemoLike $record.ProviderName $providers)) { continue }
            if ($keys.ContainsKey('level') -and @($keys['level'] | ForEach-Object { [int] $_ }) -notcontains $record.Level) { continue }
            if ($keys.ContainsKey('id') -and @($keys['id'] | ForEach-Object { [int] $_ }) -notcontains $record.Id) { continue }
            if ($keys.ContainsKey('starttime') -and $record.TimeCreated -lt [datetime] $keys['starttime']) { continue }
            if ($keys.ContainsKey('endtime') -and $record.TimeCreated -gt [datetime] $keys['endtime']) { continue }
            if (-not $selected.Contains($record)) { $selected.Add($record) }
        }
    }
    $result = @($selected)
    if ($Oldest) { [array]::Reverse($result) }
    if ($MaxEvents -gt 0 -and $result.Count -gt $MaxEvents) { $result = $result[0..($MaxEvents - 1)] }
    if (-not $result) {
        Write-DemoError $PSCmdlet 'No events were found that match the specified selection criteria.' `
            'NoMatchingEventsFound' ObjectNotFound $null
    }
    $result
}

function Get-EventLog {
    <#
    .SYNOPSIS
    Gets entries of the demo guests classic event logs. (hvmagic demo guest: simulated data)
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory = $true, Position = 0)] [Alias('LN')] [string] $LogName,
        [ValidateRange(0, 2147483647)] [int] $Newest = [int]::MaxValue,
        [datetime] $After,
        [datetime] $Before,
        [ValidateSet('Error', 'Information', 'FailureAudit', 'SuccessAudit', 'Warning')] [string[]] $EntryType,
        [Alias('ABO')] [string[]] $Source
    )
    $types = @{ 1 = 'Error'; 2 = 'Error'; 3 = 'Warning'; 4 = 'Information'; 5 = 'Information' }
    $events = @(Get-DemoEvents | Where-Object LogName -EQ $LogName)
    if (-not $events -and @('System', 'Application') -notcontains $LogName) {
        Write-DemoError $PSCmdlet "The event log '$LogName' on computer '.' does not exist." `
            'System.InvalidOperationException' NotSpecified $LogName -Terminating
    }
    $count = 0
    foreach ($record in $events) {
        if ($count -ge $Newest) { break }
        $kind = $types[[int] $record.Level]
        if ($EntryType -and $EntryType -notcontains $kind) { continue }
        if ($Source -and -not (Test-DemoLike $record.ProviderName $Source)) { continue }
        if ($PSBoundParameters.ContainsKey('After') -and $record.TimeCreated -le $After) { continue }
        if ($PSBoundParameters.ContainsKey('Before') -and $record.TimeCreated -ge $Before) { continue }
        $count += 1
        New-DemoObject "System.Diagnostics.EventLogEntry#$LogName/$($record.ProviderName)/$($record.Id)", 'System.Diagnostics.EventLogEntry', 'System.ComponentModel.Component', 'System.MarshalByRefObject', 'System.Object' ([ordered]@{
            EventID = $record.Id
            MachineName = $script:ComputerName
            Data = [byte[]] @()
            Index = [int] $record.RecordId
            Category = '(0)'
            CategoryNumber = [int16] 0
            EntryType = [System.Diagnostics.EventLogEntryType] $kind
            Message = $record.Message
            Source = $record.ProviderName
            ReplacementStrings = [string[]] @()
            InstanceId = [long] $record.Id
            TimeGenerated = $record.TimeCreated
            TimeWritten = $record.TimeCreated
            UserName = $null
            Site = $null
            Container = $null
        })
    }
}

# ---- computer --------------------------------------------------------------------------------

function Get-ComputerInfo {
    <#
    .SYNOPSIS
    Gets the demo guests system and operating system properties. (hvmagic demo guest: simulated data)
    #>
    [CmdletBinding()]
    param([Parameter(Position = 0)] [string[]] $Property)
    $boot = Get-DemoBootTime
    $now = [datetime]::Now
    $info = [ordered]@{
        HvMagicSimulation = 'SIMULATED GUEST - data invented by hvmagic''s demo, not a real machine'
        WindowsBuildLabEx = '20348.1.amd64fre.fe_release.210507-1500'
        WindowsCurrentVersion = '6.3'
        WindowsEditionId = 'ServerDatacenter'
        WindowsInstallationType = 'Server'
        WindowsInstallDateFromRegistry = $now.AddDays(-431)
        WindowsProductName = 'Windows Server 2022 Datacenter'
        WindowsRegisteredOrganization = 'hvmagic simulated guest'
        WindowsRegisteredOwner = 'Administrator'
        WindowsSystemRoot = 'C:\Windows'
        WindowsVersion = '2009'
        BiosManufacturer = 'Microsoft Corporation'
        BiosSMBIOSBIOSVersion = 'Hyper-V UEFI Release v4.1'
        CsDNSHostName = $script:ComputerName
        CsDomain = 'WORKGROUP'
        CsManufacturer = 'Microsoft Corporation'
        CsModel = 'Virtual Machine'
        CsName = $script:ComputerName
        CsNumberOfLogicalProcessors = 2
        CsNumberOfProcessors = 1
        CsTotalPhysicalMemory = [long] 4294967296
        CsHypervisorPresent = $true
        OsName = 'Microsoft Windows Server 2022 Datacenter'
        OsType = 'WINNT'
        OsVersion = '10.0.20348'
        OsBuildNumber = '20348'
        OsArchitecture = '64-bit'
        OsLastBootUpTime = $boot
        OsUptime = $now - $boot
        OsLocale = 'en-US'
        OsFreePhysicalMemory = [long] 1812004
        TimeZone = '(UTC) Coordinated Universal Time'
        LogonServer = "\\$script:ComputerName"
        PowerPlatformRole = 'Desktop'
        HyperVisorPresent = $true
        DeviceGuardSmartStatus = 'Off'
        PSComputerName = $script:ComputerName
    }
    if ($Property) {
        $kept = [ordered]@{}
        foreach ($key in $info.Keys) { if (Test-DemoLike $key $Property) { $kept[$key] = $info[$key] } }
        $info = $kept
    }
    New-DemoObject 'Microsoft.PowerShell.Commands.ComputerInfo', 'System.Object' $info
}

function hostname { $script:ComputerName }

function whoami { "$($script:ComputerName.ToLowerInvariant())\administrator" }

function Get-CimInstance {
    <#
    .SYNOPSIS
    Gets Win32_OperatingSystem, Win32_QuickFixEngineering or Win32_Service of the demo guest. (hvmagic demo guest: simulated data)
    #>
    [CmdletBinding(DefaultParameterSetName = 'ClassNameComputerSet')]
    param(
        [Parameter(Mandatory = $true, Position = 0, ParameterSetName = 'ClassNameComputerSet')] [string] $ClassName,
        [Parameter(Mandatory = $true, ParameterSetName = 'QuerySessionSet')] [string] $Query,
        [string] $Namespace = 'root/cimv2',
        [string] $Filter,
        [string[]] $Property
    )
    if ($Query) {
        if ($Query -notmatch '^\s*select\s+.+?\s+from\s+(\w+)') {
            Write-DemoError $PSCmdlet 'Invalid query ' 'HRESULT 0x80041017' InvalidArgument $Query -Terminating
        }
        $ClassName = $Matches[1]
    }
    switch ($ClassName) {
        'Win32_OperatingSystem' {
            New-DemoObject 'Microsoft.Management.Infrastructure.CimInstance#root/cimv2/Win32_OperatingSystem', 'Microsoft.Management.Infrastructure.CimInstance#root/cimv2/CIM_OperatingSystem', 'Microsoft.Management.Infrastructure.CimInstance', 'System.Object' ([ordered]@{
                Caption = 'Microsoft Windows Server 2022 Datacenter'
                Version = '10.0.20348'
                BuildNumber = '20348'
                CSName = $script:ComputerName
                LastBootUpTime = Get-DemoBootTime
                FreePhysicalMemory = [uint64] 1812004
                TotalVisibleMemorySize = [uint64] 4193848
                PSComputerName = $script:ComputerName
            })
            return
        }
        'Win32_QuickFixEngineering' { Get-HotFix; return }
        'Win32_Service' {
            foreach ($service in Get-Service) {
                New-DemoObject 'Microsoft.Management.Infrastructure.CimInstance#root/cimv2/Win32_Service', 'Microsoft.Management.Infrastructure.CimInstance', 'System.Object' ([ordered]@{
                    Name = $service.Name
                    State = "$($service.Status)"
                    StartMode = $(if ("$($service.StartType)" -eq 'Automatic') { 'Auto' } else { "$($service.StartType)" })
                    DisplayName = $service.DisplayName
                })
            }
            return
        }
    }
    Write-DemoError $PSCmdlet 'Invalid class ' 'HRESULT 0x80041010' MetadataError $ClassName
}

function Get-WmiObject {
    <#
    .SYNOPSIS
    Gets the same classes as the demos Get-CimInstance. (hvmagic demo guest: simulated data)
    #>
    [CmdletBinding()]
    param([Parameter(Mandatory = $true, Position = 0)] [Alias('ClassName')] [string] $Class)
    Get-CimInstance -ClassName $Class
}

# ---- storage, network, tasks ----------------------------------------------------------------

function Get-Volume {
    <#
    .SYNOPSIS
    Gets the volumes of the demo guest. (hvmagic demo guest: simulated data)
    #>
    [CmdletBinding()]
    param([Parameter(Position = 0, ValueFromPipelineByPropertyName = $true)] [char[]] $DriveLetter)
    foreach ($row in $script:Data.Volumes) {
        if ($DriveLetter -and ($null -eq $row.DriveLetter -or $DriveLetter -notcontains [char] $row.DriveLetter)) { continue }
        New-DemoObject 'Microsoft.Management.Infrastructure.CimInstance#ROOT/Microsoft/Windows/Storage/MSFT_Volume', 'Microsoft.Management.Infrastructure.CimInstance#ROOT/Microsoft/Windows/Storage/MSFT_StorageObject', 'Microsoft.Management.Infrastructure.CimInstance#MSFT_Volume', 'Microsoft.Management.Infrastructure.CimInstance', 'System.Object' ([ordered]@{
            DriveLetter = $(if ($row.DriveLetter) { [char] $row.DriveLetter } else { $null })
            FriendlyName = $row.FileSystemLabel
            FileSystemType = $row.FileSystemType
            DriveType = $row.DriveType
            HealthStatus = $row.HealthStatus
            OperationalStatus = $(if ($row.HealthStatus -eq 'Healthy') { 'OK' } else { 'Degraded' })
            SizeRemaining = [uint64] $row.SizeRemaining
            Size = [uint64] $row.Size
            FileSystemLabel = $row.FileSystemLabel
            FileSystem = $(if ($row.FileSystemType -ne 'Unknown') { $row.FileSystemType } else { '' })
            AllocationUnitSize = [uint32] 4096
            PSComputerName = $script:ComputerName
        })
    }
}

function Get-NetIPAddress {
    <#
    .SYNOPSIS
    Gets the IP addresses of the demo guest. (hvmagic demo guest: simulated data)
    #>
    [CmdletBinding()]
    param(
        [Parameter(Position = 0)] [string[]] $IPAddress,
        [ValidateSet('IPv4', 'IPv6')] [string[]] $AddressFamily,
        [string[]] $InterfaceAlias,
        [uint32[]] $InterfaceIndex
    )
    foreach ($row in $script:Data.IPAddresses) {
        if ($IPAddress -and -not (Test-DemoLike $row.IPAddress $IPAddress)) { continue }
        if ($AddressFamily -and $AddressFamily -notcontains $row.AddressFamily) { continue }
        if ($InterfaceAlias -and -not (Test-DemoLike $row.InterfaceAlias $InterfaceAlias)) { continue }
        if ($InterfaceIndex -and $InterfaceIndex -notcontains $row.InterfaceIndex) { continue }
        New-DemoObject 'Microsoft.Management.Infrastructure.CimInstance#ROOT/StandardCimv2/MSFT_NetIPAddress', 'Microsoft.Management.Infrastructure.CimInstance#ROOT/StandardCimv2/MSFT_NetIPAddress', 'Microsoft.Management.Infrastructure.CimInstance', 'System.Object' ([ordered]@{
            IPAddress = $row.IPAddress
            InterfaceIndex = [int] $row.InterfaceIndex
            InterfaceAlias = $row.InterfaceAlias
            AddressFamily = $row.AddressFamily
            Type = 'Unicast'
            PrefixLength = [int] $row.PrefixLength
            PrefixOrigin = $row.PrefixOrigin
            SuffixOrigin = $row.SuffixOrigin
            AddressState = 'Preferred'
            ValidLifetime = $(if ($row.PrefixOrigin -eq 'Dhcp') { [timespan]::FromDays(1) } else { $null })
            SkipAsSource = $false
            PolicyStore = 'ActiveStore'
            PSComputerName = $script:ComputerName
        })
    }
}

function Get-ScheduledTask {
    <#
    .SYNOPSIS
    Gets the scheduled tasks of the demo guest. (hvmagic demo guest: simulated data)
    #>
    [CmdletBinding()]
    param(
        [Parameter(Position = 0)] [string[]] $TaskName,
        [Parameter(Position = 1)] [string[]] $TaskPath
    )
    foreach ($row in $script:Data.ScheduledTasks) {
        if ($TaskName -and -not (Test-DemoLike $row.TaskName $TaskName)) { continue }
        if ($TaskPath -and -not (Test-DemoLike $row.TaskPath $TaskPath)) { continue }
        New-DemoObject 'Microsoft.Management.Infrastructure.CimInstance#Root/Microsoft/Windows/TaskScheduler/MSFT_ScheduledTask', 'Microsoft.Management.Infrastructure.CimInstance#MSFT_ScheduledTask', 'Microsoft.Management.Infrastructure.CimInstance', 'System.Object' ([ordered]@{
            TaskPath = $row.TaskPath
            TaskName = $row.TaskName
            State = [enum]::Parse($script:TaskState, $row.State)
            Author = $row.Author
            Description = $row.Description
            URI = $row.TaskPath + $row.TaskName
            PSComputerName = $script:ComputerName
        })
    }
}

# ---- features ------------------------------------------------------------------------------

function New-DemoFeature($Row) {
    $installed = $script:State.Features -contains $Row.Name
    New-DemoObject 'Microsoft.Windows.ServerManager.Commands.Feature', 'System.Object' ([ordered]@{
        Name = $Row.Name
        DisplayName = $Row.DisplayName
        Description = "$($Row.DisplayName) (simulated)."
        Installed = $installed
        InstallState = [enum]::ToObject($script:InstallState, [int] $installed)
        FeatureType = $Row.FeatureType
        Path = $Row.DisplayName
        Depth = [int] $Row.Depth
        Parent = $Row.Parent
        PSComputerName = $script:ComputerName
    })
}

function Get-WindowsFeature {
    <#
    .SYNOPSIS
    Gets the roles and features of the demo guest. (hvmagic demo guest: simulated data)
    #>
    [CmdletBinding()]
    param([Parameter(Position = 0, ValueFromPipelineByPropertyName = $true)] [string[]] $Name)
    process {
        foreach ($row in $script:Data.Features) {
            if ($Name -and -not (Test-DemoLike $row.Name $Name)) { continue }
            New-DemoFeature $row
        }
    }
}

function Install-DemoFeature([string] $Name) {
    # installing a role installs its role services too, as the simulator does for Web-Server
    $rows = @($script:Data.Features | Where-Object Name -EQ $Name)
    if ($Name -eq 'Web-Server') { $rows = @($script:Data.Features | Where-Object { $_.Name -like 'Web-*' }) }
    $changed = foreach ($row in $rows) {
        if ($script:State.Features -notcontains $row.Name) {
            $script:State.Features = @($script:State.Features) + $row.Name
            $row
        }
    }
    if ($changed) {
        $script:State.PendingReboot = $true
        Save-DemoState
    }
    @($changed)
}

function Install-WindowsFeature {
    <#
    .SYNOPSIS
    Installs roles and features on the demo guest (a restart is then pending). (hvmagic demo guest: simulated data)
    #>
    [CmdletBinding(SupportsShouldProcess = $true)]
    param(
        [Parameter(Mandatory = $true, Position = 0, ValueFromPipelineByPropertyName = $true)] [string[]] $Name,
        [switch] $IncludeAllSubFeature,
        [switch] $IncludeManagementTools,
        [switch] $Restart
    )
    process {
        $changed = @()
        foreach ($featureName in $Name) {
            if (-not ($script:Data.Features | Where-Object Name -EQ $featureName)) {
                Write-DemoError $PSCmdlet "ArgumentNotValid: The role, role service, or feature name is not valid: '$featureName'. The name was not found." `
                    'NameDoesNotExist' InvalidArgument $featureName -Terminating
            }
            if ($PSCmdlet.ShouldProcess($featureName)) { $changed += Install-DemoFeature $featureName }
        }
        New-DemoObject 'Microsoft.Windows.ServerManager.Commands.FeatureOperationResult', 'System.Object' ([ordered]@{
            Success = $true
            RestartNeeded = [enum]::ToObject($script:RestartState, [int] [bool] $changed)
            FeatureResult = [string[]] @($changed | ForEach-Object DisplayName)
            ExitCode = [enum]::ToObject($script:ExitCode, $(if ($changed) { 0 } else { 1003 }))
        })
    }
}

Set-Alias -Name Add-WindowsFeature -Value Install-WindowsFeature

# ---- DSC status ------------------------------------------------------------------------------

function Get-DscConfigurationStatus {
    <#
    .SYNOPSIS
    Gets the status of the demo guests last DSC run. (hvmagic demo guest: simulated data)
    #>
    [CmdletBinding()]
    param()
    $last = $script:State.DscLastRun
    if ($null -eq $last) { return }
    New-DemoObject 'Microsoft.Management.Infrastructure.CimInstance#root/Microsoft/Windows/DesiredStateConfiguration/MSFT_DSCConfigurationStatus', 'Microsoft.Management.Infrastructure.CimInstance', 'System.Object' ([ordered]@{
        Status = $last.Status
        StartDate = [datetime] $last.StartDate
        Type = 'Initial'
        Mode = 'PUSH'
        RebootRequested = [bool] $last.RebootRequested
        NumberOfResources = [int] $last.NumberOfResources
        PSComputerName = $script:ComputerName
    })
}

function Test-DscConfiguration {
    <#
    .SYNOPSIS
    Tells whether the demo guest is in its desired state. (hvmagic demo guest: simulated data)
    #>
    [CmdletBinding()]
    param()
    ($null -ne $script:State.DscLastRun) -and -not $script:State.PendingReboot
}

function Get-DscLocalConfigurationManager {
    <#
    .SYNOPSIS
    Gets the demo guests Local Configuration Manager settings. (hvmagic demo guest: simulated data)
    #>
    [CmdletBinding()]
    param()
    New-DemoObject 'Microsoft.Management.Infrastructure.CimInstance#root/Microsoft/Windows/DesiredStateConfiguration/MSFT_DSCMetaConfiguration', 'Microsoft.Management.Infrastructure.CimInstance', 'System.Object' ([ordered]@{
        ActionAfterReboot = 'ContinueConfiguration'
        ConfigurationMode = 'ApplyAndMonitor'
        LCMState = $(if ($script:State.PendingReboot) { 'PendingReboot' } else { 'Idle' })
        LCMStateDetail = ''
        RebootNodeIfNeeded = $false
        RefreshMode = 'PUSH'
        PSComputerName = $script:ComputerName
    })
}

# ---- restart, shutdown ----------------------------------------------------------------------
# Shadowed on every platform: PowerShell's own Restart-Computer / Stop-Computer would restart or
# power off the machine the demo runs on.

function Invoke-DemoBoot {
    # what the machine looks like after booting: a new boot time, services back at their start
    # types (a manual stop does not survive), stopped processes back, no reboot pending
    $script:State.BootTime = [datetime]::Now.ToUniversalTime().AddSeconds(1).ToString('o')
    $script:State.BootCount = [int] $script:State.BootCount + 1
    $script:State.PendingReboot = $false
    $script:State.PoweredOff = $false
    $script:State.StoppedProcesses = @()
    foreach ($row in (Get-DemoServiceRows)) {
        $state = $script:State.Services[$row.Name]
        if ($null -ne $state) {
            $state.Running = ($state.StartType -eq 'Automatic') -or ([bool] $row.Running -and $state.StartType -ne 'Disabled')
        }
    }
    Save-DemoState
}

function Stop-DemoServer {
    # Like Windows, the command returns first and the connection drops a moment later: another
    # process ends this server once this pipeline has answered (sh where there is one: a second
    # PowerShell can take seconds to start on a busy machine). Its standard streams are
    # redirected: inherited, they would be this server's protocol pipe.
    $self = [System.Diagnostics.Process]::GetCurrentProcess()
    if ([System.IO.File]::Exists('/bin/sh')) {
        $info = [System.Diagnostics.ProcessStartInfo]::new('/bin/sh')
        $info.ArgumentList.Add('-c')
        $info.ArgumentList.Add("sleep 0.3; kill -9 $($self.Id)")
    } else {
        $info = [System.Diagnostics.ProcessStartInfo]::new($self.MainModule.FileName)
        $info.Arguments = "-NoLogo -NoProfile -NonInteractive -Command Start-Sleep -Milliseconds 300; Stop-Process -Id $($self.Id) -Force"
    }
    $info.UseShellExecute = $false
    $info.RedirectStandardInput = $true
    $info.RedirectStandardOutput = $true
    $info.RedirectStandardError = $true
    $null = [System.Diagnostics.Process]::Start($info)
}

function Restart-Computer {
    <#
    .SYNOPSIS
    Restarts the demo guest: the session ends, a new one finds it booted later. (hvmagic demo guest: simulated data)
    #>
    [CmdletBinding(SupportsShouldProcess = $true)]
    param([Parameter(Position = 0)] [string[]] $ComputerName = '.', [switch] $Force, [switch] $Wait)
    if (-not $PSCmdlet.ShouldProcess("$script:ComputerName (localhost)")) { return }
    Invoke-DemoBoot
    Stop-DemoServer
}

function Stop-Computer {
    <#
    .SYNOPSIS
    Shuts the demo guest down: the session ends; the next one finds it started again. (hvmagic demo guest: simulated data)
    #>
    [CmdletBinding(SupportsShouldProcess = $true)]
    param([Parameter(Position = 0)] [string[]] $ComputerName = '.', [switch] $Force)
    if (-not $PSCmdlet.ShouldProcess("$script:ComputerName (localhost)")) { return }
    # the next session finds the machine powered on again, booted then
    $script:State.PoweredOff = $true
    Save-DemoState
    Stop-DemoServer
}

# ---- what would reach the real machine ------------------------------------------------------
# PowerShell's own Stop-Process would end the HOST's processes with the demo's ids (768, 832 …
# are real process ids on the machine running the demo); the demo stops its own instead.

function Stop-Process {
    <#
    .SYNOPSIS
    Stops a process of the demo guest (never one of the machine running the demo). (hvmagic demo guest: simulated data)
    #>
    [CmdletBinding(SupportsShouldProcess = $true, DefaultParameterSetName = 'Id')]
    param(
        [Parameter(Mandatory = $true, Position = 0, ValueFromPipelineByPropertyName = $true, ParameterSetName = 'Id')]
        [int[]] $Id,
        [Parameter(Mandatory = $true, ValueFromPipelineByPropertyName = $true, ParameterSetName = 'Name')]
        [Alias('ProcessName')] [string[]] $Name,
        [Parameter(Mandatory = $true, Position = 0, ValueFromPipeline = $true, ParameterSetName = 'InputObject')]
        [object[]] $InputObject,
        [switch] $PassThru,
        [switch] $Force
    )
    process {
        $targets = switch ($PSCmdlet.ParameterSetName) {
            'Id' { Get-Process -Id $Id }
            'Name' { Get-Process -Name $Name }
            'InputObject' { Get-Process -Id @($InputObject | ForEach-Object Id) }
        }
        foreach ($process in $targets) {
            if (-not $PSCmdlet.ShouldProcess("$($process.ProcessName) ($($process.Id))")) { continue }
            if ($process.Id -le 4) {
                Write-DemoError $PSCmdlet "Cannot stop process `"$($process.ProcessName) ($($process.Id))`" because of the following error: Access is denied." `
                    'CouldNotStopProcess' CloseError $process
                continue
            }
            $script:State.StoppedProcesses = @($script:State.StoppedProcesses) + $process.Id
            Save-DemoState
            if ($PassThru) { $process }
        }
    }
}

function Set-Service {
    <#
    .SYNOPSIS
    Changes the start type or status of a demo guest service. (hvmagic demo guest: simulated data)
    #>
    [CmdletBinding(SupportsShouldProcess = $true, DefaultParameterSetName = 'Name')]
    param(
        [Parameter(Mandatory = $true, Position = 0, ValueFromPipelineByPropertyName = $true, ParameterSetName = 'Name')]
        [Alias('ServiceName', 'SN')] [string] $Name,
        [Parameter(ValueFromPipeline = $true, ParameterSetName = 'InputObject')] [object] $InputObject,
        [ValidateSet('Automatic', 'Manual', 'Disabled', 'AutomaticDelayedStart')]
        [Alias('StartMode', 'SM', 'ST', 'StartType')] [string] $StartupType,
        [ValidateSet('Running', 'Stopped', 'Paused')] [string] $Status,
        [switch] $PassThru,
        [switch] $Force
    )
    process {
        $serviceName = if ($InputObject) { $InputObject.Name } else { $Name }
        $service = Get-Service -Name $serviceName -ErrorAction Stop
        if (-not $PSCmdlet.ShouldProcess("$($service.DisplayName) ($($service.Name))")) { return }
        $state = $script:State.Services[$service.Name]
        if ($StartupType) {
            $state.StartType = $(if ($StartupType -eq 'AutomaticDelayedStart') { 'Automatic' } else { $StartupType })
        }
        if ($Status -eq 'Running') { Start-Service -Name $service.Name }
        if ($Status -eq 'Stopped') { Stop-Service -Name $service.Name }
        Save-DemoState
        if ($PassThru) { Get-Service -Name $service.Name }
    }
}

function Uninstall-WindowsFeature {
    <#
    .SYNOPSIS
    Removes roles and features from the demo guest (a restart is then pending). (hvmagic demo guest: simulated data)
    #>
    [CmdletBinding(SupportsShouldProcess = $true)]
    param(
        [Parameter(Mandatory = $true, Position = 0, ValueFromPipelineByPropertyName = $true)] [string[]] $Name,
        [switch] $IncludeManagementTools,
        [switch] $Restart
    )
    process {
        $removed = @()
        foreach ($featureName in $Name) {
            $row = $script:Data.Features | Where-Object Name -EQ $featureName
            if (-not $row) {
                Write-DemoError $PSCmdlet "ArgumentNotValid: The role, role service, or feature name is not valid: '$featureName'. The name was not found." `
                    'NameDoesNotExist' InvalidArgument $featureName -Terminating
            }
            if ($script:State.Features -contains $featureName -and $PSCmdlet.ShouldProcess($featureName)) {
                $script:State.Features = @($script:State.Features | Where-Object { $_ -ne $featureName })
                $script:State.PendingReboot = $true
                $removed += $row
            }
        }
        Save-DemoState
        New-DemoObject 'Microsoft.Windows.ServerManager.Commands.FeatureOperationResult', 'System.Object' ([ordered]@{
            Success = $true
            RestartNeeded = [enum]::ToObject($script:RestartState, [int] [bool] $removed)
            FeatureResult = [string[]] @($removed | ForEach-Object DisplayName)
            ExitCode = [enum]::ToObject($script:ExitCode, $(if ($removed) { 0 } else { 1003 }))
        })
    }
}

Set-Alias -Name Remove-WindowsFeature -Value Uninstall-WindowsFeature

# On Windows the real Start-DscConfiguration would configure the HOST; the demo has no Local
# Configuration Manager, so it says so instead (a Configuration needs Windows PowerShell's DSC
# anyway: the DSC runbook's demo is its recording).
function Start-DscConfiguration {
    <#
    .SYNOPSIS
    Refuses: the demo guest has no Local Configuration Manager. (hvmagic demo guest: simulated data)
    #>
    [CmdletBinding(SupportsShouldProcess = $true)]
    param(
        [Parameter(Position = 0)] [string] $Path,
        [switch] $Wait,
        [switch] $Force,
        [switch] $UseExisting
    )
    Write-DemoError $PSCmdlet ("The demo guest ($script:ComputerName) has no Local Configuration " +
        'Manager: it does not apply DSC configurations. Run this against a Windows guest, or replay ' +
        'the recording of the DSC runbook.') 'DemoGuestHasNoLcm' NotImplemented $Path -Terminating
}

# ---- network adapters ------------------------------------------------------------------------
# One synthetic Hyper-V adapter behind the demo's "Ethernet" addresses (Get-NetIPAddress); the
# loopback pseudo-interface is not a network adapter, as on Windows.

$script:NetAdapters = @(
    [ordered]@{ Name = 'Ethernet'; InterfaceDescription = 'Microsoft Hyper-V Network Adapter'
        ifIndex = 6; Status = 'Up'; MacAddress = '00-15-5D-2A-9F-10'; LinkSpeed = '10 Gbps'
        Speed = [uint64] 10000000000; DeviceID = '{7D9A8C41-2E5B-4F0D-9B3C-5A1E6F2D8C10}' }
)

function Get-NetAdapter {
    <#
    .SYNOPSIS
    Gets the network adapters of the demo guest. (hvmagic demo guest: simulated data)
    #>
    [CmdletBinding(DefaultParameterSetName = 'ByName')]
    param(
        [Parameter(Position = 0, ParameterSetName = 'ByName')] [Alias('ifAlias', 'InterfaceAlias')] [string[]] $Name,
        [Parameter(Mandatory = $true, ParameterSetName = 'ByInstanceID')] [Alias('ifDesc')] [string[]] $InterfaceDescription,
        [Parameter(Mandatory = $true, ParameterSetName = 'ByIfIndex')] [Alias('ifIndex')] [int[]] $InterfaceIndex,
        [switch] $IncludeHidden,
        [switch] $Physical
    )
    $wanted = switch ($PSCmdlet.ParameterSetName) {
        'ByName' { @{ Property = 'Name'; Values = $Name } }
        'ByInstanceID' { @{ Property = 'InterfaceDescription'; Values = $InterfaceDescription } }
        'ByIfIndex' { @{ Property = 'ifIndex'; Values = $InterfaceIndex } }
    }
    foreach ($value in @(if ($wanted.Values) { $wanted.Values } else { '*' })) {
        $hits = @($script:NetAdapters | Where-Object { "$($_[$wanted.Property])" -like "$value" })
        if (-not $hits -and -not [System.Management.Automation.WildcardPattern]::ContainsWildcardCharacters("$value")) {
            Write-DemoError $PSCmdlet "No MSFT_NetAdapter objects found with property '$($wanted.Property)' equal to '$value'.  Verify the value of the property and retry." `
                'Windows System Error 1168' ObjectNotFound $value
        }
        foreach ($row in $hits) {
            New-DemoObject 'Microsoft.Management.Infrastructure.CimInstance#ROOT/StandardCimv2/MSFT_NetAdapter', 'Microsoft.Management.Infrastructure.CimInstance#ROOT/StandardCimv2/CIM_NetworkAdapter', 'Microsoft.Management.Infrastructure.CimInstance#MSFT_NetAdapter', 'Microsoft.Management.Infrastructure.CimInstance', 'System.Object' ([ordered]@{
                Name = $row.Name
                InterfaceDescription = $row.InterfaceDescription
                ifIndex = [uint32] $row.ifIndex
                Status = $row.Status
                MacAddress = $row.MacAddress
                LinkSpeed = $row.LinkSpeed
                MediaType = '802.3'
                PhysicalMediaType = 'Unspecified'
                AdminStatus = 'Up'
                MediaConnectionState = 'Connected'
                DriverInformation = 'Driver Date 2006-06-21 Version 10.0.20348.1 NDIS 6.85'
                DriverFileName = 'netvsc.sys'
                NdisVersion = '6.85'
                ifOperStatus = 'Up'
                InterfaceAlias = $row.Name
                InterfaceIndex = [uint32] $row.ifIndex
                InterfaceGuid = $row.DeviceID
                DeviceID = $row.DeviceID
                MtuSize = [uint32] 1500
                FullDuplex = $true
                VlanID = [uint32] 0
                Virtual = $false
                Speed = $row.Speed
                ReceiveLinkSpeed = $row.Speed
                TransmitLinkSpeed = $row.Speed
                PSComputerName = $script:ComputerName
            })
        }
    }
}

# ---- registry --------------------------------------------------------------------------------
# A few keys admins read (the OS build, the computer name, the Hyper-V data exchange values the
# host wrote, the time service), as Get-ItemProperty returns them on Windows. The host running
# the demo has no registry (or must not be read): other registry paths fail as a missing key
# fails on Windows, and every other path goes to PowerShell's own Get-ItemProperty.

$script:Registry = @{
    'HKEY_LOCAL_MACHINE\SOFTWARE\Microsoft\Windows NT\CurrentVersion' = [ordered]@{
        SystemRoot = 'C:\Windows'; BuildBranch = 'fe_release'; BuildGUID = 'ffffffff-ffff-ffff-ffff-ffffffffffff'
        BuildLab = '20348.fe_release.210507-1500'; BuildLabEx = '20348.1.amd64fre.fe_release.210507-1500'
        CompositionEditionID = 'ServerDatacenter'; CurrentBuild = '20348'; CurrentBuildNumber = '20348'
        CurrentMajorVersionNumber = [int] 10; CurrentMinorVersionNumber = [int] 0; CurrentType = 'Multiprocessor Free'
        CurrentVersion = '6.3'; DisplayVersion = '21H2'; EditionID = 'ServerDatacenter'
        InstallationType = 'Server'; InstallDate = [int] 1693526400; ProductName = 'Windows Server 2022 Datacenter'
        ReleaseId = '2009'; RegisteredOrganization = 'hvmagic simulated guest'; RegisteredOwner = 'Administrator'
        UBR = [int] 2849; PathName = 'C:\Windows'
    }
    'HKEY_LOCAL_MACHINE\SYSTEM\CurrentControlSet\Control\ComputerName\ComputerName' = [ordered]@{
        ComputerName = 'SIMULATED-GUEST'
    }
    # what the Hyper-V host publishes to the guest (KVP data exchange), invented
    'HKEY_LOCAL_MACHINE\SOFTWARE\Microsoft\Virtual Machine\Guest\Parameters' = [ordered]@{
        HostName = 'HV-HOST01.contoso.local'; PhysicalHostName = 'HV-HOST01'
        PhysicalHostNameFullyQualified = 'HV-HOST01.contoso.local'; VirtualMachineName = 'SIMULATED-GUEST'
        VirtualMachineId = '8F2C4B1E-6D3A-4E7F-9C21-5B8A0D3E6F47'
    }
    'HKEY_LOCAL_MACHINE\SYSTEM\CurrentControlSet\Services\W32Time\Parameters' = [ordered]@{
        ServiceDll = '%systemroot%\system32\w32time.dll'; NtpServer = 'time.windows.com,0x9'; Type = 'NTP'
    }
}
$script:Hives = [ordered]@{ HKLM = 'HKEY_LOCAL_MACHINE'; HKCU = 'HKEY_CURRENT_USER'; HKCR = 'HKEY_CLASSES_ROOT'; HKU = 'HKEY_USERS'; HKCC = 'HKEY_CURRENT_CONFIG' }

function ConvertTo-DemoRegistryKey([string] $Path) {
    # 'HKLM:\SOFTWARE\x', 'Registry::HKEY_LOCAL_MACHINE\SOFTWARE\x' ... -> 'HKEY_LOCAL_MACHINE\SOFTWARE\x'
    # (nothing when the path is not a registry path)
    $text = $Path -replace '^Microsoft\.PowerShell\.Core\\', ''
    if ($text -match '^Registry::(.+)$') { $text = $Matches[1] }
    elseif ($text -match '^(HK[A-Z]{1,3}):(.*)$' -and $script:Hives.Contains($Matches[1].ToUpperInvariant())) {
        $text = $script:Hives[$Matches[1].ToUpperInvariant()] + '\' + $Matches[2].TrimStart('\')
    } else { return $null }
    $text.TrimEnd('\')
}

function Get-DemoRegistryValues([System.Management.Automation.PSCmdlet] $Cmdlet, [string] $Path, [string[]] $Name) {
    $key = ConvertTo-DemoRegistryKey $Path
    $values = $null
    foreach ($known in $script:Registry.Keys) { if ($known -eq $key) { $values = $script:Registry[$known]; $key = $known } }
    if ($null -eq $values) {
        Write-DemoError $Cmdlet "Cannot find path '$Path' because it does not exist." 'PathNotFound' ObjectNotFound $Path
        return
    }
    $hive = ($script:Hives.GetEnumerator() | Where-Object Value -EQ $key.Split('\')[0]).Key
    $properties = [ordered]@{}
    foreach ($valueName in $values.Keys) {
        if ($Name -and -not (Test-DemoLike $valueName $Name)) { continue }
        $properties[$valueName] = $values[$valueName]
    }
    if ($Name -and -not $properties.Count) {
        Write-DemoError $Cmdlet "Property $($Name -join ', ') does not exist at path $($key.Replace($key.Split('\')[0], $script:Hives[$hive]))." `
            'System.Management.Automation.PSArgumentException' InvalidArgument $Name[0]
        return
    }
    $properties['PSPath'] = "Microsoft.PowerShell.Core\Registry::$key"
    $properties['PSParentPath'] = "Microsoft.PowerShell.Core\Registry::$($key.Substring(0, $key.LastIndexOf('\')))"
    $properties['PSChildName'] = $key.Substring($key.LastIndexOf('\') + 1)
    $properties['PSDrive'] = $hive
    $properties['PSProvider'] = 'Microsoft.PowerShell.Core\Registry'
    [pscustomobject] $properties
}

function Get-ItemProperty {
    <#
    .SYNOPSIS
    Gets the properties of an item; the demo guest's registry keys are simulated. (hvmagic demo guest: simulated data)
    #>
    [CmdletBinding(DefaultParameterSetName = 'Path')]
    param(
        [Parameter(ParameterSetName = 'Path', Mandatory = $true, Position = 0, ValueFromPipeline = $true, ValueFromPipelineByPropertyName = $true)]
        [string[]] $Path,
        [Parameter(ParameterSetName = 'LiteralPath', Mandatory = $true, ValueFromPipelineByPropertyName = $true)]
        [Alias('PSPath', 'LP')] [string[]] $LiteralPath,
        [Parameter(Position = 1)] [Alias('PSProperty')] [string[]] $Name,
        [string] $Filter,
        [string[]] $Include,
        [string[]] $Exclude,
        [pscredential] $Credential
    )
    process {
        $paths = if ($PSCmdlet.ParameterSetName -eq 'Path') { $Path } else { $LiteralPath }
        foreach ($item in $paths) {
            if ($null -ne (ConvertTo-DemoRegistryKey $item)) { Get-DemoRegistryValues $PSCmdlet $item $Name; continue }
            $forward = @{} + $PSBoundParameters
            $forward.Remove('Path'); $forward.Remove('LiteralPath')
            $forward[$(if ($PSCmdlet.ParameterSetName -eq 'Path') { 'Path' } else { 'LiteralPath' })] = $item
            Microsoft.PowerShell.Management\Get-ItemProperty @forward
        }
    }
}

function Get-ItemPropertyValue {
    <#
    .SYNOPSIS
    Gets the value of an item property; the demo guest's registry keys are simulated. (hvmagic demo guest: simulated data)
    #>
    [CmdletBinding(DefaultParameterSetName = 'Path')]
    param(
        [Parameter(ParameterSetName = 'Path', Position = 0, ValueFromPipeline = $true, ValueFromPipelineByPropertyName = $true)]
        [string[]] $Path,
        [Parameter(ParameterSetName = 'LiteralPath', Mandatory = $true, ValueFromPipelineByPropertyName = $true)]
        [Alias('PSPath', 'LP')] [string[]] $LiteralPath,
        [Parameter(Mandatory = $true, Position = 1)] [Alias('PSProperty')] [string[]] $Name,
        [string] $Filter,
        [string[]] $Include,
        [string[]] $Exclude,
        [pscredential] $Credential
    )
    process {
        $paths = if ($PSCmdlet.ParameterSetName -eq 'Path') { $Path } else { $LiteralPath }
        foreach ($item in $paths) {
            if ($null -ne (ConvertTo-DemoRegistryKey $item)) {
                $found = Get-DemoRegistryValues $PSCmdlet $item $Name
                if ($found) { foreach ($valueName in $Name) { $found.$valueName } }
                continue
            }
            $forward = @{} + $PSBoundParameters
            $forward.Remove('Path'); $forward.Remove('LiteralPath')
            $forward[$(if ($PSCmdlet.ParameterSetName -eq 'Path') { 'Path' } else { 'LiteralPath' })] = $item
            Microsoft.PowerShell.Management\Get-ItemPropertyValue @forward
        }
    }
}

# ---- Windows' aliases ------------------------------------------------------------------------
# PowerShell on Linux and macOS leaves out the aliases that shadow native commands there (ls, ps,
# sort, cat ...), and has no service cmdlets to alias: `ps | sort CPU` at the demo would run the
# HOST's /bin/ps. A Windows guest has them; the demo defines the ones this PowerShell lacks.

$script:WindowsAliases = [ordered]@{
    ac = 'Add-Content'; cat = 'Get-Content'; clear = 'Clear-Host'; compare = 'Compare-Object'
    cp = 'Copy-Item'; cpp = 'Copy-ItemProperty'; diff = 'Compare-Object'; kill = 'Stop-Process'
    ls = 'Get-ChildItem'; man = 'help'; mount = 'New-PSDrive'; mv = 'Move-Item'; ps = 'Get-Process'
    rm = 'Remove-Item'; rmdir = 'Remove-Item'; sleep = 'Start-Sleep'; sort = 'Sort-Object'
    start = 'Start-Process'; tee = 'Tee-Object'; write = 'Write-Output'; gsv = 'Get-Service'
    sasv = 'Start-Service'; spsv = 'Stop-Service'; gwmi = 'Get-WmiObject'; gcim = 'Get-CimInstance'
}
$script:WindowsAliasNames = @(foreach ($alias in $script:WindowsAliases.Keys) {
    # the alias drive, not Get-Command: Get-Command's first call analyses every module on
    # PSModulePath (0.4 s of each demo guest's start), and built-in aliases are all it must see
    if (-not (Test-Path -LiteralPath "Alias:$alias")) {
        Set-Alias -Name $alias -Value $script:WindowsAliases[$alias]
        $alias
    }
})

# ---- the demo's C: drive -------------------------------------------------------------------

function Initialize-DemoDrive([string] $Root) {
    if (-not $Root) { return }
    foreach ($folder in 'Users\Administrator\Documents', 'Windows\Temp', 'Windows\Logs',
            'Program Files\WindowsPowerShell\Modules', 'ProgramData') {
        $null = [System.IO.Directory]::CreateDirectory([System.IO.Path]::Combine($Root, $folder.Replace('\', [System.IO.Path]::DirectorySeparatorChar)))
    }
    # The logs carry a fixed time (the month of the failed cumulative update they describe), in
    # their text and as their write time: their bytes, and a zip of them, are then the same in
    # every run, so the shipped recordings of the runbooks that collect them do not drift. A
    # wall-clock time (as the guest's own clock reads it), so a zip's entry times (local time)
    # are the same in every time zone too.
    $written = [datetime]::new(2024, 10, 9, 3, 12, 45)
    $stamp = $written.ToString('yyyy-MM-dd HH:mm:ss', [cultureinfo]::InvariantCulture)
    foreach ($file in $script:Data.LogFiles.PSObject.Properties) {
        $relative = $file.Name.Substring(3).Replace('\', [System.IO.Path]::DirectorySeparatorChar)
        $path = [System.IO.Path]::Combine($Root, $relative)
        if (-not [System.IO.File]::Exists($path)) {
            $null = [System.IO.Directory]::CreateDirectory([System.IO.Path]::GetDirectoryName($path))
            [System.IO.File]::WriteAllText($path, $file.Value.Replace('{ts}', $stamp))
            [System.IO.File]::SetLastWriteTime($path, $written)
        }
    }
    # a drive C: rooted in the demo folder, so the runbooks' C:\ paths land there (on Windows it
    # replaces the real C: for this session only: the demo never touches the host's disk by path)
    if (Get-PSDrive -Name C -PSProvider FileSystem -ErrorAction Ignore) {
        Remove-PSDrive -Name C -Force -Scope Global -ErrorAction Ignore
    }
    $null = New-PSDrive -Name C -PSProvider FileSystem -Root $Root -Scope Global
}

if ($script:State.PoweredOff) { Invoke-DemoBoot }  # after Stop-Computer: switched on again
Initialize-DemoDrive $DriveRoot

Export-ModuleMember -Alias (@('Add-WindowsFeature', 'Remove-WindowsFeature') + $script:WindowsAliasNames) -Function @(
    'Get-NetAdapter', 'Get-ItemProperty', 'Get-ItemPropertyValue',
    'Stop-Computer', 'Stop-Process', 'Set-Service', 'Uninstall-WindowsFeature', 'Start-DscConfiguration',
    'Get-Service', 'Start-Service', 'Stop-Service', 'Restart-Service', 'Get-Process',
    'Get-HotFix', 'Get-WinEvent', 'Get-EventLog', 'Get-ComputerInfo', 'Get-CimInstance',
    'Get-WmiObject', 'Get-Volume', 'Get-NetIPAddress', 'Get-ScheduledTask',
    'Get-WindowsFeature', 'Install-WindowsFeature', 'Get-DscConfigurationStatus',
    'Test-DscConfiguration', 'Get-DscLocalConfigurationManager', 'Restart-Computer',
    'hostname', 'whoami')
