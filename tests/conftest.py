"""Shared fixtures. ``../shared`` (design notes and real captures) sits beside the repository."""

from __future__ import annotations

import compileall
import os
import signal
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("HVMAGIC_SHARED", REPO.parent / "shared"))
CORPUS = SHARED / "corpus"


def pytest_configure(config: pytest.Config) -> None:
    """The demo guest (``connect("sim")``, ``%vmconnect sim``) runs in a local PowerShell: where
    none is named, the suite's own (``../shared/tools/pwsh``, as CI has it, off PATH) is handed
    to this process and the kernels it starts. Tests of the no-PowerShell paths unset it."""
    shipped = SHARED / "tools" / "pwsh"
    if not os.environ.get("HVMAGIC_PWSH") and shipped.is_file() and os.access(shipped, os.X_OK):
        os.environ["HVMAGIC_PWSH"] = str(shipped)
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        # started in the background (``cmd &``, nohup), Python ignores Ctrl-C; the tests of
        # a notebook's interrupt raise it in this process and need Python's own handler
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if not hasattr(config, "workerinput"):  # once, in the process that starts the workers
        # The suite starts dozens of Pythons (kernels, the test peer, the command line) that
        # each import the package; where PYTHONDONTWRITEBYTECODE is set (as on these
        # machines) none writes bytecode, and each would compile ~20k lines again (0.3 s).
        # An explicit compile writes it once for all of them.
        compileall.compile_dir(REPO / "hvmagic", quiet=1)


@pytest.fixture(scope="session")
def corpus_dir() -> Path:
    """The real captures; tests that need them skip with the reason when they are absent."""
    if not CORPUS.is_dir():
        pytest.skip(f"real-capture corpus not found at {CORPUS} (set HVMAGIC_SHARED to ../shared)")
    return CORPUS
