"""Credential splitting (PowerShell's SplitUserDomain) and where passwords come from."""

from __future__ import annotations

from typing import Any

import pytest

from hvmagic import PSCredential, SecureString
from hvmagic.credentials import (
    PASSWORD_ENV_VAR,
    as_secure,
    broker_domain,
    get_credential,
    get_password,
    split_username,
)
from hvmagic.errors import CredentialError


@pytest.mark.parametrize(
    ("username", "expected"),
    [
        ("CORP\\admin", ("CORP", "admin")),
        ("CORP\\admin\\x", ("CORP", "admin\\x")),  # first backslash splits
        (".\\admin", (".", "admin")),
        ("admin@vmhost", ("vmhost", "admin")),  # no dot after '@': host name
        ("first.last@vmhost", ("vmhost", "first.last")),  # dot only before '@'
        ("admin@corp.example", ("", "admin@corp.example")),  # UPN: whole string is the user
        ("a@b@corp.example", ("corp.example", "a@b")),  # several '@': split at the last
        ("admin@", ("", "admin")),
        ("admin", ("", "admin")),
        ("Administrator", ("", "Administrator")),
        ("ädmin\\bénutzer", ("ädmin", "bénutzer")),
    ],
)
def test_split_username_matches_powershell(username: str, expected: tuple[str, str]) -> None:
    assert split_username(username) == expected


@pytest.mark.parametrize("username", ["", "CORP\\", "@vmhost"])
def test_empty_user_part_is_refused_with_powershells_message(username: str) -> None:
    with pytest.raises(CredentialError, match=r"^The input username cannot be empty\.$"):
        split_username(username)


@pytest.mark.parametrize(
    ("domain", "wire"), [("", "localhost"), (None, "localhost"), (".", "."),
                         ("CORP", "CORP")]
)
def test_broker_domain(domain: str | None, wire: str) -> None:
    assert broker_domain(domain) == wire


def test_explicit_password_wins_and_is_masked() -> None:
    secret = get_password("u", "s3cret!", env={PASSWORD_ENV_VAR: "fromenv"},
                          prompt=lambda _: "typed")
    assert isinstance(secret, SecureString)
    assert secret.reveal() == "s3cret!"
    assert "s3cret" not in repr(secret) and "s3cret" not in str(secret)


def test_explicit_empty_password_is_kept() -> None:
    assert get_password("u", "", env={PASSWORD_ENV_VAR: "x"}).reveal() == ""


def test_secure_string_passes_through_unchanged() -> None:
    given = SecureString("abc")
    assert get_password("u", given) is given


def test_environment_variable_before_keyring_and_prompt() -> None:
    class Keyring:
        def get_password(self, service: str, user: str) -> str:
            raise AssertionError("keyring must not be consulted when the env var is set")

    secret = get_password("u", env={PASSWORD_ENV_VAR: "fromenv"}, keyring_module=Keyring(),
                          prompt=lambda _: "typed")
    assert secret.reveal() == "fromenv"


def test_keyring_is_asked_for_service_hvmagic_and_the_user() -> None:
    calls: list[tuple[str, str]] = []

    class Keyring:
        def get_password(self, service: str, user: str) -> str | None:
            calls.append((service, user))
            return "fromkeyring"

    secret = get_password("CORP\\admin", env={}, keyring_module=Keyring(),
                          prompt=lambda _: "typed")
    assert secret.reveal() == "fromkeyring"
    assert calls == [("hvmagic", "CORP\\admin")]


def test_prompt_when_nothing_else_has_a_password() -> None:
    prompts: list[str] = []

    class EmptyKeyring:
        def get_password(self, service: str, user: str) -> None:
            return None

    def prompt(text: str) -> str:
        prompts.append(text)
        return "typed"

    secret = get_password("admin", env={}, keyring_module=EmptyKeyring(), prompt=prompt)
    assert secret.reveal() == "typed"
    assert prompts == ["Password for admin: "]


def test_broken_keyring_backend_falls_back_to_the_prompt() -> None:
    class BrokenKeyring:
        def get_password(self, service: str, user: str) -> str:
            raise RuntimeError("no D-Bus session")

    secret = get_password("admin", env={}, keyring_module=BrokenKeyring(),
                          prompt=lambda _: "typed")
    assert secret.reveal() == "typed"


def test_use_keyring_false_skips_it() -> None:
    class Keyring:
        def get_password(self, service: str, user: str) -> str:
            raise AssertionError("must not be called")

    secret = get_password("a", env={}, keyring_module=Keyring(), use_keyring=False,
                          prompt=lambda _: "typed")
    assert secret.reveal() == "typed"


@pytest.mark.parametrize("interrupt", [EOFError, KeyboardInterrupt])
def test_cancelled_prompt_is_a_credential_error(interrupt: type[BaseException]) -> None:
    def prompt(_: str) -> str:
        raise interrupt()

    with pytest.raises(CredentialError, match="No password for admin") as info:
        get_password("admin", env={}, use_keyring=False, prompt=prompt)
    assert PASSWORD_ENV_VAR in str(info.value)


def test_get_credential_builds_a_masked_pscredential() -> None:
    cred = get_credential("CORP\\admin", "hunter2")
    assert isinstance(cred, PSCredential)
    assert cred.username == "CORP\\admin"
    assert cred.password.reveal() == "hunter2"
    assert "hunter2" not in repr(cred)


def test_get_credential_rejects_a_bad_user_before_prompting() -> None:
    def prompt(_: str) -> str:
        raise AssertionError("no prompt for an unusable user name")

    with pytest.raises(CredentialError):
        get_credential("CORP\\", env={}, use_keyring=False, prompt=prompt)


def test_as_secure() -> None:
    assert as_secure(None).reveal() == ""
    assert as_secure("x").reveal() == "x"
    bad: Any = b"x"
    with pytest.raises(TypeError, match="bytes"):
        as_secure(bad)
