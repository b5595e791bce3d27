"""One secret walker (``hvmagic.secrets``) for the session's key exchange and the recording.

The walker must find every secret the encoder would write — the session exchanges the key
when it says so, the recording redacts what it finds — so it is checked against the encoder
itself: a value holds a secret exactly when ``dumps`` without a session key refuses it for a
SecureString. Cycles end and nesting of any depth costs no recursion. What the guest receives
is judged by real PowerShell in ``tests/pwsh/test_parameter_parity.py``.
"""

from __future__ import annotations

import enum
import sys
import time
import types
from typing import Any

import numpy as np
import pytest

from hvmagic.clixml import dumps, escape
from hvmagic.clixml.values import PSCredential, PSEnum, PSObject, SecureString
from hvmagic.errors import EncodeError
from hvmagic.secrets import REDACTED, contains_secret, redact


class Holder(enum.Enum):
    SECRET = SecureString("in an enum")


def _holders() -> dict[str, Any]:
    """Every way the encoder can reach a secret, one value each."""
    secret = SecureString("s3cret")
    return {
        "bare": secret,
        "credential": PSCredential("CORP\\u", "s3cret"),
        "object_value": PSObject({}, ["System.Security.SecureString"], None, secret),
        "object_property": PSObject({"Password": secret}, ["My.Login"]),
        "list": [1, secret],
        "tuple": (secret,),
        "set": {secret},
        "frozenset": frozenset({PSCredential("u", "s3cret")}),
        "dict_key": {secret: 1},
        "dict_value": {"k": secret},
        "mapping_value": types.MappingProxyType({"k": secret}),
        "nested": {"a": [PSObject({"b": {"c": (PSObject({}, [], None, secret),)}})]},
        "enum": Holder.SECRET,
        "array": np.array([1, secret], dtype=object),
    }


_PLAIN = {
    "none": None, "text": "SecureString", "number": 5, "enum": PSEnum(1, "One"),
    "object": PSObject({"A": [1, {"b": "c"}]}, ["My.Type"]), "set": {1, 2},
    "array": np.array([1, 2]), "bytes": b"pw",
}


def _encoder_needs_the_key(value: Any) -> bool:
    try:
        dumps(value)
    except EncodeError as exc:
        return "secure_string_encryptor" in str(exc)
    return False


@pytest.mark.parametrize("name", list(_holders()))
def test_every_secret_the_encoder_meets_is_found(name: str) -> None:
    value = _holders()[name]
    assert _encoder_needs_the_key(value), "the encoder should have met a SecureString"
    assert contains_secret(value)


@pytest.mark.parametrize("name", list(_PLAIN))
def test_values_without_secrets_are_not_flagged(name: str) -> None:
    value = _PLAIN[name]
    assert not _encoder_needs_the_key(value)
    assert not contains_secret(value)
    assert redact(value) is value  # nothing secret: nothing copied


@pytest.mark.parametrize("name", list(_holders()))
def test_redacted_values_hold_no_secret_and_encode(name: str) -> None:
    value = _holders()[name]
    cleaned = redact(value)
    assert not contains_secret(cleaned)
    text = dumps(cleaned)  # a recording can write it, without any key
    assert "s3cret" not in text and "in an enum" not in text
    assert escape(REDACTED) in text
    assert contains_secret(value)  # the original is left as it was


def test_a_credential_keeps_its_user_name_when_redacted() -> None:
    cleaned = redact({"c": PSCredential("CORP\\admin", "pw")})
    assert cleaned["c"]["UserName"] == "CORP\\admin" and cleaned["c"]["Password"] == REDACTED


def test_a_secret_reached_only_through_a_cycle_is_found_and_redacted() -> None:
    first = PSObject({"Name": "first"}, ["Node"])
    second = PSObject({"Name": "second", "Back": first}, ["Node"])
    first.properties["Next"] = second
    second.properties["Key"] = SecureString("s3cret")
    loop: list[Any] = []
    loop.append(loop)
    loop.append(first)
    assert contains_secret(first) and contains_secret(loop)
    copy = redact(loop)
    assert copy[0] is copy  # the cycle survives in the copy
    assert copy[1]["Next"]["Key"] == REDACTED and copy[1]["Next"]["Back"] is copy[1]
    assert "s3cret" not in dumps(copy)
    shared = ["x"]
    plain_cycle: list[Any] = [shared, shared]
    plain_cycle.append(plain_cycle)
    assert not contains_secret(plain_cycle) and redact(plain_cycle) is plain_cycle


def test_deep_nesting_is_walked_without_recursion() -> None:
    levels = sys.getrecursionlimit() * 20
    value: Any = SecureString("s3cret")
    for _ in range(levels):
        value = [value]
    started = time.monotonic()
    assert contains_secret(value)
    deep_plain: Any = 1
    for _ in range(levels):
        deep_plain = {"k": deep_plain}
    assert not contains_secret(deep_plain)
    assert redact(deep_plain) is deep_plain
    cleaned = redact(value)  # the copy stops where no value can be sent anyway
    assert "s3cret" not in repr(cleaned) and not contains_secret(cleaned)
    assert time.monotonic() - started < 10


def test_the_walk_visits_each_shared_container_once() -> None:
    # a diamond of 2**60 paths: a walk that does not remember containers would never end
    node: Any = [SecureString("x")]
    for _ in range(60):
        node = [node, node]
    started = time.monotonic()
    assert contains_secret(node)
    copy = redact(node)
    assert copy[0] is copy[1]  # shared, and copied once
    assert time.monotonic() - started < 5
