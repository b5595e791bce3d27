"""A throw-away OpenSSH server on 127.0.0.1 with a ``powershell`` subsystem (tests, benchmarks).

:class:`LocalSSHServer` starts Debian's ``sshd`` in the foreground on a free port with a fresh
host key, key-only authentication for one fresh client key, and
``Subsystem powershell <pwsh> -sshs -NoLogo -NoProfile`` — the server side PowerShell's SSH
remoting documents. Everything lives in a temporary directory that :meth:`stop` removes; the
machine's own ssh configuration is never read (``-F`` with a generated client config too).
"""

from __future__ import annotations

import contextlib
import getpass
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any

__all__ = ["LocalSSHServer", "find_sshd"]


def find_sshd() -> str | None:
    """``sshd`` (it lives in ``/usr/sbin``, often not on a user's PATH)."""
    found = shutil.which("sshd")
    if found:
        return found
    for candidate in ("/usr/sbin/sshd", "/usr/local/sbin/sshd"):
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class LocalSSHServer:
    """``with LocalSSHServer(pwsh) as server:`` then
    ``SSHTransport("127.0.0.1", **server.client_options)``."""

    def __init__(self, pwsh: str, *, sshd: str | None = None) -> None:
        found = sshd or find_sshd()
        if found is None:
            raise FileNotFoundError("sshd not found (Debian: apt-get install openssh-server)")
        self.sshd = found
        self.pwsh = pwsh
        self.user = getpass.getuser()
        self.port = 0
        self.directory = Path(tempfile.mkdtemp(prefix="hvmagic-sshd-"))
        self._process: subprocess.Popen[bytes] | None = None

    # paths of the throw-away material
    @property
    def client_key(self) -> Path:
        return self.directory / "client_key"

    @property
    def known_hosts(self) -> Path:
        return self.directory / "known_hosts"

    @property
    def client_config(self) -> Path:
        return self.directory / "ssh_config"

    @property
    def client_options(self) -> dict[str, Any]:
        """Keyword arguments for :class:`~hvmagic.transports.ssh.SSHTransport` and hops."""
        return {
            "user": self.user, "port": self.port, "identity_file": str(self.client_key),
            "config_file": str(self.client_config),
        }

    @property
    def host_options(self) -> dict[str, Any]:
        """``hvmagic.connect(..., host_username=server.user, host_options=...)``."""
        return {
            "port": self.port, "identity_file": str(self.client_key),
            "ssh_config": str(self.client_config),
        }

    @property
    def pssession_options(self) -> dict[str, Any]:
        """``New-PSSession`` arguments that reach this server from a PowerShell here."""
        return {
            "HostName": "127.0.0.1", "Port": self.port, "UserName": self.user,
            "SSHTransport": True, "KeyFilePath": str(self.client_key),
            "Options": {"UserKnownHostsFile": str(self.known_hosts),
                        "StrictHostKeyChecking": "yes", "BatchMode": "yes",
                        "IdentitiesOnly": "yes"},
        }

    def _keygen(self, path: Path) -> None:
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "hvmagic-test", "-f", str(path)],
            check=True, stdin=subprocess.DEVNULL, capture_output=True,
        )

    def start(self, timeout: float = 20.0) -> LocalSSHServer:
        d = self.directory
        self._keygen(d / "host_key")
        self._keygen(self.client_key)
        shutil.copy(d / "client_key.pub", d / "authorized_keys")
        self.port = _free_port()
        host_public = (d / "host_key.pub").read_text().split()[:2]
        self.known_hosts.write_text(f"[127.0.0.1]:{self.port} {' '.join(host_public)}\n")
        self.client_config.write_text(
            f"Host *\n  UserKnownHostsFile {self.known_hosts}\n  StrictHostKeyChecking yes\n"
            "  IdentitiesOnly yes\n  LogLevel ERROR\n"
        )
        config = d / "sshd_config"
        config.write_text(
            f"Port {self.port}\nListenAddress 127.0.0.1\nHostKey {d / 'host_key'}\n"
            f"PidFile {d / 'sshd.pid'}\nAuthorizedKeysFile {d / 'authorized_keys'}\n"
            "PasswordAuthentication no\nKbdInteractiveAuthentication no\n"
            "PubkeyAuthentication yes\nUsePAM no\nStrictModes no\n"
            "PermitRootLogin prohibit-password\nLogLevel ERROR\n"
            f"Subsystem powershell {self.pwsh} -sshs -NoLogo -NoProfile\n"
        )
        if os.geteuid() == 0:
            # sshd's privilege separation needs its empty directory when started as root
            Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        self._process = subprocess.Popen(
            [self.sshd, "-D", "-e", "-f", str(config)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=(d / "sshd.log").open("wb"),
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"sshd exited: {(d / 'sshd.log').read_text()}")
            with contextlib.suppress(OSError), socket.create_connection(
                ("127.0.0.1", self.port), timeout=1
            ):
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"sshd did not listen on port {self.port} within {timeout:g} s")

    def stop(self) -> None:
        process = self._process
        self._process = None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
        shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> LocalSSHServer:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
