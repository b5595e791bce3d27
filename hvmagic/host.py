"""The host UI a session lends the guest: what ``Read-Host``, prompts and ``Write-Host`` reach.

PowerShell code in the guest talks to "the host" (``$Host.UI``). Over PSRP those calls come to
the client as host calls. :class:`HostUI` is hvmagic's pluggable answer:

* The default (:class:`HostUI` itself) is non-interactive: ``Read-Host``,
  ``$Host.UI.PromptForCredential``, ``PromptForChoice`` and ``Prompt`` fail *in the guest* with
  a clear message (like ``powershell -NonInteractive``), so a notebook never hangs on a prompt
  nobody can see. Scripts should take values as parameters instead.
* Text the guest writes to the host (``Write-Host``; on PowerShell 5+ an information record
  tagged ``PSHOST``, on older hosts ``WriteLine`` host calls) is kept by the session as ``"host"``
  records and also handed to :meth:`HostUI.write` for a UI that wants to show it itself.

Subclass and override the ``read_*``/``prompt*`` methods to answer interactively (the notebook
layer does, with non-echoing password widgets), then pass ``host_ui=`` to
:func:`hvmagic.connect`. Return values are plain Python (``str``, ``int``,
:class:`~hvmagic.SecureString`, :class:`~hvmagic.PSCredential`, ``dict``); the session
serializes them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hvmagic.clixml.values import PSCredential, SecureString
from hvmagic.errors import HostInteractionError

NON_INTERACTIVE = (
    "hvmagic's default host is non-interactive: {what} cannot be answered. Pass the value as a "
    "parameter (session.run(script, parameters={{...}})) or connect with an interactive host_ui."
)


@dataclass(frozen=True)
class Choice:
    """One option of ``PromptForChoice`` (``&Yes`` → label ``&Yes``, hot key ``Y``)."""

    label: str
    help_message: str = ""

    @property
    def hot_key(self) -> str | None:
        index = self.label.find("&")
        return self.label[index + 1].upper() if 0 <= index < len(self.label) - 1 else None


@dataclass(frozen=True)
class Field:
    """One field of ``$Host.UI.Prompt`` (a name, its .NET type and whether it is a secret)."""

    name: str
    type_name: str = "System.String"
    label: str = ""
    help_message: str = ""

    @property
    def is_secret(self) -> bool:
        return self.type_name.endswith(("SecureString", "PSCredential"))


class HostUI:
    """The default, non-interactive host UI. Every prompt raises :class:`HostInteractionError`,
    which the session turns into an error the guest script sees."""

    #: what ``$Host.Name`` would report to a script asking
    name = "hvmagic"

    def write(self, text: str, *, stream: str = "host") -> None:
        """Observe text the guest wrote to the host; the session already records it."""
        return None

    def read_line(self, prompt: str | None = None) -> str:
        raise HostInteractionError(NON_INTERACTIVE.format(what="Read-Host"))

    def read_line_as_secure_string(self, prompt: str | None = None) -> SecureString:
        raise HostInteractionError(NON_INTERACTIVE.format(what="Read-Host -AsSecureString"))

    def prompt(self, caption: str, message: str, fields: list[Field]) -> dict[str, Any]:
        raise HostInteractionError(NON_INTERACTIVE.format(what="$Host.UI.Prompt"))

    def prompt_for_credential(
        self, caption: str, message: str, username: str | None, target_name: str | None
    ) -> PSCredential:
        raise HostInteractionError(
            NON_INTERACTIVE.format(what="Get-Credential / $Host.UI.PromptForCredential")
        )

    def prompt_for_choice(
        self, caption: str, message: str, choices: list[Choice], default: int
    ) -> int:
        raise HostInteractionError(NON_INTERACTIVE.format(what="$Host.UI.PromptForChoice"))

    def prompt_for_multiple_choice(
        self, caption: str, message: str, choices: list[Choice], defaults: list[int]
    ) -> list[int]:
        raise HostInteractionError(NON_INTERACTIVE.format(what="PromptForChoice (multiple)"))


class ScriptedHostUI(HostUI):
    """A host UI with canned answers, for tests and unattended runbooks.

    ``lines`` answer ``Read-Host`` in order; ``credentials`` answer credential prompts;
    ``choices`` answer ``PromptForChoice`` (an index, or a label such as ``"&Yes"``);
    ``fields`` answer ``$Host.UI.Prompt`` by field name. Running out of answers falls back to
    the non-interactive error.
    """

    def __init__(
        self,
        *,
        lines: list[str | SecureString] | None = None,
        credentials: list[PSCredential] | None = None,
        choices: list[int | str] | None = None,
        fields: dict[str, Any] | None = None,
    ) -> None:
        self.lines = list(lines or [])
        self.credentials = list(credentials or [])
        self.choices = list(choices or [])
        self.fields = dict(fields or {})
        #: every text written to the host, in order
        self.written: list[str] = []
        #: every prompt asked (method name, caption or prompt text), in order
        self.asked: list[tuple[str, str]] = []

    def write(self, text: str, *, stream: str = "host") -> None:
        self.written.append(text)

    def read_line(self, prompt: str | None = None) -> str:
        self.asked.append(("ReadLine", prompt or ""))
        if not self.lines:
            return super().read_line(prompt)
        line = self.lines.pop(0)
        return line.reveal() if isinstance(line, SecureString) else line

    def read_line_as_secure_string(self, prompt: str | None = None) -> SecureString:
        self.asked.append(("ReadLineAsSecureString", prompt or ""))
        if not self.lines:
            return super().read_line_as_secure_string(prompt)
        line = self.lines.pop(0)
        return line if isinstance(line, SecureString) else SecureString(line)

    def prompt(self, caption: str, message: str, fields: list[Field]) -> dict[str, Any]:
        self.asked.append(("Prompt", caption))
        missing = [f.name for f in fields if f.name not in self.fields]
        if missing:
            return super().prompt(caption, message, fields)
        return {f.name: self.fields[f.name] for f in fields}

    def prompt_for_credential(
        self, caption: str, message: str, username: str | None, target_name: str | None
    ) -> PSCredential:
        self.asked.append(("PromptForCredential", caption))
        if not self.credentials:
            return super().prompt_for_credential(caption, message, username, target_name)
        return self.credentials.pop(0)

    def prompt_for_choice(
        self, caption: str, message: str, choices: list[Choice], default: int
    ) -> int:
        self.asked.append(("PromptForChoice", caption))
        if not self.choices:
            return super().prompt_for_choice(caption, message, choices, default)
        answer = self.choices.pop(0)
        if isinstance(answer, int):
            return answer
        for index, choice in enumerate(choices):
            if answer in (choice.label, choice.label.replace("&", "")):
                return index
        raise HostInteractionError(f"no choice labelled {answer!r} in {caption!r}")


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _choices(raw: Any) -> list[Choice]:
    return [
        Choice(_text(getattr(c, "Label", c)), _text(getattr(c, "HelpMessage", "")))
        for c in (raw or [])
    ]


def _fields(raw: Any) -> list[Field]:
    fields = []
    for f in raw or []:
        fields.append(Field(
            _text(getattr(f, "Name", f)),
            _text(getattr(f, "ParameterTypeFullName", "System.String")) or "System.String",
            _text(getattr(f, "Label", "")),
            _text(getattr(f, "HelpMessage", "")),
        ))
    return fields


def _arg(params: list[Any], index: int) -> Any:
    return params[index] if len(params) > index else None


def answer_host_call(ui: HostUI, method: str, params: list[Any]) -> Any:
    """Run one interactive host method on ``ui``; returns the value for the guest.

    Raises :class:`HostInteractionError` for methods the UI (or hvmagic) cannot answer.
    """
    if method == "ReadLine":
        return ui.read_line(None)
    if method == "ReadLineAsSecureString":
        return ui.read_line_as_secure_string(None)
    if method == "Prompt":
        return ui.prompt(_text(_arg(params, 0)), _text(_arg(params, 1)), _fields(_arg(params, 2)))
    if method in ("PromptForCredential1", "PromptForCredential2"):
        username = _arg(params, 2)
        target = _arg(params, 3)
        return ui.prompt_for_credential(
            _text(_arg(params, 0)), _text(_arg(params, 1)),
            None if username is None else str(username), None if target is None else str(target),
        )
    if method == "PromptForChoice":
        default = _arg(params, 3)
        return ui.prompt_for_choice(
            _text(_arg(params, 0)), _text(_arg(params, 1)), _choices(_arg(params, 2)),
            -1 if default is None else int(default),
        )
    if method == "PromptForChoiceMultipleSelection":
        defaults = _arg(params, 3) or []
        return ui.prompt_for_multiple_choice(
            _text(_arg(params, 0)), _text(_arg(params, 1)), _choices(_arg(params, 2)),
            [int(d) for d in defaults],
        )
    if method == "GetName":
        return ui.name
    raise HostInteractionError(f"the hvmagic host does not implement {method}")
