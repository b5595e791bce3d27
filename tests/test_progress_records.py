"""One ProgressRecord builder and one stream map.

A progress record reaches hvmagic three ways — a PROGRESS_RECORD message (a property bag), a
``<PR>`` element in a CLIXML document, a recording's JSON — and all three are built by
:meth:`ProgressRecord.from_properties`, so the same data gives the same record whichever way it
came, and hostile numbers are handled the same way (a default for the live client and a
recording, a ``DecodeError`` for the strict decoder). The records of each stream land in the
Result list :data:`hvmagic.session.RESULT_LISTS` names, live, replayed and in a fleet.
"""

from __future__ import annotations

import dataclasses
from decimal import Decimal
from typing import Any

import pytest

from hvmagic.clixml import STREAMS, dumps, loads, loads_fragment
from hvmagic.clixml.values import ProgressRecord, PSEnum, PSObject
from hvmagic.errors import DecodeError
from hvmagic.psrp.client import normalise_record
from hvmagic.recording import _decode_event, _encode_event
from hvmagic.session import RESULT_LISTS, Result

RECORD = ProgressRecord("Copying files", 3, "4 of 10", "a.txt", 1, 40, 12, "Processing")

#: the same record as PowerShell's PROGRESS_RECORD property bag (MS-PSRP 2.2.2.25)
BAG = PSObject({
    "Activity": "Copying files", "ActivityId": 3, "StatusDescription": "4 of 10",
    "CurrentOperation": "a.txt", "ParentActivityId": 1, "PercentComplete": 40,
    "SecondsRemaining": 12,
    "Type": PSEnum(0, "Processing", ["System.Management.Automation.ProgressRecordType"]),
})


def _bag(**changes: Any) -> PSObject:
    return PSObject({**BAG.properties, **changes})


def _bag_xml(**changes: Any) -> bytes:
    return dumps(_bag(**changes)).encode("utf-8")


def test_every_source_builds_the_same_record() -> None:
    assert normalise_record("progress", BAG) == RECORD  # the live client
    assert loads_fragment(_bag_xml(), as_type=ProgressRecord) == RECORD  # the decoder's hint
    assert loads(dumps(RECORD)) == [RECORD]  # a <PR> element
    assert _decode_event(_encode_event("progress", RECORD, 0.5)) == ("progress", RECORD)


def test_the_record_type_may_come_as_its_number() -> None:
    completed = _bag(Type=1)
    assert normalise_record("progress", completed).record_type == "Completed"
    assert loads_fragment(_bag_xml(Type=1), as_type=ProgressRecord).record_type == "Completed"
    assert normalise_record("progress", _bag(Type=0)).record_type == "Processing"


@pytest.mark.parametrize(("number", "element"), [
    (Decimal("79228162514264337593543950335"),
     '<D N="PercentComplete">79228162514264337593543950335</D>'),
    (2**31, '<I64 N="PercentComplete">2147483648</I64>'),
    (float("inf"), '<Db N="PercentComplete">INF</Db>'),
    ("two", '<S N="PercentComplete">two</S>'),
])
def test_a_hostile_number_gets_its_default_live_and_is_an_error_to_the_strict_decoder(
    number: Any, element: str,
) -> None:
    record = normalise_record("progress", _bag(PercentComplete=number))
    assert record.percent_complete == -1 and record.activity == "Copying files"
    payload = _bag_xml().replace(b'<I32 N="PercentComplete">40</I32>', element.encode())
    assert element.encode() in payload
    with pytest.raises(DecodeError, match="malformed PROGRESS_RECORD"):
        loads_fragment(payload, as_type=ProgressRecord)
    assert normalise_record("progress", loads_fragment(payload)).percent_complete == -1


def test_a_pr_element_with_an_out_of_range_number_is_a_decode_error() -> None:
    text = dumps(RECORD).replace("<AI>3</AI>", f"<AI>{2**40}</AI>")
    with pytest.raises(DecodeError):
        loads(text)


def test_a_recorded_progress_event_is_read_by_the_same_builder() -> None:
    # a hand-edited or older recording: an unknown field, a number as text, one missing
    event = {"t": 0, "stream": "progress", "progress": {
        "activity": "Copying files", "activity_id": "3", "status_description": "4 of 10",
        "percent_complete": "lots", "colour": "blue"}}
    stream, record = _decode_event(event)
    assert stream == "progress"
    assert record == ProgressRecord("Copying files", 3, "4 of 10")


def test_one_stream_map_names_a_result_list_for_every_stream() -> None:
    assert tuple(RESULT_LISTS) == STREAMS
    lists = {f.name for f in dataclasses.fields(Result) if f.type.startswith("list")}
    assert set(RESULT_LISTS.values()) == lists
    result = Result()
    for stream, attribute in RESULT_LISTS.items():
        getattr(result, attribute).append(stream)
    assert repr(result).count(" 1 ") == len(STREAMS)  # the repr counts every list
