"""Host calls against real PowerShell: what ``Read-Host``, ``Get-Credential``, ``PromptForChoice``
and ``$Host.UI.Prompt`` send to hvmagic's host UI, and what the guest script receives back.

Where PowerShell can answer, the same script also runs under PowerShell's *own* OutOfProc client
and console host (``pwsh -s`` child of a pwsh whose redirected stdin types the answers), and
the values the script received must be equal. Secrets cannot be typed into a redirected console
(PowerShell reads them from the terminal), so for those the judge is PowerShell itself decrypting
them (``GetNetworkCredential().Password``) inside the guest.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import hvmagic
from hvmagic.clixml.values import PSCredential, SecureString
from hvmagic.host import HostUI, ScriptedHostUI
from tests.pwsh.ownclient import OWN_CLIENT_SCRIPTS, own_client  # noqa: F401

#: PowerShell's own client with its console host, answering prompts from stdin
OWN_CLIENT = r"""
param([string]$Encoded)
$script = [Text.Encoding]::UTF8.GetString([Convert]::FromBase64String($Encoded))
$name = 'System.Management.Automation.Runspaces.NewProcessConnectionInfo'
$type = [psobject].Assembly.GetType($name)
$ci = [Activator]::CreateInstance($type, [Reflection.BindingFlags]'NonPublic,Instance', $null,
                                  @([pscredential]$null), $null)
$rs = [runspacefactory]::CreateRunspace($Host, $ci); $rs.Open()
try {
  $ps = [powershell]::Create(); $ps.Runspace = $rs
  $null = $ps.AddScript($script)
  $out = $ps.Invoke()
  $json = [pscustomobject]@{ output = @($out | ForEach-Object { "$_" })
                             errors = @($ps.Streams.Error | ForEach-Object { "$_" }) }
  '@@JSON@@' + ($json | ConvertTo-Json -Compress)
} finally { $rs.Close() }
"""

#: each case: a script whose output is strings, and the answers typed (one per line)
#: the .NET types a Prompt script needs, under short names
TYPES = """
$FD = [System.Management.Automation.Host.FieldDescription]
$FDs = [System.Collections.ObjectModel.Collection``1].MakeGenericType($FD)
"""
FIELDS = TYPES + """
$n = $FD::new('Count'); $n.SetParameterType([int])
$t = $FD::new('Text')
$fields = $FDs::new(); $fields.Add($n); $fields.Add($t)
$r = $Host.UI.Prompt('Setup', 'Two values', $fields)
foreach ($k in 'Count', 'Text') { "$k=$($r[$k])|$($r[$k].GetType().FullName)" }
"""
ONE_FIELD = TYPES + """
$f = $FD::new('Server')
$f.Label = '&Server'; $f.HelpMessage = 'the machine to use'
$fields = $FDs::new(); $fields.Add($f)
$r = $Host.UI.Prompt('Target', 'Which server?', $fields)
"$($r.Server)|$($r.Server.GetType().FullName)"
"""
CHOICE = """
$choices = [System.Management.Automation.Host.ChoiceDescription[]]@('&Yes', '&No', '&Suspend')
$Host.UI.PromptForChoice('Restart', 'Restart the service?', $choices, 0)
"""
CASES: dict[str, tuple[str, list[str]]] = {
    "read-host-prompt": ("$a = Read-Host 'Your name'; \"$a|$($a.GetType().FullName)\"",
                         ["Ada Lovelace 日本"]),
    "read-host-plain": ("$a = Read-Host; \"$a|$($a.GetType().FullName)\"", ["plain line"]),
    "choice": (CHOICE, ["S"]),
    "prompt-typed-fields": (FIELDS, ["42", "hello"]),
    "prompt-one-labelled-field": (ONE_FIELD, ["dc01"]),
}


def _encoded(script: str) -> str:
    return base64.b64encode(script.encode("utf-8")).decode("ascii")


@pytest.fixture(scope="module")
def own_answers(pwsh: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    """Every case through PowerShell's own client, in one pwsh: each case's output follows a
    marker line, and the answers are typed in the same order."""
    runner = Path(tmp_path_factory.mktemp("own-client"), "own.ps1")
    runner.write_text(OWN_CLIENT, encoding="utf-8")
    script = "\n".join(f"'@@{name}'\n& {{ {body} }}" for name, (body, _) in CASES.items())
    typed = [line for _, answers in CASES.values() for line in answers]
    done = subprocess.run(
        [pwsh, "-NoLogo", "-NoProfile", "-File", str(runner), "-Encoded", _encoded(script)],
        input=("\n".join(typed) + "\n").encode("utf-8"), capture_output=True, timeout=300,
        env={**os.environ, "NO_COLOR": "1"}, check=False,
    )
    text = done.stdout.decode("utf-8", "replace")
    assert "@@JSON@@" in text, f"PowerShell's own client failed: {text} {done.stderr!r}"
    own = json.loads(text.split("@@JSON@@", 1)[1].strip())
    assert own["errors"] == []
    answers: dict[str, list[str]] = {}
    for line in own["output"]:
        if line.startswith("@@"):
            current = answers.setdefault(line[2:], [])
        else:
            current.append(line)
    assert sorted(answers) == sorted(CASES)
    return answers


@pytest.fixture(scope="module")
def ui_session(pwsh: str) -> Iterator[Any]:
    """One session with a host UI (so the session key is exchanged); tests swap the UI."""
    session = hvmagic.connect("pwsh", via="process", executable=pwsh, timeout=60,
                              host_ui=ScriptedHostUI())
    try:
        yield session
    finally:
        session.close()


def _run_with(session: Any, ui: HostUI, script: str) -> Any:
    session.host_ui = ui
    return session.run(script, timeout=60)


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_guest_receives_what_powershells_own_host_gives_it(
    ui_session: Any, own_answers: dict[str, Any], case: str
) -> None:
    script, typed = CASES[case]
    if case == "choice":
        ui = ScriptedHostUI(choices=["&Suspend"])  # the label of what was typed ('S')
    elif case.startswith("prompt"):
        names = ["Count", "Text"] if case == "prompt-typed-fields" else ["Server"]
        ui = ScriptedHostUI(fields=dict(zip(names, typed, strict=True)))  # typed as text
    else:
        ui = ScriptedHostUI(lines=list(typed))
    result = _run_with(ui_session, ui, script)
    assert [str(e) for e in result.errors] == []
    assert [str(o) for o in result.output] == own_answers[case]


def test_read_host_with_a_prompt_is_answered_as_a_read_line(ui_session: Any) -> None:
    # Regression: PowerShell sends Read-Host 'Name' as $Host.UI.Prompt with one field, and
    # ScriptedHostUI(lines=[...]), documented to answer Read-Host, failed "non-interactive".
    ui = ScriptedHostUI(lines=["first", SecureString("second s3cret")])
    result = _run_with(ui_session, ui, """
        $a = Read-Host 'Name'
        $s = Read-Host 'Pin' -AsSecureString
        $a; $s.GetType().FullName; [Net.NetworkCredential]::new('', $s).Password
    """)
    assert result.output == ["first", "System.Security.SecureString", "second s3cret"]
    assert ui.asked == [("ReadLine", "Name"), ("ReadLineAsSecureString", "Pin")]


def test_secure_read_host_decrypts_inside_powershell(ui_session: Any) -> None:
    ui = ScriptedHostUI(lines=[SecureString("pä55 wörd ✓"), "masked"])
    result = _run_with(ui_session, ui, """
        $s = Read-Host -AsSecureString
        $m = Read-Host 'Masked' -MaskInput
        [Net.NetworkCredential]::new('', $s).Password; $m.GetType().FullName
    """)
    # -MaskInput asks for a SecureString field and returns its plain text to the script
    assert result.output == ["pä55 wörd ✓", "System.String"]
    assert ui.asked == [("ReadLineAsSecureString", ""), ("ReadLineAsSecureString", "Masked")]
    assert "pä55" not in repr(result)


def test_get_credential_and_prompt_for_credential_decrypt_inside_powershell(
    ui_session: Any,
) -> None:
    ui = ScriptedHostUI(credentials=[PSCredential("CORP\\admin", "pä55 wörd"),
                                     PSCredential("svc@corp.example", "s3cret;'\"")])
    result = _run_with(ui_session, ui, """
        $c = Get-Credential -Message 'Log on to the share'
        $c.UserName; $c.GetNetworkCredential().Password
        $d = $Host.UI.PromptForCredential('Service', 'Account for the service', 'svc', 'tgt')
        $d.UserName; $d.GetNetworkCredential().Password
    """)
    assert result.output == ["CORP\\admin", "pä55 wörd", "svc@corp.example", "s3cret;'\""]
    assert [kind for kind, _ in ui.asked] == ["PromptForCredential", "PromptForCredential"]


def test_prompt_with_secret_and_credential_fields(ui_session: Any) -> None:
    ui = ScriptedHostUI(fields={"Pin": SecureString("0000 ✓"),
                                "Account": PSCredential("CORP\\svc", "k3y"), "Port": 8443})
    result = _run_with(ui_session, ui, TYPES + """
        $p = $FD::new('Pin')
        $p.SetParameterType([securestring])
        $a = $FD::new('Account')
        $a.SetParameterType([pscredential])
        $n = $FD::new('Port')
        $n.SetParameterType([int])
        $fields = $FDs::new(); $fields.Add($p); $fields.Add($a); $fields.Add($n)
        $r = $Host.UI.Prompt('Deploy', 'Values', $fields)
        [Net.NetworkCredential]::new('', $r.Pin).Password
        $r.Account.UserName; $r.Account.GetNetworkCredential().Password
        "$($r.Port)|$($r.Port.GetType().FullName)"
    """)
    assert result.output == ["0000 ✓", "CORP\\svc", "k3y", "8443|System.Int32"]


def test_default_host_refuses_every_prompt_inside_powershell(ui_session: Any) -> None:
    prompts = ["Read-Host 'Name'", "Read-Host", "Read-Host -AsSecureString", "Get-Credential",
               CHOICE, FIELDS]
    for script in prompts:
        result = _run_with(ui_session, HostUI(), script)
        assert result.state in ("Completed", "Failed")
        messages = [str(e.message) for e in result.errors]
        if result.terminating_error is not None:
            messages.append(str(result.terminating_error.message))
        assert any("non-interactive" in m for m in messages), (script, messages)
    assert ui_session.run("'still usable'").output == ["still usable"]


#: raw UI members: hvmagic's host reports a raw UI with default data, as PowerShell's own client
#: does (issue 12 (a): without one, Write-Host -BackgroundColor alone lost its colour), and
#: refuses what needs a terminal
RAW_UI = """
$w = $Host.UI.RawUI.WindowSize; "property: $($null -eq $w)"
try { $null = $Host.UI.RawUI.get_WindowSize(); 'no error' }
catch { $e = $_.Exception.InnerException; $e.GetType().FullName + ': ' + $e.Message }
try { $null = $Host.UI.RawUI.ReadKey(); 'no error' }
catch { $e = $_.Exception.InnerException; $e.GetType().FullName + ': ' + $e.Message }
"$($Host.UI.RawUI.BufferSize)"
"""
OWN_CLIENT_SCRIPTS["raw ui"] = RAW_UI


def test_raw_ui_members_answer_as_for_powershells_own_client(
    ui_session: Any, own_client: dict[str, Any],  # noqa: F811
) -> None:
    # PowerShell's own answer: its OutOfProc client (output redirected) runs the same script
    _, own = own_client["raw ui"]
    ui = ScriptedHostUI()
    result = _run_with(ui_session, ui, RAW_UI)
    assert result.output[:2] == own["output"][:2] == ["property: False", "no error"]
    # ReadKey needs a terminal: both clients refuse it, each with its own reason
    exception = "System.Management.Automation.RemoteException: "
    assert result.output[2].startswith(exception) and own["output"][2].startswith(exception)
    assert "ReadKey" in result.output[2]
    # the same buffer, so Out-String and Format-Table lay text out at PowerShell's width
    assert result.output[3] == own["output"][3] == "80,24"
    assert ui.asked == []  # nothing reached the UI, nothing waited on it
    assert result.duration < 30


def test_notebook_prompts_from_real_powershell_name_the_guest(ui_session: Any) -> None:
    # issue 16.7: a guest Read-Host labelled like hvmagic's own password prompt
    from hvmagic.notebook_host import NotebookHostUI

    asked: list[tuple[str, str]] = []
    ui = NotebookHostUI(read=lambda p: asked.append(("text", p)) or "plain answer",
                        read_secret=lambda p: asked.append(("secret", p)) or "hidden answer",
                        guest="pwsh")
    result = _run_with(ui_session, ui, """
        Read-Host 'Password for administrator'
        $s = Read-Host 'Password for administrator' -AsSecureString
        [Net.NetworkCredential]::new('', $s).Password
    """)
    assert result.output == ["plain answer", "hidden answer"]
    assert asked == [
        ("text", "[guest 'pwsh' Read-Host: visible, sent as plain text] WARNING: the guest asks "
                 "for this as plain text, not a SecureString. Password for administrator: "),
        ("secret", "[guest 'pwsh' Read-Host: hidden, sent encrypted] Password for administrator: "),
    ]
