"""PowerShell over SSH, the way PowerShell itself does it: the OpenSSH client's ``powershell``
subsystem, with the OutOfProc framing over the ssh process's stdio.

PowerShell's ``New-PSSession -HostName`` (``SSHConnectionInfo.StartSSHProcess``) starts::

    ssh [-i identity_file] [-l login] [-p port] [-o option=value]... -s <destination> powershell

and the server's ``sshd_config`` maps the subsystem to ``pwsh -sshs -NoLogo -NoProfile``
(``powershell.exe -SSHServerMode`` on Windows PowerShell 5.1 with a shim). From there on the bytes
are exactly those of ``pwsh -s``, so :class:`SSHTransport` is a
:class:`~hvmagic.transports.process.ProcessTransport` whose command is ssh, plus three things:

* the user's ``~/.ssh/config``, keys and agent apply (nothing here replaces them), with
  ``BatchMode=yes`` forced first so ssh never waits on a password, passphrase or host-key
  question that nobody can answer from a notebook (ssh keeps the *first* value it is given for
  an option, so ours come before the caller's extra options);
* ``DOMAIN\\user`` becomes ``user@DOMAIN`` for ``-l``, as PowerShell converts it;
* when ssh exits (code 255 is ssh's own failure), its stderr is classified into typed errors:
  :class:`SSHAuthenticationError` (also a :class:`~hvmagic.errors.CredentialError`, so it is never
  retried), :class:`SSHHostKeyError`, :class:`SSHUnreachableError` (retried by ``wait=``),
  :class:`SSHSubsystemError` (the server has no ``powershell`` subsystem).

ssh runs in its own session (POSIX) so a Ctrl-C in the notebook stops the pipeline through
PSRP instead of killing the connection, as PowerShell starts it with ``SUPPRESS_PROCESS_SIGINT``.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Mapping, Sequence

from hvmagic.errors import CredentialError, TransportError, UnsupportedPlatformError
from hvmagic.transports.process import ProcessTransport

__all__ = [
    "SUBSYSTEM",
    "SSHAuthenticationError",
    "SSHHostKeyError",
    "SSHSubsystemError",
    "SSHTransport",
    "SSHUnreachableError",
    "find_ssh",
    "ssh_command",
]

#: the subsystem name PowerShell's SSH remoting asks for (``SSHConnectionInfo.DefaultSubsystem``)
SUBSYSTEM = "powershell"
#: ssh's exit status for its own errors (connection, authentication, host key, subsystem)
SSH_ERROR_EXIT_CODE = 255


class SSHAuthenticationError(CredentialError, TransportError):
    """The SSH server rejected every key/method offered (``Permission denied``)."""


class SSHHostKeyError(TransportError):
    """The server's host key is unknown or changed and strict checking is on."""


class SSHUnreachableError(TransportError):
    """The SSH endpoint cannot be reached: name not resolved, refused, timed out, reset."""


class SSHSubsystemError(TransportError):
    """The SSH server has no ``powershell`` subsystem (``Subsystem powershell …`` missing)."""


#: stderr fragments → error class and what to do about it; first match wins
_CLASSIFIERS: tuple[tuple[tuple[str, ...], type[TransportError], str], ...] = (
    (("permission denied", "too many authentication failures", "no more authentication methods"),
     SSHAuthenticationError,
     "the SSH server accepted none of the offered keys (BatchMode is on, so passwords are not "
     "asked: load a key into ssh-agent, pass identity_file=, or configure IdentityFile in "
     "~/.ssh/config)"),
    (("host key verification failed", "remote host identification has changed",
      "no host key is known", "host key for"),
     SSHHostKeyError,
     "the host key is not trusted: connect once with plain ssh to check and accept it, or add "
     "it to known_hosts"),
    (("subsystem request failed",),
     SSHSubsystemError,
     "the server has no 'powershell' SSH subsystem: add 'Subsystem powershell <path to pwsh> "
     "-sshs -NoLogo -NoProfile' to its sshd_config and restart sshd"),
    (("could not resolve hostname", "connection refused", "connection timed out",
      "timed out during banner exchange", "no route to host", "network is unreachable",
      "connection reset", "connection closed by", "operation timed out",
      "name or service not known", "kex_exchange_identification"),
     SSHUnreachableError,
     "the SSH endpoint is unreachable: check the host name, the port and that sshd runs"),
)


def classify_ssh_failure(exit_code: int | None, stderr: str, message: str) -> TransportError:
    """The typed error for an ssh process that ended with ``exit_code`` and ``stderr``."""
    lowered = stderr.lower()
    for needles, cls, advice in _CLASSIFIERS:
        if any(needle in lowered for needle in needles):
            return cls(f"{message} — {advice}")
    if exit_code == SSH_ERROR_EXIT_CODE:
        return SSHUnreachableError(f"{message} — ssh could not set up the connection")
    return TransportError(message)


def find_ssh() -> str:
    """The OpenSSH client on PATH (``ssh``; ``ssh.exe`` on Windows, as PowerShell looks it up)."""
    path = shutil.which("ssh.exe" if sys.platform == "win32" else "ssh") or shutil.which("ssh")
    if path:
        return path
    raise UnsupportedPlatformError(
        "no OpenSSH client (ssh) on PATH: install it (Windows: the OpenSSH.Client capability; "
        "Debian/Ubuntu: apt-get install openssh-client; macOS ships it) or use via='winrm'"
    )


def login_name(user: str) -> str:
    """``DOMAIN\\user`` → ``user@DOMAIN``, as ``SSHConnectionInfo`` passes it to ``-l``."""
    parts = user.split("\\")
    if len(parts) == 2:
        return f"{parts[1]}@{parts[0]}"
    return user


def ssh_command(
    host: str,
    *,
    user: str | None = None,
    port: int | None = None,
    identity_file: str | os.PathLike[str] | None = None,
    options: Mapping[str, str] | None = None,
    config_file: str | os.PathLike[str] | None = None,
    connect_timeout: float | None = None,
    executable: str | None = None,
    subsystem: str = SUBSYSTEM,
) -> list[str]:
    """The ssh command line PowerShell would run, with ``BatchMode=yes`` forced first."""
    if not host or host.startswith("-"):
        raise ValueError(f"not an SSH host name: {host!r}")
    command = [executable or find_ssh()]
    if config_file is not None:
        command += ["-F", os.fspath(config_file)]
    # ssh keeps the first value of each option: BatchMode first so nothing can turn it off
    command += ["-o", "BatchMode=yes"]
    if connect_timeout is not None:
        command += ["-o", f"ConnectTimeout={max(1, int(connect_timeout))}"]
    for key, value in (options or {}).items():
        if not key.isalnum():
            raise ValueError(f"not an ssh option name: {key!r}")
        command += ["-o", f"{key}={value}"]
    # ServerAlive lets ssh notice a dead host instead of waiting for TCP to give up (hours)
    command += ["-o", "ServerAliveInterval=30", "-o", "ServerAliveCountMax=4"]
    if identity_file is not None:
        command += ["-i", os.fspath(identity_file)]
    if user:
        command += ["-l", login_name(user)]
    if port is not None:
        if not 0 < int(port) < 65536:
            raise ValueError(f"not a TCP port: {port!r}")
        command += ["-p", str(int(port))]
    # IPv6 literals go without brackets, as PowerShell trims them
    command += ["-s", host.strip("[]"), subsystem]
    return command


class SSHTransport(ProcessTransport):
    """A PowerShell session over ``ssh -s HOST powershell``; see the module docstring."""

    def __init__(
        self,
        host: str,
        *,
        user: str | None = None,
        port: int | None = None,
        identity_file: str | os.PathLike[str] | None = None,
        options: Mapping[str, str] | None = None,
        config_file: str | os.PathLike[str] | None = None,
        connect_timeout: float | None = None,
        executable: str | None = None,
        subsystem: str = SUBSYSTEM,
        env: Mapping[str, str] | None = None,
        command: Sequence[str] | None = None,
    ) -> None:
        if command is None:
            command = ssh_command(
                host, user=user, port=port, identity_file=identity_file, options=options,
                config_file=config_file, connect_timeout=connect_timeout,
                executable=executable, subsystem=subsystem,
            )
        self.host = host
        who = f"{login_name(user)}@" if user else ""
        where = f"{who}{host}" + (f":{port}" if port is not None else "")
        super().__init__(
            command=command, env=env, description=f"PowerShell over SSH to {where}",
            new_session=True,
        )

    def _ended_error(self, what: str) -> TransportError:
        plain = super()._ended_error(what)
        return classify_ssh_failure(self.returncode, self.stderr_text, str(plain))
