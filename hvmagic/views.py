"""PowerShell's default table columns per type, as data.

PowerShell decides what a table of objects shows from its formatting files
(``DotNetTypes.format.ps1xml``, ``FileSystem.format.ps1xml``, the Hyper-V, Storage, NetAdapter,
ScheduledTasks … module ``*.format.ps1xml``) and, where no view exists, from a type's
``DefaultDisplayPropertySet`` (``types.ps1xml``). Neither travels with serialized objects, so
hvmagic ships the views a Hyper-V admin meets daily here: headers exactly as PowerShell prints
them, calculated columns computed the way the view's script block computes them.

Two generations: Windows PowerShell 5.1 (what a Windows guest runs out of the box) and
PowerShell 7.x, whose format files differ for a few types (Process: ``NPM(K) PM(M) WS(M)``
without ``Handles``; Get-Module: ``PreRelease``, and ``PSEdition`` for ``-ListAvailable``;
certificates: ``EnhancedKeyUsageList``). The session reads the guest's version once, from the
``$PSVersionTable`` a PowerShell server sends when the runspace pool opens, and lookups pass it
(``find_view(chain, ps_version)``); unknown means 5.1. ``tests/pwsh/test_views.py`` checks every
view PowerShell 7.6 has against its own ``Format-Table``.

A view's columns say two things: the header and value PowerShell shows (``Column.value``,
what the notebook displays: ``to_dataframe(labels=True)``), and the property that value presents
(``Column.sources``: the analysis frame, ``to_dataframe()``, shows ``WS`` in bytes where the
view shows ``WS(M)``). Two deliberate departures in what is shown, both so it stays a table of
numbers:

* Columns PowerShell formats as text keep a number: ``CPU(s)``, ``PM(M)``, ``WS(M)`` are the
  number ``"{0:N2}"`` prints (two decimals, rounded as that PowerShell's .NET rounds, after
  the view's ``[float]`` cast where it has one), without the thousands separator;
  ``LastWriteTime``/``TimeGenerated`` stay datetimes. (A volume's ``SizeRemaining``/``Size``
  are shown as PowerShell prints them, ``66.34 GB``, right-aligned: a number there would read
  as bytes; the analysis frame has the bytes.) Where the header names a unit
  (``WS(K)``, ``MemoryAssigned(M)``) the value is converted the way the script block does
  (``[long]($_.WS / 1024)``: .NET rounds half to even, as Python's :func:`round` does).
* Views grouped by a property (files by ``PSParentPath``, events by ``ProviderName``) show only
  their columns; the grouping property is one ``columns="all"`` away.

Lookup goes through an object's type-name chain, most derived first, ``Deserialized.`` prefixes
removed, case-insensitively (PowerShell matches type names that way). A WMI/CIM object's name
(``System.Management.ManagementObject#root\\cimv2\\Win32_Processor``,
``Microsoft.Management.Infrastructure.CimInstance#ROOT/StandardCimv2/MSFT_NetAdapter``) also
matches by its class name alone, so ``Get-WmiObject`` and ``Get-CimInstance`` output share a view.
``Select-Object`` output (``Selected.…``) never takes a view, as in PowerShell: it shows the
selected properties in their order.
"""

from __future__ import annotations

import decimal
import math
import re
import struct
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from hvmagic.clixml.values import strip_deserialized

Props = Mapping[str, Any]


@dataclass(frozen=True)
class Column:
    """One column of a view: its header and where its value comes from.

    ``properties`` lists property names, the first one an object has wins (aliases differ between
    PowerShell versions, WMI and CIM). ``compute`` (when set) calculates the value from the
    object's properties instead, like a format file's ``<ScriptBlock>``.
    """

    header: str
    properties: tuple[str, ...] = ()
    compute: Callable[[Props], Any] | None = None
    #: the properties a calculated column presents (``WS`` for ``WS(K)``): the analysis frame
    #: shows the first one the object has, unscaled, under its own name
    data: tuple[str, ...] = ()
    #: ``"right"`` where the view right-aligns a column whose values are text (``66.34 GB``)
    align: str = ""

    @property
    def sources(self) -> tuple[str, ...]:
        """The property names behind this column, for the analysis frame (empty: the column
        is derived from several properties and keeps its header and computed value)."""
        return self.data or self.properties

    def value(self, props: Props) -> Any:
        if self.compute is not None:
            return self.compute(props)
        for name in self.properties:
            if name in props:
                return props[name]
        return None


@dataclass(frozen=True)
class View:
    """The default table view of a type: ``columns`` in PowerShell's order."""

    type_name: str
    columns: tuple[Column, ...]
    #: where PowerShell defines the view (for whoever checks or extends this table)
    source: str = ""
    headers: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "headers", tuple(c.header for c in self.columns))


# Helpers that keep the table below readable ------------------------------------------------


def _first(props: Props, *names: str) -> Any:
    for name in names:
        value = props.get(name)
        if value is not None:
            return value
    return None


@dataclass(frozen=True)
class _Presents:
    """A calculated column's script block and the properties whose value it presents."""

    compute: Callable[[Props], Any]
    data: tuple[str, ...]
    align: str = ""


def _scaled(divisor: int, *names: str) -> _Presents:
    """``[long]($_.X / divisor)``: a .NET cast rounds half to even, as :func:`round` does."""

    def compute(props: Props) -> Any:
        value = _first(props, *names)
        if value is None or isinstance(value, bool):
            return None
        try:
            return round(value / divisor)
        except (TypeError, ValueError, OverflowError):  # a non-number, NaN, ±infinity
            return None

    return _Presents(compute, names)


_HUNDREDTH = decimal.Decimal("0.01")


def _n2(value: Any, single: bool = False, framework: bool = False) -> float | None:
    """The number ``"{0:N2}"`` prints, of the value or (``single``) of the view's ``[float]``
    cast of it. .NET (PowerShell 7) rounds the exact binary value, ties to even
    (``0.125`` → ``0.12``); .NET Framework (``framework``: Windows PowerShell 5.1) first keeps
    15 significant digits, then rounds ties away from zero."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = struct.unpack("f", struct.pack("f", value))[0] if single else float(value)
        if not math.isfinite(number):
            return None
        if framework:
            exact = decimal.Decimal(f"{number:.15g}")
            return float(exact.quantize(_HUNDREDTH, decimal.ROUND_HALF_UP))
        return float(decimal.Decimal(number).quantize(_HUNDREDTH, decimal.ROUND_HALF_EVEN))
    except (OverflowError, decimal.InvalidOperation):  # beyond a single, NaN, ±infinity
        return None


def _megabytes(*names: str) -> _Presents:
    """``"{0:N2}" -f [float]($_.X / 1MB)``."""
    return _Presents(lambda p: _n2(_number(_first(p, *names), 2**20), single=True), names)


def _number(value: Any, divisor: int) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return value / divisor


def _cpu(single: bool) -> _Presents:
    """``CPU(s)``: 5.1 prints ``$_.CPU.ToString("N")``, 7.x ``"{0:N2}" -f [float]($_.CPU)``."""
    return _Presents(lambda p: _n2(p.get("CPU"), single, framework=not single), ("CPU",))


def _gigabytes(name: str) -> _Presents:
    """``"{0:###0.00}" -f ($_.X / 1GB)`` (PSDrive sizes)."""
    def compute(props: Props) -> Any:
        if not (props.get("Used") or props.get("Free")):  # the view's if(): blank
            return None
        return _n2(_number(props.get(name), 2**30))

    return _Presents(compute, (name,))


def double_text(value: float, ps_version: Any = None) -> str:
    """A Double as PowerShell prints it, alone or in a string (``"" + $x``): 15 significant
    digits, exponent from 1E+15 and below 1E-04, ``NaN``, infinities (``2``, not ``2.0``;
    ``0.333333333333333``; ``1E+20``).

    Infinities are the guest culture's symbol: Windows PowerShell 5.1 (.NET Framework) prints
    ``Infinity``; PowerShell 7 (.NET with ICU cultures, as on every Windows guest) prints ``∞``.
    Without a version the 5.1 text is used, as guests run 5.1 by default."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        major = getattr(ps_version, "major", None)
        symbol = "∞" if isinstance(major, int) and major >= 6 else "Infinity"
        return symbol if value > 0 else f"-{symbol}"
    return format(value, ".15G")


_SIZE_UNITS = ("B", "KB", "MB", "GB", "TB", "PB")


def storage_size(value: Any) -> Any:
    """A size as the Storage module's views print it (``"66.34 GB"``, ``"0 B"``): divided by
    1024 while at least 1024, then ``"" + [Math]::Round($size, 2) + " " + unit``. PowerShell
    divides integers exactly while it can (``127 GB``), then in doubles; ``Math.Round`` rounds
    the scaled double half to even, as :func:`round` does."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    size: int | float = value
    unit = 0
    while size >= 1024 and unit < len(_SIZE_UNITS) - 1:
        size = size // 1024 if isinstance(size, int) and size % 1024 == 0 else size / 1024
        unit += 1
    if isinstance(size, float):
        if not math.isfinite(size):
            return None
        text = double_text(round(size * 100) / 100)
    else:
        text = str(size)
    return f"{text} {_SIZE_UNITS[unit]}"


def _storage(name: str) -> _Presents:
    return _Presents(lambda p: storage_size(p.get(name)), (name,), align="right")


# FileSystem.format.ps1xml (5.1) shows ``Mode`` from a CodeProperty; serialized files carry it,
# but objects built elsewhere may only have ``Attributes`` (FileAttributes flags).
_MODE_FLAGS = (("d", 0x10), ("a", 0x20), ("r", 0x1), ("h", 0x2), ("s", 0x4), ("l", 0x400))


def file_mode(props: Props) -> Any:
    """The ``Mode`` column of a file or directory (``d-----``, ``-a----``)."""
    mode = props.get("Mode")
    if mode is not None:
        return mode
    attributes = props.get("Attributes")
    if attributes is None:
        return None
    try:
        flags = int(attributes)
    except (TypeError, ValueError):
        return None
    return "".join(letter if flags & bit else "-" for letter, bit in _MODE_FLAGS)


_MAX_FEATURE_DEPTH = 32  # Windows features nest 4-5 levels deep


def feature_display_name(props: Props) -> Any:
    """``Display Name`` of Get-WindowsFeature: ``[X] `` when installed, indented by ``Depth``."""
    name = props.get("DisplayName")
    if name is None:
        return None
    depth = props.get("Depth")
    # clamped: a hostile Depth of 10**7 would otherwise build a 40-million-character cell
    indent = "    " * (min(int(depth), _MAX_FEATURE_DEPTH) - 1) if (
        isinstance(depth, int) and depth > 1) else ""
    mark = "[X]" if props.get("Installed") else "[ ]"
    return f"{indent}{mark} {name}"


def _keys(name: str) -> _Presents:
    """``$_.X.Keys``: the names of a dictionary (``ExportedCommands``), in its order."""

    def compute(props: Props) -> Any:
        value = props.get(name)
        if isinstance(value, Mapping):
            return [str(key) for key in value]
        return value

    return _Presents(compute, (name,))


def command_name(props: Props) -> Any:
    """``Name`` of Get-Command's view: an alias shows as ``dir -> Get-ChildItem``."""
    if str(props.get("CommandType")) == "Alias" and props.get("DisplayName") is not None:
        return props["DisplayName"]
    return props.get("Name")


def module_prerelease(props: Props) -> Any:
    """``PreRelease`` (7.x): ``$_.PrivateData.PSData.PreRelease`` when the manifest has one."""
    private = props.get("PrivateData")
    data = private.get("PSData") if isinstance(private, Mapping) else None
    return data.get("PreRelease") if isinstance(data, Mapping) else None


def module_editions(props: Props) -> Any:
    """``PSEdition`` of ``Get-Module -ListAvailable`` (7.x): each of ``CompatiblePSEditions``
    cut to four letters, sorted, comma-joined; a manifest naming none is ``Desk``."""
    editions = props.get("CompatiblePSEditions")
    if isinstance(editions, str):
        editions = [editions]
    if not isinstance(editions, list) or not editions:
        editions = ["Desktop"]
    return ",".join(sorted(str(e)[:4] for e in editions))


def certificate_usages(props: Props) -> Any:
    """``EnhancedKeyUsageList`` (7.x): ``$_.EnhancedKeyUsageList.FriendlyName``."""
    usages = props.get("EnhancedKeyUsageList")
    if not isinstance(usages, list):
        return None
    names = [u.get("FriendlyName") for u in usages if isinstance(u, Mapping)]
    return [n for n in names if n is not None]


def _col(spec: str | tuple[str, str | Callable[[Props], Any] | _Presents] | Column) -> Column:
    if isinstance(spec, Column):
        return spec
    if isinstance(spec, str):
        return Column(spec, (spec,))
    header, source = spec
    if isinstance(source, _Presents):
        return Column(header, (), source.compute, source.data, source.align)
    if callable(source):
        return Column(header, (), source)
    return Column(header, (source,))


def _alias(header: str, *names: str) -> Column:
    return Column(header, names)


_VIEWS: list[View] = []
_VIEWS_7: list[View] = []


def _view(type_names: str | Sequence[str], source: str, *columns: Any) -> None:
    _register(_VIEWS, type_names, source, columns)


def _view7(type_names: str | Sequence[str], source: str, *columns: Any) -> None:
    """A view PowerShell 7.x defines differently from Windows PowerShell 5.1."""
    _register(_VIEWS_7, type_names, source, columns)


def _register(into: list[View], type_names: str | Sequence[str], source: str,
              columns: Sequence[Any]) -> None:
    names = (type_names,) if isinstance(type_names, str) else tuple(type_names)
    cols = tuple(_col(c) for c in columns)
    for name in names:
        into.append(View(name, cols, source))


# --- .NET types (DotNetTypes.format.ps1xml, Windows PowerShell 5.1) -------------------------
_view(
    "System.Diagnostics.Process",
    "DotNetTypes.format.ps1xml (5.1 table view 'process')",
    _alias("Handles", "Handles", "HandleCount"),
    ("NPM(K)", _scaled(1024, "NPM", "NonpagedSystemMemorySize64", "NonpagedSystemMemorySize")),
    ("PM(K)", _scaled(1024, "PM", "PagedMemorySize64", "PagedMemorySize")),
    ("WS(K)", _scaled(1024, "WS", "WorkingSet64", "WorkingSet")),
    ("CPU(s)", _cpu(single=False)),
    "Id",
    _alias("SI", "SI", "SessionId"),
    _alias("ProcessName", "ProcessName", "Name"),
)
# 7.x dropped Handles and shows paged memory and working set in megabytes ("{0:N2}" of
# [float]($_.PM / 1MB)).
_view7(
    "System.Diagnostics.Process",
    "DotNetTypes.format.ps1xml (7.x table view 'process')",
    ("NPM(K)", _scaled(1024, "NPM", "NonpagedSystemMemorySize64", "NonpagedSystemMemorySize")),
    ("PM(M)", _megabytes("PM", "PagedMemorySize64", "PagedMemorySize")),
    ("WS(M)", _megabytes("WS", "WorkingSet64", "WorkingSet")),
    ("CPU(s)", _cpu(single=True)),
    "Id",
    _alias("SI", "SI", "SessionId"),
    _alias("ProcessName", "ProcessName", "Name"),
)
_view(
    "System.ServiceProcess.ServiceController",
    "DotNetTypes.format.ps1xml 'service'",
    "Status", "Name", "DisplayName",
)
_view(
    "System.Diagnostics.EventLogEntry",
    "DotNetTypes.format.ps1xml",
    "Index", ("Time", "TimeGenerated"), "EntryType", "Source",
    _alias("InstanceID", "InstanceId", "InstanceID"), "Message",
)
_view(
    "System.Diagnostics.EventLog",
    "DotNetTypes.format.ps1xml",
    ("Max(K)", "MaximumKilobytes"), ("Retain", "MinimumRetentionDays"), "OverflowAction",
    ("Entries", _Presents(
        lambda p: len(p["Entries"]) if isinstance(p.get("Entries"), list) else None,
        ("Entries",))),
    "Log",
)
_view("System.Diagnostics.FileVersionInfo", "DotNetTypes.format.ps1xml",
      "ProductVersion", "FileVersion", "FileName")
_view("System.Globalization.CultureInfo", "DotNetTypes.format.ps1xml",
      "LCID", "Name", "DisplayName")
_view("System.Reflection.AssemblyName", "DotNetTypes.format.ps1xml", "Version", "Name")
_view("System.Security.AccessControl.ObjectSecurity", "DotNetTypes.format.ps1xml",
      "Path", "Owner", ("Access", "AccessToString"))
_view("System.Net.NetworkCredential", "DotNetTypes.format.ps1xml", "UserName", "Domain")
_view("System.Collections.DictionaryEntry", "DotNetTypes.format.ps1xml", "Name", "Value")
_view("System.Diagnostics.ProcessModule", "DotNetTypes.format.ps1xml",
      ("Size(K)", "Size"), "ModuleName", "FileName")
_view("System.Security.Cryptography.X509Certificates.X509Certificate2",
      "Certificate.format.ps1xml", "Thumbprint", "Subject")
_view7("System.Security.Cryptography.X509Certificates.X509Certificate2",
       "Certificate.format.ps1xml (7.x 'ThumbprintTable')",
       "Thumbprint", "Subject",
       ("EnhancedKeyUsageList", _Presents(certificate_usages, ("EnhancedKeyUsageList",))))

# --- files (FileSystem.format.ps1xml, 5.1; grouped by PSParentPath) -------------------------
_view(
    ("System.IO.FileInfo", "System.IO.DirectoryInfo"),
    "FileSystem.format.ps1xml 'children'",
    ("Mode", file_mode), "LastWriteTime", "Length", "Name",
)

# --- Get-WinEvent (Event.format.ps1xml; grouped by ProviderName) ----------------------------
_view(
    ("System.Diagnostics.Eventing.Reader.EventLogRecord",
     "System.Diagnostics.Eventing.Reader.EventRecord"),
    "Event.format.ps1xml",
    "TimeCreated", "Id", "LevelDisplayName", "Message",
)
_view("System.Diagnostics.Eventing.Reader.EventLogConfiguration", "Event.format.ps1xml",
      "LogMode", "MaximumSizeInBytes", "RecordCount", "LogName")
_view("System.Diagnostics.Eventing.Reader.ProviderMetadata", "Event.format.ps1xml",
      "Name", "LogLinks")

# --- PowerShell's own objects (PowerShellCore.format.ps1xml) --------------------------------
# Group-Object (the -NoElement kind first: its chain also names GroupInfo)
_view("Microsoft.PowerShell.Commands.GroupInfoNoElement", "PowerShellCore.format.ps1xml",
      "Count", "Name")
_view("Microsoft.PowerShell.Commands.GroupInfo", "PowerShellCore.format.ps1xml",
      "Count", "Name", "Group")
_view("System.Management.Automation.PathInfo", "PowerShellCore.format.ps1xml 'PathInfo'", "Path")
# Get-Member (grouped by TypeName), Get-Variable
_view("Microsoft.PowerShell.Commands.MemberDefinition", "PowerShellCore.format.ps1xml",
      "Name", "MemberType", "Definition")
_view("System.Management.Automation.PSVariable", "PowerShellCore.format.ps1xml 'Variable'",
      "Name", "Value")
# Get-Help's list of topics (Get-Help *-Item); a single topic is text (display.render_help)
_view("HelpInfoShort", "HelpV3.format.ps1xml", "Name", "Category", ("Module", "ModuleName"),
      "Synopsis")
_view("System.Management.Automation.PSModuleInfo", "PowerShellCore.format.ps1xml (5.1)",
      "ModuleType", "Version", "Name", ("ExportedCommands", _keys("ExportedCommands")))
_view7("System.Management.Automation.PSModuleInfo", "PowerShellCore.format.ps1xml (7.x)",
       "ModuleType", "Version", ("PreRelease", module_prerelease), "Name",
       ("ExportedCommands", _keys("ExportedCommands")))
# Get-Module -ListAvailable output (grouped by the module's folder) adds PSEdition in 7.x
_view7("ModuleInfoGrouping", "PowerShellCore.format.ps1xml (7.x)",
       "ModuleType", "Version", ("PreRelease", module_prerelease), "Name",
       ("PSEdition", module_editions), ("ExportedCommands", _keys("ExportedCommands")))
# CommandInfo itself has a two-column view; its subclasses (what Get-Command returns) share one
_view("System.Management.Automation.CommandInfo", "PowerShellCore.format.ps1xml",
      "CommandType", "Name")
_view(("System.Management.Automation.CmdletInfo", "System.Management.Automation.FunctionInfo",
       "System.Management.Automation.AliasInfo", "System.Management.Automation.ApplicationInfo",
       "System.Management.Automation.ExternalScriptInfo", "System.Management.Automation.FilterInfo",
       "System.Management.Automation.ScriptInfo"),
      "PowerShellCore.format.ps1xml",
      "CommandType", ("Name", _Presents(command_name, ("Name",))), "Version", "Source")
_view(
    "System.Management.Automation.PSDriveInfo",
    "PowerShellCore.format.ps1xml 'drive'",
    "Name",
    ("Used (GB)", _gigabytes("Used")),
    ("Free (GB)", _gigabytes("Free")),
    "Provider", "Root", "CurrentLocation",
)

# --- local accounts (Microsoft.PowerShell.LocalAccounts) ------------------------------------
_view("Microsoft.PowerShell.Commands.LocalUser", "LocalAccounts.format.ps1xml",
      "Name", "Enabled", "Description")
_view("Microsoft.PowerShell.Commands.LocalGroup", "LocalAccounts.format.ps1xml",
      "Name", "Description")
_view("Microsoft.PowerShell.Commands.LocalPrincipal", "LocalAccounts.format.ps1xml",
      "ObjectClass", "Name", "PrincipalSource")

# --- Server Manager (Get-WindowsFeature) ----------------------------------------------------
_view(
    "Microsoft.Windows.ServerManager.Commands.Feature",
    "ServerManager Feature.format.ps1xml",
    ("Display Name", _Presents(feature_display_name, ("DisplayName",))), "Name",
    ("Install State", "InstallState"),
)

# --- Hyper-V (Microsoft.HyperV.PowerShell, Hyper-V.Format.ps1xml) ---------------------------
_view(
    "Microsoft.HyperV.PowerShell.VirtualMachine",
    "Hyper-V.Format.ps1xml",
    "Name", "State", ("CPUUsage(%)", "CPUUsage"),
    ("MemoryAssigned(M)", _scaled(2**20, "MemoryAssigned")), "Uptime", "Status", "Version",
)
_view(
    ("Microsoft.HyperV.PowerShell.VMNetworkAdapter",
     "Microsoft.HyperV.PowerShell.VMInternalNetworkAdapter"),
    "Hyper-V.Format.ps1xml",
    "Name", "IsManagementOs", "VMName", "SwitchName", "MacAddress", "Status", "IPAddresses",
)
_view("Microsoft.HyperV.PowerShell.VMSwitch", "Hyper-V.Format.ps1xml",
      "Name", "SwitchType", "NetAdapterInterfaceDescription")
_view(
    "Microsoft.HyperV.PowerShell.VMMemory",
    "Hyper-V.Format.ps1xml",
    "VMName", "DynamicMemoryEnabled",
    ("Minimum(M)", _scaled(2**20, "Minimum")),
    ("Startup(M)", _scaled(2**20, "Startup")),
    ("Maximum(M)", _scaled(2**20, "Maximum")),
)
_view("Microsoft.HyperV.PowerShell.VMProcessor", "Hyper-V.Format.ps1xml",
      "VMName", "Count", "CompatibilityForMigrationEnabled",
      "CompatibilityForOlderOperatingSystemsEnabled")
_view("Microsoft.HyperV.PowerShell.HardDiskDrive", "Hyper-V.Format.ps1xml",
      "VMName", "ControllerType", "ControllerNumber", "ControllerLocation", "DiskNumber", "Path")
_view("Microsoft.HyperV.PowerShell.DvdDrive", "Hyper-V.Format.ps1xml",
      "VMName", "ControllerType", "ControllerNumber", "ControllerLocation", "DvdMediaType",
      "Path")
_view(("Microsoft.HyperV.PowerShell.VMSnapshot", "Microsoft.HyperV.PowerShell.VMCheckpoint"),
      "Hyper-V.Format.ps1xml",
      "VMName", "Name", "SnapshotType", "CreationTime", "ParentSnapshotName")
_view("Microsoft.HyperV.PowerShell.VMIntegrationComponent", "Hyper-V.Format.ps1xml",
      "VMName", "Name", "Enabled", "PrimaryStatusDescription", "SecondaryStatusDescription")

# --- CIM classes of the networking/storage/task modules (CDXML *.format.ps1xml) -------------
_view("MSFT_NetAdapter", "NetAdapter.Format.ps1xml",
      "Name", "InterfaceDescription", "ifIndex", "Status", "MacAddress", "LinkSpeed")
# Get-NetIPAddress lists by default; this is its table view (Format-Table), the frame's shape.
_view("MSFT_NetIPAddress", "NetIPAddress.Format.ps1xml (table view)",
      _alias("ifIndex", "ifIndex", "InterfaceIndex"), "IPAddress", "PrefixLength",
      "PrefixOrigin", "SuffixOrigin", "AddressState", "PolicyStore")
_view("MSFT_NetRoute", "NetRoute.Format.ps1xml",
      _alias("ifIndex", "ifIndex", "InterfaceIndex"), "DestinationPrefix", "NextHop", "RouteMetric",
      _alias("ifMetric", "ifMetric", "InterfaceMetric"), "PolicyStore")
_view("MSFT_NetTCPConnection", "NetTCPConnection.Format.ps1xml",
      "LocalAddress", "LocalPort", "RemoteAddress", "RemotePort", "State", "AppliedSetting",
      "OwningProcess")
_view("MSFT_DNSClientServerAddress", "DnsClient.Format.ps1xml",
      "InterfaceAlias", ("Interface Index", "InterfaceIndex"), ("Address Family", "AddressFamily"),
      "ServerAddresses")
_view(
    "MSFT_Volume",
    "Storage.format.ps1xml (sizes as text, e.g. 66.34 GB; bytes in the analysis frame)",
    "DriveLetter", _alias("FriendlyName", "FriendlyName", "FileSystemLabel"),
    _alias("FileSystemType", "FileSystemType", "FileSystem"), "DriveType", "HealthStatus",
    "OperationalStatus", ("SizeRemaining", _storage("SizeRemaining")), ("Size", _storage("Size")),
)
_view("MSFT_Disk", "Storage.format.ps1xml (size kept in bytes)",
      "Number", ("Friendly Name", "FriendlyName"), ("Serial Number", "SerialNumber"),
      "HealthStatus", "OperationalStatus", ("Total Size", "Size"),
      ("Partition Style", "PartitionStyle"))
_view("MSFT_Partition", "Storage.format.ps1xml (grouped by DiskPath)",
      "PartitionNumber", "DriveLetter", "Offset", "Size", "Type")
_view("MSFT_SmbShare", "SmbShare.format.ps1xml", "Name", "ScopeName", "Path", "Description")
_view("MSFT_ScheduledTask", "ScheduledTasks.format.ps1xml", "TaskPath", "TaskName", "State")

# --- Win32 classes: Get-CimInstance table views (DotNetTypes.format.ps1xml); Get-WmiObject
# shows the same DefaultDisplayPropertySet (types.ps1xml), so both match by class name. ------
_view(
    "Win32_QuickFixEngineering",
    "DotNetTypes.format.ps1xml (WMI: __SERVER; CIM: ComputerName)",
    _alias("Source", "__SERVER", "ComputerName", "CSName", "PSComputerName"),
    "Description", "HotFixID", "InstalledBy", "InstalledOn",
)
_WIN32_TABLES: dict[str, tuple[str, ...]] = {
    "Win32_Process": ("ProcessId", "Name", "HandleCount", "WorkingSetSize", "VirtualSize"),
    "Win32_ComputerSystem": ("Name", "PrimaryOwnerName", "Domain", "TotalPhysicalMemory",
                             "Model", "Manufacturer"),
    "Win32_Processor": ("DeviceID", "Name", "Caption", "MaxClockSpeed", "SocketDesignation",
                        "Manufacturer"),
    "Win32_DCOMApplication": ("AppID", "Name", "InstallDate"),
    "Win32_Desktop": ("SettingID", "Name", "ScreenSaverActive", "ScreenSaverSecure",
                      "ScreenSaverTimeout"),
    "Win32_DesktopMonitor": ("DeviceID", "Name", "DisplayType", "MonitorManufacturer",
                             "ScreenHeight", "ScreenWidth"),
    "Win32_DeviceMemoryAddress": ("Name", "MemoryType", "Status"),
    "Win32_DiskDrive": ("DeviceID", "Caption", "Partitions", "Size", "Model"),
    "Win32_DiskQuota": ("DiskSpaceUsed", "Limit", "QuotaVolume", "User"),
    "Win32_Environment": ("Name", "UserName", "VariableValue"),
    "Win32_Directory": ("Name", "Hidden", "Archive", "Writeable", "LastModified"),
    "Win32_Group": ("SID", "Name", "Caption", "Domain"),
    "Win32_IDEController": ("Name", "Status", "StatusInfo", "ProtocolSupported", "Manufacturer"),
    "Win32_IRQResource": ("Name", "IRQNumber", "Hardware", "TriggerLevel", "TriggerType"),
    "Win32_ScheduledJob": ("JobId", "Name", "Owner", "Priority", "Command"),
    "Win32_LoadOrderGroup": ("Name", "GroupOrder"),
    "Win32_LogicalDisk": ("DeviceID", "DriveType", "ProviderName", "VolumeName", "Size",
                          "FreeSpace"),
    "Win32_LogonSession": ("LogonId", "Name", "LogonType", "StartTime", "Status",
                           "AuthenticationPackage"),
    "Win32_PhysicalMemoryArray": ("Name", "MemoryDevices", "MaxCapacity", "Model"),
    "Win32_OnBoardDevice": ("DeviceType", "SerialNumber", "Enabled", "Description"),
    "Win32_OperatingSystem": ("SystemDirectory", "Organization", "BuildNumber", "RegisteredUser",
                              "SerialNumber", "Version"),
    "Win32_DiskPartition": ("Name", "NumberOfBlocks", "BootPartition", "PrimaryPartition", "Size",
                            "Index"),
    "Win32_PortConnector": ("Tag", "PortType", "ConnectorType", "SerialNumber",
                            "ExternalReferenceDesignator"),
    "Win32_QuotaSetting": ("SettingID", "Caption", "State", "VolumePath", "DefaultLimit",
                           "DefaultWarningLimit"),
    "Win32_SCSIController": ("Name", "DriverName", "Status", "StatusInfo", "ProtocolSupported",
                             "Manufacturer"),
    "Win32_Service": ("ProcessId", "Name", "StartMode", "State", "Status", "ExitCode"),
    "Win32_UserAccount": ("Name", "Caption", "AccountType", "SID", "Domain"),
    "Win32_NetworkProtocol": ("Name", "Caption", "Status"),
    "Win32_NetworkAdapter": ("DeviceID", "Name", "AdapterType", "ServiceName"),
    "Win32_NetworkAdapterConfiguration": ("ServiceName", "DHCPEnabled", "Index", "Description"),
    "Win32_NTDomain": ("DomainName", "DnsForestName", "DomainControllerName"),
    "Win32_Printer": ("Name", "ShareName", "SystemName", "PrinterState", "PrinterStatus",
                      "Location"),
    "Win32_PrintJob": ("JobId", "Name", "JobStatus", "Owner", "Priority", "Size", "Document"),
    "Win32_Product": ("Name", "Caption", "Vendor", "Version", "IdentifyingNumber"),
    # types.ps1xml DefaultDisplayPropertySet (no table view ships for it)
    "Win32_BIOS": ("SMBIOSBIOSVersion", "Manufacturer", "Name", "SerialNumber", "Version"),
}
for _class, _columns in _WIN32_TABLES.items():
    _view(_class, "DotNetTypes.format.ps1xml CIM table view / types.ps1xml", *_columns)

#: every shipped view by lower-cased type or class name (Windows PowerShell 5.1's)
VIEWS: dict[str, View] = {v.type_name.lower(): v for v in _VIEWS}
#: the views PowerShell 7.x defines differently; the others are the same in both
VIEWS_7: dict[str, View] = {v.type_name.lower(): v for v in _VIEWS_7}

#: PowerShell 6 and later ("Core") ship the 7.x format files
_FIRST_CORE_MAJOR = 6

#: the type names whose objects PowerShell shows by all their properties (no view needed)
PROPERTY_BAG_TYPES = frozenset(
    {"system.management.automation.pscustomobject", "system.collections.hashtable"}
)

# WMI system properties and the plumbing members of ManagementObject/CimInstance: PowerShell's
# Format-List * shows them, but they describe the query, not the thing, so the fallback for an
# unknown WMI/CIM class leaves them out (``columns="all"`` keeps them).
_CIM_PLUMBING = frozenset(
    {"Scope", "Path", "Options", "ClassPath", "Properties", "SystemProperties", "Qualifiers",
     "Site", "Container", "CimClass", "CimInstanceProperties", "CimSystemProperties"}
)
_CLASS_SEPARATOR = re.compile(r"[\\/]")


def is_cim_type(type_names: Sequence[str]) -> bool:
    """True for WMI (``ManagementObject``) and CIM (``CimInstance``) objects."""
    for name in type_names:
        base = strip_deserialized(name).split("#", 1)[0]
        if base in ("System.Management.ManagementObject",
                    "Microsoft.Management.Infrastructure.CimInstance",
                    "System.Management.ManagementBaseObject"):
            return True
    return False


def is_cim_plumbing(name: str) -> bool:
    """A WMI system property (``__PATH``) or a ManagementObject/CimInstance member."""
    return name.startswith("__") or name in _CIM_PLUMBING


def powershell_major(ps_version: Any) -> int | None:
    """The major version of a guest's PowerShell (``PSVersion``, ``"7.6.9"``, ``(5, 1)``,
    ``5``), or ``None`` when it is unknown or unreadable."""
    if ps_version is None or isinstance(ps_version, bool):
        return None
    if isinstance(ps_version, int):
        return ps_version
    if isinstance(ps_version, tuple) and ps_version and isinstance(ps_version[0], int):
        return ps_version[0]
    match = _MAJOR.match(str(ps_version))
    return int(match.group(1)) if match else None


_MAJOR = re.compile(r"\s*(\d{1,4})(?:\.|\s*$)")
_CIM_BASES = frozenset(
    {"system.management.managementobject", "microsoft.management.infrastructure.ciminstance",
     "system.management.managementbaseobject"}
)


def find_view(type_names: Sequence[str], ps_version: Any = None) -> View | None:
    """The view for the first type in the chain that has one, else ``None``.

    ``ps_version`` is the guest's PowerShell version (:attr:`hvmagic.Session.ps_version`):
    6 and later take the 7.x views where they differ; unknown means Windows PowerShell 5.1,
    what a Windows guest runs out of the box.

    A name matches exactly (``Deserialized.`` removed, any case), as in PowerShell. The one
    widening: the class after ``#`` of a WMI/CIM object's name, so ``Get-WmiObject`` and
    ``Get-CimInstance`` output share a view. ``Select-Object`` output
    (``Selected.Microsoft.Management.Infrastructure.CimInstance#root/cimv2/Win32_…``,
    ``Selected.System.Diagnostics.Process``) is not that object any more: like PowerShell,
    no view matches it and it shows the selected properties in their order.
    """
    major = powershell_major(ps_version)
    tables = (VIEWS_7, VIEWS) if major is not None and major >= _FIRST_CORE_MAJOR else (VIEWS,)
    for raw in type_names:
        name = strip_deserialized(raw).lower()
        for table in tables:
            view = table.get(name)
            if view is not None:
                return view
        base, hash_sign, path = name.partition("#")
        if hash_sign and base in _CIM_BASES:
            cim_class = _CLASS_SEPARATOR.split(path)[-1]
            for table in tables:
                view = table.get(cim_class)
                if view is not None:
                    return view
    return None


def default_columns(type_names: Sequence[str], property_names: Sequence[str],
                    ps_version: Any = None) -> list[Column]:
    """The columns ``to_dataframe(columns="default")`` shows for objects of this type.

    A known view gives its columns. Otherwise (documented fallback): every property, in the
    order the object carries them, leaving out WMI/CIM plumbing for WMI/CIM objects.
    PowerShell itself shows a table of all properties when there are at most four and a list of
    them otherwise; a frame is always a table, so it takes all of them either way.
    """
    view = find_view(type_names, ps_version)
    if view is not None:
        return list(view.columns)
    if is_cim_type(type_names):
        return [Column(n, (n,)) for n in property_names if not is_cim_plumbing(n)]
    return [Column(n, (n,)) for n in property_names]
