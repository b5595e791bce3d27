"""DataFrames sent to PowerShell: one PSCustomObject per row, as sparkmagic's ``send_to_spark``.

``session.run(script, {"df": frame})`` and ``%%vmps --with df`` give the guest ``$df`` as an
array of objects with one property per column, so ``$df | Where-Object CPU -gt 10`` and
``$df | Export-Csv`` work as on objects PowerShell made. Values are typed per column:

* integer columns → integers (Int32, or Int64 where a value needs it), unsigned above Int64;
* float columns → Double; ``NaN`` → ``$null`` (PowerShell has no "missing" double);
* bool / ``boolean`` → Boolean; ``pd.NA`` → ``$null``;
* ``datetime64`` → DateTime (with its offset when the column is tz-aware); ``NaT`` → ``$null``;
* ``timedelta64`` → TimeSpan; ``category`` → its labels' values; strings → String;
* anything else in an ``object`` column goes through as it is (and gets hvmagic's usual
  encoding error if PowerShell cannot hold it).

Column names must be strings (they become property names); the index is not sent — call
``frame.reset_index()`` first to send it. A frame with duplicate column names is refused: the
objects would silently lose a column.
"""

from __future__ import annotations

import datetime as _dt
import math
from collections.abc import Mapping
from typing import Any

from hvmagic.clixml.values import PSObject
from hvmagic.errors import EncodeError

#: the type name PowerShell gives ``[pscustomobject]@{...}``
_CUSTOM_OBJECT = ["System.Management.Automation.PSCustomObject", "System.Object"]


def is_dataframe(value: Any) -> bool:
    """A pandas DataFrame, recognised without importing pandas (scripts that never use
    pandas do not pay for it)."""
    cls = type(value)
    return cls.__name__ == "DataFrame" and cls.__module__.split(".")[0] == "pandas"


def frame_to_objects(frame: Any) -> list[PSObject]:
    """The rows of ``frame`` as PSCustomObjects (see the module docstring for the types)."""
    columns = list(frame.columns)
    bad = [c for c in columns if not isinstance(c, str)]
    if bad:
        raise EncodeError(
            f"DataFrame column names must be strings to become PowerShell properties: {bad[:3]}"
        )
    if len(set(columns)) != len(columns):
        raise EncodeError("the DataFrame has duplicate column names; PowerShell objects cannot")
    converted = [[_plain(v) for v in frame[c].tolist()] for c in columns]
    return [
        PSObject(dict(zip(columns, row, strict=True)), list(_CUSTOM_OBJECT))
        for row in zip(*converted, strict=True)
    ] if columns else [PSObject({}, list(_CUSTOM_OBJECT)) for _ in range(len(frame))]


def _plain(value: Any) -> Any:
    """One cell as a plain Python value hvmagic's encoder knows; missing values → ``None``."""
    if value is None:
        return None
    kind = type(value)
    module = kind.__module__.split(".")[0]
    if module == "pandas":
        name = kind.__name__
        if name in ("NAType", "NaTType"):
            return None
        if name == "Timestamp":
            return value.to_pydatetime()
        if name == "Timedelta":
            return value.to_pytimedelta()
    if module == "numpy":
        item = getattr(value, "item", None)
        if callable(item):
            value = item()
            if isinstance(value, int) and not isinstance(value, bool):
                return value
            if isinstance(value, (_dt.datetime, _dt.timedelta)):
                return value
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def prepare_parameters(parameters: Mapping[str, Any]) -> dict[str, Any]:
    """``parameters`` with every DataFrame value turned into :func:`frame_to_objects`."""
    return {
        name: frame_to_objects(value) if is_dataframe(value) else value
        for name, value in parameters.items()
    }
