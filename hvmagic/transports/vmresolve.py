"""Finding a Hyper-V virtual machine on the local host by name or id.

PowerShell resolves ``-VMName``/``-VMId`` with ``Get-VM`` in the caller's runspace, demands
exactly one match and refuses unless it is ``Running`` (``newrunspacecommand.cs``). hvmagic does
the same through one ``powershell.exe`` call. The query is a constant script that lists every VM;
matching happens here in Python, so a VM name never becomes part of PowerShell source text (no
quoting, no injection, no wildcard surprises: ``Get-VM -Name`` would treat ``[`` and ``*`` as
patterns).

Everything that runs a process goes through a :data:`Runner`, so tests (and hosts that reach
PowerShell differently) inject their own.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from hvmagic.errors import HvMagicError, TransportError, VMNotFoundError, VMStateError

#: ``runner(argv, timeout)`` runs a command and returns its completed process (text mode)
Runner = Callable[[Sequence[str], float], "subprocess.CompletedProcess[str]"]

#: the Windows PowerShell that ships with every Hyper-V host (the Hyper-V module lives there)
POWERSHELL_ARGV = ("powershell.exe", "-NoProfile", "-NonInteractive", "-Command")

# States and heartbeats are stringified in the guest script: Windows PowerShell 5.1's
# ConvertTo-Json writes enums as numbers, and implicitly remoted Hyper-V modules already hand
# back strings (PowerShell/PowerShell#24032); strings on both paths keep the parser simple.
# @(...) with -InputObject keeps a single VM a JSON array.
LIST_VMS_SCRIPT = (
    "$ErrorActionPreference = 'Stop'; "
    "ConvertTo-Json -Compress -InputObject @(Get-VM | ForEach-Object { "
    "[pscustomobject]@{ Id = $_.Id.Guid; Name = $_.Name; "
    "State = [string]$_.State; Heartbeat = [string]$_.Heartbeat } })"
)

DEFAULT_RUNNER_TIMEOUT = 60.0


@dataclass(frozen=True)
class VMInfo:
    """What PowerShell Direct needs to know about a VM."""

    id: str  # lower-case GUID text without braces, as AF_HYPERV addresses want it
    name: str
    state: str  # "Running", "Off", "Saved", ...
    heartbeat: str = ""  # "OkApplicationsHealthy", "NoContact", "" when the service is off

    @property
    def running(self) -> bool:
        return self.state == "Running"


def run_subprocess(argv: Sequence[str], timeout: float) -> subprocess.CompletedProcess[str]:
    """The default :data:`Runner`: run ``argv`` without a shell, capture text output."""
    try:
        return subprocess.run(
            list(argv), capture_output=True, text=True, timeout=timeout, check=False
        )
    except FileNotFoundError as exc:
        raise TransportError(
            f"{argv[0]} was not found: resolving VMs needs Windows PowerShell on the Hyper-V host"
        ) from exc
    except subprocess.TimeoutExpired as exc:
        raise TransportError(f"{argv[0]} did not answer within {timeout:g} s") from exc


def run_powershell(
    script: str, runner: Runner | None = None, timeout: float = DEFAULT_RUNNER_TIMEOUT
) -> str:
    """Run ``script`` in Windows PowerShell and return its stdout; failures raise typed errors."""
    run = run_subprocess if runner is None else runner
    completed = run([*POWERSHELL_ARGV, script], timeout)
    if completed.returncode != 0:
        detail = (completed.stderr or completed.stdout or "").strip()
        first_line = detail.splitlines()[0] if detail else f"exit code {completed.returncode}"
        raise HvMagicError(f"Windows PowerShell failed: {first_line}")
    return completed.stdout or ""


def parse_vm_list(text: str) -> list[VMInfo]:
    """Parse :data:`LIST_VMS_SCRIPT` output (a JSON array; an object or nothing on odd hosts)."""
    stripped = text.strip().lstrip("\ufeff")
    if not stripped:
        return []
    try:
        data: Any = json.loads(stripped)
    except json.JSONDecodeError as exc:
        raise HvMagicError(f"Get-VM returned output that is not JSON: {stripped[:80]!r}") from exc
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list):
        raise HvMagicError("Get-VM returned JSON that is not a list of VMs")
    vms = []
    for item in data:
        if not isinstance(item, dict) or "Id" not in item or "Name" not in item:
            raise HvMagicError("Get-VM returned an entry without Id and Name")
        vms.append(
            VMInfo(
                id=str(uuid.UUID(str(item["Id"]))),
                name=str(item["Name"]),
                state=str(item.get("State") or ""),
                heartbeat=str(item.get("Heartbeat") or ""),
            )
        )
    return vms


def parse_guid(text: str) -> str | None:
    """The canonical lower-case GUID text for ``text`` (braces allowed), else ``None``."""
    try:
        return str(uuid.UUID(text.strip()))
    except ValueError:
        return None


def match_vm(vm: str, vms: Sequence[VMInfo]) -> VMInfo:
    """The one VM whose id (a GUID, braces allowed) or name (case-insensitive) is ``vm``.

    Raises :class:`VMNotFoundError` for none or several matches (PowerShell demands exactly
    one) and :class:`VMStateError` when the match is not Running.
    """
    wanted_id = parse_guid(vm)
    if wanted_id is not None:
        matches = [info for info in vms if info.id == wanted_id]
    else:
        matches = [info for info in vms if info.name.casefold() == vm.casefold()]
    if not matches:
        known = ", ".join(sorted(info.name for info in vms)) or "none visible"
        raise VMNotFoundError(
            f"The input VMName {vm!r} does not resolve to any virtual machine on this host "
            f"(VMs visible: {known}). Check the name, and run as a member of Administrators or "
            "Hyper-V Administrators: Get-VM shows nothing to other users."
        )
    if len(matches) > 1:
        ids = ", ".join(info.id for info in matches)
        raise VMNotFoundError(
            f"The VM name {vm!r} matches {len(matches)} virtual machines ({ids}); "
            "connect by VM id instead."
        )
    found = matches[0]
    if not found.running:
        raise VMStateError(
            f"The virtual machine {found.name} is not in running state (state: "
            f"{found.state or 'unknown'}). Start it with Start-VM -Name '{found.name}' and wait "
            "for the guest OS to finish booting."
        )
    return found


def list_vms(runner: Runner | None = None, timeout: float = DEFAULT_RUNNER_TIMEOUT) -> list[VMInfo]:
    """Every VM on the local Hyper-V host, via ``Get-VM``."""
    return parse_vm_list(run_powershell(LIST_VMS_SCRIPT, runner, timeout))


def resolve_vm(
    vm: str, runner: Runner | None = None, timeout: float = DEFAULT_RUNNER_TIMEOUT
) -> VMInfo:
    """The running VM named (or with the id) ``vm`` on this host; see :func:`match_vm`."""
    if not vm or not vm.strip():
        raise VMNotFoundError("No VM name or id was given.")
    return match_vm(vm.strip(), list_vms(runner, timeout))
