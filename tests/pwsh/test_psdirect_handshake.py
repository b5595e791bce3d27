"""PowerShell Direct's handshake judged by PowerShell's own implementation (PowerShell 7.6).

PowerShell ships both halves of the handshake as internal static methods that take any
connected socket (``psdirect_handshake.ps1`` calls them through reflection over TCP loopback):

* the broker conversation: a scripted broker (a Python TCP server that answers with scripted
  replies and records every byte it receives) answers PowerShell's
  ``RemoteSessionHyperVSocketClient.ExchangeCredentialsAndConfiguration`` and hvmagic's
  :func:`negotiate_broker` with the same replies. The bytes each client sends and the outcomes
  (token / legacy broker / :class:`CredentialError` / :class:`HandshakeError` against
  PowerShell's result or exception) must be identical;
* the second connection, host side: PowerShell's ``PerformTransportVersionAndTokenExchange``
  and hvmagic's :func:`negotiate_server` against the same scripted server;
* the second connection, guest side: PowerShell's ``RemoteSessionHyperVSocketServer.ValidateToken``
  (the check the guest's PowerShell runs before it speaks PSRP) judges hvmagic's
  :func:`negotiate_server` with the right, a wrong and an expired token.

PowerShell's client takes a ``NetworkCredential``; the script derives it from a PSCredential with
``GetNetworkCredential()``, as ``VMHyperVSocketClientSessionTransportManager`` does, so the user
name forms (``DOMAIN\\user``, ``.\\user``, UPN, ``user@host``) are judged end to end.

One pwsh process serves every case (module-scoped fixture); each case has its own sockets.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import socket
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from hvmagic.credentials import split_username
from hvmagic.errors import CredentialError, HandshakeError
from hvmagic.session import open_session
from hvmagic.transports.hvsocket import (
    BROKER_SERVICE_ID,
    SERVER_SERVICE_ID,
    connect_vm,
    negotiate_broker,
    negotiate_server,
)
from hvmagic.transports.vmresolve import VMInfo
from tests._hvsocket_peers import ListeningPeer, ScriptedPeer, peer_pair, v2_broker_responses
from tests.pwsh.conftest import REQUIRE_ENV

SCRIPT = Path(__file__).with_name("psdirect_handshake.ps1")
#: the script's exit code for a PowerShell older than the token handshake (skip, unless CI)
NO_TOKEN_HANDSHAKE = 3
GUEST_SCRIPT = Path(__file__).with_name("psdirect_guest.ps1")

PASSWORD = "pässwörd€\U0001f511"  # Latin-1, BMP and an astral character (a surrogate pair)
TOKEN = "FakeTokenaaaaaaaaaAAAAAAAAAAAAAAAAAAAAAA0+/="
V2_NO_TOKEN = v2_broker_responses()[:-1]

# PowerShell's exception for its handshake failures.
PS_DIRECT_EXCEPTION = "System.Management.Automation.Remoting.PSDirectException"


@dataclass(frozen=True)
class BrokerCase:
    name: str
    username: str
    password: str
    configuration: str | None
    responses: list[bytes]
    legacy: bool = False
    close_after: int | None = None
    #: the broker's reply PowerShell quotes in its "invalid Token" message (hvmagic does not,
    #: as it may hold a token)
    quoted_reply: str | None = None


def _v2(**kw: Any) -> list[bytes]:
    return v2_broker_responses(**kw)


def _token_reply(reply: bytes) -> list[bytes]:
    return [*V2_NO_TOKEN, reply]


BROKER_CASES = [
    # --- V2 (patched guests): version exchange, credentials, configuration, token ---------------
    BrokerCase("v2-config-domain-user", "CORP\\alice", PASSWORD, "PowerShell.7",
               _v2(configuration=True, token=TOKEN)),
    BrokerCase("v2-no-config-dot-user", ".\\Administrator", "Passw0rd!", None, _v2()),
    BrokerCase("v2-config-dot-user", ".\\Administrator", PASSWORD, "PowerShell.7",
               _v2(configuration=True)),
    BrokerCase("v2-upn", "alice@corp.example", PASSWORD, None, _v2(version="VERSION_10")),
    BrokerCase("v2-user-at-host", "alice@vmhost", PASSWORD, "cönfig", _v2(configuration=True)),
    BrokerCase("v2-plain-user", "administrator", "pw", None, _v2()),
    BrokerCase("v2-non-ascii-domain-and-user", "dōmain\\usĕrname", PASSWORD,
               "cönfig.PowerShell.7", _v2(configuration=True)),
    BrokerCase("v2-backslash-only-domain", "\\alice", "pw", None, _v2()),
    BrokerCase("v2-empty-password", "administrator", "", None, _v2(empty_password=True)),
    BrokerCase("v2-empty-password-config", ".\\Administrator", "", "PowerShell.7",
               _v2(empty_password=True, configuration=True)),
    # A pre-TP5 style PASS verdict: PowerShell echoes PASS (no configuration step), then reads
    # the token.
    BrokerCase("v2-pre-tp5-pass-verdict", "CORP\\alice", PASSWORD, "PowerShell.7",
               [b"VERSION_2", b"PASS", b"PASS", b"PASS", b"PASS", b"PASS", b"TOKEN t0k+/="]),
    BrokerCase("v2-fail", "CORP\\alice", PASSWORD, None,
               [b"VERSION_2", b"PASS", b"PASS", b"PASS", b"PASS", b"FAIL"]),
    BrokerCase("v2-fail-empty-password", ".\\Administrator", "", "PowerShell.7",
               [b"VERSION_2", b"PASS", b"PASS", b"PASS", b"FAIL"]),
    # Intermediate replies are not checked (PowerShell's own tests answer them at random);
    # only the verdict is.
    BrokerCase("v2-invalid-verdict", "CORP\\alice", PASSWORD, "config",
               [b"VERSION_2", b"PASS", b"PASS", b"FAIL", b"PASS", b"FAI1"]),
    BrokerCase("v2-missing-token", "administrator", "pw", None, _token_reply(b"PASS"),
               quoted_reply="PASS"),
    BrokerCase("v2-token-without-space", "administrator", "pw", None,
               _token_reply(b"TOKENsecret123"), quoted_reply="TOKENsecret123"),
    BrokerCase("v2-broker-closes-instead-of-token", "administrator", "pw", None, V2_NO_TOKEN,
               close_after=len(V2_NO_TOKEN) + 1),
    BrokerCase("v2-token-nuls-and-spaces", "administrator", "pw", None,
               _token_reply(b"TOKEN  abc+/= \0\0\0")),
    BrokerCase("v2-token-non-ascii-bytes", "administrator", "pw", None,
               _token_reply(b"TOKEN t\xe9k\xff+/=")),
    # Deliberate difference (EARLY_FAILURES): PowerShell takes these, fails later.
    BrokerCase("v2-empty-token", "administrator", "pw", None, _token_reply(b"TOKEN \0")),
    BrokerCase("v2-blank-token", "administrator", "pw", None, _token_reply(b"TOKEN    ")),
    # --- a legacy (V1) broker answers the version request as if it were the domain ----------------
    BrokerCase("legacy-broker-detected", "CORP\\alice", PASSWORD, "PowerShell.7",
               [b"PASS", b"PASS", b"FAIL"]),
    BrokerCase("legacy-broker-detected-odd-replies", ".\\Administrator", "", None,
               [b"FAIL", b"FAIL", b"CONF"]),
    # --- the V1 conversation, after reconnecting (legacy=True / useBackwardsCompatibleMode) ------
    BrokerCase("v1-conf-config", "CORP\\alice", PASSWORD, "PowerShell.7",
               [b"PASS", b"PASS", b"PASS", b"CONF", b"PASS"], legacy=True),
    BrokerCase("v1-conf-no-config", ".\\Administrator", PASSWORD, None,
               [b"PASS", b"PASS", b"PASS", b"CONF"], legacy=True),
    BrokerCase("v1-pre-tp5-pass", "alice@corp.example", PASSWORD, "ignored",
               [b"FAIL", b"PASS", b"FAIL", b"PASS"], legacy=True),
    BrokerCase("v1-fail", "CORP\\alice", PASSWORD, None,
               [b"PASS", b"PASS", b"PASS", b"FAIL"], legacy=True),
    BrokerCase("v1-empty-password-conf", "administrator", "", "PowerShell.7",
               [b"PASS", b"PASS", b"CONF", b"PASS"], legacy=True),
]


@dataclass(frozen=True)
class ServerClientCase:
    """The host side of the second connection against a scripted server."""

    name: str
    token: str
    responses: list[bytes]


SERVER_CLIENT_CASES = [
    ServerClientCase("pass", TOKEN, [b"VERSION_2", b"PASS", b"PASS"]),
    ServerClientCase("pass-version10", "t0k+/=", [b"VERSION_10", b"PASS", b"PASS\0"]),
    ServerClientCase("token-refused", TOKEN, [b"VERSION_2", b"PASS", b"FAIL"]),
    ServerClientCase("legacy-version-reply", TOKEN, [b"PASS"]),
    ServerClientCase("version-refused", TOKEN, [b"VERSION_2", b"FAIL"]),
    ServerClientCase("empty-token", "", []),
]


@dataclass(frozen=True)
class ValidateCase:
    """hvmagic presents ``presented``; PowerShell's ValidateToken expects ``expected``."""

    name: str
    expected: str
    presented: str
    #: how long ago the broker minted the token: "new", "life-30s" or "life+1s", relative to
    #: the token lifetime (see ``_age_seconds``; ``test_token_lifetime_is_powershells`` checks
    #: the lifetime against PowerShell's own MAX_TOKEN_LIFE_MINUTES)
    age: str = "new"


VALIDATE_CASES = [
    ValidateCase("right-token", TOKEN, TOKEN),
    ValidateCase("right-token-nearly-expired", TOKEN, TOKEN, age="life-30s"),
    # hvmagic passes the broker's token on untrimmed, as PowerShell does; the server trims.
    ValidateCase("right-token-with-trailing-space", TOKEN, TOKEN + "  "),
    ValidateCase("wrong-token", TOKEN, TOKEN[:-2] + "x="),
    ValidateCase("token-prefix", TOKEN, TOKEN[:10]),
    ValidateCase("token-other-case", TOKEN, TOKEN.lower()),
    ValidateCase("blank-token", TOKEN, "   "),  # what a blank TOKEN reply would give
    ValidateCase("expired-token", TOKEN, TOKEN, age="life+1s"),
]

#: PowerShell 7.6's MAX_TOKEN_LIFE_MINUTES; the script reports the real value and the tests
#: compare, so a change in PowerShell shows up as a failure rather than a wrong age.
ASSUMED_LIFE_MINUTES = 10


def _age_seconds(age: str) -> float:
    life = ASSUMED_LIFE_MINUTES * 60
    return {"new": 0.0, "life-30s": life - 30.0, "life+1s": life + 1.0}[age]


#: every name of 1 to 4 characters over the characters that matter to the split, and a few more
USER_NAMES = [
    "".join(chars)
    for length in range(1, 5)
    for chars in itertools.product("a\\@.", repeat=length)
] + ["CORP\\alice", "alice@corp.example", "dōmain\\usĕr", "usĕr@hōst", " ", "a b@c d", "x@y\\z"]


# --- hvmagic's side -------------------------------------------------------------------------------


@dataclass
class Outcome:
    """What one client did: its kind, the value, and the message of an error."""

    kind: str  # "token" | "legacy-broker" | "v1-done" | "CredentialError" | "HandshakeError" | ...
    value: str | None = None
    message: str = ""


def _hvmagic_broker(case: BrokerCase) -> tuple[Outcome, list[bytes]]:
    peer = ListeningPeer(case.responses, close_after=case.close_after)
    peer.start()
    with socket.create_connection(("127.0.0.1", peer.port), timeout=20) as sock:
        try:
            token = negotiate_broker(sock, case.username, case.password,
                                     configuration=case.configuration, legacy=case.legacy)
        except (CredentialError, HandshakeError) as exc:
            outcome = Outcome(type(exc).__name__, message=str(exc))
        else:
            if token is not None:
                outcome = Outcome("token", token)
            else:
                outcome = Outcome("v1-done" if case.legacy else "legacy-broker")
    return outcome, peer.finish()


def _hvmagic_server_client(case: ServerClientCase) -> tuple[Outcome, list[bytes]]:
    peer = ListeningPeer(case.responses)
    peer.start()
    with socket.create_connection(("127.0.0.1", peer.port), timeout=20) as sock:
        try:
            negotiate_server(sock, case.token)
        except (CredentialError, HandshakeError) as exc:
            outcome = Outcome(type(exc).__name__, message=str(exc))
        else:
            outcome = Outcome("pass")
    return outcome, peer.finish()


ECHO = b"<Data Stream='Default' PSGuid='00000000-0000-0000-0000-000000000000'>AA==</Data>\n"


def _hvmagic_against_validate(port: int, case: ValidateCase) -> Outcome:
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        try:
            negotiate_server(sock, case.presented)
        except (CredentialError, HandshakeError) as exc:
            return Outcome(type(exc).__name__, message=str(exc))
        # Passed: the socket is PowerShell's now; the script echoes one chunk.
        sock.sendall(ECHO)
        echoed = sock.recv(4096)
        return Outcome("pass", echoed.decode("ascii", "replace"))


# --- PowerShell's side ----------------------------------------------------------------------------


def _ps_outcome(result: dict[str, Any]) -> Outcome:
    """PowerShell's result or exception in hvmagic's terms (the mapping hvmagic promises)."""
    if result["outcome"] == "result":
        if result["token"] is not None:
            return Outcome("token", result["token"])
        # (false, null): a legacy broker was detected; (true, null): the V1 conversation ended.
        return Outcome("v1-done" if result["success"] else "legacy-broker")
    if result["outcome"] == "pass":
        return Outcome("pass")
    message = result["message"]
    if result["type"] == PS_DIRECT_EXCEPTION and message == "The credential is invalid.":
        return Outcome("CredentialError", message=message)
    if result["type"] == PS_DIRECT_EXCEPTION and message.startswith("Hyper-V "):
        return Outcome("HandshakeError", message=message)
    return Outcome(f"other:{result['type']}", message=message)


@dataclass
class Run:
    """Everything one pwsh run and the matching hvmagic runs produced."""

    ps: dict[str, Any]
    ps_broker_bytes: dict[str, list[bytes]] = field(default_factory=dict)
    ps_server_client_bytes: dict[str, list[bytes]] = field(default_factory=dict)
    hv_broker: dict[str, tuple[Outcome, list[bytes]]] = field(default_factory=dict)
    hv_server_client: dict[str, tuple[Outcome, list[bytes]]] = field(default_factory=dict)
    hv_validate: dict[str, Outcome] = field(default_factory=dict)


@pytest.fixture(scope="module")
def run(pwsh: str) -> Iterator[Run]:
    broker_peers = [ListeningPeer(c.responses, close_after=c.close_after) for c in BROKER_CASES]
    server_peers = [ListeningPeer(c.responses) for c in SERVER_CLIENT_CASES]
    for peer in [*broker_peers, *server_peers]:
        peer.start()
    spec = {
        "broker": [
            {"port": p.port, "username": c.username, "password": c.password,
             "configuration": c.configuration, "legacy": c.legacy}
            for c, p in zip(BROKER_CASES, broker_peers, strict=True)
        ],
        "server_clients": [
            {"port": p.port, "token": c.token}
            for c, p in zip(SERVER_CLIENT_CASES, server_peers, strict=True)
        ],
        "validate": [
            {"expected": c.expected, "presented": c.presented, "age_seconds": _age_seconds(c.age)}
            for c in VALIDATE_CASES
        ],
        "user_names": USER_NAMES,
    }
    encoded = base64.b64encode(json.dumps(spec).encode("utf-8")).decode("ascii")
    proc = subprocess.Popen(
        [pwsh, "-NoLogo", "-NoProfile", "-NonInteractive", "-File", str(SCRIPT), "-Spec", encoded],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    try:
        # hvmagic's broker and server-client runs need no pwsh: do them while it starts.
        hv_broker = {c.name: _hvmagic_broker(c) for c in BROKER_CASES}
        hv_server_client = {c.name: _hvmagic_server_client(c) for c in SERVER_CLIENT_CASES}
        assert proc.stdout is not None
        first = proc.stdout.readline()
        if not first:
            _, err = proc.communicate(timeout=60)
            reason = err.decode("utf-8", "replace").strip()
            if proc.returncode == NO_TOKEN_HANDSHAKE and os.environ.get(REQUIRE_ENV) != "1":
                pytest.skip(reason)
            pytest.fail(f"psdirect_handshake.ps1 failed: {reason}")
        ports = json.loads(first)
        hv_validate: dict[str, Outcome] = {}
        errors: list[BaseException] = []

        def against_validate() -> None:
            try:
                for case, port in zip(VALIDATE_CASES, ports, strict=True):
                    hv_validate[case.name] = _hvmagic_against_validate(port, case)
            except BaseException as exc:  # reported by the fixture, never swallowed
                errors.append(exc)

        client = threading.Thread(target=against_validate, daemon=True)
        client.start()
        out, err = proc.communicate(timeout=180)
        client.join(60)
        if proc.returncode != 0:
            pytest.fail(f"psdirect_handshake.ps1 exited {proc.returncode}: "
                        f"{err.decode('utf-8', 'replace')}")
        if errors:
            raise errors[0]
        ps = json.loads(out.decode("utf-8").strip().splitlines()[-1])
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    yield Run(
        ps=ps,
        ps_broker_bytes={c.name: p.finish() for c, p in zip(BROKER_CASES, broker_peers,
                                                             strict=True)},
        ps_server_client_bytes={c.name: p.finish() for c, p in zip(SERVER_CLIENT_CASES,
                                                                    server_peers, strict=True)},
        hv_broker=hv_broker,
        hv_server_client=hv_server_client,
        hv_validate=hv_validate,
    )


#: Cases where hvmagic fails where PowerShell's broker step still succeeds: PowerShell
#: acknowledges an empty or blank token and returns it; the second connection then fails
#: ("The credential is invalid." before anything is sent for an empty token, a refusal by the
#: guest for a blank one, which it trims to nothing). No guest can accept such a token, so
#: hvmagic acknowledges it the same way (same bytes) and raises HandshakeError at once.
EARLY_FAILURES = {"v2-empty-token": "", "v2-blank-token": "   "}


def _ps_broker(run: Run, name: str) -> dict[str, Any]:
    index = [c.name for c in BROKER_CASES].index(name)
    result: dict[str, Any] = run.ps["broker"][index]
    return result


# --- the broker conversation ----------------------------------------------------------------------


@pytest.mark.parametrize("case", BROKER_CASES, ids=lambda c: c.name)
def test_broker_bytes_equal_powershells(run: Run, case: BrokerCase) -> None:
    ps_bytes = run.ps_broker_bytes[case.name]
    _, hv_bytes = run.hv_broker[case.name]
    assert ps_bytes, f"PowerShell sent nothing: {_ps_broker(run, case.name)}"
    # Compared as the list of chunks the broker received: each token is one send answered
    # before the next, in both clients.
    assert hv_bytes == ps_bytes


@pytest.mark.parametrize("case", BROKER_CASES, ids=lambda c: c.name)
def test_broker_outcome_equals_powershells(run: Run, case: BrokerCase) -> None:
    ps = _ps_outcome(_ps_broker(run, case.name))
    hv, _ = run.hv_broker[case.name]
    if case.name in EARLY_FAILURES:
        assert ps == Outcome("token", EARLY_FAILURES[case.name])
        assert hv == Outcome("HandshakeError", message=(
            "Hyper-V Broker sent an invalid Token response during the connection negotiation."))
        return
    assert hv.kind == ps.kind, f"PowerShell: {ps}, hvmagic: {hv}"
    assert hv.value == ps.value
    if case.quoted_reply is not None:
        # PowerShell appends the broker's reply to the message; hvmagic leaves it out, because
        # it may hold a token. Otherwise the text is PowerShell's, word for word.
        assert case.quoted_reply in ps.message and case.quoted_reply not in hv.message
        assert hv.message == ps.message.replace(f"Token {case.quoted_reply}", "Token")
    elif case.close_after is None:
        assert hv.message == ps.message


def test_every_broker_outcome_kind_is_exercised(run: Run) -> None:
    kinds = {run.hv_broker[c.name][0].kind for c in BROKER_CASES}
    assert kinds == {"token", "legacy-broker", "v1-done", "CredentialError", "HandshakeError"}


@pytest.mark.parametrize("username", sorted({c.username for c in BROKER_CASES}))
def test_user_name_split_equals_getnetworkcredential(run: Run, username: str) -> None:
    # The domain and user PowerShell's client received (PSCredential.GetNetworkCredential()),
    # against what the broker got from hvmagic.
    case = next(c for c in BROKER_CASES if c.username == username and not c.legacy
                and c.responses[0].startswith(b"VERSION_"))
    split = _ps_broker(run, case.name)["split"]
    sent = run.hv_broker[case.name][1]
    wire_domain = split["domain"] or "localhost"  # PowerShell's substitution for an empty domain
    assert sent[2:4] == [wire_domain.encode("utf-16-le"), split["user"].encode("utf-16-le")]


def test_user_name_split_equals_powershells_for_many_names(run: Run) -> None:
    # Where PowerShell refuses a name (GetNetworkCredential: "The value for UserName is not in
    # the correct format."), hvmagic refuses it too, before anything is sent.
    differences = []
    for name, ps in zip(USER_NAMES, run.ps["splits"], strict=True):
        try:
            hv: dict[str, str] | str = dict(zip(("domain", "user"), split_username(name),
                                                strict=True))
        except CredentialError:
            hv = "refused"
        expected = "refused" if ps.get("outcome") == "error" else ps
        if hv != expected:
            differences.append((name, expected, hv))
    assert differences == []


# --- the second connection, host side -------------------------------------------------------------


@pytest.mark.parametrize("case", SERVER_CLIENT_CASES, ids=lambda c: c.name)
def test_token_presentation_equals_powershells(run: Run, case: ServerClientCase) -> None:
    index = [c.name for c in SERVER_CLIENT_CASES].index(case.name)
    ps = _ps_outcome(run.ps["server_clients"][index])
    hv, hv_bytes = run.hv_server_client[case.name]
    assert hv_bytes == run.ps_server_client_bytes[case.name]
    assert (hv.kind, hv.message) == (ps.kind, ps.message)


# --- the second connection, judged by the guest's ValidateToken -----------------------------------


def test_token_lifetime_is_powershells(run: Run) -> None:
    assert run.ps["life_minutes"] == ASSUMED_LIFE_MINUTES


def _validate(run: Run, name: str) -> tuple[Outcome, dict[str, Any]]:
    index = [c.name for c in VALIDATE_CASES].index(name)
    return run.hv_validate[name], run.ps["validate"][index]


def _powershells_client_against_validate(run: Run, name: str) -> Outcome:
    index = [c.name for c in VALIDATE_CASES].index(name)
    return _ps_outcome(run.ps["ps_client_validate"][index])


@pytest.mark.parametrize(
    "name", ["right-token", "right-token-nearly-expired", "right-token-with-trailing-space"]
)
def test_validate_token_accepts_hvmagics_client(run: Run, name: str) -> None:
    hv, ps = _validate(run, name)
    assert ps == {"outcome": "pass", "echoed": len(ECHO)}
    assert hv == Outcome("pass", ECHO.decode("ascii"))
    assert _powershells_client_against_validate(run, name) == Outcome("pass")


@pytest.mark.parametrize("name", ["wrong-token", "token-prefix", "token-other-case", "blank-token"])
def test_validate_token_refuses_a_wrong_token(run: Run, name: str) -> None:
    hv, ps = _validate(run, name)
    assert _ps_outcome(ps) == Outcome("CredentialError",
                                                    message="The credential is invalid.")
    assert hv == Outcome("CredentialError", message="The credential is invalid.")
    assert _powershells_client_against_validate(run, name) == hv


def test_validate_token_refuses_an_expired_token(run: Run) -> None:
    # PowerShell checks the age before reading anything and throws; the guest process ends
    # without an answer, so the client can only see the connection close.
    hv, ps = _validate(run, "expired-token")
    assert _ps_outcome(ps).kind == "CredentialError"
    # PowerShell's own client gets no answer either: a reset (SocketException) or, if the
    # close arrives as an orderly end, a NullReferenceException on the missing reply; never
    # a verdict.
    own_client = _powershells_client_against_validate(run, "expired-token")
    assert own_client.kind in ("other:System.Net.Sockets.SocketException",
                               "other:System.NullReferenceException"), own_client
    assert hv.kind == "HandshakeError"
    assert "closed the connection" in hv.message and "10 minutes" in hv.message


# --- end to end: connect_vm -> token check by PowerShell -> a PSRP session with pwsh -s ----------


def test_connect_vm_passes_validatetoken_and_runs_a_session_on_pwsh(pwsh: str, run: Run) -> None:
    """PowerShell Direct with only AF_HYPERV and the guest's broker replaced.

    The broker is scripted (it is closed-source Windows code); the second connection goes to a
    pwsh that runs PowerShell's own ValidateToken on it and then, in the same process, the
    OutOfProc server ``pwsh -s`` runs, on the same socket: what the guest's PowerShell does.
    """
    token = "dG9rZW4tZnJvbS10aGUtYnJva2VyLTIwMjY+/="
    vm = VMInfo(id="6f9e1c2a-52d4-4d3b-9a1e-0c8b7d6e5f40", name="vm01", state="Running")
    brokers: list[ScriptedPeer] = []
    guests: list[subprocess.Popen[bytes]] = []

    def hyperv_sockets(vm_id: str, service_id: str, timeout: float) -> socket.socket:
        assert vm_id == vm.id
        if service_id == BROKER_SERVICE_ID:
            client, broker = peer_pair(v2_broker_responses(token=token))
            brokers.append(broker)
            return client
        assert service_id == SERVER_SERVICE_ID
        client, guest_end = socket.socketpair()
        guests.append(subprocess.Popen(
            [pwsh, "-NoLogo", "-NoProfile", "-NonInteractive", "-File", str(GUEST_SCRIPT),
             "-Token", token],
            stdin=guest_end.fileno(), stdout=guest_end.fileno(), stderr=subprocess.PIPE,
        ))
        guest_end.close()
        client.settimeout(timeout)
        return client

    try:
        transport = connect_vm("vm01", username=".\\Administrator", password=PASSWORD,
                               socket_factory=hyperv_sockets, resolver=lambda name: vm,
                               sleep=lambda seconds: None, timeout=120)
        with open_session(transport, name="vm01", timeout=120) as session:
            result = session.run("$PSVersionTable.PSVersion.ToString(); $PID")
    finally:
        for guest in guests:
            try:
                guest.wait(30)
            except subprocess.TimeoutExpired:
                guest.kill()
                guest.wait()
    assert len(brokers) == 1 and len(guests) == 1  # no token retry was needed
    sent = brokers[0].finish()
    assert sent[2] == ".".encode("utf-16-le")  # the domain PowerShell sends for .\user
    assert sent[-1] == b"PASS"
    assert guests[0].stderr is not None
    assert b"token accepted" in guests[0].stderr.read()
    version, pid = result.output
    # The session runs in the process that checked the token, and it is the same PowerShell
    # that answered the handshake cases.
    assert pid == guests[0].pid
    assert version == run.ps["version"]
