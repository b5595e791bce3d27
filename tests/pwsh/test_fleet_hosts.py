"""Fleets across Hyper-V hosts: ``fleet(targets, host=[...])`` and ``%%vmps --host hv01,hv02``.

The rig is test_ssh_hop's: a throw-away ``sshd`` on 127.0.0.1 whose ``powershell`` subsystem is
real PowerShell. Two "Hyper-V hosts", ``hv01`` and ``hv02``, are two names for it in the SSH
client configuration, so each host name really is resolved and connected to by ``ssh``. On each
host the fleet:

* opens a host shell over SSH (the hop's own transport) and runs its shipped ``Get-VM`` query
  there. Linux PowerShell has no Hyper-V module, so each host shell is given a ``Get-VM``
  function listing that host's inventory (names and states, like the real cmdlet's objects);
  the query, its wildcard and its running-only filter are PowerShell's own;
* reaches every VM it found through the hop to its host, with the one seam test_ssh_hop uses:
  ``pssession_arguments`` replaces only ``New-PSSession``'s ``-VMName``/``-Credential``
  (PowerShell Direct cannot run on Linux), here with a second PowerShell over the same sshd.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import hvmagic
from hvmagic import fleet_sessions
from hvmagic.testing.sshd import LocalSSHServer, find_sshd
from tests.pwsh.conftest import REQUIRE_ENV

HOSTS = ("hv01", "hv02")
#: each host's VMs as its Get-VM lists them
INVENTORY = {
    "hv01": [{"Name": "web1", "State": "Running"}, {"Name": "web2", "State": "Running"},
             {"Name": "db1", "State": "Running"}],
    "hv02": [{"Name": "web3", "State": "Running"}, {"Name": "web4", "State": "Off"}],
}
GET_VM = """\
$global:HostInventory = @($Inventory | ForEach-Object { [pscustomobject]$_ })
function global:Get-VM {
    [CmdletBinding()] param([string[]] $Name = '*')
    $global:HostInventory | Where-Object {
        $vm = $_.Name; @($Name | Where-Object { $vm -like $_ }).Count -gt 0 }
}
"""
SCRIPT = "[pscustomobject]@{ Greeting = $Greeting; ProcessId = $PID }"


@pytest.fixture(scope="module")
def ssh_server(pwsh: str) -> Iterator[LocalSSHServer]:
    if find_sshd() is None:
        reason = "no sshd (Debian: apt-get install openssh-server)"
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"{REQUIRE_ENV}=1 but {reason}")
        pytest.skip(reason)
    with LocalSSHServer(pwsh) as server:
        yield server


@pytest.fixture
def host_options(ssh_server: LocalSSHServer, tmp_path: Path) -> dict[str, Any]:
    """SSH options that reach hv01 and hv02 (both the loopback sshd), plus the hop's seam."""
    config = tmp_path / "ssh_config"
    config.write_text(ssh_server.client_config.read_text()
                      + f"Host {' '.join(HOSTS)}\n  HostName 127.0.0.1\n")
    return {**ssh_server.host_options, "ssh_config": str(config),
            "pssession_arguments": ssh_server.pssession_options}


@pytest.fixture
def inventories(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str | None, dict[str, Any], Any]]:
    """Each host shell the fleet opens (by the shipped opener) gets that host's Get-VM."""
    opened: list[tuple[str | None, dict[str, Any], Any]] = []
    shipped = fleet_sessions.open_host_shell

    def open_host_shell(host: str | None, **options: Any) -> Any:
        shell = shipped(host, **options)
        shell.run(GET_VM, {"Inventory": INVENTORY[str(host)]})
        opened.append((host, options, shell))
        return shell

    monkeypatch.setattr(fleet_sessions, "open_host_shell", open_host_shell)
    return opened


def test_fleet_resolves_globs_with_get_vm_on_each_host_and_reaches_each_vm_through_it(
    ssh_server: LocalSSHServer, host_options: dict[str, Any],
    inventories: list[tuple[str | None, dict[str, Any], Any]],
) -> None:
    connect_options = {"via": "ssh", "host_username": ssh_server.user,
                       "host_options": host_options, "timeout": 120}
    with hvmagic.fleet("web*", host="hv01,hv02", connect_options=connect_options) as fl:
        assert [t.label for t in fl.targets] == ["hv01/web1", "hv01/web2", "hv02/web3"]
        result = fl.run(SCRIPT, {"Greeting": "patched"})
        sessions = [fl._pool.peek(t) for t in fl.targets]
    # the host shells were reached over SSH by the host's name, as the fleet's account
    assert [host for host, _, _ in inventories] == ["hv01", "hv02"]
    assert all(o["via"] == "ssh" and o["host_username"] == ssh_server.user
               for _, o, _ in inventories)
    assert result.ok, result.status.to_string()
    frame = result.frame()
    assert list(zip(frame["VMName"], frame["HostName"], strict=True)) == [
        ("web1", "hv01"), ("web2", "hv01"), ("web3", "hv02")]
    assert set(frame["Greeting"]) == {"patched"}
    assert frame["ProcessId"].nunique() == 3  # three VMs, three PowerShells behind the hops
    status = result.status
    assert list(status["HostName"]) == ["hv01", "hv01", "hv02"]
    # each VM was reached through its own host
    assert [(s.host, s.vm) for s in sessions] == [("hv01", "web1"), ("hv01", "web2"),
                                                  ("hv02", "web3")]


def test_vmps_host_cell_resolves_on_each_host_and_keeps_the_sessions_for_the_next_cell(
    ssh_server: LocalSSHServer, host_options: dict[str, Any],
    inventories: list[tuple[str | None, dict[str, Any], Any]],
) -> None:
    from IPython.core.interactiveshell import InteractiveShell
    from IPython.utils.capture import capture_output

    shell = InteractiveShell.instance()
    shell.extension_manager.load_extension("hvmagic")
    shell.user_ns.update(opts=host_options, Greeting="hello")
    line = (f'--vms "web*" --host hv01,hv02 --via ssh --host-user {ssh_server.user} '
            "--host-options opts --with Greeting -o out")
    try:
        with capture_output() as captured:
            shell.run_cell_magic("vmps", line, SCRIPT)
        first = shell.user_ns["out"]
        with capture_output() as listed:
            shell.run_line_magic("vmsessions", "")
        with capture_output():
            shell.run_cell_magic("vmps", line, SCRIPT)
        second = shell.user_ns["out"]
        with capture_output():
            nothing = shell.run_cell(f"%%vmps {line.replace('web*', 'mail*')}\n{SCRIPT}")
    finally:
        shell.run_line_magic("vmclose", "--all")
        shell.extension_manager.unload_extension("hvmagic")
        for name in ("_vmps_result", "out", "opts", "Greeting"):
            shell.user_ns.pop(name, None)
    assert list(zip(first["VMName"], first["HostName"], strict=True)) == [
        ("web1", "hv01"), ("web2", "hv01"), ("web3", "hv02")]
    assert set(first["Greeting"]) == {"hello"}
    shown = "\n".join(o.data.get("text/plain", "") for o in captured.outputs)
    assert "HostName" in shown and "Completed" in shown  # the status table
    sessions = "\n".join(o.data.get("text/plain", "") for o in listed.outputs)
    for alias in ("hv01/web1", "hv01/web2", "hv02/web3"):
        assert alias in sessions
    # the next cell resolved again on each host, in the host shells the first cell opened,
    # and ran in the same sessions
    assert list(second["ProcessId"]) == list(first["ProcessId"])
    assert [host for host, _, _ in inventories] == ["hv01", "hv02"]
    assert "no running VM matches 'mail*' on hv01, hv02" in str(nothing.error_in_exec)
    # %vmclose --all closed the host shells with the VMs' sessions
    assert all(host_shell.closed for _, _, host_shell in inventories)


def test_host_only_options_need_host(ssh_server: LocalSSHServer) -> None:
    from IPython.core.interactiveshell import InteractiveShell
    from IPython.utils.capture import capture_output

    shell = InteractiveShell.instance()
    shell.extension_manager.load_extension("hvmagic")
    try:
        with capture_output():
            cell = shell.run_cell('%%vmps --vms "web*" --via ssh\n1')
        assert "--via is for fleets on Hyper-V hosts: add --host" in str(cell.error_in_exec)
    finally:
        shell.extension_manager.unload_extension("hvmagic")
