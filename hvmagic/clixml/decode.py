"""CLIXML → Python values, fast.

Entry points
------------
* :func:`loads` — a whole CLIXML text: an ``<Objs>`` document (``Export-Clixml``), a
  ``#< CLIXML`` stream (``powershell -OutputFormat xml`` stderr; several documents may follow
  each other), or a single ``<Obj>``/primitive element. Returns one value per top-level object.
* :func:`loads_streams` — the same, each value paired with its stream name (``"output"`` when
  untagged, else the lower-cased ``S="…"`` attribute: ``"error"``, ``"verbose"``, …).
* :func:`loads_fragment` — the session layer's hot path: ONE PSRP message payload (a single
  ``<Obj>`` document, UTF-8 with or without BOM, as PIPELINE_OUTPUT carries it) → its value.
  It skips every prefix/encoding sniff that :func:`loads` does. ``as_type=`` promotes the
  property bags PowerShell sends for INFORMATION_RECORD / PROGRESS_RECORD messages.

How it is fast
--------------
Two paths that must agree (tests and a fuzz test check it):

* The reference path: an expat parser (C) calls three small closures (start, end, text) that
  build the Python values directly on a stack — no tree. ~10-15k service objects/s.
* The shape-compiled path (:mod:`hvmagic.clixml._compiled`), taken for ``<Objs>`` documents
  of top-level ``<Obj>`` elements and for PSRP fragments: one C-level ``re.split`` per object
  separates the constant skeleton from the texts; the skeleton is the key of a cache of Python
  builders generated once per shape and admitted only after reproducing the reference path's
  value for that object. Any surprise at run time sends the object to the reference path. This
  runs at ~30k service objects/s (``bench/bench_clixml.py``).

Values are shared where that is safe and saves memory: objects with the same ``<TN>`` share
one ``type_names`` list, equal enum values (same type, name and number) may be one
:class:`PSEnum` instance, and equal TimeSpans one :class:`PSTimeSpan`. Treat them as
immutable.

Mapping decisions (where MS-PSRP leaves a choice)
-------------------------------------------------
* ``Deserialized.`` prefixes stay in ``type_names`` exactly as sent (PowerShell shows them too);
  :attr:`PSObject.type_name` strips them. Rich types (ErrorRecord, …) are recognised with or
  without the prefix.
* ``<Obj>`` holding ``<LST>/<IE>/<QUE>/<STK>`` → a plain ``list``; ``<DCT>`` → a plain ``dict``.
  When such a collection object also carries ``<Props>``/``<MS>`` members it becomes a
  :class:`PSObject` whose :attr:`~PSObject.value` is the collection. Dictionary keys that are not
  hashable (a PSObject used as a key) are replaced by their ``str()``.
* Enums (``System.Enum`` among the type names, an integer inside) → :class:`PSEnum`.
* A primitive with members (``<Obj><DT>…</DT><MS>…</MS></Obj>``) stays that primitive: for
  ``str``/``int``/``float``/``Decimal``/``bytes`` and hvmagic's own str subclasses an instance of a
  subclass is returned with ``.properties`` (dict) and ``.type_names`` attached; ``PSDateTime``
  and ``PSTimeSpan`` get the same two attributes directly. ``bool``, ``None``, ``UUID``,
  ``PSVersion``, ``SecureString`` cannot carry attributes: the plain value is returned and the
  members are dropped.
* ``DT`` → :class:`PSDateTime`, timezone-aware when the text has ``Z`` or an offset, naive
  otherwise; the 7th fractional digit (100-ns tick) goes to ``tick_remainder``.
* ``TS`` (xs:duration; ``Y`` counted as 365 days and ``M`` as 30 days, as .NET's XmlConvert
  does) → :class:`PSTimeSpan`, sub-microsecond ticks in ``tick_remainder``.
* ``SS`` → :class:`SecureString` holding the ciphertext bytes as sent (PSRP session-key
  encrypted; decrypting is the session layer's business).
* Reference cycles (``<Ref>`` to an object still being decoded) resolve to the same Python object
  for PSObjects, lists and dicts. A cycle through an enum or a primitive-with-members cannot be
  represented (those are immutable) and resolves to an empty PSObject.

Safety
------
DTDs are rejected outright (no entity can ever be declared, so no billion laughs and no external
entity), nothing touches the network, and ``max_bytes``/``max_depth``/``max_objects`` bound the
work (:class:`~hvmagic.errors.LimitExceededError`). Any malformed input raises
:class:`~hvmagic.errors.DecodeError` with a ``line:column`` position; no other exception type
escapes these functions.
"""

from __future__ import annotations

import base64
import binascii
import datetime as _dt
import gc
import re
import sys
import uuid
from collections.abc import Callable, Iterator
from decimal import Decimal, InvalidOperation
from typing import Any
from xml.parsers import expat

from hvmagic.clixml.values import (
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
)
from hvmagic.errors import DecodeError, LimitExceededError

__all__ = [
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_DEPTH",
    "DEFAULT_MAX_OBJECTS",
    "loads",
    "loads_fragment",
    "loads_streams",
    "unescape",
]

#: 512 MiB of CLIXML is ~300 000 service objects; more than any notebook cell should hold.
DEFAULT_MAX_BYTES = 512 << 20
#: PowerShell's own serializer depth is 1-2 in remoting and rarely above ~10 with -Depth; each
#: object level costs 2-3 elements (Obj, Props, LST), so 512 elements is generous yet bounded.
DEFAULT_MAX_DEPTH = 512
#: complex objects (``<Obj>`` elements) per call
DEFAULT_MAX_OBJECTS = 10_000_000

# --------------------------------------------------------------------------------------------
# _xHHHH_ escapes (MS-PSRP 2.2.5.3.2): characters XML cannot carry, and "_x" itself, which is
# written as _x005F_x.... Decoded code units may form UTF-16 surrogate pairs.

_ESCAPE_RE = re.compile(r"_x([0-9A-Fa-f]{4})_")
_SURROGATE_RE = re.compile("[\ud800-\udfff]")


def _escape_char(match: re.Match[str]) -> str:
    return chr(int(match.group(1), 16))


def unescape(text: str) -> str:
    """Decode PowerShell's ``_xHHHH_`` escapes (surrogate pairs joined; lone ones kept)."""
    if "_x" not in text:
        return text
    # Line breaks are by far the most common escapes. When replacing them leaves no "_x" at
    # all, every escape in the text was one of them, and two left-to-right scans for a fixed
    # pattern (whose replacement adds no "_" or "x") give what the regex scan gives.
    lines = text.replace("_x000D__x000A_", "\r\n").replace("_x000A_", "\n")
    result = lines if "_x" not in lines else _ESCAPE_RE.sub(_escape_char, text)
    # (an ASCII result cannot hold a surrogate: skip the scan)
    if not result.isascii() and _SURROGATE_RE.search(result):
        result = result.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "surrogatepass")
    return result


# --------------------------------------------------------------------------------------------
# Leaf converters. Each takes the element text and returns the value; ValueError/TypeError/
# InvalidOperation mean "bad text" and become a DecodeError with the element's position.

_BOOLS = {"true": True, "false": False, "1": True, "0": False}


def _to_bool(text: str) -> bool:
    try:
        return _BOOLS[text]
    except KeyError:
        value = _BOOLS.get(text.strip().lower())
        if value is None:
            raise ValueError(f"not a boolean: {text!r}") from None
        return value


_TZ_CACHE: dict[str, _dt.tzinfo] = {"Z": _dt.timezone.utc}
_DT_RE = re.compile(
    r"\s*(\d{4})-(\d\d)-(\d\d)(?:T(\d\d):(\d\d)(?::(\d\d)(?:\.(\d+))?)?)?"
    r"(Z|[+-]\d\d:\d\d)?\s*\Z"
)


def _tz(text: str) -> _dt.tzinfo:
    tz = _TZ_CACHE.get(text)
    if tz is None:
        sign = -1 if text[0] == "-" else 1
        hours, minutes = int(text[1:3]), int(text[4:6])
        tz = _dt.timezone(sign * _dt.timedelta(hours=hours, minutes=minutes))
        if len(_TZ_CACHE) < 256:
            _TZ_CACHE[text] = tz
    return tz


_FROMISO = PSDateTime.fromisoformat if sys.version_info >= (3, 11) else None
# the slot's C setter: no property call per value (mypy sees the slot as an instance int)
_SET_TICKS: Callable[[PSDateTime, int], None] = vars(PSDateTime)["_ticks"].__set__


def _to_datetime(text: str) -> PSDateTime:
    # Fast path for the canonical "YYYY-MM-DDTHH:MM:SS[.fffffff][Z|±HH:MM]" PowerShell writes.
    n = len(text)
    if (_FROMISO is not None and n >= 19 and text[10] == "T" and text[4] == "-"
            and text[13] == ":" and (n == 19 or text[19] in ".Z+-")):
        # Python 3.11's C parser reads up to 7 fraction digits (truncating to microseconds)
        value = _FROMISO(text)
        if n > 26 and text[19] == "." and "0" <= text[26] <= "9" and text[26] != "0" and (
            text[20:26].isdigit()
        ):
            _SET_TICKS(value, int(text[26]))
        return value
    if n >= 19 and text[10] == "T" and text[4] == "-" and text[13] == ":":
        pos = 19
        micro = remainder = 0
        if n > 19 and text[19] == ".":
            end = 20
            while end < n and "0" <= text[end] <= "9":
                end += 1
            digits = text[20:end]
            if not digits:
                raise ValueError(f"not a DateTime: {text!r}")
            digits = (digits + "0000000")[:7]
            micro = int(digits[:6])
            remainder = int(digits[6])
            pos = end
        tail = text[pos:]
        value = PSDateTime(
            int(text[0:4]), int(text[5:7]), int(text[8:10]),
            int(text[11:13]), int(text[14:16]), int(text[17:19]), micro,
            _tz(tail) if tail else None,
        )
        if tail and not (tail == "Z" or (len(tail) == 6 and tail[3] == ":")):
            raise ValueError(f"not a DateTime: {text!r}")
        if remainder:
            value.tick_remainder = remainder
        return value
    match = _DT_RE.match(text)
    if match is None:
        raise ValueError(f"not a DateTime: {text!r}")
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    digits = ((fraction or "") + "0000000")[:7]
    value = PSDateTime(
        int(year), int(month), int(day), int(hour or 0), int(minute or 0), int(second or 0),
        int(digits[:6]), _tz(zone) if zone else None,
    )
    if digits[6] != "0":
        value.tick_remainder = int(digits[6])
    return value


_DURATION_RE = re.compile(
    r"\s*(-)?P(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)D)?"
    r"(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)(?:\.(\d+))?S)?)?\s*\Z"
)


_TIMESPANS: dict[str, PSTimeSpan] = {}


def _to_timespan(text: str) -> PSTimeSpan:
    # Durations repeat (timeouts, intervals): reuse one immutable value per text. Copies are
    # made only when a value gets members attached (see _attach_members).
    cached = _TIMESPANS.get(text)
    if cached is not None:
        return cached
    value = _parse_timespan(text)
    # bounded by size too: a hostile megabyte of fraction digits must not stay cached
    if len(_TIMESPANS) < 4096 and len(text) <= 256:
        _TIMESPANS[text] = value
    return value


def _parse_timespan(text: str) -> PSTimeSpan:
    match = _DURATION_RE.match(text)
    if match is None or text.strip().rstrip("T").endswith("P"):
        raise ValueError(f"not an xs:duration: {text!r}")
    neg, years, months, days, hours, minutes, seconds, fraction = match.groups()
    digits = ((fraction or "") + "0000000")[:7]
    ticks = (
        (int(years or 0) * 365 + int(months or 0) * 30 + int(days or 0)) * 86_400
        + int(hours or 0) * 3600 + int(minutes or 0) * 60 + int(seconds or 0)
    ) * 10_000_000 + int(digits)
    if neg:
        ticks = -ticks
    # floor division keeps remainder in 0..9 for negative spans too (timedelta is floor-based)
    micro, remainder = divmod(ticks, 10)
    value = PSTimeSpan(microseconds=micro)
    if remainder:
        value.tick_remainder = remainder
    return value


def _to_bytes(text: str) -> bytes:
    if not text:
        return b""
    # whitespace may wrap long base64 runs; anything else that is not base64 is an error
    return base64.b64decode("".join(text.split()).encode("ascii"), validate=True)


def _to_securestring(text: str) -> SecureString:
    return SecureString(ciphertext=_to_bytes(text))


def _to_char(text: str) -> PSChar:
    return PSChar(chr(int(text)))


def _to_str(text: str) -> str:
    return unescape(text) if "_x" in text else text


def _to_float(text: str) -> float:
    # .NET writes INF/-INF/NaN, which float() accepts; reject Python-only spellings like "inf_"
    return float(text)


#: System.Decimal's range: a 96-bit integer mantissa (scale 0..28)
_DECIMAL_MAX = Decimal(2**96 - 1)


def _to_decimal(text: str) -> Decimal:
    value = Decimal(text.strip())
    # .NET never writes NaN/Infinity or anything beyond ±(2**96 - 1) for <D>; Python's Decimal
    # would accept them (sNaN then raises on every comparison; 1E+999999999 explodes when
    # formatted), so they are malformed input here.
    if not value.is_finite() or value.copy_abs() > _DECIMAL_MAX:  # (abs() would round)
        raise ValueError(f"not a System.Decimal: {text[:40]!r}")
    return value


def _to_version(text: str) -> PSVersion:
    return PSVersion.parse(text)


_LEAF: dict[str, Callable[[str], Any]] = {
    "S": _to_str,
    "B": _to_bool,
    "I32": int,
    "U32": int,
    "I64": int,
    "U64": int,
    "I16": int,
    "U16": int,
    "By": int,
    "SB": int,
    "Db": _to_float,
    "Sg": _to_float,
    "D": _to_decimal,
    "DT": _to_datetime,
    "TS": _to_timespan,
    "G": uuid.UUID,
    "BA": _to_bytes,
    "C": _to_char,
    "URI": lambda t: PSUri(_to_str(t)),
    "Version": _to_version,
    "XD": lambda t: PSXmlDocument(_to_str(t)),
    "SBK": lambda t: PSScriptBlock(_to_str(t)),
    "SS": _to_securestring,
}
_VALUE_LEAF = _LEAF
# Leaves that are not values: Nil and Ref (values with special handling), TNRef, type-name
# entries, ToString, and ProgressRecord children (pwsh layout: AV AI S|Nil PI PC T SR SD).
_OTHER_LEAF = frozenset(("Nil", "Ref", "TNRef", "T", "ToString", "AV", "AI", "PI", "PC", "SR",
                         "SD"))
_ALL_LEAVES = frozenset(_VALUE_LEAF) | _OTHER_LEAF

_LIST_TAGS = frozenset(("LST", "IE", "QUE", "STK"))

# frame kinds (small ints compare fastest)
_K_ROOT = 0  # the result list (our wrapper, <Objs>)
_K_DICT = 1  # <Props>, <MS>, <En>: name → value
_K_LIST = 2  # <LST>/<IE>/<QUE>/<STK>, <TN>: append
_K_OBJ = 3
_K_DCT = 4
_K_PR = 5
_K_TN = 6  # <TN>: <T> entries

# elements that only make sense inside one particular parent (checked when attaching)
_STRUCTURAL = frozenset(
    ("Props", "MS", "En", "TN", "ToString", "T", "AV", "AI", "PI", "PC", "SR", "SD")
)
_PR_FIELDS = frozenset(("AV", "AI", "S", "Nil", "PI", "PC", "T", "SR", "SD"))

_MISSING: Any = object()

# Objects whose (un-Deserialized) type name says they are a record hvmagic knows richer.
_RICH: dict[str, type[PSObject]] = {}
for _name, _cls in (
    ("System.Management.Automation.ErrorRecord", ErrorRecord),
    ("System.Management.Automation.InformationRecord", InformationRecord),
    ("System.Management.Automation.WarningRecord", InformationalRecord),
    ("System.Management.Automation.VerboseRecord", InformationalRecord),
    ("System.Management.Automation.DebugRecord", InformationalRecord),
    ("System.Management.Automation.InformationalRecord", InformationalRecord),
):
    for _prefix in ("", "Deserialized.", "Deserialized.Deserialized."):
        _RICH[_prefix + _name] = _cls
_CREDENTIAL_TYPES = frozenset(
    p + "System.Management.Automation.PSCredential"
    for p in ("", "Deserialized.", "Deserialized.Deserialized.")
)
_ENUM_TYPES = frozenset(("System.Enum", "Deserialized.System.Enum"))

_WITH_MEMBERS: dict[type, type] = {}


def _attach_members(value: Any, members: dict[str, Any], type_names: list[str] | None) -> Any:
    """Give a primitive its extra members where Python allows (see the module docstring)."""
    cls = type(value)
    if cls is PSTimeSpan:  # cached values are shared: attach members to a copy
        copy = PSTimeSpan(value.days, value.seconds, value.microseconds)
        copy.tick_remainder = value.tick_remainder
        value = copy
    if cls is PSDateTime or cls is PSTimeSpan:
        value.properties = members
        value.type_names = type_names or []
        return value
    if cls is bool or value is None or not isinstance(
        value, (str, int, float, Decimal, bytes)
    ):
        return value
    sub = _WITH_MEMBERS.get(cls)
    if sub is None:
        sub = type(cls.__name__, (cls,), {"__module__": __name__})
        _WITH_MEMBERS[cls] = sub
    result = sub(value)
    result.properties = members
    result.type_names = type_names or []
    return result


_CIM_INSTANCE = "Microsoft.Management.Infrastructure.CimInstance"
_CIM_INSTANCE_NAMES = (_CIM_INSTANCE, "Deserialized." + _CIM_INSTANCE)


def is_cim_instance(type_names: list[str] | None) -> bool:
    """True for a CIM instance, which PowerShell's client rehydrates into a ``CimInstance``."""
    return type_names is not None and any(name in type_names for name in _CIM_INSTANCE_NAMES)


def _members_first(extended: dict[str, Any], adapted: dict[str, Any]) -> dict[str, Any]:
    """``<MS>`` members, then the ``<Props>`` they do not shadow: the order in which PowerShell
    lists an object's properties (``PSPath`` … before ``Name``, ``Length`` of a file), live or
    deserialized. Reuses ``extended``."""
    for name, item in adapted.items():
        if name not in extended:
            extended[name] = item
    return extended


def _merged(adapted: dict[str, Any], extended: dict[str, Any],
            type_names: list[str] | None) -> dict[str, Any]:
    """An object's properties in PowerShell's order (see :func:`_members_first`), except for a
    CIM instance: PowerShell's client turns it back into a ``CimInstance``, whose adapter lists
    the class's properties first and ``PSComputerName`` (sent in ``<MS>``) after them. Reuses
    the dicts; extended values win either way."""
    if is_cim_instance(type_names):
        adapted.update(extended)
        return adapted
    return _members_first(extended, adapted)


def _finish_obj(frame: list[Any]) -> Any:
    """Turn a finished ``<Obj>`` frame into its Python value."""
    _, _, type_names, to_string, adapted, extended, value, placeholder = frame
    if value is not _MISSING and isinstance(value, PSObject) and value.value is None:
        # an object whose base object is itself an object (a PSObject wrapping a PSObject, as
        # Get-Help's MamlCommandHelpInfo parts are sent): one object, as PowerShell's own
        # deserializer makes it — the outer type names and ToString over the inner properties
        inner = value
        adapted = _members_first(dict(adapted), inner._props) if adapted else dict(inner._props)
        if not type_names:
            type_names = inner.type_names
        if to_string is None:
            to_string = inner.to_string
        frame = [None, 0, type_names, to_string, adapted, extended, _MISSING, placeholder]
        obj = _finish_obj(frame)
        if isinstance(obj, PSObject):
            obj.adapted = inner.adapted
        return obj
    if value is not _MISSING:
        members = adapted
        if extended:
            members = _merged(dict(members), extended, type_names) if members else extended
        if type(value) is int and type_names and (
            "System.Enum" in type_names or "Deserialized.System.Enum" in type_names
        ):
            result = PSEnum(value, to_string if to_string is not None else str(value),
                            type_names)
            if members:
                result.properties = members  # type: ignore[attr-defined]
            return result
        if isinstance(value, (list, dict)):
            if not members:
                return value
            return _make_object(placeholder, PSObject, members, type_names, to_string, value,
                                tuple(adapted) if adapted else ())
        if members:
            return _attach_members(value, members, type_names)
        return value
    if extended:
        if adapted:
            names = tuple(adapted)
            props = _merged(adapted, extended, type_names)
        else:
            names = ()
            props = extended
    elif adapted is not None:
        names = tuple(adapted)
        props = adapted
    else:
        names = ()
        props = {}
    cls: type[PSObject] = PSObject
    if type_names:
        rich = _RICH.get(type_names[0])
        if rich is not None:
            cls = rich
        elif type_names[0] in _CREDENTIAL_TYPES and "UserName" in props:
            password = props.get("Password")
            if isinstance(password, SecureString):
                return PSCredential(str(props["UserName"]), password)
    return _make_object(placeholder, cls, props, type_names, to_string, None, names)


def _make_object(
    placeholder: PSObject | None,
    cls: type[PSObject],
    props: dict[str, Any],
    type_names: list[str] | None,
    to_string: str | None,
    value: Any,
    names: tuple[str, ...],
) -> PSObject:
    obj = placeholder if placeholder is not None else cls.__new__(cls)
    if placeholder is not None and cls is not PSObject:
        obj.__class__ = cls  # same slot layout: ErrorRecord & co add no slots
    obj._props = props
    obj.type_names = type_names if type_names is not None else []
    obj.to_string = to_string
    obj.value = value
    obj.adapted = names
    return obj


_WRAP_TAG = "hvmagic-clixml-root"
_WRAP_OPEN = f"<{_WRAP_TAG}>"
_WRAP_CLOSE = f"</{_WRAP_TAG}>"


class _Failure(Exception):
    """Raised inside expat callbacks; turned into DecodeError with the parser position."""

    def __init__(self, message: str, limit: bool = False) -> None:
        super().__init__(message)
        self.limit = limit


def _no_dtd(*_args: Any) -> None:
    raise _Failure("DTDs and entity declarations are not allowed in CLIXML")


def _parse(
    chunks: list[bytes | str],
    max_depth: int,
    max_objects: int,
    wrapped: bool,
    line_offset: int = 0,
    refs: dict[str, Any] | None = None,
    type_tables: dict[str, list[str]] | None = None,
) -> tuple[list[Any], list[str | None]]:
    """Run one expat parser over ``chunks``; return (values, stream tags) of the top level.

    ``refs``/``type_tables`` carry RefId context in and out when a document is decoded one
    top-level object at a time (see :mod:`hvmagic.clixml._compiled`).
    """
    out: list[Any] = []
    streams: list[str | None] = []
    # expat hands text to texts.append directly (a C method: no Python frame per text node)
    texts: list[str] = []
    if refs is None:
        refs = {}
    if type_tables is None:
        type_tables = {}
    # Container frames are lists [attrs, kind, container-or-state...] (see _K_*); a leaf
    # element's frame is just its attrs dict, told apart by its class.
    root: list[Any] = [None, _K_ROOT, out]
    stack: list[Any] = [] if wrapped else [root]
    push = stack.append
    pop = stack.pop
    counter = [0]
    value_leaf = _VALUE_LEAF
    all_leaves = _ALL_LEAVES
    list_tags = _LIST_TAGS
    structural = _STRUCTURAL
    texts_clear = texts.clear
    to_str = _to_str
    dict_kind = _K_DICT

    def start(tag: str, attrs: dict[str, str]) -> None:
        if texts:
            texts_clear()
        if tag in all_leaves:
            push(attrs)
            return
        if len(stack) >= max_depth:
            raise _Failure(f"nesting deeper than max_depth={max_depth}", limit=True)
        if tag == "Obj":
            counter[0] += 1
            if counter[0] > max_objects:
                raise _Failure(f"more than max_objects={max_objects} objects", limit=True)
            push([attrs, _K_OBJ, None, None, None, None, _MISSING, None])
        elif tag == "Props" or tag == "MS" or tag == "En":
            push([attrs, _K_DICT, {}])
        elif tag in list_tags:
            push([attrs, _K_LIST, []])
        elif tag == "TN":
            push([attrs, _K_TN, []])
        elif tag == "DCT":
            push([attrs, _K_DCT, {}])
        elif tag == "PR":
            push([attrs, _K_PR, {}])
        elif tag == "Objs":
            # every <Objs> document is its own serialization context: RefIds restart
            refs.clear()
            type_tables.clear()
            push([attrs, _K_ROOT, out])
        elif tag == _WRAP_TAG and not stack and wrapped:
            push(root)
        else:
            raise _Failure(f"unknown CLIXML element <{tag}>")

    def end(tag: str) -> None:
        value: Any
        frame = pop()
        if frame.__class__ is dict:
            attrs = frame
            if texts:
                raw = texts[0] if len(texts) == 1 else "".join(texts)
                texts_clear()
            else:
                raw = ""
            conv = value_leaf.get(tag)
            if conv is to_str:
                value = raw if "_x" not in raw else unescape(raw)
            elif conv is not None:
                value = conv(raw)
            elif tag == "Nil":
                value = None
            elif tag == "Ref":
                value = _resolve_ref(attrs)
            else:
                _structural_leaf(tag, attrs, raw)
                return
            parent = stack[-1]
            if parent[1] == dict_kind:
                name = attrs.get("N")
                if name is None:
                    raise _Failure(f"<{tag}> without N= inside a property bag")
                parent[2][name if "_x" not in name else unescape(name)] = value
            else:
                _attach(parent, tag, attrs, value)
            return
        kind = frame[1]
        attrs = frame[0]
        if texts:
            texts_clear()
        if kind == _K_OBJ:
            value = _finish_obj(frame)
            refid = attrs.get("RefId")
            if refid is not None:
                refs[refid] = value
        elif kind == _K_TN:
            value = frame[2]
            refid = attrs.get("RefId")
            if refid is not None:
                type_tables[refid] = value
        elif kind == _K_PR:
            value = _progress(frame[2])
        elif kind == _K_ROOT:
            return
        else:  # dict, list, DCT
            value = frame[2]
        if not stack:
            raise _Failure(f"<{tag}> outside any document")
        parent = stack[-1]
        if parent[1] == dict_kind:
            name = attrs.get("N")
            if name is None or tag in structural:
                raise _Failure(f"<{tag}> {'without N=' if name is None else 'misplaced'}"
                               " inside a property bag")
            parent[2][to_str(name)] = value
        else:
            _attach(parent, tag, attrs, value)

    def _structural_leaf(tag: str, attrs: dict[str, str], raw: str) -> None:
        parent = stack[-1]
        pkind = parent[1]
        if tag == "TNRef":
            names = type_tables.get(attrs.get("RefId", ""))
            if names is None:
                raise _Failure(f"<TNRef> to unknown RefId {attrs.get('RefId')!r}")
            if pkind != _K_OBJ:
                raise _Failure("<TNRef> outside <Obj>")
            parent[2] = names
        elif tag == "T":
            if pkind == _K_TN:
                parent[2].append(to_str(raw))
            elif pkind == _K_PR:
                parent[2]["T"] = to_str(raw)
            else:
                raise _Failure("<T> outside <TN>/<PR>")
        elif tag == "ToString":
            if pkind != _K_OBJ:
                raise _Failure("<ToString> outside <Obj>")
            parent[3] = to_str(raw)
        else:  # ProgressRecord fields
            if pkind != _K_PR:
                raise _Failure(f"<{tag}> outside <PR>")
            parent[2][tag] = to_str(raw) if tag == "AV" or tag == "SD" else int(raw)

    def _attach(parent: list[Any], tag: str, attrs: dict[str, str], value: Any) -> None:
        pkind = parent[1]
        if pkind == _K_LIST:
            if tag in structural:
                raise _Failure(f"<{tag}> inside a list")
            parent[2].append(value)
        elif pkind == _K_OBJ:
            if tag == "Props":
                parent[4] = value
            elif tag == "MS":
                parent[5] = value
            elif tag == "TN":
                parent[2] = value
            elif tag in structural:
                raise _Failure(f"<{tag}> directly inside <Obj>")
            elif parent[6] is not _MISSING:
                raise _Failure(f"<Obj> holds two values (second: <{tag}>)")
            else:
                parent[6] = value
        elif pkind == _K_ROOT:
            if tag in structural:
                raise _Failure(f"<{tag}> at the top level")
            parent[2].append(value)
            streams.append(attrs.get("S") if attrs else None)
        elif pkind == _K_TN:
            raise _Failure(f"<{tag}> inside <TN> (expected <T>)")
        elif pkind == _K_DCT:
            if tag != "En":
                raise _Failure(f"<{tag}> inside <DCT> (expected <En>)")
            if "Key" not in value:
                raise _Failure("<En> without a Key")
            key = value["Key"]
            try:
                parent[2][key] = value.get("Value")
            except TypeError:  # unhashable key (a PSObject): documented str() fallback
                parent[2][str(key)] = value.get("Value")
        else:  # _K_PR
            if tag not in _PR_FIELDS:
                raise _Failure(f"<{tag}> inside <PR>")
            parent[2][tag] = value

    def _resolve_ref(attrs: dict[str, str]) -> Any:
        refid = attrs.get("RefId")
        if refid is None:
            raise _Failure("<Ref> without RefId")
        try:
            return refs[refid]
        except KeyError:
            pass
        # A reference to an object still being decoded: a cycle.
        for index in range(len(stack) - 1, -1, -1):
            frame = stack[index]
            if frame.__class__ is list and frame[1] == _K_OBJ and frame[0].get("RefId") == refid:
                if index + 1 < len(stack) and stack[index + 1][1] in (_K_LIST, _K_DCT):
                    return stack[index + 1][2]  # the collection this object will become
                if frame[7] is None:
                    frame[7] = PSObject.__new__(PSObject)
                    _make_object(frame[7], PSObject, {}, frame[2], None, None, ())
                return frame[7]
        raise _Failure(f"<Ref> to unknown RefId {refid!r}")

    parser = expat.ParserCreate()
    parser.buffer_text = True
    parser.buffer_size = 1 << 16
    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = texts.append
    parser.StartDoctypeDeclHandler = _no_dtd
    parser.EntityDeclHandler = _no_dtd
    parser.ExternalEntityRefHandler = _no_dtd  # type: ignore[assignment]
    try:
        last = len(chunks) - 1
        for index, chunk in enumerate(chunks):
            parser.Parse(chunk, index == last)
    except _Failure as exc:
        raise _located(exc, parser, wrapped, line_offset) from None
    except expat.ExpatError as exc:
        raise DecodeError(
            f"malformed XML: {expat.ErrorString(exc.code)}",
            _position(exc.lineno, exc.offset, wrapped, line_offset),
        ) from exc
    except (ValueError, TypeError, KeyError, IndexError, OverflowError, InvalidOperation,
            binascii.Error, UnicodeError) as exc:
        raise DecodeError(
            f"bad CLIXML value: {exc}",
            _position(parser.CurrentLineNumber, parser.CurrentColumnNumber, wrapped, line_offset),
        ) from exc
    return out, streams


#: the fields of a ``<PR>`` element by PowerShell's property names
_PR_PROPERTIES = {"AV": "Activity", "AI": "ActivityId", "SD": "StatusDescription",
                  "S": "CurrentOperation", "PI": "ParentActivityId", "PC": "PercentComplete",
                  "SR": "SecondsRemaining", "T": "Type"}


def _progress(fields: dict[str, Any]) -> ProgressRecord:
    return ProgressRecord.from_properties(
        {_PR_PROPERTIES[tag]: value for tag, value in fields.items() if tag in _PR_PROPERTIES},
        strict=True,
    )


def _position(line: int, column: int, wrapped: bool, line_offset: int) -> str:
    if wrapped and line == 1:
        column = max(0, column - len(_WRAP_OPEN))
    return f"{line + line_offset}:{column + 1}"


def _located(exc: _Failure, parser: Any, wrapped: bool, line_offset: int) -> DecodeError:
    where = _position(parser.CurrentLineNumber, parser.CurrentColumnNumber, wrapped, line_offset)
    cls = LimitExceededError if exc.limit else DecodeError
    return cls(str(exc), where)


# --------------------------------------------------------------------------------------------
# Input normalisation: bytes/str, BOMs, XML declarations, "#< CLIXML" markers.

_XML_DECL_RE = re.compile(r"\s*<\?xml[^>]*\?>")
_CLIXML_MARKER = "#< CLIXML"


def _prepare(data: Any, max_bytes: int) -> tuple[list[bytes | str], int]:
    """Return the chunks to feed a wrapped parser and how many lines were dropped in front."""
    if isinstance(data, (bytearray, memoryview)):
        data = bytes(data)
    if isinstance(data, bytes):
        if len(data) > max_bytes:
            raise LimitExceededError(f"input of {len(data)} bytes exceeds max_bytes={max_bytes}")
        if data.startswith(b"\xef\xbb\xbf"):
            data = data[3:]
        elif data.startswith((b"\xff\xfe", b"\xfe\xff")):
            data = data.decode("utf-16")
        elif data.startswith(b"<\x00"):
            data = data.decode("utf-16-le")
        elif data.startswith(b"\x00<"):
            data = data.decode("utf-16-be")
        if isinstance(data, bytes):
            head = data[:64].lstrip()
            if head.startswith((b"#<", b"<?")):
                text = data.decode("utf-8")
                return _prepare_text(text)
            return [_WRAP_OPEN.encode(), data, _WRAP_CLOSE.encode()], 0
        return _prepare_text(data)
    if isinstance(data, str):
        if len(data) > max_bytes:
            raise LimitExceededError(
                f"input of {len(data)} characters exceeds max_bytes={max_bytes}"
            )
        return _prepare_text(data.lstrip("\ufeff"))
    raise DecodeError(f"CLIXML must be str or bytes, not {type(data).__name__}")


def _prepare_text(text: str) -> tuple[list[bytes | str], int]:
    line_offset = 0
    stripped = text.lstrip()
    if stripped.startswith(_CLIXML_MARKER) or "\n" + _CLIXML_MARKER in text:
        # "#< CLIXML" lines may appear before each document of a stderr stream
        lines = text.splitlines(keepends=True)
        kept: list[str] = []
        for line in lines:
            if line.lstrip().startswith(_CLIXML_MARKER):
                if not kept:
                    line_offset += 1
                rest = line.lstrip()[len(_CLIXML_MARKER):]
                kept.append(rest if rest.strip() else "\n" if kept else "")
            else:
                kept.append(line)
        text = "".join(kept)
    match = _XML_DECL_RE.match(text)
    if match:
        line_offset += text.count("\n", 0, match.end())
        text = text[match.end():]
    text = _XML_DECL_RE.sub("", text) if "<?xml" in text else text
    return [_WRAP_OPEN, text, _WRAP_CLOSE], line_offset


def _check_limits(max_bytes: int, max_depth: int, max_objects: int) -> None:
    for name, value in (("max_bytes", max_bytes), ("max_depth", max_depth),
                        ("max_objects", max_objects)):
        if not isinstance(value, int) or value <= 0:
            raise ValueError(f"{name} must be a positive int, not {value!r}")


def loads_streams(
    data: str | bytes,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_depth: int = DEFAULT_MAX_DEPTH,
    max_objects: int = DEFAULT_MAX_OBJECTS,
) -> list[tuple[str, Any]]:
    """Decode CLIXML; return ``(stream, value)`` per top-level object (see module docstring)."""
    values, streams = _decode(data, max_bytes, max_depth, max_objects)
    return [
        ("output" if stream is None else stream.lower(), value)
        for stream, value in zip(streams, values, strict=False)
    ]


def loads(
    data: str | bytes,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_depth: int = DEFAULT_MAX_DEPTH,
    max_objects: int = DEFAULT_MAX_OBJECTS,
) -> list[Any]:
    """Decode CLIXML text (``<Objs>`` document, ``#< CLIXML`` stream or one element).

    Returns one Python value per top-level object. Raises :class:`DecodeError` (with a
    ``line:column`` position) for malformed input and :class:`LimitExceededError` when
    ``max_bytes`` (input length), ``max_depth`` (element nesting) or ``max_objects``
    (``<Obj>`` elements) is exceeded.
    """
    return _decode(data, max_bytes, max_depth, max_objects)[0]


def _decode(
    data: Any, max_bytes: int, max_depth: int, max_objects: int
) -> tuple[list[Any], list[str | None]]:
    _check_limits(max_bytes, max_depth, max_objects)
    # Bulk decoding allocates hundreds of thousands of acyclic objects; pausing the cyclic GC
    # meanwhile (as json/pickle-style loaders do) saves ~15% on large documents.
    paused = gc.isenabled()
    if paused:
        gc.disable()
    try:
        return _decode_unpaused(data, max_bytes, max_depth, max_objects)
    finally:
        if paused:
            gc.enable()


def _loads_expat(
    data: Any,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_depth: int = DEFAULT_MAX_DEPTH,
    max_objects: int = DEFAULT_MAX_OBJECTS,
) -> list[Any]:
    """The reference decoder alone (no compiled shapes): tests compare the fast path to it."""
    _check_limits(max_bytes, max_depth, max_objects)
    return _decode_unpaused(data, max_bytes, max_depth, max_objects, fast=False)[0]


def _decode_unpaused(
    data: Any, max_bytes: int, max_depth: int, max_objects: int, fast: bool = True
) -> tuple[list[Any], list[str | None]]:
    try:
        found = _document(data, max_bytes, max_depth, max_objects) if fast else None
        if found is not None:
            return found
        chunks, line_offset = _prepare(data, max_bytes)
        return _parse(chunks, max_depth + 1, max_objects, True, line_offset)
    except DecodeError:
        raise
    except UnicodeError as exc:
        raise DecodeError(f"undecodable input: {exc}", getattr(exc, "start", None)) from exc
    except RecursionError as exc:  # defensive: nothing here recurses, but never leak it
        raise LimitExceededError("input nests too deeply") from exc
    except MemoryError as exc:
        raise LimitExceededError("out of memory while decoding CLIXML") from exc
    except Exception as exc:  # the boundary: no untyped exception escapes
        raise DecodeError(f"cannot decode CLIXML: {type(exc).__name__}: {exc}") from exc


def loads_fragment(
    data: bytes | str,
    *,
    as_type: type[Any] | None = None,
    max_depth: int = DEFAULT_MAX_DEPTH,
    max_objects: int = DEFAULT_MAX_OBJECTS,
) -> Any:
    """Decode ONE PSRP message payload (a single ``<Obj>`` element, UTF-8, BOM allowed).

    The session layer calls this for every PIPELINE_OUTPUT/ERROR_RECORD/… message; the size
    limit is the PSRP layer's (it already bounded the message), so only depth and object count
    are checked here.

    ``as_type`` lets the caller say what the message type implies when the payload's type names
    do not (PowerShell sends INFORMATION_RECORD and PROGRESS_RECORD bodies as bare property
    bags): :class:`InformationRecord`, :class:`InformationalRecord` or :class:`ErrorRecord`
    promote a plain PSObject to that class; :class:`ProgressRecord` builds one from the
    ``Activity``/``ActivityId``/… properties.
    """
    value = _fragment(data, max_depth, max_objects)
    if as_type is not None and type(value) is PSObject:
        if as_type is ProgressRecord:
            return _progress_from_properties(value)
        if as_type in (ErrorRecord, InformationRecord, InformationalRecord):
            value.__class__ = as_type  # same slot layout, see _make_object
    return value


_ATTRIBUTE_NAMES = re.compile(rb'([A-Za-z_:][\w:.-]*)="')
_OBJS_OPEN = re.compile(rb'\s*<Objs(?:\s+[A-Za-z_:][\w:.-]*="[^"<&]*")*\s*>\s*')
# a boundary after which a new top-level object may start (list items match too: see below)
# (it starts with a literal so the regex engine can skip ahead; a lookbehind would make it
# try every byte of the document)
_OBJ_BOUNDARY = re.compile(rb'</Obj>\s*(?=<Obj\s+RefId="[^"]*"\s*>)')
_SELF_CLOSING_OBJ = re.compile(rb"<Obj\b[^>]*/>")


_SPACE = frozenset(b" \t\r\n")


def _skip_space_back(data: bytes, start: int, end: int) -> int:
    while end > start and data[end - 1] in _SPACE:
        end -= 1
    return end


def _top_level_pieces(body: bytes, start: int, end: int) -> Iterator[bytes]:
    """Candidate top-level objects of ``body[start:end]``, one slice at a time."""
    position = start
    for match in _OBJ_BOUNDARY.finditer(body, start, end):
        yield body[position:match.start() + 6]  # through the "</Obj>" the boundary begins with
        position = match.end()
    yield body[position:end]


_BUILD_FAILED: Any = object()


def _match_object(
    bucket: Any, piece: bytes, refs: dict[str, Any], tns: dict[str, list[str]], max_depth: int,
) -> Any:
    """(value, objects in it) of one top-level object of a document, decoded by the matcher
    whose regex it fits; None: no matcher applies (the split path decides); _BUILD_FAILED: a
    builder failed part way, maybe after registering RefIds (see _document)."""
    match, dispatch = bucket.state
    found = match(piece)
    if found is None:
        return None
    build, depth, objects = dispatch[found.lastindex]
    if depth + 2 > max_depth:
        return None
    try:
        return build(found.groups(), refs, tns), objects
    except Exception:
        return _BUILD_FAILED


def _document(
    data: Any, max_bytes: int, max_depth: int, max_objects: int
) -> tuple[list[Any], list[str | None]] | None:
    """Shape-compiled fast path for an ``<Objs>`` document of top-level ``<Obj>`` elements.

    Returns ``None`` when the input is anything else (streams, bare elements, UTF-16, unusual
    XML) or is malformed: the expat path then decodes it or reports the error with its
    position.
    """
    _compiled = _COMPILED
    if _compiled is None:
        return None
    if isinstance(data, str):
        if len(data) > max_bytes or "#< CLIXML" in data[:64]:
            return None
        body = data.lstrip("\ufeff").encode("utf-8", "surrogatepass")
    elif type(data) is bytes:
        if len(data) > max_bytes:
            return None
        body = data[3:] if data[:3] == b"\xef\xbb\xbf" else data
    else:
        return None
    opening = _OBJS_OPEN.match(body)
    if opening is None:
        return None
    # positions instead of slices: a 165 MB document is not copied (peak memory)
    start = opening.end()
    end = _skip_space_back(body, start, len(body))
    if not body.endswith(b"</Objs>", start, end):
        return None
    end = _skip_space_back(body, start, end - 7)
    names = _ATTRIBUTE_NAMES.findall(opening.group())
    if len(names) != len(set(names)):
        return None  # a duplicate attribute: expat reports it
    if not body.startswith(b"<Obj", start) or not _compiled.is_safe(body):
        return None
    if _SELF_CLOSING_OBJ.search(body, start, end) is not None:
        return None
    if not body.isascii():
        try:
            body.decode("utf-8")
        except UnicodeDecodeError:
            return None
        if not _compiled.xml_chars_only(body):
            return None
    cache = _compiled.DOCUMENTS
    split = _compiled.FRAGMENT_SPLIT.split
    split_refids = _compiled.REFID.split
    shapes = cache.shapes
    matchers = cache.matchers
    refs: dict[str, Any] = {}
    tns: dict[str, list[str]] = {}
    values: list[Any] = []
    streams: list[str | None] = []
    objects = 0
    # Objects inside lists also follow "</Obj>": the pieces of one top-level object are
    # collected here until its tags balance. Only the new piece is counted and nothing is
    # split before the object is whole, so one object holding 20 000 list items costs one
    # pass, not one pass per item (quadratic).
    pending: list[bytes] = []
    balance = 0
    try:
        for piece in _top_level_pieces(body, start, end):
            if pending:
                pending.append(piece)
                balance += piece.count(b"<Obj") - piece.count(b"</Obj>")
                if balance:
                    continue
                piece = b"".join(pending)
                pending = []
                if not piece.startswith(b"<Obj"):
                    return None
            bucket = matchers.get(piece.count(b"<"))
            if bucket is not None:
                matched = _match_object(bucket, piece, refs, tns, max_depth)
                if matched is _BUILD_FAILED:
                    return None
                if matched is not None:
                    objects += matched[1]
                    if objects > max_objects:
                        raise LimitExceededError(f"more than max_objects={max_objects} objects")
                    values.append(matched[0])
                    streams.append(None)
                    continue
            parts = split(piece)
            # RefIds vary from object to object: cut them out of the tags (only the tags, so
            # a text that happens to read RefId="…" cannot shift them)
            tags = split_refids(b"\x00".join(parts[0::2]))
            key = b' RefId=""'.join(tags[0::2])
            shape = shapes.get(key, _MISSING)
            if shape is None or shape is _MISSING:
                # (a compiled shape is one balanced object, so only misses need this check)
                balance = piece.count(b"<Obj") - piece.count(b"</Obj>")
                if balance:
                    pending = [piece]
                    continue
                if not piece.startswith(b"<Obj"):
                    return None
            refids = tags[1::2]
            if shape is not None and shape is not _MISSING and shape.depth + 2 <= max_depth:
                cache.hits += 1
                objects += shape.objects
                if objects > max_objects:
                    raise LimitExceededError(f"more than max_objects={max_objects} objects")
                try:
                    values.append(shape.build(parts, refs, tns, refids))
                except Exception:
                    # It may have registered some of its RefIds before it failed, and a
                    # reference decode of this object would resolve against them: expat
                    # decodes the whole document instead (only odd input gets here).
                    return None
                streams.append(None)
                continue
            objects += piece.count(b"<Obj")
            if objects > max_objects:
                raise LimitExceededError(f"more than max_objects={max_objects} objects")
            segment = piece

            def reference(segment: bytes = segment) -> Any:
                found, tags = _parse([segment], max_depth, max_objects, False, 0, refs, tns)
                if len(found) != 1:
                    raise DecodeError("not one object")
                streams.append(tags[0])
                return found[0]

            if shape is _MISSING and cache.may_learn():
                values.append(cache.learn(key, parts, refids, refs, tns, reference, piece))
            else:
                values.append(reference())
    except LimitExceededError:
        raise
    except DecodeError:
        return None  # the expat path re-decodes the whole input and reports where it broke
    if pending:
        return None
    return values, streams


def _fragment_expat(data: Any, max_depth: int, max_objects: int) -> Any:
    try:
        values, _ = _parse([data], max_depth, max_objects, False)
    except DecodeError:
        raise
    except MemoryError as exc:
        raise LimitExceededError("out of memory while decoding CLIXML") from exc
    except Exception as exc:
        raise DecodeError(f"cannot decode CLIXML: {type(exc).__name__}: {exc}") from exc
    if len(values) != 1:
        raise DecodeError(f"a PSRP message holds one object, found {len(values)}")
    return values[0]


def _fragment(data: Any, max_depth: int, max_objects: int) -> Any:
    """Shape-compiled fast path (see :mod:`hvmagic.clixml._compiled`), expat otherwise."""
    compiled = _COMPILED
    body = data
    if type(body) is not bytes:
        if isinstance(body, str):
            body = body.encode("utf-8", "surrogatepass")
        elif isinstance(body, (bytes, bytearray, memoryview)):
            body = bytes(body)
        else:
            raise DecodeError(f"CLIXML must be str or bytes, not {type(data).__name__}")
    if compiled is None or not compiled.xml_chars_only(body):
        return _fragment_expat(body, max_depth, max_objects)
    # the BOM stays in front of the first tag: it becomes part of the shape key, no copy
    cache = compiled.FRAGMENTS
    bucket = cache.matchers.get(body.count(b"<"))
    if bucket is not None:
        match, dispatch = bucket.state
        found = match(body)
        if found is not None:
            build, depth, objects = dispatch[found.lastindex]
            if depth + 2 <= max_depth and objects <= max_objects:
                cache.hits += 1
                try:
                    return build(found.groups(), None, None)
                except Exception:  # any surprise: the split path below decides, expat reports
                    cache.hits -= 1
    if not (body[:1] == b"<" or body[:4] == b"\xef\xbb\xbf<") or not compiled.is_safe(body):
        return _fragment_expat(data, max_depth, max_objects)
    # No UTF-8 check of the whole body: tags must equal the verified sample's, every text a
    # builder uses is decoded strictly, and the texts it skips must be ASCII (see _compiled).
    parts = compiled.FRAGMENT_SPLIT.split(body)
    key = b"\x00".join(parts[0::2])
    shape = cache.shapes.get(key, _MISSING)
    if shape is _MISSING:
        if not cache.may_learn():
            return _fragment_expat(body, max_depth, max_objects)
        return cache.learn(key, parts, None, {}, {},
                           lambda: _fragment_expat(body, max_depth, max_objects), body)
    if shape is not None and shape.depth + 2 <= max_depth and shape.objects <= max_objects:
        cache.hits += 1
        try:
            return shape.build(parts, None, None, None)
        except Exception:
            shape = None  # any surprise (entity in a number, bad bool…): expat decides, reports
    return _fragment_expat(body, max_depth, max_objects)


#: The shape-compiled fast path (:mod:`hvmagic.clixml._compiled`). It is built from this
#: module's converters and so imports this module; the package (``hvmagic/clixml/__init__.py``)
#: hands it back through :func:`use_fast_path`, which keeps the two out of an import cycle.
#: ``None``: every input takes the expat path.
_COMPILED: Any = None


def use_fast_path(module: Any) -> None:
    """Decode through ``module`` (:mod:`hvmagic.clixml._compiled`) where it applies."""
    global _COMPILED
    _COMPILED = module


def _progress_from_properties(obj: PSObject) -> ProgressRecord:
    """PROGRESS_RECORD (MS-PSRP 2.2.2.25) is a property bag, not a ``<PR>`` element."""
    try:
        return ProgressRecord.from_properties(obj, strict=True)
    except ValueError as exc:
        raise DecodeError(f"malformed PROGRESS_RECORD: {exc}") from exc
