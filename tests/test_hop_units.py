"""The pure parts of remote hosts: the ssh command line, ssh failure typing, which path connect
takes (including the Windows-host-with-old-Python local hop), and %vmconnect --host.

The end-to-end behaviour is judged against real PowerShell in tests/pwsh/test_ssh_hop.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output

from hvmagic import hop
from hvmagic import magics as hvmagics
from hvmagic.clixml.values import PSCredential, SecureString
from hvmagic.errors import CredentialError, TransportError
from hvmagic.session import WRAPPER_SCRIPT
from hvmagic.transports.ssh import (
    SSHAuthenticationError,
    SSHHostKeyError,
    SSHSubsystemError,
    SSHUnreachableError,
    classify_ssh_failure,
    ssh_command,
)


def test_ssh_command_is_powershells_with_batch_mode_first() -> None:
    command = ssh_command(
        "hv01.corp.example", user="CORP\\admin", port=2222, identity_file="/k/id",
        options={"StrictHostKeyChecking": "yes", "BatchMode": "no"}, executable="/usr/bin/ssh",
        connect_timeout=7.5,
    )
    assert command[0] == "/usr/bin/ssh"
    assert command[-3:] == ["-s", "hv01.corp.example", "powershell"]
    # ssh keeps the first value of an option: a caller's BatchMode=no cannot switch prompts on
    options = [command[i + 1] for i, arg in enumerate(command) if arg == "-o"]
    assert options.index("BatchMode=yes") < options.index("BatchMode=no")
    assert "ConnectTimeout=7" in options and "StrictHostKeyChecking=yes" in options
    # DOMAIN\user becomes user@DOMAIN, as SSHConnectionInfo passes it
    assert command[command.index("-l") + 1] == "admin@CORP"
    assert command[command.index("-p") + 1] == "2222"
    assert command[command.index("-i") + 1] == "/k/id"


def test_ssh_command_rejects_option_injection() -> None:
    with pytest.raises(ValueError):
        ssh_command("-oProxyCommand=evil", executable="ssh")
    with pytest.raises(ValueError):
        ssh_command("hv01", options={"Proxy Command x": "y"}, executable="ssh")
    with pytest.raises(ValueError):
        ssh_command("hv01", port=70000, executable="ssh")
    assert ssh_command("[fe80::1]", executable="ssh")[-2] == "fe80::1"


@pytest.mark.parametrize(("stderr", "code", "kind"), [
    ("admin@hv01: Permission denied (publickey,password).", 255, SSHAuthenticationError),
    ("Host key verification failed.", 255, SSHHostKeyError),
    ("ssh: connect to host hv01 port 22: Connection refused", 255, SSHUnreachableError),
    ("ssh: Could not resolve hostname hv01: Name or service not known", 255, SSHUnreachableError),
    ("subsystem request failed on channel 0", 255, SSHSubsystemError),
    ("something new", 255, SSHUnreachableError),
    ("pwsh crashed", 1, TransportError),
])
def test_ssh_failures_are_typed(stderr: str, code: int, kind: type[Exception]) -> None:
    error = classify_ssh_failure(code, stderr, f"ssh ended: {stderr}")
    assert type(error) is kind
    assert stderr in str(error)
    if kind is SSHAuthenticationError:
        assert isinstance(error, CredentialError)  # connect(wait=) never retries it


def test_local_hop_only_for_windows_with_old_python() -> None:
    assert hop.local_hop_applies("vm01", "auto", platform="win32", version=(3, 11))
    assert not hop.local_hop_applies("vm01", "auto", platform="win32", version=(3, 12))
    assert not hop.local_hop_applies("vm01", "direct", platform="win32", version=(3, 11))
    assert not hop.local_hop_applies("sim", "auto", platform="win32", version=(3, 10))
    assert not hop.local_hop_applies("vm01", "auto", platform="linux", version=(3, 11))


def test_vm_arguments_are_powershell_directs() -> None:
    credential = PSCredential("admin", SecureString("pw"))
    assert hop.vm_pssession_arguments("vm01", credential) == {
        "VMName": "vm01", "Credential": credential,
    }
    by_id = hop.vm_pssession_arguments(
        "vm01", credential, vm_id="2c5ae2a3-0000-0000-0000-000000000001", configuration="JEA"
    )
    assert by_id == {"VMId": "2c5ae2a3-0000-0000-0000-000000000001", "Credential": credential,
                     "ConfigurationName": "JEA"}


def test_guest_wrapper_is_the_direct_wrapper_plus_the_completion_mark() -> None:
    wrapper = hop.guest_wrapper()
    param = "param($__hvmagic_script, $__hvmagic_parameters)"
    assert WRAPPER_SCRIPT.startswith(param) and wrapper.startswith(param)  # param() stays first
    first, _, rest = wrapper.partition("\n")
    # the direct wrapper, on one line (stack traces read "line 1"), between the two marks
    assert first == f"{param} $global:__hvmagic_completed = $false; " + (
        WRAPPER_SCRIPT[len(param):].strip()
    )
    assert rest == "$global:__hvmagic_completed = $true\n"


def test_local_hop_path_opens_powershell_then_vmname(monkeypatch: pytest.MonkeyPatch) -> None:
    """On a Windows host with Python < 3.12, connect("vm01") runs the hop over a local
    powershell.exe -s with New-PSSession -VMName (driven here through the seams)."""
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(hop, "local_hop_applies", lambda target, via: True)

    def fake_hop(vm: str, **kw: Any) -> str:
        calls.append({"vm": vm, **kw})
        return "hop-session"

    monkeypatch.setattr(hop, "connect_hop", fake_hop)
    import hvmagic

    assert hvmagic.connect("vm01", username="admin", password="pw") == "hop-session"
    assert calls[0]["vm"] == "vm01" and calls[0]["host"] == "localhost"
    assert calls[0]["via"] == "process" and calls[0]["username"] == "admin"


@pytest.fixture
def ip() -> Iterator[InteractiveShell]:
    shell = InteractiveShell.instance()
    shell.extension_manager.load_extension("hvmagic")
    yield shell
    shell.extension_manager.unload_extension("hvmagic")


class _Fake:
    description = "fake"

    def close(self) -> None:
        pass


def test_vmconnect_host_options_reach_connect(
    ip: InteractiveShell, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[dict[str, Any]] = []

    def fake_connect(target: str, **kw: Any) -> _Fake:
        seen.append({"target": target, **kw})
        return _Fake()

    monkeypatch.setattr(hvmagics, "_connect", fake_connect)
    monkeypatch.setenv("GUEST_PW", "guest-secret")
    with capture_output() as captured:
        ip.run_line_magic(
            "vmconnect", "web01 --host hv01 --via ssh --host-user CORP\\ops --port 2222 "
                         "--identity-file ~/.ssh/hv -u Administrator --password-env GUEST_PW",
        )
    kw = seen[-1]
    assert kw["target"] == "web01" and kw["host"] == "hv01" and kw["via"] == "ssh"
    assert kw["host_username"] == "CORP\\ops"
    assert kw["host_options"] == {"port": 2222, "identity_file": "~/.ssh/hv"}
    assert kw["username"] == "Administrator" and kw["password"].reveal() == "guest-secret"
    assert "guest-secret" not in captured.stdout + captured.stderr
