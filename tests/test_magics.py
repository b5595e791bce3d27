"""The magics in an in-process IPython shell: parsing, sessions, display, errors, cell mode.

A small double of :class:`hvmagic.session.Session` (same documented API: ``run`` with
``parameters``/``timeout``/``on_event``, ``Result`` fields, ``copy_to``/``copy_from``) lets these
tests see exactly what the magics hand to the session; ``test_notebooks_kernel.py`` runs the same
magics in a real kernel against the demo guest.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output

from hvmagic import magics as hvmagics
from hvmagic.cellmode import PowerShellCellMode
from hvmagic.clixml.values import (
    ErrorRecord,
    InformationalRecord,
    ProgressRecord,
    PSCredential,
    PSObject,
    SecureString,
)
from hvmagic.errors import (
    CredentialError,
    PipelineTimeoutError,
    RemoteError,
    SessionBrokenError,
)
from hvmagic.magic_args import (
    parse_columns,
    parse_names,
    split_leading_options,
    strip_magic_comment,
)
from hvmagic.magic_errors import PipelineStopped, PowerShellError, SessionLostError
from hvmagic.notebook_host import NotebookHostUI
from hvmagic.registry import SessionEntry, SessionRegistry
from hvmagic.vmcopy import CopyEndpoint, copy_vmfile, parse_copy_endpoint

HOSTILE = ["'; Remove-Item C:\\ -Recurse; '", "$(Stop-Computer -Force)", '"; exit; "', "{x} $x `n"]


def service(name: str, status: str = "Running") -> PSObject:
    return PSObject({"Name": name, "Status": status, "DisplayName": name.upper()},
                    ["Deserialized.System.ServiceProcess.ServiceController"])


def error(message: str) -> ErrorRecord:
    return ErrorRecord(
        {"Exception": PSObject({"Message": message}), "FullyQualifiedErrorId": "Boom",
         "ErrorCategory_Category": 7},
        ["Deserialized.System.Management.Automation.ErrorRecord"],
    )


@dataclass
class FakeResult:
    output: list[Any] = field(default_factory=list)
    errors: list[Any] = field(default_factory=list)
    state: str = "Completed"
    ps_version: Any = None

    @property
    def had_errors(self) -> bool:
        return bool(self.errors) or self.state == "Failed"

    def frame(self, columns: Any = "default") -> pd.DataFrame:
        rows = [dict(v) for v in self.output]
        frame = pd.DataFrame(rows)
        if columns == "default":
            return frame[["Status", "Name", "DisplayName"]]
        if columns == "all":
            return frame
        return frame[list(columns)]


Behaviour = Callable[[str, dict[str, Any], Callable[[str, Any], None]], FakeResult]


class FakeSession:
    """Records every call; ``behaviour`` decides what a run produces."""

    def __init__(self, name: str = "demo", behaviour: Behaviour | None = None) -> None:
        self.name = name
        self.description = f"FAKE guest {name!r}"
        self.broken = False
        self.closed = False
        self.runs: list[dict[str, Any]] = []
        self.copies: list[tuple[str, str, str, dict[str, Any]]] = []
        self.behaviour = behaviour or (lambda s, p, e: FakeResult([service("vmms")]))

    def run(self, script: str, parameters: dict[str, Any] | None = None,
            timeout: float | None = None,
            on_event: Callable[[str, Any], None] | None = None) -> FakeResult:
        self.runs.append({"script": script, "parameters": parameters, "timeout": timeout})
        return self.behaviour(script, parameters or {}, on_event or (lambda s, r: None))

    def copy_to(self, local: str, remote: str, **kw: Any) -> Any:
        from hvmagic.filecopy import CopiedFile, CopyProgress, CopyResult

        self.copies.append(("to", local, remote, kw))
        kw["on_progress"](CopyProgress(local, remote, 512, 1024, 512, 1024, 0, 1))
        kw["on_progress"](CopyProgress(local, remote, 1024, 1024, 1024, 1024, 1, 1))
        return CopyResult([CopiedFile(local, remote, 1024, "00" * 32)], seconds=0.5)

    def copy_from(self, remote: str, local: str, **kw: Any) -> Any:
        from hvmagic.filecopy import CopyResult

        self.copies.append(("from", remote, local, kw))
        if remote.endswith("missing.txt"):
            raise FileNotFoundError(f"guest path not found: {remote}")
        return CopyResult([], seconds=0.0)

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def ip() -> Iterator[InteractiveShell]:
    shell = InteractiveShell.instance()
    shell.config.pop("VmMagics", None)  # %config in one test must not leak into the next
    shell.extension_manager.load_extension("hvmagic")
    yield shell
    shell.extension_manager.unload_extension("hvmagic")
    shell.user_ns.pop("_vmps_result", None)
    shell.config.pop("VmMagics", None)


@pytest.fixture
def session(ip: InteractiveShell) -> FakeSession:
    fake = FakeSession()
    ip.user_ns["fake_session"] = fake
    with capture_output():
        ip.run_line_magic("vmconnect", "demo --session fake_session")
    return fake


def magics_of(ip: InteractiveShell) -> hvmagics.VmMagics:
    return ip._hvmagic_magics  # type: ignore[attr-defined, no-any-return]


def run_cell(ip: InteractiveShell, code: str) -> tuple[Any, Any]:
    with capture_output() as captured:
        result = ip.run_cell(code)
    return result, captured


# ---------------------------------------------------------------------------- pure helpers


def test_split_leading_options_keeps_powershell_parameters() -> None:
    split = split_leading_options
    opts, flags = hvmagics._VMPS_VALUE_OPTIONS, hvmagics._VMPS_FLAG_OPTIONS
    assert split("-o svc Get-ChildItem -Recurse C:\\x", opts, flags) == (
        "-o svc", "Get-ChildItem -Recurse C:\\x")
    assert split('--columns "Name,Status" --raw gsv "a b"', opts, flags) == (
        '--columns "Name,Status" --raw', 'gsv "a b"')
    assert split("--timeout=5 -- -o is PowerShell here", opts, flags) == (
        "--timeout=5", "-o is PowerShell here")
    assert split("Get-Service", opts, flags) == ("", "Get-Service")
    assert split("-o", opts, flags) == ("-o", "")


def test_parse_columns_and_names() -> None:
    assert parse_columns(None) == "default"
    assert parse_columns("ALL") == "all"
    assert parse_columns(" Name, Status ") == ["Name", "Status"]
    with pytest.raises(UsageError):
        parse_columns(",")
    assert parse_names("a, b_2, größe", "--with") == ["a", "b_2", "größe"]
    with pytest.raises(UsageError, match="not a Python variable name"):
        parse_names("a,$(x)", "--with")
    with pytest.raises(UsageError):
        parse_names("class", "--with")


def test_copy_endpoints() -> None:
    def known(alias: str) -> bool:
        return alias.lower() == "web01"

    parse = parse_copy_endpoint
    assert parse("VM:C:\\Temp\\a.txt", known) == CopyEndpoint("C:\\Temp\\a.txt", "")
    assert parse("vm:/tmp/x", known).session_ref == ""
    assert parse("WEB01:C:\\x", known) == CopyEndpoint("C:\\x", "WEB01")
    assert parse("C:\\Temp\\a.txt", known) == CopyEndpoint("C:\\Temp\\a.txt")
    assert not parse("other:x", known).remote
    assert not parse("./data/file.csv", known).remote


def test_session_registry() -> None:
    reg = SessionRegistry()
    with pytest.raises(LookupError, match="connect first"):
        reg.get()
    a, b = FakeSession("a"), FakeSession("b")
    assert reg.add(SessionEntry("A", a, "a", "sim")) is None
    reg.add(SessionEntry("B", b, "b", "sim"))
    assert reg.get().session is b and reg.get("a").session is a  # case-insensitive
    reg.use("a")
    assert reg.default is not None and reg.default.alias == "A"
    replaced = reg.add(SessionEntry("b", FakeSession("b2"), "b", "sim"))
    assert replaced is not None and replaced.session is b
    reg.remove("B")
    assert reg.get().alias == "A" and "b" not in reg and len(reg) == 1
    with pytest.raises(LookupError, match=r"No session named 'zz' \(sessions: A\)"):
        reg.get("zz")


def test_cell_mode_transformer() -> None:
    mode = PowerShellCellMode()
    cell = ["Get-Service\n", "| Select Name\n"]
    assert mode(cell) == cell  # disabled
    mode.enabled = True
    assert mode(cell) == ["%%vmps\n", *cell]
    for untouched in (["%vmps_mode off\n"], ["  %%time\n", "x"], ["!ls\n"], ["#py\n", "x = 1\n"],
                      ["# Parameters\n", "vm = 'x'\n"], ["\n", "   \n"]):
        assert mode(untouched) == untouched


def test_copy_vmfile_outside_windows_and_with_injected_powershell() -> None:
    with pytest.raises(UsageError, match="runs on the Hyper-V host itself"):
        copy_vmfile("web01", "a.txt", "C:\\a.txt", platform="linux")

    calls: list[dict[str, Any]] = []

    @dataclass
    class Done:
        returncode: int
        stdout: str
        stderr: str = ""

    def fake_run(answer: Done) -> Callable[..., Done]:
        def run(argv: list[str], **kw: Any) -> Done:
            calls.append({"argv": argv, "env": kw["env"]})
            return answer
        return run

    evil = "x'; Remove-Item C:\\ -Recurse; '"
    summary = copy_vmfile("web01", evil, "C:\\in\\a.txt", force=True, platform="win32",
                                   run=fake_run(Done(0, "HVMAGIC-GSI-OK\n")))
    assert "Copy-VMFile" in summary
    argv, env = calls[-1]["argv"], calls[-1]["env"]
    assert argv[:4] == ["powershell.exe", "-NoProfile", "-NonInteractive", "-EncodedCommand"]
    # the hostile path travels in the environment, never in the script text
    import base64
    script = base64.b64decode(argv[4]).decode("utf-16-le")
    assert evil not in script and "Remove-Item" not in script
    assert env["HVMAGIC_GSI_SRC"] == evil and env["HVMAGIC_GSI_FORCE"] == "1"
    with pytest.raises(UsageError, match="Guest Service Interface integration service of VM "
                                         "'web01' is disabled; enable it with"):
        copy_vmfile("web01", "a", "b", platform="win32",
                             run=fake_run(Done(4, "HVMAGIC-GSI-DISABLED\n")))
    with pytest.raises(UsageError, match="not a Hyper-V host"):
        copy_vmfile("web01", "a", "b", platform="win32",
                             run=fake_run(Done(3, "HVMAGIC-NO-HYPERV\n")))
    with pytest.raises(UsageError, match=r"Copy-VMFile failed \(exit 1\): Copy-VMFile : denied"):
        copy_vmfile("web01", "a", "b", platform="win32",
                             run=fake_run(Done(1, "", "Copy-VMFile : denied\n")))


# ---------------------------------------------------------------------------- in a shell


def test_every_magic_is_registered_documented_and_no_var_expand(ip: InteractiveShell) -> None:
    for name in ("vmconnect", "vmsessions", "vmuse", "vmclose", "vmps", "vmcopy", "vmps_mode",
                 "vmcellmode"):
        magic = ip.find_line_magic(name)
        assert magic is not None, name
        assert getattr(magic, "_ipython_magic_no_var_expand", False), name
        shown = "%vmps_mode" if name == "vmcellmode" else f"%{name}"
        assert shown in (magic.__doc__ or ""), name
    assert ip.find_cell_magic("vmps") is not None
    assert "--with" in (ip.find_line_magic("vmps").__doc__ or "")


def test_config_traitlets(ip: InteractiveShell) -> None:
    m = magics_of(ip)
    assert m in ip.configurables
    ip.run_line_magic("config", "VmMagics.displaylimit = 3")
    ip.run_line_magic("config", "VmMagics.progress_style = 'text'")
    assert m.displaylimit == 3 and m.progress_style == "text"
    assert (m.raise_on_error, m.default_columns, m.default_timeout) == (True, "default", None)
    assert m.show_streams == ["warning", "verbose", "debug", "information", "host"]
    with capture_output() as captured:
        ip.run_line_magic("config", "VmMagics")
    for trait in ("displaylimit", "raise_on_error", "progress_style", "default_columns",
                  "default_timeout", "show_streams"):
        assert trait in captured.stdout
    from traitlets import TraitError
    with pytest.raises(TraitError):
        m.progress_style = "fancy"
    with pytest.raises(TraitError, match="unknown stream"):
        m.show_streams = ["warning", "output"]
    ip.run_line_magic("config", "VmMagics.show_streams = ['warning']")
    assert m.show_streams == ["warning"]


def test_usage_errors_are_one_line(ip: InteractiveShell) -> None:
    for line_magic, line in [("vmps", "Get-Service"), ("vmuse", "nope"), ("vmclose", ""),
                             ("vmconnect", ""), ("vmps_mode", "on"), ("vmcopy", "a b")]:
        with pytest.raises(UsageError) as info:
            ip.run_line_magic(line_magic, line)
        assert "\n" not in str(info.value), line_magic
    with pytest.raises(UsageError, match="%vmconnect: argument --via: invalid choice"):
        ip.run_line_magic("vmconnect", "x --via telnet")


def test_vmps_verbatim_script_parameters_and_output(ip: InteractiveShell,
                                                    session: FakeSession) -> None:
    ip.user_ns.update(name="vm*", evil=HOSTILE[0])
    result, captured = run_cell(
        ip, "%%vmps -o svc --with name,evil --timeout 7\n"
            "Get-Service -Name $name | Where-Object { $_.Name -like \"{x}$evil\" }\n")
    assert result.success, result.error_in_exec
    run = session.runs[-1]
    assert run["script"] == (
        "Get-Service -Name $name | Where-Object { $_.Name -like \"{x}$evil\" }\n")
    assert run["parameters"] == {"name": "vm*", "evil": HOSTILE[0]}
    assert run["timeout"] == 7
    frame = ip.user_ns["svc"]
    assert list(frame.columns) == ["Status", "Name", "DisplayName"]
    assert frame.iloc[0].tolist() == ["Running", "vmms", "VMMS"]
    html = captured.outputs[-1].data["text/html"]
    assert "<td>vmms</td>" in html and "hvmagic-frame" in html
    assert ip.user_ns["_vmps_result"].output[0]["Name"] == "vmms"


@pytest.mark.parametrize("hostile", HOSTILE)
def test_with_hostile_strings_travel_as_parameters(ip: InteractiveShell, session: FakeSession,
                                                   hostile: str) -> None:
    ip.user_ns["payload"] = hostile
    ip.run_line_magic("vmps", "--with payload Write-Output $payload")
    assert session.runs[-1] == {"script": "Write-Output $payload",
                                "parameters": {"payload": hostile}, "timeout": None}


def test_line_magic_option_parsing_and_text_output(ip: InteractiveShell,
                                                   session: FakeSession) -> None:
    session.behaviour = lambda s, p, e: FakeResult(["first", "second"])
    with capture_output() as captured:
        ip.run_line_magic("vmps", "-o lines Get-Content -Path C:\\log.txt -Tail 2")
    assert session.runs[-1]["script"] == "Get-Content -Path C:\\log.txt -Tail 2"
    assert ip.user_ns["lines"] == ["first", "second"]
    assert captured.outputs[-1].data["text/plain"] == "first\nsecond"


def test_columns_limit_and_raw(ip: InteractiveShell, session: FakeSession) -> None:
    session.behaviour = lambda s, p, e: FakeResult([service(f"s{i}") for i in range(30)])
    ip.run_line_magic("config", "VmMagics.displaylimit = 5")
    _, captured = run_cell(ip, "%%vmps -o all_cols --columns all\nGet-Service\n")
    bundle = captured.outputs[-1].data
    assert "showing 5 of 30 rows; all 30 are in `all_cols`" in bundle["text/plain"]
    assert "<td>s4</td>" in bundle["text/html"] and "<td>s5</td>" not in bundle["text/html"]
    assert len(ip.user_ns["all_cols"]) == 30
    _, captured = run_cell(ip, "%%vmps\nGet-Service\n")
    assert "showing 5 of 30 rows; all 30 are in `_vmps_result.frame()`" in (
        captured.outputs[-1].data["text/plain"])
    assert len(ip.user_ns["_vmps_result"].frame()) == 30
    run_cell(ip, "%%vmps -o two --columns Name,Status\nGet-Service\n")
    assert list(ip.user_ns["two"].columns) == ["Name", "Status"]
    run_cell(ip, "%%vmps -o raw --raw\nGet-Service\n")
    assert isinstance(ip.user_ns["raw"], list) and ip.user_ns["raw"][0]["Name"] == "s0"


def test_live_streams_progress_and_errors_then_short_raise(ip: InteractiveShell,
                                                          session: FakeSession) -> None:
    def behaviour(script: str, params: dict[str, Any], emit: Callable[[str, Any], None]) -> Any:
        emit("verbose", InformationalRecord({"InformationalRecord_Message": "starting"}))
        emit("progress", ProgressRecord("Work", 1, "half", percent_complete=50))
        err = error("disk C: is full")
        emit("error", err)
        emit("progress", ProgressRecord("Work", 1, "done", record_type="Completed"))
        emit("host", "done\n")
        return FakeResult([service("a")], errors=[err])

    session.behaviour = behaviour
    result, captured = run_cell(ip, "%%vmps -o out\nDo-Work -Verbose\n")
    texts = [o.data.get("text/plain", "") for o in captured.outputs]
    assert "VERBOSE: starting" in texts
    assert any(t.startswith("disk C: is full") for t in texts)
    assert texts.count("done") == 1
    exc = result.error_in_exec
    assert isinstance(exc, PowerShellError) and isinstance(exc, RemoteError)
    assert exc._render_traceback_() == [
        "PowerShellError: 1 error(s) in the pipeline (shown above); use --no-raise or "
        "%config VmMagics.raise_on_error = False to continue past errors"]
    assert exc.errors[0].message == "disk C: is full"
    assert "out" in ip.user_ns  # the output is bound before the cell raises
    result, _ = run_cell(ip, "%%vmps --no-raise\nDo-Work\n")
    assert result.success
    ip.run_line_magic("config", "VmMagics.raise_on_error = False")
    result, _ = run_cell(ip, "%%vmps\nDo-Work\n")
    assert result.success


def test_terminating_error_timeout_interrupt_and_lost_session(ip: InteractiveShell,
                                                              session: FakeSession) -> None:
    failing = error("Cannot find path 'C:\\nope' because it does not exist.")

    def terminating(script: str, params: dict[str, Any], emit: Any) -> Any:
        raise RemoteError("Cannot find path", record=failing,
                          result=FakeResult(["partial"], state="Failed"))

    session.behaviour = terminating
    result, captured = run_cell(ip, "%%vmps\nGet-Item C:\\nope -ErrorAction Stop\n")
    texts = [o.data.get("text/plain", "") for o in captured.outputs]
    assert texts[0] == "partial"
    assert texts[1].startswith("Cannot find path 'C:\\nope' because it does not exist.")
    assert "FullyQualifiedErrorId : Boom" in texts[1]
    exc = result.error_in_exec
    assert isinstance(exc, PowerShellError) and exc.record is failing
    assert str(exc) == "the cell failed with a terminating error (shown above)"

    def slow(script: str, params: dict[str, Any], emit: Any) -> Any:
        raise PipelineTimeoutError("timed out", result=FakeResult([]))

    session.behaviour = slow
    result, _ = run_cell(ip, "%%vmps --timeout 0.5\nStart-Sleep 60\n")
    assert str(result.error_in_exec) == (
        "Pipeline stopped after the 0.5 s timeout; session 'demo' is still usable")

    def interrupted(script: str, params: dict[str, Any], emit: Any) -> Any:
        raise KeyboardInterrupt

    session.behaviour = interrupted
    result, captured = run_cell(ip, "%%vmps\nStart-Sleep 60\n")
    assert isinstance(result.error_in_exec, PipelineStopped)
    assert "Pipeline stopped (interrupted); session 'demo' is still usable." in captured.stdout

    def lost(script: str, params: dict[str, Any], emit: Any) -> Any:
        raise SessionBrokenError("transport closed")

    session.behaviour = lost
    result, _ = run_cell(ip, "%%vmps\nRestart-Computer\n")
    assert str(result.error_in_exec) == (
        "session 'demo' lost its connection (transport closed); reconnect with %vmconnect")
    with pytest.raises(UsageError, match="--timeout must be positive"):
        ip.run_cell_magic("vmps", "--timeout -1", "x")
    with pytest.raises(UsageError, match="name 'nothere' is not defined"):
        ip.run_cell_magic("vmps", "--with nothere", "x")


def test_timeout_or_interrupt_with_a_failed_stop_does_not_claim_the_session_is_usable(
        ip: InteractiveShell, session: FakeSession) -> None:
    def timeout_then_broken(script: str, params: dict[str, Any], emit: Any) -> Any:
        session.broken = True  # the stop got no answer: Session marks itself broken
        raise PipelineTimeoutError("timed out", result=FakeResult(["partial"], state="Stopped"))

    session.behaviour = timeout_then_broken
    result, captured = run_cell(ip, "%%vmps --timeout 0.5\nStart-Sleep 60\n")
    exc = result.error_in_exec
    assert isinstance(exc, SessionLostError)
    assert str(exc) == (
        "the pipeline ran past the 0.5 s timeout and the pipeline could not be stopped cleanly; "
        "session 'demo' is broken — reconnect with %vmconnect")
    assert "still usable" not in captured.stdout

    def interrupt_then_broken(script: str, params: dict[str, Any], emit: Any) -> Any:
        session.broken = True
        raise KeyboardInterrupt

    session.behaviour = interrupt_then_broken
    result, captured = run_cell(ip, "%%vmps\nStart-Sleep 60\n")
    exc = result.error_in_exec
    assert isinstance(exc, SessionLostError)
    assert "the kernel was interrupted and the pipeline could not be stopped" in str(exc)
    assert "still usable" not in captured.stdout

    def copy_interrupted(local: str, remote: str, **kw: Any) -> Any:
        session.broken = True
        raise KeyboardInterrupt

    session.copy_to = copy_interrupted  # type: ignore[method-assign]
    with capture_output() as captured, pytest.raises(SessionLostError,
                                                     match="interrupted during the copy"):
        ip.run_line_magic("vmcopy", "a.txt VM:C:\\a.txt")
    assert "still usable" not in captured.stdout


def test_timeout_whose_stop_is_ignored_reports_a_broken_session(
        ip: InteractiveShell, monkeypatch: pytest.MonkeyPatch) -> None:
    from hvmagic import session as hvsession
    from hvmagic.testing import FakeGuest

    class SignalLost:
        """A link that loses every Signal line: the guest never hears of the stop."""

        def __init__(self, inner: Any) -> None:
            self.inner = inner
            self.description = inner.description

        def send(self, data: bytes) -> None:
            kept = b"".join(line for line in data.splitlines(keepends=True)
                            if not line.startswith(b"<Signal"))
            if kept:
                self.inner.send(kept)

        def recv(self) -> bytes:
            return self.inner.recv()  # type: ignore[no-any-return]

        def close(self) -> None:
            self.inner.close()

    monkeypatch.setattr(hvsession, "STOP_TIMEOUT", 0.3)
    with FakeGuest() as guest:
        @guest.handle("Stubborn")
        def stubborn(ctx: Any) -> None:
            time.sleep(1)

        sess = hvsession.open_session(SignalLost(guest.transport()), name="st", timeout=10)
        ip.user_ns["stubborn_session"] = sess
        with capture_output():
            ip.run_line_magic("vmconnect", "st --session stubborn_session")
        result, captured = run_cell(ip, "%%vmps --timeout 0.2\nStubborn\n")
        exc = result.error_in_exec
        assert isinstance(exc, SessionLostError)
        assert "session 'st' is broken" in str(exc)
        assert "still usable" not in captured.stdout + str(exc)
        assert sess.broken
        with capture_output():
            ip.run_line_magic("vmclose", "st")


def test_sessions_use_close(ip: InteractiveShell, session: FakeSession) -> None:
    other = FakeSession("web01")
    ip.user_ns["other"] = other
    with capture_output() as captured:
        ip.run_line_magic("vmconnect", "--session other --alias web")
    assert captured.stdout == (
        "Connected 'web' (an existing Session object): FAKE guest 'web01'. "
        "It is the default session.\n")
    ip.run_cell_magic("vmps", "demo", "hostname\n")
    assert session.runs and not other.runs
    ip.run_line_magic("vmps", "-s web hostname")
    assert other.runs[-1]["script"] == "hostname"
    with capture_output() as captured:
        ip.run_line_magic("vmsessions", "")
    lines = captured.outputs[-1].data["text/plain"].splitlines()
    assert lines[2].startswith("   demo") and lines[3].startswith("*  web")
    with capture_output() as captured:
        ip.run_line_magic("vmuse", "demo")
        ip.run_line_magic("vmclose", "")
    assert "Closed demo; default session is now web" in captured.stdout
    assert session.closed
    with capture_output() as captured:
        ip.run_line_magic("vmclose", "--all")
    assert other.closed and "Closed 1 session(s): web" in captured.stdout


def test_vmconnect_calls_connect_with_password_from_env(ip: InteractiveShell,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[dict[str, Any]] = []

    def fake_connect(target: str, **kw: Any) -> FakeSession:
        seen.append({"target": target, **kw})
        return FakeSession(target)

    monkeypatch.setattr(hvmagics, "_connect", fake_connect)
    on_a_hyperv_host(monkeypatch)
    monkeypatch.setenv("MY_VM_PW", "Sup3r-Secret!")
    with capture_output() as captured:
        ip.run_line_magic("vmconnect", "mgmtvm -u CORP\\admin --password-env MY_VM_PW "
                                       "--configuration JEA --alias m --record r.yml")
    kw = seen[-1]
    assert kw["target"] == "mgmtvm" and kw["via"] == "auto" and kw["username"] == "CORP\\admin"
    assert isinstance(kw["password"], SecureString)
    assert kw["password"].reveal() == "Sup3r-Secret!"
    assert kw["configuration"] == "JEA" and kw["record"] == "r.yml"
    assert "Sup3r-Secret!" not in captured.stdout + captured.stderr
    assert captured.stdout == "Connected 'm': FAKE guest 'mgmtvm'. It is the default session.\n"
    with capture_output():
        ip.run_line_magic("vmconnect", "--replay runs/triage.hvrec.json -u admin --wait 30")
    assert seen[-1]["target"] == "triage" and seen[-1]["via"] == "replay"
    assert seen[-1]["replay"] == "runs/triage.hvrec.json" and seen[-1]["wait"] == 30
    assert seen[-1]["username"] == "admin" and "password" not in seen[-1]
    # replaying a whole notebook from the environment: no password is asked either (CI has no
    # stdin), unless this connection records
    monkeypatch.setenv("HVMAGIC_REPLAY", "runs")
    monkeypatch.setattr("getpass.getpass", lambda prompt="": pytest.fail("prompted"))
    monkeypatch.delenv("HVMAGIC_PASSWORD", raising=False)
    with capture_output():
        ip.run_line_magic("vmconnect", "mgmtvm -u admin")
    assert seen[-1]["username"] == "admin" and "password" not in seen[-1]
    monkeypatch.delenv("HVMAGIC_REPLAY")
    # nor for the demo guest "sim" that runbooks default to, which logs nobody on
    with capture_output():
        ip.run_line_magic("vmconnect", "sim -u admin")
        ip.run_line_magic("vmconnect", "sim -u admin --via sim")
    assert seen[-1]["via"] == "sim" and "password" not in seen[-1]
    assert seen[-2]["target"] == "sim" and "password" not in seen[-2]
    # getpass (through hvmagic.credentials) when no other source has one
    monkeypatch.delenv("HVMAGIC_PASSWORD", raising=False)
    monkeypatch.setattr("getpass.getpass", lambda prompt="": "typed-pw")
    with capture_output():
        ip.run_line_magic("vmconnect", "vm2 -u admin --via direct")
    assert seen[-1]["password"].reveal() == "typed-pw" and seen[-1]["via"] == "direct"
    # a PSCredential variable
    ip.user_ns["cred"] = PSCredential("admin", "from-cred")
    with capture_output():
        ip.run_line_magic("vmconnect", "vm3 --credential cred --via process")
    assert seen[-1]["credential"].password.reveal() == "from-cred"
    with pytest.raises(UsageError, match="is a str, not a PSCredential"):
        ip.user_ns["notcred"] = "x"
        ip.run_line_magic("vmconnect", "vm3 --credential notcred")
    with pytest.raises(UsageError, match="environment variable NOPE_PW is not set"):
        ip.run_line_magic("vmconnect", "vm4 -u a --password-env NOPE_PW")
    # no password anywhere is obtainable from a frontend that cannot prompt
    from IPython.core.error import StdinNotImplementedError

    def no_stdin(prompt: str = "") -> str:
        raise StdinNotImplementedError("no stdin")

    monkeypatch.setattr("getpass.getpass", no_stdin)
    with pytest.raises(UsageError, match="this frontend cannot prompt; use --password-env"):
        ip.run_line_magic("vmconnect", "vm5 -u admin")


def on_a_hyperv_host(monkeypatch: pytest.MonkeyPatch) -> None:
    """What %vmconnect sees on a Windows Hyper-V host with CPython 3.12+ (AF_HYPERV exists)."""
    monkeypatch.setattr("hvmagic.transports.hvsocket.hvsocket_supported", lambda: True)


def test_vmconnect_explains_powershell_direct_needs_a_hyperv_host_before_any_prompt(
    ip: InteractiveShell, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("hvmagic.transports.hvsocket.hvsocket_supported", lambda: False)
    monkeypatch.delenv("HVMAGIC_PASSWORD", raising=False)
    monkeypatch.setattr("getpass.getpass", lambda prompt="": pytest.fail("asked for a password"))
    monkeypatch.setattr(hvmagics, "_connect", lambda *a, **k: pytest.fail("tried to connect"))
    for line in ("web01 -u admin", "web01 -u admin --via direct"):
        with capture_output() as captured, pytest.raises(UsageError) as info:
            ip.run_line_magic("vmconnect", line)
        message = str(info.value)
        assert message.startswith("Cannot reach 'web01' by PowerShell Direct from here:")
        assert "Windows with Python 3.12" in message and "\n" not in message
        assert captured.stdout == ""  # said once, in the error


def test_magic_options_are_strict_and_help_is_help(
    ip: InteractiveShell, session: FakeSession
) -> None:
    for line in ("--help", "-h"):
        with capture_output() as captured:
            ip.run_line_magic("vmps", line)
        assert captured.stdout.lstrip(": \n").startswith("%vmps [-o VAR]")
        assert "--timeout" in captured.stdout
    assert session.runs == []  # help never reaches PowerShell
    with pytest.raises(UsageError) as info:
        ip.run_line_magic("vmps", "--timout 5 Get-Service")
    assert str(info.value) == (
        "%vmps: unknown option --timout (did you mean --timeout?); %vmps -h lists the options"
    )
    with pytest.raises(UsageError, match=r"unknown option --colums \(did you mean --columns\?\)"):
        ip.run_cell_magic("vmps", "--colums all", "Get-Service")
    with pytest.raises(UsageError) as info:
        ip.run_cell_magic("vmps", "Get-Service W32Time", "Get-Process")
    assert str(info.value).startswith(
        "%%vmps: the script goes in the cell body: put 'Get-Service W32Time' on the line below"
    )
    assert session.runs == []
    # PowerShell that merely starts with a dash stays PowerShell
    with capture_output():
        ip.run_line_magic("vmps", "--$i")
        ip.run_line_magic("vmps", "-not $true")
    assert [r["script"] for r in session.runs[-2:]] == ["--$i", "-not $true"]


def test_a_comment_on_a_magic_line_is_not_an_argument(
    ip: InteractiveShell, session: FakeSession
) -> None:
    with capture_output():
        ip.run_cell_magic("vmps", "demo -o names   # the names, for later", "Get-Service")
    assert session.runs[-1]["script"] == "Get-Service"
    assert "names" in ip.user_ns
    with capture_output():
        ip.run_line_magic("vmuse", "demo  # back to the demo")
    assert strip_magic_comment("x '#not a comment' # comment") == "x '#not a comment'"
    assert strip_magic_comment("a#b") == "a#b"


def test_vmconnect_failure_shows_doctor_advice(ip: InteractiveShell,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from hvmagic import doctor

    def refusing(target: str, **kw: Any) -> Any:
        raise CredentialError("The credential is invalid.")

    monkeypatch.setattr(hvmagics, "_connect", refusing)
    on_a_hyperv_host(monkeypatch)
    monkeypatch.setenv("HVMAGIC_PASSWORD", "pw")
    with capture_output() as captured, pytest.raises(UsageError) as info:
        ip.run_line_magic("vmconnect", "vm -u admin --via direct")
    assert str(info.value) == "Could not connect to 'vm' (direct): The credential is invalid."
    assert doctor.explain(CredentialError("x")) in captured.stdout


def test_vmcopy_directions_and_errors(ip: InteractiveShell, session: FakeSession,
                                      tmp_path: Any) -> None:
    with capture_output() as captured:
        ip.run_line_magic("vmcopy", "--force setup.ps1 VM:C:\\Temp\\setup.ps1")
    direction, local, remote, kw = session.copies[-1]
    assert (direction, local, remote) == ("to", "setup.ps1", "C:\\Temp\\setup.ps1")
    assert kw["overwrite"] is True and "recurse" not in kw
    assert captured.stdout.endswith(
        "Copied 1 file(s), 1.0 KB to 'demo' in 0.50 s; SHA-256 verified\n")
    with capture_output():
        ip.run_line_magic("vmcopy", "-r demo:C:\\Logs\\*.log ./logs")
    direction, remote, local, kw = session.copies[-1]
    assert (direction, remote, local, kw["recurse"], kw["overwrite"]) == (
        "from", "C:\\Logs\\*.log", "./logs", True, False)
    with pytest.raises(UsageError, match="exactly one side must be in the guest"):
        ip.run_line_magic("vmcopy", "VM:a VM:b")
    with pytest.raises(UsageError, match="guest path not found"):
        ip.run_line_magic("vmcopy", "VM:C:\\missing.txt x")
    with pytest.raises(UsageError, match="host → guest only"):
        ip.run_line_magic("vmcopy", "--gsi VM:C:\\a.txt a.txt")


def test_cell_mode_runs_plain_cells_as_powershell(ip: InteractiveShell,
                                                  session: FakeSession) -> None:
    session.behaviour = lambda s, p, e: FakeResult(["ok"])
    with capture_output() as captured:
        ip.run_line_magic("vmps_mode", "on")
    assert "PowerShell cell mode on" in captured.stdout
    result, _ = run_cell(ip, "$svc = Get-Service\n$svc.Count\n")
    assert result.success and session.runs[-1]["script"] == "$svc = Get-Service\n$svc.Count\n"
    count = len(session.runs)
    result, _ = run_cell(ip, "#py\npython_value = 40 + 2\n")
    assert result.success and ip.user_ns["python_value"] == 42 and len(session.runs) == count
    run_cell(ip, "%vmps_mode off")
    result, _ = run_cell(ip, "after = 1\n")
    assert ip.user_ns["after"] == 1 and len(session.runs) == count


def test_notebook_host_ui_answers_guest_prompts_over_the_real_protocol() -> None:
    from hvmagic.testing import FakeGuest

    asked: list[str] = []

    def read(prompt: str) -> str:
        asked.append(prompt)
        return "alice" if "Read-Host" in prompt else "Y"

    def read_secret(prompt: str) -> str:
        asked.append("secret:" + prompt)
        return "s3cret"

    guest = FakeGuest()

    @guest.handle("Ask-Things")
    def ask(ctx: Any) -> None:
        name = ctx.read_host()
        secret = ctx.read_host(as_secure_string=True)
        choice = ctx.prompt_for_choice("Reboot", "Now?", ["&Yes", "&No"], 1)
        # the guest received an encrypted SecureString; it decrypts to what was typed
        ctx.output(f"{name}|{type(secret).__name__}|{secret.decrypt() == 's3cret'}|{choice}")

    with guest:
        ui = NotebookHostUI(read=read, read_secret=read_secret, guest="web01")
        with guest.connect(host_ui=ui) as session:
            result = session.run("Ask-Things")
            assert result.output == ["alice|PSSecureString|True|0"]
            assert asked == [
                "[guest 'web01' Read-Host: visible, sent as plain text] ",
                "secret:[guest 'web01' Read-Host: hidden, sent encrypted] ",
                "[guest 'web01' choice: visible, sent as plain text] "
                "[Y] Yes  [N] No (default No): "]

        from IPython.core.error import StdinNotImplementedError

        def no_stdin(prompt: str) -> str:
            raise StdinNotImplementedError("no stdin")

        with guest.connect(host_ui=NotebookHostUI(read=no_stdin)) as session:
            with pytest.raises(RemoteError) as info:
                session.run("Ask-Things")
            assert "this notebook frontend cannot prompt" in str(info.value)


def test_notebook_host_ui_choices_and_credentials(capsys: pytest.CaptureFixture[str]) -> None:
    from hvmagic.errors import HostInteractionError
    from hvmagic.host import Choice, Field

    answers = iter(["", "n", "2", "maybe", "bob"])
    asked: list[str] = []

    def read(prompt: str) -> str:
        asked.append(prompt)
        return next(answers)

    ui = NotebookHostUI(read=read, read_secret=lambda prompt: "pw")
    choices = [Choice("&Yes"), Choice("&No"), Choice("&Suspend")]
    assert ui.prompt_for_choice("Reboot", "Reboot now?", choices, 1) == 1  # empty → default
    assert asked[0] == ("[guest 'the VM' choice: visible, sent as plain text] "
                        "[Y] Yes  [N] No  [S] Suspend (default No): ")
    assert ui.prompt_for_choice("", "", choices, -1) == 1  # hot key
    assert ui.prompt_for_choice("", "", choices, -1) == 2  # index
    with pytest.raises(HostInteractionError, match="'maybe' is not one of the choices"):
        ui.prompt_for_choice("", "", choices, -1)
    cred = ui.prompt_for_credential("Login", "", None, None)
    assert cred.username == "bob" and cred.password.reveal() == "pw"
    values = ui.prompt("", "", [Field("Pin", "System.Security.SecureString")])
    assert isinstance(values["Pin"], SecureString)
    assert "[guest 'the VM' choice] Reboot — Reboot now?" in capsys.readouterr().out


def test_unload_closes_sessions_and_removes_everything() -> None:
    shell = InteractiveShell.instance()
    shell.extension_manager.load_extension("hvmagic")
    fake = FakeSession()
    shell.user_ns["fake_unload"] = fake
    magics = magics_of(shell)
    with capture_output():
        shell.run_line_magic("vmconnect", "x --session fake_unload")
    shell.extension_manager.unload_extension("hvmagic")
    assert fake.closed
    assert shell.find_line_magic("vmps") is None and shell.find_cell_magic("vmps") is None
    assert magics.cell_mode not in shell.input_transformers_cleanup
    assert magics not in shell.configurables


def test_vmcopy_round_trip_with_the_simulated_guest(ip: InteractiveShell, tmp_path: Any) -> None:
    from hvmagic.testing import FakeGuest

    payload = bytes(range(256)) * 9000  # ~2.2 MiB
    source = tmp_path / "setup.bin"
    source.write_bytes(payload)
    (tmp_path / "a.log").write_text("alpha")
    (tmp_path / "b.log").write_text("beta")
    back = tmp_path / "back"
    back.mkdir()
    with FakeGuest() as guest:
        ip.user_ns["guest_session"] = guest.connect()
        with capture_output() as captured:
            ip.run_line_magic("vmconnect", "web01 --session guest_session")
            ip.run_line_magic("vmcopy", f"{source} web01:C:\\Temp\\setup.bin")
        assert guest.host_path("C:\\Temp\\setup.bin").read_bytes() == payload
        assert "Copied 1 file(s), 2.2 MB to 'web01' in " in captured.stdout
        with pytest.raises(UsageError, match="use --force to overwrite") as info:
            ip.run_line_magic("vmcopy", f"{source} VM:C:\\Temp\\setup.bin")
        assert "overwrite=True" not in str(info.value)  # the magic's advice only
        with capture_output():
            ip.run_line_magic("vmcopy", f"--force {source} VM:C:\\Temp\\setup.bin")
            ip.run_line_magic("vmcopy", f"{tmp_path}/*.log VM:C:\\Temp")
            ip.run_line_magic("vmcopy", f"VM:C:\\Temp\\*.* {back}")
        assert sorted(p.name for p in back.iterdir()) == ["a.log", "b.log", "setup.bin"]
        assert (back / "setup.bin").read_bytes() == payload
        assert (back / "b.log").read_text() == "beta"
        with pytest.raises(UsageError, match="%vmcopy: "):
            ip.run_line_magic("vmcopy", f"VM:C:\\nothere.txt {back}")
        with capture_output():
            ip.run_line_magic("vmclose", "--all")


def test_timeout_and_terminal_rendering_with_the_simulated_guest(ip: InteractiveShell) -> None:
    from hvmagic.testing import FakeGuest

    with FakeGuest() as guest:

        @guest.handle("Start-LongSleep")
        def long_sleep(ctx: Any) -> None:
            ctx.progress("Waiting", "asleep", 10, activity_id=1)
            ctx.warning("this takes a while")
            ctx.sleep(30)

        @guest.handle("Get-Answer")
        def answer(ctx: Any) -> None:
            ctx.output(42)

        ip.user_ns["timeout_session"] = guest.connect()
        with capture_output():
            ip.run_line_magic("vmconnect", "t --session timeout_session")
        started = time.monotonic()
        result, captured = run_cell(ip, "%%vmps --timeout 0.5\nStart-LongSleep\n")
        assert time.monotonic() - started < 5
        assert str(result.error_in_exec) == (
            "Pipeline stopped after the 0.5 s timeout; session 't' is still usable")
        # a terminal has no updatable displays: progress is one rewritten line on stdout
        assert "\rWaiting: asleep [###" in captured.stdout
        assert captured.outputs[0].data["text/plain"] == "WARNING: this takes a while"
        result, captured = run_cell(ip, "%%vmps -o answer\nGet-Answer\n")
        assert result.success and ip.user_ns["answer"] == [42]
        ip.user_ns["unsendable"] = object()
        with pytest.raises(UsageError, match=r"^--with: cannot send"):
            ip.run_cell_magic("vmps", "--with unsendable", "Get-Answer")
        with capture_output():
            ip.run_line_magic("vmclose", "--all")


def test_format_table_output_shows_the_hint(ip: InteractiveShell, session: FakeSession) -> None:
    fmt = "Deserialized.Microsoft.PowerShell.Commands.Internal.Format."
    session.behaviour = lambda s, p, e: FakeResult(
        [PSObject({}, [fmt + "FormatStartData"]), PSObject({}, [fmt + "FormatEndData"])])
    _, captured = run_cell(ip, "%%vmps -o layout\nGet-Service | Format-Table\n")
    assert [o.data["text/plain"] for o in captured.outputs] == [
        hvmagics.hvdisplay.FORMAT_OUTPUT_NOTICE]
    assert len(ip.user_ns["layout"]) == 2


def test_a_braced_python_name_gets_a_hint_about_with(
    ip: InteractiveShell, session: FakeSession
) -> None:
    ip.user_ns["svc"] = "W32Time"
    with capture_output() as captured:
        ip.run_line_magic("vmps", "Get-Service {svc}")
    assert captured.stdout.splitlines()[0] == (
        "Note: {svc} is a PowerShell script block here, not the Python variable svc; to use "
        "its value, add --with svc and write $svc."
    )
    assert session.runs[-1]["script"] == "Get-Service {svc}"  # never pasted
    with capture_output() as captured:
        ip.run_line_magic("vmps", "--with svc Get-Service $svc")
        ip.run_cell_magic("vmps", "", "Get-Service | Where-Object {$_.Name -eq 'x'} {nosuch}")
    assert "Note:" not in captured.stdout


def test_vmconnect_on_a_hyperv_host_with_older_python_hops_instead_of_refusing(
    ip: InteractiveShell, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[str] = []
    monkeypatch.setattr("hvmagic.transports.hvsocket.hvsocket_supported", lambda: False)
    monkeypatch.setattr("hvmagic.hop.local_hop_applies", lambda target, via, **kw: True)
    monkeypatch.setattr(hvmagics, "_connect",
                        lambda target, **kw: seen.append(target) or FakeSession(target))
    monkeypatch.setenv("HVMAGIC_PASSWORD", "pw")
    with capture_output():
        ip.run_line_magic("vmconnect", "web01 -u admin")
    assert seen == ["web01"]


def test_output_appears_in_the_order_powershell_produced_it(
    ip: InteractiveShell, session: FakeSession
) -> None:
    """'before'; Write-Warning 'w'; objects; Write-Verbose; object; 'after' — as a console
    shows it: text, the warning, a table, the verbose line, a second table, text. The bound
    frame still holds every object."""

    from hvmagic.session import Result

    def mixed(script: str, params: dict[str, Any], emit: Any) -> Any:
        out: list[Any] = []

        def output(value: Any) -> None:
            out.append(value)
            emit("output", value)

        output("before")
        emit("warning", InformationalRecord({}, [], "w"))
        output(service("vmms"))
        output(service("vmcompute"))
        emit("verbose", InformationalRecord({}, [], "v"))
        output(service("W32Time"))
        output("after")
        return Result(output=out)  # the real Result: its frame() takes mixed output

    session.behaviour = mixed
    result, captured = run_cell(ip, "%%vmps -o rows\nInvoke-Mixed\n")
    assert result.error_in_exec is None, result.error_in_exec
    texts = [o.data.get("text/plain", "") for o in captured.outputs]
    assert texts[0] == "before"
    assert texts[1] == "WARNING: w"
    assert "vmms" in texts[2] and "vmcompute" in texts[2] and "W32Time" not in texts[2]
    assert texts[3] == "VERBOSE: v"
    assert "W32Time" in texts[4] and "vmms" not in texts[4]
    assert texts[5] == "after"
    assert len(texts) == 6
    assert len(ip.user_ns["rows"]) == 5  # bound: everything, in order


def test_feedback_line_after_each_cell_only_when_asked(ip: InteractiveShell,
                                                       session: FakeSession) -> None:
    def three_services(script: str, params: dict[str, Any], on_event: Any) -> FakeResult:
        result = FakeResult([service("a"), service("b"), service("c")])
        result.duration = 0.4213  # type: ignore[attr-defined]
        return result

    session.behaviour = three_services
    _, captured = run_cell(ip, "%%vmps\nGet-Service\n")
    assert not any("rows ·" in o.data.get("text/plain", "") for o in captured.outputs)
    ip.run_line_magic("config", "VmMagics.feedback = True")
    _, captured = run_cell(ip, "%%vmps -o svc\nGet-Service\n")
    assert captured.outputs[-1].data["text/plain"] == "3 rows · 0.42 s"
    assert "hvmagic-feedback" in captured.outputs[-1].data["text/html"]
    assert len(ip.user_ns["svc"]) == 3  # the summary is shown, never bound
