"""The copy engine (hvmagic.filecopy) through a real Session against the simulated guest."""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path
from typing import Any

import pytest

from hvmagic.errors import (
    FileCopyExistsError,
    FileCopyIntegrityError,
    FileCopySourceError,
)
from hvmagic.filecopy import PARTIAL_SUFFIX, SCRIPTS, CopyProgress, copy_from, copy_to
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


def test_binary_round_trip_over_many_chunks(guest: FakeGuest, session: Any,
                                            tmp_path: Path) -> None:
    data = os.urandom(50_000) + bytes(range(256)) * 4 + b"\r\n\x00\x1a"
    source = tmp_path / "payload.bin"
    source.write_bytes(data)
    progress: list[CopyProgress] = []
    result = copy_to(session, source, "C:\\Temp\\payload.bin", chunk_size=4096,
                     on_progress=progress.append)
    assert guest.host_path("C:\\Temp\\payload.bin").read_bytes() == data
    assert [(f.destination, f.size, f.sha256) for f in result.files] == [
        ("C:\\Temp\\payload.bin", len(data), sha(data))]
    assert len(progress) >= len(data) // 4096
    assert [p.bytes_done for p in progress] == sorted(p.bytes_done for p in progress)
    assert progress[-1].bytes_done == progress[-1].bytes_total == len(data)
    assert progress[-1].files_done == 1 and progress[-1].percent == 100
    assert not guest.host_path("C:\\Temp\\payload.bin" + PARTIAL_SUFFIX).exists()

    back = tmp_path / "back.bin"
    received = copy_from(session, "C:\\Temp\\payload.bin", back, chunk_size=4096)
    assert back.read_bytes() == data
    assert received.files[0].sha256 == sha(data)
    assert received.bytes == len(data)


def test_session_methods_delegate_to_the_engine(guest: FakeGuest, session: Any,
                                                tmp_path: Path) -> None:
    source = tmp_path / "note.txt"
    source.write_text("via Session.copy_to\n", encoding="utf-8")
    session.copy_to(source, "C:\\Users\\Administrator\\Documents\\")
    assert guest.host_path("C:\\Users\\Administrator\\Documents\\note.txt").read_text(
        encoding="utf-8") == "via Session.copy_to\n"
    session.copy_from("C:\\Users\\Administrator\\Documents\\note.txt", tmp_path / "again.txt")
    assert (tmp_path / "again.txt").read_text(encoding="utf-8") == "via Session.copy_to\n"


def test_empty_file_both_ways(guest: FakeGuest, session: Any, tmp_path: Path) -> None:
    empty = tmp_path / "empty.dat"
    empty.write_bytes(b"")
    result = copy_to(session, empty, "C:\\Temp\\empty.dat")
    assert guest.host_path("C:\\Temp\\empty.dat").read_bytes() == b""
    assert result.files[0].sha256 == sha(b"")
    copy_from(session, "C:\\Temp\\empty.dat", tmp_path / "empty-back.dat")
    assert (tmp_path / "empty-back.dat").read_bytes() == b""


def test_unicode_names(guest: FakeGuest, session: Any, tmp_path: Path) -> None:
    name = "résumé 漢字 ✓ مرحبا.txt"
    source = tmp_path / name
    source.write_text("naïve ✓", encoding="utf-8")
    copy_to(session, source, "C:\\Données\\")
    assert guest.host_path(f"C:\\Données\\{name}").read_text(encoding="utf-8") == "naïve ✓"
    target = tmp_path / "out"
    target.mkdir()
    copy_from(session, f"C:\\Données\\{name}", target)
    assert (target / name).read_text(encoding="utf-8") == "naïve ✓"


def test_overwrite_is_refused_then_allowed(guest: FakeGuest, session: Any,
                                           tmp_path: Path) -> None:
    existing = guest.host_path("C:\\Temp\\config.json")
    existing.parent.mkdir(parents=True)
    existing.write_text("old", encoding="utf-8")
    source = tmp_path / "config.json"
    source.write_text("new", encoding="utf-8")
    with pytest.raises(FileCopyExistsError, match="already exists"):
        copy_to(session, source, "C:\\Temp\\config.json")
    assert existing.read_text(encoding="utf-8") == "old"
    copy_to(session, source, "C:\\Temp\\config.json", overwrite=True)
    assert existing.read_text(encoding="utf-8") == "new"

    local = tmp_path / "local.json"
    local.write_text("mine", encoding="utf-8")
    with pytest.raises(FileCopyExistsError):
        copy_from(session, "C:\\Temp\\config.json", local)
    assert local.read_text(encoding="utf-8") == "mine"
    copy_from(session, "C:\\Temp\\config.json", local, overwrite=True)
    assert local.read_text(encoding="utf-8") == "new"


def test_hash_mismatch_into_the_guest_is_detected(guest: FakeGuest, session: Any,
                                                  tmp_path: Path) -> None:
    @guest.handle(SCRIPTS["to-chunk"])
    def corrupting_chunk(ctx: HandlerContext) -> int:
        data = bytearray(base64.b64decode(ctx.parameters["hvmagic_copy_data"]))
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
    def corrupting_read(ctx: HandlerContext) -> str:
        host = ctx.guest.host_path(ctx.parameters["hvmagic_copy_path"])
        with host.open("rb") as handle:
            handle.seek(int(ctx.parameters["hvmagic_copy_offset"]))
            block = handle.read(int(ctx.parameters["hvmagic_copy_count"]))
        return base64.b64encode(block.replace(b"line", b"LINE", 1)).decode("ascii")

    target = tmp_path / "log.txt"
    with pytest.raises(FileCopyIntegrityError, match="SHA-256 mismatch"):
        copy_from(session, "C:\\Temp\\log.txt", target)
    assert not target.exists()
    assert not (tmp_path / ("log.txt" + PARTIAL_SUFFIX)).exists()


def test_wildcards_both_ways(guest: FakeGuest, session: Any, tmp_path: Path) -> None:
    for name in ("a.log", "b.log", "c.txt"):
        (tmp_path / name).write_text(name, encoding="utf-8")
    result = copy_to(session, str(tmp_path / "*.log"), "C:\\Collect")
    assert sorted(f.destination for f in result.files) == ["C:\\Collect\\a.log",
                                                          "C:\\Collect\\b.log"]
    assert not guest.host_path("C:\\Collect\\c.txt").exists()
    out = tmp_path / "fetched"
    fetched = copy_from(session, "C:\\Collect\\*.log", out)
    assert sorted(p.name for p in out.iterdir()) == ["a.log", "b.log"]
    assert (out / "b.log").read_text(encoding="utf-8") == "b.log"
    assert len(fetched.files) == 2


def test_recursive_directories_both_ways(guest: FakeGuest, session: Any,
                                         tmp_path: Path) -> None:
    tree = tmp_path / "Resources"
    (tree / "DSCResources" / "Contoso_Web").mkdir(parents=True)
    (tree / "Resources.psd1").write_text("@{ ModuleVersion = '1.0' }", encoding="utf-8")
    (tree / "DSCResources" / "Contoso_Web" / "Contoso_Web.psm1").write_bytes(os.urandom(9000))
    (tree / "empty-dir").mkdir()
    with pytest.raises(FileCopySourceError, match="recurse=True"):
        copy_to(session, tree, "C:\\Program Files\\WindowsPowerShell\\Modules")
    copy_to(session, tree, "C:\\Program Files\\WindowsPowerShell\\Modules", recurse=True,
            chunk_size=4096)
    module = guest.host_path("C:\\Program Files\\WindowsPowerShell\\Modules\\Resources")
    assert (module / "Resources.psd1").read_text(encoding="utf-8") == (
        "@{ ModuleVersion = '1.0' }")
    assert (module / "DSCResources" / "Contoso_Web" / "Contoso_Web.psm1").read_bytes() == (
        tree / "DSCResources" / "Contoso_Web" / "Contoso_Web.psm1").read_bytes()
    assert (module / "empty-dir").is_dir()

    # onto a guest path that does not exist yet: the directory becomes that path
    copy_to(session, tree, "C:\\Staging\\Mod", recurse=True)
    assert guest.host_path("C:\\Staging\\Mod\\Resources.psd1").is_file()

    with pytest.raises(FileCopySourceError, match="recurse=True"):
        copy_from(session, "C:\\Windows\\Logs", tmp_path / "logs")
    result = copy_from(session, "C:\\Windows\\Logs", tmp_path / "logs", recurse=True)
    assert sorted(p.relative_to(tmp_path / "logs").as_posix()
                  for p in (tmp_path / "logs").rglob("*")) == [
        "CBS", "CBS/CBS.log", "DISM", "DISM/dism.log"]
    assert {Path(f.destination).name for f in result.files} == {"CBS.log", "dism.log"}
    existing = tmp_path / "existing"
    existing.mkdir()
    copy_from(session, "C:\\Windows\\Logs", existing, recurse=True)
    assert (existing / "Logs" / "CBS" / "CBS.log").is_file()


def test_missing_sources_are_typed_errors(session: Any, tmp_path: Path) -> None:
    with pytest.raises(FileCopySourceError, match="not found"):
        copy_to(session, tmp_path / "nope.bin", "C:\\Temp\\nope.bin")
    with pytest.raises(FileCopySourceError, match="no local file matches"):
        copy_to(session, str(tmp_path / "*.nothing"), "C:\\Temp")
    with pytest.raises(FileCopySourceError, match="not found"):
        copy_from(session, "C:\\Temp\\missing.bin", tmp_path / "x.bin")
    assert not (tmp_path / "x.bin").exists()


def test_chunk_size_is_validated(session: Any, tmp_path: Path) -> None:
    source = tmp_path / "f"
    source.write_bytes(b"x")
    with pytest.raises(ValueError, match="chunk_size"):
        copy_to(session, source, "C:\\Temp\\f", chunk_size=10)


def test_guest_scripts_are_self_cleaning_powershell() -> None:
    for operation, script in SCRIPTS.items():
        assert script.startswith(f"# hvmagic-filecopy:{operation} v1\n")
        assert "Remove-Variable -Name hvmagic_copy_* -ErrorAction Ignore" in script
        assert script.count("{") == script.count("}")
    assert "Get-FileHash -LiteralPath $hvmagic_copy_partial -Algorithm SHA256" in (
        SCRIPTS["to-finish"])
    assert "[Convert]::FromBase64String($hvmagic_copy_data)" in SCRIPTS["to-chunk"]


def test_interrupted_copy_leaves_no_partial_files(guest: FakeGuest, session: Any,
                                                  tmp_path: Path) -> None:
    source = tmp_path / "big.bin"
    source.write_bytes(os.urandom(64 * 1024))

    def interrupt(progress: CopyProgress) -> None:
        if progress.bytes_done >= 16 * 1024:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        copy_to(session, source, "C:\\Temp\\big.bin", chunk_size=4096, on_progress=interrupt)
    assert not guest.host_path("C:\\Temp\\big.bin").exists()
    assert not guest.host_path("C:\\Temp\\big.bin" + PARTIAL_SUFFIX).exists()
    def interrupt_at_once(progress: CopyProgress) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        copy_from(session, "C:\\Windows\\Logs\\CBS\\CBS.log", tmp_path / "cbs.log",
                  chunk_size=1024, on_progress=interrupt_at_once)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.bin"]
    assert session.run("Test-Path C:\\Temp\\big.bin").output == [False]  # still usable


class _ScriptedGuest:
    """A guest that answers the copy scripts with whatever listing and chunk text it is given,
    the way a hostile or broken guest could."""

    def __init__(self, listing: list[dict[str, Any]], chunk: str, payload: bytes) -> None:
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
    guest = _ScriptedGuest(listing, base64.b64encode(payload).decode(), payload)
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
                           base64.b64encode(payload).decode(), payload)
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
    guest = _ScriptedGuest(listing, base64.b64encode(payload).decode(), payload)
    with pytest.raises(FileCopySourceError, match="outside the destination"):
        copy_from(guest, "C:\\logs", dest, recurse=True)
    assert list(outside.iterdir()) == []


def test_copy_from_accepts_ordinary_nested_guest_names(tmp_path: Path) -> None:
    payload = b"fine\n"
    listing = [{"RelativePath": "logs", "FullName": "C:\\logs", "IsDirectory": True,
                "Length": 0}, _file_entry("logs\\sub\\a..b.txt", len(payload))]
    guest = _ScriptedGuest(listing, base64.b64encode(payload).decode(), payload)
    dest = tmp_path / "dest"
    dest.mkdir()
    result = copy_from(guest, "C:\\logs", dest, recurse=True)
    assert (dest / "logs" / "sub" / "a..b.txt").read_bytes() == payload
    assert [f.size for f in result.files] == [len(payload)]


def test_copy_from_types_a_chunk_that_is_not_base64(tmp_path: Path) -> None:
    guest = _ScriptedGuest([_file_entry("a.txt", 10)], "not*base64!", b"")
    target = tmp_path / "a.txt"
    with pytest.raises(FileCopyIntegrityError, match="not valid base64") as info:
        copy_from(guest, "C:\\a.txt", target)
    assert type(info.value.__cause__).__name__ == "Error"
    assert not target.exists()
    assert not (tmp_path / ("a.txt" + PARTIAL_SUFFIX)).exists()
