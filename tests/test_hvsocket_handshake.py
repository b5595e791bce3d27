"""The PowerShell Direct broker and server conversations, byte for byte (psdirect-protocol.md §2).

The conversations are the ones tabled in §2.2-2.4 and in PowerShell's own
``test/xUnit/csharp/test_RemoteHyperV.cs`` (CreateV2Sends/CreateV2Responses, the V1 pass/fail
tables, the fallback table, the FAI1 case, PerformTransportVersionAndTokenExchange and the token
mismatch cases), played by a fake peer over real sockets.
"""

from __future__ import annotations

import logging
import socket
import struct
import threading
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hvmagic import SecureString
from hvmagic.errors import CredentialError, HandshakeError, HvMagicError, TransportError
from hvmagic.transports import hvsocket
from hvmagic.transports.hvsocket import negotiate_broker, negotiate_server
from tests._hvsocket_peers import peer_pair, u16, v2_broker_responses, v2_client_sends

# Non-ASCII in every user string, like PowerShell's CreateRandomUnicodePassword (U+0100-U+017F)
# plus an astral character, which UTF-16 must send as a surrogate pair.
DOMAIN = "dōmain"
USER = "usĕrname"
PASSWORD = "pässwörd€\U0001f511"
CONFIG = "cönfig.PowerShell.7"
TOKEN_512 = (
    "FakeTokenaaaaaaaaaAAAAAAAAAAAAAAAAAAAAAA0FakeTokenaaaaaaaaaAAAAAAAAAAAAAAAAAAAAAA0+/=="
)
TOKEN_256 = "FakeTokenaaaaaaaaaAAAAAAAAAAAAAAAAAAAAAA0+/="


def assert_no_secret(exc: BaseException, *secrets: str) -> None:
    """No secret in the exception's text or repr, nor anywhere down its cause chain."""
    seen: BaseException | None = exc
    while seen is not None:
        for secret in secrets:
            for rendered in (str(seen), repr(seen), repr(seen.args)):
                assert secret not in rendered, f"secret leaked into {type(seen).__name__}"
        seen = seen.__cause__ or seen.__context__


# --- V2 broker ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("version", "configuration", "token"),
    [
        ("VERSION_2", "configurationname1", TOKEN_512),  # PowerShell's V2_Pass InlineData 1
        ("VERSION_10", None, TOKEN_256),  # PowerShell's V2_Pass InlineData 2
        ("VERSION_2", None, TOKEN_512),
        ("VERSION_10", CONFIG, TOKEN_256),
    ],
)
def test_v2_broker_pass(version: str, configuration: str | None, token: str) -> None:
    client, broker = peer_pair(
        v2_broker_responses(version, configuration=bool(configuration), token=token)
    )
    result = negotiate_broker(client, USER, PASSWORD, DOMAIN, configuration)
    client.close()
    assert result == token
    assert broker.finish() == v2_client_sends(DOMAIN, USER, PASSWORD, configuration)


@pytest.mark.parametrize("configuration", [None, "PowerShell.7"])
def test_v2_broker_empty_password(configuration: str | None) -> None:
    client, broker = peer_pair(
        v2_broker_responses(empty_password=True, configuration=bool(configuration))
    )
    result = negotiate_broker(client, "administrator", "", None, configuration)
    client.close()
    assert result == "FakeToken0+/="
    expected = [b"VERSION", b"VERSION_2", u16("localhost"), u16("administrator"), b"EMPTYPW"]
    expected += [b"NONEMPTYCF", u16("PowerShell.7")] if configuration else [b"EMPTYCF"]
    assert broker.finish() == [*expected, b"PASS"]


def test_v2_broker_exact_utf16le_bytes_for_non_ascii_strings() -> None:
    client, broker = peer_pair(v2_broker_responses(configuration=True))
    negotiate_broker(client, USER, SecureString(PASSWORD), DOMAIN, CONFIG)
    client.close()
    sent = broker.finish()
    # Written out by hand: UTF-16LE, no BOM, no terminator; U+1F511 is the pair D83D DD11.
    assert sent[2] == bytes.fromhex("6400 4d01 6d00 6100 6900 6e00".replace(" ", ""))
    assert sent[3] == bytes.fromhex("7500 7300 1501 7200 6e00 6100 6d00 6500".replace(" ", ""))
    assert sent[5] == bytes.fromhex(
        "7000 e400 7300 7300 7700 f600 7200 6400 ac20 3dd8 11dd".replace(" ", "")
    )
    assert sent[7] == bytes.fromhex(
        "6300 f600 6e00 6600 6900 6700 2e00 5000 6f00 7700 6500 7200"
        "5300 6800 6500 6c00 6c00 2e00 3700".replace(" ", "")
    )


@pytest.mark.parametrize(
    ("username", "domain", "user"),
    [
        ("CORP\\alice", "CORP", "alice"),
        ("alice@vmhost", "vmhost", "alice"),
        ("alice@corp.example", "localhost", "alice@corp.example"),
        ("alice", "localhost", "alice"),
        (".\\alice", ".", "alice"),  # PowerShell sends the dot as it is
    ],
)
def test_v2_broker_splits_the_user_name_like_powershell(
    username: str, domain: str, user: str
) -> None:
    client, broker = peer_pair(v2_broker_responses())
    negotiate_broker(client, username, "pw")
    client.close()
    sent = broker.finish()
    assert sent[2:4] == [u16(domain), u16(user)]


def test_v2_token_trailing_nuls_are_trimmed() -> None:
    responses = v2_broker_responses()
    responses[-1] = b"TOKEN abc+/=\0\0\0"
    client, broker = peer_pair(responses)
    assert negotiate_broker(client, "u", "p") == "abc+/="
    client.close()
    assert broker.finish()[-1] == b"PASS"


def test_v2_password_rejected_raises_credential_error_and_echoes_fail() -> None:
    responses = [b"VERSION_2", b"PASS", b"PASS", b"PASS", b"PASS", b"FAIL"]
    client, broker = peer_pair(responses)
    with pytest.raises(CredentialError) as info:
        negotiate_broker(client, USER, PASSWORD, DOMAIN)
    client.close()
    assert str(info.value) == "The credential is invalid."
    assert broker.finish() == [
        b"VERSION", b"VERSION_2", u16(DOMAIN), u16(USER), b"NONEMPTYPW", u16(PASSWORD), b"FAIL",
    ]
    assert_no_secret(info.value, PASSWORD)


def test_v2_reply_without_token_prefix_is_a_handshake_error_without_the_reply() -> None:
    responses = v2_broker_responses()
    responses[-1] = b"TOKENsecretvalue123"
    client, broker = peer_pair(responses)
    with pytest.raises(HandshakeError) as info:
        negotiate_broker(client, "u", PASSWORD)
    client.close()
    assert str(info.value) == (
        "Hyper-V Broker sent an invalid Token response during the connection negotiation."
    )
    assert broker.finish()[-1] == b"EMPTYCF"  # no PASS acknowledgement for a bad token
    assert_no_secret(info.value, "secretvalue123", PASSWORD)


@pytest.mark.parametrize("reply", [b"TOKEN \0", b"TOKEN    "])
def test_v2_empty_token_is_acknowledged_like_powershell_then_a_handshake_error(
    reply: bytes,
) -> None:
    # PowerShell acknowledges any TOKEN reply with PASS (and fails later); the broker sees the
    # same conversation from hvmagic, which fails at once.
    responses = v2_broker_responses()
    responses[-1] = reply
    client, broker = peer_pair(responses)
    with pytest.raises(HandshakeError, match="invalid Token response"):
        negotiate_broker(client, "u", "p")
    client.close()
    assert broker.finish()[-1] == b"PASS"


def test_v2_token_is_passed_on_untrimmed_like_powershell() -> None:
    # PowerShell strips only the trailing NULs; the guest's check trims what it receives.
    responses = v2_broker_responses()
    responses[-1] = b"TOKEN  abc+/= \0\0"
    client, broker = peer_pair(responses)
    assert negotiate_broker(client, "u", "p") == " abc+/= "
    client.close()
    broker.finish()


def test_v2_token_bytes_outside_ascii_become_question_marks_like_dotnet() -> None:
    # Encoding.ASCII.GetString turns each such byte into '?', and PowerShell presents that.
    responses = v2_broker_responses()
    responses[-1] = b"TOKEN t\xe9k\xff+/="
    client, broker = peer_pair(responses)
    token = negotiate_broker(client, "u", "p")
    client.close()
    broker.finish()
    assert token == "t?k?+/="
    client, server = peer_pair([b"VERSION_2", b"PASS", b"PASS"])
    negotiate_server(client, token)
    client.close()
    assert server.finish()[-1] == b"TOKEN t?k?+/="


# --- legacy (V1) ------------------------------------------------------------------------------


def test_legacy_broker_is_detected_and_its_conversation_finished_with_the_probe() -> None:
    # CreateHandshakeTestDataForFallback: a V1 broker reads VERSION as the domain → PASS.
    client, broker = peer_pair([b"PASS", b"PASS", b"FAIL"])
    assert negotiate_broker(client, USER, PASSWORD, DOMAIN, CONFIG) is None
    client.close()
    sent = broker.finish()
    assert sent == [b"VERSION", u16("?<PSDirectVMLegacy>"), b"EMPTYPW", b"FAIL"]
    assert all(u16(PASSWORD) not in chunk and u16(USER) not in chunk for chunk in sent)


def test_v1_pass_echoes_pass_and_ignores_intermediate_replies(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # PerformCredentialAndConfigurationHandshake_V1_Pass: intermediate replies are random
    # PASS/FAIL there, final PASS (a TP4 broker, no configuration support) is echoed.
    client, broker = peer_pair([b"FAIL", b"PASS", b"FAIL", b"PASS"])
    with caplog.at_level(logging.WARNING, logger="hvmagic.hvsocket"):
        assert negotiate_broker(client, USER, PASSWORD, DOMAIN, CONFIG, legacy=True) is None
    client.close()
    assert broker.finish() == [u16(DOMAIN), u16(USER), b"NONEMPTYPW", u16(PASSWORD), b"PASS"]
    assert "does not support configuration names" in caplog.text


@pytest.mark.parametrize("configuration", [None, CONFIG])
def test_v1_conf_sends_the_configuration(configuration: str | None) -> None:
    responses = [b"PASS", b"PASS", b"PASS", b"CONF"] + ([b"PASS"] if configuration else [])
    client, broker = peer_pair(responses)
    assert negotiate_broker(client, USER, PASSWORD, DOMAIN, configuration, legacy=True) is None
    client.close()
    tail = [b"NONEMPTYCF", u16(CONFIG)] if configuration else [b"EMPTYCF"]
    assert broker.finish() == [u16(DOMAIN), u16(USER), b"NONEMPTYPW", u16(PASSWORD), *tail]


def test_v1_fail_raises_the_credential_error() -> None:
    client, broker = peer_pair([b"PASS", b"FAIL", b"PASS", b"FAIL"])
    with pytest.raises(CredentialError, match=r"^The credential is invalid\.$") as info:
        negotiate_broker(client, USER, PASSWORD, DOMAIN, "config", legacy=True)
    client.close()
    assert broker.finish() == [u16(DOMAIN), u16(USER), b"NONEMPTYPW", u16(PASSWORD), b"FAIL"]
    assert_no_secret(info.value, PASSWORD)


@pytest.mark.parametrize("legacy", [True, False])
def test_invalid_fai1_reply_is_a_handshake_error(legacy: bool) -> None:
    # PerformCredentialAndConfigurationHandshake_V2_InvalidResponse
    responses = ([] if legacy else [b"VERSION_2", b"PASS"]) + [b"PASS", b"FAIL", b"PASS", b"FAI1"]
    client, broker = peer_pair(responses)
    with pytest.raises(HandshakeError) as info:
        negotiate_broker(client, USER, PASSWORD, DOMAIN, "config", legacy=legacy)
    client.close()
    assert str(info.value) == (
        "Hyper-V Broker sent an invalid Credential response during the connection negotiation."
    )
    sent = broker.finish()
    assert sent[-1] == u16(PASSWORD)  # nothing after the invalid verdict
    assert_no_secret(info.value, PASSWORD)


# --- second connection (server) ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("version", "token"), [("VERSION_2", TOKEN_512), ("VERSION_10", TOKEN_256)]
)
def test_server_token_exchange_pass(version: str, token: str) -> None:
    # PerformTransportVersionAndTokenExchange_Pass
    client, server = peer_pair([version.encode(), b"PASS", b"PASS"])
    negotiate_server(client, token)
    client.close()
    assert server.finish() == [b"VERSION", b"VERSION_2", b"TOKEN " + token.encode()]


def test_server_token_rejected_is_a_credential_error_without_the_token() -> None:
    # ValidateFailsWhenTokensMismatch: the server answers FAIL.
    client, server = peer_pair([b"VERSION_2", b"PASS", b"FAIL"])
    with pytest.raises(CredentialError, match=r"^The credential is invalid\.$") as info:
        negotiate_server(client, TOKEN_256)
    client.close()
    assert server.finish()[-1] == b"TOKEN " + TOKEN_256.encode()
    assert_no_secret(info.value, TOKEN_256, "FakeToken")


@pytest.mark.parametrize(
    "responses",
    [[b"PASS"], [b"VERSION_2", b"FAIL"], [b"VERSION_2", b"PASS\0x"]],
    ids=["legacy-version-reply", "version-refused", "garbage-after-version"],
)
def test_server_transport_version_errors(responses: list[bytes]) -> None:
    client, server = peer_pair(responses)
    with pytest.raises(HandshakeError) as info:
        negotiate_server(client, "tok")
    client.close()
    assert str(info.value) == (
        "Hyper-V Server sent an invalid TransportVersion response during the connection "
        "negotiation."
    )
    assert len(server.finish()) == len(responses)  # the token was never sent


def test_server_empty_token_is_refused_before_sending() -> None:
    client, server = peer_pair([])
    with pytest.raises(CredentialError):
        negotiate_server(client, "")
    client.close()
    assert server.finish() == []


# --- broken peers -----------------------------------------------------------------------------


def test_broker_closing_mid_handshake_is_a_handshake_error() -> None:
    client, broker = peer_pair([b"VERSION_2", b"PASS", b"PASS"], close_after=3)
    # The peer is gone after answering the domain: the user-name send or the recv after it
    # notices, depending on the OS; both report a closed broker.
    with pytest.raises(HandshakeError, match="Broker closed the connection") as info:
        negotiate_broker(client, USER, PASSWORD, DOMAIN)
    assert "user name" in str(info.value)
    client.close()
    assert broker.finish() == [b"VERSION", b"VERSION_2", u16(DOMAIN)]


def test_server_resetting_the_connection_is_reported_as_closed_with_the_expiry_hint() -> None:
    # The guest PowerShell refuses an expired token by throwing before it reads anything; its
    # socket closes with our version request unread, which TCP reports as a reset.
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def reset_after_first_chunk() -> None:
        conn, _ = listener.accept()
        conn.recv(64)
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.close()  # linger 0: RST

    thread = threading.Thread(target=reset_after_first_chunk, daemon=True)
    thread.start()
    with (socket.create_connection(("127.0.0.1", port), timeout=5) as client,
          pytest.raises(HandshakeError) as info):
        negotiate_server(client, TOKEN_256)
    thread.join(5)
    listener.close()
    message = str(info.value)
    assert "Server closed the connection after the version request" in message
    assert "token has expired (it is valid for 10 minutes)" in message
    assert_no_secret(info.value, TOKEN_256)


def test_server_closing_before_the_token_verdict_is_a_handshake_error() -> None:
    client, server = peer_pair([b"VERSION_2", b"PASS"], close_after=3)
    with pytest.raises(HandshakeError, match="closed the connection after the token"):
        negotiate_server(client, TOKEN_256)
    client.close()
    server.finish()


def test_silent_broker_times_out_quickly_with_a_typed_error() -> None:
    client, broker = peer_pair([])
    client.settimeout(0.2)
    started = time.monotonic()
    with pytest.raises(HandshakeError, match=r"did not answer the version request within 0\.2 s"):
        negotiate_broker(client, USER, PASSWORD)
    assert time.monotonic() - started < 2
    client.close()
    assert broker.finish() == [b"VERSION"]


def test_blocking_socket_gets_a_handshake_timeout_and_it_is_restored(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(hvsocket, "DEFAULT_HANDSHAKE_TIMEOUT", 0.2)
    client, broker = peer_pair([])
    client.settimeout(None)
    started = time.monotonic()
    with pytest.raises(HandshakeError, match=r"within 0\.2 s"):
        negotiate_server(client, "tok")
    assert time.monotonic() - started < 2
    assert client.gettimeout() is None
    client.close()
    broker.finish()


def test_peer_gone_before_the_handshake_is_a_transport_error() -> None:
    client, broker = peer_pair([], close_after=0)
    assert broker.finish() == []
    with pytest.raises(TransportError, match="Broker closed the connection"):
        negotiate_broker(client, USER, PASSWORD)
    client.close()


def test_empty_user_name_is_refused_before_anything_is_sent() -> None:
    client, broker = peer_pair([])
    for bad in ("", "CORP\\", "@host"):
        with pytest.raises(CredentialError, match=r"The input username cannot be empty\."):
            negotiate_broker(client, bad, "pw")
    client.close()
    assert broker.finish() == []


def test_password_must_be_str_or_securestring() -> None:
    client, broker = peer_pair(v2_broker_responses())
    with pytest.raises(TypeError, match="bytes"):
        negotiate_broker(client, "u", b"pw")  # type: ignore[arg-type]
    client.close()
    broker.finish()


def test_over_tcp_loopback() -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    received: list[bytes] = []

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            for reply in [*v2_broker_responses("VERSION_10", token=TOKEN_256), None]:
                chunk = conn.recv(4096)
                if not chunk:
                    return
                received.append(chunk)
                if reply is not None:
                    conn.sendall(reply)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
        assert negotiate_broker(client, "CORP\\bob", "pw") == TOKEN_256
    thread.join(5)
    listener.close()
    assert received == v2_client_sends("CORP", "bob", "pw", None)


def test_no_secret_in_logs(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="hvmagic"):
        client, broker = peer_pair(v2_broker_responses(token=TOKEN_256))
        negotiate_broker(client, USER, PASSWORD, DOMAIN)
        client.close()
        broker.finish()
        client, server = peer_pair([b"VERSION_2", b"PASS", b"FAIL"])
        with pytest.raises(CredentialError):
            negotiate_server(client, TOKEN_256)
        client.close()
        server.finish()
    assert PASSWORD not in caplog.text and TOKEN_256 not in caplog.text


def test_every_handshake_error_is_an_hvmagic_error() -> None:
    assert issubclass(HandshakeError, HvMagicError)
    assert issubclass(CredentialError, HvMagicError)


user_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=40
).filter(lambda text: "\\" not in text and "@" not in text)


@settings(max_examples=40, deadline=None)
@given(user=user_text, password=st.text(alphabet=st.characters(blacklist_categories=("Cs",)),
                                        min_size=1, max_size=60),
       domain=user_text, configuration=user_text)
def test_any_unicode_strings_travel_as_utf16le(user: str, password: str, domain: str,
                                               configuration: str) -> None:
    client, broker = peer_pair(v2_broker_responses(configuration=True))
    assert negotiate_broker(client, user, password, domain, configuration) == "FakeToken0+/="
    client.close()
    assert broker.finish() == v2_client_sends(domain, user, password, configuration)


def test_v2_pass_verdict_from_a_pre_tp5_style_broker_is_echoed_then_the_token_read() -> None:
    # PowerShell accepts PASS as the password verdict in V2 too: it echoes PASS (no
    # configuration step) and still expects the token.
    responses = [b"VERSION_2", b"PASS", b"PASS", b"PASS", b"PASS", b"PASS", b"TOKEN t0k+/="]
    client, broker = peer_pair(responses)
    assert negotiate_broker(client, USER, PASSWORD, DOMAIN, None) == "t0k+/="
    client.close()
    assert broker.finish() == [
        b"VERSION", b"VERSION_2", u16(DOMAIN), u16(USER), b"NONEMPTYPW", u16(PASSWORD),
        b"PASS", b"PASS",
    ]


@pytest.mark.skipif(not hvsocket.hvsocket_supported(), reason="needs Windows with CPython >= 3.12")
def test_real_af_hyperv_socket_to_a_nonexistent_vm_fails_with_oserror() -> None:
    # Runs only on a Windows host: no VM has this id, so connect must fail, not hang.
    with pytest.raises(OSError):
        hvsocket.hyperv_socket_factory(
            "00000000-0000-0000-0000-0000000000aa", hvsocket.BROKER_SERVICE_ID, 2.0
        )
