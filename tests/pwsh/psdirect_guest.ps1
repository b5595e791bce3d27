# The guest end of a PowerShell Direct session, minus AF_HYPERV and the broker, for
# tests/pwsh/test_psdirect_handshake.py.
#
# Standard input and output are the second connection's socket (the test hands one end of a
# socket pair to this process). Like the guest PowerShell the broker starts, this process first
# checks the token with PowerShell's own RemoteSessionHyperVSocketServer.ValidateToken (through
# reflection: it is internal), then serves OutOfProc PSRP on the same socket, in the same
# process, with the server `pwsh -s` runs (StdIOProcessMediator, also internal).
param([Parameter(Mandatory)] [string] $Token)

$ErrorActionPreference = 'Stop'
$static = [Reflection.BindingFlags]'Public,NonPublic,Static'
$serverType = [psobject].Assembly.GetType('System.Management.Automation.Remoting.RemoteSessionHyperVSocketServer', $true)
$validate = $serverType.GetMethod('ValidateToken', $static)
$lifeSeconds = [int]$serverType.GetField('MAX_TOKEN_LIFE_MINUTES', $static).GetValue($null) * 60

# File descriptor 0 is the socket; not owned, so disposing this object leaves it open.
$sock = [Net.Sockets.Socket]::new([Net.Sockets.SafeSocketHandle]::new([IntPtr]0, $false))
try {
    $null = $validate.Invoke($null, @($sock, $Token, [DateTimeOffset]::UtcNow, $lifeSeconds))
} catch {
    $e = $_.Exception
    while ($null -ne $e.InnerException) { $e = $e.InnerException }
    [Console]::Error.WriteLine("guest: token refused: $($e.GetType().Name): $($e.Message)")
    exit 3
}

[Console]::Error.WriteLine("guest: token accepted; serving OutOfProc PSRP as process $PID")
# What `pwsh -s` runs (ConsoleHost in server mode): PowerShell's stdio OutOfProc server, on
# standard input and output, which are still the socket.
$mediator = [psobject].Assembly.GetType('System.Management.Automation.Remoting.Server.StdIOProcessMediator', $true)
$null = $mediator.GetMethod('Run', $static).Invoke($null, @($null, $null, $null, $null, $false))
