"""The copy engine (hvmagic.filecopy) against guests PowerShell cannot imitate on demand.

What PowerShell does with the copy scripts is judged by real PowerShell in
``tests/pwsh/test_copy.py``. Here: faults (a bit flipped on the way), and hostile listings and
chunks a compromised guest could send (``_ScriptedGuest``).
"""

from __future__ import annotations

import hashlib
import re
import warnings
from pathlib import Path
from typing import Any

import pytest

from hvmagic import filecopy
from hvmagic.errors import (
    FileCopyIntegrityError,
    FileCopySourceError,
)
from hvmagic.filecopy import PARTIAL_SUFFIX, SCRIPTS, FileCopyNameWarning, copy_from, copy_to
from hvmagic.testing import FakeGuest, HandlerContext


@pytest.fixture
def guest() -> Any:
    with FakeGuest() as g:
        yield g


@pytest.fixture
def session(guest: FakeGuest) -> Any:
    with guest.connect() as s:
        yield s


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest().upper()


def test_hash_mismatch_into_the_guest_is_detected(guest: FakeGuest, session: Any,
                                                  tmp_path: Path) -> None:
    @guest.handle(SCRIPTS["to-chunk"])
    def corrupting_chunk(ctx: HandlerContext) -> int:
        data = bytearray(ctx.parameters["hvmagic_copy_data"])
        data[0] ^= 0xFF  # a bit flip on the way in
        partial = ctx.guest.host_path(ctx.parameters["hvmagic_copy_partial"])
        with partial.open("ab") as handle:
            handle.write(bytes(data))
            return handle.tell()

    source = tmp_path / "data.bin"
    source.write_bytes(b"important bytes" * 100)
    with pytest.raises(FileCopyIntegrityError, match="SHA-256 mismatch"):
        copy_to(session, source, "C:\\Temp\\data.bin")
    assert not guest.host_path("C:\\Temp\\data.bin").exists()
    assert not guest.host_path("C:\\Temp\\data.bin" + PARTIAL_SUFFIX).exists()


def test_hash_mismatch_out_of_the_guest_is_detected(guest: FakeGuest, session: Any,
                                                    tmp_path: Path) -> None:
    remote = guest.host_path("C:\\Temp\\log.txt")
    remote.parent.mkdir(parents=True)
    remote.write_bytes(b"line\n" * 1000)

    @guest.handle(SCRIPTS["from-chunk"])
    def corrupting_read(ctx: HandlerContext) -> bytes:
        host = ctx.guest.host_path(ctx.parameters["hvmagic_copy_path"])
        with host.open("rb") as handle:
            handle.seek(int(ctx.parameters["hvmagic_copy_offset"]))
            block = handle.read(int(ctx.parameters["hvmagic_copy_count"]))
        return block.replace(b"line", b"LINE", 1)

    target = tmp_path / "log.txt"
    with pytest.raises(FileCopyIntegrityError, match="SHA-256 mismatch"):
        copy_from(session, "C:\\Temp\\log.txt", target)
    assert not target.exists()
    assert not (tmp_path / ("log.txt" + PARTIAL_SUFFIX)).exists()


def test_chunk_size_is_validated(session: Any, tmp_path: Path) -> None:
    source = tmp_path / "f"
    source.write_bytes(b"x")
    with pytest.raises(ValueError, match="chunk_size"):
        copy_to(session, source, "C:\\Temp\\f", chunk_size=10)


def test_guest_scripts_are_self_cleaning_powershell() -> None:
    for operation, script in SCRIPTS.items():
        assert re.match(rf"# hvmagic-filecopy:{operation} v\d+\n", script)
        assert "Remove-Variable -Name hvmagic_copy_* -ErrorAction Ignore" in script
        assert script.count("{") == script.count("}")
    assert "Get-FileHash -LiteralPath $hvmagic_copy_partial -Algorithm SHA256" in (
        SCRIPTS["to-finish"])
    assert "$bytes = [byte[]]$hvmagic_copy_data" in SCRIPTS["to-chunk"]


class _ScriptedGuest:
    """A guest that answers the copy scripts with whatever listing and chunk text it is given,
    the way a hostile or broken guest could."""

    def __init__(self, listing: list[dict[str, Any]], chunk: Any, payload: bytes) -> None:
        self.listing = listing
        self.chunk = chunk
        self.payload = payload

    def run(self, script: str, parameters: Any = None, **_kw: Any) -> Any:
        from types import SimpleNamespace

        from hvmagic.clixml.values import PSObject

        op = script.splitlines()[0]
        if "from-list" in op:
            out: list[Any] = [PSObject(entry) for entry in self.listing]
        elif "from-chunk" in op:
            out = [self.chunk]
        elif ":hash" in op:
            out = [sha(self.payload)]
        else:
            raise AssertionError(op)
        return SimpleNamespace(output=out, errors=[])


def _file_entry(relative: str, length: int) -> dict[str, Any]:
    return {"RelativePath": relative, "FullName": "C:\\logs\\a.txt", "IsDirectory": False,
            "Length": length}


@pytest.mark.parametrize("relative", [
    "logs\\..\\..\\escaped.txt", "logs/../../escaped.txt", "logs\\..", "logs\\.\\a.txt",
    "logs\\\\a.txt", "logs\\C:\\escaped.txt", "logs\\a.txt:ads", "logs\\a\x00.txt",
])
def test_copy_from_refuses_guest_paths_that_climb_out(tmp_path: Path, relative: str) -> None:
    payload = b"owned\n"
    listing = [{"RelativePath": "logs", "FullName": "C:\\logs", "IsDirectory": True,
                "Length": 0}, _file_entry(relative, len(payload))]
    dest = tmp_path / "a" / "b" / "dest"
    dest.parent.mkdir(parents=True)
    guest = _ScriptedGuest(listing, payload, payload)
    with pytest.raises(FileCopySourceError, match="unsafe relative path"):
        copy_from(guest, "C:\\logs", dest, recurse=True)
    written = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))
    assert written == ["a", "a/b"]


@pytest.mark.parametrize("name", ["..", "..\\escaped.txt", "{root}/escaped.txt",
                                  "{root}\\escaped.txt", "C:\\escaped.txt", "C:escaped.txt",
                                  ""])
def test_copy_from_refuses_an_unsafe_single_file_name(tmp_path: Path, name: str) -> None:
    # Absolute names point into tmp_path so that a regression cannot write to the real disk.
    name = name.format(root=tmp_path)
    payload = b"owned\n"
    dest = tmp_path / "inbox"
    dest.mkdir()
    guest = _ScriptedGuest([_file_entry(name, len(payload))],
                           payload, payload)
    with pytest.raises(FileCopySourceError):
        copy_from(guest, "C:\\logs\\a.txt", dest)
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["inbox"]


def test_copy_from_refuses_a_symlink_that_leads_outside(tmp_path: Path) -> None:
    payload = b"owned\n"
    outside = tmp_path / "outside"
    outside.mkdir()
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "logs").symlink_to(outside, target_is_directory=True)
    listing = [{"RelativePath": "logs", "FullName": "C:\\logs", "IsDirectory": True,
                "Length": 0}, _file_entry("logs\\a.txt", len(payload))]
    guest = _ScriptedGuest(listing, payload, payload)
    with pytest.raises(FileCopySourceError, match="outside the destination"):
        copy_from(guest, "C:\\logs", dest, recurse=True)
    assert list(outside.iterdir()) == []


def test_copy_from_accepts_ordinary_nested_guest_names(tmp_path: Path) -> None:
    payload = b"fine\n"
    listing = [{"RelativePath": "logs", "FullName": "C:\\logs", "IsDirectory": True,
                "Length": 0}, _file_entry("logs\\sub\\a..b.txt", len(payload))]
    guest = _ScriptedGuest(listing, payload, payload)
    dest = tmp_path / "dest"
    dest.mkdir()
    result = copy_from(guest, "C:\\logs", dest, recurse=True)
    assert (dest / "logs" / "sub" / "a..b.txt").read_bytes() == payload
    assert [f.size for f in result.files] == [len(payload)]


@pytest.mark.parametrize("chunk", ["eA==", None, [1, 2], 7])
def test_copy_from_types_a_chunk_that_is_not_bytes(tmp_path: Path, chunk: Any) -> None:
    guest = _ScriptedGuest([_file_entry("a.txt", 10)], chunk, b"")
    target = tmp_path / "a.txt"
    with pytest.raises(FileCopyIntegrityError, match="not a byte array"):
        copy_from(guest, "C:\\a.txt", target)
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------ hostile listings (issue 16.5)


def _two_entry_listing(first: dict[str, Any], second: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"RelativePath": "logs", "FullName": "C:\\logs", "IsDirectory": True, "Length": 0},
            first, second]


@pytest.mark.parametrize("overwrite", [False, True])
def test_copy_from_refuses_a_name_listed_twice(tmp_path: Path, overwrite: bool) -> None:
    # before: the second a.txt silently replaced the first, even with overwrite=False
    payload = b"second\n"
    listing = _two_entry_listing(_file_entry("logs\\a.txt", len(payload)),
                                 _file_entry("logs\\a.txt", len(payload)))
    guest = _ScriptedGuest(listing, payload, payload)
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(FileCopySourceError, match="more than once"):
        copy_from(guest, "C:\\logs", dest, recurse=True, overwrite=overwrite)
    assert list(dest.iterdir()) == []


@pytest.mark.parametrize("order", ["file first", "directory first", "file then child"])
def test_copy_from_refuses_a_file_and_a_directory_of_one_name(tmp_path: Path, order: str) -> None:
    # before: FileExistsError / NotADirectoryError escaped, not FileCopyError
    payload = b"x"
    as_file = _file_entry("logs\\same", 1)
    as_dir = {"RelativePath": "logs\\same", "FullName": "C:\\logs\\same", "IsDirectory": True,
              "Length": 0}
    child = _file_entry("logs\\same\\child.txt", 1)
    first, second = {"file first": (as_file, as_dir), "directory first": (as_dir, as_file),
                     "file then child": (as_file, child)}[order]
    guest = _ScriptedGuest(_two_entry_listing(first, second), payload,
                           payload)
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(FileCopySourceError):
        copy_from(guest, "C:\\logs", dest, recurse=True)
    assert list(dest.iterdir()) == []


@pytest.mark.parametrize("length", ["12abc", float("inf"), float("nan"), -1, 1 << 70, True,
                                    None, "12", 12.0])
def test_copy_from_refuses_a_length_that_is_not_a_size(tmp_path: Path, length: Any) -> None:
    # before: ValueError (int('12abc')), OverflowError (int(inf)) escaped untyped
    guest = _ScriptedGuest([_file_entry("a.txt", 0) | {"Length": length}], b"", b"")
    with pytest.raises(FileCopySourceError, match="invalid Length"):
        copy_from(guest, "C:\\a.txt", tmp_path / "a.txt")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("field,value", [("IsDirectory", "False"), ("FullName", None),
                                         ("FullName", 7), ("RelativePath", 5)])
def test_copy_from_refuses_listing_fields_of_the_wrong_type(
    tmp_path: Path, field: str, value: Any
) -> None:
    guest = _ScriptedGuest([_file_entry("a.txt", 1) | {field: value}], b"x", b"x")
    with pytest.raises(FileCopySourceError):
        copy_from(guest, "C:\\a.txt", tmp_path / "inbox")
    assert list(tmp_path.iterdir()) == []


def test_copy_from_refuses_a_name_too_long_for_this_file_system(tmp_path: Path) -> None:
    # before: OSError(ENAMETOOLONG) from open() escaped untyped
    name = "n" * 300 + ".txt"
    guest = _ScriptedGuest([_file_entry(name, 2)], b"ok", b"ok")
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    with pytest.raises(FileCopySourceError, match="limited to 255 bytes"):
        copy_from(guest, "C:\\x", inbox)
    assert list(inbox.iterdir()) == []


def test_a_long_name_that_fits_still_gets_a_partial_file(tmp_path: Path) -> None:
    name = "é" * 120 + ".txt"  # 244 bytes: the name fits, name + ".hvmagic-partial" would not
    payload = b"fits"
    guest = _ScriptedGuest([_file_entry(name, len(payload))],
                           payload, payload)
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    copy_from(guest, "C:\\x", inbox)
    assert [p.name for p in inbox.iterdir()] == [name]
    assert (inbox / name).read_bytes() == payload


WINDOWS_UNSAFE = ["CON", "nul", "COM1", "LPT1.txt", "aux.tar.gz", "CON .txt", "name.",
                  "name ", "a<b>.txt"]


@pytest.mark.parametrize("name", WINDOWS_UNSAFE)
def test_windows_unsafe_guest_names_are_refused_on_windows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    monkeypatch.setattr(filecopy, "_WINDOWS_HOST", True)
    guest = _ScriptedGuest([_file_entry(name, 1)], b"x", b"x")
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    with pytest.raises(FileCopySourceError, match="Windows cannot store it"):
        copy_from(guest, "C:\\x", inbox)
    assert list(inbox.iterdir()) == []


@pytest.mark.parametrize("name", WINDOWS_UNSAFE)
def test_windows_unsafe_guest_names_are_noted_elsewhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    monkeypatch.setattr(filecopy, "_WINDOWS_HOST", False)
    guest = _ScriptedGuest([_file_entry(name, 1)], b"x", b"x")
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    with pytest.warns(FileCopyNameWarning, match="a Windows host would be refused"):
        result = copy_from(guest, "C:\\x", inbox)
    assert (inbox / name).read_bytes() == b"x"
    assert len(result.notes) == 1 and repr(name) in result.notes[0]


@pytest.mark.parametrize("name", ["CONSOLE.txt", "COM10", "nul_device.log", "a.b.c", ".name"])
def test_ordinary_names_near_windows_device_names_pass_silently(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    monkeypatch.setattr(filecopy, "_WINDOWS_HOST", True)
    guest = _ScriptedGuest([_file_entry(name, 1)], b"x", b"x")
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = copy_from(guest, "C:\\x", inbox)
    assert (inbox / name).read_bytes() == b"x" and result.notes == []


def test_a_planted_partial_symlink_cannot_redirect_the_data(tmp_path: Path) -> None:
    # before: data went to <target>.hvmagic-partial, following a symlink planted there
    outside = tmp_path / "outside.txt"
    outside.write_bytes(b"precious")
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / ("a.txt" + PARTIAL_SUFFIX)).symlink_to(outside)
    (dest / (".a.txt" + PARTIAL_SUFFIX)).symlink_to(outside)
    payload = b"guest data"
    guest = _ScriptedGuest([_file_entry("a.txt", len(payload))],
                           payload, payload)
    copy_from(guest, "C:\\a.txt", dest)
    assert outside.read_bytes() == b"precious"
    assert (dest / "a.txt").read_bytes() == payload
    assert not (dest / "a.txt").is_symlink()


def test_a_symlink_at_the_target_itself_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_bytes(b"precious")
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "a.txt").symlink_to(outside)
    guest = _ScriptedGuest([_file_entry("a.txt", 1)], b"x", b"x")
    with pytest.raises(FileCopySourceError, match="outside the destination"):
        copy_from(guest, "C:\\a.txt", dest, overwrite=True)
    assert outside.read_bytes() == b"precious"


def test_a_chunk_longer_than_asked_is_an_integrity_error(tmp_path: Path) -> None:
    guest = _ScriptedGuest([_file_entry("a.txt", 2)], b"x" * 100,
                           b"x" * 100)
    with pytest.raises(FileCopyIntegrityError, match="more than"):
        copy_from(guest, "C:\\a.txt", tmp_path / "a.txt")
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------ messages (issue 12.4)


@pytest.mark.parametrize("size,seconds,expected", [
    (1024, 0.5, ""),  # before: " (0.0 MB/s)" for a 1 KB copy
    (0, 0.0, ""),
    (5 << 20, 0.01, ""),  # 10 ms is round trips, not throughput
    (5 << 20, 0.5, " (10 MB/s)"),
    (3 << 20, 2.0, " (1.5 MB/s)"),
    (200 << 20, 0.1, " (1.95 GB/s)"),
    (2 << 20, 10.0, " (205 KB/s)"),
])
def test_copy_rates_are_shown_only_when_they_mean_something(
    size: int, seconds: float, expected: str
) -> None:
    assert filecopy.format_rate(size, seconds) == expected


def test_exists_and_directory_advice_fit_the_caller(session: Any, guest: FakeGuest,
                                                     tmp_path: Path) -> None:
    # before: the API said "pass overwrite=True", and %vmcopy appended "(use --force ...)"
    # to that same text; the directory message named both recurse=True and %vmcopy -r
    existing = guest.host_path("C:\\Temp\\x.txt")
    existing.parent.mkdir(parents=True)
    existing.write_text("old", encoding="utf-8")
    (tmp_path / "x.txt").write_text("new", encoding="utf-8")
    (tmp_path / "tree").mkdir()
    with pytest.raises(FileExistsError) as api:
        copy_to(session, tmp_path / "x.txt", "C:\\Temp\\x.txt")
    with pytest.raises(FileCopySourceError) as api_dir:
        copy_to(session, tmp_path / "tree", "C:\\Temp")
    with filecopy.advice("magic"):
        with pytest.raises(FileExistsError) as magic:
            copy_to(session, tmp_path / "x.txt", "C:\\Temp\\x.txt")
        with pytest.raises(FileCopySourceError) as magic_dir:
            copy_from(session, "C:\\Temp", tmp_path / "back")
    assert str(api.value).endswith("already exists; pass overwrite=True to replace it")
    assert str(magic.value).endswith("already exists; use --force to overwrite")
    assert str(api_dir.value).endswith("is a directory; pass recurse=True to copy it")
    assert str(magic_dir.value).endswith("is a directory; use -r to copy it")
    assert "%vmcopy" not in str(api_dir.value) and "--force" not in str(api.value)
    with pytest.raises(ValueError):
        filecopy.advice("shell").__enter__()


@pytest.mark.parametrize("reply", ["12abc", 1.5, True, 10**30])
def test_copy_to_types_a_chunk_reply_that_is_not_the_length(
    guest: FakeGuest, session: Any, tmp_path: Path, reply: Any
) -> None:
    # before: int('12abc') raised ValueError out of copy_to
    @guest.handle(SCRIPTS["to-chunk"])
    def lying_chunk(ctx: HandlerContext) -> Any:
        return reply

    source = tmp_path / "data.bin"
    source.write_bytes(b"x" * 10)
    with pytest.raises(FileCopyIntegrityError, match="after a chunk"):
        copy_to(session, source, "C:\\Temp\\data.bin")
    assert not guest.host_path("C:\\Temp\\data.bin").exists()
    assert not guest.host_path("C:\\Temp\\data.bin" + PARTIAL_SUFFIX).exists()
