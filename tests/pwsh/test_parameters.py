"""Values both ways: Python parameters as PowerShell sees them, PowerShell values in Python.

Each direction is one run. PowerShell describes every value itself in the same run
(``GetType().FullName``, ``ToString('o')``, ``Ticks``, ``[int]$enum`` …) and the test compares
that description with the Python value sent or received — no value typed twice.
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import enum
import pickle
import uuid
from typing import Any

import numpy as np
import pytest

from hvmagic.clixml.values import (
    PSChar,
    PSCredential,
    PSDateTime,
    PSEnum,
    PSObject,
    PSScriptBlock,
    PSTimeSpan,
    PSUri,
    PSVersion,
    PSXmlDocument,
    SecureString,
)
from hvmagic.frames import to_dataframe


class Colour(enum.Enum):
    RED = 3


_EPOCH = dt.datetime(1, 1, 1)


def _ticks(value: dt.datetime | dt.timedelta, remainder: int | None = None) -> int:
    """.NET ticks (100 ns) of a Python value, counting hvmagic's sub-microsecond remainder."""
    if remainder is None:
        remainder = getattr(value, "tick_remainder", 0)
    delta = value.replace(tzinfo=None) - _EPOCH if isinstance(value, dt.datetime) else value
    micro = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    return micro * 10 + remainder


_TICKED = PSDateTime(2024, 1, 2, 3, 4, 5, 123456, tzinfo=dt.timezone.utc)
_TICKED.tick_remainder = 7  # the 100-ns digit Python's datetime cannot hold
_TICKED_SPAN = PSTimeSpan(days=2, microseconds=5)
_TICKED_SPAN.tick_remainder = 3

# name → (Python value, the .NET type hvmagic documents it arrives as)
PARAMETERS: dict[str, tuple[Any, str]] = {
    "none": (None, "null"),
    "flag": (True, "System.Boolean"),
    "i32": (-5, "System.Int32"),
    "i64": (2**40, "System.Int64"),
    "u64": (2**63, "System.UInt64"),
    "dbl": (1.5, "System.Double"),
    "dec": (decimal.Decimal("1.10"), "System.Decimal"),
    "guid": (uuid.UUID("12345678-1234-5678-1234-567812345678"), "System.Guid"),
    "word": ("x", "System.String"),
    "hostile": ("'; Remove-Item -Recurse / #$(whoami)`\"", "System.String"),
    "chr": (PSChar("é"), "System.Char"),
    "uri": (PSUri("https://example.com/a?b=1"), "System.Uri"),
    "xml": (PSXmlDocument("<a x=\"1\"><b>t</b></a>"), "System.Xml.XmlDocument"),
    # PowerShell never revives a script block from CLIXML (a safety rule of its deserializer)
    "block": (PSScriptBlock("1 + 1"), "System.String"),
    "raw": (b"\x00\x01\xff", "System.Byte[]"),
    "rawarray": (bytearray(b"ab"), "System.Byte[]"),
    "naive": (dt.datetime(2024, 1, 2, 3, 4, 5, 678901), "System.DateTime"),
    "utc": (dt.datetime(2024, 1, 2, 3, 4, 5, 678901, tzinfo=dt.timezone.utc), "System.DateTime"),
    "offset": (dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.timezone(dt.timedelta(hours=2))),
               "System.DateTime"),
    "day": (dt.date(2024, 2, 29), "System.DateTime"),
    "span": (dt.timedelta(days=1, seconds=2, microseconds=3), "System.TimeSpan"),
    "ticked": (_TICKED, "System.DateTime"),
    "tickedspan": (_TICKED_SPAN, "System.TimeSpan"),
    "ver": (PSVersion(1, 2, 3, 4), "System.Version"),
    "items": ([1, "a", None], "System.Collections.ArrayList"),
    "pair": ((1, 2), "System.Collections.ArrayList"),
    "table": ({"a": 1, "b": [2]}, "System.Collections.Hashtable"),
    "custom": (PSObject({"A": 1}, ["My.Type"]), "System.Management.Automation.PSCustomObject"),
    "psenum": (PSEnum(2, "Two"), "System.Int32"),
    "pyenum": (Colour.RED, "System.Int32"),
    "npint": (np.int64(5), "System.Int32"),
    "npfloat": (np.float32(0.5), "System.Double"),
}

DESCRIBE = r"""
foreach ($n in $names_) {
    $v = Get-Variable -Name $n -ValueOnly
    $type = if ($null -eq $v) { 'null' } else { $v.GetType().FullName }
    $text = if ($null -eq $v) { '' }
        elseif ($v -is [datetime]) { "$($v.Kind) $($v.Ticks) $($v.ToUniversalTime().Ticks)" }
        elseif ($v -is [timespan]) { "$($v.Ticks)" }
        elseif ($v -is [xml]) { $v.OuterXml }
        elseif ($v -is [byte[]]) { [Convert]::ToBase64String($v) }
        elseif ($v -is [decimal]) { $v.ToString([cultureinfo]::InvariantCulture) }
        elseif ($v -is [double]) { $v.ToString('R', [cultureinfo]::InvariantCulture) }
        elseif ($v -is [Collections.IDictionary]) {
            ($v.Keys | Sort-Object | ForEach-Object { "$_=$($v[$_])" }) -join ';' }
        elseif ($v -is [Collections.IList]) {
            ($v | ForEach-Object { if ($null -eq $_) { '<null>' } else { "$_" } }) -join ';' }
        elseif ($type -eq 'System.Management.Automation.PSCustomObject') {
            "$($v.PSObject.TypeNames[0]) A=$($v.A)" }
        else { "$v" }
    "$n|$type|$text"
}
"""


def _expected_text(value: Any) -> str:
    """What DESCRIBE prints for a value that arrived intact."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, dt.datetime):
        kind = "Unspecified" if value.tzinfo is None else (
            "Utc" if value.utcoffset() == dt.timedelta(0) else "Local")
        utc = value if value.tzinfo is None else value.astimezone(dt.timezone.utc)
        local = value if kind != "Local" else value.astimezone()  # the guest's zone is ours
        return f"{kind} {_ticks(local)} {_ticks(utc) if value.tzinfo else '*'}"
    if isinstance(value, dt.date):
        return _expected_text(dt.datetime(value.year, value.month, value.day))
    if isinstance(value, dt.timedelta):
        return str(_ticks(value))
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, float | np.floating):
        return repr(float(value))
    if isinstance(value, PSVersion):
        return str(value)
    if isinstance(value, dict):
        return ";".join(f"{k}={' '.join(map(str, v)) if isinstance(v, list) else v}"
                        for k, v in sorted(value.items()))
    if isinstance(value, (list, tuple)):
        return ";".join("<null>" if v is None else str(v) for v in value)
    if isinstance(value, PSObject):
        return f"Deserialized.{value.type_names[0]} A={value['A']}"
    if isinstance(value, enum.Enum):
        return str(value.value)
    if isinstance(value, PSEnum):
        return str(int(value))
    return str(value)


def test_every_accepted_python_type_arrives_as_documented(shared_pwsh_session: Any) -> None:
    values = {name: value for name, (value, _) in PARAMETERS.items()}
    result = shared_pwsh_session.run(DESCRIBE, {**values, "names_": list(values)})
    assert result.errors == []
    seen = {line.split("|", 2)[0]: line.split("|", 2)[1:] for line in result.output}
    for name, (value, dotnet_type) in PARAMETERS.items():
        reported_type, text = seen[name]
        assert reported_type == dotnet_type, name
        expected = _expected_text(value)
        if expected.endswith(" *"):  # a naive datetime has no UTC instant of its own
            assert text.rsplit(" ", 1)[0] == expected[:-2], name
        else:
            assert text == expected, name


def test_secrets_decrypt_inside_powershell_and_stay_masked(pwsh_session: Any) -> None:
    secret = "pä$$ wörd 🙂"
    credential = PSCredential("CORP\\admin", "s3cr€t 'quoted'")
    result = pwsh_session.run(
        "$secret.GetType().FullName; [Net.NetworkCredential]::new('', $secret).Password; "
        "$cred.GetType().FullName; $cred.UserName; $cred.GetNetworkCredential().Password; "
        "$cred; $secret",
        {"secret": SecureString(secret), "cred": credential},
    )
    out = result.output
    assert out[:5] == [
        "System.Security.SecureString", secret,
        "System.Management.Automation.PSCredential", "CORP\\admin", "s3cr€t 'quoted'",
    ]
    back_cred, back_secret = out[5], out[6]
    # what comes back reads like PowerShell's object and never shows the secret
    assert isinstance(back_cred, PSCredential) and isinstance(back_secret, SecureString)
    assert back_cred["UserName"] == back_cred.UserName == "CORP\\admin"
    assert isinstance(back_cred["Password"], SecureString)
    assert back_cred["Password"].reveal() == "s3cr€t 'quoted'"  # decrypted with the session key
    for shown in (repr(back_cred), str(back_cred), repr(back_secret), str(back_secret),
                  repr(result), to_dataframe([back_cred]).to_string(),
                  to_dataframe([{"s": back_secret}]).to_string()):
        assert "s3cr" not in shown and "wörd" not in shown
    for value in (back_cred, back_secret):
        with pytest.raises(TypeError):
            pickle.dumps(value)


RETURNED = r"""
$values = [ordered]@{
    utc = [datetime]::new(638397050456789019, 'Utc')
    local = [datetime]::new(638397050456789019, 'Local')
    unspecified = [datetime]::new(638397050456789019, 'Unspecified')
    offset = [datetimeoffset]::new(638397050456789019, [timespan]::FromHours(2))
    span = [timespan]::new(-12345678901)
    dec = [decimal]'79228162514264337593543950335'
    smalldec = [decimal]'-1.10'
    guid = [guid]'0f8fad5b-d9cb-469f-a165-70867728950e'
    ver = [version]'1.2.3.4'
    ver2 = [version]'10.0'
    uri = [uri]'https://example.com/a%20b?c=1'
    xml = [xml]'<a x="1"><b>t</b></a>'
    chr = [char]0x00e9
    raw = [byte[]](0, 1, 255)
    enum = [System.IO.FileAttributes]::Hidden
    flags = [System.IO.FileAttributes]'Hidden, System'
    table = @{ a = 1 }
    ordered = [ordered]@{ z = 1; a = 2; m = 3 }
    nested = [pscustomobject]@{ A = [pscustomobject]@{ B = 1 }; L = @(1, $null, 'x') }
    nulls = @(1, $null, 2)
    block = { 1 + 1 }
    secure = ConvertTo-SecureString 'p@ss' -AsPlainText -Force
}
foreach ($k in $values.Keys) {
    $v = $values[$k]
    $own = switch ($k) {
        { $v -is [datetime] } { "$($v.Kind) $($v.Ticks)"; break }
        'offset' { "$($v.UtcDateTime.Ticks) $($v.Offset.Ticks)"; break }
        'span' { "$($v.Ticks)"; break }
        { $v -is [decimal] } { $v.ToString([cultureinfo]::InvariantCulture); break }
        'xml' { $v.OuterXml; break }
        'raw' { [Convert]::ToBase64String($v); break }
        { $v -is [enum] } { "$([int]$v) $v"; break }
        'ordered' { $v.Keys -join ','; break }
        'nested' { "$($v.A.B) $($v.L.Count)"; break }
        'nulls' { "$($v.Count)"; break }
        default { "$v" }
    }
    $k; $own; if ($v -is [array]) { ,$v } else { $v }
}
"""


def test_every_clixml_type_comes_back_as_documented(shared_pwsh_session: Any) -> None:
    out = shared_pwsh_session.run(RETURNED).output
    got = {out[i]: (out[i + 1], out[i + 2]) for i in range(0, len(out), 3)}

    for name in ("utc", "local", "unspecified"):
        own, value = got[name]
        assert isinstance(value, PSDateTime)
        kind, ticks = own.split()
        assert value.tzinfo is None if kind == "Unspecified" else value.tzinfo is not None
        # the wall-clock ticks, the 7th fractional digit included
        assert _ticks(value.replace(tzinfo=None), value.tick_remainder) == int(ticks), name
    own, value = got["offset"]
    utc_ticks, offset_ticks = map(int, own.split())
    utc = value["UtcDateTime"]
    assert _ticks(utc.replace(tzinfo=None), utc.tick_remainder) == utc_ticks
    assert _ticks(value["Offset"]) == offset_ticks
    own, value = got["span"]
    assert isinstance(value, PSTimeSpan) and _ticks(value) == int(own)
    for name in ("dec", "smalldec"):
        own, value = got[name]
        assert isinstance(value, decimal.Decimal) and str(value) == own
    own, value = got["guid"]
    assert isinstance(value, uuid.UUID) and str(value) == own
    for name in ("ver", "ver2"):
        own, value = got[name]
        assert isinstance(value, PSVersion) and str(value) == own
    own, value = got["uri"]
    assert isinstance(value, PSUri) and value == own
    own, value = got["xml"]
    assert isinstance(value, PSXmlDocument) and value == own
    own, value = got["chr"]
    assert isinstance(value, PSChar) and value == own
    own, value = got["raw"]
    assert isinstance(value, bytes) and base64.b64encode(value).decode() == own
    for name in ("enum", "flags"):
        own, value = got[name]
        number, text = own.split(" ", 1)
        assert isinstance(value, PSEnum) and int(value) == int(number) and str(value) == text
        assert value.type_name == "System.IO.FileAttributes"
    own, value = got["table"]
    assert value == {"a": 1}
    own, value = got["ordered"]
    assert isinstance(value, dict) and ",".join(value) == own
    own, value = got["nested"]
    b, count = own.split()
    assert value["A"]["B"] == int(b) and len(value["L"]) == int(count)
    assert value["L"] == [1, None, "x"]
    own, value = got["nulls"]
    assert value == [1, None, 2] and len(value) == int(own)
    own, value = got["block"]
    assert isinstance(value, PSScriptBlock) and value == own
    own, value = got["secure"]
    assert isinstance(value, SecureString)
    assert own == "System.Security.SecureString"  # PowerShell's own text shows no secret
    assert "p@ss" not in repr(value) and "p@ss" not in str(value)
