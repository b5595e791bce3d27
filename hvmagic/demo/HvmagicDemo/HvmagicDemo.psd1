@{
    # hvmagic's demo guest: real PowerShell answering with SIMULATED Windows data (see the .psm1)
    RootModule = 'HvmagicDemo.psm1'
    # the table views Windows' own modules give these objects (Get-Volume's sizes ...)
    FormatsToProcess = @('HvmagicDemo.format.ps1xml')
    ModuleVersion = '0.1.0'
    GUID = '5b0f7f0e-4d53-4a3e-9a43-6f1d2c9a8e51'
    Author = 'hvmagic'
    Description = 'Simulated Windows Server inventory for the hvmagic demo guest (invented data).'
    PowerShellVersion = '5.1'
    FunctionsToExport = @(
        'Get-Service', 'Start-Service', 'Stop-Service', 'Restart-Service', 'Get-Process',
        'Get-HotFix', 'Get-WinEvent', 'Get-EventLog', 'Get-ComputerInfo', 'Get-CimInstance',
        'Get-WmiObject', 'Get-Volume', 'Get-NetIPAddress', 'Get-ScheduledTask',
        'Get-WindowsFeature', 'Install-WindowsFeature', 'Get-DscConfigurationStatus',
        'Test-DscConfiguration', 'Get-DscLocalConfigurationManager', 'Restart-Computer',
        'hostname', 'whoami', 'Stop-Computer', 'Stop-Process', 'Set-Service',
        'Uninstall-WindowsFeature', 'Start-DscConfiguration',
        'Get-NetAdapter', 'Get-ItemProperty', 'Get-ItemPropertyValue')
    # with Windows' aliases that PowerShell on Linux/macOS lacks (the .psm1 exports those absent)
    AliasesToExport = @('Add-WindowsFeature', 'Remove-WindowsFeature', 'ac', 'cat', 'clear',
        'compare', 'cp', 'cpp', 'diff', 'kill', 'ls', 'man', 'mount', 'mv', 'ps', 'rm', 'rmdir',
        'sleep', 'sort', 'start', 'tee', 'write', 'gsv', 'sasv', 'spsv', 'gwmi', 'gcim')
    CmdletsToExport = @()
    VariablesToExport = @()
}
