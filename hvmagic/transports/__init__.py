"""Transports move bytes between hvmagic and a PowerShell server; see :mod:`.base`."""

from hvmagic.transports.base import SocketTransport, Transport

__all__ = ["SocketTransport", "Transport"]
