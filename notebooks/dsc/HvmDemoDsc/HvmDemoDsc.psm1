# A class-based DSC resource: keeps a one-line HTML banner file with the given message.
# Used by notebooks/02-dsc-web-server.ipynb; copy the whole folder to
# C:\Program Files\WindowsPowerShell\Modules\HvmDemoDsc in the guest before compiling.

enum Ensure {
    Absent
    Present
}

[DscResource()]
class HvmSiteBanner {
    [DscProperty(Key)]
    [string] $Path

    [DscProperty(Mandatory)]
    [string] $Message

    [DscProperty()]
    [Ensure] $Ensure = [Ensure]::Present

    [HvmSiteBanner] Get() {
        $current = [HvmSiteBanner]::new()
        $current.Path = $this.Path
        $current.Message = $this.Message
        $current.Ensure = if (Test-Path -LiteralPath $this.Path) { [Ensure]::Present } else { [Ensure]::Absent }
        return $current
    }

    [bool] Test() {
        $exists = Test-Path -LiteralPath $this.Path
        if ($this.Ensure -eq [Ensure]::Absent) {
            return -not $exists
        }
        return $exists -and ((Get-Content -LiteralPath $this.Path -Raw) -eq $this.Html())
    }

    [void] Set() {
        if ($this.Ensure -eq [Ensure]::Absent) {
            Remove-Item -LiteralPath $this.Path -Force -ErrorAction SilentlyContinue
            return
        }
        $folder = Split-Path -Parent $this.Path
        if (-not (Test-Path -LiteralPath $folder)) {
            New-Item -ItemType Directory -Path $folder -Force | Out-Null
        }
        Write-Verbose "Writing banner '$($this.Message)' to $($this.Path)"
        Set-Content -LiteralPath $this.Path -Value $this.Html() -NoNewline -Encoding UTF8
    }

    hidden [string] Html() {
        $text = [System.Net.WebUtility]::HtmlEncode($this.Message)
        return "<html><body><h1>$text</h1></body></html>"
    }
}
