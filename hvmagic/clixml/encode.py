"""Python values → CLIXML (what hvmagic sends to a guest: PSRP parameters, host responses).

This is hvmagic's one type table: a run's parameters and the answers to the guest's prompts
go out through :func:`dumps` (handed to psrpcore as pre-encoded elements, see
:mod:`hvmagic.psrp.psrpcore_fixes`), and recordings write parameters and records with it too,
so a live run and a recorded one accept exactly the same values, as the same .NET types.

:func:`dumps` returns ONE element (``<Obj>…</Obj>``, ``<S>…</S>``, ``<Nil />``…) exactly as a
PSRP message or a parameter value carries it; :func:`dumps_document` wraps several values in an
``<Objs>`` document that ``Import-Clixml`` reads. :func:`hvmagic.clixml.loads` reads both.

Mapping (the inverse of :mod:`hvmagic.clixml.decode`):

=========================================  ===================================================
Python                                     CLIXML
=========================================  ===================================================
``None``                                   ``<Nil />``
``bool``                                   ``<B>``
``int``                                    ``<I32>`` if it fits, else ``<I64>``, else ``<U64>``;
                                           larger → :class:`EncodeError`
``float``                                  ``<Db>`` (``INF``/``-INF``/``NaN`` as .NET writes)
``decimal.Decimal``                        ``<D>`` (fixed-point text; NaN/Infinity refused)
``datetime`` / :class:`PSDateTime`         ``<DT>`` with 7 fractional digits (``tick_remainder``
                                           is the 7th); ``Z`` for UTC, ``±HH:MM`` for other
                                           offsets, nothing for naive values
``date``                                   ``<DT>`` of its midnight, no offset (.NET has no
                                           serializable date-only type)
``timedelta`` / :class:`PSTimeSpan`        ``<TS>`` xs:duration (within TimeSpan's range)
``uuid.UUID``                              ``<G>``
``bytes`` / ``bytearray``                  ``<BA>`` (base64)
``str``                                    ``<S>``; :class:`PSChar` ``<C>``, :class:`PSUri`
                                           ``<URI>``, :class:`PSXmlDocument` ``<XD>`` (must be
                                           well-formed), :class:`PSScriptBlock` ``<SBK>``
:class:`PSVersion`                         ``<Version>``
:class:`PSEnum`                            an enum ``<Obj>`` (type names, ToString, ``<I32>``)
``enum.Enum``                              its ``.value``
``list`` / ``tuple``                       ``System.Object[]`` ``<LST>``
``set`` / ``frozenset``                    the same, sorted when the items compare
``dict`` / other ``Mapping``               ``System.Collections.Hashtable`` ``<DCT>`` (no
                                           ``None`` key)
numpy / pandas scalars, arrays, Series     their Python value (``.item()``), their list
:class:`PSObject`                          ``<Obj>``: ``adapted`` names in ``<Props>``, the
                                           rest in ``<MS>``; ``.value`` inside when set
:func:`PSCustomObject` (``**props``)       a ``PSCustomObject`` (properties in ``<MS>``)
:class:`SecureString`                      ``<SS>`` — see below
:class:`PSCredential`                      a ``PSCredential`` object (UserName, Password)
:class:`ProgressRecord`                    ``<PR>`` (valid for .NET: an activity, a status…)
=========================================  ===================================================

Anything else raises :class:`~hvmagic.errors.EncodeError`, as does a value PowerShell's
deserializer would refuse — it fails the whole message and the guest never answers, so the
session would be lost: out-of-range numbers, a malformed XML document, a ``None`` hashtable
key, values nested deeper than :data:`MAX_DEPTH`.

Objects seen twice (the same PSObject, list or dict) are written once and referenced with
``<Ref RefId>`` afterwards, so shared and cyclic structures survive; repeated type-name lists use
``<TNRef>``.

SecureStrings: PSRP encrypts them with the session key, so :func:`dumps` takes
``secure_string_encryptor=callable(bytes) -> bytes`` (called with the UTF-16-LE plain text; the
session layer supplies it). A SecureString that holds only ciphertext (from an ``Export-Clixml``
file) is written back unchanged without an encryptor and refused with one (the session key
cannot read it: the session decrypts what its own guest sends). Without an encryptor a
plain-text SecureString raises :class:`EncodeError`, unless the caller passes
``allow_plaintext_secure_string=True``: then it is written as a plain ``<S>`` string (the
guest script must ``ConvertTo-SecureString`` it) — never silently.
"""

from __future__ import annotations

import base64
import datetime as _dt
import enum
import math
import re
import uuid
from collections.abc import Callable, Iterable, Mapping
from decimal import Context, Decimal
from typing import Any
from xml.parsers import expat

from hvmagic.clixml.values import (
    ProgressRecord,
    PSChar,
    PSCredential,
    PSEnum,
    PSObject,
    PSScriptBlock,
    PSUri,
    PSVersion,
    PSXmlDocument,
    SecureString,
)
from hvmagic.errors import EncodeError

__all__ = ["MAX_DEPTH", "POWERSHELL_MAX_DEPTH", "PSCustomObject", "dumps", "dumps_document",
           "escape"]

_NAMESPACE = "http://schemas.microsoft.com/powershell/2004/04"
_CUSTOM_OBJECT_TYPES = ["System.Management.Automation.PSCustomObject", "System.Object"]
_ARRAY_TYPES = ("System.Object[]", "System.Array", "System.Object")
_HASHTABLE_TYPES = ("System.Collections.Hashtable", "System.Object")
_ENUM_BASES = ("System.Enum", "System.ValueType", "System.Object")
_CREDENTIAL_TYPES = ("System.Management.Automation.PSCredential", "System.Object")

# Characters XML 1.0 cannot carry (controls, lone surrogates, U+FFFE/U+FFFF), plus an "_" that
# would otherwise read as the start of an _xHHHH_ escape: PowerShell writes these as _xHHHH_.
_NEEDS_ESCAPE_RE = re.compile(
    "[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]|_(?=x[0-9A-Fa-f]{4}_)|[\t\n\r]"
)
_XML_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;"})


def _escape_match(match: re.Match[str]) -> str:
    return f"_x{ord(match.group()):04X}_"


def escape(text: str) -> str:
    """``str`` → element/attribute text: PowerShell ``_xHHHH_`` escapes, then XML escapes."""
    if _NEEDS_ESCAPE_RE.search(text):
        text = _NEEDS_ESCAPE_RE.sub(_escape_match, text)
    return text.translate(_XML_ESCAPES)


def PSCustomObject(**properties: Any) -> PSObject:
    """A ``[PSCustomObject]@{...}`` to send to the guest (properties serialized in ``<MS>``)."""
    return PSObject(dict(properties), list(_CUSTOM_OBJECT_TYPES))


def _format_float(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "INF" if value > 0 else "-INF"
    return repr(value)


def _format_datetime(value: _dt.datetime) -> str:
    remainder = getattr(value, "tick_remainder", 0) or 0
    text = value.strftime("%Y-%m-%dT%H:%M:%S") if value.year >= 1000 else (
        f"{value.year:04d}-{value.month:02d}-{value.day:02d}T"
        f"{value.hour:02d}:{value.minute:02d}:{value.second:02d}"
    )
    text += f".{value.microsecond:06d}{remainder}"
    offset = value.utcoffset()
    if offset is None:
        return text
    if value.tzinfo is _dt.timezone.utc:
        return text + "Z"
    minutes, seconds = divmod(int(offset.total_seconds()), 60)
    if seconds:
        raise EncodeError(f"a UTC offset with seconds cannot be sent to .NET: {offset}")
    sign = "-" if minutes < 0 else "+"
    hours, minutes = divmod(abs(minutes), 60)
    return f"{text}{sign}{hours:02d}:{minutes:02d}"


def _format_timespan(value: _dt.timedelta) -> str:
    ticks = (
        (value.days * 86_400 + value.seconds) * 1_000_000 + value.microseconds
    ) * 10 + (getattr(value, "tick_remainder", 0) or 0)
    return format_timespan_ticks(ticks)


def format_timespan_ticks(ticks: int) -> str:
    """A .NET TimeSpan of ``ticks`` (100 ns) as CLIXML's xs:duration text (``PT1M30S``)."""
    if not -0x8000_0000_0000_0000 <= ticks <= 0x7FFF_FFFF_FFFF_FFFF:
        raise EncodeError(
            f"{ticks // 864_000_000_000} days is outside System.TimeSpan's range "
            "(±10675199 days)"
        )
    sign = "-" if ticks < 0 else ""
    ticks = abs(ticks)
    seconds, fraction = divmod(ticks, 10_000_000)
    minutes, seconds = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    text = f"{sign}P"
    if days:
        text += f"{days}D"
    text += "T"
    if hours:
        text += f"{hours}H"
    if minutes:
        text += f"{minutes}M"
    if fraction:
        text += f"{seconds}.{fraction:07d}".rstrip("0") + "S"
    elif seconds or text.endswith("T"):
        text += f"{seconds}S"
    return text


#: PowerShell's deserializer refuses a message whose objects nest more than this many levels
#: (it answers nothing then: the guest's session hangs and is lost). Each value is a level, the
#: members of a list, hashtable, object, credential or progress record one below it; the value
#: inside an ``<Obj>`` (an enum's number) is on the object's own level. Measured with
#: PowerShell 7.6.9 (``tests/pwsh/test_parameter_parity.py``).
POWERSHELL_MAX_DEPTH = 50
#: The most levels :func:`dumps` writes by default: what PowerShell accepts as the value of a
#: run's parameter. A CREATE_PIPELINE message holds a parameter's value 7 levels down
#: (:data:`hvmagic.psrp.client.PARAMETER_MAX_DEPTH` is the 43 left), and hvmagic's wrapper
#: script receives the user's values in one hashtable, one more level.
MAX_DEPTH = POWERSHELL_MAX_DEPTH - 7 - 1

_DECIMAL_LIMIT = Decimal(2**96)  # System.Decimal's mantissa is 96 bits
_DECIMAL_STEP = Decimal("1E-28")  # and its scale at most 28 digits
_DECIMAL_CONTEXT = Context(prec=60)  # 29 integer + 28 fraction digits fit exactly


def _format_decimal(value: Decimal) -> str:
    if not value.is_finite():
        raise EncodeError(f"System.Decimal has no {value}")
    # checked before formatting: format(Decimal("1E+999999999"), "f") builds a gigabyte string
    if value.copy_abs() >= _DECIMAL_LIMIT:  # (abs() would round to 28 digits)
        raise EncodeError(f"{value:.6E} is outside System.Decimal's range (±2**96)")
    exponent = value.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -28:
        # .NET rounds to 28 decimal places anyway; "f" of 1E-999999999 would be a gigabyte
        value = value.quantize(_DECIMAL_STEP, context=_DECIMAL_CONTEXT)
    return format(value, "f")


class _Encoder:
    __slots__ = ("allow_plaintext", "depth", "encryptor", "max_depth", "parts", "refs",
                 "type_refs")

    def __init__(
        self,
        encryptor: Callable[[bytes], bytes] | None,
        allow_plaintext: bool,
        max_depth: int,
    ) -> None:
        self.parts: list[str] = []
        self.refs: dict[int, tuple[int, Any]] = {}  # id(obj) → (RefId, obj kept alive)
        self.type_refs: dict[tuple[str, ...], int] = {}
        self.encryptor = encryptor
        self.allow_plaintext = allow_plaintext
        self.max_depth = max_depth
        self.depth = 1  # the level of the value being written (the top value is level 1)

    def _down(self) -> None:
        """The members of a container are one level below it (see :data:`MAX_DEPTH`)."""
        self.depth += 1
        if self.depth > self.max_depth:
            raise EncodeError(
                f"the value nests too deeply for PowerShell: its deserializer refuses more than "
                f"{POWERSHELL_MAX_DEPTH} levels in a message, hvmagic's wrapping included "
                f"({MAX_DEPTH} for a parameter's value)"
            )

    # helpers -----------------------------------------------------------------------------
    def _leaf(self, tag: str, name: str | None, text: str) -> None:
        attr = "" if name is None else f' N="{escape(name)}"'
        self.parts.append(f"<{tag}{attr}>{text}</{tag}>")

    def _open_obj(self, name: str | None, obj: Any, type_names: Iterable[str]) -> None:
        refid = len(self.refs)
        self.refs[id(obj)] = (refid, obj)
        attr = "" if name is None else f' N="{escape(name)}"'
        self.parts.append(f'<Obj{attr} RefId="{refid}">')
        names = tuple(type_names)
        if names:
            tn = self.type_refs.get(names)
            if tn is None:
                tn = self.type_refs[names] = len(self.type_refs)
                inner = "".join(f"<T>{escape(n)}</T>" for n in names)
                self.parts.append(f'<TN RefId="{tn}">{inner}</TN>')
            else:
                self.parts.append(f'<TNRef RefId="{tn}" />')

    # the dispatcher ----------------------------------------------------------------------
    def write(self, value: Any, name: str | None = None) -> None:
        if value is None:
            attr = "" if name is None else f' N="{escape(name)}"'
            self.parts.append(f"<Nil{attr} />")
            return
        cls = type(value)
        if cls is str:
            self._leaf("S", name, escape(value))
        elif cls is bool:
            self._leaf("B", name, "true" if value else "false")
        elif cls is int:
            self._leaf(_int_tag(value), name, str(value))
        elif cls is float:
            self._leaf("Db", name, _format_float(value))
        elif isinstance(value, PSEnum):
            self._write_enum(value, name)
        elif isinstance(value, enum.Enum):  # a Python enum: its value (IntEnum → int, …)
            self.write(value.value, name)
        elif isinstance(value, bool):
            self._leaf("B", name, "true" if value else "false")
        elif isinstance(value, int):
            self._leaf(_int_tag(value), name, str(int(value)))
        elif isinstance(value, float):
            self._leaf("Db", name, _format_float(float(value)))
        elif isinstance(value, PSChar):
            if len(value) != 1 or ord(value) > 0xFFFF:
                raise EncodeError(f"a System.Char is one UTF-16 code unit, not {value!r}")
            self._leaf("C", name, str(ord(value)))
        elif isinstance(value, PSUri):
            self._leaf("URI", name, escape(value))
        elif isinstance(value, PSXmlDocument):
            self._leaf("XD", name, escape(_checked_xml(value)))
        elif isinstance(value, PSScriptBlock):
            self._leaf("SBK", name, escape(value))
        elif isinstance(value, str):
            self._leaf("S", name, escape(str(value)))
        elif isinstance(value, Decimal):
            self._leaf("D", name, _format_decimal(value))
        elif isinstance(value, _dt.datetime):
            self._leaf("DT", name, _format_datetime(value))
        elif isinstance(value, _dt.date):  # no .NET type holds a date alone: its midnight
            self._leaf("DT", name, _format_datetime(_dt.datetime(value.year, value.month,
                                                                  value.day)))
        elif isinstance(value, _dt.timedelta):
            self._leaf("TS", name, _format_timespan(value))
        elif isinstance(value, uuid.UUID):
            self._leaf("G", name, str(value))
        elif isinstance(value, (bytes, bytearray, memoryview)):
            self._leaf("BA", name, base64.b64encode(bytes(value)).decode("ascii"))
        elif isinstance(value, PSVersion):
            if not all(0 <= part <= 0x7FFF_FFFF for part in value):
                raise EncodeError(f"a System.Version has parts from 0 to 2147483647, not {value}")
            self._leaf("Version", name, str(value))
        elif isinstance(value, SecureString):
            self._write_secure_string(value, name)
        elif id(value) in self.refs:
            attr = "" if name is None else f' N="{escape(name)}"'
            self.parts.append(f'<Ref{attr} RefId="{self.refs[id(value)][0]}" />')
        elif isinstance(value, PSObject):
            self._write_psobject(value, name)
        elif isinstance(value, (list, tuple)):
            self._open_obj(name, value, _ARRAY_TYPES)
            self.parts.append("<LST>")
            if value:
                self._down()
                for item in value:
                    self.write(item)
                self.depth -= 1
            self.parts.append("</LST></Obj>")
        elif isinstance(value, dict):
            self._open_obj(name, value, _HASHTABLE_TYPES)
            self.parts.append("<DCT>")
            if value:
                self._down()
                for key, item in value.items():
                    self.parts.append("<En>")
                    if key is None:
                        raise EncodeError("a hashtable key cannot be None ($null in .NET)")
                    self.write(key, "Key")
                    self.write(item, "Value")
                    self.parts.append("</En>")
                self.depth -= 1
            self.parts.append("</DCT></Obj>")
        elif isinstance(value, PSCredential):
            self._open_obj(name, value, _CREDENTIAL_TYPES)
            self.parts.append("<ToString>System.Management.Automation.PSCredential</ToString>")
            self.parts.append("<Props>")
            self._down()
            self.write(value.username, "UserName")
            self.write(value.password, "Password")
            self.depth -= 1
            self.parts.append("</Props></Obj>")
        elif isinstance(value, ProgressRecord):
            self._write_progress(value, name)
        else:
            self.write(_adapt(value), name)

    def _write_enum(self, value: PSEnum, name: str | None) -> None:
        type_names = list(value.type_names) or ["System.Int32"]
        if not any(n.endswith("System.Enum") for n in type_names):
            type_names += _ENUM_BASES
        self._open_obj(name, value, type_names)
        self.parts.append(f"<ToString>{escape(str(value))}</ToString>")
        self.parts.append(f"<{_int_tag(int(value))}>{int(value)}</{_int_tag(int(value))}>")
        self.parts.append("</Obj>")

    def _write_psobject(self, obj: PSObject, name: str | None) -> None:
        self._open_obj(name, obj, obj.type_names)
        if obj.to_string is not None:
            self.parts.append(f"<ToString>{escape(obj.to_string)}</ToString>")
        if obj.value is not None:
            self.write(obj.value)  # the object's own value: PowerShell reads it on its level
        props = obj.properties
        if props:
            self._down()
        adapted = [k for k in obj.adapted if k in props]
        if adapted:
            self.parts.append("<Props>")
            for key in adapted:
                self.write(props[key], key)
            self.parts.append("</Props>")
        adapted_set = set(adapted)
        extended = [k for k in props if k not in adapted_set]
        if extended:
            self.parts.append("<MS>")
            for key in extended:
                self.write(props[key], key)
            self.parts.append("</MS>")
        if props:
            self.depth -= 1
        self.parts.append("</Obj>")

    def _write_secure_string(self, value: SecureString, name: str | None) -> None:
        if value.ciphertext is not None:
            if self.encryptor is not None:
                # ciphertext only: made with a key that is not this encryptor's (the session
                # decrypts what its guest sent), so the receiver could not read it
                raise EncodeError(
                    "a SecureString that holds only ciphertext (from another session or a "
                    "file) cannot be re-encrypted with this session's key"
                )
            self._leaf("SS", name, base64.b64encode(value.ciphertext).decode("ascii"))
        elif self.encryptor is not None:
            cipher: Any = None
            try:
                # .NET strings are UTF-16 code units: a lone surrogate is valid there
                cipher = self.encryptor(value.reveal().encode("utf-16-le", "surrogatepass"))
            except Exception:
                cipher = _FAILED
            if cipher is _FAILED:
                # raised outside the handler on purpose: the encryptor's exception may quote
                # the plain text, so it must not even be this error's __context__
                raise EncodeError(
                    "secure_string_encryptor failed on a SecureString (its error is withheld: "
                    "it may contain the secret)"
                )
            self._leaf("SS", name, base64.b64encode(cipher).decode("ascii"))
        elif self.allow_plaintext:
            self._leaf("S", name, escape(value.reveal()))
        else:
            raise EncodeError(
                "a SecureString needs secure_string_encryptor= (the PSRP session key) or "
                "allow_plaintext_secure_string=True to be sent"
            )

    def _write_progress(self, record: ProgressRecord, name: str | None) -> None:
        problem = _progress_problem(record)
        if problem is not None:
            raise EncodeError(f"a .NET ProgressRecord needs {problem}: {record!r}")
        self._down()  # its fields are read as members
        self.depth -= 1
        attr = "" if name is None else f' N="{escape(name)}"'
        parts = self.parts
        parts.append(f"<PR{attr}><AV>{escape(record.activity)}</AV>")
        parts.append(f"<AI>{int(record.activity_id)}</AI>")
        if record.current_operation is None:
            parts.append("<Nil />")
        else:
            parts.append(f"<S>{escape(record.current_operation)}</S>")
        parts.append(f"<PI>{int(record.parent_activity_id)}</PI>")
        parts.append(f"<PC>{int(record.percent_complete)}</PC>")
        parts.append(f"<T>{escape(record.record_type)}</T>")
        parts.append(f"<SR>{int(record.seconds_remaining)}</SR>")
        status = "" if record.status_description is None else escape(record.status_description)
        parts.append(f"<SD>{status}</SD></PR>")


_FAILED: Any = object()


def _checked_xml(text: str) -> str:
    """``text`` if it is a well-formed XML document (PowerShell loads ``<XD>`` with
    ``XmlDocument.LoadXml``: a malformed one fails the whole message)."""
    parser = expat.ParserCreate()
    try:
        parser.Parse(text, True)
    except expat.ExpatError as exc:
        raise EncodeError(f"a PSXmlDocument must be well-formed XML: {exc}") from None
    return text


def _progress_problem(record: ProgressRecord) -> str | None:
    """Why .NET's ProgressRecord would refuse ``record`` (its constructor and setters)."""
    if not record.activity:
        return "an activity"
    if not record.status_description:
        return "a status description"
    numbers = (record.activity_id, record.parent_activity_id, record.percent_complete,
               record.seconds_remaining)
    if not all(-0x8000_0000 <= int(n) <= 0x7FFF_FFFF for n in numbers):
        return "Int32 numbers"
    if record.activity_id < 0:
        return "an activity id of 0 or more"
    if record.parent_activity_id == record.activity_id:
        return "a parent activity other than itself"
    if record.percent_complete > 100:
        return "a percentage of at most 100"
    if record.record_type not in ("Processing", "Completed"):
        return "the record type Processing or Completed"
    return None


def _adapt(value: Any) -> Any:
    """A value of a type the table above does not hold, as one it holds; EncodeError if none.

    Other mappings are hashtables; sets are arrays, sorted when their items compare (a set's
    order changes from run to run, and a replay compares the parameters it is given with the
    recorded CLIXML); numpy/pandas scalars are their Python value, arrays and Series their
    list of values.
    """
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, (set, frozenset)):
        try:
            return sorted(value)
        except TypeError:
            return list(value)
    cls = type(value)
    if cls.__module__.partition(".")[0] in ("numpy", "pandas"):
        ndim = getattr(value, "ndim", 0)
        if ndim and callable(getattr(value, "tolist", None)):
            return value.tolist()
        if ndim == 0 and callable(getattr(value, "item", None)):
            item = value.item()
            if type(item) is not cls:  # numpy.datetime64("NaT").item() is itself
                return item
    raise EncodeError(
        f"cannot send a {cls.__module__}.{cls.__qualname__} value to PowerShell "
        "(hvmagic knows no CLIXML type for it)"
    )


def _int_tag(value: int) -> str:
    if -0x8000_0000 <= value <= 0x7FFF_FFFF:
        return "I32"
    if -0x8000_0000_0000_0000 <= value <= 0x7FFF_FFFF_FFFF_FFFF:
        return "I64"
    if 0 <= value <= 0xFFFF_FFFF_FFFF_FFFF:
        return "U64"
    raise EncodeError(f"{value} does not fit a .NET integer (Int64/UInt64)")


def dumps(
    value: Any,
    *,
    secure_string_encryptor: Callable[[bytes], bytes] | None = None,
    allow_plaintext_secure_string: bool = False,
    max_depth: int = MAX_DEPTH,
) -> str:
    """Serialize one value to a CLIXML element (see the module docstring for the mapping).

    ``max_depth``: the most levels the value may nest (see :data:`MAX_DEPTH`)."""
    encoder = _Encoder(secure_string_encryptor, allow_plaintext_secure_string, max_depth)
    _write_all(encoder, (value,))
    return "".join(encoder.parts)


def dumps_document(
    values: Iterable[Any],
    *,
    secure_string_encryptor: Callable[[bytes], bytes] | None = None,
    allow_plaintext_secure_string: bool = False,
    max_depth: int = MAX_DEPTH,
) -> str:
    """Serialize values as an ``<Objs>`` document (``Export-Clixml`` layout, shared RefIds)."""
    encoder = _Encoder(secure_string_encryptor, allow_plaintext_secure_string, max_depth)
    encoder.parts.append(f'<Objs Version="1.1.0.1" xmlns="{_NAMESPACE}">')
    _write_all(encoder, values)
    encoder.parts.append("</Objs>")
    return "".join(encoder.parts)


def _write_all(encoder: _Encoder, values: Iterable[Any]) -> None:
    """Write ``values``; Python's own failures become :class:`EncodeError` here, once."""
    try:
        for value in values:
            encoder.write(value)
    except EncodeError:
        raise
    except RecursionError as exc:
        raise EncodeError("value nests too deeply to serialize") from exc
    except (ValueError, TypeError, OverflowError) as exc:
        raise EncodeError(f"cannot serialize value: {exc}") from exc
