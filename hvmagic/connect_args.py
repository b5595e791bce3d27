"""``%vmconnect``'s options, and a ``--host`` fleet cell's, as :func:`hvmagic.connect` keywords.

Which VM a line names, whether a recording answers it, whether PowerShell Direct can work from
here at all, and the passwords: asked here, once, on the kernel's thread (never by a fleet's
target threads, whose prompts would race), from ``--credential VAR``, ``--password-env VAR``,
``HVMAGIC_PASSWORD``, keyring, else the frontend's password box.
"""

from __future__ import annotations

import getpass
import os
from collections.abc import Callable, Mapping
from typing import Any

from IPython.core.error import StdinNotImplementedError, UsageError

from hvmagic import hop
from hvmagic.clixml.values import PSCredential, SecureString
from hvmagic.credentials import get_password
from hvmagic.errors import HvMagicError
from hvmagic.magic_errors import first_line
from hvmagic.notebook_host import NotebookHostUI, guest_text
from hvmagic.recording import REPLAY_ENV
from hvmagic.transports import hvsocket

#: ``user_value(name, option)``: the Python variable ``name`` a ``--option VAR`` names (a
#: :class:`UsageError` when it is not defined)
UserValue = Callable[[str, str], Any]


def target_name(args: Any, via: str) -> str:
    """The VM ``%vmconnect`` connects to: NAME, else ``demo`` for the demo guest (``--via
    sim``), else the recording's name; a :class:`UsageError` when there is none."""
    name = args.name
    if not name and via == "sim":
        name = "demo"
    elif not name and args.replay:
        name = _recording_stem(args.replay)
    if not name:
        raise UsageError("%vmconnect needs the VM name: %vmconnect NAME [-u USER]")
    return str(name)


def _recording_stem(path: str) -> str:
    """``runs/web01.hvrec.json`` → ``web01`` (the name ``HVMAGIC_RECORD`` files are given)."""
    base = os.path.basename(path)
    for suffix in (".hvrec.json", ".json"):
        if base.endswith(suffix) and len(base) > len(suffix):
            return base[: -len(suffix)]
    return base


def replaying(via: str, args: Any) -> bool:
    """Whether :func:`hvmagic.connect` will serve this connection from a recording."""
    if via == "replay" or args.replay:
        return True
    return bool(os.environ.get(REPLAY_ENV)) and not args.record


def refuse_powershell_direct_here(name: str) -> None:
    """PowerShell Direct needs a Windows Hyper-V host with CPython 3.12+: say so at once
    instead of asking for the guest's password and failing afterwards."""
    # a Windows host with an older Python hops through a local powershell.exe instead
    # (module attributes, not names: tests stand in for the platform checks)
    if not hvsocket.hvsocket_supported() and not hop.local_hop_applies(name, "auto"):
        raise UsageError(f"Cannot reach {name!r} by PowerShell Direct from here: "
                         + hvsocket.unsupported_platform_message()
                         + f" In a notebook: %vmconnect {name} --host HV01 [--via ssh].")


def _host_arguments(args: Any) -> dict[str, Any]:
    """``--host`` and its options as ``connect(host=..., host_options=...)`` arguments."""
    options = {name: getattr(args, name) for name in ("port", "identity_file")
               if getattr(args, name) is not None}
    return {"host": args.host, "host_username": args.host_user, "host_options": options}


def connect_arguments(args: Any, name: str, via: str, user_value: UserValue) -> dict[str, Any]:
    """``%vmconnect``'s options as :func:`hvmagic.connect` keywords, the password included
    (asked for here when needed; the caller clears the dict once connected)."""
    kwargs: dict[str, Any] = {"via": via, "host_ui": NotebookHostUI(guest=name)}
    for option in ("configuration", "record", "replay", "timeout", "wait"):
        value = getattr(args, option)
        if value is not None:
            kwargs[option] = value
    if args.allow_legacy:
        kwargs["allow_legacy"] = True
    if args.host:
        kwargs.update(_host_arguments(args))
    # A recording, and the demo guest "sim" that runbooks default to, answer without
    # logging on: asking for a password would only stop a CI run (no stdin) of a runbook
    # written with -u USER. Another name with --via sim -u USER rehearses the real prompt.
    if replaying(via, args) or (name == "sim" and via in ("auto", "sim")):
        if args.username:
            kwargs["username"] = args.username
    else:
        kwargs.update(_credentials(args, user_value))
    return kwargs


def _credentials(args: Any, user_value: UserValue) -> dict[str, Any]:
    if args.credential:
        value = user_value(args.credential, "--credential")
        if not isinstance(value, PSCredential):
            raise UsageError(
                f"--credential: {args.credential!r} is a {type(value).__name__}, "
                "not a PSCredential"
            )
        return {"credential": value}
    if args.username is None:
        if args.password_env:
            raise UsageError("--password-env needs -u USER")
        return {}
    password: SecureString
    if args.password_env:
        env_value = os.environ.get(args.password_env)
        if env_value is None:
            raise UsageError(f"--password-env: environment variable {args.password_env} "
                             "is not set")
        password = SecureString(env_value)
    else:
        password = password_from_sources(args.username, args.name)
    return {"username": args.username, "password": password}


def password_from_sources(username: str, target: str | None = None) -> SecureString:
    """HVMAGIC_PASSWORD, keyring, else the frontend's password box (hvmagic.credentials).

    The box says it is ``%vmconnect``'s own, so it never looks like a guest's prompt (those
    start with ``[guest 'VM' …]``, see :class:`NotebookHostUI`)."""

    def ask(text: str) -> str:
        # getpass looked up at call time: ipykernel swaps its own in for each execution
        return getpass.getpass(f"%vmconnect {guest_text(target or '', 60)}: {text}")

    try:
        return get_password(username, prompt=ask)
    except StdinNotImplementedError as exc:
        # ipykernel raises this when the frontend cannot prompt
        # (nbclient, papermill): say how to give the password instead
        raise UsageError(
            f"No password for {username}: this frontend cannot prompt; use "
            "--password-env VAR, HVMAGIC_PASSWORD, --credential VAR or keyring"
        ) from exc
    except HvMagicError as exc:
        raise UsageError(first_line(exc)) from exc


def fleet_host_arguments(args: Any, user_value: UserValue
                         ) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """``--via/--host-user/--host-options`` as the fleet's connect options, and
    ``-u``/``--credentials`` as its credentials. Passwords are asked here, once, on the
    kernel's thread: never by the targets' threads, whose prompts would race."""
    options: dict[str, Any] = {}
    if args.via:
        options["via"] = args.via
    if args.host_user:
        options["host_username"] = args.host_user
        if args.via in (None, "winrm"):
            options["host_password"] = hop.winrm_host_password(args.host_user, None)
    if args.host_options:
        value = user_value(args.host_options, "--host-options")
        if not isinstance(value, Mapping):
            raise UsageError(f"--host-options: {args.host_options!r} is a "
                             f"{type(value).__name__}, not a mapping")
        options["host_options"] = dict(value)
    credentials: dict[str, Any] | None = None
    if args.credentials:
        value = user_value(args.credentials, "--credentials")
        if not isinstance(value, Mapping):
            raise UsageError(f"--credentials: {args.credentials!r} is a "
                             f"{type(value).__name__}, not a mapping of VM/glob to "
                             "PSCredential or user name")
        credentials = dict(value)
    if args.username:  # everyone else's account: after the mapping's own entries
        password = password_from_sources(args.username, "fleet")
        credentials = {**(credentials or {}), "*": PSCredential(args.username, password)}
    return options, credentials


__all__ = [
    "UserValue",
    "connect_arguments",
    "fleet_host_arguments",
    "password_from_sources",
    "refuse_powershell_direct_here",
    "replaying",
    "target_name",
]
