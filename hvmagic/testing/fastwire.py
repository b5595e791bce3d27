"""CLIXML string text without psrpcore's ElementTree round trip (the test guest's bulk output).

File chunks and log text are the bulk of what :class:`~hvmagic.testing.FakeGuest` sends; building
an ElementTree for each ``<S>`` costs more than the rest of the guest together, so
:func:`clixml_text` writes the element text directly, with PowerShell's ``_xHHHH_`` escapes
(psrpcore's own string encoder) wherever the text needs any.
"""

from __future__ import annotations

from xml.sax.saxutils import escape

from psrpcore.types._serializer import _serialize_string


def clixml_text(value: str) -> str:
    """``value`` as the text of a CLIXML ``<S>`` element (PowerShell's ``_xHHHH_`` escapes)."""
    if _is_plain(value):
        return value
    return escape(_serialize_string(value))


def _is_plain(value: str) -> bool:
    # Plain ASCII without markup or "_x" needs no escaping at all: the common case. C-speed
    # string methods instead of one regex: a 1.4 MB base64 chunk is checked in ~1 ms.
    return (
        value.isascii()
        and value.isprintable()
        and "_x" not in value
        and "_X" not in value
        and "&" not in value
        and "<" not in value
        and ">" not in value
    )
