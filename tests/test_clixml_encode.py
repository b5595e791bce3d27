"""hvmagic.clixml.dumps: the mapping table in hvmagic/clixml/encode.py, RefIds, SecureString
rules, and the property loads(dumps(x)) == x over generated nested values (hypothesis)."""

from __future__ import annotations

import base64
import datetime as dt
import uuid
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hvmagic.clixml import (
    ProgressRecord,
    PSChar,
    PSCredential,
    PSCustomObject,
    PSDateTime,
    PSEnum,
    PSObject,
    PSScriptBlock,
    PSTimeSpan,
    PSUri,
    PSVersion,
    SecureString,
    dumps,
    dumps_document,
    loads,
)
from hvmagic.errors import EncodeError


@pytest.mark.parametrize(
    ("value", "xml"),
    [
        (None, "<Nil />"),
        (True, "<B>true</B>"),
        (2147483647, "<I32>2147483647</I32>"),
        (2147483648, "<I64>2147483648</I64>"),
        (-9223372036854775808, "<I64>-9223372036854775808</I64>"),
        (18446744073709551615, "<U64>18446744073709551615</U64>"),
        (0.1, "<Db>0.1</Db>"),
        (float("-inf"), "<Db>-INF</Db>"),
        (Decimal("1E+2"), "<D>100</D>"),
        (dt.datetime(2024, 1, 2, 3, 4, 5, 6), "<DT>2024-01-02T03:04:05.0000060</DT>"),
        (dt.datetime(2024, 1, 2, tzinfo=dt.timezone.utc), "<DT>2024-01-02T00:00:00.0000000Z</DT>"),
        (dt.timedelta(days=1, hours=2), "<TS>P1DT2H</TS>"),
        (dt.timedelta(seconds=9, microseconds=26902), "<TS>PT9.026902S</TS>"),
        (dt.timedelta(0), "<TS>PT0S</TS>"),
        (uuid.UUID(int=1), "<G>00000000-0000-0000-0000-000000000001</G>"),
        (b"\x01\x02", "<BA>AQI=</BA>"),
        ("a<&>_x0041_\r\n", "<S>a&lt;&amp;&gt;_x005F_x0041__x000D__x000A_</S>"),
        (PSChar("a"), "<C>97</C>"),
        (PSUri("http://x/"), "<URI>http://x/</URI>"),
        (PSScriptBlock("gps"), "<SBK>gps</SBK>"),
        (PSVersion(10, 0, 17763), "<Version>10.0.17763</Version>"),
    ],
)
def test_primitive_elements(value: object, xml: str) -> None:
    assert dumps(value) == xml
    assert loads(xml) == [value]


def test_datetime_ticks_and_offsets_roundtrip() -> None:
    stamp = PSDateTime(2024, 6, 18, 5, 42, 6, 8112, dt.timezone(dt.timedelta(hours=-4)))
    stamp.tick_remainder = 3
    assert dumps(stamp) == "<DT>2024-06-18T05:42:06.0081123-04:00</DT>"
    back = loads(dumps(stamp))[0]
    assert back == stamp and back.tick_remainder == 3
    span = PSTimeSpan(seconds=9, microseconds=26902)
    span.tick_remainder = 6
    assert dumps(span) == "<TS>PT9.0269026S</TS>" and loads(dumps(span))[0].tick_remainder == 6


def test_out_of_range_and_unsupported_values() -> None:
    with pytest.raises(EncodeError, match="Int64/UInt64"):
        dumps(2**64)
    with pytest.raises(EncodeError, match="Int64/UInt64"):
        dumps(-(2**63) - 1)
    with pytest.raises(EncodeError, match=r"cannot send a builtins\.object value"):
        dumps(object())
    with pytest.raises(EncodeError):
        dumps(Decimal("NaN"))
    with pytest.raises(EncodeError, match="TimeSpan's range"):
        dumps(dt.timedelta(days=10675200))
    assert dumps(-dt.timedelta(microseconds=2**63 // 10)).startswith("<TS>-P10675199D")
    # a date is its midnight: .NET has no date-only type PowerShell's serializer carries
    assert dumps(dt.date(2024, 1, 1)) == "<DT>2024-01-01T00:00:00.0000000</DT>"


def test_custom_object_hashtable_and_enum() -> None:
    obj = PSCustomObject(Name="vm1", Memory=4096, Tags=["a", "b"], Meta={"k": 1})
    xml = dumps(obj)
    assert "<T>System.Management.Automation.PSCustomObject</T>" in xml and "<MS>" in xml
    back = loads(xml)[0]
    assert back == obj and back.type_name == "System.Management.Automation.PSCustomObject"
    status = PSEnum(4, "Running", ["System.ServiceProcess.ServiceControllerStatus",
                                   "System.Enum", "System.ValueType", "System.Object"])
    back_enum = loads(dumps(status))[0]
    assert isinstance(back_enum, PSEnum) and str(back_enum) == "Running" and back_enum == 4
    assert back_enum.type_names == status.type_names


def test_adapted_properties_go_to_props() -> None:
    obj = PSObject({"Name": "x", "Extra": 1}, ["My.Type"], "x", adapted=("Name",))
    xml = dumps(obj)
    assert '<Props><S N="Name">x</S></Props><MS><I32 N="Extra">1</I32></MS>' in xml
    back = loads(xml)[0]
    assert back.adapted == ("Name",) and back.to_string == "x" and back == obj


def test_repeated_and_cyclic_objects_use_refids() -> None:
    shared = ["x"]
    xml = dumps({"a": shared, "b": shared})
    assert xml.count("<LST>") == 1 and '<Ref N="Value" RefId="1" />' in xml
    back = loads(xml)[0]
    assert back["a"] is back["b"]
    node = PSCustomObject(Name="n")
    node.properties["Self"] = node
    again = loads(dumps(node))[0]
    assert again["Self"] is again
    doc = dumps_document([PSCustomObject(A=1), PSCustomObject(A=2)])
    assert doc.count("<TN ") == 1 and doc.count("<TNRef") == 1 and len(loads(doc)) == 2


def test_secure_string_needs_an_encryptor_or_explicit_plaintext() -> None:
    secret = SecureString("P@ss")
    with pytest.raises(EncodeError, match="secure_string_encryptor") as info:
        dumps(secret)
    assert "P@ss" not in str(info.value)
    encrypted = dumps(secret, secure_string_encryptor=lambda plain: plain[::-1])
    assert encrypted == "<SS>AHMAcwBAAFA=</SS>"  # base64 of reversed UTF-16-LE
    assert loads(encrypted)[0].ciphertext == "P@ss".encode("utf-16-le")[::-1]
    assert dumps(secret, allow_plaintext_secure_string=True) == "<S>P@ss</S>"
    from_guest = SecureString(ciphertext=b"\x01\x02")
    assert dumps(from_guest) == "<SS>AQI=</SS>"  # already encrypted: written back unchanged
    with pytest.raises(EncodeError, match="only ciphertext"):  # … but not under another key
        dumps(from_guest, secure_string_encryptor=lambda plain: plain)


def test_credential_and_progress_record() -> None:
    cred = PSCredential("admin", "pw")
    xml = dumps(cred, secure_string_encryptor=lambda b: b)
    back = loads(xml)[0]
    assert isinstance(back, PSCredential) and back.username == "admin"
    assert back.password.ciphertext == "pw".encode("utf-16-le")
    record = ProgressRecord("Copy", 2, "half", "file.txt", 1, 50, 9, "Processing")
    assert loads(dumps(record)) == [record]


# --- property: loads(dumps(x)) == x ----------------------------------------------------------

_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",)), max_size=20
) | st.sampled_from(["_x0041_", "_x005F_", "a_x", "\r\n", "<&>", "\x00\x1f", "\ufffe", "😀"])
_datetimes = st.datetimes(min_value=dt.datetime(1000, 1, 1)) | st.datetimes(
    min_value=dt.datetime(1000, 1, 1), timezones=st.sampled_from(
        [dt.timezone.utc, dt.timezone(dt.timedelta(hours=5, minutes=30)),
         dt.timezone(dt.timedelta(hours=-8))]))
# System.TimeSpan holds ±(2**63 - 1) ticks: 10675199 days and a bit
_timespans = st.timedeltas(min_value=-dt.timedelta(days=10675199),
                           max_value=dt.timedelta(days=10675199))
_scalars = (
    st.none() | st.booleans() | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False) | _text
    | st.decimals(allow_nan=False, allow_infinity=False, places=4, max_value=10**12,
                  min_value=-(10**12))
    | _datetimes | _timespans | st.uuids() | st.binary(max_size=16)
    | st.builds(PSVersion, st.integers(0, 99), st.integers(0, 99))
)
_keys = st.text(max_size=8) | st.integers(-1000, 1000)
_names = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=8)
_values = st.recursive(
    _scalars,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(_keys, children, max_size=4)
        | st.builds(lambda d: PSCustomObject(**d), st.dictionaries(_names, children, max_size=4))
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(_values)
def test_roundtrip_property(value: object) -> None:
    assert loads(dumps(value)) == [value]


@settings(max_examples=50, deadline=None, derandomize=True)
@given(st.lists(_values, max_size=5))
def test_document_roundtrip_property(values: list[object]) -> None:
    assert loads(dumps_document(values)) == values


@pytest.mark.parametrize(
    "value", ["1E+999999999", "79228162514264337593543950336", "-79228162514264337593543950336"]
)
def test_decimal_beyond_system_decimal_is_refused_before_formatting(value: str) -> None:
    with pytest.raises(EncodeError, match=r"outside System\.Decimal's range"):
        dumps(Decimal(value))


def test_decimal_limits_and_tiny_values() -> None:
    assert dumps(Decimal(2**96 - 1)) == "<D>79228162514264337593543950335</D>"
    # more than 28 decimal places: rounded as .NET would store it, not a gigabyte of zeros
    assert dumps(Decimal("1E-999999999")) == "<D>0.0000000000000000000000000000</D>"
    assert dumps(Decimal("1.5E-28")) == "<D>0.0000000000000000000000000002</D>"
    assert dumps(Decimal("-1.25")) == "<D>-1.25</D>"


def _exception_chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    pending: list[BaseException | None] = [exc]
    while pending:
        current = pending.pop()
        if current is None or any(current is s for s in seen):
            continue
        seen.append(current)
        pending += [current.__cause__, current.__context__]
    return seen


def test_secure_string_with_a_lone_surrogate_is_encrypted_as_dotnet_utf16() -> None:
    # .NET strings may hold lone surrogates; encoding used to raise UnicodeEncodeError whose
    # .object (the whole secret) became the EncodeError's __cause__
    secret = "hunter2\ud800"
    xml = dumps(PSCredential("u", SecureString(secret)), secure_string_encryptor=lambda b: b)
    expected = base64.b64encode(secret.encode("utf-16-le", "surrogatepass")).decode()
    assert f"<SS N=\"Password\">{expected}</SS>" in xml
    assert loads(xml)[0].password.ciphertext == b"h\x00u\x00n\x00t\x00e\x00r\x002\x00\x00\xd8"


def test_a_failing_encryptor_never_chains_the_secret() -> None:
    secret = "s3cret-Pa55"

    def leaky(plain: bytes) -> bytes:
        raise ValueError(f"cannot encrypt {plain.decode('utf-16-le')!r}")

    with pytest.raises(EncodeError, match="secure_string_encryptor failed") as info:
        dumps([SecureString(secret)], secure_string_encryptor=leaky)
    chain = _exception_chain(info.value)
    assert chain == [info.value]  # nothing chained at all
    for exc in chain:
        assert secret not in str(exc) and secret not in repr(exc)
        assert all(secret not in str(arg) for arg in exc.args)
