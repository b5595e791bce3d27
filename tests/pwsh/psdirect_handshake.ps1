# PowerShell's own PowerShell Direct handshake code, driven over TCP loopback for
# tests/pwsh/test_psdirect_handshake.py (one pwsh process serves every case: start-up is the
# expensive part).
#
# The methods are internal statics of System.Management.Automation that take any connected
# Socket, so they are reached through reflection:
#   RemoteSessionHyperVSocketClient.ExchangeCredentialsAndConfiguration(NetworkCredential, string, Socket, bool)
#       the host's broker conversation (first connection);
#   RemoteSessionHyperVSocketClient.PerformTransportVersionAndTokenExchange(Socket, string)
#       the host's token presentation (second connection);
#   RemoteSessionHyperVSocketServer.ValidateToken(Socket, string, DateTimeOffset, int)
#       the guest PowerShell's token check (second connection, server side).
#
# Input: -Spec, base64 of UTF-8 JSON {broker: [...], server_clients: [...], validate: [...]}.
# Output (stdout): line 1 = JSON array of the ports ValidateToken listens on (the Python side
# connects hvmagic's client to them); last line = JSON of every case's outcome.
param([Parameter(Mandatory)] [string] $Spec)

$ErrorActionPreference = 'Stop'
$cases = [Text.Encoding]::UTF8.GetString([Convert]::FromBase64String($Spec)) | ConvertFrom-Json

$sma = [psobject].Assembly
$static = [Reflection.BindingFlags]'Public,NonPublic,Static'
$clientType = $sma.GetType('System.Management.Automation.Remoting.RemoteSessionHyperVSocketClient', $true)
$serverType = $sma.GetType('System.Management.Automation.Remoting.RemoteSessionHyperVSocketServer', $true)
$exchange = $clientType.GetMethod('ExchangeCredentialsAndConfiguration', $static)
$present = $clientType.GetMethod('PerformTransportVersionAndTokenExchange', $static)
$validate = $serverType.GetMethod('ValidateToken', $static)
if ($null -eq $exchange -or $null -eq $present -or $null -eq $validate) {
    # Before the token handshake (PowerShell 7.4.12 / 7.5.3 / 7.6) these methods do not exist.
    [Console]::Error.WriteLine("PowerShell $($PSVersionTable.PSVersion) has no token handshake " +
        "(RemoteSessionHyperVSocketClient.ExchangeCredentialsAndConfiguration / ValidateToken); " +
        "it needs 7.4.12, 7.5.3, 7.6 or later")
    exit 3
}
# What the real server passes as the token's lifetime (RemoteSessionHyperVSocketServer's ctor).
$lifeMinutes = [int]$serverType.GetField('MAX_TOKEN_LIFE_MINUTES', $static).GetValue($null)
$lifeSeconds = $lifeMinutes * 60  # (inside @(...) the comma would bind before the '*')

function Get-Failure([System.Management.Automation.ErrorRecord] $record) {
    # Reflection wraps the method's exception (MethodInvocationException -> TargetInvocationException).
    $e = $record.Exception
    while ($null -ne $e.InnerException) { $e = $e.InnerException }
    [ordered]@{ outcome = 'error'; type = $e.GetType().FullName; message = $e.Message }
}

function Connect-Loopback([int] $port) {
    $sock = [Net.Sockets.Socket]::new([Net.Sockets.AddressFamily]::InterNetwork,
        [Net.Sockets.SocketType]::Stream, [Net.Sockets.ProtocolType]::Tcp)
    $sock.ReceiveTimeout = 20000  # a script that forgot a reply fails the case, never hangs
    $sock.SendTimeout = 20000
    $sock.Connect([Net.IPAddress]::Loopback, $port)
    $sock
}

function ConvertTo-Secure([string] $text) {
    $secure = [securestring]::new()
    foreach ($ch in $text.ToCharArray()) { $secure.AppendChar($ch) }
    $secure
}

# ValidateToken listeners exist before anything else, so hvmagic's client can connect at once.
$listeners = @(foreach ($case in $cases.validate) {
    $listener = [Net.Sockets.TcpListener]::new([Net.IPAddress]::Loopback, 0)
    $listener.Start()
    $listener
})
[Console]::Out.WriteLine((ConvertTo-Json -Compress -InputObject @($listeners | ForEach-Object { $_.LocalEndpoint.Port })))
[Console]::Out.Flush()

# First connection: the host's broker conversation, as VMHyperVSocketClientSessionTransportManager
# runs it: the NetworkCredential comes from PSCredential.GetNetworkCredential().
$brokerResults = @(foreach ($case in $cases.broker) {
    $sock = $null
    try {
        $credential = [pscredential]::new($case.username, (ConvertTo-Secure $case.password))
        $network = $credential.GetNetworkCredential()
        $split = [ordered]@{ domain = $network.Domain; user = $network.UserName }
        $sock = Connect-Loopback $case.port
        $result = $exchange.Invoke($null, @($network, $case.configuration, $sock, [bool]$case.legacy))
        [ordered]@{ outcome = 'result'; success = $result.Item1; token = $result.Item2; split = $split }
    } catch {
        Get-Failure $_
    } finally {
        if ($null -ne $sock) { $sock.Dispose() }
    }
})

# Second connection, host side: PowerShell presents a token to a scripted server.
$serverClientResults = @(foreach ($case in $cases.server_clients) {
    $sock = $null
    try {
        $sock = Connect-Loopback $case.port
        $null = $present.Invoke($null, @($sock, $case.token))
        [ordered]@{ outcome = 'pass' }
    } catch {
        Get-Failure $_
    } finally {
        if ($null -ne $sock) { $sock.Dispose() }
    }
})

# Second connection, guest side: PowerShell's token check judges hvmagic's client.
$validateResults = @(for ($i = 0; $i -lt $listeners.Count; $i++) {
    $case = $cases.validate[$i]
    $listener = $listeners[$i]
    $sock = $null
    try {
        $sock = $listener.AcceptSocket()
        $listener.Stop()
        # The token was minted age_seconds ago; the real server's lifetime applies.
        $created = [DateTimeOffset]::UtcNow.AddSeconds(-[double]$case.age_seconds)
        $null = $validate.Invoke($null, @($sock, $case.expected, $created, $lifeSeconds))
        # The socket now carries OutOfProc: echo one chunk to show nothing of the handshake is
        # left in either direction.
        $buffer = [byte[]]::new(256)
        $sock.ReceiveTimeout = 20000
        $n = $sock.Receive($buffer)
        $null = $sock.Send($buffer, 0, $n, [Net.Sockets.SocketFlags]::None)
        [ordered]@{ outcome = 'pass'; echoed = $n }
    } catch {
        Get-Failure $_
    } finally {
        # Like the guest process that exits when the check throws.
        if ($null -ne $sock) { $sock.Dispose() }
        $listener.Stop()
    }
})

# How PowerShell splits user names (PSCredential.GetNetworkCredential(), which the VM transport
# uses): many names, one answer each.
$anyPassword = ConvertTo-Secure 'p'
$splits = @(foreach ($name in $cases.user_names) {
    try {
        $network = [pscredential]::new($name, $anyPassword).GetNetworkCredential()
        [ordered]@{ domain = $network.Domain; user = $network.UserName }
    } catch {
        Get-Failure $_
    }
})

# The same token checks with PowerShell on both ends: ValidateToken in a second runspace of this
# process, PowerShell's own client (PerformTransportVersionAndTokenExchange) presenting the token
# hvmagic presented above. What PowerShell's client makes of each refusal is the reference.
$psListeners = @(foreach ($case in $cases.validate) {
    $listener = [Net.Sockets.TcpListener]::new([Net.IPAddress]::Loopback, 0)
    $listener.Start()
    $listener
})
$guestSide = [powershell]::Create().AddScript({
    param($listeners, $cases, $validate, $lifeSeconds)
    for ($i = 0; $i -lt $listeners.Count; $i++) {
        $sock = $listeners[$i].AcceptSocket()
        try {
            $created = [DateTimeOffset]::UtcNow.AddSeconds(-[double]$cases[$i].age_seconds)
            $null = $validate.Invoke($null, @($sock, $cases[$i].expected, $created, $lifeSeconds))
        } catch {
        } finally {
            $sock.Dispose()
            $listeners[$i].Stop()
        }
    }
}).AddArgument($psListeners).AddArgument(@($cases.validate)).AddArgument($validate).AddArgument($lifeSeconds)
$guestRun = $guestSide.BeginInvoke()
$psClientResults = @(for ($i = 0; $i -lt $psListeners.Count; $i++) {
    $sock = $null
    try {
        $sock = Connect-Loopback $psListeners[$i].LocalEndpoint.Port
        $null = $present.Invoke($null, @($sock, $cases.validate[$i].presented))
        [ordered]@{ outcome = 'pass' }
    } catch {
        Get-Failure $_
    } finally {
        if ($null -ne $sock) { $sock.Dispose() }
    }
})
$null = $guestSide.EndInvoke($guestRun)

[Console]::Out.WriteLine((ConvertTo-Json -Compress -Depth 5 -InputObject ([ordered]@{
    life_minutes = $lifeMinutes
    version = $PSVersionTable.PSVersion.ToString()
    broker = $brokerResults
    server_clients = $serverClientResults
    validate = $validateResults
    ps_client_validate = $psClientResults
    splits = $splits
})))
