"""The demo guest is real PowerShell with simulated Windows data (issue 13, point 3).

One demo session (``open_demo_session`` on the pwsh under test) serves the module. For the DATA,
``HvmagicDemo/DemoData.json`` is the source: every demo command shows its rows, as objects with
the Windows type names hvmagic's views know. For PowerShell's BEHAVIOUR, PowerShell is the judge:
the same snippets run in a separate ``pwsh`` with the demo module imported, and hvmagic's
answers must equal PowerShell's own.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from hvmagic.connection import last_boot_time
from hvmagic.demo import MODULE_MANIFEST, forget_machine, machine_folder, open_demo_session
from hvmagic.errors import SessionBrokenError, TransportError, UnsupportedPlatformError
from hvmagic.session import Session, open_session
from hvmagic.transports.process import ProcessTransport
from tests.pwsh.conftest import AskPwsh

DATA = json.loads((MODULE_MANIFEST.parent / "DemoData.json").read_text(encoding="utf-8"))
VARIABLE_NAMES = "(Get-Variable).Name | Sort-Object"
#: the variables of the demo session right after it opened (later tests add their own)
_fresh: dict[str, list[Any]] = {}


@pytest.fixture(scope="module")
def demo(pwsh: str) -> Iterator[Session]:
    name = f"test-{uuid.uuid4().hex[:8]}"
    session = open_demo_session(executable=pwsh, name=name, timeout=120)
    try:
        _fresh["variables"] = session.run(VARIABLE_NAMES).output
        yield session
    finally:
        session.close()
        forget_machine(name)


# -- the data file's rows, as Windows objects hvmagic's views know ------------------------------


DATA_ROWS = [
    ("Get-Service", "Services", "Name", "System.ServiceProcess.ServiceController"),
    ("Get-Process", "Processes", "Id", "System.Diagnostics.Process"),
    ("Get-HotFix", "HotFixes", "HotFixID",
     "System.Management.ManagementObject#root\\cimv2\\Win32_QuickFixEngineering"),
    ("Get-WindowsFeature", "Features", "Name", "Microsoft.Windows.ServerManager.Commands.Feature"),
    ("Get-ScheduledTask", "ScheduledTasks", "TaskName",
     "Microsoft.Management.Infrastructure.CimInstance#Root/Microsoft/Windows/TaskScheduler/"
     "MSFT_ScheduledTask"),
    ("Get-Volume", "Volumes", "FileSystemLabel",
     "Microsoft.Management.Infrastructure.CimInstance#ROOT/Microsoft/Windows/Storage/MSFT_Volume"),
    ("Get-NetIPAddress", "IPAddresses", "IPAddress",
     "Microsoft.Management.Infrastructure.CimInstance#ROOT/StandardCimv2/MSFT_NetIPAddress"),
    ("Get-WinEvent -LogName System, Application -MaxEvents 1000", "Events", "Id",
     "System.Diagnostics.Eventing.Reader.EventLogRecord"),
]


@pytest.mark.parametrize(
    ("script", "table", "key", "type_name"),
    DATA_ROWS,
    ids=[row[0].split()[0] for row in DATA_ROWS],
)
def test_demo_commands_show_the_data_files_rows(
    demo: Session, script: str, table: str, key: str, type_name: str
) -> None:
    result = demo.run(script)
    assert not result.errors, result.errors
    assert sorted(str(o[key]) for o in result.output) == sorted(str(r[key]) for r in DATA[table])
    # the Windows type name, which hvmagic's views and PowerShell's formatting key on
    assert {o.type_names[0] for o in result.output} == {type_name}
    assert len(result.frame()) == len(DATA[table])


def test_enums_are_real_enums_with_their_windows_type_names(demo: Session) -> None:
    service = demo.run("Get-Service W32Time").output[0]
    status = service["Status"]
    assert str(status) == "Running" and int(status) == 4
    assert status.type_name == "System.ServiceProcess.ServiceControllerStatus"
    assert str(service["StartType"]) == "Manual"
    feature = demo.run("Get-WindowsFeature PowerShell").output[0]
    assert (
        feature["InstallState"].type_name == "Microsoft.Windows.ServerManager.Commands.InstallState"
    )
    assert str(feature["InstallState"]) == "Installed"
    task = demo.run("Get-ScheduledTask SynchronizeTime").output[0]
    assert str(task["State"]) == "Disabled" and int(task["State"]) == 1


def test_unknown_service_is_a_non_terminating_error(demo: Session) -> None:
    result = demo.run("Get-Service -Name W32Time, NoSuchService")
    assert [s["Name"] for s in result.output] == ["W32Time"]
    assert len(result.errors) == 1
    assert result.errors[0].message == "Cannot find any service with service name 'NoSuchService'."
    assert str(result.errors[0].fully_qualified_error_id).startswith("NoServiceFoundForGivenName")


# -- ordinary PowerShell against the demo: PowerShell's own answers ----------------------------

SNIPPETS = [
    "if ((Get-Service W32Time).Status -eq 'Running') { 'up' } else { 'down' }",
    "foreach ($s in Get-Service -Name 'vmic*' | Select-Object -First 3) { $s.Name.ToUpper() }",
    'try { Get-Service -Name nope -ErrorAction Stop } catch { "caught: $($_.Exception.Message)" }',
    "$h = @{ a = 1; b = 'two' }; $h.b + $h.a",
    '@"\nservices: $((Get-Service).Count)\nfirst: $((Get-Service)[0].Name)\n"@',
    "(Get-Service W32Time | Get-Member -MemberType Properties).Name -join ','",
    "(Get-Process | Measure-Object -Property CPU -Sum).Sum",
    "'{0:N1}' -f 12.345",
    "Get-Service | Sort-Object @{ Expression = 'Status'; Descending = $true }, "
    "@{ Expression = 'Name' } | Select-Object -First 3 -ExpandProperty Name",
    "Stop-Service W32Time -WhatIf; (Get-Service W32Time).Status.ToString()",
    "(Get-Date).ToString('u').Length",
    "try { Get-Service -Nmae x } catch { $_.FullyQualifiedErrorId }",
    "try { Get-SmbShare } catch { $_.FullyQualifiedErrorId; $_.Exception.Message }",
    "(Get-NetAdapter | Where-Object Status -eq 'Up').Name",
    '1..3 | ForEach-Object { Write-Output "item $_" }',
    "(Get-Service W32Time).Status -is [System.ServiceProcess.ServiceControllerStatus]",
    "Get-Service | Group-Object Status -NoElement | Sort-Object Name | "
    'ForEach-Object { "$($_.Name)=$($_.Count)" }',
    "[math]::Round((Get-Volume -DriveLetter C).SizeRemaining / 1GB, 1)",
    "(Get-WinEvent -LogName System -MaxEvents 2 | Select-Object -ExpandProperty Id) -join ','",
    "(Get-HotFix | Sort-Object InstalledOn -Descending | Select-Object -First 1).HotFixID",
    "(Get-Command Get-Process).CommandType.ToString()",
    "@(Get-WindowsFeature | Where-Object Installed).Count",
    "Get-ComputerInfo -Property Os* | Get-Member -MemberType NoteProperty | "
    "Measure-Object | ForEach-Object Count",
]


def _plain(value: Any) -> Any:
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, (int, float)) and not hasattr(value, "type_names"):
        return float(value)
    return str(value)


def test_ordinary_powershell_gives_powershells_own_answers(
    demo: Session, ask_pwsh: AskPwsh
) -> None:
    manifest = str(MODULE_MANIFEST).replace("'", "''")
    blocks = ",\n".join(
        "@(& {\n" + snippet + "\n} 6>$null | ForEach-Object { if ($_ -is [bool] -or "
        '$_ -is [double] -or $_ -is [int] -or $_ -is [long]) { $_ } else { "$_" } })'
        for snippet in SNIPPETS
    )
    script = (
        f"Import-Module '{manifest}' -DisableNameChecking -ArgumentList '', ''\n"
        f"$answers = @(\n{blocks}\n)\n"
        "'--- answers ---'\n"
        "ConvertTo-Json -InputObject @($answers | ForEach-Object { ,@($_) }) -Depth 3 -Compress"
    )
    printed = ask_pwsh(script)  # -WhatIf's text goes to the host, before the answers
    expected = json.loads(printed.split("--- answers ---", 1)[1])
    assert len(expected) == len(SNIPPETS)
    for snippet, answer in zip(SNIPPETS, expected, strict=True):
        result = demo.run(snippet)
        got = [_plain(v) for v in result.output]
        want = [
            float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v
            for v in answer
        ]
        assert got == want, f"{snippet!r}: hvmagic {got!r}, PowerShell {want!r}"


def test_whatif_changes_nothing_and_says_so(demo: Session) -> None:
    result = demo.run("Stop-Service W32Time -WhatIf")
    text = " ".join(result.host) + " ".join(str(i) for i in result.information)
    assert (
        'What if: Performing the operation "Stop-Service" on target "Windows Time (W32Time)".'
        in text
    )
    assert str(demo.run("(Get-Service W32Time).Status").output[0]) == "Running"


def test_state_persists_between_runs(demo: Session) -> None:
    demo.run("Stop-Service W32Time")
    try:
        assert str(demo.run("Get-Service W32Time").output[0]["Status"]) == "Stopped"
        assert demo.run(
            "(Get-Service | Where-Object Status -eq 'Stopped').Name -contains 'W32Time'"
        ).output == [True]
    finally:
        demo.run("Start-Service W32Time")
    assert str(demo.run("Get-Service W32Time").output[0]["Status"]) == "Running"


def test_unstoppable_service_refuses_like_windows(demo: Session) -> None:
    result = demo.run("Stop-Service RpcSs")
    assert len(result.errors) == 1
    assert "cannot be stopped" in result.errors[0].message
    assert str(demo.run("(Get-Service RpcSs).Status").output[0]) == "Running"


def test_opening_leaves_no_variables_behind(demo: Session, pwsh: str) -> None:
    plain = open_session(ProcessTransport(pwsh), name="plain")
    try:
        assert _fresh["variables"] == plain.run(VARIABLE_NAMES).output
    finally:
        plain.close()


def test_session_looks_like_a_guest_console(demo: Session) -> None:
    assert (
        demo.run("$PWD.Path").output[0].replace("/", "\\") == "C:\\Users\\Administrator\\Documents"
    )
    assert demo.run("$env:COMPUTERNAME; hostname").output == ["SIMULATED-GUEST"] * 2


def test_culture_is_a_windows_servers_en_us(demo: Session) -> None:
    # the demo imitates an en-US Windows Server; a bare Linux locale would make .NET's culture
    # invariant ('16 %'). A .NET without ICU stays invariant whatever the environment says.
    if demo.run("[AppContext]::GetData('System.Globalization.Invariant')").output == [True]:
        pytest.skip("this .NET runs without ICU (invariant globalization)")
    assert demo.run("(Get-Culture).Name; '{0:P0}' -f 0.16").output == ["en-US", "16%"]


def test_runbook_files_are_on_the_demo_c_drive(demo: Session) -> None:
    result = demo.run(
        "Compress-Archive -Path C:\\Windows\\Logs\\CBS, C:\\Windows\\Logs\\DISM "
        "-DestinationPath C:\\Windows\\Temp\\hvmagic-logs.zip -Force\n"
        "(Get-Item C:\\Windows\\Temp\\hvmagic-logs.zip).Length"
    )
    assert not result.errors, result.errors
    assert result.output[0] > 200
    assert (machine_folder(demo.name) / "C" / "Windows" / "Temp" / "hvmagic-logs.zip").is_file()


# -- restart: the session ends, the machine comes back later --------------------------------------


def test_restart_computer_ends_the_session_and_the_machine_boots_later(pwsh: str) -> None:
    name = f"test-restart-{uuid.uuid4().hex[:8]}"
    first = open_demo_session(executable=pwsh, name=name, timeout=120)
    try:
        installed = first.run("Install-WindowsFeature Web-Server").output[0]
        assert str(installed["RestartNeeded"]) == "Yes"
        assert (
            str(first.run("(Get-DscLocalConfigurationManager).LCMState").output[0])
            == "PendingReboot"
        )
        booted = last_boot_time(first)
        stopped = first.run("Get-Process spoolsv | Stop-Process -PassThru | ForEach-Object Id")
        assert (
            stopped.output == [2044]
            and not first.run("Get-Process spoolsv -ErrorAction Ignore").output
        )
        first.run("Restart-Computer -Force")
        with pytest.raises((SessionBrokenError, TransportError)):
            for _ in range(100):  # the server process ends a moment after the command returns
                first.run("Start-Sleep -Milliseconds 100")
        second = open_demo_session(executable=pwsh, name=name, timeout=120)
        try:
            assert last_boot_time(second) > booted
            answers = second.run(
                "(Get-DscLocalConfigurationManager).LCMState; (Get-Service W3SVC).Status; "
                "(Get-WindowsFeature Web-Server).InstallState"
            ).output
            assert [str(a) for a in answers] == ["Idle", "Running", "Installed"]
            assert second.run("(Get-Process spoolsv).Id").output == [2044]  # booted: back
        finally:
            second.close()
    finally:
        first.close()
        forget_machine(name)


def test_stop_process_never_reaches_the_host_machine(demo: Session) -> None:
    # PowerShell's own Stop-Process would end the host's process with that id
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        result = demo.run(f"Stop-Process -Id {sleeper.pid} -Force")
        assert [e.message for e in result.errors] == [
            f"Cannot find a process with the process identifier {sleeper.pid}."
        ]
        assert sleeper.poll() is None
    finally:
        sleeper.kill()
        sleeper.wait()


@pytest.mark.parametrize(
    ("script", "host_text"),
    [
        ("Restart-Computer -WhatIf", 'What if: Performing the operation "Restart-Computer"'),
        ("Stop-Computer -WhatIf", 'What if: Performing the operation "Stop-Computer"'),
    ],
)
def test_restart_and_shutdown_are_the_demos_own(demo: Session, script: str, host_text: str) -> None:
    assert demo.run("(Get-Command Restart-Computer, Stop-Computer).Source").output == [
        "HvmagicDemo",
        "HvmagicDemo",
    ]
    result = demo.run(script)
    assert any(host_text in line for line in result.host), result.host
    assert demo.run("1").output == [1]  # still connected


# -- no PowerShell -----------------------------------------------------------------------------


def test_without_powershell_the_error_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    monkeypatch.delenv("HVMAGIC_PWSH", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(UnsupportedPlatformError) as caught:
        open_demo_session()
    message = str(caught.value)
    assert "Install PowerShell 7" in message and "replay" in message
    with pytest.raises(UnsupportedPlatformError, match="no file"):
        open_demo_session(executable=os.fspath(tmp_path / "pwsh"))
