"""Live and recorded runs send the same values, and PowerShell receives the same .NET values.

A :class:`~hvmagic.recording.RecordingSession` writes a run's parameters with
:func:`hvmagic.clixml.dumps` before the live session sends them; both now use that one
encoder, so every parameter a live run accepts a recorded run accepts (a ``numpy.int64`` or a
``datetime.date`` used to raise ``EncodeError`` under ``HVMAGIC_RECORD``), and PowerShell
describes each value identically — its type and its own serialization of it — whichever way it
was sent. Values PowerShell's deserializer would refuse (it fails the whole message and never
answers, so the session was lost) are refused before sending, with the same error both ways.
Secrets anywhere in a value make the session exchange its key, reach the guest as
SecureStrings, and never reach the recording.
"""

from __future__ import annotations

import collections
import datetime as dt
import decimal
import enum
import hashlib
import json
import types
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from hvmagic.clixml import MAX_DEPTH, dumps
from hvmagic.clixml.values import (
    ProgressRecord,
    PSChar,
    PSCredential,
    PSEnum,
    PSObject,
    PSVersion,
    PSXmlDocument,
    SecureString,
)
from hvmagic.errors import EncodeError
from hvmagic.recording import RecordingSession, ReplaySession


class Colour(enum.Enum):
    RED = 3


def _nested(levels: int) -> Any:
    value: Any = 1
    for _ in range(levels - 1):
        value = [value]
    return value


# name → (value, the .NET type PowerShell reports for it)
VALUES: dict[str, tuple[Any, str]] = {
    "np_int": (np.int64(5), "System.Int32"),
    "np_big": (np.int64(2**40), "System.Int64"),
    "np_uint": (np.uint64(2**63), "System.UInt64"),
    "np_float": (np.float32(0.5), "System.Double"),
    "np_bool": (np.bool_(True), "System.Boolean"),
    "np_array": (np.array([1, 2, 3]), "System.Collections.ArrayList"),
    "pd_series": (pd.Series([1.5, 2.5]), "System.Collections.ArrayList"),
    "pd_stamp": (pd.Timestamp("2024-01-02 03:04:05.25", tz="UTC"), "System.DateTime"),
    "day": (dt.date(2024, 2, 29), "System.DateTime"),
    "stamp": (dt.datetime(2024, 1, 2, 3, 4, 5, 678901), "System.DateTime"),
    "span": (dt.timedelta(days=1, seconds=90), "System.TimeSpan"),
    "dec": (decimal.Decimal("-1.10"), "System.Decimal"),
    "guid": (uuid.UUID(int=7), "System.Guid"),
    "chr": (PSChar("é"), "System.Char"),
    "ver": (PSVersion(1, 2, 3), "System.Version"),
    "xml": (PSXmlDocument("<a><b>t</b></a>"), "System.Xml.XmlDocument"),
    "text": ("emoji 🙂 日本 _x0041_ \r\n", "System.String"),
    "pyenum": (Colour.RED, "System.Int32"),
    "psenum": (PSEnum(4, "Running", ["System.ServiceProcess.ServiceControllerStatus",
                                     "System.Enum", "System.ValueType", "System.Object"]),
               "System.Int32"),
    "set": ({"b", "a", "c"}, "System.Collections.ArrayList"),
    "frozen": (frozenset({3, 1, 2}), "System.Collections.ArrayList"),
    "mapping": (types.MappingProxyType({"k": 1}), "System.Collections.Hashtable"),
    "ordered": (collections.OrderedDict(z=1, a=2), "System.Collections.Hashtable"),
    "custom": (PSObject({"A": 1, "B": [dt.date(2020, 1, 1)]}, ["My.Type"]),
               "System.Management.Automation.PSCustomObject"),
    "wrapped": (PSObject({}, ["My.Wrapped"], None, 5), "System.Int32"),
    "progress": (ProgressRecord("Copy", 2, "half", "file.txt", 1, 50, 9, "Processing"),
                 "System.Management.Automation.ProgressRecord"),
    "deepest": (_nested(MAX_DEPTH), "System.Collections.ArrayList"),
}

# PowerShell describes each value: its type and its own CLIXML of it (PSSerializer, the
# serializer remoting uses), so two runs that received the same value print the same lines
DESCRIBE = r"""
foreach ($n in $names_) {
    $v = Get-Variable -Name $n -ValueOnly
    $type = if ($null -eq $v) { 'null' } else { $v.GetType().FullName }
    "$n|$type|$([System.Management.Automation.PSSerializer]::Serialize($v, 60))"
}
"""


def _run_all(session: Any) -> list[str]:
    values = {name: value for name, (value, _) in VALUES.items()}
    return list(session.run(DESCRIBE, {**values, "names_": list(values)}, timeout=60).output)


def test_live_recorded_and_replayed_runs_deliver_the_same_dotnet_values(
    shared_pwsh_session: Any, tmp_path: Path
) -> None:
    live = _run_all(shared_pwsh_session)
    path = tmp_path / "parity.hvrec.json"
    recorded = _run_all(RecordingSession(shared_pwsh_session, path))  # not closed: shared
    assert recorded == live
    reported = {line.split("|", 2)[0]: line.split("|", 2)[1] for line in live}
    assert reported == {name: dotnet for name, (_, dotnet) in VALUES.items()}
    # the recorded parameters are deterministic (a set is sorted): the replay accepts the
    # same values and gives back what PowerShell said
    assert _run_all(ReplaySession(path)) == live


def test_the_deepest_value_arrives_whole(shared_pwsh_session: Any) -> None:
    levels = shared_pwsh_session.run(
        "$d = 1; $v = $x; while ($v -is [System.Collections.IList]) { $v = $v[0]; $d++ }; $d",
        {"x": _nested(MAX_DEPTH)}, timeout=60,
    ).output
    assert levels == [MAX_DEPTH]


# values PowerShell's deserializer refuses: sent, each would leave the session without answer
REFUSED: dict[str, Any] = {
    "too_deep": _nested(MAX_DEPTH + 1),
    "null_key": {None: 1},
    "bad_xml": PSXmlDocument("<a><b></a>"),
    "long_span": dt.timedelta(days=20_000_000),
    "negative_version": PSVersion(-1, 0),
    "progress_without_status": ProgressRecord("Copy", 1),
    "progress_over_100": ProgressRecord("Copy", 1, "s", percent_complete=150),
    "unknown_type": object(),
    "too_big": 2**64,
}


@pytest.mark.parametrize("name", list(REFUSED))
def test_a_refused_value_is_the_same_error_live_and_recorded_and_the_session_lives(
    shared_pwsh_session: Any, tmp_path: Path, name: str
) -> None:
    value = REFUSED[name]
    with pytest.raises(EncodeError) as live:
        shared_pwsh_session.run("$x", {"x": value}, timeout=30)
    path = tmp_path / "refused.hvrec.json"
    with pytest.raises(EncodeError) as recorded:
        RecordingSession(shared_pwsh_session, path).run("$x", {"x": value}, timeout=30)
    with pytest.raises(EncodeError) as written:
        dumps(value)
    assert str(live.value) == str(recorded.value) == str(written.value)
    assert json.loads(path.read_text(encoding="utf-8"))["runs"] == []  # nothing recorded
    assert shared_pwsh_session.run("'alive'", timeout=30).output == ["alive"]


SECRET = "pä$$ wörd 🙂"

# name → (a value holding the secret, the PowerShell expression that reaches it)
SECRET_SHAPES: dict[str, tuple[Any, str]] = {
    "object_value": (PSObject({}, ["System.Security.SecureString"], None,
                              SecureString(SECRET)), "$x"),
    "object_property": (PSObject({"Password": SecureString(SECRET)}, ["My.Login"]),
                        "$x.Password"),
    "list": ([1, SecureString(SECRET)], "$x[1]"),
    "hashtable": ({"k": SecureString(SECRET)}, "$x['k']"),
    "credential_in_list": ([PSCredential("CORP\\u", SECRET)], "$x[0].Password"),
    "credential_in_object": (PSObject({"Login": PSCredential("CORP\\u", SECRET)}, ["My.T"]),
                             "$x.Login.Password"),
}


@pytest.mark.parametrize("name", list(SECRET_SHAPES))
def test_a_wrapped_secret_exchanges_the_key_reaches_the_guest_and_is_redacted(
    pwsh_session: Any, tmp_path: Path, name: str
) -> None:
    value, reach = SECRET_SHAPES[name]
    # the guest proves it holds the plain text by its digest (printing the secret itself
    # would put it in the recorded output, where nothing can tell it is one)
    script = (f"$s = {reach}; $s.GetType().FullName; [Convert]::ToHexString("
              "[Security.Cryptography.SHA256]::HashData([Text.Encoding]::UTF8.GetBytes("
              "[Net.NetworkCredential]::new('', $s).Password)))")
    digest = hashlib.sha256(SECRET.encode("utf-8")).hexdigest().upper()
    assert not pwsh_session._client.key_exchanged
    live = pwsh_session.run(script, {"x": value}, timeout=60)
    assert live.output == ["System.Security.SecureString", digest]
    assert pwsh_session._client.key_exchanged
    path = tmp_path / "secret.hvrec.json"
    recorded = RecordingSession(pwsh_session, path).run(script, {"x": value}, timeout=60)
    assert recorded.output == live.output
    text = path.read_text(encoding="utf-8")
    assert "wörd" not in text and "w\\u00f6rd" not in text
    (run,) = json.loads(text)["runs"]
    assert run["parameters"]["x"] == {"redacted": type(value).__name__}
