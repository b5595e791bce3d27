"""The built-in demo command set of the simulated guest (``FakeGuest(demo=True)``).

All data is invented and labelled: the computer is ``SIMULATED-GUEST``, objects carry
``PSComputerName = SIMULATED-GUEST``, ``Get-ComputerInfo`` has an ``HvMagicSimulation`` banner.

What the simulation understands (anything else fails like an unknown command in PowerShell):

* **Statements** separated by ``;`` or new lines; ``#`` comments; ``$name = <pipeline or
  expression>`` (and ``+=``) assignments kept per session; a bare ``$name`` / expression echoes
  its value; ``function Name($a) { … }`` / ``function Name { param($a) … }`` definitions kept
  per session (called by name with positional or ``-a`` arguments, own variable scope,
  ``return``).
* **Pipelines** whose first element is a command below or an expression (``$x``, ``1..5``,
  ``'text'``, ``@(...)``), followed by any of: ``Where-Object``/``where``/``?`` (script block
  or ``Prop -op Value`` form), ``Select-Object``/``select`` (``-Property`` names, wildcards and
  ``@{N=..;E={..}}``, ``-First``, ``-Last``, ``-Skip``, ``-ExpandProperty``, ``-Unique``),
  ``Sort-Object``/``sort`` (``-Descending``, ``-Unique``), ``Measure-Object`` (``-Sum``
  ``-Average`` ``-Maximum`` ``-Minimum``), ``Group-Object`` (``-NoElement``),
  ``ForEach-Object``/``%`` (one expression or ``-MemberName``), ``Format-Table``/``ft``,
  ``Format-List``/``fl``, ``Out-String`` (text), ``Out-Null``, ``ConvertTo-Json``,
  ``ConvertTo-Csv``, ``Export-Csv -Path`` (writes into the guest's drive).
* **Expressions**: ``$_``/``$PSItem`` members, ``-eq -ne -gt -ge -lt -le -like -notlike -match
  -notmatch -contains -notcontains -in -notin`` (case-insensitive; ``-c…`` variants),
  ``-and -or -not !``, ``+ - * / %``, ``1KB``…``1TB``, ``(Get-Date).AddDays(-1)``,
  ``[math]::Round(x, n)``, ``[datetime]::Now``, casts such as ``[int]``, strings with ``$x`` and
  ``$(...)`` expansion, string methods (``ToUpper()``, ``StartsWith()``…).
* **Commands**: see :data:`DEMO_COMMANDS` (``Get-Service``, ``Start/Stop/Restart-Service``,
  ``Get-Process``, ``Get-HotFix``, ``Get-WinEvent``, ``Get-ComputerInfo``,
  ``Get-CimInstance Win32_OperatingSystem``, ``Get-Volume``, ``Get-NetIPAddress``,
  ``Get-ScheduledTask``, ``Get-WindowsFeature``, ``Install-WindowsFeature``,
  ``Configuration Name { Import-DscResource …; Node x { WindowsFeature|File|Service|Registry|
  <custom> Name { Key = 'value' } } }`` blocks (compiled to ``<node>.mof`` by calling
  ``Name -OutputPath C:\\Dsc``; custom resource modules must exist under ``C:\\Program Files\\
  WindowsPowerShell\\Modules``), ``Start-DscConfiguration -Path -Wait -Verbose`` (live verbose
  LCM lines, a pending reboot after a feature install), ``Get-DscConfigurationStatus``,
  ``Test-DscConfiguration``,
  ``Get-DscLocalConfigurationManager`` (custom resources are reported as applied; the runbook's
  example ``HvmSiteBanner`` resource also writes its banner file, as its ``Set()`` would),
  ``Restart-Computer``, ``Test-Path``, ``Get-FileHash``,
  ``Get-ChildItem``, ``Get-Item``, ``Get-Content``, ``Set-Content``, ``New-Item``, ``Remove-Item``,
  ``Copy-Item`` (guest-local), ``Compress-Archive``, ``Get-Date``, ``Start-Sleep``,
  ``Write-Output/Host/Verbose/Warning/Debug/Information/Error/Progress``,
  ``Read-Host``, ``Get-Credential``, ``hostname``, ``$PSVersionTable``, ``$env:COMPUTERNAME``).
* **Parameters worth knowing**: ``Get-Service [-Name] a*,b [-DisplayName]`` (an unknown exact name
  is a non-terminating ``NoServiceFoundForGivenName`` error, as in PowerShell);
  ``Get-WinEvent -FilterHashtable @{LogName=…; Level=…; StartTime=…; Id=…; ProviderName=…}``,
  ``-LogName``, ``-MaxEvents``, ``-Oldest`` (events are dated relative to now, so "the last
  24 h" always has data); ``-ErrorAction SilentlyContinue|Ignore|Stop`` on the demo cmdlets;
  ``Restart-Computer`` completes, then the guest drops every connection and refuses new ones for
  ``guest.reboot_seconds``; ``Get-ComputerInfo``'s ``OsLastBootUpTime`` moves with each reboot.
* **Scale**: ``FakeGuest(service_count=N)`` pads ``Get-Service`` with synthetic services
  (labelled ``(synthetic)``) for bulk-output tests and benchmarks.
"""

from __future__ import annotations

import base64
import csv
import datetime as _dt
import fnmatch
import hashlib
import html
import io
import json
import random
import re
import shutil
import zipfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from psrpcore.types import (
    PSDict,
    PSEnumBase,
    PSFlagBase,
    PSInt64,
    PSNoteProperty,
    PSObject,
    PSType,
    PSUInt,
    PSUInt64,
    PSVersion,
)

from hvmagic.testing import demo_data
from hvmagic.testing.fastwire import Unsupported, demo_clixml
from hvmagic.testing.guest import (
    COMPUTER_NAME,
    PS_VERSION_TABLE,
    HandlerContext,
    TerminatingError,
    to_ps_value,
    unknown_command_error,
)
from hvmagic.testing.psmini import (
    COMPARISON_OPERATORS,
    ExpandableString,
    ExpressionEvaluator,
    HashLiteral,
    Invocation,
    PSSyntaxError,
    ScriptBlock,
    SubExpression,
    VariableRef,
    compare,
    parse_hashtable,
    parse_invocation,
    parse_value_token,
    split_top,
    to_text,
    truthy,
)

if TYPE_CHECKING:
    from hvmagic.testing.guest import FakeGuest

# --------------------------------------------------------------------------------------------
# .NET enums the demo objects use (psrpcore serializes them with their type names)
# --------------------------------------------------------------------------------------------


@PSType(["System.ServiceProcess.ServiceControllerStatus"])
class ServiceControllerStatus(PSEnumBase):
    Stopped = 1
    StartPending = 2
    StopPending = 3
    Running = 4
    ContinuePending = 5
    PausePending = 6
    Paused = 7


@PSType(["System.ServiceProcess.ServiceStartMode"])
class ServiceStartMode(PSEnumBase):
    Boot = 0
    System = 1
    Automatic = 2
    Manual = 3
    Disabled = 4


@PSType(["System.ServiceProcess.ServiceType"])
class ServiceType(PSFlagBase):
    KernelDriver = 1
    FileSystemDriver = 2
    Adapter = 4
    RecognizerDriver = 8
    Win32OwnProcess = 16
    Win32ShareProcess = 32
    InteractiveProcess = 256


@PSType(["Microsoft.Windows.ServerManager.Commands.InstallState"])
class InstallState(PSEnumBase):
    Available = 0
    Installed = 1
    InstallPending = 2
    Removed = 3
    UninstallPending = 4


@PSType(["Microsoft.PowerShell.Cmdletization.GeneratedTypes.ScheduledTask.StateEnum"])
class ScheduledTaskState(PSEnumBase):
    Unknown = 0
    Disabled = 1
    Queued = 2
    Ready = 3
    Running = 4


@PSType(["System.Diagnostics.Eventing.Reader.StandardEventLevel"])
class StandardEventLevel(PSEnumBase):
    LogAlways = 0
    Critical = 1
    Error = 2
    Warning = 3
    Informational = 4
    Verbose = 5


_LEVEL_NAMES = {1: "Critical", 2: "Error", 3: "Warning", 4: "Information", 5: "Verbose"}


class EnumValue(int):
    """An enum member in demo data: compares by name with strings, by number with numbers."""

    enum_name: str

    def __new__(cls, member: Any) -> EnumValue:
        value = super().__new__(cls, int(member))
        value.enum_name = member.name if getattr(member, "name", None) else str(member)
        value.member = member
        return value

    member: Any

    def __str__(self) -> str:
        return self.enum_name

    def __repr__(self) -> str:
        return f"<{self.enum_name}: {int(self)}>"


def _flags_text(member: Any) -> str:
    names = [m.name for m in type(member) if m.value and (int(member) & m.value) == m.value]
    return ", ".join(n for n in names if n)


# --------------------------------------------------------------------------------------------
# Demo objects: fast to filter (plain dicts), serialized once and cached
# --------------------------------------------------------------------------------------------


class DemoObject:
    """A simulated .NET object: ordered properties, type names, ``ToString``.

    ``extended`` names go into ``<MS>`` (PowerShell's extended members), the rest into
    ``<Props>``. The serialized form is cached until a property changes, so the same object
    served many times costs the psrpcore serializer once.
    """

    __slots__ = ("_lower", "_wire", "extended", "props", "to_string", "type_names")

    def __init__(
        self,
        type_names: list[str],
        props: dict[str, Any],
        *,
        to_string: str | None = None,
        extended: Iterable[str] = (),
    ) -> None:
        self.type_names = type_names
        self.props = props
        self.to_string = to_string
        self.extended = frozenset(extended)
        self._lower: dict[str, str] | None = None
        self._wire: bytes | None = None

    def get(self, name: str, default: Any = None) -> Any:
        if self._lower is None:
            self._lower = {k.lower(): k for k in self.props}
        key = self._lower.get(name.lower())
        return self.props[key] if key is not None else default

    def has(self, name: str) -> bool:
        if self._lower is None:
            self._lower = {k.lower(): k for k in self.props}
        return name.lower() in self._lower

    def set(self, name: str, value: Any) -> None:
        if self._lower is None:
            self._lower = {k.lower(): k for k in self.props}
        key = self._lower.get(name.lower(), name)
        self.props[key] = value
        self._lower[key.lower()] = key
        self._wire = None

    @property
    def type_name(self) -> str:
        return self.type_names[0] if self.type_names else "System.Object"

    def to_psrp(self) -> PSObject:
        obj = PSObject()
        obj.PSObject.type_names = list(self.type_names)
        for name, value in self.props.items():
            prop = PSNoteProperty(name, to_psrp_value(value))
            if name in self.extended:
                obj.PSObject.extended_properties.append(prop)
            else:
                obj.PSObject.adapted_properties.append(prop)
        if self.to_string is not None:
            obj.PSObject.to_string = self.to_string
        return obj

    def wire(self, serialize: Callable[[Any], bytes]) -> bytes:
        """This object's CLIXML, written once: directly for the value types demo data uses,
        through ``serialize`` (psrpcore) for anything else."""
        if self._wire is None:
            try:
                self._wire = demo_clixml(self)
            except Unsupported:
                self._wire = serialize(self.to_psrp())
        return self._wire

    def __str__(self) -> str:
        return self.to_string if self.to_string is not None else self.type_name

    def __repr__(self) -> str:
        return f"<DemoObject {self.type_name} {self.to_string or ''}>"


def to_psrp_value(value: Any) -> Any:
    return to_ps_value(value)


def selected(source: DemoObject | None, props: dict[str, Any]) -> DemoObject:
    """What ``Select-Object`` returns: a PSCustomObject named ``Selected.<type>``."""
    names = ["System.Management.Automation.PSCustomObject", "System.Object"]
    if source is not None:
        names.insert(0, f"Selected.{source.type_name}")
    return DemoObject(names, props, extended=props.keys())


def custom(props: dict[str, Any], type_name: str | None = None) -> DemoObject:
    names = ["System.Management.Automation.PSCustomObject", "System.Object"]
    if type_name:
        names.insert(0, type_name)
    return DemoObject(names, props, extended=props.keys())


_SERVICE_TYPES = [
    "System.ServiceProcess.ServiceController",
    "System.ComponentModel.Component",
    "System.MarshalByRefObject",
    "System.Object",
]
_START = {"A": "Automatic", "D": "Automatic", "M": "Manual", "X": "Disabled"}


def make_service(
    name: str, display: str, running: bool, start: str, kind: str, depends: list[str]
) -> DemoObject:
    service_type = {
        "O": ServiceType.Win32OwnProcess,
        "S": ServiceType.Win32ShareProcess,
        "K": ServiceType.KernelDriver,
    }[kind]
    status = ServiceControllerStatus.Running if running else ServiceControllerStatus.Stopped
    can_stop = running and name.lower() not in {
        "rpcss",
        "dcomlaunch",
        "rpceptmapper",
        "samss",
        "lsm",
        "brokerinfrastructure",
        "plugplay",
        "power",
        "eventsystem",
    }
    return DemoObject(
        _SERVICE_TYPES,
        {
            "Name": name,
            "RequiredServices": list(depends),
            "CanPauseAndContinue": False,
            "CanShutdown": running
            and name.lower() in {"eventlog", "lanmanserver", "w32time", "winmgmt", "wuauserv"},
            "CanStop": can_stop,
            "DisplayName": display,
            "DependentServices": [],
            "MachineName": ".",
            "ServiceName": name,
            "ServicesDependedOn": list(depends),
            "ServiceHandle": None,
            "Status": EnumValue(status),
            "ServiceType": EnumValue(service_type),
            "StartType": EnumValue(ServiceStartMode[_START[start]]),
            "Site": None,
            "Container": None,
            "PSComputerName": COMPUTER_NAME,
        },
        to_string=name,
        extended=("Name", "RequiredServices", "PSComputerName"),
    )


def _table(text: str) -> list[list[str]]:
    return [line.split("|") for line in text.strip().splitlines() if line.strip()]


# --------------------------------------------------------------------------------------------
# The shell
# --------------------------------------------------------------------------------------------

#: command name (lower case) → (parameter names, switch names) for prefix resolution
_KNOWN: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "get-service": (("name", "displayname", "include", "exclude", "erroraction"), ()),
    "get-process": (("name", "id", "erroraction"), ()),
    "get-winevent": (("logname", "filterhashtable", "maxevents", "providername"), ("oldest",)),
    "select-object": (
        ("property", "first", "last", "skip", "expandproperty", "excludeproperty"),
        ("unique",),
    ),
    "sort-object": (("property",), ("descending", "unique")),
    "where-object": (("property", "value", "filterscript"), ()),
    "measure-object": (("property",), ("sum", "average", "maximum", "minimum")),
    "write-progress": (
        (
            "activity",
            "status",
            "percentcomplete",
            "id",
            "parentid",
            "currentoperation",
            "secondsremaining",
        ),
        ("completed",),
    ),
    "start-dscconfiguration": (
        ("path", "computername"),
        ("wait", "verbose", "force", "useexisting"),
    ),
    "get-childitem": (
        ("path", "filter", "include", "exclude", "depth"),
        ("recurse", "file", "directory", "force"),
    ),
    "get-filehash": (("path", "literalpath", "algorithm"), ()),
    "test-path": (("path", "literalpath", "pathtype"), ()),
    "start-sleep": (("seconds", "milliseconds"), ()),
}

_ALIASES: dict[str, str] = {
    "?": "where-object",
    "where": "where-object",
    "select": "select-object",
    "sort": "sort-object",
    "%": "foreach-object",
    "foreach": "foreach-object",
    "measure": "measure-object",
    "group": "group-object",
    "ft": "format-table",
    "fl": "format-list",
    "gsv": "get-service",
    "gps": "get-process",
    "ps": "get-process",
    "gci": "get-childitem",
    "dir": "get-childitem",
    "ls": "get-childitem",
    "gc": "get-content",
    "gi": "get-item",
    "cat": "get-content",
    "type": "get-content",
    "echo": "write-output",
    "write": "write-output",
    "sleep": "start-sleep",
    "cls": "clear-host",
    "del": "remove-item",
    "rm": "remove-item",
    "copy": "copy-item",
    "cp": "copy-item",
    "md": "new-item",
    "mkdir": "new-item",
    "sc": "set-content",
    "select-string": "select-string",
}


class DemoShell:
    """Interprets scripts against the simulated inventory; ``run`` is the handler."""

    def __init__(self, guest: FakeGuest) -> None:
        self.guest = guest
        self._rng = random.Random(20241123)
        self.services = [
            make_service(r[0], r[1], r[2] == "R", r[3], r[4], [d for d in r[5].split(",") if d])
            for r in _table(demo_data.SERVICES)
        ]
        count = guest.service_count
        if count is not None and count > len(self.services):
            for index in range(count - len(self.services)):
                self.services.append(
                    make_service(
                        f"SimSvc{index:05d}",
                        f"Simulated service {index:05d} (synthetic)",
                        index % 3 != 0,
                        "AMDX"[index % 4],
                        "OS"[index % 2],
                        ["RpcSs"],
                    )
                )
        elif count is not None:
            self.services = self.services[:count]
        self.features = self._make_features()
        self.commands: dict[str, Callable[[HandlerContext, Invocation, list[Any]], Any]] = {
            name.lower(): getattr(self, method) for name, method in DEMO_COMMANDS.items()
        }
        self._seeded = False
        self._seed_files()

    # ---- entry point (the handler) ----------------------------------------------------------

    def run(self, ctx: HandlerContext) -> None:
        self._seed_files()
        try:
            self._block(ctx, ctx.script, ctx.output)
        except _Return:
            pass
        except PSSyntaxError as exc:
            raise TerminatingError(
                str(exc),
                category="ParserError",
                error_id="SimulatedGuestCannotParse",
                exception_type="System.Management.Automation.ParseException",
            ) from exc

    def _block(self, ctx: HandlerContext, text: str, emit: Callable[[Any], None]) -> None:
        for statement in split_top(text, ";\n"):
            ctx.check_stopped()
            self._statement(ctx, statement, emit)

    def _statement(self, ctx: HandlerContext, statement: str, emit: Callable[[Any], None]) -> None:
        function = re.match(
            r"^function\s+([\w-]+)\s*(?:\(([^)]*)\))?\s*\{(.*)\}$", statement, re.S | re.I
        )
        if function is not None:
            body = function.group(3).strip()
            names = _parameter_names(function.group(2) or "")
            param_block = re.match(r"^param\s*\(([^)]*)\)(.*)$", body, re.S | re.I)
            if param_block is not None:
                names = _parameter_names(param_block.group(1))
                body = param_block.group(2).strip()
            ctx.variables.setdefault("__functions", {})[function.group(1).lower()] = (names, body)
            return
        returned = re.match(r"^return(?:\s+(.*))?$", statement, re.S | re.I)
        if returned is not None:
            if returned.group(1):
                for value in self.pipeline(ctx, returned.group(1)):
                    emit(value)
            raise _Return()
        if re.match(r"^configuration\s+[\w-]+\s*\{", statement, re.IGNORECASE):
            configuration = dsc_compile_definition(statement, self._module_exists)
            ctx.variables.setdefault("__dsc_configurations", {})[configuration.name.lower()] = (
                configuration
            )
            return
        match = re.match(r"^\$([A-Za-z_][\w]*(?::[\w]+)?)\s*(\+?=)\s*(.+)$", statement, re.S)
        if match is not None and not match.group(3).startswith("="):
            name, op, rhs = match.group(1), match.group(2), match.group(3)
            value = self._value_of(ctx, rhs)
            key = name.lower()
            if op == "+=":
                current = ctx.variables.get(key)
                value = compare_add(current, value)
            if key.startswith("env:"):
                self.guest.state.setdefault("env", {})[key[4:]] = value
            else:
                ctx.variables[key] = value
            return
        for value in self.pipeline(ctx, statement):
            emit(value)

    def _call_function(
        self,
        ctx: HandlerContext,
        definition: tuple[list[str], str],
        inv: Invocation,
        pipeline_input: list[Any],
    ) -> list[Any]:
        """A script function: parameters bound by name or position, its own variable scope
        (reads fall through to the session's variables, assignments stay local)."""
        names, body = definition
        local = dict(ctx.variables)
        positional = list(inv.positional)
        for name in names:
            if name.lower() in inv.named:
                local[name.lower()] = inv.named[name.lower()]
            elif positional:
                local[name.lower()] = positional.pop(0)
            else:
                local[name.lower()] = None
        local["args"] = positional
        local["input"] = pipeline_input
        outputs: list[Any] = []
        saved = ctx.variables
        ctx.variables = local
        try:
            self._block(ctx, body, outputs.append)
        except _Return:
            pass
        finally:
            ctx.variables = saved
        return outputs

    def _value_of(self, ctx: HandlerContext, text: str) -> Any:
        values = self.pipeline(ctx, text)
        if len(values) == 1 and not text.strip().startswith("@("):
            return values[0]
        return values

    # ---- pipelines ----------------------------------------------------------------------------

    def pipeline(self, ctx: HandlerContext, text: str) -> list[Any]:
        """Run one pipeline and return its output (the shell's workhorse)."""
        elements = split_top(text, "|")
        head = elements[0]
        values: list[Any]
        if _is_expression(head):
            value = self.evaluator(ctx, None).evaluate(head)
            values = value if isinstance(value, list) else ([] if value is None else [value])
        else:
            invocation = self._invocation(ctx, head)
            command = self.commands.get(
                _ALIASES.get(invocation.name.lower(), invocation.name.lower())
            )
            configuration = ctx.variables.get("__dsc_configurations", {}).get(
                invocation.name.lower()
            )
            function = ctx.variables.get("__functions", {}).get(invocation.name.lower())
            if function is not None:
                ctx.command = invocation.name
                values = self._call_function(ctx, function, invocation, [])
            elif configuration is not None:
                ctx.command = invocation.name
                values = self._write_mofs(ctx, configuration, invocation)
            elif command is None:
                if invocation.name.lower() in _FILTERS or invocation.name.lower() in _ALIASES:
                    values = []
                else:
                    raise _not_found(ctx, invocation.name)
            else:
                ctx.command = invocation.name
                values = _as_list(command(ctx, invocation, []))
        for element in elements[1:]:
            ctx.check_stopped()
            invocation = self._invocation(ctx, element)
            name = _ALIASES.get(invocation.name.lower(), invocation.name.lower())
            ctx.command = invocation.name
            function = ctx.variables.get("__functions", {}).get(name)
            if function is not None:
                values = self._call_function(ctx, function, invocation, values)
            elif name in _FILTERS:
                values = _as_list(getattr(self, _FILTERS[name])(ctx, invocation, values))
            elif name in self.commands:
                values = _as_list(self.commands[name](ctx, invocation, values))
            else:
                raise _not_found(ctx, invocation.name)
        return values

    def _invocation(self, ctx: HandlerContext, text: str) -> Invocation:
        invocation = parse_invocation(text, known=_KNOWN_WITH_ALIASES)
        resolve = self._resolver(ctx)
        invocation.named = {k: resolve(v) for k, v in invocation.named.items()}
        invocation.positional = [resolve(v) for v in invocation.positional]
        return invocation

    def _resolver(self, ctx: HandlerContext) -> Callable[[Any], Any]:
        def resolve(value: Any) -> Any:
            if isinstance(value, list):
                return [resolve(v) for v in value]
            if isinstance(value, VariableRef):
                return self.evaluator(ctx, None).evaluate("$" + value.name + value.members)
            if isinstance(value, SubExpression):
                result = self.evaluator(ctx, None).evaluate(value.text)
                if value.array and not isinstance(result, list):
                    return [] if result is None else [result]
                return result
            if isinstance(value, ExpandableString):
                return self.evaluator(ctx, None).expand(value.text)
            if isinstance(value, HashLiteral):
                evaluator = self.evaluator(ctx, None)
                return parse_hashtable(value.text, evaluator.evaluate)
            return value

        return resolve

    def evaluator(self, ctx: HandlerContext, current: Any) -> ExpressionEvaluator:
        def variable(name: str) -> Any:
            lowered = name.lower()
            if lowered in ("_", "psitem"):
                return current
            if lowered == "true":
                return True
            if lowered == "false":
                return False
            if lowered == "null":
                return None
            if lowered == "psversiontable":
                return _ps_version_table()
            if lowered.startswith("env:"):
                env = {
                    "computername": COMPUTER_NAME,
                    "username": "Administrator",
                    "userdomain": COMPUTER_NAME,
                    "systemroot": "C:\\Windows",
                    "windir": "C:\\Windows",
                    "temp": "C:\\Users\\Administrator\\AppData\\Local\\Temp",
                    "programdata": "C:\\ProgramData",
                    "processor_architecture": "AMD64",
                    "number_of_processors": "2",
                }
                env.update({k.lower(): v for k, v in self.guest.state.get("env", {}).items()})
                return env.get(lowered[4:])
            if lowered == "host":
                return custom({"Name": "ServerRemoteHost", "Version": "1.0.0.0"})
            if lowered == "pid":
                return 4412
            if lowered in ctx.variables:
                return ctx.variables[lowered]
            for key, value in ctx.parameters.items():
                if key.lower() == lowered:
                    return value
            return None

        def run(text: str) -> list[Any]:
            return self.pipeline(ctx, text)

        return ExpressionEvaluator(variable, run, get_member)

    # ---- filters ------------------------------------------------------------------------------

    def where_object(self, ctx: HandlerContext, inv: Invocation, values: list[Any]) -> list[Any]:
        block = inv.get("filterscript")
        if block is None and inv.positional and isinstance(inv.positional[0], ScriptBlock):
            block = inv.positional[0]
        if isinstance(block, ScriptBlock):
            return [v for v in values if truthy(self.evaluator(ctx, v).evaluate(block.text))]
        # Simplified syntax: Where-Object Status -eq 'Running'
        # or Where-Object -Property X -EQ -Value Y
        prop = inv.get("property") or (inv.positional[0] if inv.positional else None)
        if prop is None:
            raise PSSyntaxError("Where-Object needs a script block or a property.")
        ops = [
            k for k in inv.named
            if k in COMPARISON_OPERATORS or k.lstrip("c").lstrip("i") in COMPARISON_OPERATORS
        ]
        if not ops:
            return [v for v in values if truthy(get_member(v, str(prop)))]
        op = ops[0]
        operand = inv.named[op]
        if operand is True and len(inv.positional) > 1:
            operand = inv.positional[1]
        elif inv.has("value"):
            operand = inv.get("value")
        return [v for v in values if truthy(compare("-" + op, get_member(v, str(prop)), operand))]

    def select_object(self, ctx: HandlerContext, inv: Invocation, values: list[Any]) -> list[Any]:
        props = inv.get("property")
        if props is None and inv.positional:
            props = inv.positional[0] if len(inv.positional) == 1 else inv.positional
        if inv.has("skip"):
            values = values[int(inv.get("skip")) :]
        if inv.has("first"):
            values = values[: int(inv.get("first"))]
        if inv.has("last"):
            values = values[-int(inv.get("last")) :] if int(inv.get("last")) else []
        expand = inv.get("expandproperty")
        if expand is not None:
            out: list[Any] = []
            for value in values:
                member = get_member(value, str(expand))
                out.extend(member if isinstance(member, list) else [member])
            return out
        if props is not None:
            names = props if isinstance(props, list) else [props]
            values = [self._select_one(ctx, v, names) for v in values]
        if inv.switch("unique"):
            seen: set[str] = set()
            unique = []
            for value in values:
                key = repr(value.props if isinstance(value, DemoObject) else value)
                if key not in seen:
                    seen.add(key)
                    unique.append(value)
            values = unique
        return values

    def _select_one(self, ctx: HandlerContext, value: Any, names: list[Any]) -> DemoObject:
        props: dict[str, Any] = {}
        for name in names:
            if isinstance(name, dict):
                label = _hash_get(name, "name", "n", "label", "l")
                expression = _hash_get(name, "expression", "e")
                if isinstance(expression, ScriptBlock):
                    props[str(label)] = self.evaluator(ctx, value).evaluate(expression.text)
                else:
                    props[str(label or expression)] = get_member(value, str(expression))
            elif isinstance(value, DemoObject) and any(c in str(name) for c in "*?"):
                for key, item in value.props.items():
                    if fnmatch.fnmatch(key.lower(), str(name).lower()):
                        props[key] = item
            else:
                props[_canonical_name(value, str(name))] = get_member(value, str(name))
        return selected(value if isinstance(value, DemoObject) else None, props)

    def sort_object(self, ctx: HandlerContext, inv: Invocation, values: list[Any]) -> list[Any]:
        props = inv.get("property")
        if props is None and inv.positional:
            props = inv.positional[0] if len(inv.positional) == 1 else inv.positional
        names = props if isinstance(props, list) else ([] if props is None else [props])

        def key(value: Any) -> tuple[Any, ...]:
            if not names:
                return (_sort_key(value),)
            parts = []
            for name in names:
                if isinstance(name, ScriptBlock):
                    parts.append(_sort_key(self.evaluator(ctx, value).evaluate(name.text)))
                elif isinstance(name, dict):
                    expression = _hash_get(name, "expression", "e")
                    parts.append(
                        _sort_key(
                            self.evaluator(ctx, value).evaluate(expression.text)
                            if isinstance(expression, ScriptBlock)
                            else get_member(value, str(expression))
                        )
                    )
                else:
                    parts.append(_sort_key(get_member(value, str(name))))
            return tuple(parts)

        result = sorted(values, key=key, reverse=inv.switch("descending"))
        if inv.switch("unique"):
            deduped: list[Any] = []
            seen: set[Any] = set()
            for value in result:
                marker = key(value)
                if marker not in seen:
                    seen.add(marker)
                    deduped.append(value)
            result = deduped
        return result

    def measure_object(self, ctx: HandlerContext, inv: Invocation, values: list[Any]) -> DemoObject:
        prop = inv.get("property") or (inv.positional[0] if inv.positional else None)
        numbers = [get_member(v, str(prop)) if prop else v for v in values]
        numeric = [float(n) for n in numbers if isinstance(n, (int, float))]
        return DemoObject(
            [
                "Microsoft.PowerShell.Commands.GenericMeasureInfo",
                "Microsoft.PowerShell.Commands.MeasureInfo",
                "System.Object",
            ],
            {
                "Count": len(values),
                "Average": (sum(numeric) / len(numeric))
                if inv.switch("average") and numeric
                else None,
                "Sum": sum(numeric) if inv.switch("sum") else None,
                "Maximum": max(numeric) if inv.switch("maximum") and numeric else None,
                "Minimum": min(numeric) if inv.switch("minimum") and numeric else None,
                "Property": prop,
            },
        )

    def group_object(self, ctx: HandlerContext, inv: Invocation, values: list[Any]) -> list[Any]:
        prop = inv.get("property") or (inv.positional[0] if inv.positional else None)
        groups: dict[str, list[Any]] = {}
        for value in values:
            groups.setdefault(to_text(get_member(value, str(prop))), []).append(value)
        result = []
        for name, members in groups.items():
            props: dict[str, Any] = {"Count": len(members), "Name": name}
            if not inv.switch("noelement"):
                props["Group"] = members
            result.append(
                DemoObject(["Microsoft.PowerShell.Commands.GroupInfo", "System.Object"], props)
            )
        return result

    def foreach_object(self, ctx: HandlerContext, inv: Invocation, values: list[Any]) -> list[Any]:
        block = inv.get("process") or (inv.positional[0] if inv.positional else None)
        member = inv.get("membername")
        out: list[Any] = []
        for value in values:
            ctx.check_stopped()
            if isinstance(block, ScriptBlock):
                result = self.evaluator(ctx, value).evaluate(block.text)
            else:
                result = get_member(value, str(member or block))
            if isinstance(result, list):
                out.extend(result)
            elif result is not None:
                out.append(result)
        return out

    def out_null(self, ctx: HandlerContext, inv: Invocation, values: list[Any]) -> list[Any]:
        return []

    def format_table(self, ctx: HandlerContext, inv: Invocation, values: list[Any]) -> list[str]:
        props = inv.get("property") or (inv.positional[0] if inv.positional else None)
        names = props if isinstance(props, list) else ([props] if props else None)
        return render_table(values, names).splitlines()

    def format_list(self, ctx: HandlerContext, inv: Invocation, values: list[Any]) -> list[str]:
        lines: list[str] = []
        for value in values:
            names = list(value.props) if isinstance(value, DemoObject) else ["Value"]
            width = max((len(n) for n in names), default=0)
            lines.append("")
            for name in names:
                item = get_member(value, name) if isinstance(value, DemoObject) else value
                lines.append(f"{name.ljust(width)} : {to_text(item)}")
        return lines

    def out_string(self, ctx: HandlerContext, inv: Invocation, values: list[Any]) -> list[str]:
        if all(isinstance(v, str) for v in values):
            return ["\n".join(values) + "\n"]
        return [render_table(values, None) + "\n"]

    def convertto_json(self, ctx: HandlerContext, inv: Invocation, values: list[Any]) -> str:
        data = [_plain(v) for v in values]
        payload: Any = data[0] if len(data) == 1 else data
        return json.dumps(
            payload, indent=None if inv.switch("compress") else 4, ensure_ascii=False, default=str
        )

    def convertto_csv(self, ctx: HandlerContext, inv: Invocation, values: list[Any]) -> list[str]:
        return _csv_lines(values, not inv.switch("notypeinformation"))

    def export_csv(self, ctx: HandlerContext, inv: Invocation, values: list[Any]) -> list[Any]:
        path = self.guest.host_path(str(inv.get("path", "literalpath") or inv.positional[0]))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\r\n".join(_csv_lines(values, False)) + "\r\n", encoding="utf-8")
        return []

    # ---- commands -----------------------------------------------------------------------------

    def get_service(self, ctx: HandlerContext, inv: Invocation, values: list[Any]) -> list[Any]:
        names = inv.get("name") or (inv.positional[0] if inv.positional else None)
        display = inv.get("displayname")
        services = self._all_services()
        if names is None and display is None:
            return services
        result: list[Any] = []
        for pattern in (names if isinstance(names, list) else [names]) if names else []:
            found = [
                s for s in services if fnmatch.fnmatch(s.get("Name").lower(), str(pattern).lower())
            ]
            if not found and not any(c in str(pattern) for c in "*?"):
                self._error(
                    ctx,
                    inv,
                    f"Cannot find any service with service name '{pattern}'.",
                    "ObjectNotFound",
                    "NoServiceFoundForGivenName,Microsoft.PowerShell.Commands.GetServiceCommand",
                    pattern,
                    "Microsoft.PowerShell.Commands.ServiceCommandException",
                )
            result.extend(s for s in found if s not in result)
        if display is not None:
            for pattern in display if isinstance(display, list) else [display]:
                result.extend(
                    s
                    for s in services
                    if fnmatch.fnmatch(s.get("DisplayName").lower(), str(pattern).lower())
                    and s not in result
                )
        return result

    def _all_services(self) -> list[DemoObject]:
        services = list(self.services)
        if self._feature_installed("Web-Server"):
            names = {s.get("Name").lower() for s in services}
            for row in _table(demo_data.WEB_SERVER_SERVICES):
                if row[0].lower() not in names:
                    self.services.append(
                        make_service(
                            row[0],
                            row[1],
                            row[2] == "R",
                            row[3],
                            row[4],
                            [d for d in row[5].split(",") if d],
                        )
                    )
            services = sorted(self.services, key=lambda s: s.get("Name").lower())
        return services

    def _set_service(
        self, ctx: HandlerContext, inv: Invocation, values: list[Any], running: bool | None
    ) -> list[Any]:
        targets = [v for v in values if isinstance(v, DemoObject)] or self.get_service(ctx, inv, [])
        for service in targets:
            if (
                running is False
                and not service.get("CanStop")
                and service.get("Status") == ServiceControllerStatus.Running
            ):
                self._error(
                    ctx,
                    inv,
                    f"Service '{service.get('DisplayName')} "
                    f"({service.get('Name')})' cannot be stopped due to the following "
                    "error: Cannot stop service on computer '.'.",
                    "CloseError",
                    "CouldNotStopService,Microsoft.PowerShell.Commands.StopServiceCommand",
                    service.get("Name"),
                    "Microsoft.PowerShell.Commands.ServiceCommandException",
                )
                continue
            if running is not False and service.get("StartType") == ServiceStartMode.Disabled:
                self._error(
                    ctx,
                    inv,
                    f"Service '{service.get('DisplayName')} "
                    f"({service.get('Name')})' cannot be started due to the following "
                    "error: Cannot start service on computer '.'.",
                    "OpenError",
                    "CouldNotStartService,Microsoft.PowerShell.Commands.StartServiceCommand",
                    service.get("Name"),
                    "Microsoft.PowerShell.Commands.ServiceCommandException",
                )
                continue
            verb = {True: "Starting", False: "Stopping", None: "Restarting"}[running]
            if inv.switch("verbose"):
                ctx.verbose(
                    f'Performing the operation "{inv.name}" on target '
                    f'"{service.get("DisplayName")} ({service.get("Name")})".'
                )
            ctx.sleep(0.02)
            if verb:
                new = (
                    ServiceControllerStatus.Stopped
                    if running is False
                    else ServiceControllerStatus.Running
                )
                service.set("Status", EnumValue(new))
                service.set("CanStop", new == ServiceControllerStatus.Running)
        return targets if inv.switch("passthru") else []

    def start_service(self, ctx: HandlerContext, inv: Invocation, values: list[Any]) -> list[Any]:
        return self._set_service(ctx, inv, values, True)

    def stop_service(self, ctx: HandlerContext, inv: Invocation, values: list[Any]) -> list[Any]:
        return self._set_service(ctx, inv, values, False)

    def restart_service(self, ctx: HandlerContext, inv: Invocation, values: list[Any]) -> list[Any]:
        return self._set_service(ctx, inv, values, None)

    def get_process(self, ctx: HandlerContext, inv: Invocation, values: list[Any]) -> list[Any]:
        processes = self._processes()
        names = inv.get("name") or (inv.positional[0] if inv.positional else None)
        ids = inv.get("id")
        if ids is not None:
            wanted = {int(i) for i in (ids if isinstance(ids, list) else [ids])}
            return [p for p in processes if p.get("Id") in wanted]
        if names is None:
            return processes
        result: list[Any] = []
        for pattern in names if isinstance(names, list) else [names]:
            found = [
                p for p in processes if fnmatch.fnmatch(p.get("Name").lower(), str(pattern).lower())
            ]
            if not found and not any(c in str(pattern) for c in "*?"):
                self._error(
                    ctx,
                    inv,
                    f'Cannot find a process with the name "{pattern}". '
                    "Verify the process name and call the cmdlet again.",
                    "ObjectNotFound",
                    "NoProcessFoundForGivenName,Microsoft.PowerShell.Commands.GetProcessCommand",
                    pattern,
                    "Microsoft.PowerShell.Commands.ProcessCommandException",
                )
            result.extend(found)
        return result

    def _processes(self) -> list[DemoObject]:
        cached = self.guest.state.get("processes")
        if cached is not None and cached[0] == self.guest.boot_count:
            return list(cached[1])
        boot = self.guest.boot_time
        result = []
        for row in _table(demo_data.PROCESSES):
            name, pid, handles, cpu, ws, pm, npm, si = row[:8]
            path, company, description = ([*row[8:11], "", "", ""])[:3]
            if name.endswith("_helper"):
                continue
            ws_bytes = int(float(ws or 0) * (1 << 20))
            pm_bytes = int(float(pm or 0) * (1 << 20))
            result.append(
                DemoObject(
                    [
                        "System.Diagnostics.Process",
                        "System.ComponentModel.Component",
                        "System.MarshalByRefObject",
                        "System.Object",
                    ],
                    {
                        "Name": name,
                        "SI": int(si),
                        "Handles": int(handles),
                        "VM": PSInt64(ws_bytes * 3 + (1 << 31)),
                        "WS": PSInt64(ws_bytes),
                        "PM": PSInt64(pm_bytes),
                        "NPM": PSInt64(int(npm) * 1024),
                        "Path": path or None,
                        "Company": company or None,
                        "CPU": float(cpu) if cpu else None,
                        "Description": description or None,
                        "Id": int(pid),
                        "ProcessName": name,
                        "HandleCount": int(handles),
                        "WorkingSet64": PSInt64(ws_bytes),
                        "PagedMemorySize64": PSInt64(pm_bytes),
                        "StartTime": None
                        if int(pid) < 400
                        else boot + _dt.timedelta(seconds=int(pid) // 40),
                        "SessionId": int(si),
                        "PSComputerName": COMPUTER_NAME,
                    },
                    to_string=f"System.Diagnostics.Process ({name})",
                    extended=(
                        "Name",
                        "SI",
                        "Handles",
                        "VM",
                        "WS",
                        "PM",
                        "NPM",
                        "Path",
                        "Company",
                        "CPU",
                        "Description",
                        "PSComputerName",
                    ),
                )
            )
        self.guest.state["processes"] = (self.guest.boot_count, result)
        return list(result)

    def get_hotfix(self, ctx: HandlerContext, inv: Invocation, values: list[Any]) -> list[Any]:
        now = _dt.datetime.now().astimezone().replace(hour=0, minute=0, second=0, microsecond=0)
        wanted = inv.get("id") or (inv.positional[0] if inv.positional else None)
        result = []
        for hotfix_id, description, days in _table(demo_data.HOTFIXES):
            if wanted and hotfix_id.lower() not in [str(w).lower() for w in _as_list(wanted)]:
                continue
            result.append(
                DemoObject(
                    [
                        "System.Management.ManagementObject#root\\cimv2\\Win32_QuickFixEngineering",
                        "System.Management.ManagementObject",
                        "System.Management.ManagementBaseObject",
                        "System.ComponentModel.Component",
                        "System.MarshalByRefObject",
                        "System.Object",
                    ],
                    {
                        "Source": COMPUTER_NAME,
                        "Description": description,
                        "HotFixID": hotfix_id,
                        "InstalledBy": "NT AUTHORITY\\SYSTEM",
                        "InstalledOn": now - _dt.timedelta(days=int(days)),
                        "Caption": f"https://support.microsoft.com/help/{hotfix_id[2:]}",
                        "CSName": COMPUTER_NAME,
                        "PSComputerName": COMPUTER_NAME,
                    },
                    to_string=f"\\\\{COMPUTER_NAME}\\root\\cimv2:Win32_QuickFixEngineering."
                    f'HotFixID="{hotfix_id}",ServicePackInEffect=""',
                    extended=("Source", "InstalledOn", "PSComputerName"),
                )
            )
        return result

    def get_winevent(self, ctx: HandlerContext, inv: Invocation, values: list[Any]) -> list[Any]:
        filters = inv.get("filterhashtable")
        log_names = inv.get("logname") or (inv.positional[0] if inv.positional else None)
        levels: set[int] | None = None
        start: _dt.datetime | None = None
        ids: set[int] | None = None
        providers = inv.get("providername")
        if isinstance(filters, dict):
            lowered = {k.lower(): v for k, v in filters.items()}
            log_names = lowered.get("logname", log_names)
            if "level" in lowered:
                levels = {int(x) for x in _as_list(lowered["level"])}
            if "starttime" in lowered:
                start = lowered["starttime"]
            if "id" in lowered:
                ids = {int(x) for x in _as_list(lowered["id"])}
            providers = lowered.get("providername", providers)
        names = [str(n).lower() for n in _as_list(log_names)] if log_names else None
        provider_patterns = [str(p).lower() for p in _as_list(providers)] if providers else None
        events = self._events()
        result = []
        for event in events:
            if names is not None and event.get("LogName").lower() not in names:
                continue
            if levels is not None and int(event.get("Level")) not in levels:
                continue
            if ids is not None and event.get("Id") not in ids:
                continue
            if start is not None and _aware(event.get("TimeCreated")) < _aware(start):
                continue
            if provider_patterns is not None and not any(
                fnmatch.fnmatch(event.get("ProviderName").lower(), p) for p in provider_patterns
            ):
                continue
            result.append(event)
        if inv.switch("oldest"):
            result.reverse()
        if inv.has("maxevents"):
            result = result[: int(inv.get("maxevents"))]
        if not result:
            self._error(
                ctx,
                inv,
                "No events were found that match the specified selection criteria.",
                "ObjectNotFound",
                "NoMatchingEventsFound,Microsoft.PowerShell.Commands.GetWinEventCommand",
                None,
                "System.Exception",
            )
        return result

    def _events(self) -> list[DemoObject]:
        now = _dt.datetime.now().astimezone().replace(microsecond=0)
        events = []
        record_ids: dict[str, int] = {"System": 48211, "Application": 20377}
        for log, level, provider, event_id, hours, message in _table(demo_data.EVENTS):
            record_ids[log] += 1
            events.append(
                DemoObject(
                    [
                        "System.Diagnostics.Eventing.Reader.EventLogRecord",
                        "System.Diagnostics.Eventing.Reader.EventRecord",
                        "System.Object",
                    ],
                    {
                        "Message": message,
                        "Id": int(event_id),
                        "Version": 0,
                        "Qualifiers": None,
                        "Level": int(level),
                        "Task": 0,
                        "Opcode": 0,
                        "Keywords": PSInt64(
                            -9187343239835811840 if log == "System" else 36028797018963968
                        ),
                        "RecordId": PSInt64(record_ids[log]),
                        "ProviderName": provider,
                        "LogName": log,
                        "ProcessId": 4412,
                        "MachineName": COMPUTER_NAME,
                        "TimeCreated": now - _dt.timedelta(hours=float(hours)),
                        "LevelDisplayName": _LEVEL_NAMES[int(level)],
                        "TaskDisplayName": None,
                        "KeywordsDisplayNames": ["Classic"],
                        "PSComputerName": COMPUTER_NAME,
                    },
                    to_string="System.Diagnostics.Eventing.Reader.EventLogRecord",
                    extended=("Message", "PSComputerName"),
                )
            )
        events.sort(key=lambda e: e.get("TimeCreated"), reverse=True)
        return events

    def get_computerinfo(
        self, ctx: HandlerContext, inv: Invocation, values: list[Any]
    ) -> DemoObject:
        info = self._computer_info()
        wanted = inv.get("property") if inv is not None else None
        if wanted is None:
            return info
        names = [str(n) for n in _as_list(wanted)]
        return DemoObject(
            info.type_names,
            {
                k: v
                for k, v in info.props.items()
                if any(fnmatch.fnmatch(k.lower(), n.lower()) for n in names)
            },
            to_string=info.to_string,
        )

    def _computer_info(self) -> DemoObject:
        boot = self.guest.boot_time.astimezone()
        now = _dt.datetime.now().astimezone()
        return DemoObject(
            ["Microsoft.PowerShell.Commands.ComputerInfo", "System.Object"],
            {
                "HvMagicSimulation": "SIMULATED GUEST - data invented by hvmagic's demo, "
                "not a real machine",
                "WindowsBuildLabEx": "20348.1.amd64fre.fe_release.210507-1500",
                "WindowsCurrentVersion": "6.3",
                "WindowsEditionId": "ServerDatacenter",
                "WindowsInstallationType": "Server",
                "WindowsInstallDateFromRegistry": now - _dt.timedelta(days=431),
                "WindowsProductName": "Windows Server 2022 Datacenter",
                "WindowsRegisteredOrganization": "hvmagic simulated guest",
                "WindowsRegisteredOwner": "Administrator",
                "WindowsSystemRoot": "C:\\Windows",
                "WindowsVersion": "2009",
                "BiosManufacturer": "Microsoft Corporation",
                "BiosSMBIOSBIOSVersion": "Hyper-V UEFI Release v4.1",
                "CsDNSHostName": COMPUTER_NAME,
                "CsDomain": "WORKGROUP",
                "CsManufacturer": "Microsoft Corporation",
                "CsModel": "Virtual Machine",
                "CsName": COMPUTER_NAME,
                "CsNumberOfLogicalProcessors": 2,
                "CsNumberOfProcessors": 1,
                "CsTotalPhysicalMemory": PSInt64(4 << 30),
                "CsHypervisorPresent": True,
                "OsName": "Microsoft Windows Server 2022 Datacenter",
                "OsType": "WINNT",
                "OsVersion": "10.0.20348",
                "OsBuildNumber": "20348",
                "OsArchitecture": "64-bit",
                "OsLastBootUpTime": boot,
                "OsUptime": now - boot,
                "OsLocale": "en-US",
                "OsFreePhysicalMemory": PSInt64(1_812_004),
                "TimeZone": "(UTC) Coordinated Universal Time",
                "LogonServer": f"\\\\{COMPUTER_NAME}",
                "PowerPlatformRole": "Desktop",
                "HyperVisorPresent": True,
                "DeviceGuardSmartStatus": "Off",
                "PSComputerName": COMPUTER_NAME,
            },
            to_string="Microsoft.PowerShell.Commands.ComputerInfo",
            extended=("PSComputerName",),
        )

    def get_ciminstance(self, ctx: HandlerContext, inv: Invocation, values: list[Any]) -> list[Any]:
        class_name = str(inv.get("classname") or (inv.positional[0] if inv.positional else ""))
        if class_name.lower() == "win32_operatingsystem":
            boot = self.guest.boot_time.astimezone()
            return [
                DemoObject(
                    [
                        "Microsoft.Management.Infrastructure.CimInstance#root/cimv2/"
                        "Win32_OperatingSystem",
                        "Microsoft.Management.Infrastructure.CimInstance#root/cimv2/CIM_OperatingSystem",
                        "Microsoft.Management.Infrastructure.CimInstance",
                        "System.Object",
                    ],
                    {
                        "Caption": "Microsoft Windows Server 2022 Datacenter",
                        "Version": "10.0.20348",
                        "BuildNumber": "20348",
                        "CSName": COMPUTER_NAME,
                        "LastBootUpTime": boot,
                        "FreePhysicalMemory": PSUInt64(1_812_004),
                        "TotalVisibleMemorySize": PSUInt64(4_193_848),
                        "PSComputerName": COMPUTER_NAME,
                    },
                    to_string='Win32_OperatingSystem (Name = "Microsoft Windows Server 2022 '
                    'Datacenter|C:\\Windows|...")',
                )
            ]
        if class_name.lower() == "win32_quickfixengineering":
            return self.get_hotfix(ctx, parse_invocation("Get-HotFix"), [])
        if class_name.lower() == "win32_service":
            return [
                custom(
                    {
                        "Name": s.get("Name"),
                        "State": str(s.get("Status")),
                        "StartMode": {"Automatic": "Auto"}.get(
                            str(s.get("StartType")), str(s.get("StartType"))
                        ),
                        "DisplayName": s.get("DisplayName"),
                    },
                    "Microsoft.Management.Infrastructure.CimInstance#root/cimv2/Win32_Service",
                )
                for s in self._all_services()
            ]
        self._error(
            ctx,
            inv,
            "Invalid class ",
            "MetadataError",
            "HRESULT 0x80041010,Microsoft.Management.Infrastructure.CimCmdlets."
            "GetCimInstanceCommand",
            class_name,
            "Microsoft.Management.Infrastructure.CimException",
        )
        return []

    def get_volume(self, ctx: HandlerContext, inv: Invocation, values: list[Any]) -> list[Any]:
        type_names = [
            "Microsoft.Management.Infrastructure.CimInstance#ROOT/Microsoft/Windows/Storage/"
            "MSFT_Volume",
            "Microsoft.Management.Infrastructure.CimInstance#ROOT/Microsoft/Windows/Storage/"
            "MSFT_StorageObject",
            "Microsoft.Management.Infrastructure.CimInstance#MSFT_Volume",
            "Microsoft.Management.Infrastructure.CimInstance",
            "System.Object",
        ]
        rows = [
            ("C", "", "NTFS", "Fixed", 127 << 30, 71_233_454_080, "Healthy"),
            ("D", "Data", "ReFS", "Fixed", 64 << 30, 2_147_483_648 * 5, "Warning"),
            (None, "Recovery", "NTFS", "Fixed", 522_190_848, 87_195_648, "Healthy"),
            ("E", "SSS_X64FREE_EN-US_DV9", "Unknown", "CD-ROM", 0, 0, "Healthy"),
        ]
        letter = inv.get("driveletter") or (inv.positional[0] if inv.positional else None)
        result = []
        for drive, label, fs, kind, size, free, health in rows:
            if letter and (drive or "").lower() not in [str(x).lower() for x in _as_list(letter)]:
                continue
            result.append(
                DemoObject(
                    type_names,
                    {
                        "DriveLetter": drive,
                        "FriendlyName": label,
                        "FileSystemType": fs,
                        "DriveType": kind,
                        "HealthStatus": health,
                        "OperationalStatus": "OK" if health == "Healthy" else "Degraded",
                        "SizeRemaining": PSUInt64(free),
                        "Size": PSUInt64(size),
                        "FileSystemLabel": label,
                        "FileSystem": fs if fs != "Unknown" else "",
                        "AllocationUnitSize": PSUInt(4096),
                        "PSComputerName": COMPUTER_NAME,
                    },
                    to_string=f'MSFT_Volume (ObjectId = "{{1}}\\\\{COMPUTER_NAME}\\root/Microsoft/'
                    f'Windows/Storage/Providers_v2\\WSP_Volume.ObjectId=...")',
                    extended=("PSComputerName",),
                )
            )
        return result

    def get_netipaddress(
        self, ctx: HandlerContext, inv: Invocation, values: list[Any]
    ) -> list[Any]:
        type_names = [
            "Microsoft.Management.Infrastructure.CimInstance#ROOT/StandardCimv2/MSFT_NetIPAddress",
            "Microsoft.Management.Infrastructure.CimInstance#ROOT/StandardCimv2/MSFT_NetIPAddress",
            "Microsoft.Management.Infrastructure.CimInstance",
            "System.Object",
        ]
        rows = [
            ("fe80::5d2a:9f4c:31e7:8b10%6", 6, "Ethernet", "IPv6", 64, "WellKnown", "Link"),
            ("::1", 1, "Loopback Pseudo-Interface 1", "IPv6", 128, "WellKnown", "WellKnown"),
            ("172.20.48.17", 6, "Ethernet", "IPv4", 20, "Dhcp", "Dhcp"),
            ("127.0.0.1", 1, "Loopback Pseudo-Interface 1", "IPv4", 8, "WellKnown", "WellKnown"),
        ]
        family = inv.get("addressfamily")
        result = []
        for address, index, alias, fam, prefix, prefix_origin, suffix_origin in rows:
            if family and str(family).lower() != fam.lower():
                continue
            result.append(
                DemoObject(
                    type_names,
                    {
                        "IPAddress": address,
                        "InterfaceIndex": index,
                        "InterfaceAlias": alias,
                        "AddressFamily": fam,
                        "Type": "Unicast",
                        "PrefixLength": prefix,
                        "PrefixOrigin": prefix_origin,
                        "SuffixOrigin": suffix_origin,
                        "AddressState": "Preferred",
                        "ValidLifetime": _dt.timedelta(days=1) if prefix_origin == "Dhcp" else None,
                        "SkipAsSource": False,
                        "PolicyStore": "ActiveStore",
                        "PSComputerName": COMPUTER_NAME,
                    },
                    to_string=f'MSFT_NetIPAddress (Name = "{address}")',
                    extended=("PSComputerName",),
                )
            )
        return result

    def get_scheduledtask(
        self, ctx: HandlerContext, inv: Invocation, values: list[Any]
    ) -> list[Any]:
        wanted = inv.get("taskname") or (inv.positional[0] if inv.positional else None)
        result = []
        for path, name, state, author, description in _table(demo_data.SCHEDULED_TASKS):
            if wanted and not any(
                fnmatch.fnmatch(name.lower(), str(w).lower()) for w in _as_list(wanted)
            ):
                continue
            result.append(
                DemoObject(
                    [
                        "Microsoft.Management.Infrastructure.CimInstance#Root/Microsoft/Windows/"
                        "TaskScheduler/MSFT_ScheduledTask",
                        "Microsoft.Management.Infrastructure.CimInstance#MSFT_ScheduledTask",
                        "Microsoft.Management.Infrastructure.CimInstance",
                        "System.Object",
                    ],
                    {
                        "TaskPath": path,
                        "TaskName": name,
                        "State": EnumValue(ScheduledTaskState[state]),
                        "Author": author,
                        "Description": description or None,
                        "URI": path + name,
                        "PSComputerName": COMPUTER_NAME,
                    },
                    to_string=f'MSFT_ScheduledTask (TaskName = "{name}", TaskPath = "{path}")',
                    extended=("PSComputerName",),
                )
            )
        return result

    def _make_features(self) -> list[DemoObject]:
        result = []
        for name, display, kind, installed, depth, parent in _table(demo_data.FEATURES):
            result.append(
                DemoObject(
                    ["Microsoft.Windows.ServerManager.Commands.Feature", "System.Object"],
                    {
                        "Name": name,
                        "DisplayName": display,
                        "Description": f"{display} (simulated).",
                        "Installed": installed == "1",
                        "InstallState": EnumValue(
                            InstallState.Installed if installed == "1" else InstallState.Available
                        ),
                        "FeatureType": kind,
                        "Path": display,
                        "Depth": int(depth),
                        "Parent": parent or None,
                        "PSComputerName": COMPUTER_NAME,
                    },
                    to_string=display,
                    extended=("PSComputerName",),
                )
            )
        return result

    def _feature_installed(self, name: str) -> bool:
        return any(
            f.get("Name").lower() == name.lower() and f.get("Installed") for f in self.features
        )

    def get_windowsfeature(
        self, ctx: HandlerContext, inv: Invocation, values: list[Any]
    ) -> list[Any]:
        wanted = inv.get("name") or (inv.positional[0] if inv.positional else None)
        if wanted is None:
            return list(self.features)
        return [
            f
            for f in self.features
            if any(fnmatch.fnmatch(f.get("Name").lower(), str(w).lower()) for w in _as_list(wanted))
        ]

    def install_windowsfeature(
        self, ctx: HandlerContext, inv: Invocation, values: list[Any]
    ) -> DemoObject:
        names = [str(n) for n in _as_list(inv.get("name") or inv.positional[0])]
        changed = self._install_features(ctx, names)
        restart = "Yes" if changed else "No"
        return DemoObject(
            ["Microsoft.Windows.ServerManager.Commands.FeatureOperationResult", "System.Object"],
            {
                "Success": True,
                "RestartNeeded": EnumValue(_RestartState[restart]),
                "FeatureResult": [f.get("DisplayName") for f in changed],
                "ExitCode": EnumValue(_ExitCode.Success if changed else _ExitCode.NoChangeNeeded),
            },
        )

    def _install_features(self, ctx: HandlerContext, names: list[str]) -> list[DemoObject]:
        changed = []
        for name in names:
            matches = [f for f in self.features if f.get("Name").lower() == name.lower()]
            if not matches:
                raise TerminatingError(
                    f"ArgumentNotValid: The role, role service, or feature name is not valid: "
                    f"'{name}'. The name was not found.",
                    category="InvalidArgument",
                    error_id="NameDoesNotExist,Microsoft.Windows.ServerManager.Commands."
                    "AddWindowsFeatureCommand",
                    exception_type="System.Exception",
                    command="Install-WindowsFeature",
                )
            family = (
                [
                    f
                    for f in self.features
                    if f.get("Name").lower().startswith(name.lower().split("-")[0] + "-")
                    or f is matches[0]
                ]
                if name.lower() == "web-server"
                else matches
            )
            for feature in family:
                if not feature.get("Installed"):
                    feature.set("Installed", True)
                    feature.set("InstallState", EnumValue(InstallState.Installed))
                    changed.append(feature)
        if changed:
            self.guest.state["pending_reboot"] = True
        return changed

    # ---- DSC ----------------------------------------------------------------------------------

    def start_dscconfiguration(
        self, ctx: HandlerContext, inv: Invocation, values: list[Any]
    ) -> list[Any]:
        path = inv.get("path") or (inv.positional[0] if inv.positional else None)
        if path is None and not inv.switch("useexisting"):
            raise TerminatingError(
                "Cannot bind argument to parameter 'Path' because it is null.",
                category="InvalidData",
                error_id="ParameterArgumentValidationErrorNullNotAllowed,"
                "Microsoft.PowerShell.DesiredStateConfiguration.Commands."
                "StartDscConfigurationCommand",
                command="Start-DscConfiguration",
            )
        resources = self._mof_resources(ctx, str(path)) if path else []
        if not inv.switch("wait"):
            job = custom(
                {
                    "Id": 1,
                    "Name": "Job1",
                    "PSJobTypeName": "Configuration",
                    "State": "Running",
                    "HasMoreData": True,
                    "Location": COMPUTER_NAME,
                    "Command": "Start-DscConfiguration",
                },
                "Microsoft.PowerShell.DesiredStateConfiguration.Commands.ConfigurationJob",
            )
            self._apply_resources(ctx, resources, verbose=False)
            return [job]
        verbose = (
            inv.switch("verbose")
            or str(ctx.variables.get("verbosepreference", "")).lower() == "continue"
        )
        self._apply_resources(ctx, resources, verbose=verbose)
        return []

    def _service_for(self, resource: dict[str, str]) -> DemoObject | None:
        name = resource.get("name", "").lower()
        return next((s for s in self._all_services() if s.get("Name").lower() == name), None)

    def _module_exists(self, module: str) -> bool:
        if module.lower() in _BUILTIN_DSC_MODULES:
            return True
        return (
            self.guest.host_path("C:\\Program Files\\WindowsPowerShell\\Modules") / module
        ).is_dir()

    def _write_mofs(
        self, ctx: HandlerContext, configuration: DscConfiguration, inv: Invocation
    ) -> list[Any]:
        """Running a compiled ``Configuration``: one ``<node>.mof`` per node, FileInfo out."""
        output = str(
            inv.get("outputpath") or f"C:\\Users\\Administrator\\Documents\\{configuration.name}"
        )
        folder = self.guest.host_path(output)
        folder.mkdir(parents=True, exist_ok=True)
        written = []
        for node, resources in configuration.nodes.items():
            path = folder / f"{node}.mof"
            path.write_text(render_mof(configuration.name, node, resources), encoding="utf-8")
            written.append(self._file_object(path))
        return written

    def _mof_resources(self, ctx: HandlerContext, path: str) -> list[dict[str, str]]:
        host = self.guest.host_path(path)
        if not host.exists():
            raise TerminatingError(
                f"Cannot find path '{path}' because it does not exist.",
                category="ObjectNotFound",
                error_id="PathNotFound,Microsoft.PowerShell.DesiredStateConfiguration.Commands."
                "StartDscConfigurationCommand",
                target=path,
                exception_type="System.Management.Automation.ItemNotFoundException",
                command="Start-DscConfiguration",
            )
        mofs = sorted(host.glob("*.mof")) if host.is_dir() else [host]
        mofs = [m for m in mofs if not m.name.lower().endswith(".meta.mof")]
        if not mofs:
            raise TerminatingError(
                f"The path {path} does not contain any configuration (.mof) file.",
                category="InvalidArgument",
                error_id="MofFileNotFound",
                exception_type="System.ArgumentException",
                command="Start-DscConfiguration",
            )
        resources: list[dict[str, str]] = []
        for mof in mofs:
            text = mof.read_text(encoding="utf-8-sig", errors="replace")
            for block in re.findall(r"instance of (\w+)[^{]*\{(.*?)\};", text, re.S):
                class_name, body = block
                if class_name.lower() == "omi_configurationdocument":
                    continue
                fields = {k.lower(): v for k, v in re.findall(r"(\w+)\s*=\s*\"([^\"]*)\"", body)}
                fields["class"] = class_name
                resources.append(fields)
        modules_root = self.guest.host_path("C:\\Program Files\\WindowsPowerShell\\Modules")
        for resource in resources:
            module = resource.get("modulename", "PSDesiredStateConfiguration")
            if module.lower() in ("psdesiredstateconfiguration", "psdscresources"):
                continue
            if not (modules_root / module).is_dir():
                raise TerminatingError(
                    f"The PowerShell DSC resource '{resource.get('resourceid', module)}' from "
                    f"module '{module}' does not exist at the PowerShell module path nor is it "
                    "registered as a WMI DSC resource.",
                    category="InvalidOperation",
                    error_id="DscResourceNotFound",
                    target=module,
                    exception_type="Microsoft.Management.Infrastructure.CimException",
                    command="Start-DscConfiguration",
                )
        return resources

    def _apply_resources(
        self, ctx: HandlerContext, resources: list[dict[str, str]], *, verbose: bool
    ) -> None:
        prefix = f"[{COMPUTER_NAME}]:"
        pad = " " * 28

        def say(text: str, delay: float = 0.03) -> None:
            if verbose:
                ctx.verbose(text)
            ctx.sleep(delay)

        say(
            "Perform operation 'Invoke CimMethod' with following parameters, ''methodName' = "
            "SendConfigurationApply,'className' = MSFT_DSCLocalConfigurationManager,"
            "'namespaceName' = root/Microsoft/Windows/DesiredStateConfiguration'."
        )
        say(
            f"An LCM method call arrived from computer {COMPUTER_NAME} with user sid "
            "S-1-5-21-1004336348-1177238915-682003330-500."
        )
        say(f"{prefix} LCM:  [ Start  Set      ]")
        reboot = False
        total = 0.0
        for index, resource in enumerate(resources):
            rid = resource.get("resourceid", f"[{resource['class']}]Resource{index}")
            ctx.progress(
                "Applying configuration", f"{rid}", int(100 * index / len(resources)), activity_id=1
            )
            say(f"{prefix} LCM:  [ Start  Resource ]  [{rid}]")
            say(f"{prefix} LCM:  [ Start  Test     ]  [{rid}]")
            kind = _resource_kind(resource, rid)
            wanted_feature = resource.get("name") if kind == "windowsfeature" else None
            in_state = wanted_feature is not None and self._feature_installed(wanted_feature)
            if kind == "file" and resource.get("destinationpath"):
                in_state = self.guest.host_path(resource["destinationpath"]).exists()
            service = self._service_for(resource) if kind == "service" else None
            if service is not None:
                in_state = _service_in_state(service, resource)
            say(
                f"{prefix}{pad}[{rid}] The operation 'Test' found the resource "
                f"{'in' if in_state else 'not in'} the desired state."
            )
            say(f"{prefix} LCM:  [ End    Test     ]  [{rid}]  in 0.8750 seconds.")
            if in_state:
                say(f"{prefix} LCM:  [ Skip   Set      ]  [{rid}]")
            else:
                say(f"{prefix} LCM:  [ Start  Set      ]  [{rid}]")
                if wanted_feature is not None:
                    say(f"{prefix}{pad}[{rid}] Installation started...")
                    say(f"{prefix}{pad}[{rid}] Prerequisite processing started...", 0.05)
                    say(f"{prefix}{pad}[{rid}] Prerequisite processing succeeded.")
                    changed = self._install_features(ctx, [wanted_feature])
                    if changed:
                        reboot = True
                        ctx.warning(
                            f"{prefix}{pad}[{rid}] You must restart this server to "
                            "finish the installation process."
                        )
                    say(f"{prefix}{pad}[{rid}] Installation succeeded.")
                    say(
                        f"{prefix}{pad}[{rid}] Successfully installed the feature {wanted_feature}."
                    )
                    say(f"{prefix}{pad}[{rid}] The Target machine needs to be restarted.")
                elif kind == "file" and resource.get("destinationpath"):
                    target = self.guest.host_path(resource["destinationpath"])
                    if resource.get("type", "").lower() == "directory":
                        target.mkdir(parents=True, exist_ok=True)
                    else:
                        target.parent.mkdir(parents=True, exist_ok=True)
                        target.write_text(resource.get("contents", ""), encoding="utf-8")
                    say(f"{prefix}{pad}[{rid}] Created {resource['destinationpath']}.")
                elif service is not None:
                    if resource.get("startuptype"):
                        service.set(
                            "StartType",
                            EnumValue(ServiceStartMode[resource["startuptype"].capitalize()]),
                        )
                    if resource.get("state"):
                        running = resource["state"].lower() == "running"
                        service.set(
                            "Status",
                            EnumValue(
                                ServiceControllerStatus.Running
                                if running
                                else ServiceControllerStatus.Stopped
                            ),
                        )
                        service.set("CanStop", running)
                    say(
                        f"{prefix}{pad}[{rid}] Service '{service.get('Name')}' set to "
                        f"{service.get('Status')}, {service.get('StartType')}."
                    )
                elif resource["class"].lower() == "hvmsitebanner" and resource.get("path"):
                    # The runbook's example resource (notebooks/dsc/HvmDemoDsc): the simulation
                    # cannot run its PowerShell class, so it does what the class's Set() does.
                    target = self.guest.host_path(resource["path"])
                    target.parent.mkdir(parents=True, exist_ok=True)
                    text = html.escape(resource.get("message", ""), quote=False)
                    target.write_text(f"<html><body><h1>{text}</h1></body></html>", "utf-8")
                    say(f"{prefix}{pad}[{rid}] Writing banner to {resource['path']}")
                else:
                    say(f"{prefix}{pad}[{rid}] Resource {resource['class']} applied (simulated).")
                total += 36.187
                say(f"{prefix} LCM:  [ End    Set      ]  [{rid}]  in 36.1870 seconds.")
            say(f"{prefix} LCM:  [ End    Resource ]  [{rid}]")
        ctx.progress("Applying configuration", "Done", 100, activity_id=1, completed=True)
        if reboot:
            message = (
                f"{prefix}{pad}[] A reboot is required to progress further. Please "
                "reboot the system."
            )
            say(message)
            ctx.warning(message)
            self.guest.state["pending_reboot"] = True
        self.guest.state["dsc_last_run"] = {
            "status": "Success",
            "reboot": reboot,
            "resources": len(resources),
            "time": _dt.datetime.now().astimezone(),
        }
        say(f"{prefix} LCM:  [ End    Set      ]")
        say(f"{prefix} LCM:  [ End    Set      ]    in  {total + 2.016:.4f} seconds.")
        say("Operation 'Invoke CimMethod' complete.")
        say(f"Time taken for configuration job to complete is {total + 2.23:.3f} seconds")

    def get_dscconfigurationstatus(
        self, ctx: HandlerContext, inv: Invocation, values: list[Any]
    ) -> list[Any]:
        last = self.guest.state.get("dsc_last_run")
        if last is None:
            return []
        return [
            custom(
                {
                    "Status": last["status"],
                    "StartDate": last["time"],
                    "Type": "Initial",
                    "Mode": "PUSH",
                    "RebootRequested": bool(last["reboot"]),
                    "NumberOfResources": last["resources"],
                    "PSComputerName": COMPUTER_NAME,
                },
                "Microsoft.Management.Infrastructure.CimInstance#root/Microsoft/Windows/"
                "DesiredStateConfiguration/MSFT_DSCConfigurationStatus",
            )
        ]

    def test_dscconfiguration(
        self, ctx: HandlerContext, inv: Invocation, values: list[Any]
    ) -> bool:
        last = self.guest.state.get("dsc_last_run")
        return last is not None and not self.guest.state.get("pending_reboot", False)

    def get_dsclocalconfigurationmanager(
        self, ctx: HandlerContext, inv: Invocation, values: list[Any]
    ) -> DemoObject:
        pending = bool(self.guest.state.get("pending_reboot"))
        return custom(
            {
                "ActionAfterReboot": "ContinueConfiguration",
                "ConfigurationMode": "ApplyAndMonitor",
                "LCMState": "PendingReboot" if pending else "Idle",
                "LCMStateDetail": "",
                "RebootNodeIfNeeded": False,
                "RefreshMode": "PUSH",
                "PSComputerName": COMPUTER_NAME,
            },
            "Microsoft.Management.Infrastructure.CimInstance#root/Microsoft/Windows/"
            "DesiredStateConfiguration/MSFT_DSCMetaConfiguration",
        )

    def restart_computer(
        self, ctx: HandlerContext, inv: Invocation, values: list[Any]
    ) -> list[Any]:
        if not inv.switch("force") and self.guest.connections > 1:
            raise TerminatingError(
                f"Failed to restart the computer {COMPUTER_NAME} with the following error "
                "message: The system shutdown cannot be initiated because there are other users "
                "logged on to the computer.",
                category="OperationStopped",
                error_id="RestartcomputerFailed,Microsoft.PowerShell.Commands."
                "RestartComputerCommand",
                command="Restart-Computer",
            )
        self.guest.schedule_reboot(0.3)
        return []

    # ---- files ----------------------------------------------------------------------------------

    def _seed_files(self) -> None:
        if self._seeded:
            return
        self._seeded = True
        stamp = (_dt.datetime.now() - _dt.timedelta(hours=3)).strftime("%Y-%m-%d %H:%M:%S")
        for guest_path, text in demo_data.LOG_FILES.items():
            path = self.guest.host_path(guest_path)
            if not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text.replace("{ts}", stamp), encoding="utf-8")
        for folder in (
            "C:\\Users\\Administrator\\Documents",
            "C:\\Windows\\Temp",
            "C:\\Program Files\\WindowsPowerShell\\Modules",
        ):
            self.guest.host_path(folder).mkdir(parents=True, exist_ok=True)

    def _path_argument(self, inv: Invocation) -> str:
        value = inv.get("path", "literalpath") or (inv.positional[0] if inv.positional else None)
        if value is None:
            raise PSSyntaxError(f"{inv.name} needs -Path.")
        return str(value[0] if isinstance(value, list) else value)

    def test_path(self, ctx: HandlerContext, inv: Invocation, values: list[Any]) -> bool:
        path = self.guest.host_path(self._path_argument(inv))
        kind = str(inv.get("pathtype") or "Any").lower()
        if kind == "leaf":
            return path.is_file()
        if kind == "container":
            return path.is_dir()
        return path.exists()

    def get_filehash(self, ctx: HandlerContext, inv: Invocation, values: list[Any]) -> list[Any]:
        algorithm = str(inv.get("algorithm") or "SHA256").upper()
        if algorithm not in ("SHA1", "SHA256", "SHA384", "SHA512", "MD5"):
            raise TerminatingError(
                f"Cannot validate argument on parameter 'Algorithm'. The "
                f'argument "{algorithm}" does not belong to the set.',
                category="InvalidData",
                command="Get-FileHash",
            )
        result = []
        guest_path = self._path_argument(inv)
        for path in self._expand(guest_path):
            if not path.is_file():
                self._error(
                    ctx,
                    inv,
                    f"Cannot find path '{guest_path}' because it does not exist.",
                    "ObjectNotFound",
                    "FileNotFound,Get-FileHash",
                    guest_path,
                    "System.Management.Automation.ItemNotFoundException",
                )
                continue
            digest = hashlib.new(algorithm.lower())
            with path.open("rb") as handle:
                while block := handle.read(1 << 20):
                    digest.update(block)
            result.append(
                custom(
                    {
                        "Algorithm": algorithm,
                        "Hash": digest.hexdigest().upper(),
                        "Path": self.guest.guest_path(path),
                    },
                    "Microsoft.Powershell.Utility.FileHash",
                )
            )
        return result

    def _expand(self, guest_path: str) -> list[Path]:
        host = self.guest.host_path(guest_path)
        if any(c in host.name for c in "*?"):
            return sorted(p for p in host.parent.glob(host.name))
        return [host]

    def get_childitem(self, ctx: HandlerContext, inv: Invocation, values: list[Any]) -> list[Any]:
        guest_path = str(
            inv.get("path", "literalpath")
            or (inv.positional[0] if inv.positional else "C:\\Users\\Administrator\\Documents")
        )
        pattern = inv.get("filter") or inv.get("include")
        roots = self._expand(guest_path)
        if not any(r.exists() for r in roots):
            self._error(
                ctx,
                inv,
                f"Cannot find path '{guest_path}' because it does not exist.",
                "ObjectNotFound",
                "PathNotFound,Microsoft.PowerShell.Commands.GetChildItemCommand",
                guest_path,
                "System.Management.Automation.ItemNotFoundException",
            )
            return []
        items: list[Path] = []
        for root in roots:
            if root.is_file():
                items.append(root)
            elif inv.switch("recurse"):
                items.extend(sorted(root.rglob("*")))
            elif root.is_dir():
                items.extend(sorted(root.iterdir()))
        if pattern:
            items = [p for p in items if fnmatch.fnmatch(p.name.lower(), str(pattern).lower())]
        if inv.switch("file"):
            items = [p for p in items if p.is_file()]
        if inv.switch("directory"):
            items = [p for p in items if p.is_dir()]
        return [self._file_object(p) for p in items]

    def _file_object(self, path: Path) -> DemoObject:
        stat = path.stat()
        modified = _dt.datetime.fromtimestamp(stat.st_mtime).astimezone()
        full = self.guest.guest_path(path)
        parent = full.rsplit("\\", 1)[0]
        if path.is_dir():
            return DemoObject(
                [
                    "System.IO.DirectoryInfo",
                    "System.IO.FileSystemInfo",
                    "System.MarshalByRefObject",
                    "System.Object",
                ],
                {
                    "Name": path.name,
                    "FullName": full,
                    "Parent": parent.rsplit("\\", 1)[-1],
                    "Exists": True,
                    "LastWriteTime": modified,
                    "Mode": "d-----",
                    "PSIsContainer": True,
                    "PSPath": f"Microsoft.PowerShell.Core\\FileSystem::{full}",
                    "PSComputerName": COMPUTER_NAME,
                },
                to_string=path.name,
                extended=("PSPath", "PSIsContainer", "Mode", "PSComputerName"),
            )
        return DemoObject(
            [
                "System.IO.FileInfo",
                "System.IO.FileSystemInfo",
                "System.MarshalByRefObject",
                "System.Object",
            ],
            {
                "Name": path.name,
                "Length": PSInt64(stat.st_size),
                "DirectoryName": parent,
                "FullName": full,
                "Extension": path.suffix,
                "Exists": True,
                "LastWriteTime": modified,
                "Mode": "-a----",
                "PSIsContainer": False,
                "PSPath": f"Microsoft.PowerShell.Core\\FileSystem::{full}",
                "PSComputerName": COMPUTER_NAME,
            },
            to_string=path.name,
            extended=("PSPath", "PSIsContainer", "Mode", "PSComputerName"),
        )

    def get_item(self, ctx: HandlerContext, inv: Invocation, values: list[Any]) -> list[Any]:
        guest_path = self._path_argument(inv)
        found = [p for p in self._expand(guest_path) if p.exists()]
        if not found:
            raise TerminatingError(
                f"Cannot find path '{guest_path}' because it does not exist.",
                category="ObjectNotFound",
                error_id="PathNotFound,Microsoft.PowerShell.Commands.GetItemCommand",
                target=guest_path,
                exception_type="System.Management.Automation.ItemNotFoundException",
                command="Get-Item",
            )
        return [self._file_object(p) for p in found]

    def get_content(self, ctx: HandlerContext, inv: Invocation, values: list[Any]) -> list[Any]:
        guest_path = self._path_argument(inv)
        path = self.guest.host_path(guest_path)
        if not path.is_file():
            raise TerminatingError(
                f"Cannot find path '{guest_path}' because it does not exist.",
                category="ObjectNotFound",
                error_id="PathNotFound,Microsoft.PowerShell.Commands.GetContentCommand",
                target=guest_path,
                exception_type="System.Management.Automation.ItemNotFoundException",
                command="Get-Content",
            )
        text = path.read_text(encoding="utf-8-sig", errors="replace")
        if inv.switch("raw"):
            return [text]
        lines = text.splitlines()
        if inv.has("tail"):
            lines = lines[-int(inv.get("tail")) :]
        if inv.has("totalcount", "first", "head"):
            lines = lines[: int(inv.get("totalcount", "first", "head"))]
        return list(lines)

    def set_content(self, ctx: HandlerContext, inv: Invocation, values: list[Any]) -> list[Any]:
        path = self.guest.host_path(self._path_argument(inv))
        value = inv.get("value")
        if value is None:
            value = values if values else (inv.positional[1] if len(inv.positional) > 1 else "")
        path.parent.mkdir(parents=True, exist_ok=True)
        lines = value if isinstance(value, list) else [value]
        path.write_text("\r\n".join(to_text(v) for v in lines) + "\r\n", encoding="utf-8")
        return []

    def new_item(self, ctx: HandlerContext, inv: Invocation, values: list[Any]) -> list[Any]:
        guest_path = self._path_argument(inv)
        if inv.has("name"):
            guest_path = guest_path.rstrip("\\") + "\\" + str(inv.get("name"))
        path = self.guest.host_path(guest_path)
        kind = str(
            inv.get("itemtype") or ("Directory" if inv.name.lower() in ("md", "mkdir") else "File")
        ).lower()
        if path.exists() and not inv.switch("force"):
            raise TerminatingError(
                f"An item with the specified name {guest_path} already exists.",
                category="ResourceExists",
                error_id="DirectoryExist,Microsoft.PowerShell.Commands.NewItemCommand",
                target=guest_path,
                exception_type="System.IO.IOException",
                command="New-Item",
            )
        if kind == "directory":
            path.mkdir(parents=True, exist_ok=True)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(to_text(inv.get("value") or ""), encoding="utf-8")
        return [self._file_object(path)]

    def remove_item(self, ctx: HandlerContext, inv: Invocation, values: list[Any]) -> list[Any]:
        guest_path = self._path_argument(inv)
        targets = self._expand(guest_path)
        if not any(t.exists() for t in targets):
            self._error(
                ctx,
                inv,
                f"Cannot find path '{guest_path}' because it does not exist.",
                "ObjectNotFound",
                "PathNotFound,Microsoft.PowerShell.Commands.RemoveItemCommand",
                guest_path,
                "System.Management.Automation.ItemNotFoundException",
            )
        for target in targets:
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
        return []

    def copy_item(self, ctx: HandlerContext, inv: Invocation, values: list[Any]) -> list[Any]:
        source = self._path_argument(inv)
        destination = inv.get("destination") or (
            inv.positional[1] if len(inv.positional) > 1 else None
        )
        if destination is None:
            raise PSSyntaxError("Copy-Item needs -Destination.")
        target = self.guest.host_path(str(destination))
        for path in self._expand(source):
            if path.is_dir():
                shutil.copytree(
                    path, target / path.name if target.is_dir() else target, dirs_exist_ok=True
                )
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, target / path.name if target.is_dir() else target)
        return []

    def compress_archive(
        self, ctx: HandlerContext, inv: Invocation, values: list[Any]
    ) -> list[Any]:
        sources = _as_list(inv.get("path") or inv.positional[0])
        destination = self.guest.host_path(str(inv.get("destinationpath")))
        if destination.suffix.lower() != ".zip":
            destination = destination.with_suffix(".zip")
        if destination.exists() and not (inv.switch("force") or inv.switch("update")):
            raise TerminatingError(
                f"The archive file {self.guest.guest_path(destination)} "
                "already exists. Use the -Update parameter to update the "
                "existing archive file or use the -Force parameter to "
                "overwrite the existing archive file.",
                category="InvalidArgument",
                error_id="ArchiveFileExists,Compress-Archive",
                command="Compress-Archive",
            )
        destination.parent.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(destination, "w", zipfile.ZIP_DEFLATED) as archive:
            for source in sources:
                for path in self._expand(str(source)):
                    if path.is_dir():
                        for item in sorted(path.rglob("*")):
                            if item.is_file():
                                archive.write(item, str(item.relative_to(path.parent)))
                    elif path.is_file():
                        archive.write(path, path.name)
        return []

    # ---- streams and misc ---------------------------------------------------------------------

    def write_output(self, ctx: HandlerContext, inv: Invocation, values: list[Any]) -> list[Any]:
        return (
            values
            + [v for p in inv.positional for v in _as_list(p)]
            + _as_list(inv.get("inputobject"))
        )

    def write_host(self, ctx: HandlerContext, inv: Invocation, values: list[Any]) -> list[Any]:
        text = " ".join(to_text(v) for v in (inv.positional or [inv.get("object") or ""]))
        ctx.host_write(
            text,
            foreground=inv.get("foregroundcolor"),
            background=inv.get("backgroundcolor"),
            no_newline=inv.switch("nonewline"),
        )
        return []

    def _message(self, inv: Invocation) -> str:
        value = inv.get("message") or (inv.positional[0] if inv.positional else "")
        return to_text(value)

    def _preference(self, ctx: HandlerContext, inv: Invocation, name: str, switch: str) -> bool:
        if inv.switch(switch):
            return True
        return str(ctx.variables.get(name, "")).lower() == "continue"

    def write_verbose(self, ctx: HandlerContext, inv: Invocation, values: list[Any]) -> list[Any]:
        if self._preference(ctx, inv, "verbosepreference", "verbose"):
            ctx.verbose(self._message(inv))
        return []

    def write_debug(self, ctx: HandlerContext, inv: Invocation, values: list[Any]) -> list[Any]:
        if self._preference(ctx, inv, "debugpreference", "debug"):
            ctx.debug(self._message(inv))
        return []

    def write_warning(self, ctx: HandlerContext, inv: Invocation, values: list[Any]) -> list[Any]:
        ctx.warning(self._message(inv))
        return []

    def write_information(
        self, ctx: HandlerContext, inv: Invocation, values: list[Any]
    ) -> list[Any]:
        data = inv.get("messagedata") or (inv.positional[0] if inv.positional else "")
        tags = [str(t) for t in _as_list(inv.get("tags"))] if inv.has("tags") else []
        ctx.information(data, tags=tags, source="Write-Information")
        return []

    def write_error(self, ctx: HandlerContext, inv: Invocation, values: list[Any]) -> list[Any]:
        category = str(inv.get("category") or "NotSpecified")
        ctx.command = None
        ctx.error(
            self._message(inv),
            category=category,
            error_id=inv.get("errorid") or None,
            target=inv.get("targetobject"),
        )
        return []

    def write_progress(self, ctx: HandlerContext, inv: Invocation, values: list[Any]) -> list[Any]:
        activity = to_text(inv.get("activity") or (inv.positional[0] if inv.positional else ""))
        status = to_text(
            inv.get("status") or (inv.positional[1] if len(inv.positional) > 1 else "Processing")
        )
        ctx.progress(
            activity,
            status,
            int(inv.get("percentcomplete", default=-1)),
            activity_id=int(inv.get("id", default=0)),
            parent_id=int(inv.get("parentid", default=-1)),
            current_operation=inv.get("currentoperation"),
            seconds_remaining=int(inv.get("secondsremaining", default=-1)),
            completed=inv.switch("completed"),
        )
        return []

    def start_sleep(self, ctx: HandlerContext, inv: Invocation, values: list[Any]) -> list[Any]:
        seconds = inv.get("seconds", "s")
        if seconds is None and inv.has("milliseconds", "m"):
            seconds = float(inv.get("milliseconds", "m")) / 1000
        if seconds is None:
            seconds = inv.positional[0] if inv.positional else 0
        ctx.sleep(float(seconds))
        return []

    def get_date(self, ctx: HandlerContext, inv: Invocation, values: list[Any]) -> Any:
        now = _dt.datetime.now().astimezone()
        if inv.has("format"):
            return now.strftime(_dotnet_to_strftime(str(inv.get("format"))))
        return now

    def hostname(self, ctx: HandlerContext, inv: Invocation, values: list[Any]) -> str:
        return COMPUTER_NAME

    def whoami(self, ctx: HandlerContext, inv: Invocation, values: list[Any]) -> str:
        return f"{COMPUTER_NAME.lower()}\\administrator"

    def read_host(self, ctx: HandlerContext, inv: Invocation, values: list[Any]) -> Any:
        prompt = inv.get("prompt") or (inv.positional[0] if inv.positional else None)
        return ctx.read_host(
            None if prompt is None else to_text(prompt),
            as_secure_string=inv.switch("assecurestring"),
        )

    def get_credential(self, ctx: HandlerContext, inv: Invocation, values: list[Any]) -> Any:
        user = inv.get("username", "credential") or (inv.positional[0] if inv.positional else None)
        return ctx.prompt_for_credential(
            "Windows PowerShell credential request",
            to_text(inv.get("message") or "Enter your credentials."),
            None if user is None else to_text(user),
            "",
        )

    def clear_host(self, ctx: HandlerContext, inv: Invocation, values: list[Any]) -> list[Any]:
        return []

    def get_command(self, ctx: HandlerContext, inv: Invocation, values: list[Any]) -> list[Any]:
        wanted = [
            str(w).lower()
            for w in _as_list(inv.get("name") or (inv.positional[0] if inv.positional else "*"))
        ]
        return [
            custom(
                {
                    "CommandType": "Cmdlet",
                    "Name": name,
                    "Version": "3.1.0.0",
                    "Source": "SimulatedGuest",
                },
                "System.Management.Automation.CmdletInfo",
            )
            for name in sorted(DEMO_COMMANDS)
            if any(fnmatch.fnmatch(name.lower(), w) for w in wanted)
        ]

    def _error(
        self,
        ctx: HandlerContext,
        inv: Invocation,
        message: str,
        category: str,
        error_id: str,
        target: Any,
        exception_type: str,
    ) -> None:
        action = str(inv.get("erroraction", "ea") or "").lower()
        if action in ("silentlycontinue", "ignore"):
            return
        if action == "stop":
            raise TerminatingError(
                message,
                category=category,
                error_id=error_id,
                target=target,
                exception_type=exception_type,
                command=inv.name,
            )
        ctx.command = inv.name
        ctx.error(
            message,
            category=category,
            error_id=error_id,
            target=target,
            exception_type=exception_type,
        )


@PSType(["Microsoft.Windows.ServerManager.Commands.RestartState"])
class _RestartState(PSEnumBase):
    No = 0
    Yes = 1
    Maybe = 2


@PSType(["Microsoft.Windows.ServerManager.Commands.FeatureOperationExitCode"])
class _ExitCode(PSEnumBase):
    Success = 0
    NoChangeNeeded = 1003


_KNOWN_WITH_ALIASES = {
    **_KNOWN,
    **{alias: _KNOWN[target] for alias, target in _ALIASES.items() if target in _KNOWN},
}

#: every command the demo understands → its method on :class:`DemoShell`
DEMO_COMMANDS: dict[str, str] = {
    "Get-Service": "get_service",
    "Start-Service": "start_service",
    "Stop-Service": "stop_service",
    "Restart-Service": "restart_service",
    "Get-Process": "get_process",
    "Get-HotFix": "get_hotfix",
    "Get-WinEvent": "get_winevent",
    "Get-ComputerInfo": "get_computerinfo",
    "Get-CimInstance": "get_ciminstance",
    "Get-WmiObject": "get_ciminstance",
    "Get-Volume": "get_volume",
    "Get-NetIPAddress": "get_netipaddress",
    "Get-ScheduledTask": "get_scheduledtask",
    "Get-WindowsFeature": "get_windowsfeature",
    "Install-WindowsFeature": "install_windowsfeature",
    "Add-WindowsFeature": "install_windowsfeature",
    "Start-DscConfiguration": "start_dscconfiguration",
    "Get-DscConfigurationStatus": "get_dscconfigurationstatus",
    "Test-DscConfiguration": "test_dscconfiguration",
    "Get-DscLocalConfigurationManager": "get_dsclocalconfigurationmanager",
    "Restart-Computer": "restart_computer",
    "Test-Path": "test_path",
    "Get-FileHash": "get_filehash",
    "Get-ChildItem": "get_childitem",
    "Get-Content": "get_content",
    "Get-Item": "get_item",
    "Set-Content": "set_content",
    "New-Item": "new_item",
    "Remove-Item": "remove_item",
    "Copy-Item": "copy_item",
    "Compress-Archive": "compress_archive",
    "Write-Output": "write_output",
    "Write-Host": "write_host",
    "Write-Verbose": "write_verbose",
    "Write-Debug": "write_debug",
    "Write-Warning": "write_warning",
    "Write-Information": "write_information",
    "Write-Error": "write_error",
    "Write-Progress": "write_progress",
    "Start-Sleep": "start_sleep",
    "Get-Date": "get_date",
    "hostname": "hostname",
    "whoami": "whoami",
    "Read-Host": "read_host",
    "Get-Credential": "get_credential",
    "Clear-Host": "clear_host",
    "Get-Command": "get_command",
}

_FILTERS = {
    "where-object": "where_object",
    "select-object": "select_object",
    "sort-object": "sort_object",
    "measure-object": "measure_object",
    "group-object": "group_object",
    "foreach-object": "foreach_object",
    "out-null": "out_null",
    "format-table": "format_table",
    "format-list": "format_list",
    "out-string": "out_string",
    "convertto-json": "convertto_json",
    "convertto-csv": "convertto_csv",
    "export-csv": "export_csv",
}

# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def _is_expression(head: str) -> bool:
    stripped = head.strip()
    return stripped.startswith(("$", "'", '"', "(", "@(", "[", "-not", "!")) or bool(
        re.match(r"^-?\d", stripped)
    )


# --------------------------------------------------------------------------------------------
# DSC: ``Configuration`` blocks compiled to MOF (the subset runbooks use)
# --------------------------------------------------------------------------------------------

_BUILTIN_DSC_MODULES = {"psdesiredstateconfiguration", "psdscresources"}
#: built-in DSC resource → (CIM class, module) as compiled MOFs name them
_BUILTIN_DSC_RESOURCES = {
    "windowsfeature": ("MSFT_RoleResource", "PSDesiredStateConfiguration"),
    "file": ("MSFT_FileDirectoryConfiguration", "PSDesiredStateConfiguration"),
    "service": ("MSFT_ServiceResource", "PSDesiredStateConfiguration"),
    "registry": ("MSFT_RegistryResource", "PSDesiredStateConfiguration"),
    "script": ("MSFT_ScriptResource", "PSDesiredStateConfiguration"),
}


class DscConfiguration:
    def __init__(self, name: str) -> None:
        self.name = name
        self.modules: list[str] = []
        #: node name → [(resource type, resource name, properties)]
        self.nodes: dict[str, list[tuple[str, str, dict[str, Any]]]] = {}


def _dsc_error(message: str) -> TerminatingError:
    return TerminatingError(
        message,
        category="ParserError",
        error_id="DscCompileError",
        exception_type="System.Management.Automation.ParseException",
    )


def dsc_compile_definition(text: str, module_exists: Callable[[str], bool]) -> DscConfiguration:
    """``Configuration Name { Import-DscResource …; Node x { Type Name { Key = 'v' } } }``."""
    match = re.match(r"^configuration\s+([\w-]+)\s*\{(.*)\}\s*$", text, re.S | re.I)
    if match is None:
        raise _dsc_error("Missing closing '}' in the Configuration block.")
    configuration = DscConfiguration(match.group(1))
    for statement in split_top(match.group(2), ";\n"):
        words = statement.split(None, 1)
        keyword = words[0].lower() if words else ""
        if keyword == "import-dscresource":
            invocation = parse_invocation(statement)
            modules = invocation.get("modulename") or (
                invocation.positional[0] if invocation.positional else None
            )
            for module in _as_list(modules):
                name = str(module)
                if not module_exists(name):
                    raise _dsc_error(f"Could not find the module '{name}'.")
                configuration.modules.append(name)
        elif keyword == "param" or keyword.startswith("param("):
            continue
        elif keyword == "node":
            node_match = re.match(r"^node\s+(.+?)\s*\{(.*)\}$", statement, re.S | re.I)
            if node_match is None:
                raise _dsc_error("A Node block needs a name and a body.")
            names = [
                str(n).strip("'\"")
                for n in _as_list(parse_value_token(node_match.group(1).strip()))
            ]
            resources = _dsc_resources(node_match.group(2), configuration)
            for node in names:
                configuration.nodes.setdefault(node, []).extend(resources)
        else:
            raise _dsc_error(
                f"The simulated guest cannot compile this Configuration "
                f"statement: {statement[:60]!r}"
            )
    if not configuration.nodes:
        raise _dsc_error(f"Configuration '{configuration.name}' has no Node block.")
    return configuration


def _dsc_resources(
    body: str, configuration: DscConfiguration
) -> list[tuple[str, str, dict[str, Any]]]:
    resources = []
    for statement in split_top(body, ";\n"):
        match = re.match(r"^([\w]+)\s+([\w.-]+|'[^']*'|\"[^\"]*\")\s*\{(.*)\}$", statement, re.S)
        if match is None:
            raise _dsc_error(f"Cannot read DSC resource block {statement[:60]!r}.")
        kind, name = match.group(1), match.group(2).strip("'\"")
        if kind.lower() not in _BUILTIN_DSC_RESOURCES and not configuration.modules:
            raise _dsc_error(
                f"Undefined DSC resource '{kind}'. Use Import-DSCResource to import the resource."
            )
        properties: dict[str, Any] = {}
        for entry in split_top(match.group(3), ";\n"):
            key, sep, raw = entry.partition("=")
            if not sep:
                raise _dsc_error(f"Missing '=' in DSC resource property {entry[:40]!r}.")
            properties[key.strip()] = _dsc_value(raw.strip())
        if kind.lower() not in _BUILTIN_DSC_RESOURCES:
            custom_modules = [
                m for m in configuration.modules if m.lower() not in _BUILTIN_DSC_MODULES
            ]
            properties.setdefault("ModuleName", (custom_modules or ["CustomResources"])[-1])
        resources.append((kind, name, properties))
    return resources


def _dsc_value(raw: str) -> Any:
    if raw.lower() in ("$true", "$false"):
        return raw.lower() == "$true"
    if raw.startswith("@(") and raw.endswith(")"):
        return [_dsc_value(p) for p in split_top(raw[2:-1], ",")]
    value = parse_value_token(raw)
    if isinstance(value, list):
        return [v if isinstance(v, (str, int, float)) else str(v) for v in value]
    if isinstance(value, (str, int, float)):
        return value
    return str(getattr(value, "text", raw))


def render_mof(
    configuration: str, node: str, resources: list[tuple[str, str, dict[str, Any]]]
) -> str:
    """A MOF document shaped like the ones ``Configuration`` writes in PowerShell 5.1."""
    stamp = _dt.datetime.now().strftime("%m/%d/%Y %H:%M:%S")
    lines = [
        "/*",
        f"@TargetNode='{node}'",
        "@GeneratedBy=Administrator",
        f"@GenerationDate={stamp}",
        f"@GenerationHost={COMPUTER_NAME}",
        "*/",
        "",
    ]
    for index, (kind, name, properties) in enumerate(resources, start=1):
        class_name, module = _BUILTIN_DSC_RESOURCES.get(kind.lower(), (kind, ""))
        if not module:
            module = properties.pop("ModuleName", None) or "CustomResources"
        lines.append(f"instance of {class_name} as ${class_name}{index}ref")
        lines.append("{")
        lines.append(f'ResourceID = "[{kind}]{name}";')
        for key, value in properties.items():
            if isinstance(value, bool):
                text = "True" if value else "False"
                lines.append(f" {key} = {text};")
            elif isinstance(value, list):
                items = ", ".join(f'"{v}"' for v in value)
                lines.append(f" {key} = {{{items}}};")
            else:
                escaped = str(value).replace("\\", "\\\\").replace('"', '\\"')
                lines.append(f' {key} = "{escaped}";')
        lines.append(f' SourceInfo = "::{index}::9::{kind}";')
        lines.append(f' ModuleName = "{module}";')
        lines.append(' ModuleVersion = "1.0";')
        lines.append(f' ConfigurationName = "{configuration}";')
        lines.append("};")
    lines += [
        "instance of OMI_ConfigurationDocument",
        "{",
        ' Version="2.0.0";',
        ' MinimumCompatibleVersion = "1.0.0";',
        ' CompatibleVersionAdditionalProperties= {"Omi_BaseResource:ConfigurationName"};',
        ' Author="Administrator";',
        f' GenerationDate="{stamp}";',
        f' GenerationHost="{COMPUTER_NAME}";',
        f' Name="{configuration}";',
        "};",
        "",
    ]
    return "\n".join(lines)


class _Return(Exception):  # control flow for the `return` keyword, not an error
    pass


def _parameter_names(text: str) -> list[str]:
    """``$a, [int]$b = 2`` → ``['a', 'b']`` (types and defaults are not simulated)."""
    return [
        m.group(1)
        for m in re.finditer(r"\$([A-Za-z_]\w*)", text)
        if not text[: m.start()].rstrip().endswith("=")
    ]


def _service_in_state(service: DemoObject, resource: dict[str, str]) -> bool:
    state = resource.get("state")
    startup = resource.get("startuptype")
    return (state is None or str(service.get("Status")).lower() == state.lower()) and (
        startup is None or str(service.get("StartType")).lower() == startup.lower()
    )


def _resource_kind(resource: dict[str, str], resource_id: str) -> str:
    """``windowsfeature``, ``file`` or the MOF class: compiled MOFs name the CIM class
    (``MSFT_RoleResource``), the ResourceID keeps the DSC resource name (``[WindowsFeature]x``)."""
    class_name = resource["class"].lower()
    if class_name == "msft_roleresource" or resource_id.lower().startswith("[windowsfeature]"):
        return "windowsfeature"
    if class_name == "msft_filedirectoryconfiguration" or resource_id.lower().startswith("[file]"):
        return "file"
    if class_name == "msft_serviceresource" or resource_id.lower().startswith("[service]"):
        return "service"
    return class_name


def _not_found(ctx: HandlerContext, name: str) -> TerminatingError:
    ctx.command = name
    return unknown_command_error(name)


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, list):
        return value
    return [value]


def compare_add(current: Any, value: Any) -> Any:
    if current is None:
        return value
    if isinstance(current, list):
        return current + (value if isinstance(value, list) else [value])
    if isinstance(current, str):
        return current + to_text(value)
    return current + value


def get_member(value: Any, name: str) -> Any:
    """``$x.Name`` for demo objects, hashtables, strings, lists, dates and psrpcore objects."""
    lowered = name.lower()
    if isinstance(value, DemoObject):
        if value.has(name):
            return value.get(name)
        if lowered == "pstypenames":
            return list(value.type_names)
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            if str(key).lower() == lowered:
                return item
        if lowered == "count":
            return len(value)
        if lowered == "keys":
            return list(value.keys())
        if lowered == "values":
            return list(value.values())
        return None
    if isinstance(value, list):
        if lowered in ("count", "length"):
            return len(value)
        return [get_member(v, name) for v in value]
    if isinstance(value, str):
        return len(value) if lowered == "length" else None
    if isinstance(value, _dt.datetime):
        attributes = {
            "year": value.year,
            "month": value.month,
            "day": value.day,
            "hour": value.hour,
            "minute": value.minute,
            "second": value.second,
            "dayofweek": value.strftime("%A"),
            "date": value.replace(hour=0, minute=0, second=0, microsecond=0),
        }
        return attributes.get(lowered)
    if isinstance(value, _dt.timedelta):
        seconds = value.total_seconds()
        attributes = {
            "totalseconds": seconds,
            "totalminutes": seconds / 60,
            "totalhours": seconds / 3600,
            "totaldays": seconds / 86400,
            "days": value.days,
            "hours": int(seconds // 3600) % 24,
            "minutes": int(seconds // 60) % 60,
        }
        return attributes.get(lowered)
    if isinstance(value, PSVersion):
        parts = str(value).split(".")
        keys = ["major", "minor", "build", "revision"]
        return (
            int(parts[keys.index(lowered)])
            if lowered in keys and keys.index(lowered) < len(parts)
            else None
        )
    ps_object = getattr(value, "PSObject", None)
    if ps_object is not None:
        try:
            return value[name]
        except (KeyError, AttributeError, TypeError):
            return None
    return None


def _canonical_name(value: Any, name: str) -> str:
    if isinstance(value, DemoObject):
        for key in value.props:
            if key.lower() == name.lower():
                return key
    return name


def _hash_get(table: dict[str, Any], *names: str) -> Any:
    for key, value in table.items():
        if key.lower() in names:
            return value
    return None


def _sort_key(value: Any) -> tuple[int, Any]:
    if value is None:
        return (0, 0)
    if isinstance(value, EnumValue):
        return (1, int(value))
    if isinstance(value, bool):
        return (1, int(value))
    if isinstance(value, (int, float)):
        return (1, value)
    if isinstance(value, _dt.datetime):
        return (2, _aware(value).timestamp())
    return (3, to_text(value).lower())


def _aware(value: _dt.datetime) -> _dt.datetime:
    return value if value.tzinfo else value.astimezone()


def _plain(value: Any) -> Any:
    if isinstance(value, DemoObject):
        return {k: _plain(v) for k, v in value.props.items()}
    if isinstance(value, EnumValue):
        return int(value)
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, _dt.datetime):
        return f"/Date({int(_aware(value).timestamp() * 1000)})/"
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(value).decode("ascii")
    return value


def _csv_lines(values: list[Any], type_information: bool) -> list[str]:
    if not values:
        return []
    first = values[0]
    names = list(first.props) if isinstance(first, DemoObject) else ["Value"]
    buffer = io.StringIO()
    writer = csv.writer(buffer, quoting=csv.QUOTE_ALL, lineterminator="\n")
    lines = []
    if type_information and isinstance(first, DemoObject):
        lines.append(f"#TYPE {first.type_name}")
    writer.writerow(names)
    for value in values:
        writer.writerow(
            [
                to_text(get_member(value, n)) if isinstance(value, DemoObject) else to_text(value)
                for n in names
            ]
        )
    lines.extend(buffer.getvalue().splitlines())
    return lines


#: PowerShell's default table columns for the demo types (what Format-Table would pick)
DEFAULT_COLUMNS = {
    "System.ServiceProcess.ServiceController": ["Status", "Name", "DisplayName"],
    "System.Diagnostics.Process": ["Handles", "NPM", "PM", "WS", "CPU", "Id", "SI", "ProcessName"],
    "System.Diagnostics.Eventing.Reader.EventLogRecord": [
        "TimeCreated",
        "Id",
        "LevelDisplayName",
        "Message",
    ],
    "Microsoft.Windows.ServerManager.Commands.Feature": ["DisplayName", "Name", "InstallState"],
}


def render_table(values: list[Any], names: list[Any] | None) -> str:
    """A plain ``Format-Table`` rendering (the sim's ``Out-String``)."""
    if not values:
        return ""
    first = values[0]
    if names is None:
        if isinstance(first, DemoObject):
            names = DEFAULT_COLUMNS.get(first.type_name) or list(first.props)[:6]
        else:
            return "\n".join(to_text(v) for v in values)
    columns = [str(n) for n in names]
    rows = [[to_text(get_member(v, c)) for c in columns] for v in values]
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(columns)]
    lines = [
        "",
        " ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip(),
        " ".join(
            "-" * len(c) + " " * (w - len(c)) for c, w in zip(columns, widths, strict=True)
        ).rstrip(),
    ]
    lines.extend(
        " ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )
    return "\n".join(lines) + "\n"


def _ps_version_table() -> PSDict:
    table = PSDict()
    table.PSObject.type_names = [
        "System.Management.Automation.PSVersionHashTable",
        "System.Collections.Hashtable",
        "System.Object",
    ]
    for key, value in PS_VERSION_TABLE.items():
        if key in (
            "PSVersion",
            "BuildVersion",
            "CLRVersion",
            "WSManStackVersion",
            "PSRemotingProtocolVersion",
            "SerializationVersion",
        ):
            table[key] = PSVersion(str(value))
        elif key == "PSCompatibleVersions":
            table[key] = [PSVersion(v) for v in value]
        else:
            table[key] = value
    return table


def _dotnet_to_strftime(fmt: str) -> str:
    for dotnet, python in (
        ("yyyy", "%Y"),
        ("MM", "%m"),
        ("dd", "%d"),
        ("HH", "%H"),
        ("mm", "%M"),
        ("ss", "%S"),
    ):
        fmt = fmt.replace(dotnet, python)
    return fmt


__all__ = ["DEMO_COMMANDS", "DemoObject", "DemoShell", "EnumValue", "get_member"]
