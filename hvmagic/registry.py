"""The named sessions of one IPython shell, and which one is the default.

``%vmconnect`` adds to it, ``%vmuse`` picks the default, ``%vmclose`` removes; ``%%vmps`` and
``%vmcopy`` look sessions up in it by alias (case-insensitively, as Hyper-V matches VM names).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from hvmagic.sessionlike import SessionLike


@dataclass
class SessionEntry:
    alias: str
    session: SessionLike
    target: str
    via: str


class SessionRegistry:
    """Named sessions of one IPython shell and which one is the default.

    Aliases are matched case-insensitively, as Hyper-V matches VM names.
    """

    def __init__(self) -> None:
        self._entries: dict[str, SessionEntry] = {}
        self._default: str | None = None

    @staticmethod
    def _key(alias: str) -> str:
        return alias.casefold()

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[SessionEntry]:
        return iter(list(self._entries.values()))

    def __contains__(self, alias: object) -> bool:
        return isinstance(alias, str) and self._key(alias) in self._entries

    @property
    def default(self) -> SessionEntry | None:
        return self._entries.get(self._default) if self._default is not None else None

    def add(self, entry: SessionEntry, *, make_default: bool = True) -> SessionEntry | None:
        """Register ``entry``; returns the entry it replaced (same alias), which the caller
        closes. The newest connection becomes the default, as the last ``Enter-PSSession``
        would."""
        key = self._key(entry.alias)
        replaced = self._entries.get(key)
        self._entries[key] = entry
        if make_default or self._default is None:
            self._default = key
        return replaced

    def get(self, alias: str | None = None) -> SessionEntry:
        """The session named ``alias``, else the default; :class:`LookupError` with a message a
        user can act on when there is none."""
        if alias is None:
            entry = self.default
            if entry is None:
                raise LookupError(
                    "No session: connect first with %vmconnect NAME (or %vmconnect demo --via sim)"
                )
            return entry
        entry = self._entries.get(self._key(alias))
        if entry is None:
            known = ", ".join(e.alias for e in self._entries.values()) or "none"
            raise LookupError(f"No session named {alias!r} (sessions: {known})")
        return entry

    def use(self, alias: str) -> SessionEntry:
        entry = self.get(alias)
        self._default = self._key(entry.alias)
        return entry

    def remove(self, alias: str) -> SessionEntry:
        entry = self.get(alias)
        key = self._key(entry.alias)
        del self._entries[key]
        if self._default == key:
            # fall back to the most recently added remaining session
            self._default = next(reversed(self._entries), None) if self._entries else None
        return entry

    def is_default(self, entry: SessionEntry) -> bool:
        return self._default == self._key(entry.alias)


__all__ = ["SessionEntry", "SessionRegistry"]
