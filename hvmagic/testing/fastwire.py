"""A direct CLIXML writer for the demo's objects (the simulated guest's bulk output path).

psrpcore's serializer builds an ElementTree per object and manages ~1 700 demo services/s here,
so a 20 000-service ``Get-Service`` would keep the simulated guest busy for 12 s before the
client decodes anything. :func:`demo_clixml` writes the same CLIXML (same elements, RefIds per
message, ``<TNRef>`` reuse, enums as ``<Obj><I32/><TN/><ToString/></Obj>``) as text, for the
value types demo objects hold, and raises :class:`Unsupported` for anything else so the caller
falls back to psrpcore. ``tests/test_fake_guest.py`` checks both writers decode to the same
values through psrpcore's deserializer.
"""

from __future__ import annotations

import datetime as _dt
import math
from typing import Any
from xml.sax.saxutils import escape, quoteattr

from psrpcore.types import PSInt64, PSUInt, PSUInt64
from psrpcore.types._serializer import (
    _serialize_datetime,
    _serialize_duration,
    _serialize_enum_to_string,
    _serialize_string,
)

_ARRAY_TYPES = ("System.Object[]", "System.Array", "System.Object")
_ENUM_TAIL = ("System.Enum", "System.ValueType", "System.Object")
_I32_MIN, _I32_MAX = -(1 << 31), (1 << 31) - 1


class Unsupported(Exception):
    """The value holds something this writer does not handle; use psrpcore instead."""


# Plain ASCII without markup or "_x" needs no escaping at all: the common case.
_ENUM_CACHE: dict[Any, tuple[tuple[str, ...], str]] = {}


def clixml_text(value: str) -> str:
    """``value`` as the text of a CLIXML ``<S>`` element (PowerShell's ``_xHHHH_`` escapes)."""
    if _is_plain(value):
        return value
    return escape(_serialize_string(value))


def _is_plain(value: str) -> bool:
    # C-speed string methods instead of one regex: a 1.4 MB base64 chunk is checked in ~1 ms.
    return (
        value.isascii()
        and value.isprintable()
        and "_x" not in value
        and "_X" not in value
        and "&" not in value
        and "<" not in value
        and ">" not in value
    )


_text = clixml_text


class _Writer:
    def __init__(self) -> None:
        self.parts: list[str] = []
        self._ref = 0
        self._type_refs: dict[tuple[str, ...], int] = {}

    def _next_ref(self) -> int:
        ref = self._ref
        self._ref += 1
        return ref

    def _type_names(self, names: tuple[str, ...]) -> None:
        ref = self._type_refs.get(names)
        if ref is not None:
            self.parts.append(f'<TNRef RefId="{ref}" />')
            return
        ref = len(self._type_refs)
        self._type_refs[names] = ref
        self.parts.append(f'<TN RefId="{ref}">')
        self.parts.extend(f"<T>{_text(n)}</T>" for n in names)
        self.parts.append("</TN>")

    @staticmethod
    def _name(name: str | None) -> str:
        if name is None:
            return ""
        if _is_plain(name) and '"' not in name:
            return f' N="{name}"'
        return f" N={quoteattr(_serialize_string(name))}"

    def value(self, value: Any, name: str | None = None) -> None:
        attr = self._name(name)
        parts = self.parts
        if value is None:
            parts.append(f"<Nil{attr} />")
        elif isinstance(value, bool):
            parts.append(f"<B{attr}>{'true' if value else 'false'}</B>")
        elif isinstance(value, str):
            parts.append(f"<S{attr}>{_text(value)}</S>")
        elif isinstance(value, int):
            member = getattr(value, "member", None)
            if member is not None:  # the demo's EnumValue
                self._enum(value, attr)
            elif type(value) is PSInt64:
                parts.append(f"<I64{attr}>{int(value)}</I64>")
            elif type(value) is PSUInt64:
                parts.append(f"<U64{attr}>{int(value)}</U64>")
            elif type(value) is PSUInt:
                parts.append(f"<U32{attr}>{int(value)}</U32>")
            elif type(value) is int:
                tag = "I32" if _I32_MIN <= value <= _I32_MAX else "I64"
                parts.append(f"<{tag}{attr}>{value}</{tag}>")
            else:
                raise Unsupported(type(value).__name__)
        elif type(value) is float:
            if not math.isfinite(value):
                raise Unsupported("non-finite double")
            parts.append(f"<Db{attr}>{repr(value).upper()}</Db>")
        elif isinstance(value, _dt.datetime):
            aware = value if value.tzinfo else value.astimezone()
            parts.append(f"<DT{attr}>{_serialize_datetime(aware)}</DT>")
        elif isinstance(value, _dt.timedelta):
            parts.append(f"<TS{attr}>{_serialize_duration(value)}</TS>")
        elif isinstance(value, list):
            parts.append(f'<Obj{attr} RefId="{self._next_ref()}">')
            self._type_names(_ARRAY_TYPES)
            parts.append("<LST>")
            for item in value:
                self.value(item)
            parts.append("</LST></Obj>")
        elif hasattr(value, "props") and hasattr(value, "type_names"):
            self.obj(value, name)
        else:
            raise Unsupported(type(value).__name__)

    def _enum(self, value: Any, attr: str) -> None:
        member = value.member
        cached = _ENUM_CACHE.get(member)
        if cached is None:
            type_names = tuple(member.PSObject.type_names)
            if type_names[-3:] != _ENUM_TAIL:
                type_names = (type_names[0], *_ENUM_TAIL)
            cached = (type_names, _text(_serialize_enum_to_string(member)))
            _ENUM_CACHE[member] = cached
        self.parts.append(f'<Obj{attr} RefId="{self._next_ref()}"><I32>{int(value)}</I32>')
        self._type_names(cached[0])
        self.parts.append(f"<ToString>{cached[1]}</ToString></Obj>")

    def obj(self, obj: Any, name: str | None = None) -> None:
        self.parts.append(f'<Obj{self._name(name)} RefId="{self._next_ref()}">')
        self._type_names(tuple(obj.type_names))
        adapted = [(k, v) for k, v in obj.props.items() if k not in obj.extended]
        extended = [(k, v) for k, v in obj.props.items() if k in obj.extended]
        if adapted:
            self.parts.append("<Props>")
            for key, item in adapted:
                self.value(item, key)
            self.parts.append("</Props>")
        if extended:
            self.parts.append("<MS>")
            for key, item in extended:
                self.value(item, key)
            self.parts.append("</MS>")
        if obj.to_string is not None:
            self.parts.append(f"<ToString>{_text(obj.to_string)}</ToString>")
        self.parts.append("</Obj>")


def demo_clixml(obj: Any) -> bytes:
    """The CLIXML of one demo object as a PSRP message body (its own RefId context)."""
    writer = _Writer()
    writer.obj(obj)
    return "".join(writer.parts).encode("utf-8")
