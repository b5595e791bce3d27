"""The import layers are a checked contract: ``lint-imports`` (import-linter, configured in
pyproject.toml) keeps them, and breaks them when a module imports upwards, a product module
imports the test peer, or two modules import each other."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CONTRACTS = [
    "hvmagic's modules import downwards only",
    "no product module imports the test peer (hvmagic.testing)",
    "no module imports the package root",
    "no import cycles between the modules of any package in hvmagic",
]


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    """``lint-imports`` of this interpreter's environment, on the package under ``root``."""
    scripts = Path(sys.executable).parent
    command = next((scripts / name for name in ("lint-imports", "lint-imports.exe")
                    if (scripts / name).is_file()), None)
    assert command is not None, f"no lint-imports in {scripts}: pip install -e '.[test]'"
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run(
        [str(command), "--no-cache", "--no-logo"], cwd=root, env=env, capture_output=True,
        text=True, timeout=120, check=False,
    )


def test_the_package_keeps_its_import_contracts() -> None:
    run = lint_imports(REPO)
    report = run.stdout + run.stderr
    assert run.returncode == 0, report
    for name in CONTRACTS:
        assert any(line.startswith(name) and " KEPT" in line
                   for line in report.splitlines()), report
    assert f"Contracts: {len(CONTRACTS)} kept, 0 broken." in report


def test_an_upward_import_a_cycle_and_the_test_peer_break_them(tmp_path: Path) -> None:
    """The same contracts on a copy of the package with three deliberate violations."""
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    shutil.copytree(REPO / "hvmagic", tmp_path / "hvmagic",
                    ignore=shutil.ignore_patterns("__pycache__"))
    with open(tmp_path / "hvmagic" / "session.py", "a", encoding="utf-8") as session:
        session.write("\nfrom hvmagic.connection import connect as _upwards\n")
    with open(tmp_path / "hvmagic" / "transports" / "base.py", "a", encoding="utf-8") as base:
        base.write("\nfrom hvmagic.transports import hvsocket as _cycle\n")
    with open(tmp_path / "hvmagic" / "frames.py", "a", encoding="utf-8") as frames:
        frames.write("\nimport hvmagic.testing as _peer\n")
    run = lint_imports(tmp_path)
    report = run.stdout + run.stderr
    assert run.returncode != 0, report
    assert "hvmagic.session is not allowed to import hvmagic.connection" in report
    assert "No cycles are allowed in hvmagic.transports." in report
    assert "hvmagic.frames is not allowed to import hvmagic.testing" in report
    # the root-package contract still holds; the other three are broken
    assert "Contracts: 1 kept, 3 broken." in report
