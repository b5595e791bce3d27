"""``Write-Host`` text with what PowerShell's host was told about it: colours and line ends.

A :class:`HostText` is a ``str`` (the text, as before), so every caller that compares or joins
host text keeps working; it also carries the ``-ForegroundColor``/``-BackgroundColor`` names
(``ConsoleColor`` names such as ``"Red"``, ``None`` when not given) and whether the line ends
(``-NoNewline`` leaves it open, so the next host text continues it, as in a console).

PowerShell 7 reports each ``Write-Host`` twice: an information record whose MessageData (a
``HostInformationMessage``) holds ``ForegroundColor``/``BackgroundColor``/``NoNewLine``, and a
host call (``WriteLine2(text)``, ``WriteLine3(fg, bg, text)``, ``Write1(text)``,
``Write2(fg, bg, text)``). Both name both colours, filling the one not given from the defaults
hvmagic's host reported (:data:`HOST_DEFAULT_COLORS`, a console's ``Gray``
on ``Black``), so a colour equal to that default counts as none: the notebook's own colours
apply, as a console's do.
"""

from __future__ import annotations

from typing import Any

#: the colours hvmagic's host reports as its defaults (a console's, sent in the pool's host
#: data by hvmagic.psrp.client); host text in them counts as uncoloured: the notebook's apply
HOST_DEFAULT_COLORS = ("Gray", "Black")
_DEFAULT_FOREGROUND, _DEFAULT_BACKGROUND = HOST_DEFAULT_COLORS

#: System.ConsoleColor by value
CONSOLE_COLORS = (
    "Black", "DarkBlue", "DarkGreen", "DarkCyan", "DarkRed", "DarkMagenta", "DarkYellow",
    "Gray", "DarkGray", "Blue", "Green", "Cyan", "Red", "Magenta", "Yellow", "White",
)

#: host methods that leave the line open (``Write-Host -NoNewline``)
_OPEN_LINE_METHODS = frozenset({"Write1", "Write2"})
#: host methods whose first two parameters are the foreground and background colours
_COLOUR_METHODS = frozenset({"Write2", "WriteLine3"})


def console_color(value: Any) -> str | None:
    """A ConsoleColor (enum, name or number) as its name; None for anything else."""
    if value is None:
        return None
    if isinstance(value, bool):
        return None
    if isinstance(value, str) and value.lstrip("-").isdigit():
        value = int(value)
    if isinstance(value, int):
        return CONSOLE_COLORS[value] if 0 <= value < len(CONSOLE_COLORS) else None
    name = getattr(value, "name", value)
    if isinstance(name, str):
        for known in CONSOLE_COLORS:
            if known.casefold() == name.casefold():
                return known
    return None


class HostText(str):
    """Host text plus its colours and whether it ends its line."""

    foreground: str | None
    background: str | None
    newline: bool

    def __new__(cls, text: str, *, foreground: str | None = None,
                background: str | None = None, newline: bool = True) -> HostText:
        self = super().__new__(cls, text)
        self.foreground = foreground
        self.background = background
        self.newline = newline
        return self

    def __reduce__(self) -> Any:  # copies and pickles keep the colours
        return (_rebuild, (str(self), self.foreground, self.background, self.newline))

    @classmethod
    def from_call(cls, method: str, text: str, parameters: list[Any]) -> HostText:
        """The text of a host write call (``WriteLine3(fg, bg, text)`` …)."""
        foreground = background = None
        if method in _COLOUR_METHODS and len(parameters) >= 2:
            foreground, background = _asked(parameters[0], parameters[1])
        return cls(text, foreground=foreground, background=background,
                   newline=method not in _OPEN_LINE_METHODS)

    @classmethod
    def from_message(cls, text: str, message_data: Any) -> HostText:
        """The text of a ``PSHOST`` information record (its HostInformationMessage)."""
        get = getattr(message_data, "get", None)
        if get is None:
            return cls(text)
        foreground, background = _asked(get("ForegroundColor"), get("BackgroundColor"))
        return cls(text, foreground=foreground, background=background,
                   newline=not bool(get("NoNewLine")))


def _asked(foreground: Any, background: Any) -> tuple[str | None, str | None]:
    """The colours a Write-Host asked for: the host's defaults, filled in for the one not
    given, count as none."""
    fg, bg = console_color(foreground), console_color(background)
    return (None if fg == _DEFAULT_FOREGROUND else fg), (None if bg == _DEFAULT_BACKGROUND else bg)


def _rebuild(text: str, foreground: str | None, background: str | None,
             newline: bool) -> HostText:
    return HostText(text, foreground=foreground, background=background, newline=newline)
