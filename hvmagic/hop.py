"""The hop: a runspace on the Hyper-V host, and in it a PowerShell Direct session to the VM.

PowerShell Direct only works from the VM's own host. From a workstation hvmagic therefore opens
a PowerShell session on the host (over SSH, WinRM, or a local ``powershell.exe -s`` on a host
whose Python is too old for AF_HYPERV) and, inside it, ``New-PSSession -VMName VM -Credential …``.
That inner session lives as long as the :class:`HopSession`; each :meth:`Session.run` becomes::

    Invoke-Command -Session $inner -ScriptBlock <hvmagic's wrapper> -ArgumentList script, values

so the VM sees exactly what a direct session sends: the wrapper dot-sources the user's script in
the VM's runspace (state persists), values travel only as parameters (re-serialized by the host's
PowerShell, SecureStrings re-encrypted with the inner session's key). Everything else is
PowerShell's own remoting on the host: output, errors, warnings, verbose, debug, information and
progress are relayed by ``Invoke-Command`` live; host calls (``Read-Host``, prompts) are forwarded
twice and reach the notebook's host UI; a stop/timeout/Ctrl-C signals the host pipeline, whose
``Invoke-Command`` stops the VM's pipeline. Output objects keep their type names and gain
``PSComputerName`` (and on a VM session ``VMName``/``VMId``), as with ``Invoke-Command -VMName``.

Failures keep direct-session semantics: a ``throw`` in the VM is rethrown by ``Invoke-Command``
(the run raises :class:`~hvmagic.errors.RemoteError`). A VM pipeline that failed otherwise
(``-ErrorAction Stop``, ``$ErrorActionPreference='Stop'``) is only *written* as an error by
``Invoke-Command``; the wrapper in the VM marks the end of the user's script, and when errors came
back but the mark did not, the host rethrows the last error so the run fails as it would have
directly (that error then appears in ``Result.errors`` too).

The one seam: ``pssession_arguments`` replaces the ``New-PSSession`` arguments (``-VMName``/
``-VMId``, ``-Credential``, ``-ConfigurationName``) and nothing else. The test rig points it at a
second PowerShell over SSH; every other line here runs as shipped.

Secrets: the guest credential crosses as a PSCredential parameter (encrypted with the outer PSRP
session key), is splatted into ``New-PSSession`` and removed from the host runspace in a
``finally``; it is never part of script text, a description, a repr or a recording.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
from collections.abc import Mapping
from typing import Any

from hvmagic.clixml.values import ErrorRecord, PSCredential, SecureString
from hvmagic.credentials import PASSWORD_ENV_VAR, get_password
from hvmagic.errors import (
    CredentialError,
    HvMagicError,
    RemoteError,
    SessionBrokenError,
    TransportError,
    UnsupportedPlatformError,
)
from hvmagic.host import HostUI
from hvmagic.psrp.client import ClientEvent, PipelineRecord
from hvmagic.session import OPEN_TIMEOUT, WRAPPER_SCRIPT, Session
from hvmagic.sessionlike import OnEvent, Result
from hvmagic.transports.base import Transport

__all__ = [
    "HOP_VIAS",
    "HOP_WRAPPER",
    "HopSession",
    "connect_hop",
    "guest_wrapper",
    "local_hop_applies",
    "open_host_transport",
    "vm_pssession_arguments",
]

#: how the notebook reaches the Hyper-V host
HOP_VIAS = ("ssh", "winrm", "process")
#: the environment variable for the Hyper-V host's password (WinRM with NTLM/CredSSP/Basic)
HOST_PASSWORD_ENV = "HVMAGIC_HOST_PASSWORD"
#: host names that mean "this machine" for via="process"
LOCAL_HOSTS = ("localhost", ".", "127.0.0.1", "::1")


def guest_wrapper(wrapper: str = WRAPPER_SCRIPT) -> str:
    """The direct session's wrapper plus the end-of-script mark the host checks on errors.

    The mark is set only when the user's dot-sourced script returned: a script-terminating
    error (the pipeline ``Failed``) skips it. Derived from :data:`WRAPPER_SCRIPT` so both stay
    one wrapper.
    """
    # the param() block must stay first; the wrapper may go on on the same line
    param = re.match(r"\s*param\([^)]*\)", wrapper)
    if param is None:
        raise ValueError("the run wrapper must start with its param() block")
    head, body = wrapper[: param.end()], wrapper[param.end():].strip()
    # all on the wrapper's first line, so stack traces read "line 1" as in a direct session
    return (
        f"{head} $global:__hvmagic_completed = $false; {body}\n"
        "$global:__hvmagic_completed = $true\n"
    )


#: the per-run script in the host's runspace: relay the run into the VM's session
HOP_WRAPPER = """\
param($__hvmagic_script, $__hvmagic_parameters)
try {
    Invoke-Command -Session $global:__hvmagic_hop -ScriptBlock $global:__hvmagic_guest_wrapper `
        -ArgumentList $__hvmagic_script, $__hvmagic_parameters -ErrorVariable __hvmagic_errors
    if ($__hvmagic_errors.Count -gt 0 -and -not (Invoke-Command -Session $global:__hvmagic_hop `
            -ScriptBlock { $global:__hvmagic_completed })) {
        # the VM's pipeline failed (not by throw, which Invoke-Command rethrows): fail here too
        throw $__hvmagic_errors[-1]
    }
} catch {
    throw  # a statement-terminating error (inner session broken) must fail the run too
} finally {
    Remove-Variable -Name __hvmagic_script, __hvmagic_parameters, __hvmagic_errors `
        -ErrorAction Ignore
}
"""

#: opens the inner session in the host runspace; ``hvmagic_target`` is splatted
HOP_OPEN_SCRIPT = """\
try {
    $global:__hvmagic_guest_wrapper = [scriptblock]::Create($hvmagic_guest_wrapper)
    $global:__hvmagic_hop = New-PSSession @hvmagic_target -ErrorAction Stop
    if ($null -eq $global:__hvmagic_hop) { throw 'New-PSSession returned no session' }
    $global:__hvmagic_hop | Select-Object -Property ComputerName, ComputerType, State,
        ConfigurationName, Availability
} catch {
    # New-PSSession -VMName raises statement-terminating errors (no Hyper-V module, VM not
    # found): uncaught, they would only end the statement and the script would complete
    # without a session. Rethrown here, they fail the run.
    throw
} finally {
    Remove-Variable -Name hvmagic_target, hvmagic_guest_wrapper -ErrorAction Ignore
}
"""

#: run before the host session closes: release the VM's session first
HOP_CLOSE_SCRIPT = """\
if ($global:__hvmagic_hop) { Remove-PSSession -Session $global:__hvmagic_hop }
Remove-Variable -Name __hvmagic_hop -Scope Global -ErrorAction Ignore
"""


class HopSession(Session):
    """A :class:`~hvmagic.session.Session` whose runs go through the host into the VM."""

    #: set by :func:`open_hop` once the inner session exists
    host: str = ""
    vm: str = ""

    def run(
        self,
        script: str,
        parameters: Mapping[str, Any] | None = None,
        timeout: float | None = None,
        on_event: OnEvent | None = None,
    ) -> Result:
        """Run ``script`` in the VM (through the host); errors carry the VM's name."""
        if self.wrapper_script != HOP_WRAPPER:
            return super().run(script, parameters, timeout, on_event)
        try:
            return super().run(script, parameters, timeout, on_event)
        except RemoteError as exc:
            record, result = exc.record, exc.result
            if record is not None:
                _label(record, self.vm)
                errors = getattr(result, "errors", None)
                if errors and _same_error(errors[-1], record):
                    # the host rethrew the VM's failure after Invoke-Command had written it
                    # as an error: a direct session reports it once, as the failure
                    errors.pop()
            raise RemoteError(f"[{self.vm}] {exc}", record=record, result=result) from None

    def run_on_host(
        self, script: str, parameters: Mapping[str, Any] | None = None,
        timeout: float | None = None,
    ) -> Result:
        """Run ``script`` in the Hyper-V host's runspace itself (diagnostics, Hyper-V cmdlets)."""
        previous = self.wrapper_script
        self.wrapper_script = WRAPPER_SCRIPT
        try:
            return super().run(script, parameters, timeout)
        finally:
            self.wrapper_script = previous

    def _dispatch(self, event: ClientEvent) -> None:
        if (
            isinstance(event, PipelineRecord) and event.stream == "error"
            and self.wrapper_script == HOP_WRAPPER
        ):
            _label(event.record, self.vm)
        super()._dispatch(event)

    def close(self, timeout: float = 10.0) -> None:
        if not self._closed and not self.broken and self.wrapper_script == HOP_WRAPPER:
            self.wrapper_script = WRAPPER_SCRIPT  # this one runs in the host's runspace
            with contextlib.suppress(HvMagicError):
                Session.run(self, HOP_CLOSE_SCRIPT, timeout=timeout)
        super().close(timeout)


def _label(record: Any, vm: str) -> None:
    """Name the VM on an error record, as PowerShell's ``OriginInfo`` does for remote errors
    (the OriginInfo itself is not serialized across the host)."""
    properties = getattr(record, "properties", None)
    if isinstance(properties, dict) and vm:
        properties.setdefault("PSComputerName", vm)


def _same_error(a: Any, b: Any) -> bool:
    return bool(
        isinstance(a, ErrorRecord) and isinstance(b, ErrorRecord)
        and a.message == b.message and a.fully_qualified_error_id == b.fully_qualified_error_id
    )


def vm_pssession_arguments(
    vm: str | None,
    credential: PSCredential,
    *,
    vm_id: str | None = None,
    configuration: str | None = None,
) -> dict[str, Any]:
    """``New-PSSession`` arguments for PowerShell Direct: ``-VMName``/``-VMId``, ``-Credential``,
    ``-ConfigurationName`` (JEA)."""
    arguments: dict[str, Any] = {"Credential": credential}
    if vm_id is not None:
        arguments["VMId"] = vm_id
    elif vm:
        arguments["VMName"] = vm
    else:
        raise ValueError("name the VM (vm) or give its id (vm_id=)")
    if configuration:
        arguments["ConfigurationName"] = configuration
    return arguments


def winrm_host_password(
    host_username: str | None, host_password: str | SecureString | None
) -> str | SecureString | None:
    """The WinRM host account's password: as given, else ``HVMAGIC_HOST_PASSWORD``, keyring or
    a prompt. NTLM/CredSSP/Basic need it; Kerberos with a ticket does not (no host_username).
    :func:`hvmagic.connect` resolves it once before ``wait=`` retries, so a prompt is not
    repeated at every attempt."""
    if not host_username or host_password is not None:
        return host_password
    from_env = os.environ.get(HOST_PASSWORD_ENV)
    env = {PASSWORD_ENV_VAR: from_env} if from_env is not None else {}
    return get_password(host_username, None, env=env)


def local_hop_applies(
    target: str, via: str, *, platform: str = sys.platform,
    version: tuple[int, int] = (sys.version_info.major, sys.version_info.minor),
) -> bool:
    """True where ``connect(VM)`` must hop through a local ``powershell.exe -s``: a Windows host
    whose CPython (< 3.12) has no AF_HYPERV sockets."""
    return via == "auto" and target != "sim" and platform == "win32" and version < (3, 12)


def open_host_transport(
    host: str | None,
    via: str,
    *,
    host_username: str | None = None,
    host_password: str | SecureString | None = None,
    port: int | None = None,
    identity_file: str | None = None,
    ssh_options: Mapping[str, str] | None = None,
    ssh_config: str | None = None,
    executable: str | None = None,
    timeout: float | None = None,
    winrm: Mapping[str, Any] | None = None,
) -> Transport:
    """The transport to the Hyper-V host's PowerShell for ``via`` (ssh, winrm or process)."""
    if via == "ssh":
        if not host:
            raise ValueError("via='ssh' needs host=")
        from hvmagic.transports.ssh import SSHTransport

        return SSHTransport(
            host, user=host_username, port=port, identity_file=identity_file,
            options=ssh_options, config_file=ssh_config, connect_timeout=timeout,
        )
    if via == "winrm":
        if not host:
            raise ValueError("via='winrm' needs host=")
        from hvmagic.transports.winrm import WinRMTransport

        host_password = winrm_host_password(host_username, host_password)
        return WinRMTransport(
            host, username=host_username, password=host_password, port=port,
            connect_timeout=timeout, **dict(winrm or {}),
        )
    if via == "process":
        if host is not None and host.lower() not in LOCAL_HOSTS:
            raise ValueError(
                f"via='process' runs PowerShell on this machine; host={host!r} is another one "
                "(use via='ssh' or via='winrm')"
            )
        from hvmagic.transports.process import ProcessTransport

        if executable is None and sys.platform == "win32":
            # Windows PowerShell 5.1 is on every Hyper-V host and has the Hyper-V module
            import shutil

            executable = shutil.which("powershell.exe")
        return ProcessTransport(executable=executable)
    raise ValueError(f"via must be one of {', '.join(HOP_VIAS)} for a hop, not {via!r}")


def _unwrap_open_failure(exc: SessionBrokenError) -> HvMagicError:
    """The typed transport error (SSH authentication, WSMan fault …) behind a failed open."""
    cause = exc.__cause__
    if isinstance(cause, (CredentialError, TransportError)) and not isinstance(
        cause, SessionBrokenError
    ):
        return cause
    return exc


def open_remote_session(
    transport: Transport, *, name: str, host_ui: HostUI | None, timeout: float | None,
    session_class: type[Session] = Session,
) -> Session:
    """Open a PowerShell session on ``transport``; a failing transport raises its typed error."""
    session = session_class(transport, name=name, host_ui=host_ui)
    try:
        session._open(timeout or OPEN_TIMEOUT)
    except SessionBrokenError as exc:
        session.close()
        raise _unwrap_open_failure(exc) from exc
    except BaseException:
        session.close()
        raise
    return session


def connect_hop(
    vm: str,
    *,
    host: str | None,
    via: str = "ssh",
    username: str | None = None,
    password: str | SecureString | None = None,
    credential: PSCredential | None = None,
    configuration: str | None = None,
    vm_id: str | None = None,
    host_username: str | None = None,
    host_password: str | SecureString | None = None,
    host_credential: PSCredential | None = None,
    host_ui: HostUI | None = None,
    timeout: float | None = None,
    pssession_arguments: Mapping[str, Any] | None = None,
    **transport_options: Any,
) -> HopSession:
    """A session in ``vm`` through its Hyper-V ``host``; see the module docstring.

    ``username``/``password``/``credential``: the guest account (asked like a direct session's:
    explicit, ``HVMAGIC_PASSWORD``, keyring, prompt). ``host_username``/``host_password``/
    ``host_credential``: the host account (SSH uses keys and the agent, not a password).
    ``transport_options``: ``port``, ``identity_file``, ``ssh_options``, ``ssh_config``,
    ``executable`` (via process), ``winrm`` (a mapping of WinRM options).
    """
    if via not in HOP_VIAS:
        raise ValueError(f"via must be one of {', '.join(HOP_VIAS)} for a hop, not {via!r}")
    if host_credential is not None:
        host_username = host_username or host_credential.username
        host_password = host_password if host_password is not None else host_credential.password
    if pssession_arguments is None:
        if credential is not None:
            username = username or credential.username
            password = password if password is not None else credential.password
        if not username:
            raise CredentialError(
                "PowerShell Direct from the host needs a guest user name (username= or "
                "credential=)"
            )
        guest = PSCredential(username, get_password(username, password))
        arguments = vm_pssession_arguments(vm, guest, vm_id=vm_id, configuration=configuration)
    else:
        arguments = dict(pssession_arguments)  # the test seam: everything but -VMName as shipped
    transport = open_host_transport(
        host, via, host_username=host_username, host_password=host_password, timeout=timeout,
        **transport_options,
    )
    session = open_remote_session(
        transport, name=vm, host_ui=host_ui, timeout=timeout, session_class=HopSession
    )
    assert isinstance(session, HopSession)
    session.host = host or "localhost"
    session.vm = vm
    try:
        session.run(
            HOP_OPEN_SCRIPT,
            {"hvmagic_target": arguments, "hvmagic_guest_wrapper": guest_wrapper()},
            timeout=timeout or OPEN_TIMEOUT,
        )
    except RemoteError as exc:
        session.close()
        raise _hop_open_error(vm, session.host, exc) from None
    except BaseException:
        session.close()
        raise
    finally:
        arguments.clear()  # drop our reference to the guest credential
    session.wrapper_script = HOP_WRAPPER
    session.description = f"PowerShell Direct to {vm} via {session.description}"
    _read_vm_ps_version(session, timeout)
    return session


def _read_vm_ps_version(session: HopSession, timeout: float | None) -> None:
    """Default columns follow the PowerShell that made the objects: the VM's (typically
    Windows PowerShell 5.1), not the host runspace's (pwsh 7 over SSH) that the pool-open data
    describes. One round trip at connect time."""
    try:
        output = session.run("$PSVersionTable.PSVersion.ToString()",
                             timeout=timeout or OPEN_TIMEOUT).output
    except HvMagicError:
        return  # the views fall back to the host's version; the session itself is fine
    session.set_ps_version(output[0] if len(output) == 1 else None)


def _hop_open_error(vm: str, host: str, exc: RemoteError) -> HvMagicError:
    """``New-PSSession -VMName`` failed on the host: say which side and why, typed."""
    record = exc.record
    reason = str(exc)
    error_id = str(getattr(record, "fully_qualified_error_id", "") or "")
    text = f"{reason} {error_id}".lower()
    where = f"on the Hyper-V host {host!r}, opening a PowerShell Direct session to {vm!r}"
    if "credential" in text or "logon failure" in text or "password" in text:
        return CredentialError(f"{where}: the guest rejected the credentials: {reason}")
    if "hyper-v module" in text or ("not recognized" in text and "new-pssession" not in text):
        return UnsupportedPlatformError(
            f"{where}: {reason} (PowerShell Direct needs the Hyper-V host that runs the VM, "
            "with the Hyper-V PowerShell module)"
        )
    return RemoteError(f"{where}: {reason}", record=record, result=exc.result)


def plain_remote_session(
    target: str,
    *,
    via: str,
    host_username: str | None = None,
    host_password: str | SecureString | None = None,
    host_ui: HostUI | None = None,
    timeout: float | None = None,
    **transport_options: Any,
) -> Session:
    """A session in the PowerShell of ``target`` itself over SSH or WinRM (no VM hop)."""
    transport = open_host_transport(
        target, via, host_username=host_username, host_password=host_password, timeout=timeout,
        **transport_options,
    )
    return open_remote_session(transport, name=target, host_ui=host_ui, timeout=timeout)
