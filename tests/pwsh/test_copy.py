"""File copy (``Session.copy_to`` / ``copy_from``) with real PowerShell 7.6.9 as the guest.

Every copy script hvmagic ships runs in ``pwsh -s`` on a real file system (this machine's; the
"guest" side is a temporary folder PowerShell writes to). Hashes are PowerShell's own
``Get-FileHash`` of the source and of the copy, computed in the same run; where hvmagic claims
``Copy-Item`` semantics (directories, wildcards), the tree PowerShell's ``Copy-Item`` makes from the
same source is the expected answer.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hvmagic.errors import (
    FileCopyError,
    FileCopyExistsError,
    FileCopyPermissionError,
    FileCopySourceError,
)
from hvmagic.filecopy import PARTIAL_SUFFIX, CopyProgress, FileCopyNameWarning

MIB = 1 << 20


@pytest.fixture(scope="module")
def session(shared_pwsh_session: Any) -> Any:
    return shared_pwsh_session


def ps_hashes(session: Any, *paths: Path | str) -> list[str]:
    """PowerShell's own ``Get-FileHash -Algorithm SHA256`` of each path, in order."""
    script = (
        "foreach ($p in $paths) { (Get-FileHash -LiteralPath $p -Algorithm SHA256 "
        "-ErrorAction Stop).Hash }"
    )
    return [str(h) for h in session.run(script, {"paths": [str(p) for p in paths]}).output]


def ps_tree(session: Any, root: Path | str) -> list[tuple[str, str]]:
    """What PowerShell sees under ``root``: ``(relative path, 'dir' or SHA-256)``, sorted."""
    script = r"""
$root = (Get-Item -LiteralPath $root -Force).FullName
foreach ($item in Get-ChildItem -LiteralPath $root -Recurse -Force) {
    $relative = $item.FullName.Substring($root.Length).TrimStart('/', '\').Replace('\', '/')
    if ($item.PSIsContainer) { "$relative|dir" }
    else { "$relative|" + (Get-FileHash -LiteralPath $item.FullName -Algorithm SHA256).Hash }
}
"""
    lines = [str(x) for x in session.run(script, {"root": str(root)}).output]
    return sorted(tuple(line.rsplit("|", 1)) for line in lines)  # type: ignore[misc]


def no_partials(*roots: Path) -> bool:
    return not any(p.name.endswith(PARTIAL_SUFFIX) for r in roots for p in r.rglob("*"))


@pytest.fixture
def dirs(tmp_path: Path) -> tuple[Path, Path]:
    local, guest = tmp_path / "local", tmp_path / "guest"
    local.mkdir()
    guest.mkdir()
    return local, guest


# -------------------------------------------------------------------------------- sizes


@pytest.mark.parametrize("size", [0, 1, 3 * MIB + 17])
def test_sizes_round_trip_with_powershell_hashes(
    session: Any, dirs: tuple[Path, Path], size: int
) -> None:
    local, guest = dirs
    source = local / "payload.bin"
    source.write_bytes(os.urandom(size))
    sent = session.copy_to(source, str(guest / "payload.bin"))
    back = local / "back.bin"
    received = session.copy_from(str(guest / "payload.bin"), back)
    source_hash, guest_hash, back_hash = ps_hashes(session, source, guest / "payload.bin", back)
    assert source_hash == guest_hash == back_hash
    assert sent.files[0].sha256 == received.files[0].sha256 == source_hash
    assert sent.files[0].size == received.files[0].size == size
    assert no_partials(local, guest)


def test_fifty_mib_both_ways(session: Any, dirs: tuple[Path, Path]) -> None:
    local, guest = dirs
    source = local / "big.bin"
    with source.open("wb") as handle:
        for _ in range(50):
            handle.write(os.urandom(MIB))
    session.copy_to(source, str(guest / "big.bin"))
    session.copy_from(str(guest / "big.bin"), local / "big-back.bin")
    hashes = ps_hashes(session, source, guest / "big.bin", local / "big-back.bin")
    assert len(set(hashes)) == 1
    assert (local / "big-back.bin").stat().st_size == 50 * MIB


# -------------------------------------------------------------------------------- names


NAMES = ["résumé 漢字 ✓ مرحبا.txt", "  two  spaces .log", "brackets [1] {x} (y).txt",
         "quote's & $dollar;.txt", "trailing.dot.", "#hash @at %pct.txt"]


def test_unicode_and_awkward_names_both_ways(session: Any, dirs: tuple[Path, Path]) -> None:
    local, guest = dirs
    sources = []
    for name in NAMES:
        (local / name).write_bytes(name.encode("utf-8") * 3)
        sources.append(local / name)
    sent = {}
    for source in sources:  # one file at a time: the single-file path, names taken literally
        sent[source.name] = session.copy_to(source, str(guest) + "/").files[0]
        assert sent[source.name].destination == str(guest / source.name)
    # PowerShell lists the names as written
    listed = session.run("(Get-ChildItem -LiteralPath $d -Force).Name", {"d": str(guest)}).output
    assert sorted(listed) == sorted(NAMES)
    inbox = local / "inbox"
    inbox.mkdir()
    # back in one wildcard copy; the name ending in a dot is copied, with a note about Windows
    with pytest.warns(FileCopyNameWarning, match="'trailing.dot.' ends in a dot") as caught:
        received = session.copy_from(str(guest / "*"), inbox)
    assert len(caught) == 1 and len(received.notes) == 1
    assert sorted(p.name for p in inbox.iterdir()) == sorted(NAMES)
    hashes = ps_hashes(session, *[p for n in NAMES for p in (local / n, guest / n, inbox / n)])
    for index, name in enumerate(NAMES):
        assert hashes[3 * index: 3 * index + 3] == [sent[name].sha256] * 3, name
    # a guest path with wildcard characters is taken literally once they are escaped
    (local / "one").mkdir()
    session.copy_from(str(guest / "brackets `[1`] {x} (y).txt"), local / "one")
    assert [p.name for p in (local / "one").iterdir()] == ["brackets [1] {x} (y).txt"]


def test_relative_guest_paths_follow_the_sessions_location(
    pwsh_session: Any, dirs: tuple[Path, Path]
) -> None:
    local, guest = dirs
    pwsh_session.run("Set-Location -LiteralPath $d", {"d": str(guest)})
    source = local / "rel.txt"
    source.write_text("relative\n", encoding="utf-8")
    pwsh_session.copy_to(source, "rel.txt")
    pwsh_session.copy_to(source, "sub/rel.txt")
    expected = pwsh_session.run(
        "(Resolve-Path -LiteralPath rel.txt).ProviderPath; "
        "(Resolve-Path -LiteralPath sub/rel.txt).ProviderPath"
    ).output
    assert expected == [str(guest / "rel.txt"), str(guest / "sub" / "rel.txt")]
    assert ps_hashes(pwsh_session, *expected) == ps_hashes(pwsh_session, source) * 2
    pwsh_session.copy_from("rel.txt", local / "back.txt")
    assert (local / "back.txt").read_text(encoding="utf-8") == "relative\n"
    assert no_partials(local, guest)


# -------------------------------------------------------------------------------- trees


def make_tree(root: Path) -> Path:
    tree = root / "Resources"
    (tree / "DSCResources" / "Contoso Web [v2]").mkdir(parents=True)
    (tree / "Resources.psd1").write_text("@{ ModuleVersion = '1.0' }", encoding="utf-8")
    (tree / "DSCResources" / "Contoso Web [v2]" / "Contoso_Web.psm1").write_bytes(
        os.urandom(70_000))
    (tree / "DSCResources" / "empty.txt").write_bytes(b"")
    (tree / "empty-dir").mkdir()
    (tree / ".hidden").write_text("dot file", encoding="utf-8")
    return tree


def copy_item_answer(session: Any, source: str, destination: Path, recurse: bool) -> None:
    script = "Copy-Item -Path $s -Destination $d"
    if recurse:
        script += " -Recurse"
    session.run(script + " -Force -ErrorAction Stop", {"s": source, "d": str(destination)})


@pytest.mark.parametrize("existing_destination", [True, False])
def test_tree_to_guest_matches_copy_item(
    session: Any, dirs: tuple[Path, Path], existing_destination: bool
) -> None:
    local, guest = dirs
    tree = make_tree(local)
    ours, theirs = guest / "ours", guest / "theirs"
    if existing_destination:
        ours.mkdir()
        theirs.mkdir()
    with pytest.raises(FileCopySourceError, match="recurse"):
        session.copy_to(tree, str(ours))
    session.copy_to(tree, str(ours), recurse=True, chunk_size=16 << 10)
    copy_item_answer(session, str(tree), theirs, recurse=True)
    assert ps_tree(session, ours) == ps_tree(session, theirs)
    assert ("empty-dir", "dir") in ps_tree(session, ours) or (
        "Resources/empty-dir", "dir") in ps_tree(session, ours)
    assert no_partials(guest)


@pytest.mark.parametrize("existing_destination", [True, False])
def test_tree_from_guest_matches_copy_item(
    session: Any, dirs: tuple[Path, Path], existing_destination: bool
) -> None:
    local, guest = dirs
    tree = make_tree(guest)
    ours, theirs = local / "ours", local / "theirs"
    if existing_destination:
        ours.mkdir()
        theirs.mkdir()
    with pytest.raises(FileCopySourceError, match="recurse"):
        session.copy_from(str(tree), ours)
    session.copy_from(str(tree), ours, recurse=True, chunk_size=16 << 10)
    copy_item_answer(session, str(tree), theirs, recurse=True)
    assert ps_tree(session, ours) == ps_tree(session, theirs)
    assert no_partials(local)


def test_wildcards_both_ways_match_copy_item(session: Any, dirs: tuple[Path, Path]) -> None:
    local, guest = dirs
    for name in ("a.log", "b.log", "c.txt", "d e.log"):
        (local / name).write_bytes(os.urandom(100) + name.encode())
    (guest / "to-ours").mkdir()
    (guest / "to-theirs").mkdir()
    session.copy_to(str(local / "*.log"), str(guest / "to-ours"))
    copy_item_answer(session, str(local / "*.log"), guest / "to-theirs", recurse=False)
    assert ps_tree(session, guest / "to-ours") == ps_tree(session, guest / "to-theirs")
    assert [p for p, _ in ps_tree(session, guest / "to-ours")] == ["a.log", "b.log", "d e.log"]

    (local / "from-ours").mkdir()
    (local / "from-theirs").mkdir()
    session.copy_from(str(guest / "to-ours" / "?.log"), local / "from-ours")
    copy_item_answer(session, str(guest / "to-ours" / "?.log"), local / "from-theirs", False)
    assert ps_tree(session, local / "from-ours") == ps_tree(session, local / "from-theirs")
    assert [p for p, _ in ps_tree(session, local / "from-ours")] == ["a.log", "b.log"]


def test_no_match_is_a_source_error(session: Any, dirs: tuple[Path, Path]) -> None:
    local, guest = dirs
    with pytest.raises(FileCopySourceError):
        session.copy_from(str(guest / "*.nothing"), local)
    with pytest.raises(FileCopySourceError):
        session.copy_from(str(guest / "missing.txt"), local)
    with pytest.raises(FileCopySourceError):
        session.copy_to(local / "missing.txt", str(guest))
    assert list(local.iterdir()) == [] and list(guest.iterdir()) == []


# -------------------------------------------------------------------------------- overwrite


def test_overwrite_rules_both_ways(session: Any, dirs: tuple[Path, Path]) -> None:
    local, guest = dirs
    (guest / "config.json").write_text("old guest", encoding="utf-8")
    (local / "config.json").write_text("new local", encoding="utf-8")
    before = ps_hashes(session, guest / "config.json")
    with pytest.raises(FileCopyExistsError, match="overwrite=True"):
        session.copy_to(local / "config.json", str(guest / "config.json"))
    with pytest.raises(FileCopyExistsError):
        session.copy_to(local / "config.json", str(guest))  # into the directory: same file
    assert ps_hashes(session, guest / "config.json") == before
    session.copy_to(local / "config.json", str(guest / "config.json"), overwrite=True)
    assert ps_hashes(session, guest / "config.json") == ps_hashes(session, local / "config.json")

    (local / "mine.json").write_text("mine", encoding="utf-8")
    mine = ps_hashes(session, local / "mine.json")
    with pytest.raises(FileCopyExistsError, match="overwrite=True"):
        session.copy_from(str(guest / "config.json"), local / "mine.json")
    assert ps_hashes(session, local / "mine.json") == mine
    session.copy_from(str(guest / "config.json"), local / "mine.json", overwrite=True)
    assert ps_hashes(session, local / "mine.json") == ps_hashes(session, guest / "config.json")
    assert no_partials(local, guest)


@pytest.mark.parametrize("overwrite", [False, True])
def test_a_directory_is_not_replaced_by_a_file(
    session: Any, dirs: tuple[Path, Path], overwrite: bool
) -> None:
    local, guest = dirs
    (local / "x").write_text("file", encoding="utf-8")
    (guest / "d" / "x" / "keep").mkdir(parents=True)
    # into the directory d, where x is a directory: no overwrite advice, it would not help
    with pytest.raises(FileCopyExistsError, match="is a directory; a file cannot replace it"):
        session.copy_to(local / "x", str(guest / "d"), overwrite=overwrite)
    assert ps_tree(session, guest / "d") == [("x", "dir"), ("x/keep", "dir")]
    (local / "y" / "x").mkdir(parents=True)
    (guest / "x").write_text("guest file", encoding="utf-8")
    with pytest.raises(FileCopyExistsError, match="is a directory"):
        session.copy_from(str(guest / "x"), local / "y", overwrite=overwrite)
    assert ps_tree(session, local / "y") == [("x", "dir")]


# -------------------------------------------------------------------------------- permissions


@pytest.fixture
def immutable() -> Iterator[Any]:
    """``chattr +i`` (works for root, unlike chmod); always undone so tmp_path can be removed."""
    if shutil.which("chattr") is None:
        pytest.skip("chattr is not installed")
    marked: list[Path] = []

    def mark(path: Path) -> None:
        done = subprocess.run(["chattr", "+i", str(path)], capture_output=True, check=False)
        if done.returncode != 0:
            pytest.skip(f"chattr +i is not supported here: {done.stderr.decode().strip()}")
        marked.append(path)

    yield mark
    for path in marked:
        subprocess.run(["chattr", "-i", str(path)], check=False)


def test_read_only_guest_target_is_a_permission_error(
    session: Any, dirs: tuple[Path, Path], immutable: Any
) -> None:
    local, guest = dirs
    (local / "new.txt").write_text("new", encoding="utf-8")
    (guest / "locked.txt").write_text("locked", encoding="utf-8")
    immutable(guest / "locked.txt")
    before = ps_hashes(session, guest / "locked.txt")
    with pytest.raises(FileCopyPermissionError):
        session.copy_to(local / "new.txt", str(guest / "locked.txt"), overwrite=True)
    assert ps_hashes(session, guest / "locked.txt") == before
    (guest / "sealed").mkdir()
    immutable(guest / "sealed")
    with pytest.raises(FileCopyPermissionError):
        session.copy_to(local / "new.txt", str(guest / "sealed" / "new.txt"))
    assert list((guest / "sealed").iterdir()) == []
    assert no_partials(guest)


def test_read_only_local_target_is_a_permission_error(
    session: Any, dirs: tuple[Path, Path], immutable: Any
) -> None:
    local, guest = dirs
    (guest / "src.txt").write_text("guest", encoding="utf-8")
    (local / "sealed").mkdir()
    immutable(local / "sealed")
    with pytest.raises(FileCopyPermissionError):
        session.copy_from(str(guest / "src.txt"), local / "sealed" / "src.txt")
    assert list((local / "sealed").iterdir()) == []


def test_a_target_under_a_file_is_a_typed_error_both_ways(
    session: Any, dirs: tuple[Path, Path]
) -> None:
    local, guest = dirs
    (local / "src.txt").write_text("x", encoding="utf-8")
    (guest / "plain.txt").write_text("plain", encoding="utf-8")
    with pytest.raises(FileCopyError) as info:
        session.copy_to(local / "src.txt", str(guest / "plain.txt" / "sub" / "src.txt"))
    assert "plain.txt" in str(info.value)
    (local / "plain.txt").write_text("plain", encoding="utf-8")
    with pytest.raises(FileCopyError):
        session.copy_from(str(guest / "plain.txt"), local / "plain.txt" / "sub" / "x.txt")
    assert (local / "plain.txt").read_text(encoding="utf-8") == "plain"
    assert no_partials(local, guest)


def test_the_session_stays_usable_after_copy_errors(session: Any, dirs: tuple[Path, Path]) -> None:
    local, guest = dirs
    with pytest.raises(FileCopySourceError):
        session.copy_from(str(guest / "missing.bin"), local)
    assert session.run("1 + 1").output == [2]
    leaked = session.run("@(Get-Variable -Name hvmagic_copy_* -ErrorAction Ignore).Count").output
    assert leaked == [0]


# -------------------------------------------------------------------------------- progress, stop


def test_progress_reports_every_chunk_in_order(session: Any, dirs: tuple[Path, Path]) -> None:
    local, guest = dirs
    data = os.urandom(50_000) + bytes(range(256)) * 4 + b"\r\n\x00\x1a"
    (local / "p.bin").write_bytes(data)
    seen: list[CopyProgress] = []
    session.copy_to(local / "p.bin", str(guest / "p.bin"), chunk_size=4096, on_progress=seen.append)
    assert [p.bytes_done for p in seen] == sorted(p.bytes_done for p in seen)
    assert len(seen) >= len(data) // 4096
    assert seen[-1].bytes_done == seen[-1].bytes_total == len(data)
    assert seen[-1].files_done == 1 and seen[-1].percent == 100
    back: list[CopyProgress] = []
    session.copy_from(str(guest / "p.bin"), local / "b.bin", chunk_size=4096,
                      on_progress=back.append)
    assert [p.bytes_done for p in back] == [p.bytes_done for p in seen]
    assert len(set(ps_hashes(session, local / "p.bin", guest / "p.bin", local / "b.bin"))) == 1


def test_an_interrupted_copy_leaves_nothing_partial(session: Any, dirs: tuple[Path, Path]) -> None:
    local, guest = dirs
    (local / "big.bin").write_bytes(os.urandom(64 << 10))

    def interrupt(progress: CopyProgress) -> None:
        if progress.bytes_done >= 16 << 10:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        session.copy_to(local / "big.bin", str(guest / "big.bin"), chunk_size=4096,
                        on_progress=interrupt)
    (guest / "src.bin").write_bytes(os.urandom(64 << 10))
    with pytest.raises(KeyboardInterrupt):
        session.copy_from(str(guest / "src.bin"), local / "src.bin", chunk_size=4096,
                          on_progress=interrupt)
    listed = session.run("(Get-ChildItem -LiteralPath $d -Force).Name", {"d": str(guest)}).output
    assert listed == ["src.bin"]
    assert sorted(p.name for p in local.iterdir()) == ["big.bin"]
