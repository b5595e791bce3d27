"""One type table: what a live run sends as a parameter is what ``hvmagic.clixml.dumps`` writes.

A recording writes a run's parameters with :func:`hvmagic.clixml.dumps`; the live path sends
them through the PSRP client. Every value one accepts the other accepts, as the same CLIXML
(compared element by element, RefIds renumbered), and every value one refuses the other
refuses with the same :class:`EncodeError`. The live side is read from the CREATE_PIPELINE
message the client really writes, with the session's wrapper script and parameter table.
PowerShell's side of the same question is ``tests/pwsh/test_parameter_parity.py``.
"""

from __future__ import annotations

import collections
import datetime as dt
import decimal
import enum
import types
import uuid
from typing import Any
from xml.etree import ElementTree

import numpy as np
import pandas as pd
import pytest
from psrpcore.types import HostMethodIdentifier, PSRPMessageType

from hvmagic.clixml import MAX_DEPTH, dumps
from hvmagic.clixml.values import (
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
)
from hvmagic.errors import EncodeError
from hvmagic.psrp.client import HostCall, PSRPClient
from hvmagic.psrp.messages import FragmentAssembler
from hvmagic.psrp.outofproc import PacketKind, PacketReader, control_packet
from hvmagic.session import WRAPPER_SCRIPT
from tests.test_psrp_client import ServerPeer, exchange


class Colour(enum.Enum):
    RED = 3


class Level(enum.IntEnum):
    HIGH = 2**40


class Word(str, enum.Enum):
    HELLO = "hello"


def _nested(levels: int) -> Any:
    """A value ``levels`` deep: lists around an int (the int is the last level)."""
    value: Any = 1
    for _ in range(levels - 1):
        value = [value]
    return value


_TICKED = PSDateTime(2024, 1, 2, 3, 4, 5, 123456, tzinfo=dt.timezone.utc)
_TICKED.tick_remainder = 7
_SPAN = PSTimeSpan(days=2, microseconds=5)
_SPAN.tick_remainder = 3
_SHARED = ["shared"]
_CYCLE: list[Any] = ["me"]
_CYCLE.append(_CYCLE)

#: values of every kind the live path has accepted, and what ``dumps`` accepts
ACCEPTED: dict[str, Any] = {
    "none": None, "bool": True, "i32": -5, "i64": 2**40, "u64": 2**63, "float": 1.5,
    "nan": float("nan"), "inf": float("-inf"), "decimal": decimal.Decimal("-1.10"),
    "bigdecimal": decimal.Decimal("1E+20"), "str": "x", "hostile": "'; $(whoami) _x0041_ \r\n",
    "astral": "emoji 🙂 日本", "char": PSChar("é"), "uri": PSUri("https://example.com/a?b=1"),
    "xml": PSXmlDocument('<a x="1"><b>t</b></a>'), "block": PSScriptBlock("1 + 1"),
    "bytes": b"\x00\x01\xff", "bytearray": bytearray(b"ab"), "memoryview": memoryview(b"cd"),
    "naive": dt.datetime(2024, 1, 2, 3, 4, 5, 678901), "ticked": _TICKED,
    "offset": dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.timezone(dt.timedelta(hours=-4))),
    "date": dt.date(2024, 2, 29), "span": dt.timedelta(days=-1, seconds=90), "tickspan": _SPAN,
    "guid": uuid.UUID(int=1), "version": PSVersion(10, 0, 17763),
    "psenum": PSEnum(4, "Running", ["System.ServiceProcess.ServiceControllerStatus",
                                    "System.Enum", "System.ValueType", "System.Object"]),
    "bareenum": PSEnum(2, "Two"), "pyenum": Colour.RED, "intenum": Level.HIGH,
    "strenum": Word.HELLO,
    "list": [1, "a", None], "tuple": (1, 2), "set": {"b", "a", "c"}, "frozenset": frozenset({3, 1}),
    "mixedset": {1, "a"}, "dict": {"a": 1, "b": [2]}, "ordered": collections.OrderedDict(z=1, a=2),
    "mapping": types.MappingProxyType({"k": "v"}), "intkeys": {1: "x", "1": "y"},
    "custom": PSObject({"A": 1, "B": [1, 2]}, ["My.Type", "System.Object"]),
    "adapted": PSObject({"Name": "x", "Extra": 1}, ["My.Item"], "x", adapted=("Name",)),
    "wrapped": PSObject({}, ["My.Wrapped"], None, 5),
    "progress": ProgressRecord("Copy", 2, "half", "file.txt", 1, 50, 9, "Processing"),
    "shared": {"a": _SHARED, "b": _SHARED}, "cycle": _CYCLE,
    "np_int": np.int64(5), "np_big": np.int64(2**40), "np_uint": np.uint8(7),
    "np_float32": np.float32(0.5), "np_float64": np.float64(2.5), "np_bool": np.bool_(True),
    "np_str": np.str_("numpy text"), "np_array": np.array([1, 2, 3]),
    "np_matrix": np.array([[1.5, 2.5], [3.5, 4.5]]),
    "np_datetime": np.datetime64("2024-01-02T03:04:05"),
    "pd_series": pd.Series([1.5, None]), "pd_timestamp": pd.Timestamp("2024-01-02 03:04:05.25"),
    "pd_timedelta": pd.Timedelta(seconds=90),
    "deepest": _nested(MAX_DEPTH),
}

#: values neither path may send (PowerShell's deserializer would refuse most of them, failing
#: the whole message: the guest never answers and the session is lost)
REJECTED: dict[str, Any] = {
    "object": object(), "toobig": 2**64, "toosmall": -(2**63) - 1,
    "decimal_nan": decimal.Decimal("NaN"), "decimal_huge": decimal.Decimal("1E+30"),
    "twochars": PSChar("ab"), "astralchar": PSChar("🙂"),
    "secondsoffset": dt.datetime(2024, 1, 1, tzinfo=dt.timezone(dt.timedelta(seconds=30))),
    "longspan": dt.timedelta(days=20_000_000), "badxml": PSXmlDocument("<a><b></a>"),
    "nullkey": {None: 1}, "negativeversion": PSVersion(-1, 0),
    "progress_nostatus": ProgressRecord("Copy", 1),
    "progress_noactivity": ProgressRecord("", 1, "s"),
    "progress_percent": ProgressRecord("a", 1, "s", percent_complete=101),
    "progress_own_parent": ProgressRecord("a", 1, "s", parent_activity_id=1),
    "progress_negative_id": ProgressRecord("a", -1, "s"),
    "progress_type": ProgressRecord("a", 1, "s", record_type="Paused"),
    "too_deep": _nested(MAX_DEPTH + 1),
    "too_deep_in_object": {"x": PSObject({"P": _nested(MAX_DEPTH)})},
    "np_dtype": np.dtype("int64"), "pd_na": pd.NA, "function": len,
}


def _open_client() -> PSRPClient:
    client = PSRPClient()
    client.open()
    exchange(client, ServerPeer())
    assert client.opened
    return client


@pytest.fixture(scope="module")
def client() -> PSRPClient:
    return _open_client()


def _packets(data: bytes) -> list[Any]:
    reader = PacketReader()
    reader.receive_data(data)
    packets = []
    while (packet := reader.next_packet()) is not None:
        packets.append(packet)
    return packets


def sent_as(client: PSRPClient, value: Any) -> ElementTree.Element:
    """The element parameter ``P`` goes out as, inside the parameter table of the wrapper
    script, exactly as :meth:`hvmagic.session.Session.run` sends it."""
    pid = client.start_script(
        WRAPPER_SCRIPT, {"__hvmagic_script": "$P", "__hvmagic_parameters": {"P": value}},
        use_local_scope=False,
    )
    assert [p.kind for p in _packets(client.data_to_send())] == [PacketKind.COMMAND]
    client.receive_data(control_packet(PacketKind.COMMAND_ACK, pid))
    assembler = FragmentAssembler()
    messages = []
    while data := client.data_to_send():
        for packet in _packets(data):
            messages.extend(assembler.feed(packet.data))
        client.receive_data(control_packet(PacketKind.DATA_ACK, pid))
    (create,) = [m for m in messages
                 if m.message_type == PSRPMessageType.CreatePipeline.value]
    return _find_value(ElementTree.fromstring(create.body), "P")


def _find_value(root: ElementTree.Element, key: str) -> ElementTree.Element:
    """The value of ``key`` in a hashtable of ``root``, its type-name references resolved
    (a ``<TNRef>`` may point at a list first written outside the value)."""
    for entry in root.iter("En"):
        found = entry.find("*[@N='Key']")
        if found is not None and found.text == key:
            value = entry.find("*[@N='Value']")
            assert value is not None
            return _resolve_type_refs(value, root)
    raise AssertionError(f"{key} not found in the message")


def _resolve_type_refs(
    element: ElementTree.Element, root: ElementTree.Element
) -> ElementTree.Element:
    tables = {tn.get("RefId"): tn for tn in root.iter("TN")}
    element = ElementTree.fromstring(ElementTree.tostring(element))
    for parent in element.iter():
        for index, child in enumerate(list(parent)):
            if child.tag == "TNRef":
                parent.remove(child)
                parent.insert(index, tables[child.get("RefId")])
    return element


def canonical(element: ElementTree.Element) -> str:
    """``element`` with its name dropped, every type-name list written out (no ``<TNRef>``)
    and its object RefIds renumbered from 0 in document order (a message numbers them across
    all its objects, a lone ``dumps`` from 0)."""
    element = _resolve_type_refs(element, element)
    element.attrib.pop("N", None)
    numbers: dict[str, str] = {}
    for node in element.iter():
        ref = node.get("RefId")
        if node.tag == "TN":
            node.attrib.pop("RefId", None)
        elif ref is not None:
            node.set("RefId", numbers.setdefault(ref, str(len(numbers))))
    return ElementTree.tostring(element, encoding="unicode")


@pytest.mark.parametrize("name", list(ACCEPTED))
def test_every_value_goes_out_live_exactly_as_dumps_writes_it(
    client: PSRPClient, name: str
) -> None:
    value = ACCEPTED[name]
    written = dumps(value)
    assert canonical(sent_as(client, value)) == canonical(ElementTree.fromstring(written))


@pytest.mark.parametrize("name", list(REJECTED))
def test_a_value_refused_live_is_refused_by_dumps_with_the_same_error(
    client: PSRPClient, name: str
) -> None:
    value = REJECTED[name]
    with pytest.raises(EncodeError) as live:
        sent_as(client, value)
    with pytest.raises(EncodeError) as recorded:
        dumps(value)
    assert str(live.value) == str(recorded.value)
    assert client.data_to_send() == b""  # nothing of the refused run went out


def test_the_same_value_types_land_where_their_tags_say() -> None:
    # spot checks of the table itself, so a change to it is a decision, not an accident
    assert dumps(np.int64(5)) == "<I32>5</I32>" == dumps(5)
    assert dumps(np.bool_(False)) == "<B>false</B>"
    assert dumps(dt.date(2024, 2, 29)) == "<DT>2024-02-29T00:00:00.0000000</DT>"
    assert dumps(Colour.RED) == "<I32>3</I32>" and dumps(Word.HELLO) == "<S>hello</S>"
    assert "<LST><S>a</S><S>b</S><S>c</S></LST>" in dumps({"c", "a", "b"})  # sorted
    assert "<DCT><En><S N=\"Key\">k</S>" in dumps(types.MappingProxyType({"k": 1}))
    assert "<LST><I32>1</I32><I32>2</I32></LST>" in dumps(np.array([1, 2]))
    text = dumps(ACCEPTED["psenum"])
    assert "<T>System.ServiceProcess.ServiceControllerStatus</T>" in text
    assert "<ToString>Running</ToString><I32>4</I32>" in text


def test_secrets_go_out_under_the_session_key_as_dumps_writes_them() -> None:
    fresh = _open_client()
    with pytest.raises(EncodeError, match="secure_string_encryptor") as before:
        sent_as(fresh, PSObject({}, [], None, SecureString("pw")))
    assert "pw" not in str(before.value)
    peer = ServerPeer()
    keyed = PSRPClient()
    keyed.open()
    exchange(keyed, peer)
    keyed.exchange_key()
    exchange(keyed, peer)
    assert keyed.key_exchanged
    for value in (SecureString("pä$$"), PSCredential("CORP\\u", "pw"),
                  PSObject({}, ["Wrapped"], None, SecureString("x")), {"k": [SecureString("y")]}):
        element = sent_as(keyed, value)
        texts = [node.text for node in element.iter("SS")]
        assert texts and all(texts)
        # the session key is deterministic (AES-CBC, no IV): dumps with the client's
        # encryptor writes the very same ciphertext
        assert canonical(element) == canonical(ElementTree.fromstring(
            dumps(value, secure_string_encryptor=keyed._encrypt)))
    with pytest.raises(EncodeError, match="only ciphertext") as foreign:
        sent_as(keyed, SecureString(ciphertext=b"\x01\x02"))
    with pytest.raises(EncodeError) as written:
        dumps(SecureString(ciphertext=b"\x01\x02"), secure_string_encryptor=keyed._encrypt)
    assert str(foreign.value) == str(written.value)


def test_a_host_response_goes_out_as_dumps_writes_it() -> None:
    # the other way values reach the guest: the answer to a prompt (Read-Host and friends)
    peer = ServerPeer()
    client = PSRPClient()
    client.open()
    exchange(client, peer)
    pid = client.start_script("Read-Host")
    exchange(client, peer)
    peer.pipelines[pid].host_call(HostMethodIdentifier.ReadLine)
    client.receive_data(peer.flush())
    call = next(e for e in client.events() if isinstance(e, HostCall))
    answer = {"when": dt.date(2024, 1, 2), "n": np.int64(7), "e": ACCEPTED["psenum"]}
    client.host_response(call, answer)
    assembler = FragmentAssembler()
    messages = [m for p in _packets(client.data_to_send()) for m in assembler.feed(p.data)]
    (response,) = [m for m in messages
                   if m.message_type == PSRPMessageType.PipelineHostResponse.value]
    root = ElementTree.fromstring(response.body)
    (result,) = [n for n in root.iter() if n.get("N") == "mr"]
    assert canonical(_resolve_type_refs(result, root)) == canonical(
        ElementTree.fromstring(dumps(answer)))
    with pytest.raises(EncodeError) as refused:
        dumps({None: 1})
    # a refused answer reaches the guest as an error naming the reason (the session's rule)
    assert "None" in str(refused.value)
