"""hvmagic: PowerShell inside Hyper-V guests, from Jupyter, as pandas DataFrames.

The heavy parts (pandas, psrpcore, IPython) are imported lazily so that ``import hvmagic`` stays
cheap for scripts that only decode CLIXML.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hvmagic.clixml.values import PSCredential, PSObject, SecureString
from hvmagic.errors import HvMagicError
from hvmagic.version import __version__

__all__ = [
    "HvMagicError",
    "PSCredential",
    "PSObject",
    "SecureString",
    "__version__",
    "connect",
    "doctor",
    "fleet",
    "last_boot_time",
    "load_ipython_extension",
    "to_dataframe",
]

if TYPE_CHECKING:  # pragma: no cover - names for type checkers only
    from hvmagic.connection import connect, last_boot_time
    from hvmagic.doctor import doctor
    from hvmagic.fleet_factory import fleet
    from hvmagic.frames import to_dataframe

_LAZY = {
    "connect": ("hvmagic.connection", "connect"),
    "to_dataframe": ("hvmagic.frames", "to_dataframe"),
    "doctor": ("hvmagic.doctor", "doctor"),
    "fleet": ("hvmagic.fleet_factory", "fleet"),
    "last_boot_time": ("hvmagic.connection", "last_boot_time"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'hvmagic' has no attribute {name!r}")


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext hvmagic``: register the magics (see :mod:`hvmagic.magics`)."""
    from hvmagic.magics import load_ipython_extension as _load

    _load(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    from hvmagic.magics import unload_ipython_extension as _unload

    _unload(ipython)
