"""hvmagic.to_dataframe: PowerShell's columns, typed columns, mixed output, real captures."""

from __future__ import annotations

import datetime as dt
import gc
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import hvmagic
from hvmagic.clixml.values import PSDateTime, PSEnum, PSObject, PSTimeSpan, PSVersion
from hvmagic.errors import FrameError, HvMagicError
from hvmagic.frames import NestedObject, to_dataframe

SVC = [
    "Deserialized.System.ServiceProcess.ServiceController",
    "Deserialized.System.ComponentModel.Component",
    "Deserialized.System.MarshalByRefObject",
    "Deserialized.System.Object",
]
PROC = ["Deserialized.System.Diagnostics.Process", "Deserialized.System.ComponentModel.Component",
        "Deserialized.System.Object"]
CUSTOM = ["System.Management.Automation.PSCustomObject", "System.Object"]
STATUS = ["System.ServiceProcess.ServiceControllerStatus", "System.Enum", "System.ValueType",
          "System.Object"]


def status(name: str) -> PSEnum:
    return PSEnum({"Stopped": 1, "StartPending": 2, "Running": 4}[name], name, STATUS)


def service(name: str, state: str, **extra: Any) -> PSObject:
    props = {"Name": name, "DisplayName": name.title(), "Status": status(state),
             "CanStop": state == "Running", "DependentServices": [], **extra}
    return PSObject(props, SVC, to_string="System.ServiceProcess.ServiceController")


def custom(**props: Any) -> PSObject:
    return PSObject(props, CUSTOM, to_string="")


# --- default columns ---------------------------------------------------------------------------


def test_services_show_status_name_displayname() -> None:
    df = hvmagic.to_dataframe([service("vmms", "Running"), service("spooler", "Stopped"),
                               service("wuauserv", "Running")])
    assert list(df.columns) == ["Status", "Name", "DisplayName"]
    assert list(df["Name"]) == ["vmms", "spooler", "wuauserv"]
    assert df["Name"].dtype == pd.StringDtype()
    assert isinstance(df["Status"].dtype, pd.CategoricalDtype)
    assert list(df["Status"].astype(str)) == ["Running", "Stopped", "Running"]
    # categories follow the enum's numbers, so sorting orders like PowerShell's Sort-Object
    assert list(df["Status"].cat.categories) == ["Stopped", "Running"]
    assert list(df.sort_values("Status")["Name"]) == ["spooler", "vmms", "wuauserv"]
    assert df.attrs["type_names"] == [SVC]
    assert "type_index" not in df.attrs


def test_process_default_columns_are_calculated() -> None:
    proc = PSObject(
        {"Name": "vmwp", "Handles": 812, "NPM": 40 * 1024, "PM": 10_000_000, "WS": 30_000_000,
         "CPU": 12.5, "Id": 4242, "SI": 0, "ProcessName": "vmwp", "Path": "C:\\vmwp.exe"},
        PROC)
    idle = PSObject(
        {"Name": "Idle", "Handles": 0, "NPM": 0, "PM": 61440, "WS": 8192, "CPU": None,
         "Id": 0, "SI": 0, "ProcessName": "Idle", "Path": None},
        PROC)
    df = to_dataframe([proc, idle], labels=True)
    assert list(df.columns) == ["Handles", "NPM(K)", "PM(K)", "WS(K)", "CPU(s)", "Id", "SI",
                                "ProcessName"]
    assert df.iloc[0].tolist() == [812, 40, 9766, 29297, 12.5, 4242, 0, "vmwp"]
    assert str(df["WS(K)"].dtype) == "Int64"
    assert df["CPU(s)"].dtype == np.float64
    assert np.isnan(df["CPU(s)"][1])  # System Idle has no CPU time: NaN, not 0


def test_process_frame_for_analysis_has_property_names_and_raw_values() -> None:
    # was: the bound frame had WS(K)/CPU(s): procs.sort_values("CPU") raised KeyError
    procs = [
        PSObject({"Handles": 812, "NPM": 40 * 1024, "PM": 10_000_000, "WS": 30_000_000,
                  "CPU": 12.5, "Id": 4242, "SI": 0, "ProcessName": "vmwp"}, PROC),
        PSObject({"Handles": 9, "NPM": 0, "PM": 61440, "WS": 8192, "CPU": 99.25,
                  "Id": 8, "SI": 0, "ProcessName": "svchost"}, PROC),
    ]
    df = to_dataframe(procs)
    assert list(df.columns) == ["Handles", "NPM", "PM", "WS", "CPU", "Id", "SI", "ProcessName"]
    assert df["WS"].tolist() == [30_000_000, 8192] and df["CPU"].tolist() == [12.5, 99.25]
    assert df.sort_values("CPU", ascending=False)["ProcessName"].tolist() == ["svchost", "vmwp"]
    assert df.attrs["hvmagic_labels"] == {"NPM": "NPM(K)", "PM": "PM(K)", "WS": "WS(K)",
                                          "CPU": "CPU(s)"}
    seven = to_dataframe(procs, ps_version="7.6.9")
    assert list(seven.columns) == ["NPM", "PM", "WS", "CPU", "Id", "SI", "ProcessName"]
    assert seven.attrs["hvmagic_labels"]["WS"] == "WS(M)"
    # the long names a Process without the alias properties carries, as the object spells them
    raw = PSObject({"HandleCount": 5, "WorkingSet64": 1 << 20, "Id": 4, "SessionId": 0,
                    "Name": "System"}, PROC)
    assert list(to_dataframe([raw]).columns) == [
        "HandleCount", "NPM", "PM", "WorkingSet64", "CPU", "Id", "SessionId", "Name"]


def test_files_and_directories_share_one_table() -> None:
    when = PSDateTime(2024, 3, 1, 9, 30, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    d = PSObject({"Name": "Logs", "Mode": "d-----", "LastWriteTime": when},
                 ["Deserialized.System.IO.DirectoryInfo", "Deserialized.System.IO.FileSystemInfo"])
    f = PSObject({"Name": "vm.vhdx", "Length": 42 * 2**30, "Attributes": PSEnum(32, "Archive"),
                  "LastWriteTime": when},
                 ["Deserialized.System.IO.FileInfo", "Deserialized.System.IO.FileSystemInfo"])
    df = to_dataframe([d, f])
    assert list(df.columns) == ["Mode", "LastWriteTime", "Length", "Name"]
    assert list(df["Mode"]) == ["d-----", "-a----"]  # the file's Mode computed from Attributes
    assert df["Length"].isna().tolist() == [True, False]
    assert df["Length"][1] == 42 * 2**30 and str(df["Length"].dtype) == "Int64"
    assert str(df["LastWriteTime"].dtype) == "datetime64[us, UTC+01:00]"
    assert df.attrs["type_index"] == [0, 1]


def test_wmi_hotfix_view_from_real_type_names() -> None:
    hotfix = PSObject(
        {"__SERVER": "HV01", "Description": "Security Update", "HotFixID": "KB5034439",
         "InstalledBy": "NT AUTHORITY\\SYSTEM",
         "InstalledOn": PSDateTime(2024, 1, 10), "Caption": "http://support.microsoft.com"},
        ["Deserialized.System.Management.ManagementObject#root\\cimv2\\Win32_QuickFixEngineering",
         "Deserialized.System.Management.ManagementObject", "Deserialized.System.Object"])
    df = to_dataframe([hotfix], labels=True)
    assert list(df.columns) == ["Source", "Description", "HotFixID", "InstalledBy", "InstalledOn"]
    assert to_dataframe([hotfix]).columns[0] == "__SERVER"
    assert df.iloc[0].tolist()[:4] == ["HV01", "Security Update", "KB5034439",
                                       "NT AUTHORITY\\SYSTEM"]
    assert df["InstalledOn"][0] == pd.Timestamp("2024-01-10")
    assert str(df["InstalledOn"].dtype) == "datetime64[us]"


def test_windows_feature_display_name_column() -> None:
    tn = ["Deserialized.Microsoft.Windows.ServerManager.Commands.Feature",
          "Deserialized.System.Object"]
    installed = PSEnum(1, "Installed")
    feats = [
        PSObject({"DisplayName": "Hyper-V", "Name": "Hyper-V", "Installed": True, "Depth": 1,
                  "InstallState": installed}, tn),
        PSObject({"DisplayName": "Hyper-V Management Tools", "Name": "RSAT-Hyper-V-Tools",
                  "Installed": False, "Depth": 2, "InstallState": PSEnum(0, "Available")}, tn),
    ]
    df = to_dataframe(feats, labels=True)
    assert list(df.columns) == ["Display Name", "Name", "Install State"]
    assert list(df["Display Name"]) == ["[X] Hyper-V", "    [ ] Hyper-V Management Tools"]
    assert list(df["Install State"].astype(str)) == ["Installed", "Available"]
    data = to_dataframe(feats)
    assert list(data.columns) == ["DisplayName", "Name", "InstallState"]
    assert list(data["DisplayName"]) == ["Hyper-V", "Hyper-V Management Tools"]


def test_cim_instance_view_by_class_name() -> None:
    cs = PSObject(
        {"Name": "GUEST01", "Domain": "WORKGROUP", "Manufacturer": "Microsoft Corporation",
         "Model": "Virtual Machine", "PrimaryOwnerName": "admin",
         "TotalPhysicalMemory": 4 * 2**30, "CimClass": "root/cimv2:Win32_ComputerSystem"},
        ["Deserialized.Microsoft.Management.Infrastructure.CimInstance#root/cimv2/"
         "Win32_ComputerSystem",
         "Deserialized.Microsoft.Management.Infrastructure.CimInstance#root/cimv2/"
         "CIM_UnitaryComputerSystem",
         "Deserialized.Microsoft.Management.Infrastructure.CimInstance"])
    df = to_dataframe([cs])
    assert list(df.columns) == ["Name", "PrimaryOwnerName", "Domain", "TotalPhysicalMemory",
                                "Model", "Manufacturer"]
    assert df["TotalPhysicalMemory"][0] == 4 * 2**30


def test_pscustomobject_shows_all_its_properties_union_in_first_seen_order() -> None:
    df = to_dataframe([custom(VM="a", Cpu=2), custom(VM="b", Mem=512, Cpu=4)])
    assert list(df.columns) == ["VM", "Cpu", "Mem"]
    assert df["Mem"].isna().tolist() == [True, False]
    assert str(df["Mem"].dtype) == "Int64" and df["Mem"][1] == 512


def test_unknown_type_falls_back_to_all_properties() -> None:
    widget = PSObject({"A": 1, "B": "x", "C": True, "D": 2.5, "E": None}, ["Contoso.Widget"])
    df = to_dataframe([widget])
    assert list(df.columns) == ["A", "B", "C", "D", "E"]


# --- "all" and explicit columns ----------------------------------------------------------------


def test_all_columns() -> None:
    df = to_dataframe([service("vmms", "Running", StartType=PSEnum(2, "Automatic"))], "all")
    assert list(df.columns) == ["Name", "DisplayName", "Status", "CanStop", "DependentServices",
                                "StartType"]


def test_explicit_columns_exact_case_insensitive_missing_and_calculated() -> None:
    proc = PSObject({"ProcessName": "vmms", "Id": 7, "WS": 4096 * 3, "Path": "C:\\vmms.exe"},
                    PROC)
    df = to_dataframe([proc], ["id", "Path", "WS(K)", "Company"])
    assert list(df.columns) == ["id", "Path", "WS(K)", "Company"]
    assert df.iloc[0, :3].tolist() == [7, "C:\\vmms.exe", 12]
    assert df["Company"].isna().all()


def test_explicit_columns_with_scalars_fill_value_only() -> None:
    df = to_dataframe(["text", custom(Value=3, Name="n")], ["Name", "Value"])
    assert df["Name"].isna().tolist() == [True, False]
    assert df["Value"].tolist() == ["text", 3]  # str and int: object, values unchanged


@pytest.mark.parametrize("bad", ["everything", 3, ["Name", 3], ["Name", "Name"]])
def test_bad_columns_argument_is_a_typed_error(bad: Any) -> None:
    with pytest.raises(FrameError) as info:
        to_dataframe([custom(Name="x")], bad)
    assert isinstance(info.value, HvMagicError)
    assert "column" in str(info.value)


# --- dtypes ------------------------------------------------------------------------------------


def column(values: list[Any]) -> pd.Series:
    return to_dataframe([custom(X=v) for v in values])["X"]


def test_bool_and_nullable_boolean() -> None:
    assert column([True, False]).dtype == np.bool_
    with_na = column([True, None])
    assert with_na.dtype == pd.BooleanDtype() and with_na.isna().tolist() == [False, True]


def test_integers_are_nullable_int64_then_uint64_then_object() -> None:
    s = column([1, None, -3])
    assert str(s.dtype) == "Int64" and s.isna().tolist() == [False, True, False]
    assert s[2] == -3
    big = column([2**64 - 1, 0])
    assert str(big.dtype) == "UInt64" and big[0] == 2**64 - 1
    huge = column([2**70, -1])
    assert huge.dtype == object and huge[0] == 2**70


def test_integers_mixed_with_floats_are_never_turned_into_floats() -> None:
    s = column([2**53 + 1, 1.5])
    assert s.dtype == object
    assert type(s[0]) is int and s[0] == 2**53 + 1


def test_floats_strings_and_missing() -> None:
    f = column([1.5, None])
    assert f.dtype == np.float64 and np.isnan(f[1])
    s = column(["a", None])
    assert s.dtype == pd.StringDtype() and s[1] is pd.NA
    nothing = column([None, None])
    assert nothing.isna().all()


def test_enums_become_categories_with_na() -> None:
    s = column([status("Running"), None, status("Stopped")])
    assert isinstance(s.dtype, pd.CategoricalDtype)
    assert list(s.cat.categories) == ["Stopped", "Running"]
    assert s.isna().tolist() == [False, True, False]


def test_different_enums_sharing_numbers_keep_their_names() -> None:
    s = column([PSEnum(1, "Stopped"), PSEnum(1, "Disabled")])
    assert s.astype(str).tolist() == ["Stopped", "Disabled"]


def test_datetimes_naive_one_offset_several_offsets_and_mixed() -> None:
    naive = column([PSDateTime(2024, 5, 1, 12, 0, 0, 123456), None])
    assert str(naive.dtype) == "datetime64[us]"
    assert naive[0] == pd.Timestamp("2024-05-01 12:00:00.123456") and naive.isna()[1]

    minus4 = dt.timezone(dt.timedelta(hours=-4))
    one = column([PSDateTime(2024, 6, 18, 5, 42, 6, 8110, tzinfo=minus4)])
    assert str(one.dtype) == "datetime64[us, UTC-04:00]"
    assert one[0].hour == 5  # the guest's wall clock, as PowerShell shows it

    cet, cest = dt.timezone(dt.timedelta(hours=1)), dt.timezone(dt.timedelta(hours=2))
    dst = column([PSDateTime(2024, 3, 30, 12, tzinfo=cet), PSDateTime(2024, 4, 1, 12, tzinfo=cest)])
    assert str(dst.dtype) == "datetime64[us, UTC]"
    assert [t.hour for t in dst] == [11, 10]

    mixed = column([PSDateTime(2024, 1, 1), PSDateTime(2024, 1, 1, tzinfo=dt.timezone.utc)])
    assert mixed.dtype == object


def test_datetime_min_value_survives() -> None:
    s = column([dt.datetime(1, 1, 1), dt.datetime(9999, 12, 31, 23, 59, 59)])
    assert s[0].year == 1 and s[1].year == 9999


def test_timespans_versions_and_kept_objects() -> None:
    ts = column([PSTimeSpan(hours=1, microseconds=5), None])
    assert str(ts.dtype) == "timedelta64[us]" and ts[0] == pd.Timedelta(hours=1, microseconds=5)
    ver = column([PSVersion(10, 0, 17763, 1), PSVersion(5, 1)])
    assert ver.dtype == pd.StringDtype() and ver.tolist() == ["10.0.17763.1", "5.1"]
    dec = column([Decimal("1.10"), Decimal("2")])
    assert dec.dtype == object and dec[0] == Decimal("1.10") and str(dec[0]) == "1.10"
    guid = uuid.UUID("381b4222-f694-41f0-9685-ff5bb260df2e")
    assert column([guid])[0] == guid
    assert column([b"\x00\x01"])[0] == b"\x00\x01"


def test_lists_stay_lists() -> None:
    s = to_dataframe([custom(IPAddresses=["10.0.0.5", "fe80::1"]), custom(IPAddresses=[])])
    cells = s["IPAddresses"]
    assert cells.dtype == object
    assert cells[0] == ["10.0.0.5", "fe80::1"] and cells[1] == []


def test_nested_objects_display_by_tostring_and_stay_reachable() -> None:
    inner = PSObject({"Name": "vEthernet", "Speed": 10}, ["Contoso.Nic"],
                     to_string="vEthernet (Default)")
    df = to_dataframe([custom(VM="a", Nic=inner, Deps=[inner])])
    cell = df["Nic"][0]
    assert isinstance(cell, NestedObject)
    assert str(cell) == "vEthernet (Default)"
    assert cell["Speed"] == 10 and "Name" in cell and cell.object is inner
    assert cell == inner and cell.type_names == ["Contoso.Nic"]
    assert str(df["Deps"][0][0]) == "vEthernet (Default)"
    text = df.to_string()
    assert "vEthernet (Default)" in text and "Speed" not in text
    assert "vEthernet (Default)" in df.to_html()


# --- rows: scalars, dicts, mixed output --------------------------------------------------------


def test_scalars_fill_the_value_column() -> None:
    df = to_dataframe(["a", "b"])
    assert list(df.columns) == ["Value"] and df["Value"].tolist() == ["a", "b"]
    assert df.attrs["type_names"] == [["System.String", "System.Object"]]
    ints = to_dataframe([1, 2, 3])
    assert str(ints["Value"].dtype) == "Int64"


def test_mixed_types_union_columns_in_order_of_appearance() -> None:
    proc = PSObject({"ProcessName": "vmms", "Id": 7, "Handles": 1, "NPM": 0, "PM": 0, "WS": 0,
                     "CPU": 0.5, "SI": 0}, PROC)
    values = [service("vmms", "Running"), proc, "done", 42]
    df = to_dataframe(values)
    assert list(df.columns) == ["Status", "Name", "DisplayName", "Handles", "NPM", "PM",
                                "WS", "CPU", "Id", "SI", "ProcessName", "Value"]
    assert list(to_dataframe(values, labels=True).columns) == [
        "Status", "Name", "DisplayName", "Handles", "NPM(K)", "PM(K)", "WS(K)", "CPU(s)", "Id",
        "SI", "ProcessName", "Value"]
    assert df["Name"].tolist()[:1] == ["vmms"] and df["Name"].isna().tolist() == [
        False, True, True, True]
    assert df["Id"].tolist()[1] == 7 and str(df["Id"].dtype) == "Int64"
    assert df["Value"].tolist()[2:] == ["done", 42]
    assert type(df["Value"][3]) is int
    assert df.attrs["type_names"] == [
        SVC, PROC, ["System.String", "System.Object"],
        ["System.Int32", "System.ValueType", "System.Object"]]
    assert df.attrs["type_index"] == [0, 1, 2, 3]


ENTRY = ["System.Collections.DictionaryEntry", "System.ValueType", "System.Object"]


def test_dictionaries_are_name_value_rows_like_powershell() -> None:
    # was: one row per dictionary with a column per key ($PSVersionTable: one wide row)
    df = to_dataframe([{"Name": "a", "Size": 1}, {"Name": "b", 2: "two"}])
    assert list(df.columns) == ["Name", "Value"]
    assert df["Name"].tolist() == ["Name", "Size", "Name", 2]
    assert df["Value"].tolist() == ["a", 1, "b", "two"]
    assert df.attrs["type_names"] == [ENTRY]
    everything = to_dataframe({"b": 1, "a": None}, columns="all")
    assert list(everything.columns) == ["Name", "Key", "Value"]  # Format-Table * order
    assert everything["Key"].tolist() == ["b", "a"]


def test_dictionary_values_keep_their_types_and_order() -> None:
    table = {"PSVersion": PSVersion(7, 6, 9), "PSEdition": "Core", "Count": 3}
    table["PSCompatibleVersions"] = [PSVersion(5, 0), PSVersion(5, 1, 20348, 2849)]
    df = to_dataframe([table])
    assert df["Name"].tolist() == ["PSVersion", "PSEdition", "Count", "PSCompatibleVersions"]
    # versions as .NET prints them (pandas printed a version as the tuple (7, 6, 9))
    assert df["Value"].tolist() == ["7.6.9", "Core", 3, ["5.0", "5.1.20348.2849"]]
    assert "(7, 6, 9)" not in df.to_string() and "7.6.9" in df.to_string()
    ints = to_dataframe({"a": 1, "b": 2})
    assert str(ints["Value"].dtype) == "Int64"


def test_dictionary_objects_with_members_and_mixed_output() -> None:
    wrapped = PSObject({"Extra": 5}, ["System.Collections.Hashtable", "System.Object"],
                       value={"k": "v"})
    df = to_dataframe(["text", wrapped, custom(Name="n", Value=1)])
    assert df["Value"].tolist() == ["text", "v", 1]
    assert df["Name"].tolist()[1:] == ["k", "n"]
    assert df.attrs["type_index"] == [0, 1, 2]


def test_primitive_with_members_and_tostring_only_objects_are_values() -> None:
    line = PSObject({"PSPath": "C:\\a.txt", "ReadCount": 1}, ["System.String", "System.Object"],
                    value="first line")
    bare = PSObject({}, ["Contoso.Opaque"], to_string="opaque thing")
    df = to_dataframe([line, bare])
    assert list(df.columns) == ["Value"]
    assert df["Value"][0] == "first line"
    assert str(df["Value"][1]) == "opaque thing"


def test_a_collection_output_as_one_object_is_enumerated() -> None:
    df = to_dataframe([[custom(N=1), custom(N=2)], custom(N=3)])
    assert df["N"].tolist() == [1, 2, 3]


def test_single_object_empty_and_generator_inputs() -> None:
    one = to_dataframe(custom(A=1))
    assert one.shape == (1, 1) and one["A"][0] == 1
    empty = to_dataframe([])
    assert empty.shape == (0, 0) and empty.attrs["type_names"] == []
    empty_cols = to_dataframe([], ["Name", "Id"])
    assert list(empty_cols.columns) == ["Name", "Id"] and len(empty_cols) == 0
    generated = to_dataframe(custom(I=i) for i in range(3))
    assert generated["I"].tolist() == [0, 1, 2]


def test_collector_state_is_restored() -> None:
    assert gc.isenabled()
    to_dataframe([custom(A=1)])
    assert gc.isenabled()
    gc.disable()
    try:
        to_dataframe([custom(A=1)])
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_objects_sharing_a_type_names_list_group_together() -> None:
    # loads() shares one list between objects linked by <TNRef>: the fast path must not mix
    shared = list(CUSTOM)
    rows = [PSObject({"A": i}, shared) for i in range(3)]
    rows.insert(1, PSObject({"B": "x"}, ["Contoso.Other"]))
    df = to_dataframe(rows)
    assert list(df.columns) == ["A", "B"]
    assert df["A"].tolist()[0] == 0 and df["A"].isna().tolist() == [False, True, False, False]
    assert df.attrs["type_index"] == [0, 1, 0, 0]


# --- real captures -----------------------------------------------------------------------------


def load(corpus_dir: Path, name: str) -> list[Any]:
    from hvmagic.clixml import loads

    return loads((corpus_dir / "clixml" / f"microsoft__CSS-Exchange__{name}.xml").read_bytes())


@pytest.mark.corpus
def test_corpus_win32_operating_system(corpus_dir: Path) -> None:
    df = to_dataframe(load(corpus_dir, "E19_OS_Win32_OperatingSystem"))
    assert list(df.columns) == ["SystemDirectory", "Organization", "BuildNumber",
                                "RegisteredUser", "SerialNumber", "Version"]
    assert df.iloc[0].tolist() == ["C:\\Windows\\system32", "", "17763", "Windows User",
                                   "00430-70000-00001-AA890", "10.0.17763"]
    assert all(df[c].dtype == pd.StringDtype() for c in df.columns)
    assert df.attrs["type_names"][0][0] == (
        "System.Management.ManagementObject#root\\cimv2\\Win32_OperatingSystem")


@pytest.mark.corpus
def test_corpus_win32_processor(corpus_dir: Path) -> None:
    df = to_dataframe(load(corpus_dir, "E19_Hardware_Physical_Win32_Processor"))
    assert list(df.columns) == ["DeviceID", "Name", "Caption", "MaxClockSpeed",
                                "SocketDesignation", "Manufacturer"]
    assert df["DeviceID"].tolist() == ["CPU0", "CPU1"]
    assert df["MaxClockSpeed"].tolist() == [2201, 2201]
    assert str(df["MaxClockSpeed"].dtype) == "Int64"
    everything = to_dataframe(load(corpus_dir, "E19_Hardware_Physical_Win32_Processor"), "all")
    # PowerShell lists the <MS> members first (PSComputerName), then the WMI properties
    assert list(everything.columns[:2]) == ["PSComputerName", "__GENUS"]
    assert "L2CacheSize" in everything.columns
    assert everything["L2CacheSize"].tolist() == [1536, 1536]
    assert everything["__DERIVATION"][0] == ["CIM_Processor", "CIM_LogicalDevice",
                                             "CIM_LogicalElement", "CIM_ManagedSystemElement"]


@pytest.mark.corpus
def test_corpus_power_plan_unknown_wmi_class_falls_back(corpus_dir: Path) -> None:
    df = to_dataframe(load(corpus_dir, "E19_OS_Win32_PowerPlan"))
    # every property in PowerShell's order (<MS> first), WMI plumbing left out
    assert list(df.columns) == ["PSComputerName", "Caption", "Description", "ElementName",
                                "InstanceID", "IsActive"]
    assert df["ElementName"][0] == "Balanced"
    assert df["IsActive"].dtype == np.bool_ and bool(df["IsActive"][0]) is True
    assert df["InstanceID"][0] == "Microsoft:PowerPlan\\{381b4222-f694-41f0-9685-ff5bb260df2e}"


@pytest.mark.corpus
def test_corpus_local_group_members(corpus_dir: Path) -> None:
    df = to_dataframe(load(corpus_dir, "E19_Exchange_GetLocalGroupMember2"))
    assert list(df.columns) == ["ObjectClass", "Name", "PrincipalSource"]
    assert df["Name"].tolist() == ["SOLO\\Domain Admins", "SOLO\\Organization Management",
                                   "SOLO-E19A\\Administrator"]
    assert df["ObjectClass"].tolist() == ["Group", "Group", "User"]
    assert df["PrincipalSource"].astype(str).tolist() == ["ActiveDirectory", "ActiveDirectory",
                                                          "Local"]
    assert list(df["PrincipalSource"].cat.categories) == ["Local", "ActiveDirectory"]
    sid = to_dataframe(load(corpus_dir, "E19_Exchange_GetLocalGroupMember2"), ["SID"])["SID"][0]
    assert isinstance(sid, NestedObject)
    assert str(sid["Value"]).startswith("S-1-5-21-1281225956-1072373970-")


@pytest.mark.corpus
def test_corpus_winevent_and_service(corpus_dir: Path) -> None:
    events = to_dataframe(load(corpus_dir, "E19_OS_GetWinEventOldestApplication"))
    assert list(events.columns) == ["TimeCreated", "Id", "LevelDisplayName", "Message"]
    assert str(events["TimeCreated"].dtype) == "datetime64[us, UTC-04:00]"
    assert events["TimeCreated"][0] == pd.Timestamp("2024-06-18T05:42:06.00811-04:00")
    assert events["Id"][0] == 16028 and events["LevelDisplayName"][0] == "Information"
    spooler = to_dataframe(load(corpus_dir, "PrintSpoolerSetToAutomaticAndRunning"))
    assert spooler.iloc[0].astype(str).tolist() == ["Running", "spooler", "Print Spooler"]


@pytest.mark.corpus
def test_corpus_collection_and_scalars(corpus_dir: Path) -> None:
    suites = to_dataframe(load(corpus_dir, "GetTlsCipherSuite"))
    assert len(suites) == 8  # the one List`1 object enumerated, as PowerShell displays it
    assert suites.columns[0] == "KeyType" and "Name" in suites.columns
    assert suites["Name"].str.startswith("TLS_").all()
    product = to_dataframe(load(corpus_dir, "E19_OS_RemoteRegistryValueProductName"))
    assert product["Value"].tolist() == ["Windows Server 2019 Datacenter"]


@pytest.mark.parametrize(
    ("name", "error", "values", "dtype"),
    [
        ("DatetimeIndex", pd.errors.OutOfBoundsDatetime, [dt.datetime(1, 1, 1), None],
         "datetime64[us]"),
        ("TimedeltaIndex", pd.errors.OutOfBoundsTimedelta,
         [dt.timedelta(days=-719162), None], "timedelta64[us]"),
    ],
)
def test_pandas2_nanosecond_overflow_falls_back_to_microseconds(
    monkeypatch: pytest.MonkeyPatch, name: str, error: type[Exception], values: list[Any],
    dtype: str,
) -> None:
    # pandas 2 infers nanoseconds from Python objects and overflows before year 1678; the
    # fallback builds microseconds through numpy. Simulate that first refusal on pandas 3.
    from hvmagic import frames

    real = getattr(pd, name)
    refused: list[bool] = []

    def first_call_overflows(data: Any, *args: Any, **kwargs: Any) -> Any:
        if not refused:
            refused.append(True)
            raise error("out of bounds nanosecond timestamp")
        return real(data, *args, **kwargs)

    monkeypatch.setattr(pd, name, first_call_overflows)
    build = frames._datetime_index if name == "DatetimeIndex" else frames._timedelta_index
    index = build(values)
    assert refused == [True]
    assert str(index.dtype) == dtype
    assert index[0] == (pd.Timestamp(values[0]) if name == "DatetimeIndex"
                        else pd.Timedelta(values[0]))
    assert index.isna().tolist() == [False, True]


def test_secrets_stay_masked_in_a_frame() -> None:
    from hvmagic.clixml.values import PSCredential, SecureString

    df = to_dataframe([custom(User="admin", Pass=SecureString("hunter2"),
                              Cred=PSCredential("admin", "hunter2"))])
    text = df.to_string() + df.to_html() + repr(df)
    assert "hunter2" not in text
    assert df["Pass"][0].reveal() == "hunter2"  # still the value, only never displayed


def test_view_alias_missing_on_the_first_object_is_looked_up_per_object() -> None:
    first = PSObject({"Id": 1, "ProcessName": "a"}, PROC)
    second = PSObject({"Id": 2, "ProcessName": "b", "HandleCount": 99}, PROC)
    df = to_dataframe([first, second])
    assert df["Handles"].isna().tolist() == [True, False]
    assert df["Handles"][1] == 99


_cells = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False),
    st.text(max_size=5),
    st.datetimes(min_value=dt.datetime(1, 1, 2), max_value=dt.datetime(9999, 12, 30)),
    st.sampled_from([status("Running"), status("Stopped")]),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(_cells, min_size=1, max_size=8))
def test_any_column_keeps_every_value_and_never_floats_an_integer(values: list[Any]) -> None:
    series = column(values)
    assert len(series) == len(values)
    for original, cell in zip(values, series.tolist(), strict=True):
        if original is None:
            assert cell is None or pd.isna(cell)
        elif isinstance(original, PSEnum):
            assert str(cell) == original.name
        elif isinstance(original, bool):
            assert cell is original or (cell == original and not isinstance(cell, float))
        elif isinstance(original, int):
            assert cell == original and not isinstance(cell, float)
        elif isinstance(original, dt.datetime):
            assert pd.Timestamp(cell) == pd.Timestamp(original)
        else:
            assert cell == original
