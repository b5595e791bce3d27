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

What the magics use lives beside them: :mod:`hvmagic.cell_run` (running a ``%%vmps`` cell,
one session or a fleet, and showing its output live), :mod:`hvmagic.connect_args`
(``%vmconnect``'s options and passwords as connect keywords), :mod:`hvmagic.registry` (named
sessions), :mod:`hvmagic.magic_args` (reading magic lines), :mod:`hvmagic.cellmode` (the
cell-mode transformer), :mod:`hvmagic.vmcopy` (copy endpoints, Copy-VMFile, copy progress),
:mod:`hvmagic.notebook_host` (the guest's prompts), :mod:`hvmagic.fleet_display` (a fleet cell's
streams and its one progress display) and :mod:`hvmagic.magic_errors` (the short exceptions a
failed cell raises).
"""

from __future__ import annotations

import atexit
import re
from collections.abc import Callable, Mapping
from typing import Any

from IPython.core.error import UsageError
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

from hvmagic import connect_args, connection, fleet_factory, fleets
from hvmagic import display as hvdisplay
from hvmagic.cell_run import LAST_RESULT_VAR, CellRunner
from hvmagic.cellmode import PowerShellCellMode
from hvmagic.completion import install as install_completion
from hvmagic.doctor import explain as explain_failure
from hvmagic.errors import (
    FileCopyError,
    HvMagicError,
    RemoteError,
    SessionBrokenError,
    TransportError,
)
from hvmagic.filecopy import advice as copy_advice
from hvmagic.fleets import Target
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
    first_line,
    one_line,
    raise_if_broken,
    session_lost,
)
from hvmagic.registry import SessionEntry, SessionRegistry
from hvmagic.sessionlike import CopyResult, SessionLike
from hvmagic.vmcopy import (
    CopyEndpoint,
    copy_progress_adapter,
    copy_summary,
    copy_vmfile,
    parse_copy_endpoint,
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
        # the host shells --host fleet cells resolve VM names in (Get-VM), by how the hosts
        # are reached: kept across cells like the VMs' sessions, so a cell after the first
        # costs no new connection to each host
        self._host_resolvers: dict[str, fleets.HostShellResolver] = {}
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
        name = connect_args.target_name(args, via)
        alias = args.alias or name
        if (via in ("auto", "direct") and name != "sim" and not args.host
                and not connect_args.replaying(via, args)):
            # before any password prompt, not after
            connect_args.refuse_powershell_direct_here(name)
        kwargs = connect_args.connect_arguments(args, name, via, self._user_value)
        try:
            session = _connect(name, **kwargs)
        except (HvMagicError, OSError, ValueError) as exc:
            explanation = _explain(exc)
            if explanation:
                print(explanation)
            raise UsageError(f"Could not connect to {name!r} ({via}): {first_line(exc)}") from exc
        finally:
            kwargs.clear()  # drop our reference to the password at once
        self._register(SessionEntry(alias, session, name, via))

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
        resolvers, self._host_resolvers = list(self._host_resolvers.values()), {}
        for resolver in resolvers:
            resolver.close()

    def _host_resolver(self, options: Mapping[str, Any]) -> fleets.HostShellResolver:
        """The kept host shells for hosts reached with these connect options (``--via``,
        ``--host-user``, ``--host-options``; a password is not part of the key)."""
        host_options = options.get("host_options") or {}
        # plain values by value, anything else (a credential object ...) by identity
        plain = sorted((str(k), v if isinstance(v, (str, int, float, bool)) else id(v))
                       for k, v in host_options.items())
        key = repr((options.get("via"), options.get("host_username"), plain))
        resolver = self._host_resolvers.get(key)
        if resolver is None:
            resolver = fleets.HostShellResolver(fleets.host_shell_opener(options))
            self._host_resolvers[key] = resolver
        return resolver

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
        self._runner().run(entry, script, parameters=parameters, timeout=timeout,
                           columns=columns, raw=args.raw, out_var=out_var,
                           raise_on_error=raise_on_error)

    def _runner(self) -> CellRunner:
        """The cell runner with this moment's settings (``%config`` applies to the next cell)."""
        return CellRunner(
            self._shell.user_ns, displaylimit=self.displaylimit, show_streams=self.show_streams,
            progress_style=self.progress_style, feedback=self.feedback,
            default_columns=self.default_columns,
        )

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
            adopted: dict[str | Target, SessionLike] = self.sessions.kept_on_hosts(hosts)
            options, credentials = connect_args.fleet_host_arguments(args, self._user_value)
        else:
            try:
                by_alias = self.sessions.fleet_targets(fleets.split_targets(unquote(spec)))
            except LookupError as exc:
                raise UsageError(str(exc)) from None
            targets = list(by_alias)
            adopted = {a: s for a, s in by_alias.items() if s is not None}
        connected: list[tuple[Target, SessionLike]] = []

        def connect(target: Target, **kwargs: Any) -> SessionLike:  # targets without a session
            if target.host is not None:
                kwargs.setdefault("host", target.host)
            session = _connect(target.name, **kwargs)
            connected.append((target, session))
            return session

        runner = self._runner()
        fl = fleet_factory.fleet(
            targets, host=hosts, sessions=adopted, connect=connect, connect_options=options,
            credentials=credentials, throttle=args.throttle or fleets.DEFAULT_THROTTLE,
            resolver=self._host_resolver(options) if hosts else None,
        )
        try:
            result = runner.run_fleet(fl, script, parameters=parameters, timeout=timeout)
        finally:
            self._keep_fleet_sessions(connected, args.via or "auto")
            fl.close(keep_sessions=True)  # the VMs' sessions and the host shells stay
        if hosts and not len(result):
            raise UsageError(f"no running VM matches {unquote(spec)!r} on "
                             f"{', '.join(hosts)} (Get-VM on each host)")
        runner.finish_fleet(result, parse_columns(args.columns or self.default_columns),
                            out_var, self.raise_on_error and not args.no_raise)

    def _keep_fleet_sessions(self, connected: list[tuple[Target, SessionLike]], via: str
                             ) -> None:
        """Sessions a fleet connected persist across cells, by target label (``web1``, or
        ``hv01/web1`` through a host), not as the default."""
        for target, session in connected:
            replaced = self.sessions.add(SessionEntry(target.label, session, target.name, via),
                                         make_default=False)
            if replaced is not None and replaced.session is not session:
                self._close_quietly(replaced)

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
            raise_if_broken(session, entry.alias, "the kernel was interrupted during the copy")
            print(f"Copy stopped (interrupted); session {entry.alias!r} is still usable.")
            raise PipelineStopped("the kernel was interrupted; the copy was stopped") from None
        except FileExistsError as exc:
            view.finish()
            raise UsageError(f"%vmcopy: {first_line(exc)}") from None
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as exc:
            view.finish()
            raise UsageError(f"%vmcopy: {first_line(exc)}") from None
        except FileCopyError as exc:  # integrity mismatch and other copy failures
            view.finish()
            raise CopyFailedError(first_line(exc)) from None
        except (SessionBrokenError, TransportError) as exc:
            view.finish()
            raise session_lost(entry.alias, exc) from None
        except RemoteError as exc:
            view.finish()
            if exc.record is not None:
                hvdisplay.publish(hvdisplay.render_error(exc.record))
            raise PowerShellError(one_line(str(exc)), record=exc.record) from None

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
            raise UsageError(f"%{name}: {first_line(exc)}") from None
        if "-h" in words or "--help" in words:
            print(parser.format_help().rstrip())
            return None
        try:
            return parse_argstring(magic, line)
        except UsageError as exc:
            message = first_line(exc)
            unknown = _UNRECOGNIZED.search(message)
            if unknown is not None:
                options = [o for a in parser._actions for o in a.option_strings]
                raise UsageError(
                    explain_unknown_arguments(name, unknown.group(1).split(), options)
                ) from None
            raise UsageError(f"%{name}: {message}") from None
        except ValueError as exc:  # unbalanced quotes from the splitter
            raise UsageError(f"%{name}: {first_line(exc)}") from None

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


def _connect(target: str, **kwargs: Any) -> SessionLike:
    """:func:`hvmagic.connect` (the magics' one way to open a session; tests replace it)."""
    return connection.connect(target, **kwargs)



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
