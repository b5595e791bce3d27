"""Where the secrets are in a value: one walker for the session and the recording.

A SecureString or PSCredential anywhere in a value hvmagic sends — a parameter, a host
response — needs the session key first (the session exchanges it when
:func:`contains_secret` says so), and must never reach a recording (:func:`redact`). Both
answers come from the same walk, over the same members the encoder
(:func:`hvmagic.clixml.dumps`) writes: an object's properties *and* its own value, a mapping's
keys and values, the items of lists, tuples and sets, numpy/pandas arrays' items, a Python
enum's value. So a secret the encoder would meet is a secret both callers see.

The walk is iterative and visits each container once: shared and cyclic structures end, and
nesting of any depth costs no recursion.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from typing import Any

from hvmagic.clixml.values import PSCredential, PSObject, SecureString

__all__ = ["REDACTED", "contains_secret", "is_secret", "redact"]

#: what a recording holds in place of a SecureString (a PSCredential keeps its user name)
REDACTED = "<redacted SecureString>"

#: :func:`redact` copies this many levels; a secret deeper than that (PowerShell accepts
#: 50 levels per message, so such a value cannot be sent or recorded anyway) is replaced with
#: the whole branch that holds it
_REDACT_DEPTH = 200
_TOO_DEEP = "<redacted: nested too deeply>"


def is_secret(value: Any) -> bool:
    return isinstance(value, (SecureString, PSCredential))


def _members(value: Any) -> Iterable[Any]:
    """The values the encoder writes below ``value`` (nothing for a leaf)."""
    if isinstance(value, PSObject):
        return (*value.properties.values(), value.value)
    if isinstance(value, Mapping):
        return (*value.keys(), *value.values())
    if isinstance(value, (list, tuple, set, frozenset)):
        return value
    if isinstance(value, enum.Enum):
        return (value.value,)
    if getattr(value, "ndim", 0) and type(value).__module__.partition(".")[0] in (
        "numpy", "pandas"
    ):
        tolist = getattr(value, "tolist", None)
        return tolist() if callable(tolist) else ()
    return ()


def _is_container(value: Any) -> bool:
    return not isinstance(value, (str, bytes, bytearray, int, float)) and bool(
        isinstance(value, (PSObject, Mapping, list, tuple, set, frozenset, enum.Enum))
        or getattr(value, "ndim", 0)
    )


def _secret_marks(value: Any) -> dict[int, bool]:
    """For every container reachable from ``value``: ``id`` → a secret is reachable from it.

    A forward walk records who holds whom, then a backward pass marks every container that
    can reach a holder — so an object that reaches a secret only through a cycle is marked
    too (a recursive walk that answers "no" for an object in progress would miss it).
    """
    marks: dict[int, bool] = {id(value): False}
    parents: dict[int, list[int]] = {}
    holders: list[int] = []
    stack = [value]
    while stack:
        node = stack.pop()
        for child in _members(node):
            if is_secret(child):
                holders.append(id(node))
            elif _is_container(child):
                parents.setdefault(id(child), []).append(id(node))
                if id(child) not in marks:
                    marks[id(child)] = False
                    stack.append(child)
    while holders:
        key = holders.pop()
        if not marks[key]:
            marks[key] = True
            holders.extend(parents.get(key, ()))
    return marks


def contains_secret(value: Any) -> bool:
    """True when a SecureString or PSCredential is reachable from ``value``."""
    if is_secret(value):
        return True
    if not _is_container(value):
        return False
    return _secret_marks(value)[id(value)]


def redact(value: Any) -> Any:
    """A copy of ``value`` with every SecureString replaced by :data:`REDACTED` and every
    PSCredential by an object that keeps only its user name; ``value`` itself when it holds no
    secret. Shared and cyclic containers are copied once each (the cost is linear)."""
    if is_secret(value):
        return _redact(value, {}, {}, 0)
    if not _is_container(value):
        return value
    marks = _secret_marks(value)
    if not marks[id(value)]:
        return value
    return _redact(value, marks, {}, 0)


def _redact(value: Any, marks: dict[int, bool], copies: dict[int, Any], depth: int) -> Any:
    if isinstance(value, SecureString):
        return REDACTED
    if isinstance(value, PSCredential):
        return PSObject(
            {"UserName": value.username, "Password": REDACTED},
            ["System.Management.Automation.PSCustomObject", "System.Object"],
        )
    if not marks.get(id(value), False):
        return value  # nothing secret below: shared as it is
    done = copies.get(id(value))
    if done is not None:
        return done
    if depth >= _REDACT_DEPTH:
        return _TOO_DEEP
    depth += 1
    if isinstance(value, PSObject):
        copy = type(value)({}, list(value.type_names), value.to_string, None, value.adapted)
        copies[id(value)] = copy
        copy.properties.update(
            {k: _redact(v, marks, copies, depth) for k, v in value.properties.items()}
        )
        copy.value = _redact(value.value, marks, copies, depth)
        return copy
    if isinstance(value, Mapping):
        copied: dict[Any, Any] = {}
        copies[id(value)] = copied
        for key, item in value.items():
            copied[_redact_key(key, marks, copies, depth)] = _redact(item, marks, copies, depth)
        return copied
    if isinstance(value, list):
        items: list[Any] = []
        copies[id(value)] = items
        items.extend(_redact(v, marks, copies, depth) for v in value)
        return items
    if isinstance(value, enum.Enum):
        return _redact(value.value, marks, copies, depth)
    # tuples, sets, arrays: the encoder writes them as lists
    return [_redact(v, marks, copies, depth) for v in _members(value)]


def _redact_key(key: Any, marks: dict[int, bool], copies: dict[int, Any], depth: int) -> Any:
    redacted = _redact(key, marks, copies, depth)
    try:
        hash(redacted)
    except TypeError:  # a credential's stand-in is an object, not a key
        return REDACTED
    return redacted
