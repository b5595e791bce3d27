"""IPython magics: ``%vmconnect``, ``%%vmps``/``%vmps``, ``%vmcopy``, sessions, cell mode.

``%load_ext hvmagic`` registers them. Each magic is thin: parse arguments, call the plain API
(:func:`hvmagic.connect`, :meth:`Session.run`, :meth:`Session.copy_to`), hand the result to
:mod:`hvmagic.display`. A user mistake is a one-line :class:`UsageError`; a PowerShell failure is
rendered like PowerShell renders it and then raises a short :class:`PowerShellError` (no Python
traceback) so that a notebook run headlessly stops at the failing cell.

Syntax (``%vmps?`` etc. print the full help)::

    %vmconnect NAME [-u USER] [--configuration NAME] [--via auto|direct|process|sim|replay]
               [--alias A] [--record FILE] [--replay FILE] [--password-env VAR]
               [--credential VAR] [--session VAR] [--allow-legacy] [--timeout S] [--wait S]
    %vmconnect NAME --host HV01 [--via winrm|ssh|process] [--host-user U] [--port N]
               [--identity-file KEY] [-u GUESTUSER] ...   PowerShell Direct from the host
    %vmsessions                       list sessions, '*' marks the default
    %vmuse ALIAS                      make ALIAS the default session
    %vmclose [ALIAS] [--all]          close one session (default: the default one) or all
    %%vmps [TARGET] [-o VAR] [--with a,b] [--timeout S] [--columns default|all|A,B] [--raw]
           [--no-raise] [--session ALIAS] [--vms web*,db1] [--throttle N]
    %%vmps web*,db1 [options]         a fleet: every open session matching, one frame + status
    %vmps [options] SCRIPT            the same for one line (options first, then the script)
    %vmcopy [-r] [--force] [--gsi] SRC DST     exactly one side is VM:path or ALIAS:path
    %vmps_mode on|off                 (alias %vmcellmode) plain cells run as %%vmps

In PowerShell cell mode a cell whose first line is ``#py`` runs as Python, and cells that start
with ``%`` or ``!`` run as IPython magics/shell commands as usual. (``%%python`` is not used as
the escape because IPython already has a ``%%python`` magic that runs a *subprocess*.)
"""

from __future__ import annotations

import atexit
import difflib
import fnmatch
import getpass
import importlib
import keyword
import os
import re
import subprocess
import sys
import threading
import unicodedata
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from IPython.core.error import StdinNotImplementedError, UsageError
from IPython.core.magic import (
    Magics,
    line_cell_magic,
    line_magic,
    magics_class,
    no_var_expand,
)
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring
from IPython.utils.process import arg_split
from traitlets import Bool, Enum, Float, Int, List, TraitError, Unicode, validate

from hvmagic import display as hvdisplay
from hvmagic.clixml.values import ProgressRecord, PSCredential, SecureString
from hvmagic.completion import install as install_completion
from hvmagic.credentials import get_password
from hvmagic.errors import (
    EncodeError,
    FileCopyError,
    HostInteractionError,
    HvMagicError,
    PipelineTimeoutError,
    RemoteError,
    SessionBrokenError,
    SessionBusyError,
    TransportError,
)
from hvmagic.filecopy import advice as copy_advice
from hvmagic.filecopy import format_rate
from hvmagic.host import Choice, Field, HostUI

#: where the default session's last :class:`~hvmagic.session.Result` is kept in the user namespace
LAST_RESULT_VAR = "_vmps_result"



def _is_python_name(name: str) -> bool:
    # Python identifiers (Unicode letters included) are all valid PowerShell variable names
    return name.isidentifier() and not keyword.iskeyword(name)


# --------------------------------------------------------------------------------------------
# short exceptions: what a notebook shows instead of a Python traceback


class _ShortTraceback:
    """IPython asks an exception for ``_render_traceback_`` before formatting a traceback; the
    PowerShell error is already rendered above the exception, so one line is enough."""

    def _render_traceback_(self) -> list[str]:
        return [f"{type(self).__name__}: {self}"]


class PowerShellError(_ShortTraceback, RemoteError):
    """A ``%%vmps`` cell failed: a terminating error, a timeout, or non-terminating errors
    while ``raise_on_error`` is on. ``result`` holds what the pipeline produced; ``errors``
    the error records."""

    def __init__(
        self, message: str, record: Any = None, result: Any = None, errors: Sequence[Any] = ()
    ) -> None:
        super().__init__(message, record=record, result=result)
        self.errors = list(errors)


class SessionLostError(_ShortTraceback, SessionBrokenError):
    """The session's connection died while running a cell; reconnect with ``%vmconnect``."""


def _partial_result(session: Any, exc: BaseException, earlier: Any) -> Any:
    """The Result a failed run left: the exception's own, else the session's latest result if
    this run made one (a Ctrl-C carries none; ``earlier`` tells an older result apart)."""
    result = getattr(exc, "result", None)
    if result is not None:
        return result
    latest = getattr(session, "last_result", None)
    return latest if latest is not earlier else None


def _raise_if_broken(session: Any, entry: SessionEntry, what: str) -> None:
    """After a timeout or interrupt the session is only "still usable" if stopping worked."""
    if getattr(session, "broken", False):
        raise SessionLostError(
            f"{what} and the pipeline could not be stopped cleanly; session {entry.alias!r} "
            "is broken — reconnect with %vmconnect"
        ) from None


class CopyFailedError(_ShortTraceback, FileCopyError):
    """``%vmcopy`` failed after it started (e.g. the SHA-256 check); nothing partial is left."""


class PipelineStopped(_ShortTraceback, KeyboardInterrupt):
    """The kernel was interrupted while a pipeline ran: the pipeline was stopped remotely and the
    session stays usable. A ``KeyboardInterrupt`` so that *Run all* stops at this cell."""


# --------------------------------------------------------------------------------------------
# sessions


@dataclass
class SessionEntry:
    alias: str
    session: Any
    target: str
    via: str


class SessionRegistry:
    """Named sessions of one IPython shell and which one is the default.

    Aliases are matched case-insensitively, as Hyper-V matches VM names.
    """

    def __init__(self) -> None:
        self._entries: dict[str, SessionEntry] = {}
        self._default: str | None = None

    @staticmethod
    def _key(alias: str) -> str:
        return alias.casefold()

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[SessionEntry]:
        return iter(list(self._entries.values()))

    def __contains__(self, alias: object) -> bool:
        return isinstance(alias, str) and self._key(alias) in self._entries

    @property
    def default(self) -> SessionEntry | None:
        return self._entries.get(self._default) if self._default is not None else None

    def add(self, entry: SessionEntry, *, make_default: bool = True) -> SessionEntry | None:
        """Register ``entry``; returns the entry it replaced (same alias), which the caller
        closes. The newest connection becomes the default, as the last ``Enter-PSSession``
        would."""
        key = self._key(entry.alias)
        replaced = self._entries.get(key)
        self._entries[key] = entry
        if make_default or self._default is None:
            self._default = key
        return replaced

    def get(self, alias: str | None = None) -> SessionEntry:
        """The session named ``alias``, else the default; :class:`LookupError` with a message a
        user can act on when there is none."""
        if alias is None:
            entry = self.default
            if entry is None:
                raise LookupError(
                    "No session: connect first with %vmconnect NAME (or %vmconnect demo --via sim)"
                )
            return entry
        entry = self._entries.get(self._key(alias))
        if entry is None:
            known = ", ".join(e.alias for e in self._entries.values()) or "none"
            raise LookupError(f"No session named {alias!r} (sessions: {known})")
        return entry

    def use(self, alias: str) -> SessionEntry:
        entry = self.get(alias)
        self._default = self._key(entry.alias)
        return entry

    def remove(self, alias: str) -> SessionEntry:
        entry = self.get(alias)
        key = self._key(entry.alias)
        del self._entries[key]
        if self._default == key:
            # fall back to the most recently added remaining session
            self._default = next(reversed(self._entries), None) if self._entries else None
        return entry

    def is_default(self, entry: SessionEntry) -> bool:
        return self._default == self._key(entry.alias)


# --------------------------------------------------------------------------------------------
# argument helpers (pure; unit-tested without IPython)


def parse_columns(spec: str | None) -> str | list[str]:
    """``default`` / ``all`` / ``Name,Status`` → what :func:`hvmagic.to_dataframe` takes."""
    if spec is None:
        return "default"
    text = spec.strip()
    if text.lower() in ("default", "all"):
        return text.lower()
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise UsageError(f"--columns needs default, all or a comma-separated list, not {spec!r}")
    return names


def parse_names(spec: str | None, option: str) -> list[str]:
    """``a,b`` → ``["a", "b"]``, each a Python identifier (and so a valid PowerShell name)."""
    if not spec:
        return []
    names = [n.strip() for n in spec.split(",") if n.strip()]
    for name in names:
        if not _is_python_name(name):
            raise UsageError(f"{option}: {name!r} is not a Python variable name")
    return names


def check_identifier(name: str, option: str) -> str:
    if not _is_python_name(name):
        raise UsageError(f"{option}: {name!r} is not a valid Python variable name")
    return name


def split_leading_options(
    line: str, value_options: Sequence[str], flag_options: Sequence[str],
    *, strict: bool = False,
) -> tuple[str, str]:
    """Split a line magic into its leading options and the PowerShell that follows.

    ``%vmps -o svc Get-ChildItem -Recurse C:\\x`` → (``-o svc``, ``Get-ChildItem -Recurse C:\\x``):
    options are read only until the first word that is not one of ours, so PowerShell's own
    ``-Parameters`` are never taken for options. ``--`` ends the options explicitly. The script
    part is returned verbatim (quotes, ``$`` and braces untouched).

    ``strict``: a leading ``--word`` that is not an option is a mistyped option (no PowerShell
    statement starts that way; ``--$i`` does, and stays script), so it is a :class:`UsageError`
    naming the closest option instead of being sent to PowerShell as script.
    """
    pos = 0
    taken: list[str] = []
    token = re.compile(r"\s*(\S+)")
    while True:
        match = token.match(line, pos)
        if match is None:
            return " ".join(taken), ""
        word = match.group(1)
        name = word.split("=", 1)[0]
        if word == "--":
            return " ".join(taken), line[match.end():].strip()
        if name in flag_options:
            taken.append(word)
            pos = match.end()
            continue
        if name in value_options:
            taken.append(word)
            pos = match.end()
            if "=" not in word:
                value = _quoted_or_word(line, pos)
                if value is None:
                    return " ".join(taken), ""
                text, pos = value
                taken.append(text)
            continue
        if strict and _LONG_OPTION.match(word):
            raise UsageError(
                explain_unknown_arguments("vmps", [word], [*value_options, *flag_options])
            )
        return " ".join(taken), line[match.start(1):].strip()


_LONG_OPTION = re.compile(r"--[A-Za-z][\w-]*(=.*)?\Z")


def _quoted_or_word(line: str, pos: int) -> tuple[str, int] | None:
    match = re.compile(r"""\s*("[^"]*"|'[^']*'|\S+)""").match(line, pos)
    if match is None:
        return None
    return match.group(1), match.end()


#: ``VM:path`` (default session) or ``ALIAS:path``; one-letter prefixes are drive letters
_REMOTE_PATH = re.compile(r"^(?P<prefix>[^:\\/]{2,}):(?P<path>.*)$", re.DOTALL)


@dataclass(frozen=True)
class CopyEndpoint:
    path: str
    session_ref: str | None = None  # None = local; "" = the default session; else an alias

    @property
    def remote(self) -> bool:
        return self.session_ref is not None


def _lost(entry: SessionEntry, exc: BaseException) -> SessionLostError:
    return SessionLostError(
        f"session {entry.alias!r} lost its connection ({_first_line(exc)}); "
        "reconnect with %vmconnect"
    )


def _unquote(text: str) -> str:
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        return text[1:-1]
    return text


def parse_copy_endpoint(text: str, known_aliases: Callable[[str], bool]) -> CopyEndpoint:
    """``VM:C:\\x`` → remote in the default session; ``web01:C:\\x`` → remote in session
    ``web01`` when that alias exists; anything else (``C:\\x``, ``./x``, ``unknown:x``) is local.

    A one-letter prefix is never a session: ``C:\\temp`` is a Windows drive path.
    """
    match = _REMOTE_PATH.match(text)
    if match is None:
        return CopyEndpoint(text)
    prefix, path = match.group("prefix"), match.group("path")
    if prefix.upper() == "VM":
        return CopyEndpoint(path, "")
    if known_aliases(prefix):
        return CopyEndpoint(path, prefix)
    return CopyEndpoint(text)


# --------------------------------------------------------------------------------------------
# PowerShell cell mode


class PowerShellCellMode:
    """An IPython input transformer: when enabled, a plain cell becomes ``%%vmps`` + the cell.

    Left alone: empty cells, cells starting with ``%`` (magics, including ``%vmps_mode off``) or
    ``!`` (shell), cells whose first line is ``#py`` (the documented way to run Python in cell
    mode), and papermill's injected ``# Parameters`` cells.
    """

    PYTHON_MARKERS = ("#py", "# py", "#python", "# python")

    def __init__(self, magic: str = "vmps") -> None:
        self.enabled = False
        self.magic = magic

    def __call__(self, lines: list[str]) -> list[str]:
        if not self.enabled:
            return lines
        first = next((line for line in lines if line.strip()), None)
        if first is None:
            return lines
        head = first.strip()
        if head.startswith(("%", "!")):
            return lines
        lowered = head.lower()
        if lowered in self.PYTHON_MARKERS or lowered.startswith(("#py ", "# parameters")):
            return lines
        return [f"%%{self.magic}\n", *lines]


# --------------------------------------------------------------------------------------------
# Copy-VMFile (Guest Service Interface) from the Hyper-V host

#: the Guest Service Interface integration component's id (same on every Hyper-V version; its
#: display name is localised, so the id is what the check matches)
GSI_COMPONENT_ID = "6C09BB55-D683-4DA0-8931-C9BF705F6480"

# Values reach the script through environment variables, never through its text: a path like
# "x'; Remove-Item C:\ -Recurse; '" stays a path.
_GSI_SCRIPT = r"""
$ErrorActionPreference = 'Stop'
if (-not (Get-Command Copy-VMFile -ErrorAction SilentlyContinue)) {
    [Console]::Out.WriteLine('HVMAGIC-NO-HYPERV'); exit 3
}
$vm = Get-VM -Name $env:HVMAGIC_GSI_VM
$gsi = Get-VMIntegrationService -VM $vm | Where-Object {
    $_.Id -like ('*' + $env:HVMAGIC_GSI_ID) -or $_.Name -eq 'Guest Service Interface' }
if (-not $gsi -or -not $gsi.Enabled) { [Console]::Out.WriteLine('HVMAGIC-GSI-DISABLED'); exit 4 }
$copy = @{ VM = $vm; SourcePath = $env:HVMAGIC_GSI_SRC; DestinationPath = $env:HVMAGIC_GSI_DST;
           FileSource = 'Host'; CreateFullPath = $true }
if ($env:HVMAGIC_GSI_FORCE -eq '1') { $copy.Force = $true }
Copy-VMFile @copy
[Console]::Out.WriteLine('HVMAGIC-GSI-OK')
"""


def copy_vmfile(
    vm_name: str,
    source: str,
    destination: str,
    *,
    force: bool = False,
    platform: str = sys.platform,
    run: Callable[..., Any] = subprocess.run,
    powershell: str = "powershell.exe",
) -> str:
    """Copy a host file into a guest with ``Copy-VMFile`` (host → guest only) and return a
    one-line summary; raises :class:`UsageError` with the remedy when it cannot work."""
    if not platform.startswith("win"):
        raise UsageError(
            "--gsi uses Copy-VMFile, which runs on the Hyper-V host itself (Windows with the "
            f"Hyper-V PowerShell module); this machine is {platform}. Copy over the session "
            "instead: drop --gsi."
        )
    import base64

    encoded = base64.b64encode(_GSI_SCRIPT.encode("utf-16-le")).decode("ascii")
    env = dict(os.environ)
    env.update(
        HVMAGIC_GSI_VM=vm_name,
        HVMAGIC_GSI_SRC=source,
        HVMAGIC_GSI_DST=destination,
        HVMAGIC_GSI_ID=GSI_COMPONENT_ID,
        HVMAGIC_GSI_FORCE="1" if force else "0",
    )
    try:
        done = run(
            [powershell, "-NoProfile", "-NonInteractive", "-EncodedCommand", encoded],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
    except FileNotFoundError as exc:
        raise UsageError(f"--gsi needs {powershell} on this machine (a Hyper-V host)") from exc
    out = (done.stdout or "") + (done.stderr or "")
    if "HVMAGIC-NO-HYPERV" in out:
        raise UsageError(
            "--gsi: Copy-VMFile is not available: this is not a Hyper-V host (install the "
            "Hyper-V PowerShell module, or drop --gsi to copy over the session)"
        )
    if "HVMAGIC-GSI-DISABLED" in out:
        raise UsageError(
            f"--gsi: the Guest Service Interface integration service of VM {vm_name!r} is "
            "disabled; enable it with: Enable-VMIntegrationService -VMName "
            f"'{vm_name}' -Name 'Guest Service Interface' (or drop --gsi)"
        )
    if done.returncode != 0 or "HVMAGIC-GSI-OK" not in out:
        first = next((line for line in out.splitlines() if line.strip()), "no output")
        raise UsageError(f"--gsi: Copy-VMFile failed (exit {done.returncode}): {first.strip()}")
    return f"Copied {source} to {vm_name}:{destination} with Copy-VMFile (Guest Service Interface)"


# --------------------------------------------------------------------------------------------
# the guest's prompts, answered in the notebook


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
        self.guest = _guest_text(guest, 60)

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
        text = _guest_text(label)
        warning = ""
        if not secret and _LOOKS_SECRET.search(text):
            warning = "WARNING: the guest asks for this as plain text, not a SecureString. "
        prompt = f"{self._marker(what, secret=secret)}{warning}{text}{': ' if text else ''}"
        return self._ask(prompt, secret=secret)

    def _show(self, what: str, caption: str, message: str) -> None:
        lines = [_guest_text(t) for t in (caption, message) if t]
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
        labels = [_guest_text(c.label.replace("&", ""), 60) for c in choices]
        menu = "  ".join(
            f"[{_guest_text(c.hot_key or '', 1) or i}] {labels[i]}" for i, c in enumerate(choices)
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


def _guest_text(text: str, limit: int = 200) -> str:
    """The guest's words for a prompt: one line, no control or bidi characters, bounded."""
    cleaned = "".join(
        " " if unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") else ch for ch in str(text)
    )
    cleaned = " ".join(cleaned.split())
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 1] + "…"


# --------------------------------------------------------------------------------------------
# the magics


def _explain(exc: BaseException) -> str | None:
    """The doctor's explanation of a connection failure, when ``hvmagic.doctor`` provides one."""
    try:
        doctor = importlib.import_module("hvmagic.doctor")
    except ImportError:
        return None
    explain = getattr(doctor, "explain", None)
    if not callable(explain):
        return None
    try:
        text = explain(exc)
    except Exception:
        # the explanation is a courtesy; a bug in it must not hide the connection error itself
        return None
    return str(text) if text else None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


_VMPS_VALUE_OPTIONS = ("-o", "--out", "--with", "--timeout", "--columns", "--session", "-s",
                       "--vms", "--throttle")
_VMPS_FLAG_OPTIONS = ("--raw", "--no-raise")
_HELP_OPTIONS = ("-h", "--help")
_VMPS_KNOWN = (*_VMPS_VALUE_OPTIONS, *_VMPS_FLAG_OPTIONS, *_HELP_OPTIONS)
_UNRECOGNIZED = re.compile(r"unrecognized arguments: (.*)$")


_BRACED_NAME = re.compile(r"(?<![\w$@]){([A-Za-z_]\w*)}")


def python_name_hint(
    script: str, namespace: Mapping[str, Any], passed: Mapping[str, Any]
) -> str | None:
    """jupysql and sparkmagic users write ``{name}`` to use a Python variable; in PowerShell
    that is a script block, and hvmagic never pastes values into script text. One line that
    says how to pass it, when ``name`` is a Python variable not already passed."""
    for match in _BRACED_NAME.finditer(script):
        name = match.group(1)
        if name in namespace and not name.startswith("_") and name not in passed:
            return (f"Note: {{{name}}} is a PowerShell script block here, not the Python "
                    f"variable {name}; to use its value, add --with {name} and write ${name}.")
    return None


def strip_magic_comment(line: str) -> str:
    """Drop a ``# comment`` from a magic line (as pasted from the README): a ``#`` at the start
    or after whitespace, outside quotes, ends the arguments."""
    quote: str | None = None
    for index, char in enumerate(line):
        if quote:
            if char == quote:
                quote = None
        elif char in "'\"":
            quote = char
        elif char == "#" and (index == 0 or line[index - 1].isspace()):
            return line[:index].rstrip()
    return line


def explain_unknown_arguments(magic: str, words: Sequence[str], options: Sequence[str]) -> str:
    """One line for argparse's "unrecognized arguments": the first unknown option and the
    closest real one, or the stray words."""
    for word in words:
        if word.startswith("-") and word.split("=")[0] not in options:
            given = word.split("=")[0]
            close = difflib.get_close_matches(given, options, n=1, cutoff=0.6)
            hint = f" (did you mean {close[0]}?)" if close else ""
            return f"%{magic}: unknown option {given}{hint}; %{magic} -h lists the options"
    return f"%{magic}: unexpected argument(s) {' '.join(words)}; %{magic} -h shows the usage"


@magics_class
class VmMagics(Magics):
    """PowerShell in Hyper-V guests from IPython (``%load_ext hvmagic``).

    Settings (``%config VmMagics.NAME = value``, or ``c.VmMagics.NAME`` in a config file):

    * ``displaylimit`` (int, 20): rows of a result table shown; the rest are summarised in a
      "showing N of M rows" notice (the variable from ``-o`` holds all). 0 shows all.
    * ``raise_on_error`` (bool, True): a cell whose pipeline wrote errors raises at the end so a
      notebook run headlessly stops there (per cell: ``--no-raise``).
    * ``progress_style`` ("bar" | "text" | "none"): how ``Write-Progress`` is shown.
    * ``default_columns`` (str, "default"): ``default`` (PowerShell's default columns), ``all``,
      or a comma-separated list; per cell: ``--columns``.
    * ``default_timeout`` (float or None): seconds before a pipeline is stopped; per cell:
      ``--timeout``.
    * ``show_streams`` (list): which of warning, verbose, debug, information, host are shown live.
    * ``feedback`` (bool, False): a one-line summary after each cell (``3 rows · 0.42 s``).
    """

    displaylimit = Int(
        20, help="Rows of a result table to show (0 = all); the rest are counted in a notice."
    ).tag(config=True)
    raise_on_error = Bool(
        True, help="Raise at the end of a cell whose pipeline wrote errors (CI stops there)."
    ).tag(config=True)
    progress_style = Enum(
        ["bar", "text", "none"], "bar", help="Write-Progress display: bar, text or none."
    ).tag(config=True)
    default_columns = Unicode(
        "default", help="Columns of result tables: default, all, or Name,Status,..."
    ).tag(config=True)
    default_timeout = Float(
        None, allow_none=True, help="Seconds before a pipeline is stopped (None = no limit)."
    ).tag(config=True)
    completion_timeout = Float(
        2.0, help="Seconds Tab completion and Shift-Tab help may wait for the guest."
    ).tag(config=True)
    feedback = Bool(
        False, help="Show a one-line summary (rows, duration) after each %%vmps cell."
    ).tag(config=True)
    show_streams = List(
        Unicode(),
        default_value=list(hvdisplay.TEXT_STREAMS),
        help="Streams shown live: any of warning, verbose, debug, information, host.",
    ).tag(config=True)

    @validate("show_streams")
    def _check_streams(self, proposal: Any) -> list[str]:
        unknown = [s for s in proposal["value"] if s not in hvdisplay.TEXT_STREAMS]
        if unknown:
            raise TraitError(
                f"show_streams: unknown stream(s) {unknown}; choose from "
                f"{list(hvdisplay.TEXT_STREAMS)}"
            )
        return list(proposal["value"])

    def __init__(self, shell: Any = None, **kwargs: Any) -> None:
        super().__init__(shell=shell, **kwargs)
        self.sessions = SessionRegistry()
        self.cell_mode = PowerShellCellMode()
        self.uninstall_completion: Callable[[], None] = lambda: None

    # ---------------------------------------------------------------------------- connect
    @no_var_expand
    @magic_arguments()
    @argument("name", nargs="?", default=None,
              help="VM name (or id); with --via sim a label for the simulated guest "
                   "(default 'demo')")
    @argument("-u", "--username", default=None,
              help="guest user (DOMAIN\\user, user@domain); the password is asked without echo")
    @argument("--configuration", default=None, help="session configuration name in the guest")
    @argument("--via", default=None,
              choices=["auto", "direct", "process", "sim", "replay", "ssh", "winrm"],
              help="direct = PowerShell Direct over hvsocket; process = a local pwsh / "
                   "powershell.exe -s (with --host localhost: then New-PSSession -VMName, as "
                   "auto does on a Hyper-V host whose Python is older than 3.12); sim = the "
                   "built-in simulated guest; replay = a recording; with --host: winrm "
                   "(default) or ssh to the Hyper-V host, then New-PSSession -VMName")
    @argument("--host", default=None, metavar="HV01",
              help="the VM's Hyper-V host: PowerShell Direct from there (hvmagic.hop)")
    @argument("--host-user", default=None, metavar="U",
              help="the account on the Hyper-V host (SSH: keys/agent; WinRM: Kerberos or the "
                   "password from HVMAGIC_HOST_PASSWORD, keyring or a prompt)")
    @argument("--port", type=int, default=None, help="the host's SSH/WinRM port")
    @argument("--identity-file", default=None, metavar="FILE", help="SSH private key")
    @argument("--alias", default=None, help="name for this session (default: NAME)")
    @argument("--record", default=None, metavar="FILE", help="record every run into FILE")
    @argument("--replay", default=None, metavar="FILE", help="serve runs from a recording")
    @argument("--password-env", default=None, metavar="VAR",
              help="take the password from environment variable VAR")
    @argument("--credential", default=None, metavar="VAR",
              help="take user and password from the PSCredential in Python variable VAR")
    @argument("--session", default=None, metavar="VAR",
              help="adopt the hvmagic Session object in Python variable VAR")
    @argument("--allow-legacy", action="store_true",
              help="allow the unauthenticated legacy PowerShell Direct handshake (old guests)")
    @argument("--timeout", type=float, default=None, help="connect timeout in seconds")
    @argument("--wait", type=float, default=None, metavar="S",
              help="keep retrying for up to S seconds while the guest is (re)booting")
    @line_magic
    def vmconnect(self, line: str) -> None:
        """Open a session to a VM and make it the default.

        Password sources, first match wins: --credential VAR (a PSCredential), --password-env
        VAR, the HVMAGIC_PASSWORD environment variable, the keyring package (service
        'hvmagic') when installed, else a getpass prompt. The password is never echoed, stored,
        logged or written to outputs/history.
        """
        args = self._parse(self.vmconnect, line)
        if args is None:
            return
        if args.session:
            self._adopt_session(args)
            return
        via = args.via or ("replay" if args.replay else "auto")
        name = args.name
        if not name and via == "sim":
            name = "demo"
        elif not name and args.replay:
            name = _recording_stem(args.replay)
        if not name:
            raise UsageError("%vmconnect needs the VM name: %vmconnect NAME [-u USER]")
        alias = args.alias or name
        if (via in ("auto", "direct") and name != "sim" and not args.host
                and not _replaying(via, args)):
            _refuse_powershell_direct_here(name)  # before any password prompt, not after
        kwargs: dict[str, Any] = {"via": via, "host_ui": NotebookHostUI(guest=name)}
        for option in ("configuration", "record", "replay", "timeout", "wait"):
            value = getattr(args, option)
            if value is not None:
                kwargs[option] = value
        if args.allow_legacy:
            kwargs["allow_legacy"] = True
        if args.host:
            kwargs.update(_host_arguments(args))
        # A recording, and the simulated guest "sim" that runbooks default to, answer without
        # logging on: asking for a password would only stop a CI run (no stdin) of a runbook
        # written with -u USER. Another name with --via sim -u USER rehearses the real prompt.
        if _replaying(via, args) or (name == "sim" and via in ("auto", "sim")):
            if args.username:
                kwargs["username"] = args.username
        else:
            kwargs.update(self._credentials(args))
        try:
            session = _connect(name, **kwargs)
        except (HvMagicError, OSError, ValueError) as exc:
            explanation = _explain(exc)
            if explanation:
                print(explanation)
            raise UsageError(f"Could not connect to {name!r} ({via}): {_first_line(exc)}") from exc
        finally:
            kwargs.clear()  # drop our reference to the password at once
        self._register(SessionEntry(alias, session, name, via))

    def _credentials(self, args: Any) -> dict[str, Any]:
        if args.credential:
            value = self._user_value(args.credential, "--credential")
            if not isinstance(value, PSCredential):
                raise UsageError(
                    f"--credential: {args.credential!r} is a {type(value).__name__}, "
                    "not a PSCredential"
                )
            return {"credential": value}
        if args.username is None:
            if args.password_env:
                raise UsageError("--password-env needs -u USER")
            return {}
        password: SecureString
        if args.password_env:
            env_value = os.environ.get(args.password_env)
            if env_value is None:
                raise UsageError(f"--password-env: environment variable {args.password_env} "
                                 "is not set")
            password = SecureString(env_value)
        else:
            password = self._password_from_sources(args.username, args.name)
        return {"username": args.username, "password": password}

    @staticmethod
    def _password_from_sources(username: str, target: str | None = None) -> SecureString:
        """HVMAGIC_PASSWORD, keyring, else the frontend's password box (hvmagic.credentials).

        The box says it is ``%vmconnect``'s own, so it never looks like a guest's prompt (those
        start with ``[guest 'VM' …]``, see :class:`NotebookHostUI`)."""

        def ask(text: str) -> str:
            # getpass looked up at call time: ipykernel swaps its own in for each execution
            return getpass.getpass(f"%vmconnect {_guest_text(target or '', 60)}: {text}")

        try:
            return get_password(username, prompt=ask)
        except StdinNotImplementedError as exc:
            # ipykernel raises this when the frontend cannot prompt
            # (nbclient, papermill): say how to give the password instead
            raise UsageError(
                f"No password for {username}: this frontend cannot prompt; use "
                "--password-env VAR, HVMAGIC_PASSWORD, --credential VAR or keyring"
            ) from exc
        except HvMagicError as exc:
            raise UsageError(_first_line(exc)) from exc

    def _adopt_session(self, args: Any) -> None:
        session = self._user_value(args.session, "--session")
        if not callable(getattr(session, "run", None)):
            raise UsageError(f"--session: {args.session!r} is not an hvmagic Session")
        target = args.name or str(getattr(session, "name", args.session))
        alias = args.alias or target
        self._register(SessionEntry(alias, session, target, "python"))

    def _register(self, entry: SessionEntry) -> None:
        replaced = self.sessions.add(entry)
        if replaced is not None and replaced.session is not entry.session:
            self._close_quietly(replaced)
        description = getattr(entry.session, "description", None) or entry.target
        how = {
            "auto": "",
            "python": " (an existing Session object)",
            "sim": " via the built-in simulator",
        }.get(entry.via, f" via {entry.via}")
        note = "; replaced the previous session of that name" if replaced else ""
        print(f"Connected {entry.alias!r}{how}: {description}. It is the default session{note}.")

    @staticmethod
    def _close_quietly(entry: SessionEntry) -> None:
        try:
            entry.session.close()
        except (HvMagicError, OSError):
            # the connection is going away either way; a close that fails leaves nothing to do
            return

    # ---------------------------------------------------------------------------- sessions
    @no_var_expand
    @magic_arguments()
    @line_magic
    def vmsessions(self, line: str) -> None:
        """List the open sessions; '*' marks the default one."""
        if self._parse(self.vmsessions, line) is None:
            return
        if not len(self.sessions):
            print("No sessions. Connect with %vmconnect NAME (or %vmconnect demo --via sim).")
            return
        rows = []
        for entry in self.sessions:
            state = "broken" if getattr(entry.session, "broken", False) else "open"
            rows.append(
                {
                    "default": "*" if self.sessions.is_default(entry) else "",
                    "alias": entry.alias,
                    "target": entry.target,
                    "via": entry.via,
                    "state": state,
                    "connection": str(getattr(entry.session, "description", "")),
                }
            )
        hvdisplay.publish(hvdisplay.render_records_table(rows))

    @no_var_expand
    @magic_arguments()
    @argument("alias", help="the session to make the default")
    @line_magic
    def vmuse(self, line: str) -> None:
        """Make ALIAS the default session for %%vmps and %vmcopy."""
        args = self._parse(self.vmuse, line)
        if args is None:
            return
        try:
            entry = self.sessions.use(args.alias)
        except LookupError as exc:
            raise UsageError(str(exc)) from None
        print(f"Default session: {entry.alias}")

    @no_var_expand
    @magic_arguments()
    @argument("alias", nargs="?", default=None, help="the session to close (default: default)")
    @argument("--all", action="store_true", help="close every session")
    @line_magic
    def vmclose(self, line: str) -> None:
        """Close a session (the default one unless ALIAS is given), or all of them."""
        args = self._parse(self.vmclose, line)
        if args is None:
            return
        if args.all:
            closed = [entry.alias for entry in self.sessions]
            self.close_all()
            print(f"Closed {len(closed)} session(s)" + (f": {', '.join(closed)}" if closed else ""))
            return
        try:
            entry = self.sessions.remove(args.alias) if args.alias else self.sessions.remove(
                self.sessions.get().alias
            )
        except LookupError as exc:
            raise UsageError(str(exc)) from None
        self._close_quietly(entry)
        current = self.sessions.default
        after = f"; default session is now {current.alias}" if current else ""
        print(f"Closed {entry.alias}{after}")

    def close_all(self) -> None:
        for entry in self.sessions:
            self.sessions.remove(entry.alias)
            self._close_quietly(entry)

    # ---------------------------------------------------------------------------- vmps
    @no_var_expand
    @magic_arguments()
    @argument("target", nargs="?", default=None,
              help="(cell magic) the session alias to run in; default: the default session")
    @argument("-o", "--out", default=None, metavar="VAR",
              help="bind the result (DataFrame, list of text lines, or raw values) to VAR")
    @argument("--with", dest="with_vars", default=None, metavar="a,b",
              help="pass these Python variables as PowerShell variables of the same name "
                   "(serialized parameters, never pasted into the script)")
    @argument("--timeout", type=float, default=None, help="stop the pipeline after S seconds")
    @argument("--columns", default=None,
              help="default (PowerShell's default columns), all, or Name,Status,...")
    @argument("--raw", action="store_true",
              help="bind the deserialized values instead of a DataFrame")
    @argument("--no-raise", action="store_true",
              help="do not raise at the end when the pipeline wrote errors")
    @argument("-s", "--session", default=None, metavar="ALIAS",
              help="the session to run in (the line magic's way to name one)")
    @argument("--vms", default=None, metavar="web*,db1",
              help="run on a fleet: open sessions whose alias matches (globs allowed) and "
                   "names to connect; TARGET with a comma or a glob does the same")
    @argument("--throttle", type=int, default=None, metavar="N",
              help="fleet: at most N targets at once (default 32, like -ThrottleLimit)")
    @line_cell_magic
    def vmps(self, line: str, cell: str | None = None) -> None:
        """Run PowerShell in the guest: %%vmps [TARGET] [options] + script, or %vmps [options]
        SCRIPT on one line.

        The script runs dot-sourced in the session, so variables and functions persist between
        cells. $x and {x} are PowerShell's: nothing is expanded by IPython. Objects are shown as
        a DataFrame with PowerShell's default columns, strings as text; warning, verbose, debug,
        information and Write-Host text appear live; Write-Progress as a progress bar; errors as
        PowerShell prints them, after which the cell raises (unless --no-raise). The last
        Result is also kept in _vmps_result.
        """
        if cell is None:
            options, script = split_leading_options(
                line, _VMPS_VALUE_OPTIONS, _VMPS_FLAG_OPTIONS + _HELP_OPTIONS, strict=True
            )
            args = self._parse(self.vmps, options)
            if args is None:
                return
            if not script.strip():
                raise UsageError("%vmps needs a script: %vmps [options] Get-Service  "
                                 "(or use the cell magic %%vmps)")
        else:
            args = self._parse_cell_line(line)
            if args is None:
                return
            script = cell
            if args.target and args.session and args.target != args.session:
                raise UsageError("give the session either as TARGET or with --session, not both")
        self.run_script(script, args)

    def run_script(self, script: str, args: Any) -> None:
        fleet_spec = getattr(args, "vms", None) or _fleet_spec(args.target or args.session)
        if fleet_spec:
            self._run_fleet(script, args, fleet_spec)
            return
        try:
            entry = self.sessions.get(args.session or args.target)
        except LookupError as exc:
            raise UsageError(str(exc)) from None
        out_var = check_identifier(args.out, "-o") if args.out else None
        parameters = {
            name: self._user_value(name, "--with")
            for name in parse_names(args.with_vars, "--with")
        }
        columns = parse_columns(args.columns or self.default_columns)
        timeout = args.timeout if args.timeout is not None else self.default_timeout
        if timeout is not None and timeout <= 0:
            raise UsageError(f"--timeout must be positive, not {timeout}")
        raise_on_error = self.raise_on_error and not args.no_raise
        hint = python_name_hint(script, self._shell.user_ns, parameters)
        if hint:
            print(hint)

        session = entry.session
        where = out_var or f"{LAST_RESULT_VAR}.frame()"
        live = hvdisplay.LiveRenderer(
            show_streams=self.show_streams, progress_style=self.progress_style,
            show_output=lambda values: self._show_segment(
                values, columns, getattr(session, "ps_version", None), where
            ),
        )
        earlier = getattr(session, "last_result", None)
        try:
            result = self._run_with_live_display(session, script, parameters, timeout, live,
                                                 entry)
        except BaseException as exc:
            # whatever the outcome, nothing that arrived is lost: _vmps_result and -o get it
            self._bind_partial(_partial_result(session, exc, earlier), columns, args.raw,
                               out_var)
            raise
        finally:
            live.finish()  # whatever happened, no progress bar stays behind
        self._finish_run(result, columns, args.raw, out_var, raise_on_error, live)

    def _bind_partial(self, result: Any, columns: str | list[str], raw: bool,
                      out_var: str | None) -> None:
        """Bind the partial result of a run that did not complete (timeout, Ctrl-C, error,
        broken session) to ``_vmps_result`` and the ``-o`` variable, and say it is partial."""
        if result is None:
            return
        self._shell.user_ns[LAST_RESULT_VAR] = result
        if not out_var:
            return
        output = list(getattr(result, "output", []))
        # as a completed run binds: an empty frame when nothing arrived (not raw)
        value: Any = output if raw or output else _empty_frame()
        if not raw and output and not hvdisplay.is_text_output(output):
            try:
                value = result.frame(columns)
            except Exception:  # the objects themselves are still worth binding
                value = output
        self._shell.user_ns[out_var] = value
        state = getattr(result, "state", "?")
        print(f"{out_var} holds the {len(output)} object(s) that arrived before the pipeline "
              f"ended ({state}): a partial result.")

    def _run_with_live_display(self, session: Any, script: str, parameters: dict[str, Any],
                               timeout: float | None, live: hvdisplay.LiveRenderer,
                               entry: SessionEntry) -> Any:
        earlier = getattr(session, "last_result", None)
        try:
            return session.run(
                script, parameters=parameters or None, timeout=timeout, on_event=live.on_event
            )
        except KeyboardInterrupt as exc:
            live.finish()
            self._show_partial(_partial_result(session, exc, earlier), live)
            _raise_if_broken(session, entry, "the kernel was interrupted")
            print(f"Pipeline stopped (interrupted); session {entry.alias!r} is still usable.")
            raise PipelineStopped("the kernel was interrupted; the remote pipeline was stopped")\
                from None
        except PipelineTimeoutError as exc:
            live.finish()
            self._show_partial(exc.result, live)
            limit = f"the {timeout:g} s timeout" if timeout is not None else "its timeout"
            _raise_if_broken(session, entry, f"the pipeline ran past {limit}")
            raise PowerShellError(
                f"Pipeline stopped after {limit}; session {entry.alias!r} is still usable",
                result=exc.result,
            ) from None
        except RemoteError as exc:
            live.finish()
            self._show_partial(exc.result, live)
            record = exc.record if exc.record is not None else str(exc)
            live.show_error(record)
            # the error block above is the message; the closing line only says the cell failed
            # (a second copy of the message is noise, and the record stays on .record)
            others = len(getattr(exc.result, "errors", []) or [])
            also = f" and {others} other error(s)" if others else ""
            raise PowerShellError(
                f"the cell failed with a terminating error{also} (shown above)",
                record=exc.record, result=exc.result,
                errors=[*getattr(exc.result, "errors", []), record],
            ) from None
        except (SessionBrokenError, TransportError) as exc:
            live.finish()
            raise _lost(entry, exc) from None
        except SessionBusyError as exc:
            live.finish()
            raise UsageError(f"session {entry.alias!r} is busy: {_first_line(exc)}") from None
        except EncodeError as exc:
            live.finish()
            raise UsageError(f"--with: {_first_line(exc)}") from None
        except HvMagicError as exc:
            # anything else the session reports on purpose (a host prompt the notebook cannot
            # answer, a protocol error, a replay mismatch): one line, no traceback; details
            # that follow the first line (a diff, the script) are printed above it
            live.finish()
            details = str(exc).strip().splitlines()[1:]
            if details:
                print("\n".join(details))
            raise PowerShellError(_first_line(exc)) from None

    def _finish_run(self, result: Any, columns: str | list[str], raw: bool, out_var: str | None,
                    raise_on_error: bool, live: hvdisplay.LiveRenderer) -> None:
        live.show_missing_errors(list(result.errors))
        value = self._show_output(result, columns, raw, out_var, live)
        if out_var:
            self._shell.user_ns[out_var] = value
        self._shell.user_ns[LAST_RESULT_VAR] = result
        if self.feedback:
            hvdisplay.publish(hvdisplay.render_feedback(len(result.output),
                                                        getattr(result, "duration", None)))
        if result.had_errors and raise_on_error:
            count = len(result.errors)
            what = f"{count} error(s)" if count else f"the pipeline ended {result.state}"
            raise PowerShellError(
                f"{what} in the pipeline (shown above); use --no-raise or "
                "%config VmMagics.raise_on_error = False to continue past errors",
                result=result,
                errors=list(result.errors),
            )

    def _run_fleet(self, script: str, args: Any, spec: str) -> None:
        """``%%vmps web*,db1``: the open sessions matching, plus new connections for plain names
        without one; output as one frame with VMName, then the status table."""
        from hvmagic import fleets

        adopted: dict[str, Any] = {}
        for pattern in fleets.split_targets(_unquote(spec)):
            matched = [e for e in self.sessions
                       if fnmatch.fnmatchcase(e.alias.casefold(), pattern.casefold())]
            if not matched and fleets.is_glob(pattern):
                raise UsageError(f"no open session matches {pattern!r}; %vmsessions lists them")
            adopted.update({e.alias: e.session for e in matched} or {pattern: None})
        out_var = check_identifier(args.out, "-o") if args.out else None
        parameters = {name: self._user_value(name, "--with")
                      for name in parse_names(args.with_vars, "--with")}
        timeout = args.timeout if args.timeout is not None else self.default_timeout
        if timeout is not None and timeout <= 0:
            raise UsageError(f"--timeout must be positive, not {timeout}")
        if args.throttle is not None and args.throttle < 1:
            raise UsageError(f"--throttle must be at least 1, not {args.throttle}")
        connected: list[tuple[str, Any]] = []

        def connect(target: Any, **kwargs: Any) -> Any:  # names without a session yet
            session = _connect(target.name, **kwargs)
            connected.append((target.name, session))
            return session

        renderers: dict[str, hvdisplay.LiveRenderer] = {}

        def on_event(target: Any, stream: str, record: Any) -> None:
            live = renderers.get(target.label)
            if live is None:
                prefix = f"[{target.label}] "
                live = renderers[target.label] = hvdisplay.LiveRenderer(
                    show_streams=self.show_streams, progress_style=self.progress_style,
                    publish_bundle=lambda bundle: hvdisplay.publish(_prefixed(bundle, prefix)),
                )
            live.on_event(stream, record)

        fl = fleets.fleet(
            list(adopted), sessions={a: s for a, s in adopted.items() if s is not None},
            connect=connect, throttle=args.throttle or fleets.DEFAULT_THROTTLE,
        )
        try:
            result = fl.run(script, parameters or None, timeout, on_event)
        except fleets.FleetInterrupted as exc:
            self._shell.user_ns[LAST_RESULT_VAR] = exc.result
            hvdisplay.publish(hvdisplay.render_frame(exc.result.status))
            raise PipelineStopped("the kernel was interrupted; every target's pipeline was "
                                  f"stopped ({LAST_RESULT_VAR} holds what arrived)") from None
        finally:
            for live in renderers.values():
                live.finish()
            for name, session in connected:  # new sessions persist across cells, by name
                replaced = self.sessions.add(SessionEntry(name, session, name, "auto"),
                                             make_default=False)
                if replaced is not None and replaced.session is not session:
                    self._close_quietly(replaced)
        frame = result.frame(parse_columns(args.columns or self.default_columns))
        hvdisplay.publish(hvdisplay.render_frame(frame, self.displaylimit,
                                                 bound_to=out_var or f"{LAST_RESULT_VAR}.frame()"))
        hvdisplay.publish(hvdisplay.render_frame(result.status))
        if out_var:
            self._shell.user_ns[out_var] = frame
        self._shell.user_ns[LAST_RESULT_VAR] = result
        if self.raise_on_error and not args.no_raise and not result.ok:
            raise PowerShellError(
                f"{len(result.failed)} of {len(result)} target(s) did not complete cleanly "
                "(status above); use --no-raise to continue past errors",
                result=result, errors=[e for t in result for e in t.result.errors],
            )

    def _show_partial(self, result: Any, live: hvdisplay.LiveRenderer) -> None:
        if result is None:
            return
        live.show_missing_errors(list(getattr(result, "errors", [])))
        output = list(getattr(result, "output", []))
        if output:
            self._show_output(result, parse_columns(self.default_columns), False, None, live)

    def _show_segment(self, values: list[Any], columns: str | list[str], ps_version: Any,
                      where: str) -> None:
        """One run of output shown in order among the stream records (LiveRenderer): lines of
        text, or a table with PowerShell's headers. Called while the pipeline runs, so it
        never raises: a table that cannot be built is said, not thrown into the run."""
        if hvdisplay.is_text_output(values):
            hvdisplay.publish(hvdisplay.render_text_output(values, self.displaylimit))
            return
        if hvdisplay.is_format_output(values):
            hvdisplay.publish(hvdisplay.render_notice(hvdisplay.FORMAT_OUTPUT_NOTICE))
            return
        if hvdisplay.is_help_output(values):
            hvdisplay.publish(hvdisplay.render_help(values))
            return
        from hvmagic.frames import to_dataframe

        try:
            shown = to_dataframe(values, columns, ps_version=ps_version, labels=True)
        except Exception as exc:
            hvdisplay.publish(hvdisplay.render_notice(
                f"{len(values)} object(s) could not be tabulated here ({_first_line(exc)}); "
                f"they are in {where}"
            ))
            return
        hvdisplay.publish(hvdisplay.render_frame(shown, self.displaylimit, bound_to=where))

    def _show_output(self, result: Any, columns: str | list[str], raw: bool,
                     out_var: str | None, live: hvdisplay.LiveRenderer | None = None) -> Any:
        values = list(result.output)
        # Output already shown in order, among stream records: show only what is left (the
        # last segment). Otherwise the whole result is one table, as before.
        in_order = live is not None and live.segments_shown > 0
        if live is not None:
            if in_order:
                live.flush_output()
            else:
                live.discard_output()
        if not values:
            return values if raw else _empty_frame()
        if hvdisplay.is_text_output(values):
            if not in_order:
                hvdisplay.publish(hvdisplay.render_text_output(values, self.displaylimit))
            return values
        if hvdisplay.is_format_output(values):
            # Format-Table/-List emit layout instructions, not data: a frame of them is noise
            if not in_order:
                hvdisplay.publish(hvdisplay.render_notice(hvdisplay.FORMAT_OUTPUT_NOTICE))
            return values
        if hvdisplay.is_help_output(values):
            if not in_order:
                hvdisplay.publish(hvdisplay.render_help(values))
            return values
        try:
            frame = result.frame(columns)
            # bound: property names and unscaled values; shown: PowerShell's headers (WS(M))
            shown = None if in_order else (
                result.frame(columns, labels=True) if "hvmagic_labels" in frame.attrs else frame
            )
        except (KeyError, ValueError) as exc:
            raise UsageError(f"--columns: {_first_line(exc)}") from None
        if shown is not None:
            # the notice names where the hidden rows are: the -o variable, else the last Result
            where = out_var or f"{LAST_RESULT_VAR}.frame()"
            hvdisplay.publish(hvdisplay.render_frame(shown, self.displaylimit, bound_to=where))
        return values if raw else frame

    # ---------------------------------------------------------------------------- vmcopy
    @no_var_expand
    @magic_arguments()
    @argument("source", help="local path (wildcards allowed) or VM:path / ALIAS:path")
    @argument("destination", help="local path or VM:path / ALIAS:path")
    @argument("-r", "--recurse", action="store_true", help="copy directories recursively")
    @argument("--force", action="store_true", help="overwrite existing files")
    @argument("--gsi", action="store_true",
              help="use Copy-VMFile (Guest Service Interface) on this Hyper-V host; "
                   "host to guest only")
    @line_magic
    def vmcopy(self, line: str) -> None:
        """Copy files between this machine and a guest: exactly one of SRC and DST is
        VM:path (the default session) or ALIAS:path (a named session). Existing files are
        kept unless --force. Transfers are chunked, SHA-256 verified and show a progress bar."""
        args = self._parse(self.vmcopy, line)
        if args is None:
            return
        # IPython splits magic lines non-POSIX (backslashes survive, quotes stay on the word),
        # so "VM:C:\Program Files\x" arrives quoted: unquote before reading the prefix.
        src = parse_copy_endpoint(_unquote(args.source), self.sessions.__contains__)
        dst = parse_copy_endpoint(_unquote(args.destination), self.sessions.__contains__)
        if src.remote == dst.remote:
            raise UsageError(
                "%vmcopy: exactly one side must be in the guest, written VM:path (default "
                "session) or ALIAS:path, e.g. %vmcopy setup.ps1 VM:C:\\Temp\\setup.ps1"
            )
        remote = src if src.remote else dst
        if args.gsi:
            if src.remote:
                raise UsageError("--gsi copies host → guest only (Copy-VMFile -FileSource Host); "
                                 "drop --gsi to copy out of the guest")
            vm_name = self._gsi_vm_name(remote)
            print(copy_vmfile(vm_name, src.path, dst.path, force=args.force))
            return
        try:
            entry = self.sessions.get(remote.session_ref or None)
        except LookupError as exc:
            raise UsageError(str(exc)) from None
        view = hvdisplay.ProgressView(
            self.progress_style,
            None if hvdisplay.in_kernel() or self.progress_style == "none"
            else hvdisplay.TerminalLineSink(),
        )
        direction = "to" if dst.remote else "from"
        activity = f"Copying {args.source} → {args.destination}"
        on_progress = _copy_progress_adapter(view, activity)
        kwargs: dict[str, Any] = {"overwrite": args.force, "on_progress": on_progress}
        if args.recurse:
            kwargs["recurse"] = True
        session = entry.session
        try:
            with copy_advice("magic"):  # errors name --force / -r, not the API's keywords
                if dst.remote:
                    summary = session.copy_to(src.path, dst.path, **kwargs)
                else:
                    summary = session.copy_from(src.path, dst.path, **kwargs)
        except KeyboardInterrupt:
            view.finish()
            _raise_if_broken(session, entry, "the kernel was interrupted during the copy")
            print(f"Copy stopped (interrupted); session {entry.alias!r} is still usable.")
            raise PipelineStopped("the kernel was interrupted; the copy was stopped") from None
        except FileExistsError as exc:
            view.finish()
            raise UsageError(f"%vmcopy: {_first_line(exc)}") from None
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as exc:
            view.finish()
            raise UsageError(f"%vmcopy: {_first_line(exc)}") from None
        except FileCopyError as exc:  # integrity mismatch and other copy failures
            view.finish()
            raise CopyFailedError(_first_line(exc)) from None
        except (SessionBrokenError, TransportError) as exc:
            view.finish()
            raise _lost(entry, exc) from None
        except RemoteError as exc:
            view.finish()
            if exc.record is not None:
                hvdisplay.publish(hvdisplay.render_error(exc.record))
            raise PowerShellError(_one_line(str(exc)), record=exc.record) from None
        view.finish()
        print(_copy_summary(summary, direction, entry.alias))

    def _gsi_vm_name(self, remote: CopyEndpoint) -> str:
        ref = remote.session_ref
        entry = self.sessions.default if not ref else (
            self.sessions.get(ref) if ref in self.sessions else None
        )
        if entry is None:
            raise UsageError("--gsi needs the VM: connect first, or write ALIAS:path with an "
                             "open session's alias")
        return entry.target

    # ---------------------------------------------------------------------------- cell mode
    @no_var_expand
    @magic_arguments()
    @argument("state", nargs="?", default=None, choices=["on", "off"],
              help="on: plain cells run as %%vmps in the default session; off: Python again")
    @line_magic
    def vmps_mode(self, line: str) -> None:
        """PowerShell cell mode. While on, every plain cell runs as %%vmps in the default
        session; a cell whose first line is #py runs as Python, and cells starting with % or !
        run as usual (so %vmps_mode off works)."""
        args = self._parse(self.vmps_mode, line)
        if args is None:
            return
        if args.state is None:
            print(f"PowerShell cell mode is {'on' if self.cell_mode.enabled else 'off'}")
            return
        if args.state == "on":
            self.sessions_default_or_usage()
        self.cell_mode.enabled = args.state == "on"
        if self.cell_mode.enabled:
            print("PowerShell cell mode on: cells run in the default session; start a cell "
                  "with #py for Python, %vmps_mode off to leave")
        else:
            print("PowerShell cell mode off")

    @no_var_expand
    @line_magic
    def vmcellmode(self, line: str) -> None:
        """Alias of %vmps_mode (on|off)."""
        self.vmps_mode(line)

    def sessions_default_or_usage(self) -> SessionEntry:
        try:
            return self.sessions.get()
        except LookupError as exc:
            raise UsageError(str(exc)) from None

    # ---------------------------------------------------------------------------- helpers
    @property
    def _shell(self) -> Any:
        if self.shell is None:
            raise UsageError("hvmagic's magics need an IPython shell (%load_ext hvmagic)")
        return self.shell

    def _parse(self, magic: Callable[..., Any], line: str) -> Any:
        """``parse_argstring`` with magic manners: ``-h``/``--help`` print the help and return
        ``None`` (the caller returns); a ``# comment`` ends the line; an unknown option is a
        one-line :class:`UsageError` naming the closest real one."""
        line = strip_magic_comment(line)
        name = magic.__name__
        parser = magic.parser  # type: ignore[attr-defined]
        try:
            words = arg_split(line, posix=True)
        except ValueError as exc:  # unbalanced quotes
            raise UsageError(f"%{name}: {_first_line(exc)}") from None
        if "-h" in words or "--help" in words:
            print(parser.format_help().rstrip())
            return None
        try:
            return parse_argstring(magic, line)
        except UsageError as exc:
            message = _first_line(exc)
            unknown = _UNRECOGNIZED.search(message)
            if unknown is not None:
                options = [o for a in parser._actions for o in a.option_strings]
                raise UsageError(
                    explain_unknown_arguments(name, unknown.group(1).split(), options)
                ) from None
            raise UsageError(f"%{name}: {message}") from None
        except ValueError as exc:  # unbalanced quotes from the splitter
            raise UsageError(f"%{name}: {_first_line(exc)}") from None

    def _parse_cell_line(self, line: str) -> Any:
        """The ``%%vmps`` line: options only. Words beyond the one TARGET are a script typed
        on the magic line by mistake, which argparse would only call "unrecognized"."""
        try:
            return self._parse(self.vmps, line)
        except UsageError as exc:
            words = arg_split(strip_magic_comment(line), posix=True)
            positional = [w for w in words if not w.startswith("-")]
            if "unexpected argument" in str(exc) and len(positional) > 1 and not any(
                w.startswith("--") and w.split("=")[0] not in _VMPS_KNOWN for w in words
            ):
                raise UsageError(
                    f"%%vmps: the script goes in the cell body: put {' '.join(positional)!r} "
                    "on the line below %%vmps (the magic line takes only a session and options)"
                ) from None
            raise

    def _user_value(self, name: str, option: str) -> Any:
        check_identifier(name, option)
        namespace: Mapping[str, Any] = self._shell.user_ns
        if name not in namespace:
            raise UsageError(f"{option}: name {name!r} is not defined in Python")
        return namespace[name]


def _fleet_spec(target: str | None) -> str | None:
    """A TARGET naming several sessions (``web*,db1``) makes ``%%vmps`` run on a fleet."""
    if target and ("," in target or any(c in target for c in "*?[")):
        return target
    return None


def _prefixed(bundle: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    """A stream bundle labelled with the target it came from (fleet cells)."""
    import html

    labelled = dict(bundle)
    if isinstance(labelled.get("text/plain"), str):
        labelled["text/plain"] = "\n".join(
            prefix + line for line in labelled["text/plain"].split("\n"))
    if isinstance(labelled.get("text/html"), str):
        labelled["text/html"] = (f'<span class="hvmagic-target">{html.escape(prefix)}</span>'
                                 + labelled["text/html"])
    return labelled


def _recording_stem(path: str) -> str:
    """``runs/web01.hvrec.json`` → ``web01`` (the name ``HVMAGIC_RECORD`` files are given)."""
    base = os.path.basename(path)
    for suffix in (".hvrec.json", ".json"):
        if base.endswith(suffix) and len(base) > len(suffix):
            return base[: -len(suffix)]
    return base


def _replaying(via: str, args: Any) -> bool:
    """Whether :func:`hvmagic.connect` will serve this connection from a recording."""
    if via == "replay" or args.replay:
        return True
    from hvmagic.recording import REPLAY_ENV

    return bool(os.environ.get(REPLAY_ENV)) and not args.record


def _refuse_powershell_direct_here(name: str) -> None:
    """PowerShell Direct needs a Windows Hyper-V host with CPython 3.12+: say so at once
    instead of asking for the guest's password and failing afterwards."""
    from hvmagic.hop import local_hop_applies
    from hvmagic.transports.hvsocket import hvsocket_supported, unsupported_platform_message

    # a Windows host with an older Python hops through a local powershell.exe instead
    if not hvsocket_supported() and not local_hop_applies(name, "auto"):
        raise UsageError(f"Cannot reach {name!r} by PowerShell Direct from here: "
                         + unsupported_platform_message()
                         + f" In a notebook: %vmconnect {name} --host HV01 [--via ssh].")


def _host_arguments(args: Any) -> dict[str, Any]:
    """``--host`` and its options as ``connect(host=..., host_options=...)`` arguments."""
    options = {name: getattr(args, name) for name in ("port", "identity_file")
               if getattr(args, name) is not None}
    return {"host": args.host, "host_username": args.host_user, "host_options": options}


def _connect(target: str, **kwargs: Any) -> Any:
    """:func:`hvmagic.connect`, imported on first use (the session layer pulls in psrpcore)."""
    session_module = importlib.import_module("hvmagic.session")
    return session_module.connect(target, **kwargs)


def _one_line(text: str) -> str:
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    return lines[0] if lines else "the pipeline failed"


def _empty_frame() -> Any:
    import pandas as pd

    return pd.DataFrame()


def _copy_progress_adapter(view: hvdisplay.ProgressView, activity: str) -> Callable[..., None]:
    """Feeds the copy engine's reports (:class:`hvmagic.filecopy.CopyProgress`) into a progress
    view: the whole copy as the parent bar, the current file nested under it."""

    def on_progress(report: Any) -> None:
        if isinstance(report, ProgressRecord):
            view.update(report)
            return
        done, total = report.bytes_done, report.bytes_total
        files = f"file {min(report.files_done + 1, report.files_total)} of {report.files_total}"
        view.update(
            ProgressRecord(
                activity, 1, f"{_human_bytes(done)} of {_human_bytes(total)}, {files}",
                percent_complete=report.percent,
            )
        )
        if report.files_total > 1 and report.file_bytes_total:
            view.update(
                ProgressRecord(
                    report.source, 2,
                    f"{_human_bytes(report.file_bytes_done)} of "
                    f"{_human_bytes(report.file_bytes_total)}",
                    parent_activity_id=1,
                    percent_complete=int(100 * report.file_bytes_done / report.file_bytes_total),
                )
            )

    return on_progress


def _human_bytes(count: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if count < 1024 or unit == "GB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} GB"


def _copy_summary(summary: Any, direction: str, alias: str) -> str:
    files = getattr(summary, "files", None)
    if files is None:
        return f"Copied {direction} {alias}"
    size = getattr(summary, "bytes", 0)
    seconds = getattr(summary, "seconds", 0.0)
    rate = format_rate(size, seconds)
    return (
        f"Copied {len(files)} file(s), {_human_bytes(size)} {direction} {alias!r} in "
        f"{seconds:.2f} s{rate}; SHA-256 verified"
    )


# --------------------------------------------------------------------------------------------
# extension entry points


def load_ipython_extension(ipython: Any) -> None:
    """Register :class:`VmMagics` and the (disabled) PowerShell cell-mode transformer."""
    existing = getattr(ipython, "_hvmagic_magics", None)
    if existing is not None:
        return  # %load_ext twice (or %reload_ext without unload) keeps the open sessions
    magics = VmMagics(shell=ipython)
    ipython.register_magics(magics)
    # cleanup transformers run before IPython turns %%magic into a call, so a prepended
    # "%%vmps" line is handled exactly like one the user typed
    ipython.input_transformers_cleanup.insert(0, magics.cell_mode)
    ipython._hvmagic_magics = magics
    magics.uninstall_completion = install_completion(
        ipython,
        sessions=lambda ref: magics.sessions.get(ref).session,
        aliases=lambda: [entry.alias for entry in magics.sessions],
        cell_mode=lambda: magics.cell_mode.enabled,
        split_line=lambda line: split_leading_options(
            line, _VMPS_VALUE_OPTIONS, _VMPS_FLAG_OPTIONS
        ),
        timeout=lambda: magics.completion_timeout,
    )
    # close sessions when the kernel exits, so a guest frees its runspace at once instead of
    # waiting for the dead connection to time out
    atexit.register(magics.close_all)


def unload_ipython_extension(ipython: Any) -> None:
    """Close all sessions, remove the transformer and the magics."""
    magics = getattr(ipython, "_hvmagic_magics", None)
    if magics is None:
        return
    magics.close_all()
    magics.uninstall_completion()
    atexit.unregister(magics.close_all)
    if magics.cell_mode in ipython.input_transformers_cleanup:
        ipython.input_transformers_cleanup.remove(magics.cell_mode)
    table = ipython.magics_manager.magics
    for kind in ("line", "cell"):
        for name in list(magics.magics.get(kind, {})):
            table[kind].pop(name, None)
    if magics in ipython.configurables:
        ipython.configurables.remove(magics)
    del ipython._hvmagic_magics


__all__ = [
    "LAST_RESULT_VAR",
    "CopyEndpoint",
    "PipelineStopped",
    "PowerShellCellMode",
    "PowerShellError",
    "SessionEntry",
    "SessionLostError",
    "SessionRegistry",
    "VmMagics",
    "copy_vmfile",
    "load_ipython_extension",
    "parse_columns",
    "parse_copy_endpoint",
    "split_leading_options",
    "unload_ipython_extension",
]
