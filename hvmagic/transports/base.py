"""The one contract every transport fulfils: move bytes, nothing else.

Everything above (OutOfProc framing, PSRP, sessions) is written against :class:`Transport`, so a
PowerShell Direct socket, a ``pwsh -s`` process, a socket pair to the simulated guest and a test
double are interchangeable.
"""

from __future__ import annotations

import contextlib
import socket
from typing import Protocol, runtime_checkable

from hvmagic.errors import TransportError


@runtime_checkable
class Transport(Protocol):
    """A connected, bidirectional byte stream."""

    #: a short human description for messages and ``%vmconnect`` ("PowerShell Direct to vm01")
    description: str

    def send(self, data: bytes) -> None:
        """Send all of ``data``; raise :class:`TransportError` if the peer is gone."""

    def recv(self) -> bytes:
        """Block until some bytes arrive; ``b""`` means the peer closed (end of stream)."""

    def close(self) -> None:
        """Release the connection; idempotent."""


class SocketTransport:
    """A :class:`Transport` over any connected stream socket (AF_HYPERV, TCP, socketpair)."""

    def __init__(self, sock: socket.socket, description: str = "socket", bufsize: int = 1 << 16):
        self._sock = sock
        self._bufsize = bufsize
        self.description = description
        self._closed = False

    def send(self, data: bytes) -> None:
        try:
            self._sock.sendall(data)
        except OSError as exc:
            raise TransportError(f"{self.description}: sending failed: {exc}") from exc

    def recv(self) -> bytes:
        try:
            return self._sock.recv(self._bufsize)
        except OSError as exc:
            if self._closed:
                return b""
            raise TransportError(f"{self.description}: receiving failed: {exc}") from exc

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(OSError):  # already disconnected: nothing left to flush
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()
