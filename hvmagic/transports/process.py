"""A local PowerShell server process (``pwsh -s`` / ``powershell.exe -s``) as a Transport.

``pwsh -s`` (``-ServerMode``) speaks the same OutOfProc packets over stdin/stdout that
PowerShell Direct carries over the Hyper-V socket (``psdirect-protocol.md`` §3.5), so the whole
session stack runs unchanged on top of it: a local test rig, and on Windows hosts without
Python 3.12 the first hop of a ``-VMName`` session.

The process is started the way PowerShell's own ``PowerShellProcessInstance`` does:
``<exe> -s -NoLogo -NoProfile``. Differences from a socket, handled here:

* errors are written unprefixed to **stderr**; a drain thread keeps the last
  :data:`STDERR_LIMIT` bytes so the pipe never fills and blocks the server;
* after a processing error the server exits with code **4000** (0x0FA0). End of stdout is
  therefore turned into :class:`TransportError` carrying the stderr text and the exit code,
  unless the process ended cleanly (code 0, nothing on stderr) — then it is a plain end of
  stream (``b""``).

``command`` replaces the whole command line (tests run ``python -m hvmagic.testing.guest
--stdio``, which serves the FakeGuest test peer exactly like ``pwsh -s``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

from hvmagic.errors import TransportError, UnsupportedPlatformError

#: the PowerShell server's exit code after a processing error (``StdIOProcessMediator``)
SERVER_ERROR_EXIT_CODE = 4000
#: what a POSIX parent sees of it: exit statuses are truncated to 8 bits (4000 & 0xFF)
_SERVER_ERROR_CODES = {SERVER_ERROR_EXIT_CODE, SERVER_ERROR_EXIT_CODE & 0xFF}
#: how much stderr text is kept for error messages
STDERR_LIMIT = 64 << 10
SERVER_ARGUMENTS = ("-s", "-NoLogo", "-NoProfile")


def find_powershell() -> str:
    """``pwsh`` if installed, else Windows PowerShell (``powershell.exe``) on Windows."""
    for name in ("pwsh", "powershell.exe" if sys.platform == "win32" else None):
        if name is None:
            continue
        path = shutil.which(name)
        if path:
            return path
    raise UnsupportedPlatformError(
        "no PowerShell found on PATH (looked for pwsh"
        + (" and powershell.exe" if sys.platform == "win32" else "")
        + "). Install PowerShell 7 (https://aka.ms/powershell) or pass executable=...; "
        "without one, a recording still replays (via='replay')."
    )


class ProcessTransport:
    """A :class:`~hvmagic.transports.base.Transport` over a PowerShell server's stdio."""

    def __init__(
        self,
        executable: str | os.PathLike[str] | None = None,
        *,
        command: Sequence[str] | None = None,
        working_directory: str | os.PathLike[str] | None = None,
        env: Mapping[str, str] | None = None,
        exit_timeout: float = 5.0,
        description: str | None = None,
        new_session: bool = False,
    ) -> None:
        if command is None:
            exe = str(executable) if executable is not None else find_powershell()
            command = [exe, *SERVER_ARGUMENTS]
            if working_directory is not None:
                command += ["-wd", str(working_directory)]
        self.command = list(command)
        self.description = description or f"local PowerShell process ({Path(self.command[0]).name})"
        self.exit_timeout = exit_timeout
        self._stderr = bytearray()
        self._stderr_lock = threading.Lock()
        self._closed = False
        flags = getattr(subprocess, "CREATE_NO_WINDOW", 0) if sys.platform == "win32" else 0
        try:
            self._process = subprocess.Popen(
                self.command,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                bufsize=0,
                env=dict(env) if env is not None else None,
                creationflags=flags,
                # ssh, like PowerShell starts it, must not die of the notebook's Ctrl-C: the
                # interrupt is PSRP's to handle (stop the pipeline), not the connection's
                start_new_session=new_session and sys.platform != "win32",
            )
        except OSError as exc:
            raise TransportError(f"cannot start {self.command[0]!r}: {exc}") from exc
        self._stderr_thread = threading.Thread(
            target=self._drain_stderr, name="hvmagic-process-stderr", daemon=True
        )
        self._stderr_thread.start()

    @property
    def pid(self) -> int:
        return self._process.pid

    @property
    def returncode(self) -> int | None:
        return self._process.poll()

    @property
    def stderr_text(self) -> str:
        with self._stderr_lock:
            return bytes(self._stderr).decode("utf-8", "replace").strip()

    def _drain_stderr(self) -> None:
        stream = self._process.stderr
        if stream is None:
            return
        with contextlib.suppress(OSError, ValueError):
            for chunk in iter(lambda: stream.read(4096), b""):
                with self._stderr_lock:
                    self._stderr += chunk
                    if len(self._stderr) > STDERR_LIMIT:
                        del self._stderr[: len(self._stderr) - STDERR_LIMIT]

    def send(self, data: bytes) -> None:
        stdin = self._process.stdin
        if stdin is None or self._closed:
            raise TransportError(f"{self.description}: the process is closed")
        try:
            stdin.write(data)
            stdin.flush()
        except (OSError, ValueError) as exc:
            raise self._ended_error("sending failed") from exc

    def recv(self) -> bytes:
        stdout = self._process.stdout
        if stdout is None:
            return b""
        try:
            data = stdout.read(1 << 16)  # raw FileIO: returns what is available
        except (OSError, ValueError) as exc:
            if self._closed:
                return b""
            raise self._ended_error("receiving failed") from exc
        if data or self._closed:
            return data
        if self._ended_cleanly():
            return b""
        raise self._ended_error("the PowerShell process ended")

    def _ended_cleanly(self) -> bool:
        try:
            code = self._process.wait(timeout=self.exit_timeout)
        except subprocess.TimeoutExpired:
            return False
        self._stderr_thread.join(timeout=1.0)
        return code == 0 and not self.stderr_text

    def _ended_error(self, what: str) -> TransportError:
        try:
            code = self._process.wait(timeout=self.exit_timeout)
        except subprocess.TimeoutExpired:
            code = None
        self._stderr_thread.join(timeout=1.0)
        text = self.stderr_text
        if code in _SERVER_ERROR_CODES:
            shown = code if code == SERVER_ERROR_EXIT_CODE else f"{code} = 4000 & 0xFF"
            status = f"exit code {shown} (0x0FA0: the PowerShell server hit a processing error)"
        elif code is None:
            status = "still running"
        else:
            status = f"exit code {code}"
        detail = f": {text}" if text else ""
        return TransportError(f"{self.description}: {what}, {status}{detail}")

    def close(self) -> None:
        """Close stdin (the server's cue to end), wait a little, then kill."""
        if self._closed:
            return
        self._closed = True
        process = self._process
        for stream in (process.stdin,):
            with contextlib.suppress(OSError, ValueError):
                if stream is not None:
                    stream.close()
        try:
            process.wait(timeout=self.exit_timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=self.exit_timeout)
        for stream in (process.stdout, process.stderr):
            with contextlib.suppress(OSError, ValueError):
                if stream is not None:
                    stream.close()
