"""Real notebooks in a real kernel against the demo guest and test peers: what a user sees.

One notebook is executed cell by cell with nbclient in one ``python3`` kernel (this venv's
interpreter, ``PYTHONPATH`` = the checkout). Every iopub message is recorded, so the tests can
assert on live displays (``display_data`` with a display id, then ``update_display_data``) as
well as on the saved ``.ipynb``. The kernel's ``IPYTHONDIR`` is a temporary directory, so its
history database can be searched for secrets after shutdown.

Cells either connect with ``%vmconnect … --via sim`` (the demo guest: real PowerShell) or adopt a
session to a :class:`hvmagic.testing.FakeGuest` whose handlers the notebook defines (exact
streams, progress, errors, a long sleep to interrupt).
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat
import pytest
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient

REPO = Path(__file__).resolve().parent.parent
ENV_SECRET = "EnvPw-7f3a-NEVER-SHOWN"
GETPASS_SECRET = "Getpass-91c2-NEVER-SHOWN"
TYPED_SECRET = "Typed-44d0-NEVER-SHOWN"
HOSTILE = "'; Remove-Item C:\\ -Recurse; '$(Stop-Computer) {x} `$x"

pytestmark = [pytest.mark.kernel, pytest.mark.timeout(120)]

SETUP = r'''
%load_ext hvmagic
import os
# ipykernel installs its own getpass (a password box in the frontend) for every cell; this one
# answers as a user typing into that box would. The value comes from the kernel's environment
# so that it appears in no cell source.
get_ipython().kernel.getpass = lambda prompt="", stream=None: os.environ["HVMAGIC_TEST_GETPASS"]

from hvmagic.testing import FakeGuest
from psrpcore.types import PSCustomObject

guest = FakeGuest()

@guest.handle("Invoke-Streams")
def streams(ctx):
    ctx.verbose("Loading configuration")
    ctx.warning("Disk C: is 91% full")
    ctx.debug("retry=3")
    ctx.information("Step 1 of 2 done")
    ctx.host_write("Hello from Write-Host")
    ctx.error("Service 'spooler' could not be queried")
    ctx.output("finished")

@guest.handle("Invoke-Progress")
def progress(ctx):
    for i in range(3):
        ctx.progress("Checking services", f"service {i}", i * 33, activity_id=1)
        ctx.progress("Reading events", "System log", 50, activity_id=2, parent_id=1,
                     current_operation="EventID 7036")
        ctx.sleep(0.15)
    ctx.progress("Checking services", activity_id=1, completed=True)
    ctx.output("checked")

@guest.handle("Invoke-Throw")
def throw(ctx):
    ctx.command = "Get-Item"
    ctx.fail("Cannot find path 'C:\\nope' because it does not exist.",
             category="ObjectNotFound",
             error_id="PathNotFound,Microsoft.PowerShell.Commands.GetItemCommand")

@guest.handle("Start-LongSleep")
def long_sleep(ctx):
    ctx.output("sleeping")
    ctx.sleep(60)

@guest.handle("Get-Payload")
def payload_handler(ctx):
    ctx.output(ctx.parameters.get("payload", "no payload"))

@guest.handle("Get-Many")
def many(ctx):
    for i in range(30):
        ctx.output(PSCustomObject(Name=f"svc{i:02d}", Status="Running", Index=i))

custom_session = guest.connect()
'''

CELLS: list[tuple[str, str, list[str]]] = [
    ("setup", SETUP, []),
    ("connect_env", "%vmconnect demo --via sim -u administrator --password-env HVMAGIC_TEST_PW",
     []),
    ("connect_getpass", "%vmconnect demo2 --via sim -u administrator", []),
    ("connect_custom", "%vmconnect custom --session custom_session", []),
    ("sessions", "%vmsessions", []),
    ("services", "%%vmps demo -o running\n"
                 "Get-Service | Where-Object { $_.Status -eq 'Running' -and $_.Name -like 'vm*' }",
     []),
    ("services_check", "print(type(running).__name__, list(running.columns), len(running))", []),
    ("limit", "%config VmMagics.displaylimit = 5\n", []),
    ("many", "%%vmps -o many\nGet-Many", []),
    ("hostile_set", f"payload = {HOSTILE!r}", []),
    ("hostile", "%%vmps -o echoed --with payload\nGet-Payload", []),
    ("hostile_check", "print(echoed == [payload], repr(echoed[0]))", []),
    ("streams", "%%vmps\nInvoke-Streams", ["raises-exception"]),
    ("progress", "%%vmps\nInvoke-Progress", []),
    ("throw", "%%vmps\nInvoke-Throw", ["raises-exception"]),
    ("interrupt", "%%vmps\nStart-LongSleep", ["raises-exception"]),
    ("after_interrupt", "%%vmps -o after\nGet-Payload", []),
    ("after_check", "print(after)", []),
    ("mode_on", "%vmps_mode on", []),
    ("mode_ps", "Get-Payload", []),
    ("mode_py", "#py\nmode_value = 6 * 7\nprint('python', mode_value)", []),
    ("mode_off", "%vmps_mode off", []),
    ("usage", "%vmps -s nosuch Get-Payload", ["raises-exception"]),
    ("copy_setup", "from pathlib import Path\n"
                   "Path('bundle.bin').write_bytes(bytes(range(256)) * 12288)", []),
    ("copy", "%vmcopy bundle.bin custom:C:\\Temp\\bundle.bin", []),
    ("copy_check", "print(guest.host_path(r'C:\\Temp\\bundle.bin').read_bytes() == "
                   "Path('bundle.bin').read_bytes())", []),
    ("secret_scan",
     "import os\n"
     "secrets = [os.environ['HVMAGIC_TEST_PW'], os.environ['HVMAGIC_TEST_GETPASS'],\n"
     "           os.environ['HVMAGIC_TEST_TYPED']]\n"
     "hits = [k for k, v in list(globals().items()) if k not in ('secrets', 'os')\n"
     "        and not k.startswith('_') and any(s in repr(v) for s in secrets)]\n"
     "print('hits:', hits)", []),
]


@dataclass
class Executed:
    nb: Any
    index: dict[str, int]
    messages: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    stdin_requests: list[dict[str, Any]] = field(default_factory=list)
    typed_connect_output: str = ""
    saved: Path | None = None
    ipython_dir: Path | None = None

    def cell(self, name: str) -> Any:
        return self.nb.cells[self.index[name]]

    def outputs(self, name: str) -> list[Any]:
        return list(self.cell(name).outputs)

    def stdout(self, name: str) -> str:
        return "".join(o.get("text", "") for o in self.outputs(name)
                       if o.output_type == "stream" and o.name == "stdout")

    def displays(self, name: str, mime: str = "text/plain") -> list[str]:
        return [o.data[mime] for o in self.outputs(name)
                if o.output_type == "display_data" and mime in o.get("data", {})]

    def error(self, name: str) -> Any:
        errors = [o for o in self.outputs(name) if o.output_type == "error"]
        return errors[0] if errors else None


class RecordingClient(NotebookClient):
    """nbclient that keeps every iopub message per cell (live updates included)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.recorded: dict[int, list[dict[str, Any]]] = {}

    def process_message(self, msg: dict[str, Any], cell: Any, cell_index: int) -> Any:
        self.recorded.setdefault(cell_index, []).append(
            {"msg_type": msg["msg_type"], "content": json.loads(json.dumps(msg["content"],
                                                                          default=str))}
        )
        return super().process_message(msg, cell, cell_index)


def type_password_into_the_frontend(client: NotebookClient, result: Executed) -> None:
    """A user at a real frontend: the kernel's own getpass sends an input_request marked as a
    password (so the frontend masks it) and the answer goes back on the stdin channel."""
    kc = client.kc
    assert kc is not None
    kc.execute_interactive("del get_ipython().kernel.getpass", timeout=20)  # the real one again
    printed: list[str] = []

    def on_output(msg: dict[str, Any]) -> None:
        if msg["msg_type"] == "stream":
            printed.append(msg["content"]["text"])

    def on_stdin(msg: dict[str, Any]) -> None:
        result.stdin_requests.append(msg["content"])
        kc.input(TYPED_SECRET)

    reply = kc.execute_interactive("%vmconnect typed --via sim -u administrator",
                                   allow_stdin=True, stdin_hook=on_stdin,
                                   output_hook=on_output, timeout=30)
    assert reply["content"]["status"] == "ok", reply["content"]
    result.typed_connect_output = "".join(printed)


@pytest.fixture(scope="module")
def executed(tmp_path_factory: pytest.TempPathFactory) -> Executed:
    work = tmp_path_factory.mktemp("nb")
    nb = nbformat.v4.new_notebook()
    index: dict[str, int] = {}
    for name, source, tags in CELLS:
        index[name] = len(nb.cells)
        nb.cells.append(nbformat.v4.new_code_cell(source, metadata={"tags": tags}))
    ipython_dir = work / "ipython"
    ipython_dir.mkdir()
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "IPYTHONDIR": str(ipython_dir),
        "HVMAGIC_TEST_PW": ENV_SECRET,
        "HVMAGIC_TEST_GETPASS": GETPASS_SECRET,
        "HVMAGIC_TEST_TYPED": TYPED_SECRET,  # only for the namespace scan
    }
    env.pop("HVMAGIC_PASSWORD", None)
    # a real history database (nbclient defaults to :memory:), outputs logged too, so the test
    # can prove nothing secret reaches either
    client = RecordingClient(nb, timeout=60, kernel_name="python3",
                             kernel_manager_class=KernelManager,
                             ipython_hist_file=str(ipython_dir / "history.sqlite"),
                             extra_arguments=["--HistoryManager.db_log_output=True"],
                             resources={"metadata": {"path": str(work)}})
    result = Executed(nb, index)
    with client.setup_kernel(env=env):
        for i, cell in enumerate(nb.cells):
            name = CELLS[i][0]
            if name == "secret_scan":
                type_password_into_the_frontend(client, result)
            timer = None
            if name == "interrupt":
                assert client.km is not None
                timer = threading.Timer(1.5, client.km.interrupt_kernel)
                timer.start()
            started = time.monotonic()
            client.execute_cell(cell, i)
            result.seconds[name] = time.monotonic() - started
            if timer is not None:
                timer.cancel()
    result.messages = client.recorded
    result.saved = work / "executed.ipynb"
    nbformat.write(nb, str(result.saved))
    result.ipython_dir = ipython_dir
    return result


def test_connect_prints_the_path_used(executed: Executed) -> None:
    # --via sim is the demo guest: a local PowerShell (its file name ends the description)
    assert re.fullmatch(
        r"Connected 'demo': demo guest 'demo' \(simulated data, "
        r"[^()]+\)\. It is the default session\.\n",
        executed.stdout("connect_env"),
    ), executed.stdout("connect_env")
    assert executed.stdout("connect_getpass").startswith(
        "Connected 'demo2': demo guest 'demo2' (simulated data, ")
    assert executed.stdout("connect_custom").startswith(
        "Connected 'custom' (an existing Session object): simulated guest")
    table = executed.displays("sessions")[0].splitlines()
    assert [line.split()[0] for line in table[2:]] == ["demo", "demo2", "*"]
    assert "<td>custom</td>" in executed.displays("sessions", "text/html")[0]


def test_services_dataframe_as_powershell_shows_it(executed: Executed) -> None:
    html = executed.displays("services", "text/html")[0]
    header = html.split("</thead>")[0]
    assert [h for h in ("Status", "Name", "DisplayName") if f"<th>{h}</th>" in header] == [
        "Status", "Name", "DisplayName"]
    assert "<td>Running</td>" in html and "<td>vmicheartbeat</td>" in html
    assert executed.stdout("services_check").startswith(
        "DataFrame ['Status', 'Name', 'DisplayName']")


def test_display_limit_notice(executed: Executed) -> None:
    html = executed.displays("many", "text/html")[0]
    assert "<td>svc04</td>" in html and "<td>svc05</td>" not in html
    assert "showing 5 of 30 rows; all 30 are in `many`" in html
    assert 'class="hvmagic-notice"' in html


def test_hostile_strings_round_trip_as_parameters(executed: Executed) -> None:
    assert executed.stdout("hostile_check") == f"True {HOSTILE!r}\n"
    assert executed.displays("hostile") == [HOSTILE]


def test_streams_are_styled_and_errors_rendered(executed: Executed) -> None:
    html = executed.displays("streams", "text/html")
    text = executed.displays("streams")
    # the information record alone ("Step 1 of 2 done", no host text with it) is not shown,
    # as PowerShell's own client does not show it (tests/pwsh/test_exploration_display.py)
    assert text[:4] == ["VERBOSE: Loading configuration", "WARNING: Disk C: is 91% full",
                        "DEBUG: retry=3", "Hello from Write-Host"]
    for css, fragment in [("hvmagic-verbose", "Loading configuration"),
                          ("hvmagic-warning", "Disk C: is 91% full"),
                          ("hvmagic-debug", "retry=3"),
                          ("hvmagic-host", "Hello from Write-Host")]:
        assert any(f"hvmagic-stream {css}" in h and fragment in h for h in html), css
    assert not any("Step 1 of 2 done" in h for h in html)
    error_text = text[4].splitlines()
    assert error_text[0] == "Service 'spooler' could not be queried"
    assert error_text[1] == "At line:1 char:1"
    assert "    + FullyQualifiedErrorId : Microsoft.PowerShell.Commands.WriteErrorException" in (
        error_text)
    assert "hvmagic-error" in html[4]
    assert text[5] == "finished"
    err = executed.error("streams")
    assert err.ename == "PowerShellError"
    assert err.traceback == [
        "PowerShellError: 1 error(s) in the pipeline (shown above); use --no-raise or "
        "%config VmMagics.raise_on_error = False to continue past errors"]


def test_progress_is_live_nested_and_removed(executed: Executed) -> None:
    messages = executed.messages[executed.index["progress"]]
    shown = [m for m in messages if m["msg_type"] == "display_data"
             and (m["content"].get("transient") or {}).get("display_id")]
    assert len(shown) == 1
    display_id = shown[0]["content"]["transient"]["display_id"]
    assert "Checking services" in shown[0]["content"]["data"]["text/html"]
    updates = [m["content"] for m in messages if m["msg_type"] == "update_display_data"]
    assert all(u["transient"]["display_id"] == display_id for u in updates)
    assert len(updates) >= 3
    nested = [u for u in updates if "Reading events" in u["data"]["text/html"]]
    assert nested and 'margin-left:1.5em' in nested[0]["data"]["text/html"]
    assert "EventID 7036" in nested[0]["data"]["text/plain"]
    assert any('<progress value="66" max="100">' in u["data"]["text/html"] for u in updates)
    assert updates[-1]["data"] == {"text/plain": "", "text/html": ""}
    # the saved notebook keeps the final (empty) state, then the output
    assert executed.displays("progress")[-1] == "checked"


def test_terminating_error_rendered_like_powershell_and_short_exception(executed: Executed
                                                                       ) -> None:
    text = executed.displays("throw")[0].splitlines()
    assert text[0] == "Get-Item : Cannot find path 'C:\\nope' because it does not exist."
    assert text[1:4] == ["At line:1 char:1", "+ Invoke-Throw", "+ ~~~~~~~~~~~~"]
    assert text[4] == (
        "    + CategoryInfo          : ObjectNotFound: (:) [Get-Item], RuntimeException")
    assert text[5] == ("    + FullyQualifiedErrorId : "
                       "PathNotFound,Microsoft.PowerShell.Commands.GetItemCommand")
    err = executed.error("throw")
    assert (err.ename, err.evalue) == (
        "PowerShellError", "the cell failed with a terminating error (shown above)")
    # the message appears once: in the PowerShell-style block above, not again in the error
    assert sum("Cannot find path" in d for d in executed.displays("throw")) == 1
    assert len(err.traceback) == 1


def test_interrupt_stops_the_pipeline_and_session_stays_usable(executed: Executed) -> None:
    err = executed.error("interrupt")
    assert err.ename == "PipelineStopped"
    assert "Pipeline stopped (interrupted); session 'custom' is still usable." in (
        executed.stdout("interrupt"))
    assert executed.seconds["interrupt"] < 10  # the handler sleeps 60 s unless stopped
    assert executed.stdout("after_check") == "['no payload']\n"


def test_cell_mode(executed: Executed) -> None:
    assert "PowerShell cell mode on" in executed.stdout("mode_on")
    assert executed.displays("mode_ps") == ["no payload"]
    assert executed.stdout("mode_py") == "python 42\n"
    assert executed.stdout("mode_off") == "PowerShell cell mode off\n"


def test_vmcopy_shows_live_progress_and_summary(executed: Executed) -> None:
    messages = executed.messages[executed.index["copy"]]
    shown = [m["content"] for m in messages if m["msg_type"] == "display_data"]
    updates = [m["content"] for m in messages if m["msg_type"] == "update_display_data"]
    assert "Copying bundle.bin" in shown[0]["data"]["text/html"]
    assert "<progress value=" in shown[0]["data"]["text/html"]
    # chunks arrive faster than the 0.1 s update throttle here; the bar is removed at the end
    assert updates and updates[-1]["data"] == {"text/plain": "", "text/html": ""}
    assert any("of 3.0 MB, file 1 of 1" in u["data"]["text/plain"] for u in updates + shown)
    assert executed.stdout("copy").startswith("Copied 1 file(s), 3.0 MB to 'custom' in ")
    assert executed.stdout("copy").endswith("; SHA-256 verified\n")
    assert executed.stdout("copy_check") == "True\n"


def test_usage_error_is_one_line(executed: Executed) -> None:
    # IPython prints a UsageError as one stderr line, without a traceback
    assert executed.error("usage") is None
    assert [o.text for o in executed.outputs("usage")] == [
        "UsageError: No session named 'nosuch' (sessions: demo, demo2, custom)\n"]


def test_password_prompt_is_a_masked_frontend_input(executed: Executed) -> None:
    assert executed.stdin_requests == [
        {"prompt": "%vmconnect typed: Password for administrator: ", "password": True}]
    assert executed.typed_connect_output.startswith("Connected 'typed': demo guest 'typed' (")
    assert TYPED_SECRET not in executed.typed_connect_output


def test_no_secret_in_saved_notebook_history_or_namespace(executed: Executed) -> None:
    assert executed.stdout("secret_scan") == "hits: []\n"
    assert executed.saved is not None and executed.ipython_dir is not None
    saved = executed.saved.read_text(encoding="utf-8")
    assert "vmconnect demo --via sim" in saved  # the right file
    for secret in (ENV_SECRET, GETPASS_SECRET):
        assert secret not in saved
    history_files = [p for p in executed.ipython_dir.rglob("*") if p.is_file()]
    history = b"".join(p.read_bytes() for p in history_files)
    assert b"vmconnect demo2 --via sim -u administrator" in history  # inputs were logged
    assert b"vmconnect typed --via sim -u administrator" in history
    for secret in (ENV_SECRET, GETPASS_SECRET, TYPED_SECRET):
        assert secret.encode() not in history
        assert secret.encode("utf-16-le") not in history


def _live_demo(monkeypatch: pytest.MonkeyPatch) -> None:
    """``hvmagic demo --live`` needs the demo guest's PowerShell (no recording of these
    notebooks ships): the one the pwsh suite runs, handed to the kernel as $HVMAGIC_PWSH."""
    from tests.pwsh.conftest import REQUIRE_ENV, find_pwsh

    pwsh = find_pwsh()
    if pwsh is None:
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"{REQUIRE_ENV}=1 but no PowerShell found for the demo guest")
        pytest.skip("no PowerShell for the demo guest (set HVMAGIC_PWSH)")
    monkeypatch.setenv("HVMAGIC_PWSH", pwsh)


def test_hvmagic_demo_runs_a_runbook_headlessly_to_html_in_the_output_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One headless run (a kernel each): the HTML with the table, and what the runbook writes
    lands beside it, its companion folders found."""
    from hvmagic.__main__ import main

    _live_demo(monkeypatch)

    source_dir = tmp_path / "runbooks"
    (source_dir / "dsc").mkdir(parents=True)
    (source_dir / "dsc" / "module.psm1").write_text("# companion", encoding="utf-8")
    runbook = nbformat.v4.new_notebook()
    runbook.cells = [
        nbformat.v4.new_markdown_cell("# Guest services triage"),
        nbformat.v4.new_code_cell(
            "%load_ext hvmagic\n"
            "from hvmagic.testing import FakeGuest\n"
            "guest = FakeGuest()\n"
            "guest.add_handler('Get-IntegrationService', lambda ctx: [\n"
            "    {'PSTypeName': 'System.ServiceProcess.ServiceController', 'Status': 'Running',\n"
            "     'Name': 'vmicheartbeat', 'DisplayName': 'Hyper-V Heartbeat Service'}])\n"
            "demo_session = guest.connect()\n"
            "%vmconnect demo --session demo_session"),
        nbformat.v4.new_code_cell("%%vmps -o running\nGet-IntegrationService"),
        nbformat.v4.new_code_cell("len(running)"),
        nbformat.v4.new_code_cell(
            "from pathlib import Path\n"
            "Path('bundle').mkdir()\n"
            "Path('bundle/summary.txt').write_text(Path('dsc/module.psm1').read_text())"),
    ]
    source = source_dir / "services-triage.ipynb"
    nbformat.write(runbook, str(source))
    out = tmp_path / "out"
    assert main(["demo", "--live", "--notebook", str(source), "--output", str(out)]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].startswith("Live: the demo guest is ")
    assert printed[1].startswith("Executed services-triage.ipynb: 4 code cells, 1 tables, ")
    assert printed[1].endswith(" s, ok")
    assert printed[2] == f"HTML:     {out / 'services-triage.html'}"
    page = (out / "services-triage.html").read_text(encoding="utf-8")
    assert "hvmagic-frame" in page and "vmicheartbeat" in page
    executed = nbformat.read(str(out / "services-triage.ipynb"), as_version=4)
    assert executed.cells[3].outputs[0].data["text/plain"] == "1"
    assert (out / "bundle" / "summary.txt").read_text(encoding="utf-8") == "# companion"
    assert not (source_dir / "bundle").exists()


def test_demo_notebook_search_order(tmp_path: Path) -> None:
    from hvmagic.__main__ import DemoError, find_demo_notebook

    shipped, checkout = tmp_path / "pkg", tmp_path / "repo"
    checkout.mkdir()
    (checkout / "01-services-triage.ipynb").write_text("{}")
    assert find_demo_notebook([shipped, checkout]) == checkout / "01-services-triage.ipynb"
    shipped.mkdir()
    (shipped / "services-triage.ipynb").write_text("{}")
    assert find_demo_notebook([shipped, checkout]) == shipped / "services-triage.ipynb"
    with pytest.raises(DemoError, match="no demo notebook found"):
        find_demo_notebook([tmp_path / "none"])


def test_demo_companions_skip_the_output_folder_and_virtual_environments(tmp_path: Path) -> None:
    from hvmagic.nbrun import copy_companions

    source = tmp_path / "runbooks"
    (source / "dsc").mkdir(parents=True)
    (source / "dsc" / "m.psm1").write_text("x", encoding="utf-8")
    (source / "venv").mkdir()
    (source / "venv" / "pyvenv.cfg").write_text("home = /usr", encoding="utf-8")
    output = source / "out" / "run1"  # inside a folder beside the notebook
    output.mkdir(parents=True)
    copy_companions(source, output)  # used to copy out/ into itself until RecursionError
    assert sorted(p.name for p in output.iterdir()) == ["dsc"]
