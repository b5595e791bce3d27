"""hvmagic's version, in a module of its own so that any layer can name it (recordings store
it) without importing the package root, which lazily reaches every layer."""

from __future__ import annotations

__version__ = "0.1.0"
