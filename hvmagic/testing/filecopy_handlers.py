"""The simulated guest's side of :mod:`hvmagic.filecopy`.

Each script in :data:`hvmagic.filecopy.SCRIPTS` is registered as an exact-match handler that
does in Python what the PowerShell does in a real guest, on the guest's drive under
:attr:`FakeGuest.root`. Failures surface the way the real scripts make them surface (a
``throw "hvmagic-copy:…"`` terminating error, an ``ItemNotFoundException``), so the engine's
error translation is exercised for real.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from hvmagic.filecopy import _ERROR_PREFIX, PARTIAL_SUFFIX, SCRIPTS
from hvmagic.testing.handler_errors import TerminatingError


class _Guest(Protocol):
    """What these handlers use of :class:`~hvmagic.testing.FakeGuest` (which installs them, so
    they name it structurally rather than import it)."""

    def host_path(self, guest_path: str) -> Path: ...

    def guest_path(self, host_path: Path) -> str: ...

    def add_handler(self, pattern: str, function: Callable[[Any], Any], *,
                    regex: bool = False) -> None: ...


class HandlerContext(Protocol):
    """What these handlers use of :class:`~hvmagic.testing.HandlerContext`."""

    @property
    def parameters(self) -> dict[str, Any]: ...

    @property
    def guest(self) -> _Guest: ...


def _parameter(ctx: HandlerContext, name: str, default: Any = None) -> Any:
    return ctx.parameters.get(f"hvmagic_copy_{name}", default)


def _not_found(ctx: HandlerContext, guest_path: str) -> Exception:
    return TerminatingError(
        f"Cannot find path '{guest_path}' because it does not exist.",
        category="ObjectNotFound",
        error_id="PathNotFound,Microsoft.PowerShell.Commands.GetItemCommand",
        target=guest_path,
        exception_type="System.Management.Automation.ItemNotFoundException",
        command="Get-Item",
    )


def _throw(text: str) -> Exception:
    return TerminatingError(
        text,
        category="OperationStopped",
        error_id=text,
        exception_type="System.Management.Automation.RuntimeException",
    )


def _stat(ctx: HandlerContext) -> dict[str, Any]:
    guest_path = str(_parameter(ctx, "path"))
    host = ctx.guest.host_path(guest_path)
    return {
        "Exists": host.exists(),
        "IsDirectory": host.is_dir(),
        "FullName": ctx.guest.guest_path(host) if host.exists() else guest_path,
    }


def _mkdir(ctx: HandlerContext) -> None:
    ctx.guest.host_path(str(_parameter(ctx, "path"))).mkdir(parents=True, exist_ok=True)


def _to_begin(ctx: HandlerContext) -> str:
    target_text = str(_parameter(ctx, "path"))
    target = ctx.guest.host_path(target_text)
    if target.is_dir():
        raise _throw(f"{_ERROR_PREFIX}target-is-directory:{target_text}")
    if target.exists() and not _parameter(ctx, "overwrite", False):
        raise _throw(f"{_ERROR_PREFIX}exists:{target_text}")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + PARTIAL_SUFFIX)
    partial.write_bytes(b"")
    return target_text + PARTIAL_SUFFIX


def _to_chunk(ctx: HandlerContext) -> int:
    partial = ctx.guest.host_path(str(_parameter(ctx, "partial")))
    data = _parameter(ctx, "data")
    if not isinstance(data, (bytes, bytearray)):
        raise _throw(f'Cannot convert value "{data}" to type "System.Byte[]".')
    with partial.open("ab") as handle:
        handle.write(data)
        return handle.tell()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest().upper()


def _to_finish(ctx: HandlerContext) -> str:
    partial = ctx.guest.host_path(str(_parameter(ctx, "partial")))
    target = ctx.guest.host_path(str(_parameter(ctx, "path")))
    actual = _sha256(partial)
    if actual != str(_parameter(ctx, "sha256")):
        partial.unlink()
        raise _throw(f"{_ERROR_PREFIX}hash-mismatch:{actual}")
    partial.replace(target)
    return actual


def _abort(ctx: HandlerContext) -> None:
    partial = ctx.guest.host_path(str(_parameter(ctx, "partial")))
    if partial.exists():
        partial.unlink()


def _from_list(ctx: HandlerContext) -> list[dict[str, Any]]:
    guest_path = str(_parameter(ctx, "path"))
    host = ctx.guest.host_path(guest_path)
    matches = (
        sorted(host.parent.glob(host.name))
        if any(c in host.name for c in "*?[")
        else ([host] if host.exists() else [])
    )
    if not matches:
        raise _not_found(ctx, guest_path)
    entries: list[dict[str, Any]] = []
    for item in matches:
        full = ctx.guest.guest_path(item)
        if item.is_dir():
            if not _parameter(ctx, "recurse", False):
                raise _throw(f"{_ERROR_PREFIX}is-directory:{full}")
            entries.append(
                {"RelativePath": item.name, "FullName": full, "IsDirectory": True, "Length": 0}
            )
            for child in sorted(item.rglob("*")):
                relative = "\\".join((item.name, *child.relative_to(item).parts))
                entries.append(
                    {
                        "RelativePath": relative,
                        "FullName": ctx.guest.guest_path(child),
                        "IsDirectory": child.is_dir(),
                        "Length": 0 if child.is_dir() else child.stat().st_size,
                    }
                )
        else:
            entries.append(
                {
                    "RelativePath": item.name,
                    "FullName": full,
                    "IsDirectory": False,
                    "Length": item.stat().st_size,
                }
            )
    return entries


def _from_chunk(ctx: HandlerContext) -> bytes:
    guest_path = str(_parameter(ctx, "path"))
    host = ctx.guest.host_path(guest_path)
    if not host.is_file():
        raise _not_found(ctx, guest_path)
    with host.open("rb") as handle:
        handle.seek(int(_parameter(ctx, "offset", 0)))
        return handle.read(int(_parameter(ctx, "count", 0)))


def _hash(ctx: HandlerContext) -> str:
    guest_path = str(_parameter(ctx, "path"))
    host = ctx.guest.host_path(guest_path)
    if not host.is_file():
        raise _not_found(ctx, guest_path)
    return _sha256(host)


HANDLERS = {
    "stat": _stat,
    "mkdir": _mkdir,
    "to-begin": _to_begin,
    "to-chunk": _to_chunk,
    "to-finish": _to_finish,
    "abort": _abort,
    "from-list": _from_list,
    "from-chunk": _from_chunk,
    "hash": _hash,
}


def install(guest: _Guest) -> None:
    """Register the copy scripts on ``guest`` (exact matches, before any test handler)."""
    for operation, function in HANDLERS.items():
        guest.add_handler(SCRIPTS[operation], function)


__all__ = ["HANDLERS", "install"]
