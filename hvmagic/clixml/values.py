"""Python values for PowerShell's serialized objects.

These types are what :func:`hvmagic.clixml.loads` produces and what the rest of hvmagic
(frames, sessions, display) consumes. They are deliberately light: ``__slots__`` where Python
allows it, no XML kept, so that decoding tens of thousands of objects stays fast.

Mapping of CLIXML to Python (MS-PSRP 2.2.5):

* ``S`` → ``str``; ``C`` → :class:`PSChar`; ``B`` → ``bool``; integers (``SB By I16 U16 I32 U32
  I64 U64``) → ``int``; ``Sg``/``Db`` → ``float``; ``D`` → ``decimal.Decimal``;
  ``DT`` → :class:`PSDateTime`; ``TS`` → :class:`PSTimeSpan`; ``G`` → ``uuid.UUID``;
  ``BA`` → ``bytes``; ``URI`` → :class:`PSUri`; ``Version`` → :class:`PSVersion`;
  ``XD`` → :class:`PSXmlDocument`; ``SBK`` → :class:`PSScriptBlock`; ``SS`` → :class:`SecureString`;
  ``Nil`` → ``None``; ``PR`` → :class:`ProgressRecord`.
* ``LST``/``IE``/``QUE``/``STK`` → ``list``; ``DCT`` → ``dict``.
* An ``<Obj>`` with properties → :class:`PSObject` (or a richer subclass such as
  :class:`ErrorRecord`); an enum → :class:`PSEnum`.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterator, Mapping
from typing import Any


class PSObject(Mapping[str, Any]):
    """A deserialized PowerShell object: its properties, type names and ``ToString``.

    Mapping access goes to the properties (``obj["Name"]``); where adapted (``<Props>``) and
    extended (``<MS>``) members share a name the extended value wins, as in PowerShell.
    ``type_names`` is most-derived first, exactly as sent (``Deserialized.`` prefixes kept, so
    ``Deserialized.System.ServiceProcess.ServiceController``); :attr:`type_name` strips them.
    """

    __slots__ = ("_props", "adapted", "to_string", "type_names", "value")

    def __init__(
        self,
        props: dict[str, Any] | None = None,
        type_names: list[str] | None = None,
        to_string: str | None = None,
        value: Any = None,
        adapted: tuple[str, ...] = (),
    ) -> None:
        self._props: dict[str, Any] = props if props is not None else {}
        self.type_names: list[str] = type_names if type_names is not None else []
        self.to_string: str | None = to_string
        #: the primitive/collection inside the object when it has one (``<Obj><LST>…</LST><MS>``)
        self.value: Any = value
        #: names that came from ``<Props>`` (adapted), the rest of the keys came from ``<MS>``
        self.adapted: tuple[str, ...] = adapted

    # Mapping protocol -------------------------------------------------------------------
    def __getitem__(self, key: str) -> Any:
        return self._props[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._props)

    def __len__(self) -> int:
        return len(self._props)

    def __contains__(self, key: object) -> bool:
        return key in self._props

    @property
    def properties(self) -> dict[str, Any]:
        """The live property dict: extended members (``<MS>``), then the adapted ones (``<Props>``)
        they do not shadow, in PowerShell's order."""
        return self._props

    def __getattr__(self, name: str) -> Any:
        # PowerShell's own names read as attributes too (``err.CategoryInfo.Category``), as
        # in PowerShell; only capitalised names, so Python's protocols (``__reduce__``,
        # ``_repr_html_``…) and hvmagic's snake_case attributes never land here.
        if name[:1].isupper():
            try:
                return self[name]
            except KeyError:
                pass
        raise AttributeError(f"{type(self).__name__} has no attribute or property {name!r}")

    @property
    def type_name(self) -> str | None:
        """The most derived type name without any ``Deserialized.`` prefixes."""
        if not self.type_names:
            return None
        return strip_deserialized(self.type_names[0])

    def __eq__(self, other: object) -> bool:
        if isinstance(other, PSObject):
            return (
                self._props == other._props
                and self.type_names == other.type_names
                and self.value == other.value
            )
        if isinstance(other, Mapping):
            return self._props == dict(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # mutable mapping-like value

    def __str__(self) -> str:
        if self.to_string is not None:
            return self.to_string
        if self.value is not None:
            if type(self.value) in (list, tuple, dict) or isinstance(self.value, PSObject):
                return bounded_text(self.value, _CONTAINER_TEXT_LIMIT)  # may hold this object
            return str(self.value)
        return "@{" + "; ".join(f"{k}={_short(v)}" for k, v in self._props.items()) + "}"

    def __repr__(self) -> str:
        tn = self.type_name or "PSCustomObject"
        shown = ", ".join(f"{k}={_short(v)!s}" for k, v in list(self._props.items())[:6])
        more = ", …" if len(self._props) > 6 else ""
        return f"<{tn} {shown}{more}>"


def strip_deserialized(type_name: str) -> str:
    """``Deserialized.Deserialized.System.X`` → ``System.X`` (objects that crossed two hops)."""
    while type_name.startswith("Deserialized."):
        type_name = type_name[13:]
    return type_name


def _short(value: Any, limit: int = 40) -> str:
    text = bounded_text(value, limit)
    return text if len(text) <= limit else text[: limit - 1] + "…"


#: nested objects shown inside a value's text, at most (PowerShell itself shows one level)
RENDER_DEPTH = 8
#: the text of an object wrapping a collection (``<Obj><LST>…``) is cut here
_CONTAINER_TEXT_LIMIT = 100_000


def bounded_text(value: Any, limit: int = 40) -> str:
    """``str(value)`` as far as its first ``limit`` characters, for any value the decoder made.

    The decoder returns cyclic objects on purpose (a ``<Ref>`` to an object still being built)
    and shares one object under many ``<Ref>`` elements, so a naive ``str`` recurses forever or,
    over a chain of shared objects, exponentially. This walk stops at the first ``limit + 1``
    characters, shows an object already being shown, or one deeper than :data:`RENDER_DEPTH`,
    as ``…`` — PowerShell's formatter likewise stops expanding at its depth. Plain values
    render exactly as ``str`` does.
    """
    parts: list[str] = []
    _render(value, parts, [limit + 1], 0, set())
    return "".join(parts)


def _render(value: Any, out: list[str], budget: list[int], depth: int, active: set[int]) -> None:
    # budget[0]: characters still wanted; every container visited costs at least one, so the
    # walk is bounded by ``limit`` however the objects are shared.
    if budget[0] <= 0:
        return
    if isinstance(value, PSObject):
        if value.to_string is not None:
            _emit(value.to_string, out, budget)
            return
        if id(value) in active or depth >= RENDER_DEPTH:
            _emit("…", out, budget)
            return
        active.add(id(value))
        try:
            if value.value is not None:
                _render(value.value, out, budget, depth + 1, active)
                return
            _emit("@{", out, budget)
            for index, (key, item) in enumerate(value.properties.items()):
                if budget[0] <= 0:
                    return
                _emit(f"; {key}=" if index else f"{key}=", out, budget)
                _render(item, out, budget, depth + 1, active)
            _emit("}", out, budget)
        finally:
            active.discard(id(value))
        return
    if isinstance(value, (list, tuple, dict)) and type(value) in (list, tuple, dict):
        if id(value) in active or depth >= RENDER_DEPTH:
            _emit("[...]" if isinstance(value, list) else "…", out, budget)
            return
        active.add(id(value))
        try:
            is_dict = isinstance(value, dict)
            _emit("{" if is_dict else "[" if isinstance(value, list) else "(", out, budget)
            items: Any = value.items() if isinstance(value, dict) else value
            for index, item in enumerate(items):
                if budget[0] <= 0:
                    return
                if index:
                    _emit(", ", out, budget)
                if is_dict:
                    _render_item(item[0], out, budget, depth + 1, active)
                    _emit(": ", out, budget)
                    item = item[1]
                _render_item(item, out, budget, depth + 1, active)
            if isinstance(value, tuple) and len(value) == 1:
                _emit(",", out, budget)
            _emit("}" if is_dict else "]" if isinstance(value, list) else ")", out, budget)
        finally:
            active.discard(id(value))
        return
    _emit(str(value), out, budget)


def _render_item(value: Any, out: list[str], budget: list[int], depth: int,
                 active: set[int]) -> None:
    """An element inside a list or dict: shown as ``repr`` shows it, as Python's ``str(list)``
    does (a PSObject by its ``<Type Prop=…>`` repr, bounded the same way)."""
    if isinstance(value, PSObject) and type(value).__repr__ is PSObject.__repr__:
        if id(value) in active or depth >= RENDER_DEPTH:
            _emit("…", out, budget)
            return
        active.add(id(value))
        try:
            _emit(f"<{value.type_name or 'PSCustomObject'} ", out, budget)
            for index, (key, item) in enumerate(list(value.properties.items())[:6]):
                if budget[0] <= 0:
                    return
                _emit(f", {key}=" if index else f"{key}=", out, budget)
                _render(item, out, budget, depth + 1, active)
            _emit(", …>" if len(value) > 6 else ">", out, budget)
        finally:
            active.discard(id(value))
        return
    if type(value) in (list, tuple, dict):
        _render(value, out, budget, depth, active)
        return
    _emit(repr(value), out, budget)  # scalars, and records whose repr is one flat line


def _emit(text: str, out: list[str], budget: list[int]) -> None:
    if len(text) > budget[0]:
        text = text[: budget[0]]
    out.append(text)
    budget[0] -= max(1, len(text))


class PSEnum(int):
    """A .NET enum value: ``int(v)`` is the number, ``str(v)`` the name (``ToString``).

    Flags enums keep PowerShell's text (``"Read, Write"``) as their name.
    """

    name: str
    type_names: list[str]

    def __new__(cls, value: int, name: str, type_names: list[str] | None = None) -> PSEnum:
        self = int.__new__(cls, value)
        self.name = name
        self.type_names = type_names if type_names is not None else []
        return self

    @property
    def type_name(self) -> str | None:
        return strip_deserialized(self.type_names[0]) if self.type_names else None

    def __str__(self) -> str:
        return self.name

    def __format__(self, spec: str) -> str:
        return format(self.name, spec) if not spec or spec[-1] not in "dxXob" else int.__format__(
            self, spec
        )

    def __repr__(self) -> str:
        return f"<{self.type_name or 'enum'}.{self.name}: {int(self)}>"

    def __reduce__(self) -> tuple[Any, ...]:
        return (PSEnum, (int(self), self.name, self.type_names))


class PSChar(str):
    """A .NET ``System.Char`` (``<C>``): a one-character ``str`` that serializes back as ``C``."""

    __slots__ = ()


class PSUri(str):
    """A ``System.Uri`` (``<URI>``)."""

    __slots__ = ()


class PSXmlDocument(str):
    """A ``System.Xml.XmlDocument`` (``<XD>``), kept as its XML text (never parsed here)."""

    __slots__ = ()


class PSScriptBlock(str):
    """A ``System.Management.Automation.ScriptBlock`` (``<SBK>``), kept as its source text."""

    __slots__ = ()


class PSDateTime(_dt.datetime):
    """A ``System.DateTime``. .NET keeps 100-ns ticks; Python keeps microseconds.

    The seventh fractional digit (0–9 × 100 ns) is kept in :attr:`tick_remainder` (in units
    of 100 ns) so that ``dumps(loads(x))`` reproduces the ticks; arithmetic and pandas see the
    microsecond value (truncated, never rounded up, so a date never moves to the next day).
    ``kind`` is ``"Utc"``, ``"Local"`` or ``"Unspecified"`` as the text implied (``Z``, an
    offset, or nothing).
    """

    # The digit lives in a slot: as an instance attribute it cost every decoded DateTime a
    # __dict__, one more object for the cyclic collector to track and walk (decoding 20 000
    # services spends ~25 % of its time in collections). Members attached to a DateTime (a
    # primitive with extra properties) still go to the __dict__, created only then.
    __slots__ = ("__dict__", "_ticks")

    @property
    def tick_remainder(self) -> int:
        try:
            return self._ticks
        except AttributeError:
            return 0

    @tick_remainder.setter
    def tick_remainder(self, value: int) -> None:
        self._ticks = value

    # datetime defines __reduce_ex__ in C, which copy/pickle prefer over __reduce__: override
    # both so tick_remainder (and attached members) survive copy.deepcopy and pickle.
    def __reduce_ex__(self, protocol: Any) -> Any:
        return self.__reduce__()

    def __reduce__(self) -> Any:  # keep the remainder through pickle/copy
        return (_rebuild_datetime, (_dt.datetime(*self.timetuple()[:6], self.microsecond,
                                                 self.tzinfo), self.tick_remainder),
                dict(self.__dict__) or None)


def _rebuild_datetime(base: _dt.datetime, remainder: int) -> PSDateTime:
    value = PSDateTime(
        base.year, base.month, base.day, base.hour, base.minute, base.second,
        base.microsecond, base.tzinfo,
    )
    value.tick_remainder = remainder
    return value


class PSTimeSpan(_dt.timedelta):
    """A ``System.TimeSpan`` (``<TS>``, an xs:duration). Sub-microsecond ticks as in
    :class:`PSDateTime` live in :attr:`tick_remainder`."""

    tick_remainder: int = 0

    def __reduce_ex__(self, protocol: Any) -> Any:  # see PSDateTime.__reduce_ex__
        return self.__reduce__()

    def __reduce__(self) -> Any:
        return (PSTimeSpan, (self.days, self.seconds, self.microseconds),
                dict(self.__dict__) or None)


class PSVersion(tuple[int, ...]):
    """A ``System.Version``: ordered like a tuple, printed like .NET (``10.0.17763.1``)."""

    __slots__ = ()

    def __new__(cls, *parts: int) -> PSVersion:
        if not 2 <= len(parts) <= 4:
            raise ValueError("a System.Version has 2 to 4 parts")
        return tuple.__new__(cls, (int(p) for p in parts))

    @classmethod
    def parse(cls, text: str) -> PSVersion:
        return cls(*(int(p) for p in text.strip().split(".")))

    major = property(lambda self: self[0])
    minor = property(lambda self: self[1])
    build = property(lambda self: self[2] if len(self) > 2 else -1)
    revision = property(lambda self: self[3] if len(self) > 3 else -1)

    def __str__(self) -> str:
        return ".".join(str(p) for p in self)

    def __repr__(self) -> str:
        return f"PSVersion({str(self)!r})"

    def __getnewargs__(self) -> tuple[int, ...]:
        return tuple(self)


class SecureString:
    """A ``System.Security.SecureString``. Its content never appears in ``repr``/``str``.

    Decoded from CLIXML it holds the encrypted bytes exactly as sent (``ciphertext``); created
    from Python (``SecureString("p@ss")``) it holds the plain text for serialization to the
    guest. :meth:`reveal` returns the plain text when this process has it, else raises.
    """

    __slots__ = ("_ciphertext", "_plain")

    def __init__(self, plain: str | None = None, *, ciphertext: bytes | None = None) -> None:
        if (plain is None) == (ciphertext is None):
            raise ValueError("give exactly one of the plain text or the ciphertext")
        self._plain = plain
        self._ciphertext = ciphertext

    @property
    def ciphertext(self) -> bytes | None:
        return self._ciphertext

    @property
    def has_plaintext(self) -> bool:
        return self._plain is not None

    def reveal(self) -> str:
        """The plain text. Only for code that must hand it to the wire (serializer, handshake)."""
        if self._plain is None:
            raise ValueError("this SecureString holds only ciphertext from the guest")
        return self._plain

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SecureString):
            return NotImplemented
        return self._plain == other._plain and self._ciphertext == other._ciphertext

    def __hash__(self) -> int:
        return hash((SecureString, self._plain, self._ciphertext))

    def __repr__(self) -> str:
        return "SecureString(********)"

    __str__ = __repr__

    def __reduce__(self) -> Any:
        # Refuse to pickle plain text: pickles end up in caches, %store and recordings.
        raise TypeError("SecureString cannot be pickled (it would write the secret to disk)")


class PSCredential:
    """A ``System.Management.Automation.PSCredential``: a user name and a :class:`SecureString`."""

    __slots__ = ("password", "username")

    def __init__(self, username: str, password: SecureString | str) -> None:
        self.username = username
        self.password = password if isinstance(password, SecureString) else SecureString(password)

    # PowerShell's property names, as on any PSObject (``cred["UserName"]``, ``cred.Password``);
    # the password stays a masked SecureString. Not a Mapping on purpose: code that walks
    # mappings (frames, recordings) must keep meeting it as a credential.
    _NAMES = ("UserName", "Password")

    def __getitem__(self, key: str) -> Any:
        if key == "UserName":
            return self.username
        if key == "Password":
            return self.password
        raise KeyError(key)

    def __contains__(self, key: object) -> bool:
        return key in self._NAMES

    def __iter__(self) -> Iterator[str]:
        return iter(self._NAMES)

    def __len__(self) -> int:
        return len(self._NAMES)

    def keys(self) -> tuple[str, ...]:
        return self._NAMES

    def get(self, key: str, default: Any = None) -> Any:
        return self[key] if key in self._NAMES else default

    @property
    def properties(self) -> dict[str, Any]:
        return {"UserName": self.username, "Password": self.password}

    UserName = property(lambda self: self.username)
    Password = property(lambda self: self.password)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PSCredential):
            return NotImplemented
        return self.username == other.username and self.password == other.password

    def __hash__(self) -> int:
        return hash((PSCredential, self.username, self.password))

    def __repr__(self) -> str:
        return f"PSCredential(username={self.username!r}, password=********)"

    __str__ = __repr__

    def __reduce__(self) -> Any:
        raise TypeError("PSCredential cannot be pickled (it would write the secret to disk)")


class ProgressRecord:
    """A ``Write-Progress`` record (``<PR>`` in a CLIXML stream, PROGRESS_RECORD in PSRP)."""

    __slots__ = (
        "activity",
        "activity_id",
        "current_operation",
        "parent_activity_id",
        "percent_complete",
        "record_type",
        "seconds_remaining",
        "status_description",
    )

    def __init__(
        self,
        activity: str,
        activity_id: int = 0,
        status_description: str | None = None,
        current_operation: str | None = None,
        parent_activity_id: int = -1,
        percent_complete: int = -1,
        seconds_remaining: int = -1,
        record_type: str = "Processing",
    ) -> None:
        self.activity = activity
        self.activity_id = activity_id
        self.status_description = status_description
        self.current_operation = current_operation
        self.parent_activity_id = parent_activity_id
        self.percent_complete = percent_complete
        self.seconds_remaining = seconds_remaining
        #: ``"Processing"`` or ``"Completed"``
        self.record_type = record_type

    @classmethod
    def from_properties(cls, props: Mapping[str, Any], *, strict: bool = False) -> ProgressRecord:
        """The one way a record is built from data: PowerShell's property names (a
        PROGRESS_RECORD message's bag, a ``<PR>`` element's fields, a recording's fields
        through :meth:`from_fields`).

        The numbers are Int32 in .NET. One that is not a number of that range (``INF``, a
        100 000-digit Decimal from a hostile guest) gets its default, or raises
        :class:`ValueError` when ``strict``. ``Type`` is the ProgressRecordType (its label, or
        its number: 1 is ``Completed``).
        """

        def number(name: str, default: int) -> int:
            raw = props.get(name)
            if raw is None:
                return default
            try:
                value = int(raw)
            except (TypeError, ValueError, OverflowError) as exc:  # OverflowError: int(inf)
                if strict:
                    raise ValueError(f"{name} is not a number: {raw!r}") from exc
                return default
            if -0x8000_0000 <= value <= 0x7FFF_FFFF:
                return value
            if strict:
                raise ValueError(f"{name} is outside Int32: {bounded_text(raw)}")
            return default

        kind = props.get("Type", props.get("RecordType", "Processing"))
        record_type = str(kind)
        if isinstance(kind, int) and not isinstance(kind, PSEnum):
            record_type = "Completed" if kind == 1 else "Processing"
        status = props.get("StatusDescription")
        operation = props.get("CurrentOperation")
        return cls(
            activity=str(props.get("Activity") or ""),
            activity_id=number("ActivityId", 0),
            status_description=None if status is None else str(status),
            current_operation=None if operation is None else str(operation),
            parent_activity_id=number("ParentActivityId", -1),
            percent_complete=number("PercentComplete", -1),
            seconds_remaining=number("SecondsRemaining", -1),
            record_type=record_type,
        )

    @classmethod
    def from_fields(cls, fields: Mapping[str, Any]) -> ProgressRecord:
        """A record from its attribute names (``activity_id`` …), as a recording keeps it;
        unknown names are ignored and bad numbers get their defaults."""
        return cls.from_properties(
            {PROGRESS_PROPERTIES[k]: v for k, v in fields.items() if k in PROGRESS_PROPERTIES}
        )

    def fields(self) -> dict[str, Any]:
        """The attributes by name (what :meth:`from_fields` reads back)."""
        return {name: getattr(self, name) for name in PROGRESS_PROPERTIES}

    @property
    def completed(self) -> bool:
        return self.record_type == "Completed"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ProgressRecord):
            return NotImplemented
        return all(getattr(self, s) == getattr(other, s) for s in self.__slots__)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        pct = f" {self.percent_complete}%" if self.percent_complete >= 0 else ""
        return (
            f"<ProgressRecord #{self.activity_id} {self.activity!r}: "
            f"{self.status_description!r}{pct} {self.record_type}>"
        )


#: ProgressRecord attribute → PowerShell's property name (MS-PSRP 2.2.2.25)
PROGRESS_PROPERTIES = {
    "activity": "Activity",
    "activity_id": "ActivityId",
    "status_description": "StatusDescription",
    "current_operation": "CurrentOperation",
    "parent_activity_id": "ParentActivityId",
    "percent_complete": "PercentComplete",
    "seconds_remaining": "SecondsRemaining",
    "record_type": "Type",
}


class ErrorRecord(PSObject):
    """A ``System.Management.Automation.ErrorRecord`` with PowerShell's interesting fields.

    Mapping access still reaches every serialized property (``rec["FullyQualifiedErrorId"]``).
    """

    __slots__ = ()

    def __getitem__(self, key: str) -> Any:
        try:
            return self._props[key]
        except KeyError:
            built = self._built(key)
            if built is None:
                raise
            return built

    def __contains__(self, key: object) -> bool:
        return key in self._props or (isinstance(key, str) and self._built(key) is not None)

    def _built(self, key: str) -> PSObject | None:
        """PowerShell's ``CategoryInfo`` / ``InvocationInfo`` objects, which remoting sends
        flattened (``ErrorCategory_*``, ``InvocationInfo_*`` properties), put back together."""
        if key == "CategoryInfo":
            if "ErrorCategory_Category" not in self._props:
                return None
            category = self._props["ErrorCategory_Category"]
            if not isinstance(category, PSEnum):
                category = PSEnum(int(category), _category_name(category),
                                  ["System.Management.Automation.ErrorCategory"])
            props: dict[str, Any] = {"Category": category}
            for name in ("Activity", "Reason", "TargetName", "TargetType"):
                props[name] = self._props.get(f"ErrorCategory_{name}")
            return PSObject(props, ["System.Management.Automation.ErrorCategoryInfo"],
                            self.category_info)
        if key == "InvocationInfo":
            flat = {k[15:]: v for k, v in self._props.items() if k.startswith("InvocationInfo_")}
            if not flat:
                return None
            return PSObject(flat, ["System.Management.Automation.InvocationInfo"])
        return None

    @property
    def exception_message(self) -> str | None:
        """``Exception.Message`` (what :attr:`message` shows unless ErrorDetails replace it)."""
        exc = self._props.get("Exception")
        if isinstance(exc, PSObject) and exc.get("Message") is not None:
            return str(exc["Message"])
        return None

    def _get(self, *names: str) -> Any:
        for name in names:
            value = self._props.get(name)
            if value is not None:
                return value
        return None

    @property
    def message(self) -> str:
        """The text PowerShell shows: ErrorDetails.Message if set, else the exception message."""
        details = self._get("ErrorDetails_Message")
        if details:
            return str(details)
        exc = self._props.get("Exception")
        if isinstance(exc, PSObject) and exc.get("Message") is not None:
            return str(exc["Message"])
        if self.to_string:
            return self.to_string
        return str(exc) if exc is not None else ""

    @property
    def exception_type(self) -> str | None:
        exc = self._props.get("Exception")
        if isinstance(exc, PSObject):
            return exc.type_name
        return None

    @property
    def fully_qualified_error_id(self) -> str | None:
        value = self._get("FullyQualifiedErrorId")
        return None if value is None else str(value)

    @property
    def category(self) -> str | None:
        """The category name, e.g. ``ObjectNotFound``."""
        value = self._get("ErrorCategory_Category")
        if value is not None:
            return str(value) if isinstance(value, PSEnum) else _category_name(value)
        info = self._props.get("CategoryInfo")
        if isinstance(info, PSObject) and "Category" in info:
            return str(info["Category"])
        return None

    @property
    def category_info(self) -> str | None:
        """PowerShell's one-line ``CategoryInfo`` text, e.g.
        ``ObjectNotFound: (nosuch:String) [Get-Service], ServiceCommandException``."""
        info = self._props.get("CategoryInfo")
        if isinstance(info, PSObject) and info.to_string:
            return info.to_string
        category = self.category
        if category is None:
            return None
        if "ErrorCategory_Reason" not in self._props and self._get("ErrorCategory_Message"):
            return str(self._props["ErrorCategory_Message"])
        # built from the parts as ErrorCategoryInfo.GetMessage does, long parts shortened
        # with "…" the same way (the serialized ErrorCategory_Message is not: PowerShell's
        # client never shows that one)
        target = _ellipsize(self._get("ErrorCategory_TargetName") or "")
        target_type = _ellipsize(self._get("ErrorCategory_TargetType") or "")
        activity = self._get("ErrorCategory_Activity") or ""
        reason = _ellipsize(self._get("ErrorCategory_Reason") or "")
        return f"{category}: ({target}:{target_type}) [{activity}], {reason}"

    @property
    def invoked_by_wrapper(self) -> bool:
        """True when the record's InvocationInfo is hvmagic's wrapper (see position_message)."""
        value = self._get("InvocationInfo_PositionMessage")
        info = self._props.get("InvocationInfo")
        if value is None and isinstance(info, PSObject):
            value = info.get("PositionMessage")
        return value is not None and _WRAPPER_MARK in str(value)

    @property
    def target_object(self) -> Any:
        return self._props.get("TargetObject")

    @property
    def script_stack_trace(self) -> str | None:
        value = self._get("ErrorDetails_ScriptStackTrace", "ScriptStackTrace")
        return None if value is None else str(value)

    @property
    def position_message(self) -> str | None:
        """``At line:1 char:1`` + the offending line, as PowerShell prints it.

        ``None`` where the position is that of hvmagic's wrapper (``Write-Error`` at the top
        of a cell reports its caller, the wrapper's dot-source): PowerShell's own client has
        no position for a top-level script there either, and the wrapper is not the user's.
        """
        value = self._get("InvocationInfo_PositionMessage")
        if value is None:
            info = self._props.get("InvocationInfo")
            if isinstance(info, PSObject) and info.get("PositionMessage") is not None:
                value = info["PositionMessage"]
        if value is None or _WRAPPER_MARK in str(value):
            return None
        return str(value)

    @property
    def from_powershell_core(self) -> bool:
        """True when the record came from PowerShell 6+ (its InvocationInfo has the
        ``Statement`` property that Windows PowerShell 5.1 lacks)."""
        info = self._props.get("InvocationInfo")
        if isinstance(info, PSObject):
            return "Statement" in info
        return "InvocationInfo_Statement" in self._props

    def __repr__(self) -> str:
        return f"<ErrorRecord {self.fully_qualified_error_id}: {self.message!r}>"


#: a text only hvmagic's wrapper script holds (hvmagic.session.WRAPPER_SCRIPT)
_WRAPPER_MARK = "$__hvmagic_parameters"

# MS-PSRP 2.2.3.9 ErrorCategory values, for records that carry the number only.
_ERROR_CATEGORIES = (
    "NotSpecified", "OpenError", "CloseError", "DeviceError", "DeadlockDetected",
    "InvalidArgument", "InvalidData", "InvalidOperation", "InvalidResult", "InvalidType",
    "MetadataError", "NotImplemented", "NotInstalled", "ObjectNotFound", "OperationStopped",
    "OperationTimeout", "SyntaxError", "ParserError", "PermissionDenied", "ResourceBusy",
    "ResourceExists", "ResourceUnavailable", "ReadError", "WriteError", "FromStdErr",
    "SecurityError", "ProtocolError", "ConnectionError", "AuthenticationError",
    "LimitsExceeded", "QuotaExceeded", "NotEnabled",
)


def _ellipsize(value: Any) -> str:
    """PowerShell's ``ErrorCategoryInfo`` shortening: over 40 characters, 19 … 19."""
    text = str(value)
    return text if len(text) <= 40 else f"{text[:19]}\u2026{text[-19:]}"


def _category_name(value: Any) -> str:
    try:
        return _ERROR_CATEGORIES[int(value)]
    except (ValueError, TypeError, IndexError):
        return str(value)


class InformationalRecord(PSObject):
    """A verbose, warning or debug record: :attr:`message` is what PowerShell prints."""

    __slots__ = ()

    @property
    def message(self) -> str:
        value = self._props.get("InformationalRecord_Message", self._props.get("Message"))
        if value is None:
            return self.to_string or ""
        return str(value)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.message!r}>"


class InformationRecord(PSObject):
    """An ``Write-Information`` / ``Write-Host`` record (PowerShell 5+ information stream)."""

    __slots__ = ()

    @property
    def message_data(self) -> Any:
        return self._props.get("MessageData")

    @property
    def message(self) -> str:
        data = self.message_data
        if isinstance(data, PSObject) and "Message" in data:  # HostInformationMessage
            return str(data["Message"])
        return "" if data is None else str(data)

    @property
    def tags(self) -> list[str]:
        tags = self._props.get("Tags")
        return [str(t) for t in tags] if isinstance(tags, list) else []

    @property
    def is_host_output(self) -> bool:
        """True for ``Write-Host`` text (tagged ``PSHOST``)."""
        return "PSHOST" in self.tags

    @property
    def source(self) -> str | None:
        value = self._props.get("Source")
        return None if value is None else str(value)

    @property
    def time_generated(self) -> Any:
        return self._props.get("TimeGenerated")

    def __repr__(self) -> str:
        return f"<InformationRecord {self.message!r}>"


#: stream names used by ``loads_streams`` and by session events, in PowerShell's order
STREAMS = ("output", "error", "warning", "verbose", "debug", "information", "progress", "host")
