"""Python values (what :func:`hvmagic.clixml.loads` returns) → :class:`pandas.DataFrame`.

:func:`to_dataframe` makes one row per object with the columns PowerShell would have shown
(see :mod:`hvmagic.views`), or every property, or the columns asked for. Rules, in one place:

Rows
    A list among the values is enumerated one level, as PowerShell's formatter does with a
    collection written as one output object. A :class:`~hvmagic.clixml.values.PSObject` with
    properties is an *object* row. A dictionary (Hashtable, ``[ordered]``, ``$PSVersionTable``:
    a ``dict``, or an object wrapping one) becomes one row per entry, as PowerShell's formatter
    enumerates it: ``Name`` and ``Value`` by default (``System.Collections.DictionaryEntry``'s
    view; ``columns="all"`` adds ``Key``, as ``Format-Table *`` does), values unchanged.
    Everything else is a *scalar* row whose value goes to the ``Value`` column: strings,
    numbers, enums, dates, nested lists, a primitive that carries extra members (its
    ``.value``), an object without properties (shown by its ``ToString``).

Columns (``columns=``)
    ``"default"``: per type, the columns of PowerShell's default table view
    (:func:`hvmagic.views.default_columns`, Windows PowerShell 5.1's views unless
    ``ps_version`` says 6 or later): PSCustomObject and ``Select-Object`` output → all
    properties in order, unknown types → all properties (WMI/CIM plumbing left out).
    A view's columns come in its order, each under the name of the **property** it shows,
    with that property's own value: ``WorkingSet``-style calculated columns are unscaled
    (Process on 7.x: ``NPM PM WS CPU Id SI ProcessName``, bytes and seconds, not
    ``NPM(K) PM(M) WS(M) CPU(s)``), so ``df.sort_values("CPU")`` works. A column PowerShell
    derives from several properties (``PSEdition``, ``PreRelease`` of a module) keeps its
    header and value. ``df.attrs["hvmagic_labels"]`` maps each column the view shows
    differently to PowerShell's header (``{"WS": "WS(M)"}``; ``{"Size": "Size"}`` where a
    volume's bytes are shown as ``127 GB``). ``labels=True`` gives the table as PowerShell
    shows it instead — headers and calculated values of the view (what the notebook displays;
    ``attrs["hvmagic_align"]`` names its right-aligned text columns).
    ``"all"``: every property (the union in first-seen order). A list of names: exactly those,
    missing → NA; a name matches a property case-insensitively, or a calculated header of the
    type's view (``"WS(K)"``), or ``Value`` for scalar rows.

Mixed output (several types, or objects and scalars)
    Like ``Format-Table`` fed several types, each type keeps its own columns; the frame's
    columns are their union in order of first appearance (the first row's type first) and a row
    has NA in the columns its type does not show. Scalars fill ``Value`` (the same column as
    objects' own ``Value`` property, when they have one). A column whose values have different
    kinds (int and float, enum and int, str and int …) becomes ``object`` and keeps every value
    unchanged, so an integer is never silently turned into a float.

Dtypes (per column, from the values present; ``None`` = NA)
    * ``bool`` → ``bool`` (``boolean`` with NA).
    * ``int`` → ``Int64``; ``UInt64`` above the int64 range; ``object`` beyond that.
    * ``float`` → ``float64`` (NA = NaN).
    * ``str`` (also ``PSChar``, ``PSUri`` …) → ``string`` (pandas' ``StringDtype``, NA =
      ``pd.NA``, the same missing value as ``Int64``/``boolean``).
    * enum (:class:`~hvmagic.clixml.values.PSEnum`) → ``category`` of names, categories in the
      order of the enum's numbers, so sorting follows PowerShell's ``Sort-Object``.
    * ``datetime``: all naive → ``datetime64[us]``; all with offsets → ``datetime64[us,
      UTC±hh:mm]`` when they share one offset (the guest's wall clock, as PowerShell shows it),
      else ``datetime64[us, UTC]``; naive mixed with aware → ``object``. The 7th fractional
      digit of .NET ticks (``PSDateTime.tick_remainder``) is not representable and dropped.
      Microseconds, not nanoseconds, because .NET dates span years 1–9999
      (``DateTime.MinValue`` is common in WMI/AD data).
    * ``timedelta`` → ``timedelta64[us]``.
    * ``PSVersion`` → ``string`` like .NET's ``ToString`` (``10.0.17763.1``); also in an
      ``object`` column and inside lists (pandas would print a version as a tuple).
    * ``Decimal`` (kept exact), ``UUID``, ``bytes``, ``dict``, SecureString … → ``object``
      holding the values unchanged; lists → ``object`` holding lists.
    * nested objects → ``object`` holding :class:`NestedObject`: displayed by the object's
      ``ToString``; ``cell["Prop"]`` and ``cell.object`` reach the object (also inside lists).
    * no value at all (every row ``$null``) → ``object`` holding ``None``.

``df.attrs``
    ``"hvmagic_labels"`` (only when a column was renamed, see above). ``"type_names"``: the
    distinct type-name chains of the rows (each a list, most derived first, exactly as sent,
    ``Deserialized.`` included; a scalar's chain is its .NET type, e.g.
    ``["System.String", "System.Object"]``) in order of first appearance. When rows have more
    than one chain, ``"type_index"`` gives each row's index into ``"type_names"``. Kept small on
    purpose: pandas deep-copies ``attrs`` on every derived frame.
"""

from __future__ import annotations

import datetime as _dt
import decimal
import gc
import itertools
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

from hvmagic.clixml.values import PSEnum, PSObject, PSVersion, SecureString, bounded_text
from hvmagic.errors import FrameError
from hvmagic.views import Column, default_columns, find_view

if TYPE_CHECKING:  # pragma: no cover - pandas is imported lazily (``import hvmagic`` stays cheap)
    import pandas as pd

__all__ = ["NestedObject", "to_dataframe"]

VALUE_COLUMN = "Value"
#: ``df.attrs`` key: column name → PowerShell's header, where the view shows the column
#: differently (``{"WS": "WS(M)"}``; ``{"Size": "Size"}`` for a size shown as ``127 GB``)
LABELS_ATTR = "hvmagic_labels"
#: ``df.attrs`` key of a ``labels=True`` frame: header → ``"right"`` for the text columns the
#: view right-aligns (a volume's ``66.34 GB``)
ALIGN_ATTR = "hvmagic_align"
_INT64_MIN, _INT64_MAX, _UINT64_MAX = -(2**63), 2**63 - 1, 2**64 - 1


class NestedObject:
    """A PowerShell object inside a DataFrame cell.

    pandas would print a mapping as its keys; PowerShell prints a nested object by its
    ``ToString``, so this wrapper's ``str`` is that text while the object stays one step away:
    ``cell.object``, ``cell["Prop"]``, ``"Prop" in cell``, ``cell.get("Prop")``.
    """

    __slots__ = ("object",)

    def __init__(self, obj: PSObject) -> None:
        self.object = obj

    def __str__(self) -> str:
        return str(self.object)

    def __repr__(self) -> str:
        return repr(self.object)

    def __getitem__(self, key: str) -> Any:
        return self.object[key]

    def __contains__(self, key: object) -> bool:
        return key in self.object

    def get(self, key: str, default: Any = None) -> Any:
        return self.object.get(key, default)

    def keys(self) -> Iterator[str]:
        return iter(self.object)

    @property
    def type_names(self) -> list[str]:
        return self.object.type_names

    @property
    def to_string(self) -> str | None:
        return self.object.to_string

    def __eq__(self, other: object) -> bool:
        if isinstance(other, NestedObject):
            return self.object == other.object
        if isinstance(other, PSObject):
            return self.object == other
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # wraps a mutable mapping


# --------------------------------------------------------------------------------------------
# Row collection

_SCALAR_KEY: tuple[str, ...] = ("<scalar>",)


class _Group:
    """The rows of one type (one type-name chain), in order."""

    __slots__ = ("chain", "index", "props", "rows", "scalar")

    def __init__(self, chain: list[str], index: int, scalar: bool) -> None:
        self.chain = chain
        self.index = index  # position in attrs["type_names"]
        self.scalar = scalar  # rows are values for the Value column, not objects
        self.rows: list[int] = []
        self.props: list[Any] = []  # property mappings, or the scalar values


_NET_TYPES: tuple[tuple[type, list[str]], ...] = (
    (bool, ["System.Boolean", "System.ValueType", "System.Object"]),
    (str, ["System.String", "System.Object"]),
    (float, ["System.Double", "System.ValueType", "System.Object"]),
    (decimal.Decimal, ["System.Decimal", "System.ValueType", "System.Object"]),
    (_dt.datetime, ["System.DateTime", "System.ValueType", "System.Object"]),
    (_dt.timedelta, ["System.TimeSpan", "System.ValueType", "System.Object"]),
    (uuid.UUID, ["System.Guid", "System.ValueType", "System.Object"]),
    (bytes, ["System.Byte[]", "System.Array", "System.Object"]),
    (PSVersion, ["System.Version", "System.Object"]),
    (list, ["System.Object[]", "System.Array", "System.Object"]),
    (SecureString, ["System.Security.SecureString", "System.Object"]),
)


def _scalar_chain(value: Any) -> list[str]:
    """The .NET type-name chain of a scalar row (``int`` by range: CLIXML ``I32`` or ``I64``)."""
    if isinstance(value, PSEnum) and value.type_names:
        return list(value.type_names)
    if isinstance(value, PSObject):
        return list(value.type_names)
    if isinstance(value, int) and not isinstance(value, bool):
        name = "System.Int32" if -(2**31) <= value < 2**31 else "System.Int64"
        return [name, "System.ValueType", "System.Object"]
    for cls, chain in _NET_TYPES:
        if isinstance(value, cls):
            return list(chain)
    return []


def _is_dictionary(value: Any) -> bool:
    """A Hashtable/ordered dictionary: a plain mapping, or an object wrapping one."""
    if _is_psobject_type(type(value)):
        return isinstance(value.value, Mapping)
    return isinstance(value, Mapping)


#: the chain of the rows a dictionary becomes (one list shared: the fast path keys on its id)
_ENTRY_CHAIN = ["System.Collections.DictionaryEntry", "System.ValueType", "System.Object"]


def _dictionary_entries(values: list[Any]) -> list[Any]:
    """Each dictionary replaced by its entries, as PowerShell's formatter enumerates an
    IDictionary: one ``Name``/``Key``/``Value`` row per entry (``Format-Table *`` shows those
    three), in the dictionary's order; other values unchanged."""
    rows: list[Any] = []
    for value in values:
        if not _is_dictionary(value):
            rows.append(value)
            continue
        mapping = value.value if _is_psobject_type(type(value)) else value
        rows.extend(
            PSObject({"Name": key, "Key": key, "Value": item}, _ENTRY_CHAIN,
                     to_string="System.Collections.DictionaryEntry")
            for key, item in mapping.items()
        )
    return rows


def _collect(values: list[Any]) -> list[_Group] | None:
    """One pass over the values: group rows by type-name chain, first appearance first.

    ``None`` when a dictionary is among them: its entries are the rows (see
    :func:`_dictionary_entries`), so the caller expands and collects again. Dictionaries are
    rare in bulk output, so the common path pays nothing for them."""
    groups: dict[tuple[str, ...], _Group] = {}
    by_list_id: dict[int, _Group] = {}  # objects decoded with <TNRef> share one list

    def group_for(key: tuple[str, ...], chain: list[str], scalar: bool) -> _Group:
        group = groups.get(key)
        if group is None:
            group = groups[key] = _Group(chain, len(groups), scalar)
        return group

    def add_scalar(row: int, value: Any, chain: list[str]) -> None:
        group = group_for((*_SCALAR_KEY, *chain), chain, True)
        group.rows.append(row)
        group.props.append(value)

    last_type_names: list[str] | None = None
    last_group: _Group | None = None
    known = _PSOBJECT_TYPES.get
    for row, value in enumerate(values):
        is_psobject = known(type(value))
        if is_psobject is None:
            is_psobject = _is_psobject_type(type(value))
        if is_psobject:
            # (the slot behind .properties: this loop runs once per row of every frame)
            props: Any = value._props
            inner = value.value
            type_names = value.type_names
            if inner is None and props and type_names is last_type_names:
                # the common case: the same type as the previous row (shared <TNRef> list)
                last_group.rows.append(row)  # type: ignore[union-attr]
                last_group.props.append(props)  # type: ignore[union-attr]
                continue
            if inner is not None:
                if isinstance(inner, Mapping):
                    return None  # a dictionary (perhaps with extra members): rows per entry
                # a primitive with extra members (Get-Content lines carry PSPath…) shows as
                # the primitive, as in PowerShell
                add_scalar(row, inner, list(value.type_names))
                continue
            if not props:  # nothing but a ToString: show that
                add_scalar(row, NestedObject(value), list(value.type_names))
                continue
            group = by_list_id.get(id(type_names))
            if group is None:
                chain = list(type_names) or ["System.Management.Automation.PSCustomObject",
                                             "System.Object"]
                group = group_for(tuple(chain), chain, False)
                by_list_id[id(type_names)] = group
            group.rows.append(row)
            group.props.append(props)
            last_type_names, last_group = type_names, group
        elif isinstance(value, Mapping):
            return None  # a Hashtable/ordered dictionary: rows per entry
        else:
            add_scalar(row, value, _scalar_chain(value))
    return list(groups.values())


def _property_names(props_list: Sequence[Mapping[str, Any]]) -> list[str]:
    """Union of the property names in first-seen order (objects of one type usually agree)."""
    names: dict[str, None] = {}
    seen: set[tuple[str, ...]] = set()
    for props in props_list:
        keys = tuple(props)
        if keys in seen:
            continue
        seen.add(keys)
        for name in keys:
            names.setdefault(name, None)
    return list(names)


# --------------------------------------------------------------------------------------------
# Column selection per group


def _group_columns(group: _Group, columns: Any, ps_version: Any = None, labels: bool = True,
                   label_map: dict[str, str] | None = None) -> list[Column]:
    if group.scalar:
        if columns == "default" or columns == "all":
            return [Column(VALUE_COLUMN, compute=_identity)]
        return [
            Column(name, compute=_identity) if name == VALUE_COLUMN else Column(name, compute=_na)
            for name in columns
        ]
    if columns == "default":
        view = find_view(group.chain, ps_version)
        if view is not None:
            # the first object tells which aliases this type carries (objects of one type
            # agree); the union over all objects is only needed when there is no view
            present = {n.lower(): n for n in group.props[0]}
            if labels:
                return [_bind(c, present) for c in view.columns]
            return _data_columns(view.columns, present, label_map)
        names = _property_names(group.props)
        return default_columns(group.chain, names, ps_version)
    names = _property_names(group.props)
    if columns == "all":
        return [Column(n, (n,)) for n in names]
    present = {n.lower(): n for n in names}
    view = find_view(group.chain, ps_version)
    calculated = {c.header: c for c in view.columns} if view is not None else {}
    result = []
    for name in columns:
        if name.lower() in present or name not in calculated:
            result.append(Column(name, (present.get(name.lower(), name),)))
        else:
            result.append(_bind(calculated[name], present))
    return result


def _data_columns(view_columns: Sequence[Column], present: Mapping[str, str],
                  label_map: dict[str, str] | None) -> list[Column]:
    """The view's columns for analysis: each under the name of the property it presents (as
    the objects spell it), with that property's own value (``WS`` in bytes for ``WS(M)``,
    ``CPU`` in seconds for ``CPU(s)``); a column derived from several properties
    (``PSEdition``) keeps its header and computed value. ``label_map`` collects
    name → PowerShell's header where they differ."""
    result: list[Column] = []
    taken: set[str] = set()
    for column in view_columns:
        sources = column.sources
        spelled = next((present[n.lower()] for n in sources if n.lower() in present), None)
        if spelled is not None and spelled not in taken:
            data = Column(spelled, (spelled,))
        elif sources and spelled is None and sources[0] not in taken:
            # the first object has none of them: take each object's own first one
            data = Column(sources[0], compute=_first_present(sources))
        else:
            data = _bind(column, present)
        taken.add(data.header)
        # renamed (WS -> WS(M)), or the same name shown as text (Size -> "127 GB")
        presented = column.compute is not None and bool(column.data)
        if label_map is not None and (data.header != column.header or presented):
            label_map.setdefault(data.header, column.header)
        result.append(data)
    return result


def _first_present(names: Sequence[str]) -> Any:
    def value(props: Mapping[str, Any]) -> Any:
        for name in names:
            if name in props:
                return props[name]
        return None

    return value


def _bind(column: Column, present: Mapping[str, str]) -> Column:
    """A view column for this group: one property (spelled as the objects spell it), or the
    column's own per-object lookup when the first object has none of its aliases."""
    if column.compute is not None:
        return column
    for name in column.properties:
        spelled = present.get(name.lower())
        if spelled is not None:
            return Column(column.header, (spelled,))
    if len(column.properties) == 1:
        return column
    return Column(column.header, compute=column.value)


def _identity(value: Any) -> Any:
    return value


def _na(value: Any) -> Any:
    return None


def _extract(group: _Group, cols: list[Column]) -> list[Sequence[Any]]:
    """The group's values per column, one list comprehension each (measured faster than
    transposing ``itemgetter`` tuples)."""
    props_list = group.props
    out: list[Sequence[Any]] = []
    for col in cols:
        compute = col.compute
        if compute is not None:
            out.append([compute(p) for p in props_list])
            continue
        name = col.properties[0]
        try:
            out.append([p[name] for p in props_list])
        except KeyError:  # some objects of the type lack it (PSCustomObjects vary)
            out.append([p.get(name) for p in props_list])
    return out


# --------------------------------------------------------------------------------------------
# Typed construction


def _kind(cls: type) -> str:
    if issubclass(cls, bool):
        return "bool"
    if issubclass(cls, PSEnum):
        return "enum"
    if issubclass(cls, int):
        return "int"
    if issubclass(cls, float):
        return "float"
    if issubclass(cls, str):
        return "str"
    if issubclass(cls, _dt.datetime):
        return "datetime"
    if issubclass(cls, _dt.timedelta):
        return "timedelta"
    if issubclass(cls, PSVersion):
        return "version"
    return "object"


_KIND_CACHE: dict[type, str] = {}


def _kinds(values: Sequence[Any]) -> tuple[set[str], set[type], bool]:
    types = set(map(type, values))
    has_na = type(None) in types
    types.discard(type(None))
    kinds = set()
    for cls in types:
        kind = _KIND_CACHE.get(cls)
        if kind is None:
            kind = _KIND_CACHE[cls] = _kind(cls)
        kinds.add(kind)
    return kinds, types, has_na


def _typed(values: Sequence[Any]) -> Any:
    """An array with the column's dtype (rules in the module docstring)."""
    import numpy as np
    import pandas as pd

    kinds, types, has_na = _kinds(values)
    n = len(values)
    if len(kinds) == 1:
        kind = next(iter(kinds))
        if kind == "str":
            return pd.array(values, dtype=pd.StringDtype())
        if kind == "int":
            return _integers(values, has_na)
        if kind == "bool":
            if has_na:
                return pd.array(values, dtype="boolean")
            return np.fromiter(values, dtype=bool, count=n)
        if kind == "float":
            if has_na:
                return np.array([np.nan if v is None else v for v in values], dtype=np.float64)
            return np.fromiter(values, dtype=np.float64, count=n)
        if kind == "enum":
            return _categorical(values)
        if kind == "datetime":
            converted = _datetimes(values, has_na)
            if converted is not None:
                return converted
        elif kind == "timedelta":
            return _timedelta_index(values).array
        elif kind == "version":
            return pd.array([None if v is None else str(v) for v in values],
                            dtype=pd.StringDtype())
    return _objects(values, types)


def _integers(values: Sequence[Any], has_na: bool) -> Any:
    import numpy as np
    import pandas as pd

    present = [v for v in values if v is not None] if has_na else values
    low, high = min(present), max(present)
    if low >= _INT64_MIN and high <= _INT64_MAX:
        dtype: Any = np.int64
    elif low >= 0 and high <= _UINT64_MAX:
        dtype = np.uint64
    else:  # beyond 64 bits: keep Python ints rather than lose digits
        return _objects(values, {int})
    if has_na:
        mask = np.fromiter((v is None for v in values), dtype=bool, count=len(values))
        data = np.fromiter((0 if v is None else v for v in values), dtype=dtype,
                           count=len(values))
    else:
        mask = np.zeros(len(values), dtype=bool)
        data = np.fromiter(values, dtype=dtype, count=len(values))
    return pd.arrays.IntegerArray(data, mask)


def _categorical(values: Sequence[Any]) -> Any:
    import pandas as pd

    names = [None if v is None else v.name for v in values]
    distinct = {v for v in values if v is not None}  # PSEnum hashes as its number
    distinct_names = set(names)
    distinct_names.discard(None)
    if len(distinct) == len(distinct_names):
        categories = [e.name for e in sorted(distinct, key=int)]
    else:  # different enums (or names) share numbers: fall back to name order
        categories = sorted(n for n in distinct_names if n is not None)
    return pd.Categorical(names, categories=categories)


_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)


def _datetime_index(values: Sequence[Any]) -> Any:
    """Naive datetimes (or None) → microsecond ``DatetimeIndex``.

    pandas 3 infers microseconds from datetime objects; pandas 2 infers nanoseconds and cannot
    hold ``DateTime.MinValue``, so that case goes through numpy's (slower) microsecond path.
    """
    import numpy as np
    import pandas as pd

    try:
        # (a list of datetimes/None; pandas-stubs want a narrower sequence type)
        return pd.DatetimeIndex(cast(Any, values)).as_unit("us")
    except (pd.errors.OutOfBoundsDatetime, OverflowError):
        return pd.DatetimeIndex(np.array(values, dtype="M8[us]"))


def _timedelta_index(values: Sequence[Any]) -> Any:
    """timedeltas (or None) → microsecond ``TimedeltaIndex`` (same pandas 2 caveat)."""
    import numpy as np
    import pandas as pd

    try:
        return pd.TimedeltaIndex(values).as_unit("us")
    except (pd.errors.OutOfBoundsTimedelta, OverflowError):
        return pd.TimedeltaIndex(np.array(values, dtype="m8[us]"))


def _datetimes(values: Sequence[Any], has_na: bool) -> Any:
    import pandas as pd

    zones = {v.tzinfo for v in values if v is not None} if has_na else {v.tzinfo for v in values}
    if None in zones:
        if len(zones) > 1:
            return None  # naive mixed with aware: no honest single dtype
        return _datetime_index(values).array
    # Aware values: offsets from the epoch are exact, and timedelta → TimedeltaIndex is ~4x
    # faster than pandas' per-value conversion of aware datetimes.
    deltas = [None if v is None else v - _EPOCH for v in values]
    index = pd.Timestamp(0, tz="UTC").as_unit("us") + _timedelta_index(deltas)
    if len(zones) == 1:
        zone = next(iter(zones))
        if zone is not None and zone.utcoffset(None) is not None:
            # one fixed offset (the guest's): show its wall-clock times, like PowerShell does
            return index.tz_convert(zone).array
    # several offsets (daylight saving time changes them): one instant scale, UTC
    return index.array


def _objects(values: Sequence[Any], types: set[type]) -> Any:
    import numpy as np

    n = len(values)
    if not types.isdisjoint(_CONTAINER_TYPES):
        values = [_deep_cell(v) if type(v) in _CONTAINER_TYPES else v for v in values]
    if PSVersion in types or any(_is_psobject_type(t) for t in types):
        return np.fromiter(map(_cell, values), dtype=object, count=n)
    if list in types:
        # one C-level pass over every element says whether any list holds objects to wrap
        elements = itertools.chain.from_iterable(v for v in values if type(v) is list)
        element_types = set(map(type, elements))
        if PSVersion in element_types or any(_is_psobject_type(t) for t in element_types):
            return np.fromiter(map(_list_cell, values), dtype=object, count=n)
    return np.fromiter(values, dtype=object, count=n)


_PSOBJECT_TYPES: dict[type, bool] = {}


def _is_psobject_type(cls: type) -> bool:
    # issubclass on an ABC-derived class is slow; types repeat, so remember the answer
    known = _PSOBJECT_TYPES.get(cls)
    if known is None:
        known = _PSOBJECT_TYPES[cls] = issubclass(cls, PSObject)
    return known


def _cell(value: Any) -> Any:
    if _is_psobject_type(type(value)):
        return NestedObject(value)
    if type(value) is PSVersion:
        # a tuple to pandas, which would print (5, 1, 20348, 2849): the .NET text instead,
        # as a column of versions gets
        return str(value)
    return _list_cell(value)


_CONTAINER_TYPES = frozenset((list, tuple, dict))
#: pandas pretty-prints nested lists this deep (``display.pprint_nest_depth``), then falls back
#: to ``str``, which has no bound at all over a chain of shared lists
_PANDAS_NEST_DEPTH = 3
_CELL_CONTAINER_BUDGET = 1000


class NestedValue:
    """A list or dictionary cell nested too deeply (or shared too often) for pandas to print.

    The decoder resolves ``<Ref>`` to the same list, so a guest can send a chain of lists that
    each hold the next one twice: 200 levels, a few kilobytes, and 2^200 elements to print.
    Such a cell shows its text cut at :data:`~hvmagic.clixml.values.RENDER_DEPTH` and 1 000
    characters; ``cell.value`` is the value itself. Ordinary list cells stay plain lists.
    """

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __str__(self) -> str:
        text = bounded_text(self.value, 1000)
        return text if len(text) <= 1000 else text[:999] + "…"

    __repr__ = __str__

    def __eq__(self, other: object) -> bool:
        if isinstance(other, NestedValue):
            return self.value is other.value
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # wraps a mutable container


def _deep_cell(value: Any) -> Any:
    """``value``, or a :class:`NestedValue` when printing it would have no bound."""
    stack = [(value, 0)]
    visits = 0
    while stack:
        container, depth = stack.pop()
        items = container.values() if type(container) is dict else container
        for item in items:
            if type(item) in _CONTAINER_TYPES:
                visits += 1
                if depth + 1 >= _PANDAS_NEST_DEPTH or visits > _CELL_CONTAINER_BUDGET:
                    return NestedValue(value)
                stack.append((item, depth + 1))
    return value


def _list_cell(value: Any) -> Any:
    if value and type(value) is list and any(
            _is_psobject_type(type(v)) or type(v) is PSVersion for v in value):
        return [_cell(v) if _is_psobject_type(type(v)) or type(v) is PSVersion else v
                for v in value]
    return value


# --------------------------------------------------------------------------------------------
# Public API


def _check_columns(columns: Any) -> Any:
    if isinstance(columns, str):
        if columns not in ("default", "all"):
            raise FrameError(
                f'columns must be "default", "all" or a list of names, not {columns!r}'
            )
        return columns
    if not isinstance(columns, Iterable):
        raise FrameError(
            f'columns must be "default", "all" or a list of names, not {type(columns).__name__}'
        )
    names = list(columns)
    for name in names:
        if not isinstance(name, str):
            raise FrameError(f"column names must be strings, not {type(name).__name__}: {name!r}")
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise FrameError(f"columns named more than once: {', '.join(duplicates)}")
    return names


def to_dataframe(values: Any, columns: str | Sequence[str] = "default", *,
                 ps_version: Any = None, labels: bool = False) -> pd.DataFrame:
    """Turn PowerShell output into a DataFrame: one row per object (rules: module docstring).

    ``values`` is what :func:`hvmagic.clixml.loads` or ``Result.output`` gives (a list); a
    single object is taken as one row. ``columns`` is ``"default"`` (what PowerShell shows),
    ``"all"`` (every property) or a list of names. ``ps_version`` is the PowerShell that
    produced them (:attr:`hvmagic.Session.ps_version`): it picks between Windows PowerShell
    5.1's and PowerShell 7's default views; ``None`` means 5.1. ``labels=True`` gives the
    table as PowerShell shows it (``WS(M)`` in megabytes, ``CPU(s)``); the default is the
    frame for analysis (``WS`` in bytes, ``CPU`` in seconds; module docstring).
    """
    selected = _check_columns(columns)
    # Building columns allocates many small containers while tens of thousands of objects are
    # alive; the cyclic collector would rescan them all repeatedly (~25% of the time for a wide
    # frame). Nothing here creates cycles, so pause it, as bulk decoders do.
    collecting = gc.isenabled()
    gc.disable()
    try:
        return _to_dataframe(values, selected, ps_version, labels)
    finally:
        if collecting:
            gc.enable()


def _to_dataframe(values: Any, selected: Any, ps_version: Any, labels: bool) -> pd.DataFrame:
    import pandas as pd

    if values is None:
        rows: list[Any] = []
    elif isinstance(values, (str, bytes, Mapping, PSObject)) or not isinstance(values, Iterable):
        rows = [values]
    else:
        rows = list(values)  # also keeps every object alive while ids are cached
        if any(isinstance(v, list) for v in rows):
            # PowerShell's formatter enumerates a collection written as one output object
            # (``Write-Output -NoEnumerate``, ``,$list``, a List`1 from Export-Clixml): one level
            rows = [item for v in rows for item in (v if isinstance(v, list) else (v,))]
    groups = _collect(rows)
    if groups is None:
        rows = _dictionary_entries(rows)
        groups = _collect(rows)
        assert groups is not None  # entries are objects, never dictionaries
    n = len(rows)

    headers: dict[str, None] = {}
    label_map: dict[str, str] = {}
    aligned: dict[str, str] = {}
    per_group: list[tuple[_Group, list[str], list[Sequence[Any]]]] = []
    for group in groups:
        cols = _group_columns(group, selected, ps_version, labels, label_map)
        if labels:
            aligned.update((c.header, c.align) for c in cols if c.align)
        group_headers = [c.header for c in cols]
        headers.update(dict.fromkeys(group_headers))
        per_group.append((group, group_headers, _extract(group, cols)))
    if not isinstance(selected, str):
        headers = dict.fromkeys(selected)

    data: dict[str, Any] = {}
    if len(per_group) == 1:
        group, group_headers, extracted = per_group[0]
        by_header = dict(zip(group_headers, extracted, strict=True))
        for header in headers:
            data[header] = _typed(by_header.get(header) or [None] * n)
    else:
        full: dict[str, list[Any]] = {h: [None] * n for h in headers}
        for group, group_headers, extracted in per_group:
            for header, column_values in zip(group_headers, extracted, strict=True):
                target = full[header]
                for row, value in zip(group.rows, column_values, strict=True):
                    target[row] = value
        for header, column_values in full.items():
            data[header] = _typed(column_values)

    frame = pd.DataFrame(data, index=pd.RangeIndex(n), columns=list(headers))
    frame.attrs["type_names"] = [list(g.chain) for g in groups]
    if label_map:
        frame.attrs[LABELS_ATTR] = label_map
    if aligned:
        frame.attrs[ALIGN_ATTR] = aligned
    if len(groups) > 1:
        type_index = [0] * n
        for group in groups:
            for row in group.rows:
                type_index[row] = group.index
        frame.attrs["type_index"] = type_index
    return frame
