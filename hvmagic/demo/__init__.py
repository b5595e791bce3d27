"""The demo guest: a real local PowerShell answering with simulated Windows data.

:func:`open_demo_session` starts ``pwsh -s`` (or ``powershell.exe -s``) like any local process
session and imports the ``HvmagicDemo`` module shipped beside this file. The module defines the
demo commands (``Get-Service``, ``Get-WinEvent``, ``Get-ComputerInfo``, ``Restart-Computer`` …)
as PowerShell functions that emit objects with the Windows type names and the labelled, invented
inventory of ``HvmagicDemo/DemoData.json``. Everything else is PowerShell itself: the language,
``Get-Member``, format strings, ``-WhatIf``, and the exact errors of what the demo does not have.

Each demo *machine* (by name, ``"sim"`` by default) has a folder for the life of this Python
process: its ``C:`` drive (the runbooks' ``C:\\...`` paths land there) and its state (service
status, installed features, boot time). A simulated ``Restart-Computer`` ends the PowerShell
process as a real restart drops the session; opening the same name again finds the machine as
it was left, booted later, which is what ``connect(..., wait=, booted_after=)`` waits for.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import threading
from pathlib import Path

from hvmagic.errors import UnsupportedPlatformError
from hvmagic.host import HostUI
from hvmagic.session import Session, open_session
from hvmagic.transports.process import ProcessTransport, find_powershell

#: the PowerShell module that holds the demo commands and their data
MODULE_MANIFEST = Path(__file__).resolve().parent / "HvmagicDemo" / "HvmagicDemo.psd1"
#: names an explicit PowerShell for the demo (the pwsh test suite honours it too)
PWSH_ENV = "HVMAGIC_PWSH"
COMPUTER_NAME = "SIMULATED-GUEST"
#: where a PowerShell Direct session to a Windows guest starts
HOME_FOLDER = "C:\\Users\\Administrator\\Documents"
#: Windows' environment as the guest's scripts read it ($env:COMPUTERNAME …); PowerShell on
#: Linux has none of these, and the host's values must not show up as the guest's
GUEST_ENVIRONMENT = {
    "COMPUTERNAME": COMPUTER_NAME,
    "USERNAME": "Administrator",
    "USERDOMAIN": COMPUTER_NAME,
    "SystemRoot": "C:\\Windows",
    "windir": "C:\\Windows",
    "ProgramData": "C:\\ProgramData",
    "PROCESSOR_ARCHITECTURE": "AMD64",
    "NUMBER_OF_PROCESSORS": "2",
    # a Windows Server's usual culture (en-US), not the invariant one a bare Linux locale gives
    # .NET: '{0:P0}' -f 0.16 is '16%', dates print as M/d/yyyy h:mm:ss tt (without ICU, .NET
    # stays invariant whatever this says)
    "LANG": "en_US.UTF-8",
    "LC_ALL": "en_US.UTF-8",
}
#: the recordings of the runbooks made through this demo guest, one folder per runbook (named
#: after the notebook), shipped so that the runbooks replay where no PowerShell is installed;
#: ``python -m hvmagic.demo.record`` makes them again
RECORDINGS = Path(__file__).resolve().parent / "recordings"
#: the triage runbook, which ``hvmagic demo`` runs
TRIAGE_RUNBOOK = "01-guest-services-triage"
NO_POWERSHELL = (
    "the demo guest runs in a local PowerShell, and none was found ({detail}). Install "
    "PowerShell 7 (https://aka.ms/powershell; e.g. 'winget install Microsoft.PowerShell', "
    "'brew install powershell', or the packages.microsoft.com package for Linux), or point "
    f"${PWSH_ENV} or executable= at one. Without it the runbooks still run, replaying the "
    "recordings made through this demo guest: 'hvmagic demo' replays the triage runbook, and "
    "a kernel started with HVMAGIC_REPLAY set to a runbook's folder replays that runbook "
    "(e.g. HVMAGIC_REPLAY="
    + str(RECORDINGS / TRIAGE_RUNBOOK).replace("{", "{{").replace("}", "}}")
    + ")."
)
#: the prefix of a demo machine's folder (its C: drive and state) in the temporary directory
MACHINE_PREFIX = "hvmagic-demo-"

_machines: dict[str, Path] = {}
_machines_lock = threading.Lock()


def machine_folder(name: str = "sim") -> Path:
    """The folder of demo machine ``name`` (created on first use, removed at exit)."""
    with _machines_lock:
        folder = _machines.get(name)
        if folder is None or not folder.is_dir():
            folder = Path(tempfile.mkdtemp(prefix=MACHINE_PREFIX))
            (folder / "C").mkdir()
            _machines[name] = folder
        return folder


def forget_machine(name: str | None = None) -> None:
    """Delete demo machine ``name`` (all when ``None``): the next session starts fresh."""
    with _machines_lock:
        names = list(_machines) if name is None else [name]
        folders = [_machines.pop(n) for n in names if n in _machines]
    for folder in folders:
        shutil.rmtree(folder, ignore_errors=True)


atexit.register(forget_machine)


def _quoted(text: str) -> str:
    """``text`` as a PowerShell single-quoted literal (PowerShell also ends one at the
    typographic single quotes, so those are doubled as well)."""
    for quote in ("'", "\u2018", "\u2019", "\u201a", "\u201b"):
        text = text.replace(quote, quote * 2)
    return f"'{text}'"


def resolve_powershell(executable: str | os.PathLike[str] | None = None) -> str:
    """The PowerShell the demo guest runs in: ``executable``, else ``$HVMAGIC_PWSH``, else
    ``pwsh`` on PATH, else ``powershell.exe`` on Windows. Without any,
    :class:`UnsupportedPlatformError` says what to install and how the runbooks still replay."""
    if executable is not None:
        path = shutil.which(str(executable)) or str(executable)
        if not Path(path).is_file():
            raise UnsupportedPlatformError(NO_POWERSHELL.format(detail=f"no file {path!r}"))
        return path
    explicit = os.environ.get(PWSH_ENV)
    if explicit:
        return resolve_powershell(explicit)
    try:
        return find_powershell()
    except UnsupportedPlatformError as exc:
        raise UnsupportedPlatformError(
            NO_POWERSHELL.format(detail=f"nothing on PATH, ${PWSH_ENV} unset")
        ) from exc


def import_script(state_path: Path, drive_root: Path) -> str:
    """The one run that turns a fresh PowerShell into the demo guest. It runs in a script block
    so it leaves no variables behind; the module and the C: drive are global, as a profile's
    would be, and the location is where a PowerShell Direct session starts."""
    return (
        "& {\n"
        f"    Import-Module -Name {_quoted(str(MODULE_MANIFEST))} -Global -DisableNameChecking "
        f"-ArgumentList {_quoted(str(state_path))}, {_quoted(str(drive_root))}\n"
        f"    Set-Location -LiteralPath {_quoted(HOME_FOLDER)}\n"
        "}"
    )


def open_demo_session(
    executable: str | os.PathLike[str] | None = None,
    host_ui: HostUI | None = None,
    timeout: float | None = None,
    *,
    name: str = "sim",
) -> Session:
    """Open a session on demo machine ``name`` in a local PowerShell.

    ``executable``: the PowerShell to run; default ``$HVMAGIC_PWSH``, else ``pwsh`` on PATH,
    else ``powershell.exe`` on Windows. Without any, :class:`UnsupportedPlatformError` says what
    to install.
    """
    exe = resolve_powershell(executable)
    folder = machine_folder(name)
    environment = {**os.environ, **GUEST_ENVIRONMENT}
    transport = ProcessTransport(
        exe, env=environment, description=f"demo guest {name!r} (simulated data, {Path(exe).name})"
    )
    session = open_session(transport, name=name, host_ui=host_ui, timeout=timeout)
    try:
        session.run(import_script(folder / "state.json", folder / "C"), timeout=timeout or 120)
    except BaseException:
        session.close()
        raise
    return session


__all__ = [
    "MODULE_MANIFEST",
    "NO_POWERSHELL",
    "RECORDINGS",
    "forget_machine",
    "machine_folder",
    "open_demo_session",
    "resolve_powershell",
]
