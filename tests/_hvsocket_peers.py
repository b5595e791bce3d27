"""Fake PowerShell Direct peers (broker and server) for the hvsocket tests.

They behave like the mock in PowerShell's ``test_RemoteHyperV.cs``: after each message the
client sends (one ``recv``), the peer answers with the next queued response, if any. Every
received chunk is recorded, so tests assert the exact byte sequence — and, because each client
token must be one ``send`` answered before the next, a batched send shows up as one merged chunk
and fails the comparison.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Sequence


def u16(text: str) -> bytes:
    return text.encode("utf-16-le")


class ScriptedPeer(threading.Thread):
    """Plays one side of a handshake on ``sock`` in a thread.

    ``responses`` are sent in order, one after each received chunk. ``close_after`` closes the
    socket once that many chunks were received (a peer dying mid-handshake). ``then`` runs on
    the socket after the scripted part (e.g. an echo loop standing in for PSRP);
    ``before_reply(index)`` runs just before reply number ``index`` is sent.
    """

    def __init__(
        self,
        sock: socket.socket,
        responses: Sequence[bytes],
        *,
        close_after: int | None = None,
        then: Callable[[socket.socket], None] | None = None,
        before_reply: Callable[[int], None] | None = None,
        name: str = "peer",
    ) -> None:
        super().__init__(daemon=True, name=name)
        self.sock = sock
        self.responses = list(responses)
        self.close_after = close_after
        self.then = then
        self.before_reply = before_reply
        self.replies_sent = 0
        self.received: list[bytes] = []
        self.error: BaseException | None = None
        sock.settimeout(10)

    def run(self) -> None:
        try:
            while self.responses or self.then is None:
                if self.close_after is not None and len(self.received) >= self.close_after:
                    break
                chunk = self.sock.recv(65536)
                if not chunk:
                    break
                self.received.append(chunk)
                if self.responses:
                    if self.before_reply is not None:
                        self.before_reply(self.replies_sent)
                    self.sock.sendall(self.responses.pop(0))
                    self.replies_sent += 1
            if self.then is not None and self.close_after is None:
                self.then(self.sock)
        except OSError as exc:
            self.error = exc
        finally:
            if self.then is None or self.close_after is not None:
                self.sock.close()

    def finish(self, timeout: float = 5.0) -> list[bytes]:
        self.join(timeout)
        assert not self.is_alive(), f"{self.name} did not finish"
        return self.received


def peer_pair(
    responses: Sequence[bytes], **kw: object
) -> tuple[socket.socket, ScriptedPeer]:
    """A connected client socket and a started :class:`ScriptedPeer` on the other end."""
    client, server = socket.socketpair()
    client.settimeout(5)
    peer = ScriptedPeer(server, responses, **kw)  # type: ignore[arg-type]
    peer.start()
    return client, peer


def v2_broker_responses(
    version: str = "VERSION_2",
    *,
    empty_password: bool = False,
    configuration: bool = False,
    token: str = "FakeToken0+/=",
) -> list[bytes]:
    """``CreateV2Responses`` from PowerShell's test_RemoteHyperV.cs."""
    replies = [version.encode(), b"PASS", b"PASS", b"PASS"]
    if not empty_password:
        replies.append(b"PASS")
    replies.append(b"CONF")
    if configuration:
        replies.append(b"PASS")
    replies.append(b"TOKEN " + token.encode())
    return replies


def v2_client_sends(
    domain: str, user: str, password: str, configuration: str | None
) -> list[bytes]:
    """``CreateV2Sends`` from PowerShell's test_RemoteHyperV.cs."""
    sends = [b"VERSION", b"VERSION_2", u16(domain), u16(user)]
    if password:
        sends += [b"NONEMPTYPW", u16(password)]
    else:
        sends.append(b"EMPTYPW")
    if configuration:
        sends += [b"NONEMPTYCF", u16(configuration)]
    else:
        sends.append(b"EMPTYCF")
    sends.append(b"PASS")
    return sends


class ListeningPeer(threading.Thread):
    """A :class:`ScriptedPeer` behind a TCP listener on 127.0.0.1 (one connection).

    For clients that open their own socket — PowerShell's handshake methods driven from a pwsh
    script — where :func:`peer_pair` cannot hand over a connected one. ``port`` is listening as
    soon as the object exists; ``finish()`` returns every chunk the client sent.
    """

    def __init__(self, responses: Sequence[bytes], *, accept_timeout: float = 120.0,
                 **kw: object) -> None:
        super().__init__(daemon=True, name="listening-peer")
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(accept_timeout)
        self.port: int = self.listener.getsockname()[1]
        self.responses = list(responses)
        self.kw = kw
        self.peer: ScriptedPeer | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            conn, _ = self.listener.accept()
        except OSError as exc:
            self.error = exc
            return
        finally:
            self.listener.close()
        self.peer = ScriptedPeer(conn, self.responses, **self.kw)  # type: ignore[arg-type]
        self.peer.run()  # in this thread: one connection, played to its end

    def finish(self, timeout: float = 30.0) -> list[bytes]:
        self.join(timeout)
        assert not self.is_alive(), "listening peer did not finish"
        assert self.peer is not None, f"nobody connected: {self.error!r}"
        return self.peer.received
