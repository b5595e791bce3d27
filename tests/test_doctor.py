"""hvmagic.doctor: every check with injected platform facts and a fake Windows PowerShell."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Sequence
from typing import Any

import pytest

import hvmagic
from hvmagic.doctor import (
    HOST_PROBE_SCRIPT,
    Check,
    DoctorReport,
    PlatformInfo,
    doctor,
    explain,
)
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

WINDOWS = PlatformInfo("win32", (3, 12, 4), True)
LINUX = PlatformInfo("linux", (3, 11, 7), False)
VM_ID = "6f9e1c2a-52d4-4d3b-9a1e-0c8b7d6e5f40"
OFF_ID = "0a1b2c3d-0000-4000-8000-000000000001"


def facts(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "PSVersion": "5.1.20348.2849",
        "IsAdmin": False,
        "IsHyperVAdmin": True,
        "HyperVModule": True,
        "VMs": [
            {"Id": VM_ID, "Name": "vm01", "State": "Running",
             "Heartbeat": "OkApplicationsHealthy"},
            {"Id": OFF_ID, "Name": "build", "State": "Off", "Heartbeat": ""},
        ],
        "VMsError": None,
        "Integration": [
            {"VMId": VM_ID, "Name": "Heartbeat", "Enabled": True, "Status": "OK"},
            {"VMId": VM_ID, "Name": "Guest Service Interface", "Enabled": False, "Status": ""},
        ],
        "IntegrationError": None,
    }
    base.update(changes)
    return base


class Runner:
    def __init__(self, payload: Any = None, returncode: int = 0, stderr: str = "",
                 raw: str | None = None) -> None:
        self.stdout = raw if raw is not None else json.dumps(
            facts() if payload is None else payload
        )
        self.returncode = returncode
        self.stderr = stderr
        self.calls: list[list[str]] = []

    def __call__(self, argv: Sequence[str], timeout: float) -> subprocess.CompletedProcess[str]:
        self.calls.append(list(argv))
        return subprocess.CompletedProcess(list(argv), self.returncode, self.stdout, self.stderr)


def run(vm: str | None = "vm01", **kw: Any) -> DoctorReport:
    kw.setdefault("platform_info", WINDOWS)
    kw.setdefault("runner", Runner())
    return doctor(vm, **kw)


def statuses(report: DoctorReport) -> dict[str, str]:
    return {check.name: check.status for check in report.checks}


def test_healthy_host_and_vm() -> None:
    runner = Runner()
    report = run(runner=runner, username="administrator")
    assert report.ok
    assert statuses(report) == {
        "Python version": "ok",
        "Platform": "ok",
        "Hyper-V module": "ok",
        "Hyper-V admin rights": "ok",
        "VM found": "ok",
        "VM running": "ok",
        "Heartbeat": "ok",
        "PowerShell Direct service": "skipped",
        "Credentials": "ok",
        "Legacy guest": "skipped",
    }
    assert report["Hyper-V module"].explanation == (
        "Hyper-V PowerShell module present (Windows PowerShell 5.1.20348.2849)."
    )
    assert report["Hyper-V admin rights"].explanation == (
        "Running as a member of Hyper-V Administrators."
    )
    assert report["VM found"].explanation == f"vm01 (id {VM_ID})."
    assert report["Credentials"].explanation.startswith(
        "The broker will receive domain 'localhost' and user 'administrator'"
    )
    # one constant probe script; the VM name never becomes PowerShell source
    assert runner.calls == [["powershell.exe", "-NoProfile", "-NonInteractive", "-Command",
                             HOST_PROBE_SCRIPT]]
    assert "vm01" not in HOST_PROBE_SCRIPT
    assert str(report).splitlines()[0] == "hvmagic doctor for VM vm01: all checks passed"


def test_ps_direct_service_listed_and_enabled() -> None:
    integration = [{"VMId": VM_ID, "Name": "PowerShell Direct", "Enabled": True, "Status": "OK"}]
    report = run(runner=Runner(facts(Integration=integration)))
    check = report["PowerShell Direct service"]
    assert (check.status, check.explanation) == ("ok", "'PowerShell Direct' is enabled (OK).")


def test_ps_direct_service_disabled_is_a_failure_with_the_enable_command() -> None:
    integration = [{"VMId": VM_ID, "Name": "PowerShell Direct", "Enabled": False,
                    "Status": ""}]
    report = run(runner=Runner(facts(Integration=integration)))
    check = report["PowerShell Direct service"]
    assert check.status == "fail"
    assert check.fix == "Enable-VMIntegrationService -VMName 'vm01' -Name 'PowerShell Direct'"
    assert not report.ok


def test_ps_direct_service_not_ok_is_a_warning() -> None:
    integration = [{"VMId": VM_ID, "Name": "VM Session Service", "Enabled": True,
                    "Status": "No Contact"}]
    check = run(runner=Runner(facts(Integration=integration)))["PowerShell Direct service"]
    assert check.status == "warn"
    assert "'No Contact'" in check.explanation
    assert "Restart-Service vmicvmsession" in check.fix


def test_ps_direct_service_not_listed_says_where_to_look() -> None:
    check = run()["PowerShell Direct service"]
    assert check.status == "skipped"
    assert "Get-Service vmicvmsession must not be Disabled" in check.fix


def test_ps_direct_service_of_another_vm_is_not_used() -> None:
    integration = [{"VMId": OFF_ID, "Name": "PowerShell Direct", "Enabled": False,
                    "Status": ""}]
    assert run(runner=Runner(facts(Integration=integration)))[
        "PowerShell Direct service"].status == "skipped"


def test_missing_hyperv_module() -> None:
    report = run(runner=Runner(facts(HyperVModule=False, VMs=None, Integration=[])))
    check = report["Hyper-V module"]
    assert check.status == "fail"
    assert "Install-WindowsFeature Hyper-V-PowerShell" in check.fix
    assert "Microsoft-Hyper-V-Management-PowerShell" in check.fix
    assert report["VM found"].status == "skipped"
    assert "VM running" not in report


def test_not_an_admin() -> None:
    report = run(runner=Runner(facts(IsAdmin=False, IsHyperVAdmin=False)))
    check = report["Hyper-V admin rights"]
    assert check.status == "fail"
    assert "Get-VM shows no VMs" in check.explanation
    assert "S-1-5-32-578" in check.fix


def test_elevated_admin_is_enough() -> None:
    report = run(runner=Runner(facts(IsAdmin=True, IsHyperVAdmin=False)))
    assert report["Hyper-V admin rights"].explanation == (
        "Running as a member of Administrators (elevated)."
    )


def test_get_vm_failure_is_reported() -> None:
    report = run(runner=Runner(facts(VMs=None, VMsError="You do not have the required "
                                                        "permission to complete this task.")))
    assert report["Get-VM"].status == "fail"
    assert "required permission" in report["Get-VM"].explanation
    assert report["VM found"].status == "skipped"


def test_vm_not_found_lists_visible_vms() -> None:
    check = run("nosuch")["VM found"]
    assert check.status == "fail"
    assert check.explanation == "No VM named 'nosuch' on this host (visible: build, vm01)."


def test_vm_by_id() -> None:
    assert run("{" + VM_ID.upper() + "}")["VM found"].status == "ok"


def test_duplicate_names() -> None:
    twins = [{"Id": VM_ID, "Name": "twin", "State": "Running"},
             {"Id": OFF_ID, "Name": "Twin", "State": "Running"}]
    check = run("twin", runner=Runner(facts(VMs=twins)))["VM found"]
    assert check.status == "fail" and check.fix == "Connect by VM id instead of name."


def test_vm_off() -> None:
    report = run("build")
    assert report["VM running"].status == "fail"
    assert report["VM running"].explanation == "build is Off."
    assert report["VM running"].fix == "Start-VM -Name 'build', then wait for the guest to boot."
    assert "Heartbeat" not in report


def test_no_heartbeat_is_a_warning() -> None:
    vms = [{"Id": VM_ID, "Name": "vm01", "State": "Running", "Heartbeat": "NoContact"}]
    report = run(runner=Runner(facts(VMs=vms)))
    check = report["Heartbeat"]
    assert check.status == "warn"
    assert check.explanation.startswith("Guest heartbeat: NoContact - the guest OS may still")
    assert report.ok  # a warning is not a failure


def test_single_vm_object_from_powershell() -> None:
    single = {"Id": VM_ID, "Name": "vm01", "State": "Running", "Heartbeat": "OkApplicationsUnknown"}
    assert run(runner=Runner(facts(VMs=single)))["Heartbeat"].status == "ok"


def test_powershell_failing_is_reported() -> None:
    runner = Runner(returncode=1, raw="", stderr="powershell.exe : Access is denied.\r\n")
    report = run(runner=runner)
    check = report["Windows PowerShell"]
    assert check.status == "fail"
    assert check.explanation == (
        "The host probe could not run: Windows PowerShell failed: powershell.exe : Access is "
        "denied."
    )
    assert "VM found" not in report


def test_probe_output_not_json() -> None:
    check = run(runner=Runner(raw="WARNING: something\n{"))["Windows PowerShell"]
    assert check.status == "fail" and "not JSON" in check.explanation


def test_linux_fails_python_and_platform_and_skips_host_checks() -> None:
    def runner(argv: Sequence[str], timeout: float) -> subprocess.CompletedProcess[str]:
        raise AssertionError("no PowerShell off Windows")

    report = doctor("vm01", platform_info=LINUX, runner=runner)
    assert not report.ok
    assert [check.name for check in report.failures] == ["Python version", "Platform"]
    assert report["Python version"].explanation == (
        "Python 3.11.7 has no socket.AF_HYPERV (added in CPython 3.12)."
    )
    assert "via='process'" in report["Python version"].fix
    assert report["Platform"].explanation.startswith("This is linux; PowerShell Direct works only")
    assert "WinRM" in report["Platform"].fix
    assert report["VM found"].status == "skipped"
    assert report["Hyper-V module"].explanation == "Needs the Windows Hyper-V host."
    text = str(report)
    assert text.splitlines()[0] == "hvmagic doctor for VM vm01: 2 problems found"
    assert "[FAIL] Platform: This is linux" in text
    assert "       fix: Run hvmagic on the Hyper-V host" in text


def test_windows_with_old_python() -> None:
    report = run(platform_info=PlatformInfo("win32", (3, 11, 9), False))
    assert report["Python version"].status == "fail"
    assert report["Platform"].status == "ok"


def test_windows_python_without_af_hyperv() -> None:
    report = run(platform_info=PlatformInfo("win32", (3, 12, 0), False))
    assert report["Platform"].explanation == (
        "Windows, but this Python build lacks socket.AF_HYPERV."
    )


def test_without_a_vm_only_the_host_is_checked() -> None:
    report = run(None)
    assert "VM found" not in report
    assert str(report).splitlines()[0] == "hvmagic doctor: all checks passed"


def test_rejected_credentials_from_the_connection_attempt() -> None:
    report = run(username="admin", error=CredentialError("The credential is invalid."))
    check = report["Credentials"]
    assert (check.status, check.explanation) == ("fail", "The credential is invalid.")
    assert "disabled built-in Administrator" in check.fix
    assert "Connection" not in report


def test_unusable_user_name() -> None:
    check = run(username="CORP\\")["Credentials"]
    assert (check.status, check.explanation) == ("fail", "The input username cannot be empty.")


def test_legacy_guest_refused() -> None:
    report = run(error=LegacyGuestRefusedError("legacy"))
    check = report["Legacy guest"]
    assert check.status == "fail"
    assert "CVE-2025-49734" in check.fix and "allow_legacy=True" in check.fix
    assert "Connection" not in report


def test_other_connection_errors_get_a_connection_check() -> None:
    error = HandshakeError("The Hyper-V Broker did not answer the version request within 30 s.")
    check = run(error=error)["Connection"]
    assert check.status == "fail"
    assert check.explanation == str(error)
    assert "Restart-Service vmicvmsession" in check.fix


def test_html_is_a_table_and_escapes() -> None:
    report = run("<b>bad</b>")
    markup = report._repr_html_()
    assert markup.startswith("<div><strong>hvmagic doctor for VM &lt;b&gt;bad&lt;/b&gt;")
    assert '<table class="hvmagic-doctor">' in markup
    assert "<b>bad</b>" not in markup
    assert markup.count("<tr>") == len(report.checks) + 1
    assert '<td style="color:#c62828;font-weight:bold">fail</td>' in markup


def test_report_lookup_and_repr() -> None:
    report = DoctorReport([Check("A", "ok", "fine"), Check("B", "warn", "hmm", "do x")], vm="v")
    assert report["B"].fix == "do x"
    with pytest.raises(KeyError):
        report["C"]
    assert repr(report) == "DoctorReport(vm='v', ok=True, A=ok, B=warn)"
    assert str(report) == (
        "hvmagic doctor for VM v: all checks passed\n[ ok ] A: fine\n[WARN] B: hmm\n"
        "       fix: do x"
    )


@pytest.mark.parametrize(
    ("exc", "phrase"),
    [
        (CredentialError("The credential is invalid."), "rejected the user name or password"),
        (LegacyGuestRefusedError("x"), "install the guest's Windows updates"),
        (VMNotFoundError("x"), "Hyper-V Administrators"),
        (VMStateError("x"), "Start the VM (Start-VM)"),
        (SessionBrokenError("x"), "guest PowerShell process ended"),
        (HandshakeError("The Hyper-V Broker closed the connection after the domain"),
         "Restart-Service vmicvmsession"),
        (HandshakeError("Hyper-V Broker sent an invalid Token response during the connection "
                        "negotiation."), "all Windows updates"),
        (TransportError("Could not connect to the PowerShell Direct broker of VM v: refused"),
         "Set-Service vmicvmsession -StartupType Manual"),
        (TransportError("The PowerShell process in VM v did not accept a connection after 10 "
                        "attempts"), "Get-PSSessionConfiguration"),
        (TransportError("pipe closed."), "pipe closed. Run hvmagic.doctor(vm)"),
        (UnsupportedPlatformError("use via='process'"), "use via='process'"),
        (HvMagicError("plain"), "plain"),
        (ValueError("odd"), "Unexpected ValueError: odd."),
    ],
)
def test_explain(exc: BaseException, phrase: str) -> None:
    assert phrase in explain(exc)
    assert DoctorReport.explain(exc) == explain(exc)


def test_package_level_doctor_is_callable_even_after_importing_the_module() -> None:
    import hvmagic.doctor as module

    report = hvmagic.doctor(None, platform_info=LINUX)
    assert isinstance(report, DoctorReport)
    assert module(None, platform_info=LINUX).checks == report.checks  # type: ignore[operator]


@pytest.mark.parametrize(
    "code",
    [
        # first access through the package: the lazy attribute hands out the function
        "import hvmagic; d = hvmagic.doctor",
        "from hvmagic import doctor as d",
        # the submodule imported first: the attribute is the module
        "import hvmagic.doctor; import hvmagic; d = hvmagic.doctor",
    ],
)
def test_hvmagic_doctor_serves_as_function_and_module_in_a_fresh_interpreter(code: str) -> None:
    import sys
    from pathlib import Path

    script = (
        f"{code}\n"
        "from hvmagic.errors import CredentialError\n"
        "from hvmagic.doctor import PlatformInfo\n"
        "report = d(None, platform_info=PlatformInfo('linux', (3, 11, 0), False))\n"
        "print(type(report).__name__, report.ok)\n"
        "print(d.explain(CredentialError('x'))[:40])\n"
    )
    repo = Path(__file__).resolve().parent.parent
    done = subprocess.run([sys.executable, "-c", script], cwd=repo, capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "DoctorReport False", "The guest rejected the user name or pass",
    ]
