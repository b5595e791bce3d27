"""Default DataFrame columns judged by PowerShell's own ``Format-Table`` (PowerShell 7.6).

For every type hvmagic ships a view for and PowerShell 7.6 formats as a table, PowerShell builds
an object of that type (``Deserialized.*`` where the live type only exists on Windows), the
object crosses an hvmagic session on ``pwsh -s``, and the frame's columns must be the headers
PowerShell's ``Format-Table`` prints for the very same object, in the same run. Real objects
(processes, modules, commands, ``$PSVersionTable``, ``Select-Object`` output) are judged the
same way, with values where hvmagic keeps PowerShell's text.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest
from pandas.io.formats.printing import pprint_thing

from hvmagic.clixml.values import PSVersion
from hvmagic.recording import RecordingSession, ReplaySession
from hvmagic.session import Result
from hvmagic.views import VIEWS, VIEWS_7

#: types judged against the view PowerShell uses on Windows: on Unix, PowerShell 7 puts a
#: ``childrenWithUnixStat`` view first (``#if UNIX`` in FileSystem_format_ps1xml.cs), so the
#: judge asks for the Windows one, ``children``, by name
_WINDOWS_VIEW = {"System.IO.FileInfo": "children", "System.IO.DirectoryInfo": "children"}


def _dash_runs(line: str) -> list[tuple[int, int]]:
    runs: list[tuple[int, int]] = []
    start = None
    for position, char in enumerate(line + " "):
        if char == "-" and start is None:
            start = position
        elif char != "-" and start is not None:
            runs.append((start, position))
            start = None
    return runs


def parse_table(text: str) -> tuple[list[str], list[list[str]]]:
    """Headers and cells of the first table in ``Format-Table | Out-String`` text.

    PowerShell underlines each label with dashes; a left-aligned column's text starts at its
    dashes, a right-aligned one's ends at them, and one blank separates columns. So the
    boundary between two columns is the rightmost position, between their dashes, that is blank
    in every line of the table (text columns hold spaces, numbers do not)."""
    lines = text.splitlines()
    for index, line in enumerate(lines):
        if index and line.strip() and set(line) <= {"-", " "}:
            break
    else:
        raise AssertionError(f"no table in PowerShell's output:\n{text}")
    runs = _dash_runs(line)
    body = [lines[index - 1]]
    for row in lines[index + 1:]:
        if not row.strip():
            break
        body.append(row)

    def blank(position: int) -> bool:
        return all(position >= len(row) or row[position] == " " for row in body)

    cuts = [0]
    for (_, end), (start, _) in itertools.pairwise(runs):
        cut = next((p for p in range(start - 1, end - 1, -1) if blank(p)), end)
        cuts.append(cut)
    cuts.append(10**6)
    cells = [[row[a:b].strip() for a, b in itertools.pairwise(cuts)] for row in body]
    return cells[0], cells[1:]


def table_headers(text: str) -> list[str]:
    return parse_table(text)[0]


def table_rows(text: str) -> list[list[str]]:
    return parse_table(text)[1]


def same_header(ours: str, theirs: str) -> bool:
    """Equal, or PowerShell cut the text to its column's width (``Description…``, ``…87``)."""
    return (ours == theirs or (theirs.endswith("…") and ours.startswith(theirs[:-1]))
            or (theirs.startswith("…") and ours.endswith(theirs[1:])))


def _powershell_type(name: str) -> str:
    if name.lower().startswith(("win32_", "msft_")):
        return f"Microsoft.Management.Infrastructure.CimInstance#root/cimv2/{name}"
    return name


BUILD_SCRIPT = r"""
$formats = @{}
foreach ($data in Get-FormatData -PowerShellVersion 7.6) {
    foreach ($typeName in $data.TypeNames) {
        $formats[$typeName] = @($formats[$typeName]) + @($data.FormatViewDefinition) |
            Where-Object { $_ }
    }
}
foreach ($name in $Names) {
    $type = $Types[$name]
    $table = @($formats[$type] |
        Where-Object { $_.Control -is [System.Management.Automation.TableControl] })
    $selected = @((Get-TypeData -TypeName $type).DefaultDisplayPropertySet.ReferencedProperties)
    $props = [ordered]@{ Probe = 1 }
    if ($table) {
        foreach ($column in $table[0].Control.Rows[0].Columns) {
            $entry = $column.DisplayEntry
            if ($entry.ValueType -eq 'Property') { $props[$entry.Value] = 'x' }
        }
        $chain = "Deserialized.$type", 'Deserialized.System.Object'
    } elseif ($selected) {
        # no table view: Format-Table shows the DefaultDisplayPropertySet (types.ps1xml), which
        # PowerShell attaches by the type's own name
        foreach ($property in $selected) { $props[$property] = 'x' }
        $chain = $type, 'System.Object'
    } else { continue }
    $object = [pscustomobject]$props
    $object.PSTypeNames.Clear()
    foreach ($typeName in $chain) { $object.PSTypeNames.Add($typeName) }
    $format = @{}
    if ($Views[$name]) { $format.View = $Views[$name] }
    $text = $object | Format-Table @format | Out-String -Width 4096
    [pscustomobject]@{ Name = $name; Text = $text }
    $object
}
"""


def test_default_columns_are_powershells_format_table_headers(
    shared_pwsh_session: Any,
) -> None:
    session = shared_pwsh_session
    assert session.ps_version is not None and session.ps_version.major == 7
    names = sorted({v.type_name for v in [*VIEWS.values(), *VIEWS_7.values()]})
    result = session.run(BUILD_SCRIPT, {
        "Names": names,
        "Types": {n: _powershell_type(n) for n in names},
        "Views": _WINDOWS_VIEW,
    })
    assert not result.errors
    judged = result.output[0::2]
    mismatches = {}
    for verdict, sent in zip(judged, result.output[1::2], strict=True):
        name = verdict["Name"]
        theirs = table_headers(verdict["Text"])
        # each object alone, through the same Result.frame() a user calls
        one = Result(output=[sent], ps_version=result.ps_version)
        ours = list(one.frame(labels=True).columns)
        if len(ours) != len(theirs) or not all(map(same_header, ours, theirs)):
            mismatches[name] = (ours, theirs)
    assert mismatches == {}
    judged_names = {v["Name"] for v in judged}
    # the judge cannot pass by judging nothing: the daily types are among those judged
    assert {"System.Diagnostics.Process", "System.ServiceProcess.ServiceController",
            "System.Management.Automation.PSModuleInfo", "ModuleInfoGrouping",
            "System.IO.FileInfo", "Win32_OperatingSystem", "Win32_BIOS",
            "System.Security.Cryptography.X509Certificates.X509Certificate2"} <= judged_names
    assert len(judged_names) >= 50


def test_process_columns_and_values_are_powershell_7s(shared_pwsh_session: Any) -> None:
    # was: Handles NPM(K) PM(K) WS(K) (Windows PowerShell 5.1's view) from a 7.6 guest
    session = shared_pwsh_session
    result = session.run("$global:viewsProcess = Get-Process -Id $PID; $viewsProcess")
    text = session.run("$viewsProcess | Format-Table | Out-String -Width 500").output[0]
    frame = result.frame(labels=True)
    assert list(frame.columns) == table_headers(text)
    assert list(frame.columns)[:3] == ["NPM(K)", "PM(M)", "WS(M)"]
    row = dict(zip(table_headers(text), table_rows(text)[0], strict=True))
    ours = frame.iloc[0]
    for header in ("Id", "SI", "ProcessName", "NPM(K)"):
        assert same_header(str(ours[header]), row[header]), header
    for header in ("PM(M)", "WS(M)"):
        # the view prints "{0:N2}" -f [float]($_.WS / 1MB): the shown number has its digits
        assert f"{ours[header]:,.2f}" == row[header]


def test_module_columns_are_powershell_7s(shared_pwsh_session: Any) -> None:
    # was: no PreRelease, and no PSEdition for Get-Module -ListAvailable
    session = shared_pwsh_session
    for script in ("Get-Module Microsoft.PowerShell.Utility",
                   "Get-Module -ListAvailable Microsoft.PowerShell.Archive, "
                   "Microsoft.PowerShell.Utility"):
        frame = session.run(script).frame(labels=True)
        text = session.run(f"{script} | Format-Table | Out-String -Width 500").output[0]
        headers = table_headers(text)
        assert list(frame.columns) == headers
        rows = [dict(zip(headers, cells, strict=True)) for cells in table_rows(text)]
        assert frame["Name"].tolist() == [r["Name"] for r in rows]
        assert [str(v) for v in frame["Version"]] == [r["Version"] for r in rows]
        if "PSEdition" in headers:
            assert frame["PSEdition"].tolist() == [r["PSEdition"] for r in rows]
        for commands, theirs in zip(frame["ExportedCommands"], rows, strict=True):
            assert commands and theirs["ExportedCommands"].startswith("{" + commands[0])


def test_command_columns_and_alias_names(shared_pwsh_session: Any) -> None:
    session = shared_pwsh_session
    script = "Get-Command Get-Item, gci, prompt"
    frame = session.run(script).frame(labels=True)
    text = session.run(f"{script} | Format-Table | Out-String -Width 500").output[0]
    assert list(frame.columns) == table_headers(text)
    # an alias shows as "gci -> Get-ChildItem", as the view's script block writes it
    assert frame["Name"].tolist() == [row[1] for row in table_rows(text)]


SELECTED_SCRIPT = r"""
$os = [pscustomobject]@{ SystemDirectory = '/usr'; Organization = ''; BuildNumber = '1';
    RegisteredUser = 'u'; SerialNumber = 's'; Version = '10.0'; Caption = 'Linux';
    LastBootUpTime = [datetime]'2026-01-02T03:04:05' }
$os.PSTypeNames.Clear()
'Microsoft.Management.Infrastructure.CimInstance#root/cimv2/Win32_OperatingSystem',
    'Microsoft.Management.Infrastructure.CimInstance', 'System.Object' |
    ForEach-Object { $os.PSTypeNames.Add($_) }
$selected = $os | Select-Object Caption, Version, LastBootUpTime
# Windows PowerShell 5.1 names Select-Object output of a CIM instance after its class
$wmiSelected = $os | Select-Object Caption, @{ n = 'FreeGB'; e = { 12.5 } }, Version
$wmiSelected.PSTypeNames.Clear()
'Selected.Microsoft.Management.Infrastructure.CimInstance#root/cimv2/Win32_OperatingSystem',
    'System.Management.Automation.PSCustomObject', 'System.Object' |
    ForEach-Object { $wmiSelected.PSTypeNames.Add($_) }
$process = Get-Process -Id $PID | Select-Object Id, @{ n = 'WSMB'; e = { $_.WS / 1MB } }, Name
$global:viewsSelected = @{ os = $os; selected = $selected; wmi = $wmiSelected; process = $process }
"""


@pytest.mark.parametrize("which", ["os", "selected", "wmi", "process"])
def test_select_object_output_shows_the_selected_properties(
    shared_pwsh_session: Any, which: str
) -> None:
    # was: Selected.…CimInstance#root/cimv2/Win32_OperatingSystem took the class's view
    session = shared_pwsh_session
    session.run(SELECTED_SCRIPT)
    result = session.run("$viewsSelected[$Which]", {"Which": which})
    text = session.run("$viewsSelected[$Which] | Format-Table | Out-String -Width 500",
                       {"Which": which}).output[0]
    assert list(result.frame().columns) == table_headers(text)
    if which != "os":
        assert result.output[0].type_names[0].startswith("Selected.")


DICTIONARIES = [
    "$PSVersionTable",
    "[ordered]@{ b = 1; a = [version]'5.1.20348'; c = $null; d = 'text' }",
    "@{ one = 1; two = 'zwei' }",
]


def test_dictionaries_are_name_value_rows(shared_pwsh_session: Any) -> None:
    # was: one wide row with a column per key. The judge is PowerShell's own OutOfProc client
    # (a job, one for all three): it receives each dictionary deserialized and formats it
    session = shared_pwsh_session
    texts = session.run(
        "$received = @(Start-Job { " + "; ".join(DICTIONARIES) + " } | "
        "Receive-Job -Wait -AutoRemoveJob)\n"
        "foreach ($one in $received) { $one | Format-Table | Out-String -Width 500 }").output
    assert len(texts) == len(DICTIONARIES)
    for script, text in zip(DICTIONARIES, texts, strict=True):
        frame = session.run(script).frame()
        assert list(frame.columns) == table_headers(text) == ["Name", "Value"]
        # each cell as the table prints it (pandas' own cell formatting)
        ours = [(name, "" if value is None else pprint_thing(value))
                for name, value in zip(frame["Name"], frame["Value"], strict=True)]
        theirs = [(name, value) for name, value in table_rows(text)]
        if "[ordered]" not in script:
            # a Hashtable's order is its hash buckets', and .NET seeds string hashes per
            # process: the job's copy and this session's need not agree on it
            ours, theirs = sorted(ours), sorted(theirs)
        assert [name for name, _ in ours] == [name for name, _ in theirs]
        for (name, value), (_, text_value) in zip(ours, theirs, strict=True):
            if text_value.startswith("{"):  # a collection: PowerShell lists the first items
                first = frame["Value"][frame["Name"].tolist().index(name)][0]
                assert text_value.startswith("{" + pprint_thing(first)), name
            else:
                assert value == text_value, name


def test_session_reads_the_guests_version_without_asking(shared_pwsh_session: Any) -> None:
    session = shared_pwsh_session
    theirs = session.run("$PSVersionTable.PSVersion.ToString()").output[0]
    assert str(session.ps_version) == theirs
    result = session.run("1")
    assert result.ps_version == session.ps_version == PSVersion.parse(theirs)


def test_replay_shows_the_recorded_guests_columns(shared_pwsh_session: Any,
                                                 tmp_path: Path) -> None:
    # was: a replay had no version, so a 7.6 recording replayed with 5.1's columns
    pwsh_session = shared_pwsh_session
    path = tmp_path / "procs.hvrec.json"
    recording = RecordingSession(pwsh_session, path)  # not closed: the session is shared
    live = recording.run("Get-Process -Id $PID")
    replayed = ReplaySession(path).run("Get-Process -Id $PID")
    assert replayed.ps_version == pwsh_session.ps_version
    assert list(replayed.frame(labels=True).columns) == list(live.frame(labels=True).columns)
    assert replayed.frame(labels=True).to_html() == live.frame(labels=True).to_html()
    assert replayed.frame().attrs == live.frame().attrs


def test_bound_frame_has_property_names_and_raw_values(shared_pwsh_session: Any) -> None:
    # was: -o procs bound WS(K)/CPU(s) columns; procs.sort_values("CPU") raised KeyError
    session = shared_pwsh_session
    result = session.run("$global:viewsRaw = Get-Process -Id $PID; $viewsRaw")
    theirs = session.run("$viewsRaw | Select-Object NPM, PM, WS, CPU, Id, SI, ProcessName"
                         " | ConvertTo-Json -Compress").output[0]
    text = session.run("$viewsRaw | Format-Table | Out-String -Width 500").output[0]
    frame = result.frame()
    expected = json.loads(theirs)
    # the default view's order, each column under the property its script block reads
    assert list(frame.columns) == list(expected)
    row = frame.iloc[0]
    for name in ("NPM", "PM", "WS", "Id", "SI", "ProcessName"):
        assert row[name] == expected[name], name
    assert 0 <= row["CPU"] <= expected["CPU"]  # seconds, read before PowerShell's second look
    # PowerShell's headers stay reachable, in the same order
    labels = frame.attrs["hvmagic_labels"]
    assert [labels.get(c, c) for c in frame.columns] == table_headers(text)
    assert frame.sort_values("CPU")["Id"].tolist() == [row["Id"]]


def test_notebook_binds_names_and_shows_powershells_headers(pwsh_session: Any) -> None:
    from IPython.core.interactiveshell import InteractiveShell
    from IPython.utils.capture import capture_output

    shell = InteractiveShell.instance()
    shell.extension_manager.load_extension("hvmagic")
    try:
        # its own session: unloading the extension closes every session it knows
        shell.user_ns["viewsSession"] = pwsh_session
        with capture_output() as captured:
            shell.run_line_magic("vmconnect", "viewsjudge --session viewsSession")
            shell.run_line_magic("vmps", "-o procs Get-Process -Id $PID")
        procs = shell.user_ns["procs"]
        assert list(procs.columns)[:4] == ["NPM", "PM", "WS", "CPU"]
        shown = "".join(o.data.get("text/html", "") for o in captured.outputs)
        for header in ("NPM(K)", "PM(M)", "WS(M)", "CPU(s)"):
            assert f"<th>{header}</th>" in shown
        assert "<th>WS</th>" not in shown
    finally:
        shell.extension_manager.unload_extension("hvmagic")
        for name in ("procs", "viewsSession", "_vmps_result"):
            shell.user_ns.pop(name, None)


ROUNDING_SCRIPT = r"""
$global:viewsRounding = foreach ($i in 0..7) {
    $o = [pscustomobject]@{ NPM = 512 * (2 * $i + 1); PM = 131072 * (2 * $i + 1);
        WS = 4096 * (37 * $i + 1)
        CPU = @(0.125, 0.375, 2.675, 1.005, 0.625, 1e-9, 12345.675, 0)[$i]
        Id = $i; SI = 1; ProcessName = "p$i" }
    $o.PSTypeNames.Clear()
    'Deserialized.System.Diagnostics.Process', 'Deserialized.System.Object' |
        ForEach-Object { $o.PSTypeNames.Add($_) }
    $o
}
$global:viewsRounding
"""


def test_shown_numbers_are_the_digits_powershell_prints(shared_pwsh_session: Any) -> None:
    # ties (0.125 MB, 0.375 MB, 2.5 KB) and singles ([float]2.675 is 2.67499995…)
    session = shared_pwsh_session
    frame = session.run(ROUNDING_SCRIPT).frame(labels=True)
    text = session.run("$viewsRounding | Format-Table | Out-String -Width 500").output[0]
    headers, rows = parse_table(text)
    assert list(frame.columns) == headers
    for ours, theirs in zip(frame.itertuples(index=False), rows, strict=True):
        shown = [f"{v:,.2f}" if isinstance(v, float) else str(v) for v in ours]
        assert shown == theirs
