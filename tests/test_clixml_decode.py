"""hvmagic.clixml.loads / loads_streams / loads_fragment: every MS-PSRP 2.2.5 element, the
mapping decisions documented in hvmagic/clixml/decode.py, and the safety limits."""

from __future__ import annotations

import copy
import datetime as dt
import pickle
import time
import uuid
from collections.abc import Callable
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hvmagic.clixml import (
    ErrorRecord,
    InformationalRecord,
    InformationRecord,
    ProgressRecord,
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
    loads,
    loads_fragment,
    loads_streams,
    unescape,
)
from hvmagic.errors import DecodeError, HvMagicError, LimitExceededError

NS = 'xmlns="http://schemas.microsoft.com/powershell/2004/04"'


def one(xml: str) -> object:
    values = loads(xml)
    assert len(values) == 1
    return values[0]


# --- primitives (MS-PSRP 2.2.5.1 examples) -------------------------------------------------

@pytest.mark.parametrize(
    ("xml", "expected", "kind"),
    [
        ("<S>This is a string</S>", "This is a string", str),
        ("<S />", "", str),
        ("<C>97</C>", "a", PSChar),
        ("<B>true</B>", True, bool),
        ("<B>false</B>", False, bool),
        ("<By>254</By>", 254, int),
        ("<SB>-127</SB>", -127, int),
        ("<U16>65535</U16>", 65535, int),
        ("<I16>-420</I16>", -420, int),
        ("<U32>4294967295</U32>", 4294967295, int),
        ("<I32>-2147483648</I32>", -2147483648, int),
        ("<U64>18446744073709551615</U64>", 18446744073709551615, int),
        ("<I64>-9223372036854775808</I64>", -9223372036854775808, int),
        ("<Sg>12.34</Sg>", 12.34, float),
        ("<Db>-1.5E+300</Db>", -1.5e300, float),
        ("<Db>INF</Db>", float("inf"), float),
        ("<Db>-INF</Db>", float("-inf"), float),
        ("<D>1.10</D>", Decimal("1.10"), Decimal),
        ("<BA>AQIDBA==</BA>", b"\x01\x02\x03\x04", bytes),
        ("<G>792e5b37-4505-47ef-b7d2-8711bb7affa8</G>",
         uuid.UUID("792e5b37-4505-47ef-b7d2-8711bb7affa8"), uuid.UUID),
        ("<URI>http://www.microsoft.com/</URI>", "http://www.microsoft.com/", PSUri),
        ("<Version>6.2.1.3</Version>", PSVersion(6, 2, 1, 3), PSVersion),
        ("<XD>&lt;item&gt;x&lt;/item&gt;</XD>", "<item>x</item>", PSXmlDocument),
        ("<SBK>get-command -type cmdlet</SBK>", "get-command -type cmdlet", PSScriptBlock),
        ("<Nil />", None, type(None)),
    ],
)
def test_primitive(xml: str, expected: object, kind: type) -> None:
    value = one(xml)
    assert type(value) is kind
    assert value == expected


def test_nan_double() -> None:
    value = one("<Db>NaN</Db>")
    assert isinstance(value, float) and value != value


def test_version_is_ordered_and_prints_like_dotnet() -> None:
    old, new = loads("<Objs><Version>10.0.9</Version><Version>10.0.17763.1</Version></Objs>")
    assert old < new and str(new) == "10.0.17763.1" and new.build == 17763


def test_secure_string_keeps_ciphertext_and_hides_it() -> None:
    value = one("<SS>AQIDBA==</SS>")
    assert isinstance(value, SecureString)
    assert value.ciphertext == b"\x01\x02\x03\x04"
    assert "AQID" not in repr(value) and "\x01" not in str(value)


# --- DateTime and TimeSpan -----------------------------------------------------------------

def test_datetime_with_offset_is_aware_and_keeps_the_seventh_digit() -> None:
    value = one("<DT>2024-06-18T05:42:06.0081123-04:00</DT>")
    assert isinstance(value, PSDateTime)
    assert value == dt.datetime(2024, 6, 18, 9, 42, 6, 8112, tzinfo=dt.timezone.utc)
    assert value.utcoffset() == dt.timedelta(hours=-4)
    assert value.tick_remainder == 3


def test_datetime_z_is_utc_and_no_suffix_is_naive() -> None:
    utc, naive, short = loads(
        "<Objs><DT>2008-04-11T10:42:32.2731993Z</DT><DT>2008-04-11T10:42:32</DT>"
        "<DT>2024-06-18T05:42:06.00811-04:00</DT></Objs>"
    )
    assert utc.tzinfo is dt.timezone.utc and utc.microsecond == 273199 and utc.tick_remainder == 3
    assert naive.tzinfo is None and naive == dt.datetime(2008, 4, 11, 10, 42, 32)
    assert short.microsecond == 8110 and short.tick_remainder == 0


def test_datetime_tick_remainder_survives_deepcopy_and_pickle() -> None:
    value = one("<DT>2024-06-18T05:42:06.0081127Z</DT>")
    for clone in (copy.deepcopy(value), copy.copy(value), pickle.loads(pickle.dumps(value))):
        assert type(clone) is PSDateTime and clone == value and clone.tick_remainder == 7


@pytest.mark.parametrize(
    ("text", "micro", "remainder"),
    [
        ("PT9.0269026S", 9_026_902, 6),
        ("P1DT2H", (86_400 + 7200) * 1_000_000, 0),
        ("-PT0.5S", -500_000, 0),
        ("PT1M0.5S", 60_500_000, 0),
        ("P0D", 0, 0),
        ("-P1DT0.0000001S", -86_400_000_001, 9),
    ],
)
def test_timespan(text: str, micro: int, remainder: int) -> None:
    value = one(f"<TS>{text}</TS>")
    assert isinstance(value, PSTimeSpan)
    assert value == dt.timedelta(microseconds=micro)
    assert value.tick_remainder == remainder


def test_bad_datetime_and_duration_are_decode_errors() -> None:
    with pytest.raises(DecodeError, match="DateTime"):
        loads("<DT>yesterday</DT>")
    with pytest.raises(DecodeError, match="duration"):
        loads("<TS>P</TS>")


# --- escapes --------------------------------------------------------------------------------

def test_escapes_surrogate_pairs_and_literal_underscore() -> None:
    value = one("<S>a_x000D__x000A_b_xD83D__xDE00_c_x005F_x0041_</S>")
    assert value == "a\r\nb\U0001F600c_x0041_"
    assert unescape("_x005F_") == "_" and unescape("no escape_x") == "no escape_x"


def _unescape_by_regex_alone(text: str) -> str:
    """The decoding unescape's line-break shortcut must agree with (the regex scan alone)."""
    from hvmagic.clixml.decode import _ESCAPE_RE, _SURROGATE_RE, _escape_char

    result = _ESCAPE_RE.sub(_escape_char, text)
    if _SURROGATE_RE.search(result):
        result = result.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "surrogatepass")
    return result


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(["_x000D_", "_x000A_", "_x", "_", "x", "000A_", "0", "D", "A",
                                 "_x005F_", "_x0041_", "a"]), max_size=12).map("".join))
def test_line_break_shortcut_agrees_with_the_regex_scan(text: str) -> None:
    assert unescape(text) == _unescape_by_regex_alone(text)


def test_line_break_escapes_with_shared_underscores() -> None:
    # each of these has an "_x" the shortcut must not take for a line break
    for text, expected in [("_x000D__x000A_", "\r\n"), ("_x000D_x000A_", "\rx000A_"),
                           ("_x000A_x000A_", "\nx000A_"), ("_x005F_x000A_", "_x000A_"),
                           ("a_x000A__x000D_", "a\n\r")]:
        assert unescape(text) == expected == _unescape_by_regex_alone(text)


def test_property_names_and_type_names_are_unescaped() -> None:
    obj = one(
        "<Obj RefId='0'><TN RefId='0'><T>My_x0020_Type</T></TN>"
        "<MS><S N='a_x0020_b'>v</S></MS></Obj>"
    )
    assert isinstance(obj, PSObject)
    assert obj["a b"] == "v" and obj.type_names == ["My Type"]


# --- complex objects -------------------------------------------------------------------------

SERVICE = f"""<Objs Version="1.1.0.1" {NS}>
  <Obj RefId="0">
    <TN RefId="0"><T>Deserialized.System.ServiceProcess.ServiceController</T>
      <T>Deserialized.System.Object</T></TN>
    <ToString>System.ServiceProcess.ServiceController</ToString>
    <Props>
      <S N="Name">vmms</S>
      <S N="DisplayName">Hyper-V Virtual Machine Management</S>
      <Obj N="Status" RefId="1">
        <TN RefId="1"><T>System.ServiceProcess.ServiceControllerStatus</T><T>System.Enum</T>
          <T>System.ValueType</T><T>System.Object</T></TN>
        <ToString>Running</ToString><I32>4</I32>
      </Obj>
      <Obj N="DependentServices" RefId="2">
        <TN RefId="2"><T>System.ServiceProcess.ServiceController[]</T><T>System.Array</T>
          <T>System.Object</T></TN>
        <LST><S>a</S><S>b</S></LST>
      </Obj>
      <S N="Shadowed">adapted</S>
    </Props>
    <MS>
      <Ref N="RequiredServices" RefId="2" />
      <S N="Shadowed">extended</S>
    </MS>
  </Obj>
  <Obj RefId="3"><TNRef RefId="0" /><ToString>second</ToString>
    <Props><S N="Name">vmcompute</S></Props></Obj>
</Objs>"""


def test_service_object() -> None:
    first, second = loads(SERVICE)
    assert isinstance(first, PSObject)
    assert first["Name"] == "vmms" and "DisplayName" in first
    assert first.type_names[0] == "Deserialized.System.ServiceProcess.ServiceController"
    assert first.type_name == "System.ServiceProcess.ServiceController"
    assert first.to_string == "System.ServiceProcess.ServiceController"
    status = first["Status"]
    assert isinstance(status, PSEnum) and int(status) == 4 and str(status) == "Running"
    assert status.type_name == "System.ServiceProcess.ServiceControllerStatus"
    assert first["DependentServices"] == ["a", "b"]
    assert first["RequiredServices"] is first["DependentServices"]  # Ref aliasing
    assert first["Shadowed"] == "extended"  # MS wins over Props
    assert "Name" in first.adapted and "RequiredServices" not in first.adapted
    # PowerShell's order, live or deserialized: the <MS> members, then the <Props> they do not
    # shadow (tests/pwsh/test_exploration.py judges it: Get-Item, Get-PSDrive)
    assert list(first) == ["RequiredServices", "Shadowed", "Name", "DisplayName", "Status",
                           "DependentServices"]
    assert second.type_names is first.type_names  # TNRef shares the list
    assert second["Name"] == "vmcompute" and str(second) == "second"


def test_collections_and_dictionary() -> None:
    value = one(
        "<Obj RefId='0'><TN RefId='0'><T>System.Collections.Hashtable</T></TN><DCT>"
        "<En><S N='Key'>a</S><I32 N='Value'>1</I32></En>"
        "<En><I32 N='Key'>2</I32><Obj N='Value' RefId='1'><QUE><S>q</S></QUE></Obj></En>"
        "<En><S N='Key'>s</S><Obj N='Value' RefId='2'><STK><I32>1</I32><I32>2</I32></STK></Obj>"
        "</En><En><S N='Key'>e</S><Obj N='Value' RefId='3'><IE><B>true</B></IE></Obj></En>"
        "<En><S N='Key'>n</S><Nil N='Value' /></En>"
        "</DCT></Obj>"
    )
    assert value == {"a": 1, 2: ["q"], "s": [1, 2], "e": [True], "n": None}


def test_cycles_resolve_to_the_same_object() -> None:
    obj = one("<Obj RefId='0'><MS><S N='Name'>me</S><Ref N='Self' RefId='0' /></MS></Obj>")
    assert obj["Self"] is obj
    lst = one("<Obj RefId='0'><LST><I32>1</I32><Ref RefId='0' /></LST></Obj>")
    assert lst[1] is lst
    table = one("<Obj RefId='0'><DCT><En><S N='Key'>me</S><Ref N='Value' RefId='0' /></En>"
                "</DCT></Obj>")
    assert table["me"] is table


def test_primitive_with_members_still_behaves_as_the_primitive() -> None:
    text, stamp, flag = loads(
        "<Objs><Obj RefId='0'><TN RefId='0'><T>System.String</T><T>System.Object</T></TN>"
        "<ToString>hello</ToString><S>hello</S><MS><I32 N='Extra'>5</I32></MS></Obj>"
        "<Obj RefId='1'><DT>2024-01-02T03:04:05Z</DT><MS><S N='Note'>n</S></MS></Obj>"
        "<Obj RefId='2'><B>true</B><MS><S N='Lost'>x</S></MS></Obj></Objs>"
    )
    assert text == "hello" and isinstance(text, str) and text.upper() == "HELLO"
    assert text.properties == {"Extra": 5} and text.type_names[0] == "System.String"
    assert stamp == dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)
    assert stamp.properties == {"Note": "n"}
    assert flag is True  # bool cannot carry members: documented, members dropped


def test_collection_with_members_becomes_psobject_with_value() -> None:
    value = one("<Obj RefId='0'><TN RefId='0'><T>System.Collections.ArrayList</T></TN>"
                "<LST><I32>1</I32></LST><MS><S N='Tag'>t</S></MS></Obj>")
    assert isinstance(value, PSObject) and value.value == [1] and value["Tag"] == "t"


def test_progress_record() -> None:
    value = one("<PR N='Record'><AV>Copying</AV><AI>3</AI><Nil /><PI>-1</PI><PC>40</PC>"
                "<T>Processing</T><SR>12</SR><SD>file 4 of 10</SD></PR>")
    assert value == ProgressRecord("Copying", 3, "file 4 of 10", None, -1, 40, 12, "Processing")
    done = one("<PR><AV>a</AV><AI>0</AI><S>op</S><PI>2</PI><PC>-1</PC><T>Completed</T>"
               "<SR>-1</SR><SD>s</SD></PR>")
    assert done.completed and done.current_operation == "op" and done.parent_activity_id == 2


def test_rich_records_and_credential() -> None:
    err, warn, info, cred = loads(
        "<Objs>"
        "<Obj RefId='0'><TN RefId='0'><T>Deserialized.System.Management.Automation.ErrorRecord"
        "</T></TN><ToString>boom</ToString><MS><S N='FullyQualifiedErrorId'>X,Y</S>"
        "<I32 N='ErrorCategory_Category'>13</I32><S N='ErrorDetails_Message'>custom</S></MS></Obj>"
        "<Obj RefId='1'><TN RefId='1'><T>System.Management.Automation.WarningRecord</T></TN>"
        "<MS><S N='InformationalRecord_Message'>careful</S></MS></Obj>"
        "<Obj RefId='2'><TN RefId='2'><T>System.Management.Automation.InformationRecord</T></TN>"
        "<Props><S N='MessageData'>hi</S><DT N='TimeGenerated'>2024-01-01T00:00:00Z</DT>"
        "</Props></Obj>"
        "<Obj RefId='3'><TN RefId='3'><T>System.Management.Automation.PSCredential</T></TN>"
        "<Props><S N='UserName'>admin</S><SS N='Password'>AQID</SS></Props></Obj>"
        "</Objs>"
    )
    assert isinstance(err, ErrorRecord)
    assert err.message == "custom" and err.category == "ObjectNotFound"
    assert err.fully_qualified_error_id == "X,Y" and err["FullyQualifiedErrorId"] == "X,Y"
    assert isinstance(warn, InformationalRecord) and warn.message == "careful"
    assert isinstance(info, InformationRecord) and info.message == "hi"
    assert info.time_generated.year == 2024
    assert isinstance(cred, PSCredential) and cred.username == "admin"
    assert cred.password.ciphertext == b"\x01\x02\x03" and "AQID" not in repr(cred)


# --- input forms ---------------------------------------------------------------------------

def test_clixml_stream_tags_and_bom_and_utf16() -> None:
    stream = (
        "#< CLIXML\r\n"
        f'<Objs Version="1.1.0.1" {NS}><S>out</S><S S="Error">bad_x000D__x000A_</S>'
        '<S S="verbose">v</S><Obj S="progress" RefId="0"><TN RefId="0"><T>System.Management.'
        "Automation.PSCustomObject</T></TN><MS><I64 N='SourceId'>1</I64></MS></Obj></Objs>"
    )
    expected_streams = ["output", "error", "verbose", "progress"]
    for data in (stream, stream.encode("utf-8"), b"\xef\xbb\xbf" + stream.encode(),
                 stream.encode("utf-16"), stream.encode("utf-16-be")[:0] + "\ufeff".encode(
                     "utf-16-be") + stream.encode("utf-16-be")):
        pairs = loads_streams(data)
        assert [s for s, _ in pairs] == expected_streams
        assert pairs[1][1] == "bad\r\n" and pairs[3][1]["SourceId"] == 1


def test_several_documents_in_one_stream_restart_refids() -> None:
    text = (
        "#< CLIXML\n<Objs><Obj RefId='0'><MS><S N='a'>1</S></MS></Obj></Objs>\n"
        "#< CLIXML\n<Objs><Obj RefId='0'><MS><S N='a'>2</S></MS></Obj><Ref RefId='0' /></Objs>"
    )
    first, second, ref = loads(text)
    assert first["a"] == "1" and second["a"] == "2" and ref is second


def test_xml_declaration_and_bare_element() -> None:
    assert loads('<?xml version="1.0" encoding="utf-8"?>\n<S>x</S>') == ["x"]
    assert loads(b"<I32>7</I32>") == [7]


def test_loads_fragment_decodes_one_psrp_payload() -> None:
    payload = b"\xef\xbb\xbf<Obj RefId='0'><MS><S N='Name'>x</S><I32 N='Id'>4</I32></MS></Obj>"
    value = loads_fragment(payload)
    assert isinstance(value, PSObject) and value["Id"] == 4
    assert loads_fragment("<S>plain</S>") == "plain"
    with pytest.raises(DecodeError):
        loads_fragment(b"<Obj><S>x</S>")


# --- malformed input, limits, hostile XML ----------------------------------------------------

@pytest.mark.parametrize(
    ("xml", "fragment"),
    [
        ("<Objs><S>x</S>", "malformed"),
        ("<Objs><Foo>1</Foo></Objs>", "unknown CLIXML element <Foo>"),
        ("<Objs><I32>twelve</I32></Objs>", "bad CLIXML value"),
        ("<Objs><Obj RefId='0'><Props><S>no name</S></Props></Obj></Objs>", "without N="),
        ("<Objs><Ref RefId='9' /></Objs>", "unknown RefId"),
        ("<Objs><Obj RefId='0'><TNRef RefId='4' /></Obj></Objs>", "unknown RefId"),
        ("<Objs><T>x</T></Objs>", "outside"),
        ("<Objs><Obj RefId='0'><DCT><S>x</S></DCT></Obj></Objs>", "expected <En>"),
        ("<Objs><B>maybe</B></Objs>", "boolean"),
        ("<Objs><BA>###</BA></Objs>", "bad CLIXML value"),
    ],
)
def test_malformed_input_is_a_located_decode_error(xml: str, fragment: str) -> None:
    with pytest.raises(DecodeError) as info:
        loads(xml)
    assert fragment in str(info.value)
    assert isinstance(info.value.position, str) and ":" in info.value.position
    assert isinstance(info.value, HvMagicError)


def test_error_position_points_at_the_line() -> None:
    with pytest.raises(DecodeError) as info:
        loads("<Objs>\n  <S>ok</S>\n  <I32>bad</I32>\n</Objs>")
    assert info.value.position is not None and str(info.value.position).startswith("3:")


def test_wrong_input_type() -> None:
    with pytest.raises(DecodeError, match="str or bytes"):
        loads(12)  # type: ignore[arg-type]


def test_billion_laughs_is_refused() -> None:
    bomb = (
        '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
        + "".join(f'<!ENTITY lol{i} "{"&lol%s;" % ("" if i == 1 else i - 1) * 10}">'
                  for i in range(1, 10))
        + "]><S>&lol9;</S>"
    )
    with pytest.raises(DecodeError):
        loads(bomb)
    with pytest.raises(DecodeError, match="DTD"):
        loads_fragment(bomb.encode())


def test_external_entity_is_refused() -> None:
    xxe = '<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><S>&e;</S>'
    with pytest.raises(DecodeError):
        loads(xxe)
    with pytest.raises(DecodeError, match="DTD"):
        loads_fragment(xxe)
    with pytest.raises(DecodeError):
        loads("<S>&undefined;</S>")


def test_deep_nesting_hits_the_depth_limit() -> None:
    depth = 100_000
    deep = "<Obj RefId='0'><LST>" * depth + "</LST></Obj>" * depth
    with pytest.raises(LimitExceededError) as info:
        loads(deep)
    assert "max_depth" in str(info.value)
    shallow = "<Obj RefId='0'><LST>" * 5 + "</LST></Obj>" * 5
    assert loads(shallow, max_depth=11) == [[[[[[]]]]]]
    with pytest.raises(LimitExceededError):
        loads(shallow, max_depth=5)


def test_size_and_object_limits() -> None:
    doc = "<Objs>" + "<Obj RefId='0'><MS><I32 N='a'>1</I32></MS></Obj>" * 50 + "</Objs>"
    with pytest.raises(LimitExceededError, match="max_bytes"):
        loads(doc, max_bytes=100)
    with pytest.raises(LimitExceededError, match="max_objects"):
        loads(doc, max_objects=10)
    assert len(loads(doc, max_objects=50)) == 50
    with pytest.raises(ValueError):
        loads(doc, max_depth=0)


def test_huge_document_decodes_within_limits() -> None:
    count = 50_000
    doc = "<Objs>" + "<S>0123456789abcdef</S>" * count + "</Objs>"
    values = loads(doc)
    assert len(values) == count and values[-1] == "0123456789abcdef"
    with pytest.raises(LimitExceededError):
        loads(doc.encode(), max_bytes=len(doc) - 1)


# --- the shape-compiled fast path (hvmagic/clixml/_compiled.py) ------------------------------

from hvmagic.clixml import _compiled  # noqa: E402 - the fast path's internals, tested here
from hvmagic.clixml.decode import _fragment_expat, _loads_expat  # noqa: E402

SHAPE = (
    "<Obj RefId='0'><TN RefId='0'><T>Deserialized.My.Type</T><T>System.Object</T></TN>"
    "<ToString>{name}</ToString><Props><S N='Name'>{name}</S><I32 N='Count'>{count}</I32>"
    "<B N='On'>{on}</B><Obj N='State' RefId='1'><TN RefId='1'><T>My.State</T>"
    "<T>System.Enum</T><T>System.ValueType</T><T>System.Object</T></TN>"
    "<ToString>{state}</ToString><I32>{number}</I32></Obj></Props>"
    "<MS><Ref N='Alias' RefId='1' /><DT N='When'>{when}</DT></MS></Obj>"
)


def _shape(**values: object) -> str:
    defaults = {"name": "a", "count": 1, "on": "true", "state": "Running", "number": 4,
                "when": "2024-01-02T03:04:05.1234567Z"}
    defaults.update(values)
    return SHAPE.format(**defaults)


@pytest.fixture(autouse=True)
def fresh_shape_caches(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts with empty shape caches (they are process-wide)."""
    monkeypatch.setattr(_compiled, "FRAGMENTS", _compiled.ShapeCache(variable_refids=False))
    monkeypatch.setattr(_compiled, "DOCUMENTS", _compiled.ShapeCache(variable_refids=True))


def test_shape_learning_stops_when_shapes_do_not_repeat() -> None:
    # every object a new shape (a list of growing length): compiling would cost more than
    # it saves, so after 64 unrepaid compilations the expat path takes over — same values
    for length in range(100):
        items = "".join(f"<I32>{i}</I32>" for i in range(length))
        value = loads_fragment(f"<Obj RefId='0'><LST>{items}</LST></Obj>".encode())
        assert value == list(range(length))
    assert _compiled.FRAGMENTS.learned == 64 and len(_compiled.FRAGMENTS.shapes) == 64
    for _ in range(3000):  # hits on a known shape earn learning back
        loads_fragment(b"<Obj RefId='0'><LST><I32>1</I32></LST></Obj>")
    assert _compiled.FRAGMENTS.may_learn()


def test_fragment_fast_path_learns_a_shape_and_matches_expat() -> None:
    first = _shape(name="first")
    assert _compiled.FRAGMENTS.shapes.get(b"x") is None
    value = loads_fragment(first.encode())
    key = b"\x00".join(_compiled.FRAGMENT_SPLIT.split(first.encode())[0::2])
    assert _compiled.FRAGMENTS.shapes[key] is not None  # verified builder admitted
    for name in ("second", "with &amp; entity", "esc_x000A_aped", "ünïcode"):
        text = _shape(name=name, count=7, on="false", state="Stopped", number=1)
        fast = loads_fragment(text.encode("utf-8"))
        reference = _fragment_expat(text.encode("utf-8"), 64, 1000)
        assert _compiled.same(fast, reference)
        assert fast["Alias"] is fast["State"]  # Ref aliasing inside the builder
        assert fast["When"].tick_remainder == 7
    assert value["State"].name == "Running" and str(value) == "first"


def test_fast_path_falls_back_to_expat_for_odd_values_of_a_known_shape() -> None:
    loads_fragment(_shape().encode())  # learn
    # an entity in a number and an unusual boolean spelling: the builder raises, expat decodes
    odd = loads_fragment(_shape(count="&#55;", on="1").encode())
    assert odd["Count"] == 7 and odd["On"] is True
    with pytest.raises(DecodeError) as info:
        loads_fragment(_shape(count="seven").encode())
    assert info.value.position is not None  # errors come from expat, located
    # a comment makes the textual split unsafe: expat decodes it
    commented = _shape().replace("<Props>", "<Props><!-- c -->")
    assert loads_fragment(commented.encode())["Count"] == 1


def _matcher_count(cache: _compiled.ShapeCache) -> int:
    return sum(len(bucket.members) for bucket in cache.matchers.values())


def _counting_split(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    real = _compiled.FRAGMENT_SPLIT
    calls = [0]

    class CountingSplit:
        def split(self, data: bytes) -> list[bytes]:
            calls[0] += 1
            return real.split(data)

    monkeypatch.setattr(_compiled, "FRAGMENT_SPLIT", CountingSplit())
    return calls


def test_a_known_shape_is_decoded_by_its_matcher_without_splitting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    splits = _counting_split(monkeypatch)
    loads_fragment(_shape().encode())  # learns the shape and its matcher
    assert splits[0] == 1 and _matcher_count(_compiled.FRAGMENTS) == 1
    value = loads_fragment(_shape(name="b &amp; c_x000D__x000A_", count=-5, on="false",
                                  state="Stopped", number=1).encode())
    assert splits[0] == 1  # served by the matcher
    assert value["Name"] == "b & c\r\n" and value["Count"] == -5 and value["On"] is False
    assert value["State"].name == "Stopped" and int(value["State"]) == 1
    assert value["Alias"] is value["State"] and value.type_names[0] == "Deserialized.My.Type"
    # other type names, same tags: the regex refuses (type names are literals in it), the
    # split path's builder serves it with the right names
    renamed = _shape().replace("Deserialized.My.Type", "Deserialized.Other.Type")
    other = loads_fragment(renamed.encode())
    assert splits[0] == 2 and other.type_names[0] == "Deserialized.Other.Type"
    assert _compiled.same(other, _fragment_expat(renamed.encode(), 64, 1000))


def test_shapes_with_as_many_elements_share_one_bucket_regex(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Two lists whose lengths trade places: same element count, different shapes. Both are
    # served by one combined regex (the shape named by its marker group), without splitting.
    def message(first: list[str], second: list[str]) -> bytes:
        def lst(name: str, items: list[str]) -> str:
            body = "".join(f"<S>{item}</S>" for item in items)
            return f'<Obj N="{name}" RefId="{name}"><LST>{body}</LST></Obj>'
        return ('<Obj RefId="0"><MS><S N="Name">n</S>' + lst("A", first) + lst("B", second)
                + "</MS></Obj>").encode()

    splits = _counting_split(monkeypatch)
    for first, second in ((["a"], ["b", "c"]), (["a", "b"], ["c"])):
        loads_fragment(message(first, second))
    (bucket,) = _compiled.FRAGMENTS.matchers.values()
    assert len(bucket.members) == 2 and splits[0] == 2
    for first, second in ((["x"], ["y", "z"]), (["x", "y"], ["z"]), (["p"], ["q", "r"])):
        value = loads_fragment(message(first, second))
        assert value["A"] == first and value["B"] == second
        assert _compiled.same(value, _fragment_expat(message(first, second), 64, 1000))
    assert splits[0] == 2  # all three served by the bucket


_ODD_TEXTS = st.one_of(
    st.sampled_from(["", " ", "\t\n", "a\r\nb", "x]]>y", "a>b", "&amp;", "&#55;", "&#x0;",
                     "&bogus;", "&", "&lt;&gt;", "_x000A_", "_x000D_x000A_", "_xD83D_", "\x01",
                     "ü€😀", "7", "-1", "true", "1", "2024-01-02T03:04:05.1234567+01:00"]),
    st.text(max_size=6),
)


@settings(max_examples=400, deadline=None, derandomize=True)
@given(st.sampled_from(["name", "count", "on", "state", "number", "when"]), _ODD_TEXTS,
       st.sampled_from(["", "Stopped", "x &amp; y_x000A_"]),
       st.sampled_from(["", " ", "\n\t", "\r\n", "x", "&amp;", "&#32;", "\x01", "é"]))
def test_a_matcher_agrees_with_expat_whatever_text_a_known_shape_holds(
    field: str, text: str, name: str, gap: str,
) -> None:
    loads_fragment(_shape().encode())  # the shape and its matcher are known
    # one odd text at a time, the others valid, so each reaches the builder's conversions
    # (lone surrogates from st.text become invalid UTF-8: expat must reject, so must we)
    values = {"name": name, field: text}
    # and a text before a closing tag, which builders ignore (whitespace or not)
    data = _shape(**values).replace("</Props>", gap + "</Props>").encode("utf-8", "surrogatepass")
    _assert_agrees(loads_fragment, lambda d: _fragment_expat(d, 64, 1000), data)


def _outcome(decode: Callable[[bytes], object], data: bytes | str) -> object:
    try:
        return decode(data)  # type: ignore[arg-type]
    except DecodeError:
        return "error"


def _assert_agrees(
    fast: Callable[[bytes], object], reference: Callable[[bytes], object], data: bytes | str,
) -> None:
    """The same value (strictly: types, type names, aliasing…) or an error from both."""
    expected = _outcome(reference, data)
    got = _outcome(fast, data)
    assert got == expected if isinstance(expected, str) else _compiled.same(got, expected)


def test_document_fast_path_matches_expat_with_refs_across_objects() -> None:
    objs = "".join(
        f"<Obj RefId='{2 * i}'><TN RefId='{i}'><T>T{i % 2}</T></TN><MS><S N='Name'>n{i}</S>"
        f"<Obj N='Tags' RefId='{2 * i + 1}'><LST><S>x</S><I64>{i}</I64></LST></Obj>"
        f"<Ref N='Again' RefId='{2 * i + 1}' /></MS></Obj>".replace("'", '"')
        for i in range(6)
    )
    doc = f'<Objs Version="1.1.0.1" {NS}>{objs}</Objs>'
    fast = loads(doc)
    again = loads(doc.encode())
    reference = _loads_expat(doc)
    assert len(fast) == 6
    for a, b, c in zip(fast, again, reference, strict=True):
        assert _compiled.same(a, c) and _compiled.same(b, c)
        assert b["Again"] is b["Tags"] and b["Tags"] == ["x", 5 if b["Name"] == "n5" else
                                                         int(b["Name"][1:])]
    # a text containing RefId="…" must not shift the RefIds the builder reads
    tricky = doc.replace("<S N=\"Name\">n3</S>", '<S N="Name">RefId="99"</S>')
    assert _compiled.same(loads(tricky)[3], _loads_expat(tricky)[3])


def _service_document(names: list[str], link: bool = True) -> str:
    """Objects of one shape after the first (which has the <TN>; the rest a <TNRef>), each
    referring to the previous object's list, as Export-Clixml writes shared values."""
    objs = []
    for i, name in enumerate(names):
        tn = ("<TN RefId='0'><T>X.Svc</T><T>System.Object</T></TN>" if i == 0
              else "<TNRef RefId='0' />")
        ref = (f"<Ref N='Prev' RefId='{2 * i - 1}' />" if link and i
               else "<Nil N='Prev' />")
        objs.append(f"<Obj RefId='{2 * i}'>{tn}<ToString>{name}</ToString><MS>"
                    f"<S N='Name'>{name}</S><Obj N='Deps' RefId='{2 * i + 1}'><LST><S>{name}"
                    f"</S></LST></Obj>{ref}</MS></Obj>")
    return f"<Objs Version='1.1.0.1' {NS}>{''.join(objs)}</Objs>".replace("'", '"')


def test_document_objects_of_a_known_shape_are_decoded_by_matchers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    splits = _counting_split(monkeypatch)
    names = [f"svc{i}" for i in range(50)]
    doc = _service_document(names)
    values = loads(doc)
    # object 0 (with <TN>) and object 1 (the first <TNRef> one) teach their shapes; the other
    # 48 are served by object 1's matcher, RefIds and all
    assert splits[0] == 2
    assert all(_compiled.same(a, b) for a, b in zip(values, _loads_expat(doc), strict=True))
    assert values[7]["Prev"] is values[6]["Deps"] and values[7]["Deps"] == ["svc7"]
    assert values[49].type_names == ["X.Svc", "System.Object"]
    assert values[49].type_names is values[1].type_names  # one list, as <TNRef> means


def test_document_matchers_take_enum_type_names_from_each_document() -> None:
    # the enum's <TN> is in the first object, the later objects' <TNRef> says which: a
    # matcher learned on one document must not hand out that document's enum type to another
    def doc(enum_type: str) -> str:
        objs = "".join(
            f"<Obj RefId='{2 * i}'>"
            + ("<TN RefId='0'><T>X.Row</T></TN>" if i == 0 else "<TNRef RefId='0' />")
            + f"<MS><Obj N='State' RefId='{2 * i + 1}'>"
            + (f"<TN RefId='1'><T>{enum_type}</T><T>System.Enum</T></TN>" if i == 0
               else "<TNRef RefId='1' />")
            + "<ToString>Running</ToString><I32>4</I32></Obj></MS></Obj>"
            for i in range(4))
        return f"<Objs {NS}>{objs}</Objs>".replace("'", '"')

    assert loads(doc("A.State"))[3]["State"].type_names[0] == "A.State"
    other = loads(doc("B.State"))
    assert [v["State"].type_names[0] for v in other] == ["B.State"] * 4
    assert all(_compiled.same(a, b) for a, b in zip(other, _loads_expat(doc("B.State")),
                                                    strict=True))


@settings(max_examples=200, deadline=None, derandomize=True)
@given(_ODD_TEXTS, st.sampled_from(["0", "1", "x", "", "99"]))
def test_document_matchers_agree_with_expat(text: str, refid: str) -> None:
    loads(_service_document(["a", "b", "c"]))  # shapes and matchers known
    # an odd name, and a Ref to an arbitrary (maybe unknown) RefId, in a matched position
    doc = _service_document(["a", "b", text, "d"]).replace(
        '<Ref N="Prev" RefId="5" />', f'<Ref N="Prev" RefId="{refid}" />')
    _assert_agrees(loads, _loads_expat, doc.encode("utf-8", "surrogatepass"))


# --- found by an independent review of the fast paths (each: teach, then decode another input)

_HEAD = f'<Objs Version="1.1.0.1" {NS}>'


def _same_as_expat(doc: bytes | str) -> None:
    _assert_agrees(loads, _loads_expat, doc)


@pytest.mark.parametrize("number", ["5", "&#53;"])
def test_a_builder_failing_part_way_leaves_no_refids_behind(number: str) -> None:
    # The object's inner <Obj> reuses RefId 1 (PowerShell never does; a hostile peer may).
    # A builder registers it, then fails on the entity in the number; the object used to be
    # re-decoded against those half-made registrations (its <Ref> then saw "I", not "A").
    first = '<Obj RefId="1"><ToString>A</ToString><Props><S N="k">a</S></Props></Obj>'

    def second(n: str) -> str:
        return ('<Obj RefId="2"><Props><Ref N="r" RefId="1" /><Obj N="inner" RefId="1">'
                '<ToString>I</ToString><Props><S N="k">i</S></Props></Obj>'
                f'<I32 N="n">{n}</I32></Props></Obj>')

    teach = _HEAD + first + second("5") + "</Objs>"
    loads(teach)
    loads(teach)
    doc = _HEAD + first + second(number) + "</Objs>"
    _same_as_expat(doc)
    assert loads(doc)[1]["r"].to_string == "A"


def test_a_list_holding_itself_after_a_refid_reuse_matches_expat() -> None:
    a = '<Obj RefId="{a}"><MS><S N="n">A</S></MS></Obj>'
    b = ('<Obj RefId="{b}"><LST><Ref RefId="{r1}" /><Obj RefId="{i}"><MS><S N="n">inner</S>'
         '</MS></Obj><Ref RefId="{r2}" /></LST></Obj>')

    def doc(**ids: str) -> str:
        return _HEAD + a.format(**ids) + b.format(**ids) + "</Objs>"

    loads(doc(a="0", b="1", r1="0", i="2", r2="2"))
    loads(doc(a="0", b="1", r1="0", i="2", r2="2"))
    _same_as_expat(doc(a="0", b="1", r1="0", i="0", r2="1"))


def test_refids_holding_tabs_or_newlines_are_normalised_as_xml_says() -> None:
    # expat turns tab/LF/CR in attribute values into spaces: "x\ty" and "x y" are one RefId
    def obj(refid: str, text: str) -> str:
        return (f'<Obj RefId="{refid}"><ToString>{text}</ToString>'
                '<Props><S N="k">x</S></Props></Obj>')

    def ref(refid: str, target: str) -> str:
        return f'<Obj RefId="{refid}"><Props><Ref N="r" RefId="{target}" /></Props></Obj>'

    teach = _HEAD + obj("0", "a") + obj("1", "b") + ref("2", "0") + "</Objs>"
    loads(teach)
    loads(teach)
    doc = _HEAD + obj("x y", "A") + obj("x\ty", "B") + ref("2", "x y") + "</Objs>"
    _same_as_expat(doc)
    assert loads(doc)[2]["r"].to_string == "B"

    def typed(refid: str, tn: str, name: str) -> str:
        return (f'<Obj RefId="{refid}"><TN RefId="{tn}"><T>{name}</T></TN>'
                '<Props><S N="k">x</S></Props></Obj>')

    def tnref(refid: str, tn: str) -> str:
        return f'<Obj RefId="{refid}"><TNRef RefId="{tn}" /><Props><S N="k">x</S></Props></Obj>'

    teach = _HEAD + typed("0", "0", "Foo") + typed("1", "1", "Bar") + tnref("2", "0") + "</Objs>"
    loads(teach)
    loads(teach)
    doc = _HEAD + typed("0", "t 1", "Foo") + typed("1", "t\n1", "Bar") + tnref("2", "t 1")
    _same_as_expat(doc + "</Objs>")
    assert loads(doc + "</Objs>")[2].type_names == ["Bar"]


@pytest.mark.parametrize("char", ["\ufffe", "\uffff"])
def test_noncharacters_xml_forbids_are_errors_on_every_path(char: str) -> None:
    # Python decodes U+FFFE/U+FFFF from UTF-8; XML forbids them, so expat rejects the input
    fragment = '<Obj RefId="0"><MS><S N="a">{}</S></MS></Obj>'
    for _ in range(2):
        loads_fragment(fragment.format("x").encode())
        loads(_HEAD + fragment.format("x") + "</Objs>")
    for data in (fragment.format(char).encode(), "\ufeff" + fragment.format(char)):
        with pytest.raises(DecodeError, match="not well-formed"):
            loads_fragment(data)
    with pytest.raises(DecodeError, match="not well-formed"):
        loads(_HEAD + fragment.format(char) + "</Objs>")


def test_texts_full_of_greater_than_signs_are_split_in_linear_time() -> None:
    # ">" is legal in text (PowerShell writes "&gt;"); the split used to rescan from every ">"
    data = b'<Obj RefId="0"><LST>' + b">" * 80_000 + b"<S>x</S></LST></Obj>"
    started = time.perf_counter()
    assert loads_fragment(data) == ["x"]
    assert loads(_HEAD.encode() + data + b"</Objs>") == [["x"]]
    assert time.perf_counter() - started < 2.0  # quadratic: 13 s; linear: milliseconds


def test_megabyte_type_names_are_not_compiled_into_shapes() -> None:
    started = time.perf_counter()
    for i in range(8):
        name = f"T{i}" * (1 << 19)  # ~1 MiB, a new shape each time
        value = loads_fragment(f'<Obj RefId="0"><TN RefId="0"><T>{name}</T></TN><MS>'
                               f'<S N="p{i}">x</S></MS></Obj>')
        assert value.type_names == [name] and value[f"p{i}"] == "x"
    assert time.perf_counter() - started < 5.0  # compiled: ~0.65 s per MiB
    assert all(shape is None for shape in _compiled.FRAGMENTS.shapes.values())
    assert _matcher_count(_compiled.FRAGMENTS) == 0
    assert _compiled.FRAGMENTS.key_bytes < 4096


def test_bytes_subclasses_are_bytes() -> None:
    class Payload(bytes):
        pass

    assert loads_fragment(Payload(b'<Obj RefId="0"><MS><S N="a">x</S></MS></Obj>'))["a"] == "x"


def test_unescape_joins_surrogate_pairs_whichever_way_it_decodes() -> None:
    assert unescape("\ud800\udc00_x000A_") == "\U00010000\n"
    assert unescape("\ud800\udc00_x0041_") == "\U00010000A"


def test_fast_paths_keep_limits() -> None:
    doc = f'<Objs {NS}>' + "".join(
        f'<Obj RefId="{i}"><MS><I32 N="a">{i}</I32></MS></Obj>' for i in range(30)) + "</Objs>"
    assert len(loads(doc)) == 30
    with pytest.raises(LimitExceededError, match="max_objects"):
        loads(doc, max_objects=29)
    loads_fragment(_shape().encode())
    with pytest.raises(LimitExceededError):
        loads_fragment(_shape().encode(), max_objects=1)


def _one_list_document(count: int) -> bytes:
    """``Export-Clixml -InputObject (Get-Service)``: ONE top-level object, its items in a LST."""
    items = b"".join(
        b'<Obj RefId="%d"><TNRef RefId="1" /><MS><S N="Name">svc%d</S><I32 N="Id">%d</I32>'
        b"</MS></Obj>" % (i + 2, i, i) if i else
        b'<Obj RefId="2"><TN RefId="1"><T>X.Svc</T><T>System.Object</T></TN><MS>'
        b'<S N="Name">svc0</S><I32 N="Id">0</I32></MS></Obj>'
        for i in range(count)
    )
    return (f'<Objs Version="1.1.0.1" {NS}>'.encode()
            + b'<Obj RefId="0"><TN RefId="0"><T>System.Object[]</T><T>System.Array</T>'
            b"<T>System.Object</T></TN><LST>" + items + b"</LST></Obj></Objs>")


def test_one_object_holding_a_long_list_is_decoded_in_linear_work(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Every "</Obj><Obj RefId=…>" between list items looks like a top-level boundary. The
    # pieces used to be re-joined and re-split until they balanced: O(n²) bytes scanned
    # (20 000 items: minutes). Now each byte is split once and the huge one-off skeleton is
    # neither compiled nor cached.
    count = 20_000
    doc = _one_list_document(count)
    real = _compiled.FRAGMENT_SPLIT
    scanned = [0]

    class CountingSplit:
        def split(self, data: bytes) -> list[bytes]:
            scanned[0] += len(data)
            return real.split(data)

    monkeypatch.setattr(_compiled, "FRAGMENT_SPLIT", CountingSplit())
    started = time.perf_counter()
    value = loads(doc)
    elapsed = time.perf_counter() - started
    assert scanned[0] < 2 * len(doc)  # (quadratic: ~19 GB here)
    assert elapsed < 5.0  # ~0.15 s; generous for a loaded 2-core machine
    assert len(value) == 1 and len(value[0]) == count
    assert value[0][12_345]["Name"] == "svc12345" and value[0][12_345]["Id"] == 12_345
    assert value[0][count - 1].type_names == ["X.Svc", "System.Object"]
    assert _compiled.same(value, _loads_expat(doc))
    assert _compiled.DOCUMENTS.shapes == {} and _compiled.DOCUMENTS.key_bytes == 0


def test_shape_caches_skip_huge_keys() -> None:
    # one PSRP message holding a long list: its skeleton is never cached (bounded memory)
    items = "".join(f"<I32>{i}</I32>" for i in range(20_000))
    for _ in range(2):
        assert loads_fragment(f"<Obj RefId='0'><LST>{items}</LST></Obj>") == list(range(20_000))
    assert _compiled.FRAGMENTS.shapes == {} and _compiled.FRAGMENTS.learned == 0
    small = "<Obj RefId='0'><LST><I32>1</I32></LST></Obj>"
    assert loads_fragment(small) == [1]
    assert len(_compiled.FRAGMENTS.shapes) == 1
    (key, shape), = _compiled.FRAGMENTS.shapes.items()
    (bucket,) = _compiled.FRAGMENTS.matchers.values()
    assert shape is not None and len(bucket.members) == 1
    # the budget counts what the shape holds: its key, embedded type names and generated code,
    # its matcher and the bucket's compiled regex
    assert _compiled.FRAGMENTS.key_bytes == (len(key) + shape.weight + bucket.members[0].weight
                                             + bucket.weight)
    # a matcher in a bucket keeps no standalone regex or builder: the bucket's serve it
    assert bucket.members[0].match is None and bucket.members[0].build is None


@pytest.mark.parametrize(
    "text",
    ["sNaN", "NaN", "-Infinity", "1E+999999999", "79228162514264337593543950336",
     "-79228162514264337593543950336"],
)
def test_decimal_outside_system_decimal_is_a_decode_error(text: str) -> None:
    # .NET never writes these for <D>; sNaN used to leak decimal.InvalidOperation (twice: the
    # second call takes the learned-shape path) and 1E+999999999 exploded when re-encoded
    for _ in range(2):
        with pytest.raises(DecodeError, match=r"System\.Decimal") as info:
            loads_fragment(f"<D>{text}</D>".encode())
        assert info.value.position is not None
    doc = (f'<Objs {NS}><Obj RefId="0"><MS><D N="d">1</D></MS></Obj>'
           f'<Obj RefId="1"><MS><D N="d">{text}</D></MS></Obj></Objs>')
    for decode in (loads, _loads_expat):  # the fast path and the reference agree
        with pytest.raises(DecodeError, match=r"System\.Decimal"):
            decode(doc)


def test_decimal_range_limits_are_exact() -> None:
    assert loads_fragment(b"<D>79228162514264337593543950335</D>") == Decimal(2**96 - 1)
    assert loads_fragment(b"<D>-79228162514264337593543950335</D>") == Decimal(-(2**96 - 1))
    assert loads_fragment(b"<D> -0.0000000001 </D>") == Decimal("-1E-10")


def test_shape_verification_that_raises_admits_nothing() -> None:
    # comparing with a signalling NaN raises; learning must return the reference value and
    # keep the shape on the reference path instead of leaking decimal.InvalidOperation
    parts = _compiled.FRAGMENT_SPLIT.split(b"<D>1</D>")
    key = b"\x00".join(parts[0::2])
    value = _compiled.FRAGMENTS.learn(key, parts, None, {}, {}, lambda: Decimal("sNaN"))
    assert value.is_snan()
    assert _compiled.FRAGMENTS.shapes == {key: None}


@pytest.mark.parametrize(
    "spelling", ["RefId='{}'", 'RefId = "{}"', '\tRefId="{}"', 'RefId="{}" xRefId="9{}"'],
)
def test_refid_spellings_resolve_like_the_reference_path(spelling: str) -> None:
    # The run-time RefId split used to match inside xRefId="…" and miss RefId='…', while
    # the compiler saw the opposite: <Ref> then resolved to a different object than expat's.
    def obj(index: int) -> str:
        tag = spelling.format(index, index)
        return (f'<Obj RefId="{1000 + index}"><MS><Obj N="in" {tag}><MS><S N="t">t{index}</S>'
                f'</MS></Obj><S N="a" xRefId="{500 + index}">x</S></MS></Obj>')

    objs = "".join(obj(i) for i in range(6))
    refs = "".join(f'<Obj RefId="{2000 + i}"><MS><Ref N="r" RefId="{i}" /></MS></Obj>'
                   for i in range(6))
    doc = f'<Objs Version="1.1.0.1" {NS}>{objs}{refs}</Objs>'
    fast, reference = loads(doc), _loads_expat(doc)
    assert [v["r"]["t"] for v in fast[6:]] == ["t0", "t1", "t2", "t3", "t4", "t5"]
    assert _compiled.same(fast, reference)
    # Refs to numbers only xRefId attributes carry are errors on both paths (the fast path
    # used to resolve them to the inner objects)
    broken = doc.replace('<Ref N="r" RefId="', '<Ref N="r" RefId="50')
    for decode in (loads, _loads_expat):
        with pytest.raises(DecodeError, match="unknown RefId '500'"):
            decode(broken)


def test_refid_like_text_between_tags_does_not_shift_refids() -> None:
    # text before a child element stays in the tags the RefId split scans: such a shape is
    # refused by the compiler (the expat path ignores that text)
    objs = "".join(f'<Obj RefId="{i}"><MS> RefId="77"<S N="t">t{i}</S></MS></Obj>'
                   for i in range(4))
    doc = (f'<Objs {NS}>{objs}<Obj RefId="9"><MS><Ref N="r" RefId="2" /></MS></Obj></Objs>')
    fast = loads(doc)
    assert fast[4]["r"]["t"] == "t2"
    assert _compiled.same(fast, _loads_expat(doc))


def test_value_caches_keep_no_huge_texts(monkeypatch: pytest.MonkeyPatch) -> None:
    # the enum / type-name / TimeSpan caches are process-wide and were bounded by count only:
    # 200 hostile 1 MiB enum names stayed alive (400 MiB). Long texts are now never cached.
    from hvmagic.clixml import decode as decode_module

    monkeypatch.setattr(_compiled, "_ENUMS", {})
    monkeypatch.setattr(_compiled, "_TYPE_NAMES", {})
    monkeypatch.setattr(decode_module, "_TIMESPANS", {})

    def enum(to_string: str, type_name: str = "My.Color") -> bytes:
        return (f'<Obj RefId="0"><TN RefId="0"><T>{type_name}</T><T>System.Enum</T>'
                f"<T>System.ValueType</T><T>System.Object</T></TN><ToString>{to_string}"
                "</ToString><I32>1</I32></Obj>").encode()

    for _ in range(3):
        assert loads_fragment(enum("Red")).name == "Red"
    assert [key[1] for key in _compiled._ENUMS] == [b"Red"]
    for index in range(20):
        long_name = f"{index}" + "A" * 1000
        assert loads_fragment(enum(long_name)).name == long_name
    assert [key[1] for key in _compiled._ENUMS] == [b"Red"]

    long_type = "T" * 5000
    for index in range(3):
        value = loads_fragment(enum("Red", f"{long_type}{index}"))
        assert value.type_names[0] == f"{long_type}{index}" and value.name == "Red"
    assert all(sum(map(len, key)) <= 4096 for key in _compiled._TYPE_NAMES)
    assert any(key[0] == b"My.Color" for key in _compiled._TYPE_NAMES)

    long_span = "PT1." + "0" * 300 + "S"
    assert loads_fragment(f"<TS>{long_span}</TS>".encode()) == dt.timedelta(seconds=1)
    assert loads_fragment(b"<TS>PT2S</TS>") == dt.timedelta(seconds=2)
    assert list(decode_module._TIMESPANS) == ["PT2S"]


def test_ref_resolves_in_document_order_with_duplicate_refids() -> None:
    # A <Ref> used to be looked up inside the parent's final dict literal, after the nested
    # objects had registered their RefIds: with a RefId reused by a LATER object it resolved
    # to that object instead of the earlier one (the reference path's answer).
    def obj(own: int, ref: int, inner: int, text: str) -> str:
        return (f'<Obj RefId="{own}"><MS><Ref N="b" RefId="{ref}" /><Obj N="a" RefId="{inner}">'
                f'<MS><S N="t">{text}</S></MS></Obj></MS></Obj>')

    doc = (f'<Objs Version="1.1.0.1" {NS}><Obj RefId="0"><MS><S N="t">old</S></MS></Obj>'
           + obj(1, 0, 2, "x") + obj(3, 0, 0, "new") + obj(4, 0, 5, "y") + "</Objs>")
    fast = loads(doc)
    assert [v["b"]["t"] for v in fast[1:]] == ["old", "old", "new"]
    assert fast[2]["b"] is fast[0] and fast[3]["b"] is fast[2]["a"]
    assert _compiled.same(fast, _loads_expat(doc))
    assert any(shape is not None for shape in _compiled.DOCUMENTS.shapes.values())


@pytest.mark.parametrize(
    "number", ['<Db N="PercentComplete">INF</Db>', '<Db N="PercentComplete">NaN</Db>',
               '<Db N="SecondsRemaining">-INF</Db>', '<S N="ActivityId">two</S>'],
)
def test_progress_record_with_unconvertible_numbers_is_a_decode_error(number: str) -> None:
    payload = f'<Obj RefId="0"><MS><S N="Activity">a</S>{number}</MS></Obj>'.encode()
    with pytest.raises(DecodeError, match="malformed PROGRESS_RECORD"):
        loads_fragment(payload, as_type=ProgressRecord)
    good = b'<Obj RefId="0"><MS><S N="Activity">a</S><Db N="PercentComplete">42.0</Db></MS></Obj>'
    record = loads_fragment(good, as_type=ProgressRecord)
    assert record.activity == "a" and record.percent_complete == 42
