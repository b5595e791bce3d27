"""The guest's prompts (``Read-Host``, ``Get-Credential``, choices), answered in the notebook.

:class:`NotebookHostUI` is the :class:`~hvmagic.host.HostUI` that ``%vmconnect`` gives a session;
:func:`guest_text` makes a guest's words safe to show in a prompt.
"""

from __future__ import annotations

import getpass
import re
import threading
import unicodedata
from collections.abc import Callable
from typing import Any

from IPython.core.error import StdinNotImplementedError

from hvmagic.clixml.values import PSCredential, SecureString
from hvmagic.errors import HostInteractionError
from hvmagic.host import Choice, Field, HostUI


class NotebookHostUI(HostUI):
    """Answers the guest's ``Read-Host``, ``Get-Credential`` and choice prompts in the frontend.

    Text goes through :func:`input`, secrets through :func:`getpass.getpass`; inside a kernel
    both are ipykernel's stdin requests (a password box for secrets), so nothing typed is
    echoed or stored in the notebook. A frontend without stdin (nbclient, papermill) makes the
    prompt fail *in the guest* with a clear message instead of hanging the run.

    The guest is not trusted, and its prompts must not pass for hvmagic's own (``%vmconnect``
    asks ``%vmconnect VM: Password for USER:``). Every prompt text starts with
    ``[guest 'VM' <what asks>: <how the answer travels>]``: ``hidden, sent encrypted`` for
    SecureString/PSCredential answers, ``visible, sent as plain text`` for everything else — a
    plain-text field whose label asks for a password gets a warning saying so. The guest's own
    words (labels, captions, choices) are shown on one line, without control or bidirectional
    formatting characters, and shortened, so they cannot push the marker out of sight.

    The prompts run on the cell's own thread (:attr:`HostUI.answer_on_caller_thread`): ipykernel
    ties stdin requests to the executing cell, and an interrupt must reach the prompt. A
    ``--timeout`` therefore waits for a prompt's answer; interrupting the kernel cancels it.
    """

    name = "hvmagic (Jupyter)"
    answer_on_caller_thread = True

    def __init__(
        self,
        read: Callable[[str], str] | None = None,
        read_secret: Callable[[str], str] | None = None,
        guest: str = "the VM",
    ) -> None:
        self._read = read
        self._read_secret = read_secret
        #: the VM name shown in every prompt the guest asks
        self.guest = guest_text(guest, 60)

    def _ask(self, prompt: str, *, secret: bool) -> str:
        # looked up at call time: ipykernel swaps input/getpass in for each execution
        ask = (self._read_secret or getpass.getpass) if secret else (self._read or input)
        if threading.current_thread() is not threading.main_thread() and (
            self._read_secret if secret else self._read
        ) is None:
            # a fleet runs targets on worker threads: ipykernel's input requests share one
            # socket and take the first reply, so an answer typed for one guest could reach
            # another (or a thread could hang past the timeout); refuse instead of guessing
            raise HostInteractionError(
                f"the guest {self.guest!r} asked for input during a run on several guests; "
                "prompts are answered only one guest at a time — pass the value with "
                "%%vmps --with NAME instead"
            )
        try:
            return ask(prompt)
        except (StdinNotImplementedError, EOFError) as exc:
            raise HostInteractionError(
                "the guest asked for input, but this notebook frontend cannot prompt; pass the "
                "value with %%vmps --with NAME instead"
            ) from exc

    def _marker(self, what: str, *, secret: bool) -> str:
        travel = "hidden, sent encrypted" if secret else "visible, sent as plain text"
        return f"[guest {self.guest!r} {what}: {travel}] "

    def _ask_guest(self, what: str, label: str, *, secret: bool) -> str:
        text = guest_text(label)
        warning = ""
        if not secret and _LOOKS_SECRET.search(text):
            warning = "WARNING: the guest asks for this as plain text, not a SecureString. "
        prompt = f"{self._marker(what, secret=secret)}{warning}{text}{': ' if text else ''}"
        return self._ask(prompt, secret=secret)

    def _show(self, what: str, caption: str, message: str) -> None:
        lines = [guest_text(t) for t in (caption, message) if t]
        if lines:
            print(f"[guest {self.guest!r} {what}] " + " — ".join(lines))

    def read_line(self, prompt: str | None = None) -> str:
        return self._ask_guest("Read-Host", prompt or "", secret=False)

    def read_line_as_secure_string(self, prompt: str | None = None) -> SecureString:
        return SecureString(self._ask_guest("Read-Host", prompt or "", secret=True))

    def prompt(self, caption: str, message: str, fields: list[Field]) -> dict[str, Any]:
        self._show("prompt", caption, message)
        answers: dict[str, Any] = {}
        for field in fields:
            label = field.label or field.name
            if field.type_name.endswith("PSCredential"):
                answers[field.name] = self.prompt_for_credential(caption, message, None, None)
            elif field.is_secret:
                answers[field.name] = SecureString(self._ask_guest("prompt", label, secret=True))
            else:
                answers[field.name] = self._ask_guest("prompt", label, secret=False)
        return answers

    def prompt_for_credential(
        self, caption: str, message: str, username: str | None, target_name: str | None
    ) -> PSCredential:
        self._show("credential request", caption, message)
        user = username or self._ask_guest("credential request", "User", secret=False)
        password = self._ask_guest("credential request", f"Password for {user}", secret=True)
        return PSCredential(user, SecureString(password))

    def prompt_for_choice(
        self, caption: str, message: str, choices: list[Choice], default: int
    ) -> int:
        self._show("choice", caption, message)
        labels = [guest_text(c.label.replace("&", ""), 60) for c in choices]
        menu = "  ".join(
            f"[{guest_text(c.hot_key or '', 1) or i}] {labels[i]}" for i, c in enumerate(choices)
        )
        hint = f" (default {labels[default]})" if 0 <= default < len(choices) else ""
        prompt = f"{self._marker('choice', secret=False)}{menu}{hint}: "
        answer = self._ask(prompt, secret=False).strip()
        if not answer and 0 <= default < len(choices):
            return default
        for index, choice in enumerate(choices):
            if answer.upper() == (choice.hot_key or "") or answer.lower() == choice.label.replace(
                "&", ""
            ).lower() or answer == str(index):
                return index
        raise HostInteractionError(f"{answer!r} is not one of the choices")


#: labels that ask for something secret; such a plain-text field gets a warning
_LOOKS_SECRET = re.compile(
    r"pass(word|phrase|wd)?\b|kennwort|passwort|mot de passe|contraseña|secret|\bpin\b|"
    r"token|api.?key|private.?key|credential",
    re.IGNORECASE,
)


def guest_text(text: str, limit: int = 200) -> str:
    """The guest's words for a prompt: one line, no control or bidi characters, bounded."""
    cleaned = "".join(
        " " if unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") else ch for ch in str(text)
    )
    cleaned = " ".join(cleaned.split())
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 1] + "…"


__all__ = ["NotebookHostUI", "guest_text"]
