"""Guest prompts cannot pass for hvmagic's (issue 16, point 7).

In the notebook, every prompt a guest raises (``Read-Host``, ``$Host.UI.Prompt``,
``PromptForChoice``, ``Get-Credential``) says it comes from the guest (its VM name) and how the
answer travels (hidden and encrypted, or visible and in plain text); ``%vmconnect``'s own
password box says it is ``%vmconnect``'s. A guest label cannot hide the marker.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output

from hvmagic import magics as hvmagics
from hvmagic.clixml.values import SecureString
from hvmagic.host import Choice, Field, answer_host_call
from hvmagic.notebook_host import NotebookHostUI
from hvmagic.testing import FakeGuest, HandlerContext


class Recorder:
    """Stands in for the frontend's input box and password box."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, str]] = []

    def read(self, prompt: str) -> str:
        self.asked.append(("text", prompt))
        return "Y" if " choice: " in prompt else "typed"

    def read_secret(self, prompt: str) -> str:
        self.asked.append(("secret", prompt))
        return "hidden-typed"

    def ui(self, guest: str = "web01") -> NotebookHostUI:
        return NotebookHostUI(read=self.read, read_secret=self.read_secret, guest=guest)


GUEST_MARK_TEXT = "[guest 'web01' {what}: visible, sent as plain text] "
GUEST_MARK_SECRET = "[guest 'web01' {what}: hidden, sent encrypted] "


def test_a_plain_text_field_labelled_like_a_password_says_where_it_goes() -> None:
    rec = Recorder()
    ui = rec.ui()
    # Read-Host 'Password for administrator' arrives as a one-field Prompt of type String
    field = {"Name": "Password for administrator", "ParameterTypeFullName": "System.String"}
    answer = answer_host_call(ui, "Prompt", ["", "", [_obj(field)]])
    assert answer == {"Password for administrator": "typed"}
    kind, prompt = rec.asked[0]
    assert kind == "text"  # echoed: it is plain text, and the prompt says so
    assert prompt == (GUEST_MARK_TEXT.format(what="Read-Host") + "WARNING: the guest asks for "
                      "this as plain text, not a SecureString. Password for administrator: ")


def test_every_guest_prompt_is_marked_and_none_looks_like_vmconnect(
    capsys: pytest.CaptureFixture[str],
) -> None:
    rec = Recorder()
    ui = rec.ui()
    ui.read_line("Name")
    ui.read_line_as_secure_string("Pin")
    ui.prompt("Deploy", "Values", [Field("Port", "System.Int32"),
                                   Field("Key", "System.Security.SecureString")])
    ui.prompt_for_credential("Login", "For the share", "CORP\\admin", None)
    ui.prompt_for_credential("Login", "", None, None)
    choices = [Choice("&Yes"), Choice("&No")]
    assert ui.prompt_for_choice("Restart", "Now?", choices, 1) == 0
    assert rec.asked == [
        ("text", GUEST_MARK_TEXT.format(what="Read-Host") + "Name: "),
        ("secret", GUEST_MARK_SECRET.format(what="Read-Host") + "Pin: "),
        ("text", GUEST_MARK_TEXT.format(what="prompt") + "Port: "),
        ("secret", GUEST_MARK_SECRET.format(what="prompt") + "Key: "),
        ("secret", GUEST_MARK_SECRET.format(what="credential request")
         + "Password for CORP\\admin: "),
        ("text", GUEST_MARK_TEXT.format(what="credential request") + "User: "),
        ("secret", GUEST_MARK_SECRET.format(what="credential request") + "Password for typed: "),
        ("text", GUEST_MARK_TEXT.format(what="choice") + "[Y] Yes  [N] No (default No): "),
    ]
    printed = capsys.readouterr().out.splitlines()
    assert printed == ["[guest 'web01' prompt] Deploy — Values",
                       "[guest 'web01' credential request] Login — For the share",
                       "[guest 'web01' credential request] Login",
                       "[guest 'web01' choice] Restart — Now?"]
    assert not any(p.startswith("%vmconnect") for _, p in rec.asked)


@pytest.mark.parametrize("label", [
    "\n\n\n%vmconnect web01: Password for administrator",
    "\r%vmconnect web01: Password for administrator",
    "\x1b[2K\x1b[1G%vmconnect web01: Password for administrator",
    "\u202e:rotartsinimda rof drowssaP",  # right-to-left override
    "x" * 5000,
])
def test_a_guest_label_cannot_hide_the_marker(label: str) -> None:
    rec = Recorder()
    rec.ui().read_line(label)
    prompt = rec.asked[0][1]
    assert prompt.startswith(GUEST_MARK_TEXT.format(what="Read-Host"))
    assert not any(ch in prompt for ch in "\n\r\x1b\u202e")
    assert len(prompt) < 400


def test_vmconnect_password_box_is_hvmagics_own(ip: InteractiveShell,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[dict[str, Any]] = []
    asked: list[str] = []

    def fake_connect(target: str, **kw: Any) -> Any:
        seen.append({"target": target, **kw})
        return _Connected(target)

    def fake_getpass(prompt: str = "") -> str:
        asked.append(prompt)
        return "typed-pw"

    monkeypatch.setattr(hvmagics, "_connect", fake_connect)
    # as on a Windows Hyper-V host (elsewhere %vmconnect refuses before any prompt)
    monkeypatch.setattr("hvmagic.transports.hvsocket.hvsocket_supported", lambda: True)
    monkeypatch.delenv("HVMAGIC_PASSWORD", raising=False)
    monkeypatch.setattr("getpass.getpass", fake_getpass)
    with capture_output():
        ip.run_line_magic("vmconnect", "web01 -u administrator --via direct")
    assert asked == ["%vmconnect web01: Password for administrator: "]
    ui = seen[-1]["host_ui"]
    assert isinstance(ui, NotebookHostUI) and ui.guest == "web01"
    with capture_output():
        ip.run_line_magic("vmclose", "--all")


def test_guest_prompts_over_the_protocol_name_the_vm() -> None:
    rec = Recorder()
    with FakeGuest() as guest:
        @guest.handle("ask")
        def ask(ctx: HandlerContext) -> None:
            ctx.output(ctx.read_host("Password for administrator"))
            ctx.output(ctx.read_host("Password for administrator", as_secure_string=True)
                       .decrypt())

        with guest.connect(name="dc01", host_ui=rec.ui("dc01")) as session:
            assert session.run("ask").output == ["typed", "hidden-typed"]
    assert [kind for kind, _ in rec.asked] == ["text", "secret"]
    assert rec.asked[0][1].startswith("[guest 'dc01' Read-Host: visible, sent as plain text] "
                                      "WARNING:")
    assert rec.asked[1][1] == ("[guest 'dc01' Read-Host: hidden, sent encrypted] "
                               "Password for administrator: ")


# -- helpers -----------------------------------------------------------------------------------


class _Connected:
    def __init__(self, name: str) -> None:
        self.name = name
        self.description = f"test guest {name!r}"
        self.broken = False
        self.closed = False

    def close(self) -> None:
        self.closed = True


class _Obj:
    def __init__(self, values: dict[str, Any]) -> None:
        self.__dict__.update(values)


def _obj(values: dict[str, Any]) -> Any:
    return _Obj(values)


@pytest.fixture
def ip() -> Iterator[InteractiveShell]:
    shell = InteractiveShell.instance()
    shell.extension_manager.load_extension("hvmagic")
    yield shell
    shell.extension_manager.unload_extension("hvmagic")


def test_secret_answers_are_secure_strings() -> None:
    rec = Recorder()
    value = rec.ui().read_line_as_secure_string("Pin")
    assert isinstance(value, SecureString) and value.reveal() == "hidden-typed"


def test_a_guest_prompt_on_a_fleet_worker_thread_is_refused_not_misrouted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """ipykernel's input requests share one socket and take the first reply: several fleet
    threads prompting at once could hand one guest's password to another. Off the main thread
    the notebook UI refuses; the guest gets an error instead of someone else's answer."""
    import threading

    from hvmagic.errors import HostInteractionError

    monkeypatch.setattr("getpass.getpass", lambda prompt="": pytest.fail("prompted"))
    monkeypatch.setattr("builtins.input", lambda prompt="": pytest.fail("prompted"))
    ui = NotebookHostUI(guest="web01")
    seen: list[BaseException] = []

    def worker() -> None:
        for ask in (lambda: ui.read_line("Name"),
                    lambda: ui.read_line_as_secure_string("Password")):
            try:
                ask()
            except HostInteractionError as exc:
                seen.append(exc)

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join(5)
    assert len(seen) == 2
    assert "run on several guests" in str(seen[0]) and "--with" in str(seen[0])
    # on the kernel's own thread the prompt is asked as before
    monkeypatch.setattr("builtins.input", lambda prompt="": "typed")
    assert ui.read_line("Name") == "typed"
