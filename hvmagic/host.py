"""The host UI a session lends the guest: what ``Read-Host``, prompts and ``Write-Host`` reach.

PowerShell code in the guest talks to "the host" (``$Host.UI``). Over PSRP those calls come to
the client as host calls. :class:`HostUI` is hvmagic's pluggable answer:

* The default (:class:`HostUI` itself) is non-interactive: ``Read-Host``,
  ``$Host.UI.PromptForCredential``, ``PromptForChoice`` and ``Prompt`` fail *in the guest* with
  a clear message (like ``powershell -NonInteractive``), so a notebook never hangs on a prompt
  nobody can see. Scripts should take values as parameters instead.
* ``Read-Host 'Name'`` does not reach the host as ``ReadLine``: PowerShell (5.1 and 7.x alike)
  asks ``$Host.UI.Prompt("", "", [one field named 'Name'])`` — a ``SecureString`` field with
  ``-AsSecureString``/``-MaskInput``. :func:`answer_host_call` recognises that shape and asks
  :meth:`HostUI.read_line` / :meth:`HostUI.read_line_as_secure_string` with the prompt text, so
  a UI answers every ``Read-Host`` the same way whether it has a prompt or not.
* Text the guest writes to the host (``Write-Host``; on PowerShell 5+ an information record
  tagged ``PSHOST``, on older hosts ``WriteLine`` host calls) is kept by the session as ``"host"``
  records and also handed to :meth:`HostUI.write` for a UI that wants to show it itself.

Subclass and override the ``read_*``/``prompt*`` methods to answer interactively (the notebook
layer does, with non-echoing password widgets), then pass ``host_ui=`` to
:func:`hvmagic.connect`. The session asks the UI on a helper thread (unless
:attr:`HostUI.answer_on_caller_thread`), so a ``timeout=`` or :meth:`Session.stop` ends the run
even while a prompt waits for an answer; an answer that comes after the pipeline stopped is
dropped. Return values are plain Python (``str``, ``int``,
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
    #: ask this UI on the thread that called ``Session.run`` instead of a helper thread. A UI
    #: whose input belongs to that thread (ipykernel's stdin requests, where Ctrl-C must reach
    #: the prompt) sets it; the price is that ``timeout=``/``stop()`` wait for its answer.
    answer_on_caller_thread = False

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

    ``lines`` answer ``Read-Host`` in order, with or without a prompt text (a ``Read-Host``
    whose prompt text ``fields`` names is answered from ``fields`` instead); ``credentials``
    answer credential prompts;
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
        if prompt and prompt in self.fields:
            value = self.fields[prompt]
            return value.reveal() if isinstance(value, SecureString) else str(value)
        if not self.lines:
            return super().read_line(prompt)
        line = self.lines.pop(0)
        return line.reveal() if isinstance(line, SecureString) else line

    def read_line_as_secure_string(self, prompt: str | None = None) -> SecureString:
        self.asked.append(("ReadLineAsSecureString", prompt or ""))
        if prompt and prompt in self.fields:
            value = self.fields[prompt]
            return value if isinstance(value, SecureString) else SecureString(str(value))
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


#: the field types Read-Host asks for (String; SecureString with -AsSecureString/-MaskInput)
_READ_HOST_TYPES = ("System.String", "System.Security.SecureString")


def read_host_prompt(caption: str, message: str, fields: list[Field]) -> Field | None:
    """The field when a ``Prompt`` call is ``Read-Host 'text'``, else ``None``.

    PowerShell's ``Read-Host`` with a prompt calls ``Prompt("", "", [field])``: no caption or
    message, one field named after the prompt text, no label or help, of type String or
    SecureString. A script calling ``$Host.UI.Prompt`` the same way asks the same question.
    """
    if caption or message or len(fields) != 1:
        return None
    field = fields[0]
    if field.label or field.help_message or field.type_name not in _READ_HOST_TYPES:
        return None
    return field


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
        caption, message = _text(_arg(params, 0)), _text(_arg(params, 1))
        fields = _fields(_arg(params, 2))
        read_host = read_host_prompt(caption, message, fields)
        if read_host is not None:
            # Read-Host 'Name' [-AsSecureString]: answer as the UI answers every Read-Host
            if read_host.is_secret:
                return {read_host.name: ui.read_line_as_secure_string(read_host.name)}
            return {read_host.name: ui.read_line(read_host.name)}
        # typed fields need no conversion here: PowerShell converts a text answer to the
        # field's type itself ("42" for an [int] field reaches the script as Int32)
        return ui.prompt(caption, message, fields)
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
