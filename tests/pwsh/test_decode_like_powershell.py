"""hvmagic's decoder reads PowerShell's CLIXML as PowerShell's own deserializer does.

Found by the exploration (``test_exploration.py``): hvmagic listed an object's ``<Props>`` before
its ``<MS>`` members (PowerShell lists ``PSPath`` … before a file's ``Name``), and it dropped the
type names and ``ToString`` of an object whose base object is itself an object (the parts of
``Get-Help``'s answer). PowerShell serializes each object here (``ConvertTo-CliXml``, remoting's
depth 1) and says what its own ``ConvertFrom-CliXml`` makes of it; hvmagic's fast path and its
reference decoder must both agree.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from hvmagic.clixml import PSObject, loads, strip_deserialized
from hvmagic.clixml._compiled import same
from hvmagic.clixml.decode import _loads_expat
from tests.pwsh.conftest import AskPwsh

OBJECTS = {
    # a .NET object with adapted properties and members of its own (PSPath …, type data)
    "file": "Get-Item -LiteralPath $file",
    "drive": "Get-PSDrive -Name Temp",
    # PSObjects wrapping PSObjects (MamlCommandHelpInfo#details ...)
    "help": "function Get-Thing { <#\n.SYNOPSIS\nGets a thing.\n#>\n param([string] $Name) }\n"
            "Get-Help Get-Thing",
    "custom": "[pscustomobject]@{ B = 1; A = 'x' }"
              " | Add-Member -NotePropertyName C -NotePropertyValue 2 -PassThru",
}


def _describe(value: Any, depth: int = 0) -> Any:
    """Type names (Deserialized. removed), ToString and property names, recursively for
    nested objects: what the two sides are compared on."""
    if not isinstance(value, PSObject) or depth > 4:
        return None
    return {
        "types": [strip_deserialized(n) for n in value.type_names],
        "str": value.to_string or "",
        "props": [[name, _describe(item, depth + 1)] for name, item in value.items()],
    }


@pytest.fixture(scope="module")
def powershell_says(ask_pwsh: AskPwsh, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("decode")
    (folder / "file.txt").write_text("hello", encoding="utf-8")
    scripts = "; ".join(f"'{name}' = {{ {script} }}" for name, script in OBJECTS.items())
    script = (
        f"$file = '{folder / 'file.txt'}'\n"
        "function Describe([psobject] $Value, [int] $Depth) {\n"
        "  if ($null -eq $Value -or $Depth -gt 4 -or\n"
        "      $Value.PSObject.BaseObject -isnot [System.Management.Automation.PSCustomObject]) {\n"
        "    return $null }\n"
        "  [ordered]@{ types = @($Value.PSObject.TypeNames -replace '^(Deserialized\\.)+', '')\n"
        "    str = $Value.ToString()\n"
        "    props = @(foreach ($p in $Value.PSObject.Properties) {\n"
        "      , @($p.Name, (Describe $p.Value ($Depth + 1))) }) }\n"
        "}\n"
        f"$objects = [ordered]@{{ {scripts} }}\n"
        "$answer = [ordered]@{}\n"
        "foreach ($name in $objects.Keys) {\n"
        "  $block = $objects[$name]\n"
        "  $item = . $block\n"
        "  $xml = ConvertTo-CliXml -InputObject $item -Depth 1\n"
        "  $answer[$name] = [ordered]@{ xml = $xml\n"
        "    deserialized = Describe (ConvertFrom-CliXml -InputObject $xml) 0 }\n"
        "}\n"
        "$answer | ConvertTo-Json -Depth 30 -Compress"
    )
    return dict(json.loads(ask_pwsh(script)))


@pytest.mark.parametrize("name", list(OBJECTS))
def test_decoded_objects_read_as_powershells_own(
    powershell_says: dict[str, Any], name: str
) -> None:
    answer = powershell_says[name]
    fast = loads(answer["xml"])
    reference = _loads_expat(answer["xml"])
    assert len(fast) == len(reference) == 1
    assert same(fast[0], reference[0])  # the fast path decodes exactly as the reference does
    assert _mismatches(_describe(fast[0]), answer["deserialized"]) == []


def _mismatches(ours: Any, theirs: Any, where: str = "") -> list[str]:
    """Where hvmagic's description differs from PowerShell's. A nested value PowerShell turned
    back into a live .NET object (a PSCredential, a DirectoryInfo) has no description on its
    side: only its name and position are compared."""
    if theirs is None:
        return []
    if ours is None:
        return [f"{where}: not an object for hvmagic"]
    found = [f"{where}.{key}: {ours[key]!r} != {theirs[key]!r}"
             for key in ("types", "str") if ours[key] != theirs[key]]
    names = [name for name, _ in ours["props"]]
    if names != [name for name, _ in theirs["props"]]:
        return [*found, f"{where}: properties {names} != {[n for n, _ in theirs['props']]}"]
    for (name, mine), (_, other) in zip(ours["props"], theirs["props"], strict=True):
        found += _mismatches(mine, other, f"{where}.{name}")
    return found


def test_the_file_lists_its_own_members_first(powershell_says: dict[str, Any]) -> None:
    names = list(loads(powershell_says["file"]["xml"])[0])
    assert names.index("PSPath") < names.index("Name")
    assert Path(str(loads(powershell_says["file"]["xml"])[0]["Name"])).name == "file.txt"
