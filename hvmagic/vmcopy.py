"""``%vmcopy``'s pieces outside the session: reading ``VM:path`` / ``ALIAS:path`` endpoints,
Copy-VMFile (Guest Service Interface) on the Hyper-V host, and the progress bars and summary line
of a copy over the session (the copy itself is :mod:`hvmagic.filecopy`'s).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from IPython.core.error import UsageError

from hvmagic import display as hvdisplay
from hvmagic.clixml.values import ProgressRecord
from hvmagic.filecopy import format_rate
from hvmagic.sessionlike import CopyProgress, CopyResult

#: ``VM:path`` (default session) or ``ALIAS:path``; one-letter prefixes are drive letters
_REMOTE_PATH = re.compile(r"^(?P<prefix>[^:\\/]{2,}):(?P<path>.*)$", re.DOTALL)


@dataclass(frozen=True)
class CopyEndpoint:
    path: str
    session_ref: str | None = None  # None = local; "" = the default session; else an alias

    @property
    def remote(self) -> bool:
        return self.session_ref is not None


def parse_copy_endpoint(text: str, known_aliases: Callable[[str], bool]) -> CopyEndpoint:
    """``VM:C:\\x`` → remote in the default session; ``web01:C:\\x`` → remote in session
    ``web01`` when that alias exists; anything else (``C:\\x``, ``./x``, ``unknown:x``) is local.

    A one-letter prefix is never a session: ``C:\\temp`` is a Windows drive path.
    """
    match = _REMOTE_PATH.match(text)
    if match is None:
        return CopyEndpoint(text)
    prefix, path = match.group("prefix"), match.group("path")
    if prefix.upper() == "VM":
        return CopyEndpoint(path, "")
    if known_aliases(prefix):
        return CopyEndpoint(path, prefix)
    return CopyEndpoint(text)


# --------------------------------------------------------------------------------------------
# Copy-VMFile (Guest Service Interface) from the Hyper-V host

#: the Guest Service Interface integration component's id (same on every Hyper-V version; its
#: display name is localised, so the id is what the check matches)
GSI_COMPONENT_ID = "6C09BB55-D683-4DA0-8931-C9BF705F6480"

# Values reach the script through environment variables, never through its text: a path like
# "x'; Remove-Item C:\ -Recurse; '" stays a path.
_GSI_SCRIPT = r"""
$ErrorActionPreference = 'Stop'
if (-not (Get-Command Copy-VMFile -ErrorAction SilentlyContinue)) {
    [Console]::Out.WriteLine('HVMAGIC-NO-HYPERV'); exit 3
}
$vm = Get-VM -Name $env:HVMAGIC_GSI_VM
$gsi = Get-VMIntegrationService -VM $vm | Where-Object {
    $_.Id -like ('*' + $env:HVMAGIC_GSI_ID) -or $_.Name -eq 'Guest Service Interface' }
if (-not $gsi -or -not $gsi.Enabled) { [Console]::Out.WriteLine('HVMAGIC-GSI-DISABLED'); exit 4 }
$copy = @{ VM = $vm; SourcePath = $env:HVMAGIC_GSI_SRC; DestinationPath = $env:HVMAGIC_GSI_DST;
           FileSource = 'Host'; CreateFullPath = $true }
if ($env:HVMAGIC_GSI_FORCE -eq '1') { $copy.Force = $true }
Copy-VMFile @copy
[Console]::Out.WriteLine('HVMAGIC-GSI-OK')
"""


def copy_vmfile(
    vm_name: str,
    source: str,
    destination: str,
    *,
    force: bool = False,
    platform: str = sys.platform,
    run: Callable[..., Any] = subprocess.run,
    powershell: str = "powershell.exe",
) -> str:
    """Copy a host file into a guest with ``Copy-VMFile`` (host → guest only) and return a
    one-line summary; raises :class:`UsageError` with the remedy when it cannot work."""
    if not platform.startswith("win"):
        raise UsageError(
            "--gsi uses Copy-VMFile, which runs on the Hyper-V host itself (Windows with the "
            f"Hyper-V PowerShell module); this machine is {platform}. Copy over the session "
            "instead: drop --gsi."
        )
    import base64

    encoded = base64.b64encode(_GSI_SCRIPT.encode("utf-16-le")).decode("ascii")
    env = dict(os.environ)
    env.update(
        HVMAGIC_GSI_VM=vm_name,
        HVMAGIC_GSI_SRC=source,
        HVMAGIC_GSI_DST=destination,
        HVMAGIC_GSI_ID=GSI_COMPONENT_ID,
        HVMAGIC_GSI_FORCE="1" if force else "0",
    )
    try:
        done = run(
            [powershell, "-NoProfile", "-NonInteractive", "-EncodedCommand", encoded],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
    except FileNotFoundError as exc:
        raise UsageError(f"--gsi needs {powershell} on this machine (a Hyper-V host)") from exc
    out = (done.stdout or "") + (done.stderr or "")
    if "HVMAGIC-NO-HYPERV" in out:
        raise UsageError(
            "--gsi: Copy-VMFile is not available: this is not a Hyper-V host (install the "
            "Hyper-V PowerShell module, or drop --gsi to copy over the session)"
        )
    if "HVMAGIC-GSI-DISABLED" in out:
        raise UsageError(
            f"--gsi: the Guest Service Interface integration service of VM {vm_name!r} is "
            "disabled; enable it with: Enable-VMIntegrationService -VMName "
            f"'{vm_name}' -Name 'Guest Service Interface' (or drop --gsi)"
        )
    if done.returncode != 0 or "HVMAGIC-GSI-OK" not in out:
        first = next((line for line in out.splitlines() if line.strip()), "no output")
        raise UsageError(f"--gsi: Copy-VMFile failed (exit {done.returncode}): {first.strip()}")
    return f"Copied {source} to {vm_name}:{destination} with Copy-VMFile (Guest Service Interface)"


# --------------------------------------------------------------------------------------------
# a copy over the session: progress and summary


def copy_progress_adapter(
    view: hvdisplay.ProgressView, activity: str
) -> Callable[[CopyProgress | ProgressRecord], None]:
    """Feeds the copy engine's reports (:class:`hvmagic.filecopy.CopyProgress`) into a progress
    view: the whole copy as the parent bar, the current file nested under it."""

    def on_progress(report: CopyProgress | ProgressRecord) -> None:
        if isinstance(report, ProgressRecord):
            view.update(report)
            return
        done, total = report.bytes_done, report.bytes_total
        files = f"file {min(report.files_done + 1, report.files_total)} of {report.files_total}"
        view.update(
            ProgressRecord(
                activity, 1, f"{_human_bytes(done)} of {_human_bytes(total)}, {files}",
                percent_complete=report.percent,
            )
        )
        if report.files_total > 1 and report.file_bytes_total:
            view.update(
                ProgressRecord(
                    report.source, 2,
                    f"{_human_bytes(report.file_bytes_done)} of "
                    f"{_human_bytes(report.file_bytes_total)}",
                    parent_activity_id=1,
                    percent_complete=int(100 * report.file_bytes_done / report.file_bytes_total),
                )
            )

    return on_progress


def _human_bytes(count: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if count < 1024 or unit == "GB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} GB"


def copy_summary(summary: CopyResult | None, direction: str, alias: str) -> str:
    if summary is None:
        return f"Copied {direction} {alias}"
    files, size, seconds = summary.files, summary.bytes, summary.seconds
    rate = format_rate(size, seconds)
    return (
        f"Copied {len(files)} file(s), {_human_bytes(size)} {direction} {alias!r} in "
        f"{seconds:.2f} s{rate}; SHA-256 verified"
    )


__all__ = [
    "GSI_COMPONENT_ID",
    "CopyEndpoint",
    "copy_progress_adapter",
    "copy_summary",
    "copy_vmfile",
    "parse_copy_endpoint",
]
