"""PowerShell's default table views (hvmagic.views): lookup through type-name chains and the
calculated columns, checked against the headers and script blocks of PowerShell's format files."""

from __future__ import annotations

import math
from typing import Any

import pytest

from hvmagic.clixml.values import PSEnum, PSVersion
from hvmagic.views import (
    VIEWS,
    Column,
    default_columns,
    feature_display_name,
    file_mode,
    find_view,
    is_cim_plumbing,
    is_cim_type,
    module_editions,
)


@pytest.mark.parametrize(
    ("type_name", "headers"),
    [
        ("System.Diagnostics.Process",
         ["Handles", "NPM(K)", "PM(K)", "WS(K)", "CPU(s)", "Id", "SI", "ProcessName"]),
        ("System.ServiceProcess.ServiceController", ["Status", "Name", "DisplayName"]),
        ("System.IO.FileInfo", ["Mode", "LastWriteTime", "Length", "Name"]),
        ("System.IO.DirectoryInfo", ["Mode", "LastWriteTime", "Length", "Name"]),
        ("Win32_QuickFixEngineering",
         ["Source", "Description", "HotFixID", "InstalledBy", "InstalledOn"]),
        ("System.Diagnostics.Eventing.Reader.EventLogRecord",
         ["TimeCreated", "Id", "LevelDisplayName", "Message"]),
        ("System.Diagnostics.EventLogEntry",
         ["Index", "Time", "EntryType", "Source", "InstanceID", "Message"]),
        ("MSFT_NetAdapter",
         ["Name", "InterfaceDescription", "ifIndex", "Status", "MacAddress", "LinkSpeed"]),
        ("MSFT_NetIPAddress",
         ["ifIndex", "IPAddress", "PrefixLength", "PrefixOrigin", "SuffixOrigin", "AddressState",
          "PolicyStore"]),
        ("MSFT_Volume",
         ["DriveLetter", "FriendlyName", "FileSystemType", "DriveType", "HealthStatus",
          "OperationalStatus", "SizeRemaining", "Size"]),
        ("Microsoft.HyperV.PowerShell.VirtualMachine",
         ["Name", "State", "CPUUsage(%)", "MemoryAssigned(M)", "Uptime", "Status", "Version"]),
        ("Microsoft.HyperV.PowerShell.VMNetworkAdapter",
         ["Name", "IsManagementOs", "VMName", "SwitchName", "MacAddress", "Status",
          "IPAddresses"]),
        ("Microsoft.Windows.ServerManager.Commands.Feature",
         ["Display Name", "Name", "Install State"]),
        ("Microsoft.PowerShell.Commands.LocalUser", ["Name", "Enabled", "Description"]),
        ("Microsoft.PowerShell.Commands.LocalPrincipal",
         ["ObjectClass", "Name", "PrincipalSource"]),
        ("MSFT_ScheduledTask", ["TaskPath", "TaskName", "State"]),
        ("Win32_ComputerSystem",
         ["Name", "PrimaryOwnerName", "Domain", "TotalPhysicalMemory", "Model", "Manufacturer"]),
        ("Win32_OperatingSystem",
         ["SystemDirectory", "Organization", "BuildNumber", "RegisteredUser", "SerialNumber",
          "Version"]),
    ],
)
def test_shipped_views_have_powershells_headers(type_name: str, headers: list[str]) -> None:
    view = VIEWS[type_name.lower()]
    assert list(view.headers) == headers
    assert view.source  # every view says where PowerShell defines it


def test_lookup_walks_the_chain_and_strips_deserialized() -> None:
    chain = [
        "Deserialized.Deserialized.System.ServiceProcess.ServiceController",
        "Deserialized.System.ComponentModel.Component",
        "Deserialized.System.Object",
    ]
    view = find_view(chain)
    assert view is not None and view.type_name == "System.ServiceProcess.ServiceController"
    # a derived type without a view of its own takes the first ancestor that has one
    derived = ["My.Company.FancyProcess", "System.Diagnostics.Process", "System.Object"]
    found = find_view(derived)
    assert found is not None and found.type_name == "System.Diagnostics.Process"


@pytest.mark.parametrize(
    "type_name",
    [
        "Microsoft.Management.Infrastructure.CimInstance#root/cimv2/Win32_Processor",
        "Deserialized.Microsoft.Management.Infrastructure.CimInstance#root/cimv2/WIN32_PROCESSOR",
        "System.Management.ManagementObject#root\\cimv2\\Win32_Processor",
        "System.Management.ManagementObject#Win32_Processor",
    ],
)
def test_wmi_and_cim_names_match_by_class(type_name: str) -> None:
    view = find_view([type_name, "System.Object"])
    assert view is not None
    assert view.headers[:2] == ("DeviceID", "Name")


def test_unknown_types_have_no_view() -> None:
    assert find_view(["Contoso.Widget", "System.Object"]) is None
    assert find_view([]) is None
    fan = "Microsoft.Management.Infrastructure.CimInstance#root/cimv2/Win32_Fan"
    assert find_view([fan]) is None


def test_fallback_is_all_properties_minus_wmi_plumbing() -> None:
    wmi = ["System.Management.ManagementObject#root\\cimv2\\power\\Win32_PowerPlan",
           "System.Management.ManagementObject", "System.Object"]
    names = ["__GENUS", "__CLASS", "__PATH", "Caption", "ElementName", "IsActive", "Scope",
             "CimClass", "PSComputerName"]
    assert is_cim_type(wmi)
    assert [c.header for c in default_columns(wmi, names)] == [
        "Caption", "ElementName", "IsActive", "PSComputerName"]
    # a plain .NET type keeps everything, in the object's order
    other = ["Contoso.Widget", "System.Object"]
    assert not is_cim_type(other)
    assert [c.header for c in default_columns(other, ["B", "__A", "Scope"])] == [
        "B", "__A", "Scope"]
    assert is_cim_plumbing("__RELPATH") and is_cim_plumbing("CimSystemProperties")
    assert not is_cim_plumbing("Name")


def test_process_columns_compute_like_the_script_blocks() -> None:
    view = VIEWS["system.diagnostics.process"]
    props = {
        "Handles": 247, "NPM": 22 * 1024 + 512, "PM": 9216 * 1024 + 513, "WS": 2560,
        "CPU": 1.453125, "Id": 11060, "SI": 1, "ProcessName": "python",
    }
    values = {c.header: c.value(props) for c in view.columns}
    # [long](x / 1024): .NET rounds half to even (22.5 → 22), 9216.50… → 9217, 2.5 → 2
    assert values == {
        "Handles": 247, "NPM(K)": 22, "PM(K)": 9217, "WS(K)": 2, "CPU(s)": 1.45,
        "Id": 11060, "SI": 1, "ProcessName": "python",
    }
    # the long names that a Process without the 5.1 alias properties carries
    raw = {"HandleCount": 5, "NonpagedSystemMemorySize64": 4096, "PagedMemorySize64": 0,
           "WorkingSet64": 1 << 20, "Id": 4, "SessionId": 0, "Name": "System"}
    values = {c.header: c.value(raw) for c in view.columns}
    assert values["Handles"] == 5 and values["NPM(K)"] == 4 and values["WS(K)"] == 1024
    assert values["SI"] == 0 and values["ProcessName"] == "System" and values["CPU(s)"] is None


def test_vm_memory_is_in_megabytes() -> None:
    view = VIEWS["microsoft.hyperv.powershell.virtualmachine"]
    column = next(c for c in view.columns if c.header == "MemoryAssigned(M)")
    assert column.value({"MemoryAssigned": 1238 * 2**20}) == 1238
    assert column.value({"MemoryAssigned": 0}) == 0
    assert column.value({}) is None


def test_file_mode_prefers_the_property_and_falls_back_to_attributes() -> None:
    assert file_mode({"Mode": "-a----", "Attributes": 16}) == "-a----"
    assert file_mode({"Attributes": PSEnum(16, "Directory")}) == "d-----"
    hidden = PSEnum(0x20 | 0x1 | 0x2, "ReadOnly, Hidden, Archive")
    assert file_mode({"Attributes": hidden}) == "-arh--"
    assert file_mode({"Attributes": 0x400 | 0x10 | 0x4}) == "d---sl"
    assert file_mode({}) is None


def test_feature_display_name_marks_and_indents() -> None:
    assert feature_display_name(
        {"DisplayName": "Hyper-V", "Installed": True, "Depth": 1}) == "[X] Hyper-V"
    assert feature_display_name(
        {"DisplayName": "Hyper-V Module for Windows PowerShell", "Installed": False, "Depth": 3}
    ) == "        [ ] Hyper-V Module for Windows PowerShell"
    assert feature_display_name({"Installed": True}) is None


def test_hotfix_source_comes_from_the_server_name_wmi_or_cim() -> None:
    view = VIEWS["win32_quickfixengineering"]
    source = view.columns[0]
    assert source.header == "Source"
    assert source.value({"__SERVER": "HV01", "CSName": "X"}) == "HV01"
    assert source.value({"CSName": "HV02"}) == "HV02"


def test_column_value_takes_the_first_alias_present() -> None:
    column = Column("X", ("A", "B"))
    assert column.value({"B": 2}) == 2
    assert column.value({"A": None, "B": 2}) is None  # present (even $null) wins, as in a view
    assert column.value({}) is None


def test_psdrive_sizes_are_gigabytes_unrounded() -> None:
    view = VIEWS["system.management.automation.psdriveinfo"]
    assert view.headers == ("Name", "Used (GB)", "Free (GB)", "Provider", "Root",
                            "CurrentLocation")
    values = {c.header: c.value({"Name": "C", "Used": 3 * 2**29, "Free": None, "Root": "C:\\"})
              for c in view.columns}
    assert values["Used (GB)"] == 1.5 and values["Free (GB)"] is None
    assert values["Root"] == "C:\\" and values["Provider"] is None


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf"), "12", [1]])
def test_process_scaled_columns_skip_values_that_are_no_finite_number(bad: object) -> None:
    # round(nan) raised ValueError and round(inf) OverflowError: to_dataframe crashed
    view = VIEWS["system.diagnostics.process"]
    props = {"WS": bad, "PM": 4096, "NPM": bad, "Id": 7, "ProcessName": "x"}
    values = {c.header: c.value(props) for c in view.columns}
    assert values["WS(K)"] is None and values["NPM(K)"] is None
    assert values["PM(K)"] == 4 and values["Id"] == 7


def test_feature_display_name_indent_is_clamped() -> None:
    deep = feature_display_name({"DisplayName": "x", "Installed": True, "Depth": 10**7})
    assert deep == " " * 4 * 31 + "[X] x"
    assert feature_display_name({"DisplayName": "x", "Depth": 32}) == " " * 4 * 31 + "[ ] x"
    assert feature_display_name({"DisplayName": "x", "Depth": 2}) == "    [ ] x"
    assert feature_display_name({"DisplayName": "x", "Depth": -5}) == "[ ] x"


def test_to_dataframe_survives_nan_and_infinite_process_memory() -> None:
    import pandas

    from hvmagic.clixml.values import PSObject
    from hvmagic.frames import to_dataframe

    rows = [PSObject({"WS": float("nan"), "Id": 1, "ProcessName": "a"},
                     ["System.Diagnostics.Process"]),
            PSObject({"WS": float("inf"), "Id": 2, "ProcessName": "b"},
                     ["System.Diagnostics.Process"]),
            PSObject({"WS": 8192, "Id": 3, "ProcessName": "c"}, ["System.Diagnostics.Process"])]
    frame = to_dataframe(rows, labels=True)
    column = frame["WS(K)"].tolist()
    assert column[2] == 8 and all(pandas.isna(value) for value in column[:2])
    assert frame["ProcessName"].tolist() == ["a", "b", "c"]


# --- the guest's PowerShell version picks the view -------------------------------------------

PROCESS_51 = ["Handles", "NPM(K)", "PM(K)", "WS(K)", "CPU(s)", "Id", "SI", "ProcessName"]
PROCESS_7 = ["NPM(K)", "PM(M)", "WS(M)", "CPU(s)", "Id", "SI", "ProcessName"]


@pytest.mark.parametrize(
    ("ps_version", "headers"),
    [(None, PROCESS_51), ("5.1.20348.2849", PROCESS_51), (PSVersion(5, 1), PROCESS_51),
     ("7.6.9", PROCESS_7), (PSVersion(7, 4, 1), PROCESS_7), (6, PROCESS_7),
     ("garbage", PROCESS_51)],
)
def test_process_view_follows_the_guests_powershell(ps_version: object,
                                                    headers: list[str]) -> None:
    chain = ["Deserialized.System.Diagnostics.Process", "Deserialized.System.Object"]
    view = find_view(chain, ps_version)
    assert view is not None and list(view.headers) == headers


def test_powershell_7_process_memory_is_megabytes() -> None:
    view = find_view(["System.Diagnostics.Process"], "7.6.9")
    assert view is not None
    props = {"NPM": 22 * 1024 + 512, "PM": 10_000_000, "WS": 3 * 2**19, "CPU": 1.5, "Id": 4,
             "SI": 0, "ProcessName": "x"}
    values = {c.header: c.value(props) for c in view.columns}
    assert values["NPM(K)"] == 22 and values["WS(M)"] == 1.5
    assert values["PM(M)"] == 9.54 and values["CPU(s)"] == 1.5
    assert view.columns[1].value({"PM": "12"}) is None
    # what "{0:N2}" prints on .NET (PowerShell 7.6 says so): exact ties to even
    assert view.columns[2].value({"WS": 2**17}) == 0.12  # 0.125 MB
    assert view.columns[2].value({"WS": 3 * 2**17}) == 0.38  # 0.375 MB
    assert view.columns[3].value({"CPU": 2.675}) == 2.67  # [float]2.675 is 2.67499995…
    # .NET Framework (5.1): 15 significant digits, then ties away from zero
    five = VIEWS["system.diagnostics.process"].columns[4]
    assert five.header == "CPU(s)"
    assert five.value({"CPU": 0.125}) == 0.13 and five.value({"CPU": 1.005}) == 1.01
    assert view.columns[3].value({"CPU": float("nan")}) is None
    assert view.columns[3].value({"CPU": 1e300}) is None  # beyond a single


def test_module_views_per_version() -> None:
    listed = ["ModuleInfoGrouping", "System.Management.Automation.PSModuleInfo", "System.Object"]
    assert find_view(listed).headers == ("ModuleType", "Version", "Name", "ExportedCommands")
    assert find_view(listed, "7.6.9").headers == (
        "ModuleType", "Version", "PreRelease", "Name", "PSEdition", "ExportedCommands")
    loaded = find_view(listed[1:], "7.6.9")
    assert loaded is not None and loaded.headers == (
        "ModuleType", "Version", "PreRelease", "Name", "ExportedCommands")
    module = {"Name": "Az", "ExportedCommands": {"Get-AzVM": "Get-AzVM", "New-AzVM": "x"},
              "PrivateData": {"PSData": {"PreRelease": "preview1"}},
              "CompatiblePSEditions": ["Desktop", "Core"]}
    values = {c.header: c.value(module) for c in find_view(listed, "7").columns}
    assert values["PreRelease"] == "preview1"
    assert values["PSEdition"] == "Core,Desk"
    assert values["ExportedCommands"] == ["Get-AzVM", "New-AzVM"]
    assert module_editions({"CompatiblePSEditions": []}) == "Desk"


def test_alias_names_show_their_target() -> None:
    view = find_view(["System.Management.Automation.AliasInfo"])
    assert view is not None
    name = next(c for c in view.columns if c.header == "Name")
    assert name.value({"CommandType": "Alias", "Name": "gci",
                       "DisplayName": "gci -> Get-ChildItem"}) == "gci -> Get-ChildItem"
    assert name.value({"CommandType": "Cmdlet", "Name": "Get-Item",
                       "DisplayName": "Get-Item"}) == "Get-Item"


# --- Select-Object output: never the class's view --------------------------------------------


@pytest.mark.parametrize(
    "first",
    [
        "Selected.Microsoft.Management.Infrastructure.CimInstance#root/cimv2/Win32_OperatingSystem",
        "Deserialized.Selected.Microsoft.Management.Infrastructure.CimInstance"
        "#root/cimv2/Win32_OperatingSystem",
        "Selected.System.Management.ManagementObject#root\\cimv2\\Win32_Volume",
        "Selected.System.Diagnostics.Process",
        "Contoso.Thing#root/cimv2/Win32_OperatingSystem",
    ],
)
def test_selected_objects_take_no_view(first: str) -> None:
    # was: the class after '#' matched even in a Selected.* name (eight columns of None)
    chain = [first, "System.Management.Automation.PSCustomObject", "System.Object"]
    assert find_view(chain) is None
    columns = default_columns(chain, ["Caption", "FreeGB", "LastBootUpTime"])
    assert [c.header for c in columns] == ["Caption", "FreeGB", "LastBootUpTime"]


def test_selected_cim_frame_shows_the_selected_properties_in_order() -> None:
    from hvmagic.clixml.values import PSObject
    from hvmagic.frames import to_dataframe

    chain = ["Selected.Microsoft.Management.Infrastructure.CimInstance"
             "#root/cimv2/Win32_OperatingSystem",
             "System.Management.Automation.PSCustomObject", "System.Object"]
    row = PSObject({"Caption": "Windows Server 2022", "Version": "10.0.20348",
                    "LastBootUpTime": None}, chain)
    assert list(to_dataframe([row]).columns) == ["Caption", "Version", "LastBootUpTime"]


# --- the session reads the version once, from what the server sent at pool open --------------


@pytest.mark.parametrize(
    ("private_data", "expected"),
    [
        ({"PSVersionTable": {"PSVersion": "5.1.20348.2849"}}, PSVersion(5, 1, 20348, 2849)),
        ({"PSVersionTable": {"PSVersion": PSVersion(7, 6, 9)}}, PSVersion(7, 6, 9)),
        ({"PSVersionTable": {"PSVersion": "7.6.0-preview.4"}}, None),
        ({"PSVersionTable": {"PSVersion": "9" * 100_000}}, None),
        ({"PSVersionTable": "not a table"}, None),
        ({}, None),
        (None, None),
    ],
)
def test_private_data_version_is_read_defensively(private_data: object,
                                                  expected: object) -> None:
    from hvmagic.session import _private_ps_version

    assert _private_ps_version(private_data) == expected


def test_a_windows_powershell_guest_gets_the_51_views() -> None:
    from hvmagic.testing import FakeGuest
    from hvmagic.testing.guest import PS_VERSION_TABLE

    guest = FakeGuest()

    @guest.handle("procs")
    def procs(ctx: Any) -> None:
        ctx.output({"PSTypeName": "System.Diagnostics.Process", "Handles": 5, "NPM": 1024,
                    "PM": 2048, "WS": 4096, "Id": 1, "ProcessName": "x"})

    with guest, guest.connect() as session:
        assert session.ps_version == PSVersion.parse(PS_VERSION_TABLE["PSVersion"])
        result = session.run("procs")
        assert result.ps_version == session.ps_version
        assert list(result.frame(labels=True).columns) == PROCESS_51


def test_infinities_print_as_the_guests_powershell_prints_them() -> None:
    from hvmagic.clixml.values import PSVersion
    from hvmagic.views import double_text

    # Windows PowerShell 5.1 (.NET Framework) and the default (guests run 5.1): the word;
    # PowerShell 7 (ICU cultures on Windows) prints the symbol, as the pwsh tests judge
    assert [double_text(v) for v in (math.inf, -math.inf)] == ["Infinity", "-Infinity"]
    seven = PSVersion(7, 6, 0)
    assert [double_text(v, seven) for v in (math.inf, -math.inf)] == ["∞", "-∞"]
    assert double_text(math.nan, seven) == "NaN" and double_text(2.0, seven) == "2"
