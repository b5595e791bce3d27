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
    %%vmps --vms "web*" --host HV01,HV02 [--via ssh|winrm] [--host-user U] [-u GUESTUSER]
           [--credentials VAR] [--host-options VAR]   a fleet of the VMs Get-VM finds on each host
    %vmps [options] SCRIPT            the same for one line (options first, then the script)
    %vmcopy [-r] [--force] [--gsi] SRC DST     exactly one side is VM:path or ALIAS:path
    %vmps_mode on|off                 (alias %vmcellmode) plain cells run as %%vmps

In PowerShell cell mode a cell whose first line is ``#py`` runs as Python, and cells that start
with ``%`` or ``!`` run as IPython magics/shell commands as usual. (``%%python`` is not used as
the escape because IPython already has a ``%%python`` magic that runs a *subprocess*.)

What the magics use lives beside them: :mod:`hvmagic.registry` (named sessions),
:mod:`hvmagic.magic_args` (reading magic lines), :mod:`hvmagic.cellmode` (the cell-mode
transformer), :mod:`hvmagic.vmcopy` (copy endpoints, Copy-VMFile, copy progress),
:mod:`hvmagic.notebook_host` (the guest's prompts), :mod:`hvmagic.fleet_display` (a fleet cell's
streams and its one progress display) and :mod:`hvmagic.magic_errors` (the short exceptions a
failed cell raises).
"""

from __future__ import annotations

import atexit
import fnmatch
import getpass
import os
import re
from collections.abc import Callable, Mapping
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

from hvmagic import connection, fleet_factory, fleets, hop
from hvmagic import display as hvdisplay
from hvmagic.cellmode import PowerShellCellMode
from hvmagic.clixml.values import PSCredential, SecureString
from hvmagic.completion import install as install_completion
from hvmagic.credentials import get_password
from hvmagic.doctor import explain as explain_failure
from hvmagic.errors import (
    EncodeError,
    FileCopyError,
    HvMagicError,
    PipelineTimeoutError,
    RemoteError,
    SessionBrokenError,
    SessionBusyError,
    TransportError,
)
from hvmagic.filecopy import advice as copy_advice
from hvmagic.fleet_display import FleetLiveDisplay
from hvmagic.fleets import FleetResult, Target
from hvmagic.frames import to_dataframe
from hvmagic.magic_args import (
    check_identifier,
    explain_unknown_arguments,
    parse_columns,
    parse_names,
    python_name_hint,
    split_leading_options,
    strip_magic_comment,
    unquote,
)
from hvmagic.magic_errors import (
    CopyFailedError,
    PipelineStopped,
    PowerShellError,
    SessionLostError,
)
from hvmagic.notebook_host import NotebookHostUI, guest_text
from hvmagic.recording import REPLAY_ENV
from hvmagic.registry import SessionEntry, SessionRegistry
from hvmagic.sessionlike import CopyResult, Result, SessionLike
from hvmagic.transports import hvsocket
from hvmagic.vmcopy import (
    CopyEndpoint,
    copy_progress_adapter,
    copy_summary,
    copy_vmfile,
    parse_copy_endpoint,
)

#: where the default session's last :class:`~hvmagic.session.Result` is kept in the user namespace
LAST_RESULT_VAR = "_vmps_result"


# --------------------------------------------------------------------------------------------
# what a failed run leaves, and how it is reported


def _partial_result(
    session: SessionLike, exc: BaseException, earlier: Result | None
) -> Result | None:
    """The Result a failed run left: the exception's own, else the session's latest result if
    this run made one (a Ctrl-C carries none; ``earlier`` tells an older result apart)."""
    result: Result | None = getattr(exc, "result", None)
    if result is not None:
        return result
    latest: Result | None = getattr(session, "last_result", None)  # an adopted object may lack it
    return latest if latest is not earlier else None


def _raise_if_broken(session: SessionLike, entry: SessionEntry, what: str) -> None:
    """After a timeout or interrupt the session is only "still usable" if stopping worked."""
    if getattr(session, "broken", False):
        raise SessionLostError(
            f"{what} and the pipeline could not be stopped cleanly; session {entry.alias!r} "
            "is broken — reconnect with %vmconnect"
        ) from None


def _lost(entry: SessionEntry, exc: BaseException) -> SessionLostError:
    return SessionLostError(
        f"session {entry.alias!r} lost its connection ({_first_line(exc)}); "
        "reconnect with %vmconnect"
    )


# --------------------------------------------------------------------------------------------
# the magics


def _explain(exc: BaseException) -> str | None:
    """The doctor's explanation of a connection failure, if it has one."""
    try:
        text = explain_failure(exc)
    except Exception:
        # the explanation is a courtesy; a bug in it must not hide the connection error itself
        return None
    return str(text) if text else None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


_VMPS_VALUE_OPTIONS = ("-o", "--out", "--with", "--timeout", "--columns", "--session", "-s",
                       "--vms", "--throttle", "--host", "--via", "--host-user", "-u",
                       "--username", "--credentials", "--host-options")
#: %%vmps options that only mean something for a fleet on Hyper-V hosts (--host)
_FLEET_HOST_OPTIONS = ("via", "host_user", "username", "credentials", "host_options")
_VMPS_FLAG_OPTIONS = ("--raw", "--no-raise")
_HELP_OPTIONS = ("-h", "--help")
_VMPS_KNOWN = (*_VMPS_VALUE_OPTIONS, *_VMPS_FLAG_OPTIONS, *_HELP_OPTIONS)
_UNRECOGNIZED = re.compile(r"unrecognized arguments: (.*)$")


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
              help="VM name (or id); with --via sim the name of a demo machine "
                   "(default 'demo')")
    @argument("-u", "--username", default=None,
              help="guest user (DOMAIN\\user, user@domain); the password is asked without echo")
    @argument("--configuration", default=None, help="session configuration name in the guest")
    @argument("--via", default=None,
              choices=["auto", "direct", "process", "sim", "replay", "ssh", "winrm"],
              help="direct = PowerShell Direct over hvsocket; process = a local pwsh / "
                   "powershell.exe -s (with --host localhost: then New-PSSession -VMName, as "
                   "auto does on a Hyper-V host whose Python is older than 3.12); sim = the "
                   "demo guest (a local PowerShell with simulated Windows data); replay = a "
                   "recording; with --host: winrm (default) or ssh to the Hyper-V host, then "
                   "New-PSSession -VMName")
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
        name = _target_name(args, via)
        alias = args.alias or name
        if (via in ("auto", "direct") and name != "sim" and not args.host
                and not _replaying(via, args)):
            _refuse_powershell_direct_here(name)  # before any password prompt, not after
        kwargs = self._connect_arguments(args, name, via)
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

    def _connect_arguments(self, args: Any, name: str, via: str) -> dict[str, Any]:
        """``%vmconnect``'s options as :func:`hvmagic.connect` keywords, the password included
        (asked for here when needed; the caller clears the dict once connected)."""
        kwargs: dict[str, Any] = {"via": via, "host_ui": NotebookHostUI(guest=name)}
        for option in ("configuration", "record", "replay", "timeout", "wait"):
            value = getattr(args, option)
            if value is not None:
                kwargs[option] = value
        if args.allow_legacy:
            kwargs["allow_legacy"] = True
        if args.host:
            kwargs.update(_host_arguments(args))
        # A recording, and the demo guest "sim" that runbooks default to, answer without
        # logging on: asking for a password would only stop a CI run (no stdin) of a runbook
        # written with -u USER. Another name with --via sim -u USER rehearses the real prompt.
        if _replaying(via, args) or (name == "sim" and via in ("auto", "sim")):
            if args.username:
                kwargs["username"] = args.username
        else:
            kwargs.update(self._credentials(args))
        return kwargs

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
            return getpass.getpass(f"%vmconnect {guest_text(target or '', 60)}: {text}")

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
            "sim": "",  # the description says "demo guest ... (simulated data, pwsh)"
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
    @argument("--host", default=None, metavar="HV01,HV02",
              help="fleet: resolve the VMs (names, globs) with Get-VM on these Hyper-V hosts "
                   "and reach each through its host (PowerShell Direct from there)")
    @argument("--via", default=None, choices=["ssh", "winrm"],
              help="fleet with --host: how the hosts are reached (default winrm)")
    @argument("--host-user", default=None, metavar="U", help="fleet with --host: host account")
    @argument("-u", "--username", default=None, metavar="USER",
              help="fleet with --host: the guests' account (the password is asked once)")
    @argument("--credentials", default=None, metavar="VAR",
              help="fleet with --host: a Python mapping of VM name/glob -> PSCredential or "
                   "user name, for guests with different accounts")
    @argument("--host-options", default=None, metavar="VAR",
              help="fleet with --host: a Python mapping of connect(host_options=...) "
                   "(port, identity_file, ssh_config, ...)")
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
        if getattr(args, "host", None):
            fleet_spec = fleet_spec or args.target or args.session
            if not fleet_spec:
                raise UsageError("--host needs the VMs: %%vmps --vms \"web*\" --host HV01,HV02")
        elif any(getattr(args, name, None) for name in _FLEET_HOST_OPTIONS):
            given = [name for name in _FLEET_HOST_OPTIONS if getattr(args, name, None)]
            raise UsageError("--" + given[0].replace("_", "-") + " is for fleets on Hyper-V "
                             "hosts: add --host HV01[,HV02]")
        if fleet_spec:
            self._run_fleet(script, args, fleet_spec)
            return
        try:
            entry = self.sessions.get(args.session or args.target)
        except LookupError as exc:
            raise UsageError(str(exc)) from None
        out_var, parameters = self._out_and_parameters(args)
        columns = parse_columns(args.columns or self.default_columns)
        timeout = self._timeout(args)
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

    def _out_and_parameters(self, args: Any) -> tuple[str | None, dict[str, Any]]:
        """``-o VAR`` checked, and the ``--with`` variables' values from the user namespace."""
        out_var = check_identifier(args.out, "-o") if args.out else None
        parameters = {
            name: self._user_value(name, "--with")
            for name in parse_names(args.with_vars, "--with")
        }
        return out_var, parameters

    def _timeout(self, args: Any) -> float | None:
        """``--timeout``, else the ``default_timeout`` setting; positive or ``None``."""
        timeout: float | None = args.timeout if args.timeout is not None else self.default_timeout
        if timeout is not None and timeout <= 0:
            raise UsageError(f"--timeout must be positive, not {timeout}")
        return timeout

    def _bind_partial(self, result: Result | None, columns: str | list[str], raw: bool,
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

    def _run_with_live_display(self, session: SessionLike, script: str,
                               parameters: dict[str, Any], timeout: float | None,
                               live: hvdisplay.LiveRenderer, entry: SessionEntry) -> Result:
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

    def _finish_run(self, result: Result, columns: str | list[str], raw: bool,
                    out_var: str | None,
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
        without one; with ``--host``, the VMs ``Get-VM`` finds on each host, reached through it.
        Output as one frame with VMName (and HostName), then the status table."""
        out_var, parameters = self._out_and_parameters(args)
        timeout = self._timeout(args)
        if args.throttle is not None and args.throttle < 1:
            raise UsageError(f"--throttle must be at least 1, not {args.throttle}")
        hosts = fleets.split_targets(unquote(args.host)) if args.host else None
        options: dict[str, Any] = {}
        credentials: dict[str, Any] | None = None
        if hosts:
            targets: list[str | Target] = list(fleets.split_targets(unquote(spec)))
            adopted: dict[str | Target, SessionLike] = self._fleet_host_sessions(hosts)
            options, credentials = self._fleet_host_arguments(args)
        else:
            by_alias = self._fleet_targets(spec)
            targets = list(by_alias)
            adopted = {a: s for a, s in by_alias.items() if s is not None}
        connected: list[tuple[Target, SessionLike]] = []

        def connect(target: Target, **kwargs: Any) -> SessionLike:  # targets without a session
            if target.host is not None:
                kwargs.setdefault("host", target.host)
            session = _connect(target.name, **kwargs)
            connected.append((target, session))
            return session

        live = FleetLiveDisplay(show_streams=self.show_streams,
                                progress_style=self.progress_style)
        fl = fleet_factory.fleet(
            targets, host=hosts, sessions=adopted, connect=connect, connect_options=options,
            credentials=credentials, throttle=args.throttle or fleets.DEFAULT_THROTTLE,
        )
        try:
            result = fl.run(script, parameters or None, timeout, live.on_event, live.on_progress)
        except fleets.FleetInterrupted as exc:
            self._shell.user_ns[LAST_RESULT_VAR] = exc.result
            hvdisplay.publish(hvdisplay.render_frame(exc.result.status))
            raise PipelineStopped("the kernel was interrupted; every target's pipeline was "
                                  f"stopped ({LAST_RESULT_VAR} holds what arrived)") from None
        finally:
            live.finish()
            self._keep_fleet_sessions(connected, args.via or "auto")
            fl.close(keep_sessions=True)  # the host shells go; the VMs' sessions stay
        if hosts and not len(result):
            raise UsageError(f"no running VM matches {unquote(spec)!r} on "
                             f"{', '.join(hosts)} (Get-VM on each host)")
        self._finish_fleet(result, args, out_var)

    def _fleet_host_sessions(self, hosts: list[str]) -> dict[str | Target, SessionLike]:
        """Open sessions an earlier ``--host`` fleet cell kept (alias ``HOST/VM``) on ``hosts``,
        by target: the fleet uses them for the VMs it resolves again."""
        wanted = {host.casefold(): host for host in hosts}
        adopted: dict[str | Target, SessionLike] = {}
        for entry in self.sessions:
            host, _, name = entry.alias.partition("/")
            if name and host.casefold() in wanted:
                adopted[Target(name, wanted[host.casefold()])] = entry.session
        return adopted

    def _fleet_host_arguments(self, args: Any) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """``--via/--host-user/--host-options`` as the fleet's connect options, and
        ``-u``/``--credentials`` as its credentials. Passwords are asked here, once, on the
        kernel's thread: never by the targets' threads, whose prompts would race."""
        options: dict[str, Any] = {}
        if args.via:
            options["via"] = args.via
        if args.host_user:
            options["host_username"] = args.host_user
            if args.via in (None, "winrm"):
                from hvmagic.hop import winrm_host_password

                options["host_password"] = winrm_host_password(args.host_user, None)
        if args.host_options:
            value = self._user_value(args.host_options, "--host-options")
            if not isinstance(value, Mapping):
                raise UsageError(f"--host-options: {args.host_options!r} is a "
                                 f"{type(value).__name__}, not a mapping")
            options["host_options"] = dict(value)
        credentials: dict[str, Any] | None = None
        if args.credentials:
            value = self._user_value(args.credentials, "--credentials")
            if not isinstance(value, Mapping):
                raise UsageError(f"--credentials: {args.credentials!r} is a "
                                 f"{type(value).__name__}, not a mapping of VM/glob to "
                                 "PSCredential or user name")
            credentials = dict(value)
        if args.username:  # everyone else's account: after the mapping's own entries
            password = self._password_from_sources(args.username, "fleet")
            credentials = {**(credentials or {}), "*": PSCredential(args.username, password)}
        return options, credentials

    def _fleet_targets(self, spec: str) -> dict[str, SessionLike | None]:
        """``web*,db1`` → {alias: open session} for every open session matching, and
        {name: None} for a plain name no session has (the fleet connects it)."""
        adopted: dict[str, SessionLike | None] = {}
        for pattern in fleets.split_targets(unquote(spec)):
            matched = [e for e in self.sessions
                       if fnmatch.fnmatchcase(e.alias.casefold(), pattern.casefold())]
            if not matched and fleets.is_glob(pattern):
                raise UsageError(f"no open session matches {pattern!r}; %vmsessions lists them")
            if matched:
                adopted.update({e.alias: e.session for e in matched})
            else:
                adopted[pattern] = None
        return adopted

    def _keep_fleet_sessions(self, connected: list[tuple[Target, SessionLike]], via: str
                             ) -> None:
        """Sessions a fleet connected persist across cells, by target label (``web1``, or
        ``hv01/web1`` through a host), not as the default."""
        for target, session in connected:
            replaced = self.sessions.add(SessionEntry(target.label, session, target.name, via),
                                         make_default=False)
            if replaced is not None and replaced.session is not session:
                self._close_quietly(replaced)

    def _finish_fleet(self, result: FleetResult, args: Any, out_var: str | None) -> None:
        """Show the fleet's frame and status table, bind them, and raise when a target failed."""
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

    def _show_partial(self, result: Result | None, live: hvdisplay.LiveRenderer) -> None:
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
            hvdisplay.publish(hvdisplay.render_text_output(values, self.displaylimit, ps_version))
            return
        if hvdisplay.is_format_output(values):
            hvdisplay.publish(hvdisplay.render_notice(hvdisplay.FORMAT_OUTPUT_NOTICE))
            return
        if hvdisplay.is_help_output(values):
            hvdisplay.publish(hvdisplay.render_help(values))
            return
        try:
            shown = to_dataframe(values, columns, ps_version=ps_version, labels=True)
        except Exception as exc:
            hvdisplay.publish(hvdisplay.render_notice(
                f"{len(values)} object(s) could not be tabulated here ({_first_line(exc)}); "
                f"they are in {where}"
            ))
            return
        hvdisplay.publish(hvdisplay.render_frame(shown, self.displaylimit, bound_to=where))

    def _show_output(self, result: Result, columns: str | list[str], raw: bool,
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
                hvdisplay.publish(hvdisplay.render_text_output(
                    values, self.displaylimit, result.ps_version))
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
        src, dst = self._copy_endpoints(args)
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
        on_progress = copy_progress_adapter(view, activity)
        kwargs: dict[str, Any] = {"overwrite": args.force, "on_progress": on_progress}
        if args.recurse:
            kwargs["recurse"] = True
        summary = self._copy_over_session(entry, src, dst, kwargs, view)
        view.finish()
        print(copy_summary(summary, direction, entry.alias))

    def _copy_endpoints(self, args: Any) -> tuple[CopyEndpoint, CopyEndpoint]:
        """SRC and DST read as endpoints; exactly one of them must be in a guest."""
        # IPython splits magic lines non-POSIX (backslashes survive, quotes stay on the word),
        # so "VM:C:\Program Files\x" arrives quoted: unquote before reading the prefix.
        src = parse_copy_endpoint(unquote(args.source), self.sessions.__contains__)
        dst = parse_copy_endpoint(unquote(args.destination), self.sessions.__contains__)
        if src.remote == dst.remote:
            raise UsageError(
                "%vmcopy: exactly one side must be in the guest, written VM:path (default "
                "session) or ALIAS:path, e.g. %vmcopy setup.ps1 VM:C:\\Temp\\setup.ps1"
            )
        return src, dst

    def _copy_over_session(self, entry: SessionEntry, src: CopyEndpoint, dst: CopyEndpoint,
                           kwargs: dict[str, Any], view: hvdisplay.ProgressView
                           ) -> CopyResult:
        """``copy_to``/``copy_from`` in ``entry``'s session; a failure ends the progress view
        and becomes the one-line error ``%vmcopy`` shows."""
        session = entry.session
        try:
            with copy_advice("magic"):  # errors name --force / -r, not the API's keywords
                if dst.remote:
                    return session.copy_to(src.path, dst.path, **kwargs)
                return session.copy_from(src.path, dst.path, **kwargs)
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


def _target_name(args: Any, via: str) -> str:
    """The VM ``%vmconnect`` connects to: NAME, else ``demo`` for the simulator, else the
    recording's name; a :class:`UsageError` when there is none."""
    name = args.name
    if not name and via == "sim":
        name = "demo"
    elif not name and args.replay:
        name = _recording_stem(args.replay)
    if not name:
        raise UsageError("%vmconnect needs the VM name: %vmconnect NAME [-u USER]")
    return str(name)


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
    return bool(os.environ.get(REPLAY_ENV)) and not args.record


def _refuse_powershell_direct_here(name: str) -> None:
    """PowerShell Direct needs a Windows Hyper-V host with CPython 3.12+: say so at once
    instead of asking for the guest's password and failing afterwards."""
    # a Windows host with an older Python hops through a local powershell.exe instead
    # (module attributes, not names: tests stand in for the platform checks)
    if not hvsocket.hvsocket_supported() and not hop.local_hop_applies(name, "auto"):
        raise UsageError(f"Cannot reach {name!r} by PowerShell Direct from here: "
                         + hvsocket.unsupported_platform_message()
                         + f" In a notebook: %vmconnect {name} --host HV01 [--via ssh].")


def _host_arguments(args: Any) -> dict[str, Any]:
    """``--host`` and its options as ``connect(host=..., host_options=...)`` arguments."""
    options = {name: getattr(args, name) for name in ("port", "identity_file")
               if getattr(args, name) is not None}
    return {"host": args.host, "host_username": args.host_user, "host_options": options}


def _connect(target: str, **kwargs: Any) -> SessionLike:
    """:func:`hvmagic.connect` (the magics' one way to open a session; tests replace it)."""
    return connection.connect(target, **kwargs)


def _one_line(text: str) -> str:
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    return lines[0] if lines else "the pipeline failed"


def _empty_frame() -> Any:
    import pandas as pd

    return pd.DataFrame()


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
    "VmMagics",
    "load_ipython_extension",
    "unload_ipython_extension",
]
