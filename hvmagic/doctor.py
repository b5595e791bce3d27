"""``hvmagic.doctor()``: a preflight explaining why PowerShell Direct would not (or did not) work.

Each check has a name, a status (``ok`` / ``warn`` / ``fail`` / ``skipped``), what was found,
and the fix. Checks, in order:

* Python version (``socket.AF_HYPERV`` needs CPython ≥ 3.12) and platform (the Windows host
  that runs the VM — PowerShell Direct never crosses machines);
* on Windows, one Windows PowerShell call (through an injectable runner) gathers the rest:
  the Hyper-V module, Administrator / Hyper-V Administrators membership (without it ``Get-VM``
  shows nothing), the VM (found, running, heartbeat) and the PowerShell Direct integration
  service as ``Get-VMIntegrationService`` reports it;
* the user name as the broker will receive it, and — when the caller passes the exception a
  connection attempt raised — what the guest said: credentials rejected, legacy guest refused,
  no answer from the broker.

:func:`explain` maps any hvmagic exception to the advice an admin can act on; ``%vmconnect``
shows it (and the report) when connecting fails.

Whether hosts list the guest's PowerShell Direct service (``vmicvmsession``) among a VM's
integration services is **unconfirmed** (Microsoft's integration-services reference names it
only as a guest service); when the host does not list it, the check says so and names the
command to run inside the guest instead.
"""

from __future__ import annotations

import html
import json
import re
import socket
import sys
import types
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from hvmagic.credentials import broker_domain, split_username
from hvmagic.errors import (
    CredentialError,
    HandshakeError,
    HvMagicError,
    LegacyGuestRefusedError,
    SessionBrokenError,
    TransportError,
    UnsupportedPlatformError,
    VMNotFoundError,
    VMStateError,
)
from hvmagic.hop import plain_remote_session
from hvmagic.transports.vmresolve import (
    DEFAULT_RUNNER_TIMEOUT,
    Runner,
    VMInfo,
    parse_guid,
    parse_vm_list,
    run_powershell,
)

__all__ = ["Check", "DoctorReport", "PlatformInfo", "doctor", "explain"]

Status = Literal["ok", "warn", "fail", "skipped"]

# One process start (≈1 s for powershell.exe) gathers every host fact. The VM name is never
# pasted into the script: all VMs are listed and matched in Python.
HOST_PROBE_SCRIPT = r"""
$ErrorActionPreference = 'Stop'
$r = [ordered]@{ PSVersion = $PSVersionTable.PSVersion.ToString(); IsAdmin = $false;
                 IsHyperVAdmin = $false; HyperVModule = $false; VMs = $null; VMsError = $null;
                 Integration = @(); IntegrationError = $null }
try {  # a remote "host" may be no Windows at all: then it is simply no Hyper-V admin
  $principal = New-Object Security.Principal.WindowsPrincipal(
      [Security.Principal.WindowsIdentity]::GetCurrent())
  $r.IsAdmin = $principal.IsInRole([Security.Principal.WindowsBuiltInRole]::Administrator)
  $r.IsHyperVAdmin = $principal.IsInRole(
      (New-Object Security.Principal.SecurityIdentifier('S-1-5-32-578')))
} catch { $r.IsAdmin = $false }
$r.HyperVModule = [bool](Get-Module -ListAvailable -Name Hyper-V)
if ($r.HyperVModule) {
  try {
    $vms = @(Get-VM)
    $r.VMs = @($vms | ForEach-Object { [pscustomobject]@{ Id = $_.Id.Guid; Name = $_.Name;
               State = [string]$_.State; Heartbeat = [string]$_.Heartbeat } })
    try {
      $r.Integration = @($vms | Where-Object { [string]$_.State -eq 'Running' } |
        Get-VMIntegrationService | ForEach-Object { [pscustomobject]@{
          VMId = $_.VMId.Guid; Name = $_.Name; Enabled = [bool]$_.Enabled;
          Status = [string]$_.PrimaryStatusDescription } })
    } catch { $r.IntegrationError = $_.Exception.Message }
  } catch { $r.VMsError = $_.Exception.Message }
}
ConvertTo-Json -Compress -Depth 4 -InputObject ([pscustomobject]$r)
""".strip()

_PS_DIRECT_SERVICE = re.compile(r"powershell\s*direct|vm\s*session|vmicvmsession", re.I)
_HEALTHY_HEARTBEATS = ("OkApplicationsHealthy", "OkApplicationsUnknown")
_ADMIN_FIX = (
    "Run Jupyter as a member of Hyper-V Administrators or elevated Administrators: "
    "Add-LocalGroupMember -SID S-1-5-32-578 -Member $env:USERDOMAIN\\$env:USERNAME "
    "(then sign out and in), or start Jupyter from an elevated prompt."
)


@dataclass(frozen=True)
class Check:
    """One preflight result."""

    name: str
    status: Status
    explanation: str
    fix: str = ""


@dataclass(frozen=True)
class PlatformInfo:
    """What the doctor knows about this interpreter (injectable for tests)."""

    system: str  # sys.platform: "win32", "linux", ...
    python_version: tuple[int, int, int]
    has_af_hyperv: bool

    @classmethod
    def current(cls) -> PlatformInfo:
        major, minor, micro = sys.version_info[:3]
        return cls(sys.platform, (major, minor, micro), hasattr(socket, "AF_HYPERV"))

    @property
    def windows(self) -> bool:
        return self.system == "win32"


_STATUS_LABEL = {"ok": " ok ", "warn": "WARN", "fail": "FAIL", "skipped": "skip"}
_STATUS_COLOUR = {"ok": "#2e7d32", "warn": "#b26a00", "fail": "#c62828", "skipped": "#757575"}


@dataclass
class DoctorReport:
    """The checks, in order; ``ok`` is False when any check failed."""

    checks: list[Check] = field(default_factory=list)
    vm: str | None = None

    @property
    def ok(self) -> bool:
        return all(check.status != "fail" for check in self.checks)

    @property
    def failures(self) -> list[Check]:
        return [check for check in self.checks if check.status == "fail"]

    def __getitem__(self, name: str) -> Check:
        for check in self.checks:
            if check.name == name:
                return check
        raise KeyError(name)

    def __contains__(self, name: object) -> bool:
        return any(check.name == name for check in self.checks)

    @staticmethod
    def explain(exc: BaseException) -> str:
        """See :func:`explain`."""
        return explain(exc)

    def _headline(self) -> str:
        target = f" for VM {self.vm}" if self.vm else ""
        problems = len(self.failures)
        verdict = "all checks passed" if problems == 0 else (
            f"{problems} problem{'s' if problems != 1 else ''} found"
        )
        return f"hvmagic doctor{target}: {verdict}"

    def __str__(self) -> str:
        lines = [self._headline()]
        for check in self.checks:
            lines.append(f"[{_STATUS_LABEL[check.status]}] {check.name}: {check.explanation}")
            if check.fix and check.status in ("fail", "warn"):
                lines.append(f"       fix: {check.fix}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        statuses = ", ".join(f"{check.name}={check.status}" for check in self.checks)
        return f"DoctorReport(vm={self.vm!r}, ok={self.ok}, {statuses})"

    def _repr_html_(self) -> str:
        rows = []
        for check in self.checks:
            colour = _STATUS_COLOUR[check.status]
            rows.append(
                "<tr>"
                f"<td>{html.escape(check.name)}</td>"
                f'<td style="color:{colour};font-weight:bold">{check.status}</td>'
                f"<td>{html.escape(check.explanation)}</td>"
                f"<td>{html.escape(check.fix)}</td>"
                "</tr>"
            )
        return (
            f"<div><strong>{html.escape(self._headline())}</strong>"
            '<table class="hvmagic-doctor"><thead><tr><th>check</th><th>status</th>'
            "<th>finding</th><th>fix</th></tr></thead><tbody>"
            + "".join(rows)
            + "</tbody></table></div>"
        )


# --- advice for exceptions ------------------------------------------------------------------

_CREDENTIAL_ADVICE = (
    "The guest rejected the user name or password. Check both; local accounts: the bare name "
    "or .\\name; domain accounts: DOMAIN\\user (the guest must reach a domain controller or have "
    "cached the logon). A disabled built-in Administrator, or a guest that has not finished "
    "setup (no account has logged on yet), fails the same way."
)
_LEGACY_ADVICE = (
    "The guest only speaks the legacy PowerShell Direct handshake, whose second connection is "
    "not authenticated (CVE-2025-49734). Fix: install the guest's Windows updates (2025 "
    "cumulative updates). Only for a lab VM you trust: connect with allow_legacy=True "
    "(%vmconnect --allow-legacy)."
)
_NO_ANSWER_ADVICE = (
    "The guest's PowerShell Direct service did not answer. Wait until the guest has finished "
    "booting; if it persists, restart the service inside the guest (Restart-Service "
    "vmicvmsession) or restart the VM. Linux guests have no PowerShell Direct at all: use SSH."
)
_BROKER_UNREACHABLE_ADVICE = (
    "Nothing accepted the PowerShell Direct connection in the guest. The guest OS may still be "
    "booting, the guest is not Windows 10 / Windows Server 2016 or later (Linux guests have no "
    "PowerShell Direct), or the Hyper-V PowerShell Direct Service (vmicvmsession) is disabled "
    "inside the guest (Set-Service vmicvmsession -StartupType Manual)."
)
_SERVER_UNREACHABLE_ADVICE = (
    "The guest accepted the credentials but its PowerShell process never listened. Check the "
    "configuration name (Get-PSSessionConfiguration in the guest; PowerShell.7 must be "
    "registered with Enable-PSRemoting from pwsh), and the guest's memory and CPU."
)
_HANDSHAKE_ADVICE = (
    "The guest answered the PowerShell Direct handshake in a way hvmagic does not understand. "
    "Make sure host and guest have all Windows updates; then retry."
)
_BROKEN_ADVICE = (
    "The guest PowerShell process ended (guest rebooted, user logged off, or the process "
    "crashed). Wait a second or two and connect again; state in the old session is lost."
)
_VM_NOT_FOUND_ADVICE = (
    "Check the VM name (Get-VM lists them; names are matched exactly, ids work too), and run as "
    "a member of Hyper-V Administrators or elevated Administrators: Get-VM shows no VMs "
    "otherwise. PowerShell Direct reaches only VMs on this host."
)
_VM_STATE_ADVICE = (
    "Start the VM (Start-VM) and wait until the guest OS has booted; PowerShell Direct needs a "
    "running guest with at least one user profile."
)


def explain(exc: BaseException) -> str:
    """Advice for an exception a connection attempt raised (most specific first)."""
    if isinstance(exc, UnsupportedPlatformError):
        return str(exc)
    if isinstance(exc, LegacyGuestRefusedError):
        return _LEGACY_ADVICE
    if isinstance(exc, CredentialError):
        return _CREDENTIAL_ADVICE
    if isinstance(exc, VMNotFoundError):
        return _VM_NOT_FOUND_ADVICE
    if isinstance(exc, VMStateError):
        return _VM_STATE_ADVICE
    if isinstance(exc, SessionBrokenError):
        return _BROKEN_ADVICE
    message = str(exc)
    if isinstance(exc, HandshakeError):
        if "did not answer" in message or "closed the connection" in message:
            return _NO_ANSWER_ADVICE
        return _HANDSHAKE_ADVICE
    if isinstance(exc, TransportError):
        if "did not accept a connection" in message:
            return _SERVER_UNREACHABLE_ADVICE
        if "broker" in message:
            return _BROKER_UNREACHABLE_ADVICE
        return f"{message} Run hvmagic.doctor(vm) for a full preflight."
    if isinstance(exc, HvMagicError):
        return message
    return (
        f"Unexpected {type(exc).__name__}: {message}. Run hvmagic.doctor(vm) for a full "
        "preflight."
    )


# --- the checks -----------------------------------------------------------------------------


def _python_check(info: PlatformInfo) -> Check:
    version = ".".join(map(str, info.python_version))
    if info.python_version[:2] >= (3, 12):
        return Check("Python version", "ok", f"Python {version} has socket.AF_HYPERV on Windows.")
    return Check(
        "Python version",
        "fail",
        f"Python {version} has no socket.AF_HYPERV (added in CPython 3.12).",
        "Install Python 3.12 or later on the Hyper-V host, or use the process transport: "
        "hvmagic.connect(vm, via='process') nests Invoke-Command -VMName in powershell.exe -s.",
    )


def _platform_check(info: PlatformInfo) -> Check:
    if not info.windows:
        return Check(
            "Platform",
            "fail",
            f"This is {info.system}; PowerShell Direct works only on the Windows Hyper-V host "
            "that runs the VM.",
            "Run hvmagic on the Hyper-V host (or reach it over WinRM and use PowerShell Direct "
            "from there); here, connect(via='sim') or a recording (via='replay') still work.",
        )
    if info.python_version[:2] >= (3, 12) and not info.has_af_hyperv:
        return Check(
            "Platform",
            "fail",
            "Windows, but this Python build lacks socket.AF_HYPERV.",
            "Use the python.org (CPython) build for Windows.",
        )
    return Check("Platform", "ok", "Windows host.")


def _probe_host(runner: Runner | None, timeout: float) -> dict[str, Any]:
    text = run_powershell(HOST_PROBE_SCRIPT, runner, timeout).strip().lstrip("\ufeff")
    try:
        facts = json.loads(text)
    except json.JSONDecodeError as exc:
        raise HvMagicError(f"the host probe returned output that is not JSON: {text[:80]!r}"
                           ) from exc
    if not isinstance(facts, dict):
        raise HvMagicError("the host probe returned JSON that is not an object")
    return facts


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _host_checks(facts: dict[str, Any]) -> tuple[list[Check], list[VMInfo] | None]:
    checks = []
    if facts.get("HyperVModule"):
        checks.append(Check("Hyper-V module", "ok",
                            f"Hyper-V PowerShell module present (Windows PowerShell "
                            f"{facts.get('PSVersion', '?')})."))
    else:
        checks.append(Check(
            "Hyper-V module", "fail",
            "The Hyper-V PowerShell module is not installed, so VMs cannot be looked up.",
            "Server: Install-WindowsFeature Hyper-V-PowerShell; Windows client: "
            "Enable-WindowsOptionalFeature -Online -FeatureName "
            "Microsoft-Hyper-V-Management-PowerShell.",
        ))
    if facts.get("IsAdmin") or facts.get("IsHyperVAdmin"):
        group = "Administrators (elevated)" if facts.get("IsAdmin") else "Hyper-V Administrators"
        checks.append(Check("Hyper-V admin rights", "ok", f"Running as a member of {group}."))
    else:
        checks.append(Check(
            "Hyper-V admin rights", "fail",
            "Not an elevated Administrator nor in Hyper-V Administrators: Get-VM shows no VMs "
            "and PowerShell Direct is refused.",
            _ADMIN_FIX,
        ))
    vms: list[VMInfo] | None = None
    if facts.get("VMsError"):
        checks.append(Check("Get-VM", "fail", f"Get-VM failed: {facts['VMsError']}",
                            _ADMIN_FIX))
    elif facts.get("VMs") is not None:
        vms = parse_vm_list(json.dumps(_as_list(facts.get("VMs"))))
    return checks, vms


def _vm_checks(vm: str, vms: list[VMInfo], facts: dict[str, Any]) -> list[Check]:
    wanted = parse_guid(vm)
    matches = [info for info in vms if (info.id == wanted if wanted
                                        else info.name.casefold() == vm.casefold())]
    if not matches:
        known = ", ".join(sorted(info.name for info in vms)) or "none"
        return [Check("VM found", "fail",
                      f"No VM named {vm!r} on this host (visible: {known}).",
                      _VM_NOT_FOUND_ADVICE)]
    if len(matches) > 1:
        return [Check("VM found", "fail",
                      f"{len(matches)} VMs are named {vm!r}: "
                      + ", ".join(info.id for info in matches) + ".",
                      "Connect by VM id instead of name.")]
    found = matches[0]
    checks = [Check("VM found", "ok", f"{found.name} (id {found.id}).")]
    if not found.running:
        checks.append(Check("VM running", "fail",
                            f"{found.name} is {found.state or 'in an unknown state'}.",
                            f"Start-VM -Name '{found.name}', then wait for the guest to boot."))
        return checks
    checks.append(Check("VM running", "ok", f"{found.name} is Running."))
    if found.heartbeat in _HEALTHY_HEARTBEATS:
        checks.append(Check("Heartbeat", "ok", f"Guest heartbeat: {found.heartbeat}."))
    else:
        checks.append(Check(
            "Heartbeat", "warn",
            f"Guest heartbeat: {found.heartbeat or 'none reported'} - the guest OS may still be "
            "booting, or its integration services are not running.",
            "Wait for the guest to finish booting; check that the VM's Heartbeat integration "
            "service is enabled (Get-VMIntegrationService).",
        ))
    checks.append(_ps_direct_service_check(found, facts))
    return checks


def _ps_direct_service_check(found: VMInfo, facts: dict[str, Any]) -> Check:
    name = "PowerShell Direct service"
    if facts.get("IntegrationError"):
        return Check(name, "warn",
                     f"Get-VMIntegrationService failed: {facts['IntegrationError']}", _ADMIN_FIX)
    services = [item for item in _as_list(facts.get("Integration"))
                if isinstance(item, dict) and str(item.get("VMId", "")).lower() == found.id]
    direct = [item for item in services if _PS_DIRECT_SERVICE.search(str(item.get("Name", "")))]
    if not direct:
        return Check(
            name, "skipped",
            "The host does not list the guest's PowerShell Direct service (vmicvmsession) "
            "among the VM's integration services; it can only be checked inside the guest.",
            "Inside the guest: Get-Service vmicvmsession must not be Disabled.",
        )
    service = direct[0]
    label = str(service.get("Name"))
    if not service.get("Enabled"):
        return Check(name, "fail", f"The integration service {label!r} is disabled for this VM.",
                     f"Enable-VMIntegrationService -VMName '{found.name}' -Name '{label}'")
    status = str(service.get("Status") or "")
    if status and status.upper() != "OK":
        return Check(name, "warn", f"{label!r} is enabled but reports {status!r}.",
                     "Inside the guest: Restart-Service vmicvmsession (or restart the VM).")
    return Check(name, "ok", f"{label!r} is enabled ({status or 'status not reported'}).")


def _credential_check(username: str | None, error: BaseException | None) -> Check:
    name = "Credentials"
    if isinstance(error, CredentialError):
        return Check(name, "fail", f"{error}", _CREDENTIAL_ADVICE)
    if username is None:
        return Check(name, "skipped", "No user name given; the guest checks credentials when "
                                      "connecting.")
    try:
        domain, user = split_username(username)
    except CredentialError as exc:
        return Check(name, "fail", str(exc), "Give a user name such as administrator, "
                                             ".\\administrator or DOMAIN\\user.")
    return Check(name, "ok",
                 f"The broker will receive domain {broker_domain(domain)!r} and user {user!r}; "
                 "the guest checks the password when connecting.")


def _legacy_check(error: BaseException | None) -> Check:
    if isinstance(error, LegacyGuestRefusedError):
        return Check("Legacy guest", "fail",
                     "The guest answered with the legacy (unauthenticated) handshake and was "
                     "refused.", _LEGACY_ADVICE)
    return Check("Legacy guest", "skipped",
                 "Checked when connecting: guests without the CVE-2025-49734 fix are refused "
                 "unless allow_legacy=True.")


_DEFAULT_PORTS = {"ssh": 22, "winrm": 5985}
_HOST_AUTH_ADVICE = {
    "ssh": "The SSH server accepted none of the offered keys. Load the key into ssh-agent "
           "(ssh-add), pass host_options={'identity_file': ...}, or set IdentityFile in "
           "~/.ssh/config; check the account's authorized_keys on the host "
           "(administrators: C:\\ProgramData\\ssh\\administrators_authorized_keys).",
    "winrm": "The host rejected the account. Kerberos: kinit / a domain logon and the host's "
             "FQDN; NTLM: host_username and HVMAGIC_HOST_PASSWORD; the account must be allowed "
             "to use WinRM (Administrators or Remote Management Users).",
}
_REACH_ADVICE = {
    "ssh": "Check the host name and port, that sshd runs on the host (Get-Service sshd) and "
           "that the firewall allows it; the host also needs 'Subsystem powershell' in "
           "sshd_config.",
    "winrm": "Check the host name and port (5985 HTTP, 5986 HTTPS), that WinRM runs "
             "(Enable-PSRemoting on the host) and that the firewall allows it.",
}


def _reachability_check(host: str, via: str, port: int | None, timeout: float) -> Check:
    target = port or _DEFAULT_PORTS.get(via, 0)
    name = f"{via.upper()} endpoint"
    try:
        with socket.create_connection((host, target), timeout=min(timeout, 10.0)):
            pass
    except OSError as exc:
        return Check(name, "fail", f"{host}:{target} cannot be reached: {exc}",
                     _REACH_ADVICE.get(via, ""))
    return Check(name, "ok", f"{host}:{target} accepts connections.")


def _remote_host_checks(
    vm: str | None, host: str, via: str, host_username: str | None,
    host_options: dict[str, Any], timeout: float,
) -> list[Check]:
    """Reach the host, log on, then the same Hyper-V checks as on the host, run there."""
    checks = [Check("Python version", "skipped",
                    "PowerShell Direct runs on the Hyper-V host, not here."),
              Check("Platform", "skipped", f"Any platform: the host {host!r} is reached via "
                                           f"{via}.")]
    reach = _reachability_check(host, via, host_options.get("port"), timeout)
    checks.append(reach)
    later = ["Host logon", "Hyper-V module", "Hyper-V admin rights"]
    if vm is not None:
        later += ["VM found"]
    if reach.status == "fail":
        return checks + [Check(name, "skipped", "The host cannot be reached.") for name in later]
    try:
        session = plain_remote_session(host, via=via, host_username=host_username,
                                       timeout=timeout, **host_options)
    except HvMagicError as exc:
        advice = (_HOST_AUTH_ADVICE.get(via, "") if isinstance(exc, CredentialError)
                  else _REACH_ADVICE.get(via, ""))
        checks.append(Check("Host logon", "fail", str(exc), advice))
        return checks + [Check(name, "skipped", "No session on the host.")
                         for name in later[1:]]
    try:
        who = host_username or "the default account"
        checks.append(Check("Host logon", "ok",
                            f"{who} has a PowerShell session on {host} ({session.description})."))
        try:
            output = session.run(HOST_PROBE_SCRIPT, timeout=timeout).output
            facts = json.loads(str(output[-1]).lstrip("\ufeff")) if output else {}
        except (HvMagicError, json.JSONDecodeError, IndexError) as exc:
            checks.append(Check("Hyper-V module", "fail", f"The host probe failed: {exc}",
                                "Run the probe by hand on the host to see why."))
            return checks
        host_checks, vms = _host_checks(facts if isinstance(facts, dict) else {})
        checks += host_checks
        if vm is not None:
            if vms is None:
                checks.append(Check("VM found", "skipped",
                                    f"VMs could not be listed on {host} (see above)."))
            else:
                checks += _vm_checks(vm, vms, facts)
    finally:
        session.close()
    return checks


def doctor(
    vm: str | None = None,
    *,
    username: str | None = None,
    runner: Runner | None = None,
    platform_info: PlatformInfo | None = None,
    error: BaseException | None = None,
    timeout: float = DEFAULT_RUNNER_TIMEOUT,
    host: str | None = None,
    via: str = "winrm",
    host_username: str | None = None,
    host_options: dict[str, Any] | None = None,
) -> DoctorReport:
    """Run the preflight for ``vm`` (name or id; ``None`` checks only the host).

    ``error`` is the exception a connection attempt raised, if any: its lesson is added as a
    check. ``runner`` and ``platform_info`` are injectable (tests, unusual hosts).

    ``host="hv01"`` checks the VM behind a remote Hyper-V host instead: the host's ``via``
    (``"winrm"`` or ``"ssh"``) endpoint is reachable, the host account logs on
    (``host_username``, ``host_options`` as for :func:`hvmagic.connect`), it is a Hyper-V
    administrator there, then the VM checks — each run on the host.
    """
    report = DoctorReport(vm=vm)
    if host is not None:
        if via not in _DEFAULT_PORTS:
            raise ValueError(f"via must be 'winrm' or 'ssh' for a remote host, not {via!r}")
        report.checks += _remote_host_checks(vm, host, via, host_username,
                                             dict(host_options or {}), timeout)
        report.checks.append(_credential_check(username, error))
        if error is not None and not isinstance(error, CredentialError):
            report.checks.append(Check("Connection", "fail", str(error), explain(error)))
        return report
    info = PlatformInfo.current() if platform_info is None else platform_info
    report.checks += [_python_check(info), _platform_check(info)]

    host_checks: Sequence[str] = ("Hyper-V module", "Hyper-V admin rights")
    vm_checks: Sequence[str] = ("VM found", "VM running", "Heartbeat",
                                "PowerShell Direct service")
    if not info.windows:
        report.checks += [Check(name, "skipped", "Needs the Windows Hyper-V host.")
                          for name in host_checks]
        if vm is not None:
            report.checks += [Check(name, "skipped", "Needs the Windows Hyper-V host.")
                              for name in vm_checks]
    else:
        try:
            facts = _probe_host(runner, timeout)
        except HvMagicError as exc:
            report.checks.append(Check(
                "Windows PowerShell", "fail", f"The host probe could not run: {exc}",
                "Make sure powershell.exe (Windows PowerShell 5.1) is on PATH.",
            ))
        else:
            checks, vms = _host_checks(facts)
            report.checks += checks
            if vm is not None:
                if vms is None:
                    report.checks.append(Check("VM found", "skipped",
                                               "VMs could not be listed (see above)."))
                else:
                    report.checks += _vm_checks(vm, vms, facts)

    report.checks.append(_credential_check(username, error))
    report.checks.append(_legacy_check(error))
    if error is not None and not isinstance(error, (CredentialError, LegacyGuestRefusedError)):
        report.checks.append(Check("Connection", "fail", str(error), explain(error)))
    return report


# ``hvmagic.doctor`` names both this module and the function: the package's lazy attribute
# hands out the function on first access, and importing the submodule then binds the module to
# the same attribute. Either object must serve both uses, so the module is callable and the
# function carries the module's public helpers.
doctor.explain = explain  # type: ignore[attr-defined]
doctor.DoctorReport = DoctorReport  # type: ignore[attr-defined]
doctor.Check = Check  # type: ignore[attr-defined]
doctor.PlatformInfo = PlatformInfo  # type: ignore[attr-defined]


class _CallableModule(types.ModuleType):
    """Lets ``hvmagic.doctor(...)`` work when the attribute holds this module (see above)."""

    def __call__(self, *args: Any, **kwargs: Any) -> DoctorReport:
        return doctor(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
