"""Shared fixtures. ``../shared`` (design notes and real captures) sits beside the repository."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("HVMAGIC_SHARED", REPO.parent / "shared"))
CORPUS = SHARED / "corpus"


@pytest.fixture(scope="session")
def corpus_dir() -> Path:
    """The real captures; tests that need them skip with the reason when they are absent."""
    if not CORPUS.is_dir():
        pytest.skip(f"real-capture corpus not found at {CORPUS} (set HVMAGIC_SHARED to ../shared)")
    return CORPUS
