"""Copy files into and out of a guest over an open session (what ``%vmcopy`` runs).

The transfer is plain PSRP on the session, the way ``Copy-Item -ToSession/-FromSession`` does
it (``psdirect-protocol.md`` §4): small PowerShell scripts (:data:`SCRIPTS`) run in the guest,
moving chunks as ``byte[]`` parameters and outputs (CLIXML ``<BA>``: the serializers on both
ends do the one base64 step natively). Nothing else is needed in the guest — no Guest Service
Interface, no SMB share.

Rules
-----
* **Constant memory**: one chunk (``chunk_size`` bytes, 1 MiB by default) is in flight at a
  time on each side; files of any size stream through.
* **Integrity**: the SHA-256 of what was sent is computed while reading and compared with the
  guest's own ``Get-FileHash -Algorithm SHA256`` of the written file (and the other way round
  for ``copy_from``). A mismatch removes the partial copy and raises
  :class:`~hvmagic.errors.FileCopyIntegrityError`.
* **Atomic destination**: data goes to a partial file beside the destination (in the guest
  ``<destination>.hvmagic-partial``; locally ``.<name>.<random>.hvmagic-partial``, created
  with ``O_EXCL`` so nothing planted under that name can redirect it) and replaces the
  destination only after the hashes match, so an interrupted copy never leaves a truncated
  file under the real name.
* **Overwrite**: an existing destination file is an error
  (:class:`~hvmagic.errors.FileCopyExistsError`) unless ``overwrite=True``; every destination
  is checked before the first byte moves. A destination that is a directory receives the
  source under its own name (``Copy-Item`` semantics).
* **Sources**: one file; a wildcard (``*.log``, resolved locally with :mod:`glob` or in the
  guest with ``Get-Item -Path``); a directory with ``recurse=True`` (copied as a directory of
  that name into an existing destination directory, or *as* the destination when that does not
  exist yet, like ``Copy-Item -Recurse``). Several sources need a destination directory.
* **Untrusted guest names**: ``copy_from`` writes only below the destination. Every relative
  path or name the guest reports is checked before anything is written (no ``..``, ``.``,
  empty parts, ``:``, NUL or absolute/drive paths, and the resolved target must stay inside the
  resolved destination); anything else is a :class:`~hvmagic.errors.FileCopySourceError`.
  So is a listing that names one local file twice (or as a file and a directory), a
  ``Length`` that is not a non-negative integer, or a name longer than 255 bytes. Names
  Windows cannot store (``CON``, ``LPT1.txt``, ``name.``, ``name ``) are refused on a Windows
  host and copied with a :class:`FileCopyNameWarning` (and a ``CopyResult.notes`` line)
  elsewhere, since the same runbook may run on both.
* **Errors** are :class:`~hvmagic.errors.FileCopyError` subclasses, local file-system ones
  included (:class:`~hvmagic.errors.FileCopyPermissionError` for access refused on either
  side). Their advice names the API's keywords (``overwrite=True``) or, inside
  :func:`advice` ``("magic")`` as ``%vmcopy`` uses it, the magic's flags (``--force``).
* **Guest paths** are PowerShell paths: relative ones follow the session's ``$PWD``;
  joined names use ``/`` below a POSIX path and ``\\`` otherwise.

The guest scripts are genuine PowerShell 5.1 (they run unchanged on a real guest, and the
tests run them in real PowerShell); the FakeGuest test peer answers them with handlers
(:mod:`hvmagic.testing.filecopy_handlers`) only to inject faults PowerShell cannot produce on
demand (a guest dying mid-copy, hostile chunks).
"""

from __future__ import annotations

import contextlib
import contextvars
import glob
import hashlib
import ntpath
import os
import posixpath
import secrets
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, BinaryIO

from hvmagic.errors import (
    FileCopyError,
    FileCopyExistsError,
    FileCopyIntegrityError,
    FileCopyPermissionError,
    FileCopySourceError,
    HvMagicError,
    RemoteError,
)
from hvmagic.sessionlike import CopiedFile, CopyProgress, CopyResult, SessionLike

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "SCRIPTS",
    "CopiedFile",
    "CopyProgress",
    "CopyResult",
    "FileCopyNameWarning",
    "advice",
    "copy_from",
    "copy_to",
]

#: raw bytes per chunk (one run each, ~1.4 MB of CLIXML on the wire). Against PowerShell
#: 7.6.9 over 256 MiB, 4 MiB chunks cost the same CPU per MiB on both ends (the guest's
#: deserializer, not the per-run overhead, dominates), so the smaller chunk keeps progress
#: lively and memory flat.
DEFAULT_CHUNK_SIZE = 1 << 20
PARTIAL_SUFFIX = ".hvmagic-partial"
_ERROR_PREFIX = "hvmagic-copy:"


class FileCopyNameWarning(UserWarning):
    """``copy_from`` wrote a guest name that a Windows host would refuse (``CON``, ``a.``):
    the same runbook run on Windows stops there with a :class:`FileCopySourceError`."""


#: How error messages say to change an option: the API's keyword (default) or the magic's
#: flag. ``%vmcopy`` sets it with :func:`advice` so its messages never name a keyword the
#: user did not type, and API callers never see a magic flag.
_ADVICE_STYLE: contextvars.ContextVar[str] = contextvars.ContextVar(
    "hvmagic_copy_advice", default="api"
)
_ADVICE = {
    "api": {"overwrite": "pass overwrite=True to replace it",
            "recurse": "pass recurse=True to copy it"},
    "magic": {"overwrite": "use --force to overwrite", "recurse": "use -r to copy it"},
}


@contextlib.contextmanager
def advice(style: str) -> Iterator[None]:
    """Word option advice in copy errors for ``style``: ``"api"`` or ``"magic"``."""
    if style not in _ADVICE:
        raise ValueError(f"advice style must be one of {sorted(_ADVICE)}")
    token = _ADVICE_STYLE.set(style)
    try:
        yield
    finally:
        _ADVICE_STYLE.reset(token)


def _advice(option: str) -> str:
    return _ADVICE[_ADVICE_STYLE.get()][option]


def format_rate(size: int, seconds: float) -> str:
    """`` (12.3 MB/s)`` for a copy long enough to measure, else ``""``.

    Below ~1 MiB or 50 ms the time is round trips, not throughput, and a rate such as
    ``0.0 MB/s`` would only mislead; larger copies get three significant figures.
    """
    if size < (1 << 20) or seconds < 0.05:
        return ""
    rate = size / seconds
    for unit in ("B/s", "KB/s", "MB/s", "GB/s"):
        if rate < 1000 or unit == "GB/s":
            break
        rate /= 1024
    return f" ({rate:.3g} {unit})" if rate >= 1 else ""


# --------------------------------------------------------------------------------------------
# Guest scripts (PowerShell 5.1). The first line names the operation; parameters arrive as
# variables named hvmagic_copy_* (Session.run turns parameters into variables) and are removed
# again so the user's runspace is left as it was.
# --------------------------------------------------------------------------------------------

_CLEANUP = "Remove-Variable -Name hvmagic_copy_* -ErrorAction Ignore"

SCRIPTS: dict[str, str] = {
    "stat": f"""\
# hvmagic-filecopy:stat v1
try {{
    $item = Get-Item -LiteralPath $hvmagic_copy_path -Force -ErrorAction Stop
    [pscustomobject]@{{ Exists = $true; IsDirectory = [bool]$item.PSIsContainer;
                        FullName = $item.FullName }}
}} catch [System.Management.Automation.ItemNotFoundException] {{
    [pscustomobject]@{{ Exists = $false; IsDirectory = $false; FullName = $hvmagic_copy_path }}
}} finally {{ {_CLEANUP} }}
""",
    "mkdir": f"""\
# hvmagic-filecopy:mkdir v1
try {{
    $null = New-Item -ItemType Directory -Path $hvmagic_copy_path -Force -ErrorAction Stop
}} finally {{ {_CLEANUP} }}
""",
    "to-begin": f"""\
# hvmagic-filecopy:to-begin v1
$ErrorActionPreference = 'Stop'
try {{
    # [System.IO.File] resolves a relative path against the process's directory, not $PWD
    $target = $ExecutionContext.SessionState.Path.GetUnresolvedProviderPathFromPSPath(
        $hvmagic_copy_path)
    if (Test-Path -LiteralPath $target -PathType Container) {{
        throw "{_ERROR_PREFIX}target-is-directory:$target"
    }}
    if ((Test-Path -LiteralPath $target) -and -not $hvmagic_copy_overwrite) {{
        throw "{_ERROR_PREFIX}exists:$target"
    }}
    $parent = Split-Path -Parent $target
    if ($parent -and -not (Test-Path -LiteralPath $parent)) {{
        $null = New-Item -ItemType Directory -Path $parent -Force
    }}
    $partial = $target + '{PARTIAL_SUFFIX}'
    [System.IO.File]::WriteAllBytes($partial, [byte[]]@())
    $partial
}} finally {{ {_CLEANUP} }}
""",
    "to-chunk": f"""\
# hvmagic-filecopy:to-chunk v2
try {{
    $bytes = [byte[]]$hvmagic_copy_data
    $stream = [System.IO.File]::Open($hvmagic_copy_partial, [System.IO.FileMode]::Append,
                                     [System.IO.FileAccess]::Write)
    try {{ $stream.Write($bytes, 0, $bytes.Length); $stream.Length }}
    finally {{ $stream.Dispose() }}
}} finally {{ {_CLEANUP} }}
""",
    "to-finish": f"""\
# hvmagic-filecopy:to-finish v1
$ErrorActionPreference = 'Stop'
try {{
    $hash = (Get-FileHash -LiteralPath $hvmagic_copy_partial -Algorithm SHA256).Hash
    if ($hash -ne $hvmagic_copy_sha256) {{
        Remove-Item -LiteralPath $hvmagic_copy_partial -Force
        throw "{_ERROR_PREFIX}hash-mismatch:$hash"
    }}
    $target = $ExecutionContext.SessionState.Path.GetUnresolvedProviderPathFromPSPath(
        $hvmagic_copy_path)
    # File.Replace swaps the names in one step and fails with UnauthorizedAccess on a target
    # that may not be changed (Move-Item -Force reports "already exists" there instead)
    if ([System.IO.File]::Exists($target)) {{
        [System.IO.File]::Replace($hvmagic_copy_partial, $target, [NullString]::Value)
    }} else {{
        [System.IO.File]::Move($hvmagic_copy_partial, $target)
    }}
    $hash
}} finally {{ {_CLEANUP} }}
""",
    "abort": f"""\
# hvmagic-filecopy:abort v1
try {{
    Remove-Item -LiteralPath $hvmagic_copy_partial -Force -ErrorAction Ignore
}} finally {{ {_CLEANUP} }}
""",
    "from-list": f"""\
# hvmagic-filecopy:from-list v1
$ErrorActionPreference = 'Stop'
try {{
    foreach ($item in @(Get-Item -Path $hvmagic_copy_path -Force)) {{
        if ($item.PSIsContainer) {{
            if (-not $hvmagic_copy_recurse) {{
                throw "{_ERROR_PREFIX}is-directory:$($item.FullName)"
            }}
            [pscustomobject]@{{ RelativePath = $item.Name; FullName = $item.FullName;
                                IsDirectory = $true; Length = [long]0 }}
            foreach ($child in @(Get-ChildItem -LiteralPath $item.FullName -Recurse -Force)) {{
                [pscustomobject]@{{
                    RelativePath = $item.Name + $child.FullName.Substring($item.FullName.Length)
                    FullName = $child.FullName; IsDirectory = [bool]$child.PSIsContainer
                    Length = if ($child.PSIsContainer) {{ [long]0 }} else {{ [long]$child.Length }}
                }}
            }}
        }} else {{
            [pscustomobject]@{{ RelativePath = $item.Name; FullName = $item.FullName;
                                IsDirectory = $false; Length = [long]$item.Length }}
        }}
    }}
}} finally {{ {_CLEANUP} }}
""",
    "from-chunk": f"""\
# hvmagic-filecopy:from-chunk v2
try {{
    $stream = [System.IO.File]::Open($hvmagic_copy_path, [System.IO.FileMode]::Open,
                                     [System.IO.FileAccess]::Read, [System.IO.FileShare]::ReadWrite)
    try {{
        $null = $stream.Seek([long]$hvmagic_copy_offset, [System.IO.SeekOrigin]::Begin)
        $buffer = New-Object byte[] ([int]$hvmagic_copy_count)
        $read = $stream.Read($buffer, 0, $buffer.Length)
        if ($read -ne $buffer.Length) {{ [Array]::Resize([ref]$buffer, $read) }}
        , $buffer  # one byte[] object: the serializer writes it as <BA>
    }} finally {{ $stream.Dispose() }}
}} finally {{ {_CLEANUP} }}
""",
    "hash": f"""\
# hvmagic-filecopy:hash v1
try {{
    (Get-FileHash -LiteralPath $hvmagic_copy_path -Algorithm SHA256 -ErrorAction Stop).Hash
}} finally {{ {_CLEANUP} }}
""",
}


def _run(session: SessionLike, operation: str, **parameters: Any) -> list[Any]:
    """Run one guest script; translate its deliberate failures into typed copy errors."""
    arguments = {f"hvmagic_copy_{name}": value for name, value in parameters.items()}
    try:
        result = session.run(SCRIPTS[operation], arguments)
    except RemoteError as exc:
        raise _translate(exc, parameters) from exc
    errors = list(result.errors)
    if errors:
        message = getattr(errors[0], "message", None) or str(errors[0])
        raise FileCopyError(f"guest reported an error during {operation}: {message}")
    return list(result.output)


def _translate(exc: RemoteError, parameters: Mapping[str, Any]) -> FileCopyError:
    message = str(exc)
    record = getattr(exc, "record", None)
    text = getattr(record, "message", None) or message
    path = str(parameters.get("path", ""))
    if _ERROR_PREFIX + "exists:" in text:
        return FileCopyExistsError(f"guest file {path} already exists; {_advice('overwrite')}")
    if _ERROR_PREFIX + "target-is-directory:" in text:
        where = text.split(_ERROR_PREFIX + "target-is-directory:", 1)[1].strip()
        return FileCopyExistsError(
            f"guest path {where} is a directory; a file cannot replace it"
        )
    if _ERROR_PREFIX + "is-directory:" in text:
        where = text.split(_ERROR_PREFIX + "is-directory:", 1)[1].strip()
        return FileCopySourceError(f"guest path {where} is a directory; {_advice('recurse')}")
    if _ERROR_PREFIX + "hash-mismatch:" in text:
        return FileCopyIntegrityError(
            f"SHA-256 mismatch after copying to the guest ({path}): the guest computed "
            f"{text.split('hash-mismatch:', 1)[1].strip()[:64]}; the partial file was removed"
        )
    exception_type = str(getattr(record, "exception_type", "") or "")
    if "ItemNotFound" in exception_type or "Cannot find path" in text:
        return FileCopySourceError(f"guest path not found: {path or text}")
    if "UnauthorizedAccess" in exception_type or "denied" in text.lower():
        return FileCopyPermissionError(f"the guest refused access: {text}")
    return FileCopyError(f"guest file operation failed: {text}")


def _first(values: list[Any]) -> Any:
    if not values:
        raise FileCopyError("the guest script returned no result")
    return values[0]


def _field(value: Any, name: str) -> Any:
    if isinstance(value, Mapping):
        for key in value:
            if str(key).lower() == name.lower():
                return value[key]
        return None
    return getattr(value, name, None)


def _emit(callback: Callable[[CopyProgress], None] | None, progress: CopyProgress) -> None:
    if callback is not None:
        callback(progress)


def _check_chunk_size(chunk_size: int) -> None:
    if not isinstance(chunk_size, int) or chunk_size < 1024 or chunk_size > 64 << 20:
        raise ValueError("chunk_size must be an int between 1 KiB and 64 MiB")


# --------------------------------------------------------------------------------------------
# local → guest
# --------------------------------------------------------------------------------------------


def _local_sources(local: str | os.PathLike[str], recurse: bool) -> list[tuple[Path, str]]:
    """``[(file, relative destination name)]`` plus directories as ``(dir, rel + '/')``."""
    text = os.fspath(local)
    # a name that exists as typed is that file, even with glob characters ("report [1].txt")
    if glob.has_magic(text) and not os.path.lexists(text):
        matches = sorted(Path(p) for p in glob.glob(text))
        if not matches:
            raise FileCopySourceError(f"no local file matches {text!r}")
    else:
        path = Path(text)
        if not path.exists():
            raise FileCopySourceError(f"local file not found: {text}")
        matches = [path]
    entries: list[tuple[Path, str]] = []
    for match in matches:
        if match.is_dir():
            if not recurse:
                raise FileCopySourceError(f"{match} is a directory; {_advice('recurse')}")
            entries.append((match, match.name + "/"))
            for child in sorted(match.rglob("*")):
                relative = child.relative_to(match.parent).as_posix()
                entries.append((child, relative + "/" if child.is_dir() else relative))
        else:
            entries.append((match, match.name))
    return entries


def _guest_join(base: str, relative: str) -> str:
    """Join in the guest's own style: ``/`` under a POSIX path (PowerShell on Linux takes
    ``\\`` as part of a name in .NET calls), ``\\`` otherwise."""
    parts = [p for p in relative.strip("/").split("/") if p]
    if base.startswith("/") and "\\" not in base:
        return posixpath.join(base, *parts)
    return ntpath.join(base, *parts)


def copy_to(
    session: SessionLike,
    local: str | os.PathLike[str],
    remote: str,
    *,
    overwrite: bool = False,
    recurse: bool = False,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    on_progress: Callable[[CopyProgress], None] | None = None,
) -> CopyResult:
    """Copy local file(s) to ``remote`` (a guest path) over ``session``; see the module rules."""
    _check_chunk_size(chunk_size)
    started = time.monotonic()
    with _local_errors(Path(local), "read"):
        entries = _local_sources(local, recurse)
    remote = remote.strip()
    info = _first(_run(session, "stat", path=remote))
    remote_is_dir = bool(_field(info, "IsDirectory"))
    single_file = len(entries) == 1 and not entries[0][0].is_dir()
    if single_file:
        if remote_is_dir or remote.endswith(("\\", "/")):
            targets = [(entries[0][0], _guest_join(remote, entries[0][1]))]
        else:
            targets = [(entries[0][0], remote)]
    else:
        # Copy-Item -Recurse: into an existing directory under the source's name; a single
        # directory onto a path that does not exist yet becomes that path.
        top_dirs = {rel.split("/", 1)[0] for _p, rel in entries}
        rename_root = (
            not remote_is_dir
            and not bool(_field(info, "Exists"))
            and len(top_dirs) == 1
            and entries[0][0].is_dir()
        )
        targets = []
        for path, relative in entries:
            if rename_root:
                relative = relative.split("/", 1)[1] if "/" in relative else ""
            targets.append((path, _guest_join(remote, relative) if relative else remote))
        if bool(_field(info, "Exists")) and not remote_is_dir:
            raise FileCopyError(
                f"guest path {remote} is a file; several sources need a destination directory"
            )
    result = CopyResult()
    files = [(p, t) for p, t in targets if p.is_file()]
    if not overwrite:
        for _path, target in files:
            existing = _first(_run(session, "stat", path=target))
            if _field(existing, "IsDirectory"):
                raise FileCopyExistsError(
                    f"guest path {target} is a directory; a file cannot replace it"
                )
            if _field(existing, "Exists"):
                raise FileCopyExistsError(
                    f"guest file {target} already exists; {_advice('overwrite')}"
                )
    for path, target in targets:
        if path.is_dir():
            _run(session, "mkdir", path=target)
            result.directories.append(target)
    total = sum(p.stat().st_size for p, _t in files)
    done = 0
    for index, (path, target) in enumerate(files):
        done = _send_file(
            session,
            path,
            target,
            overwrite,
            chunk_size,
            on_progress,
            result,
            done,
            total,
            index,
            len(files),
        )
    result.seconds = time.monotonic() - started
    return result


def _send_file(
    session: SessionLike,
    path: Path,
    target: str,
    overwrite: bool,
    chunk_size: int,
    on_progress: Callable[[CopyProgress], None] | None,
    result: CopyResult,
    done: int,
    total: int,
    index: int,
    count: int,
) -> int:
    size = path.stat().st_size
    partial = str(_first(_run(session, "to-begin", path=target, overwrite=overwrite)))
    digest = hashlib.sha256()
    written = 0
    try:
        with _local_errors(path, "read"), path.open("rb") as handle:
            while True:
                block = handle.read(chunk_size)
                if not block:
                    break
                digest.update(block)
                length = _first(
                    _run(
                        session,
                        "to-chunk",
                        partial=partial,
                        data=block,
                    )
                )
                written += len(block)
                if isinstance(length, bool) or not isinstance(length, int) or length != written:
                    raise FileCopyIntegrityError(
                        f"guest file {partial} has {length!r} bytes after a chunk, "
                        f"expected {written}"
                    )
                done += len(block)
                _emit(
                    on_progress,
                    CopyProgress(str(path), target, written, size, done, total, index, count),
                )
        expected = digest.hexdigest().upper()
        guest_hash = str(
            _first(_run(session, "to-finish", partial=partial, path=target, sha256=expected))
        )
    except BaseException:
        with contextlib.suppress(Exception):  # best effort: the original error matters more
            _run(session, "abort", partial=partial)
        raise
    if guest_hash.upper() != expected:
        raise FileCopyIntegrityError(
            f"SHA-256 mismatch for {target}: sent {expected}, guest has {guest_hash}"
        )
    result.files.append(CopiedFile(str(path), target, written, expected))
    if size == 0:
        _emit(on_progress, CopyProgress(str(path), target, 0, 0, done, total, index + 1, count))
    elif on_progress is not None:
        _emit(
            on_progress,
            CopyProgress(str(path), target, written, size, done, total, index + 1, count),
        )
    return done


# --------------------------------------------------------------------------------------------
# guest → local
# --------------------------------------------------------------------------------------------


def copy_from(
    session: SessionLike,
    remote: str,
    local: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    recurse: bool = False,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    on_progress: Callable[[CopyProgress], None] | None = None,
) -> CopyResult:
    """Copy guest file(s) matching ``remote`` to ``local``; see the module rules."""
    _check_chunk_size(chunk_size)
    started = time.monotonic()
    listing = _run(session, "from-list", path=remote.strip(), recurse=recurse)
    if not listing:
        raise FileCopySourceError(f"no guest file matches {remote!r}")
    entries = [_listing_entry(e) for e in listing]
    destination = Path(local)
    result = CopyResult()
    with _local_errors(destination):
        plan = _local_plan(entries, destination, os.fspath(local).endswith(("/", os.sep)))
        _check_plan(destination, plan, result)
        for _full, target, is_dir, _length in plan:
            if target.is_dir() != is_dir and (target.exists() or target.is_symlink()):
                kind = "directory" if target.is_dir() else "file"
                raise FileCopyExistsError(
                    f"local path {target} is a {kind}; the guest's "
                    f"{'directory' if is_dir else 'file'} of that name cannot replace it"
                )
        if not overwrite:
            for _full, target, is_dir, _length in plan:
                if not is_dir and (target.exists() or target.is_symlink()):
                    raise FileCopyExistsError(
                        f"local file {target} already exists; {_advice('overwrite')}"
                    )
        for _full, target, is_dir, _length in plan:
            if is_dir:
                target.mkdir(parents=True, exist_ok=True)
                result.directories.append(str(target))
    files = [(f, t, n) for f, t, d, n in plan if not d]
    total = sum(n for _f, _t, n in files)
    done = 0
    for index, (full, target, length) in enumerate(files):
        done = _receive_file(
            session,
            full,
            target,
            length,
            chunk_size,
            on_progress,
            result,
            done,
            total,
            index,
            len(files),
        )
    result.seconds = time.monotonic() - started
    return result


#: a guest-reported file length above this is refused (.NET's long.MaxValue)
_MAX_LENGTH = (1 << 63) - 1


def _listing_entry(entry: object) -> tuple[str, tuple[str, ...], bool, int]:
    """One ``from-list`` object as ``(FullName, relative parts, IsDirectory, Length)``.

    The guest builds these objects, so every field is checked for type and range here: a
    hostile listing must end in a :class:`FileCopySourceError`, not a ``ValueError`` from
    ``int()`` or an ``OverflowError`` from an infinite float.
    """
    full = _field(entry, "FullName")
    is_dir = _field(entry, "IsDirectory")
    length = _field(entry, "Length")
    if not isinstance(full, str) or not full or "\0" in full:
        raise FileCopySourceError(f"guest sent an invalid FullName {full!r} in its listing")
    if not isinstance(is_dir, bool):
        raise FileCopySourceError(f"guest sent an invalid IsDirectory {is_dir!r} for {full!r}")
    if isinstance(length, bool) or not isinstance(length, int) or not 0 <= length <= _MAX_LENGTH:
        raise FileCopySourceError(f"guest sent an invalid Length {length!r} for {full!r}")
    return full, _guest_relative_parts(_field(entry, "RelativePath")), is_dir, length


_Plan = list[tuple[str, Path, bool, int]]


def _local_plan(
    entries: list[tuple[str, tuple[str, ...], bool, int]], destination: Path, into: bool
) -> _Plan:
    """Where each listed entry goes locally (``Copy-Item`` rules, as for ``copy_to``)."""
    if len(entries) == 1 and not entries[0][2]:
        full, parts, _is_dir, length = entries[0]
        target = destination.joinpath(*parts) if destination.is_dir() or into else destination
        return [(full, target, False, length)]
    if destination.exists() and not destination.is_dir():
        raise FileCopyError(
            f"local path {destination} is a file; several sources need a destination directory"
        )
    top_dirs = {parts[0] for _f, parts, _d, _l in entries}
    rename_root = not destination.exists() and len(top_dirs) == 1 and entries[0][2]
    plan: _Plan = []
    for full, parts, is_dir, length in entries:
        if rename_root:
            parts = parts[1:]
        plan.append((full, destination.joinpath(*parts), is_dir, length))
    return plan


def _check_plan(destination: Path, plan: _Plan, result: CopyResult) -> None:
    """Refuse a plan the guest could use to clobber, escape or confuse the destination."""
    notes = []
    for _full, target, _is_dir, _length in plan:
        problem = None if target == destination else _windows_name_problem(target.name)
        if problem is None:
            continue
        if _WINDOWS_HOST:  # first: Windows would resolve "CON" to a device, "a." to "a"
            raise FileCopySourceError(
                f"guest name {target.name!r} {problem}; Windows cannot store it as a file name"
            )
        notes.append(
            f"guest name {target.name!r} {problem}: it is copied here, but the same copy on a "
            "Windows host would be refused"
        )
    _check_inside(destination, plan)
    seen: dict[str, bool] = {}  # local name → is a directory
    for _full, target, is_dir, _length in plan:
        key = _name_key(target)
        if key in seen and not (is_dir and seen[key]):
            # two listed entries for one local name: the second would silently replace the
            # first (overwrite=False or not), or a file and a directory would collide
            raise FileCopySourceError(
                f"guest listed {target.name!r} more than once for {target}; refusing to copy"
            )
        seen[key] = is_dir
    files = {key for key, is_dir in seen.items() if not is_dir}
    for _full, target, _is_dir, _length in plan:
        for parent in target.parents:
            if _name_key(parent) in files:
                raise FileCopySourceError(
                    f"guest listed {parent.name!r} both as a file and as a directory; "
                    "refusing to copy"
                )
    for note in notes:  # only once the copy is going ahead
        result.notes.append(note)
        warnings.warn(note, FileCopyNameWarning, stacklevel=4)


def _name_key(path: Path) -> str:
    # Windows and macOS file systems ignore case by default: A.txt and a.txt are one file
    text = os.path.normcase(os.fspath(path))
    return text.casefold() if sys.platform == "darwin" else text


#: whether local names must be storable by Windows (a module value, so tests can pretend)
_WINDOWS_HOST = os.name == "nt"

#: names Windows reserves for devices, with or without an extension (``NUL.txt`` is ``NUL``)
_WINDOWS_DEVICES = frozenset(
    ["CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"]
    + [f"{port}{n}" for port in ("COM", "LPT") for n in [*"0123456789", "¹", "²", "³"]]
)
_WINDOWS_FORBIDDEN = frozenset('<>:"/\\|?*') | {chr(c) for c in range(32)}


def _windows_name_problem(name: str) -> str | None:
    """Why Windows cannot store ``name`` as a file name, or ``None`` if it can."""
    if name.endswith((".", " ")):
        return "ends in a dot or a space"
    if name.split(".", 1)[0].rstrip(" ").upper() in _WINDOWS_DEVICES:
        return "is a Windows device name"
    if any(c in _WINDOWS_FORBIDDEN for c in name):
        return "contains a character Windows forbids in names"
    return None


def _guest_relative_parts(value: object) -> tuple[str, ...]:
    """Split a guest-supplied relative path into safe name parts, or refuse it.

    The guest chooses these names, so a hostile or broken guest could otherwise climb out of
    the destination (``..``), name an absolute or drive path, or smuggle a NUL/ADS colon.
    """
    text = value if isinstance(value, str) else ""
    parts = tuple(text.replace("\\", "/").split("/"))
    if (
        not text
        or text.startswith(("/", "\\"))
        or any(part in ("", ".", "..") or ":" in part or "\0" in part for part in parts)
    ):
        raise FileCopySourceError(
            f"guest sent an unsafe relative path {value!r}; refusing to write it locally"
        )
    too_long = [part for part in parts if len(os.fsencode(part)) > _MAX_NAME_BYTES]
    if too_long:
        raise FileCopySourceError(
            f"guest sent a name of {len(too_long[0])} characters ({too_long[0][:40]!r}…); "
            f"local file names are limited to {_MAX_NAME_BYTES} bytes"
        )
    return parts


#: NAME_MAX on Linux and macOS; NTFS allows 255 UTF-16 units, which is never fewer characters
_MAX_NAME_BYTES = 255


def _check_inside(destination: Path, plan: _Plan) -> None:
    # Belt and braces after the name check: a symlink already inside the destination could
    # still redirect a target, so the resolved path must stay under the resolved destination.
    root = destination.resolve()
    for _full, target, _is_dir, _length in plan:
        resolved = target.resolve()
        if resolved != root and root not in resolved.parents:
            raise FileCopySourceError(
                f"guest path would be written to {resolved}, outside the destination {root}"
            )


@contextlib.contextmanager
def _local_errors(where: Path, doing: str = "write") -> Iterator[None]:
    """Local file-system failures as typed copy errors (the cause stays attached)."""
    try:
        yield
    except HvMagicError:
        raise  # already typed (a TransportError is an OSError too)
    except OSError as exc:
        kind = FileCopyPermissionError if isinstance(exc, PermissionError) else FileCopyError
        raise kind(
            f"cannot {doing} local path {exc.filename or where}: {exc.strerror or exc}"
        ) from exc


def _open_partial(target: Path) -> tuple[Path, BinaryIO]:
    """A new, uniquely named partial file beside ``target``, never through a symlink.

    ``O_CREAT | O_EXCL`` fails on any existing name, a symlink (even a dangling one)
    included, so a link planted under the partial name cannot redirect the data; the random
    part keeps a stale partial from an earlier crash from blocking the copy.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    flags |= getattr(os, "O_BINARY", 0)
    stem = target.name[: _MAX_NAME_BYTES // 4]  # room for the suffix whatever the encoding
    for _attempt in range(8):
        partial = target.with_name(f".{stem}.{secrets.token_hex(4)}{PARTIAL_SUFFIX}")
        try:
            descriptor = os.open(partial, flags, 0o666)
        except FileExistsError:
            continue
        return partial, os.fdopen(descriptor, "wb")
    raise FileCopyError(f"could not create a partial file beside {target}")


def _chunks(session: SessionLike, full: str, length: int, chunk_size: int) -> Iterator[bytes]:
    offset = 0
    while offset < length:
        block = _first(
            _run(
                session,
                "from-chunk",
                path=full,
                offset=offset,
                count=min(chunk_size, length - offset),
            )
        )
        if not isinstance(block, bytes):
            raise FileCopyIntegrityError(
                f"guest sent a chunk of {full} at byte {offset} that is not a byte array "
                f"({type(block).__name__})"
            )
        if not block:
            raise FileCopyIntegrityError(
                f"guest file {full} ended at byte {offset}, "
                f"expected {length} bytes (did it shrink?)"
            )
        if len(block) > length - offset:
            raise FileCopyIntegrityError(
                f"guest sent {len(block)} bytes of {full} at byte {offset}, "
                f"more than the {length - offset} asked for"
            )
        offset += len(block)
        yield block


def _receive_file(
    session: SessionLike,
    full: str,
    target: Path,
    length: int,
    chunk_size: int,
    on_progress: Callable[[CopyProgress], None] | None,
    result: CopyResult,
    done: int,
    total: int,
    index: int,
    count: int,
) -> int:
    with _local_errors(target):
        target.parent.mkdir(parents=True, exist_ok=True)
        partial, handle = _open_partial(target)
    digest = hashlib.sha256()
    received = 0
    try:
        with _local_errors(target), handle:
            for block in _chunks(session, full, length, chunk_size):
                handle.write(block)
                digest.update(block)
                received += len(block)
                done += len(block)
                _emit(
                    on_progress,
                    CopyProgress(full, str(target), received, length, done, total, index, count),
                )
        guest_hash = str(_first(_run(session, "hash", path=full))).upper()
        local_hash = digest.hexdigest().upper()
        if guest_hash != local_hash:
            raise FileCopyIntegrityError(
                f"SHA-256 mismatch for {full}: guest has {guest_hash}, received {local_hash}; "
                "the partial file was removed"
            )
        with _local_errors(target):
            os.replace(partial, target)
    except BaseException:
        with contextlib.suppress(OSError):
            partial.unlink()
        raise
    result.files.append(CopiedFile(full, str(target), received, local_hash))
    _emit(
        on_progress,
        CopyProgress(full, str(target), received, length, done, total, index + 1, count),
    )
    return done


class GuestFileCopy:
    """``copy_to``/``copy_from`` as methods of a session class (live, recording, replay): the
    copy is PowerShell runs of that session, so each class gets the same two methods here
    instead of its own copy of them."""

    def copy_to(
        self: SessionLike,
        local: str | os.PathLike[str],
        remote: str,
        *,
        overwrite: bool = False,
        recurse: bool = False,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        on_progress: Callable[[CopyProgress], None] | None = None,
    ) -> CopyResult:
        """Copy a local file or directory into the guest (see :func:`copy_to`)."""
        return copy_to(self, local, remote, overwrite=overwrite, recurse=recurse,
                       chunk_size=chunk_size, on_progress=on_progress)

    def copy_from(
        self: SessionLike,
        remote: str,
        local: str | os.PathLike[str],
        *,
        overwrite: bool = False,
        recurse: bool = False,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        on_progress: Callable[[CopyProgress], None] | None = None,
    ) -> CopyResult:
        """Copy a guest file or directory to this machine (see :func:`copy_from`)."""
        return copy_from(self, remote, local, overwrite=overwrite, recurse=recurse,
                         chunk_size=chunk_size, on_progress=on_progress)
