"""Corrections for known defects of psrpcore (0.3.1), and the one hook hvmagic adds to it,
installed when hvmagic's PSRP client loads.

Only what was seen to be wrong against real PowerShell is corrected here, each with the test
that shows it; everything else of psrpcore is used as it is.

* **TimeSpan seconds lose their zeros.** psrpcore writes a TimeSpan's seconds as
  ``f"{s:.7f}".rstrip(".0")``, which strips the zeros of whole tens as well: 10 s goes out as
  ``PT1S`` and 90 s as ``PT1M3S``. PowerShell 7.6.9 receives ``timedelta(seconds=90)`` as 63
  seconds (``tests/pwsh/test_frame_parameters.py`` and
  ``tests/pwsh/test_timespan_parameters.py``).
  psrpcore's serializer is pointed at hvmagic's own TimeSpan formatting, which the CLIXML
  encoder already uses.

The hook: **values hvmagic encoded itself.** Parameters and host responses are written by
:func:`hvmagic.clixml.dumps` — the encoder recordings use too, so a live run and a recorded
one accept the same values and send the same CLIXML — and handed to psrpcore as
:class:`Encoded`. psrpcore's serializer inserts such an element as it is, with its ``RefId``\\ s
moved past the ones psrpcore already gave out in the same message (PowerShell resolves a
``<Ref>`` by its id within the whole message).
"""

from __future__ import annotations

import datetime as _dt
from typing import Any
from xml.etree import ElementTree

from psrpcore.types import _serializer

from hvmagic.clixml.encode import format_timespan_ticks


def _serialize_duration(value: _dt.timedelta) -> str:
    # PSDuration carries nanoseconds beyond the microsecond; .NET keeps 100-ns ticks
    nanoseconds = getattr(value, "nanoseconds", 0) or 0
    micro = (value.days * 86_400 + value.seconds) * 1_000_000 + value.microseconds
    return format_timespan_ticks(micro * 10 + nanoseconds // 100)


class Encoded:
    """One value already written as a CLIXML element by :func:`hvmagic.clixml.dumps`."""

    __slots__ = ("clixml",)

    def __init__(self, clixml: str) -> None:
        self.clixml = clixml

    def __repr__(self) -> str:
        return f"<Encoded {len(self.clixml)} chars>"


def _adopt(serializer: Any, clixml: str) -> ElementTree.Element:
    """``clixml`` as an element of the message ``serializer`` is writing: object and type-name
    ``RefId``\\ s shifted past the ones the serializer has used (dumps numbers both from 0)."""
    element = ElementTree.fromstring(clixml)
    objects = serializer._obj_ref_id
    type_lists = len(serializer._tn_ref_list)
    new_objects = new_type_lists = 0
    for node in element.iter():
        ref = node.get("RefId")
        if ref is None:
            continue
        number = int(ref)
        if node.tag in ("Obj", "Ref"):
            node.set("RefId", str(objects + number))
            new_objects = max(new_objects, number + 1)
        else:  # TN / TNRef
            node.set("RefId", str(type_lists + number))
            new_type_lists = max(new_type_lists, number + 1)
    serializer._obj_ref_id += new_objects
    # psrpcore numbers type-name lists by their position in this list: reserve the positions
    # with names no real type has
    serializer._tn_ref_list.extend(f"\0hvmagic {type_lists + n}" for n in range(new_type_lists))
    return element


_psrpcore_serialize = _serializer._Serializer.serialize


def _serialize(self: Any, value: Any) -> ElementTree.Element:
    if type(value) is Encoded:
        return _adopt(self, value.clixml)
    return _psrpcore_serialize(self, value)


def apply() -> None:
    """Install the corrections and the hook (idempotent)."""
    _serializer._serialize_duration = _serialize_duration  # type: ignore[attr-defined,unused-ignore]
    _serializer._Serializer.serialize = _serialize  # type: ignore[method-assign]
