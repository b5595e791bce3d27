"""CLIXML ⇄ Python values (the bottom layer: no I/O, no pandas, no IPython).

Contracts: :func:`loads`, :func:`loads_streams`, :func:`dumps` (see ``architecture.md``).
The session layer decodes each PSRP message payload with :func:`loads_fragment` (fast path).
"""

from hvmagic.clixml import _compiled, decode
from hvmagic.clixml.decode import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_DEPTH,
    DEFAULT_MAX_OBJECTS,
    loads,
    loads_fragment,
    loads_streams,
    unescape,
)
from hvmagic.clixml.encode import MAX_DEPTH, PSCustomObject, dumps, dumps_document, escape
from hvmagic.clixml.values import (
    STREAMS,
    ErrorRecord,
    InformationalRecord,
    InformationRecord,
    ProgressRecord,
    PSChar,
    PSCredential,
    PSDateTime,
    PSEnum,
    PSObject,
    PSScriptBlock,
    PSTimeSpan,
    PSUri,
    PSVersion,
    PSXmlDocument,
    SecureString,
    strip_deserialized,
)

# the fast path builds on the decoder's converters; wired here so neither imports the other
# both ways
decode.use_fast_path(_compiled)

__all__ = [
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_DEPTH",
    "DEFAULT_MAX_OBJECTS",
    "MAX_DEPTH",
    "STREAMS",
    "ErrorRecord",
    "InformationRecord",
    "InformationalRecord",
    "PSChar",
    "PSCredential",
    "PSCustomObject",
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
    "dumps",
    "dumps_document",
    "escape",
    "loads",
    "loads_fragment",
    "loads_streams",
    "strip_deserialized",
    "unescape",
]
