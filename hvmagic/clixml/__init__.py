"""CLIXML ⇄ Python values (the bottom layer: no I/O, no pandas, no IPython).

Contracts: :func:`loads`, :func:`loads_streams`, :func:`dumps` (see ``architecture.md``).
"""

from hvmagic.clixml.values import (
    STREAMS,
    ErrorRecord,
    InformationalRecord,
    InformationRecord,
    PSChar,
    PSCredential,
    PSDateTime,
    PSEnum,
    PSObject,
    ProgressRecord,
    PSScriptBlock,
    PSTimeSpan,
    PSUri,
    PSVersion,
    PSXmlDocument,
    SecureString,
    strip_deserialized,
)

__all__ = [
    "STREAMS",
    "ErrorRecord",
    "InformationRecord",
    "InformationalRecord",
    "PSChar",
    "PSCredential",
    "PSDateTime",
    "PSEnum",
    "PSObject",
    "PSScriptBlock",
    "PSTimeSpan",
    "PSUri",
    "PSVersion",
    "PSXmlDocument",
    "ProgressRecord",
    "SecureString",
    "strip_deserialized",
]
