"""Guest credentials: splitting user names as PowerShell does, and finding the password.

Two jobs, both needed before a PowerShell Direct broker conversation can start:

* :func:`split_username` derives ``(domain, user)`` from one user-name string exactly like
  ``PSCredential.GetNetworkCredential()`` (``SplitUserDomain`` in PowerShell's
  ``engine/Credential.cs``), so ``%vmconnect vm -u CORP\\admin`` sends the same bytes
  ``Invoke-Command -VMName vm -Credential CORP\\admin`` would.
* :func:`get_password` finds the password without it ever touching a notebook cell: an explicit
  value, else an environment variable, else the ``keyring`` package when installed, else an
  interactive, non-echoing prompt. The result is always a :class:`~hvmagic.SecureString`, whose
  ``repr`` is masked, so a stray ``print`` or an exception never shows it.
"""

from __future__ import annotations

import getpass
import os
from collections.abc import Callable, Mapping
from typing import Any

from hvmagic.clixml.values import PSCredential, SecureString
from hvmagic.errors import CredentialError

#: the environment variable consulted for a password (for CI and unattended runbooks)
PASSWORD_ENV_VAR = "HVMAGIC_PASSWORD"
#: the keyring "service" name under which passwords are looked up (``keyring set hvmagic user``)
KEYRING_SERVICE = "hvmagic"
#: what the broker receives for an empty domain (PowerShell substitutes the same string)
LOCAL_DOMAIN = "localhost"

EMPTY_USERNAME_MESSAGE = "The input username cannot be empty."


def split_username(username: str) -> tuple[str, str]:
    """``(domain, user)`` as PowerShell's ``SplitUserDomain`` derives them; domain may be ``""``.

    * ``DOMAIN\\user`` → ``("DOMAIN", "user")`` (split at the first backslash)
    * ``user@host`` (no dot after the last ``@``) or a name with several ``@`` → split at the
      last ``@``: ``("host", "user")``
    * ``user@corp.example`` (a UPN) → ``("", "user@corp.example")``: the whole UPN is the user
    * anything else → ``("", username)``

    Raises :class:`CredentialError` when the user part is empty, with PowerShell's message.
    """
    backslash = username.find("\\")
    if backslash >= 0:
        domain, user = username[:backslash], username[backslash + 1 :]
    else:
        last_at = username.rfind("@")
        # PowerShell splits at the last '@' unless what follows it looks like a DNS suffix
        # (a dot after the '@'), in which case the whole string is a UPN; a second '@' forces
        # the split regardless.
        if last_at >= 0 and (username.rfind(".") < last_at or username.find("@") != last_at):
            domain, user = username[last_at + 1 :], username[:last_at]
        else:
            domain, user = "", username
    if not user:
        raise CredentialError(EMPTY_USERNAME_MESSAGE)
    return domain, user


def broker_domain(domain: str | None) -> str:
    """The domain string the broker receives: an empty domain becomes ``localhost``.

    Exactly PowerShell's substitution in ``ExchangeCredentialsAndConfiguration``, and nothing
    more: ``.`` (as in ``.\\Administrator``) is sent as ``.``, because that is what PowerShell's
    own client sends (checked against PowerShell 7.6 in tests/pwsh/test_psdirect_handshake.py),
    so the guest's broker sees the same logon request from hvmagic as from
    ``Invoke-Command -VMName``.
    """
    if not domain:
        return LOCAL_DOMAIN
    return domain


def as_secure(password: str | SecureString | None) -> SecureString:
    """Wrap a password so it cannot leak through ``repr``; ``None`` means the empty password."""
    if isinstance(password, SecureString):
        return password
    if password is None:
        return SecureString("")
    if isinstance(password, str):
        return SecureString(password)
    raise TypeError(f"a password must be str or SecureString, not {type(password).__name__}")


def _keyring_lookup(username: str, keyring_module: Any) -> str | None:
    backend = keyring_module
    if backend is None:
        try:
            import keyring  # optional dependency: used only when installed
        except ImportError:
            return None
        backend = keyring
    try:
        found = backend.get_password(KEYRING_SERVICE, username)
    except Exception:
        # A misconfigured keyring backend (no D-Bus, locked store) must not stop the user from
        # typing the password instead; the prompt below is the fallback.
        return None
    return found if isinstance(found, str) else None


def get_password(
    username: str,
    password: str | SecureString | None = None,
    *,
    env: Mapping[str, str] | None = None,
    prompt: Callable[[str], str] | None = None,
    keyring_module: Any = None,
    use_keyring: bool = True,
) -> SecureString:
    """The password for ``username``, from the first source that has one.

    1. ``password`` when given (``""`` is a real, empty password);
    2. the ``HVMAGIC_PASSWORD`` environment variable (``env`` defaults to :data:`os.environ`);
    3. ``keyring.get_password("hvmagic", username)`` when the ``keyring`` package is installed
       (``keyring_module`` injects a stand-in);
    4. an interactive prompt that does not echo (``prompt`` defaults to :func:`getpass.getpass`,
       which Jupyter kernels route to a password box).
    """
    if password is not None:
        return as_secure(password)
    environ = os.environ if env is None else env
    from_env = environ.get(PASSWORD_ENV_VAR)
    if from_env is not None:
        return SecureString(from_env)
    if use_keyring:
        stored = _keyring_lookup(username, keyring_module)
        if stored is not None:
            return SecureString(stored)
    ask = getpass.getpass if prompt is None else prompt
    try:
        typed = ask(f"Password for {username}: ")
    except (EOFError, KeyboardInterrupt) as exc:
        raise CredentialError(
            f"No password for {username}: none was given, {PASSWORD_ENV_VAR} is not set, "
            "no keyring entry exists and the prompt was cancelled."
        ) from exc
    return SecureString(typed)


def get_credential(
    username: str,
    password: str | SecureString | None = None,
    **sources: Any,
) -> PSCredential:
    """A :class:`PSCredential` for ``username``; see :func:`get_password` for ``sources``."""
    split_username(username)  # fail on an unusable user name before prompting for a password
    return PSCredential(username, get_password(username, password, **sources))
