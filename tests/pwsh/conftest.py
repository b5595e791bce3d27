"""Real PowerShell as the judge (issue "PowerShell is the judge").

Every test in this folder talks to a real PowerShell, found as ``$HVMAGIC_PWSH``, else
``../shared/tools/pwsh`` (PowerShell 7.6.9 for Linux x64), else ``pwsh`` on PATH. Without one the
tests skip with a one-line reason, except where ``HVMAGIC_REQUIRE_PWSH=1`` (``.ci/run`` sets it):
there a missing PowerShell is a failure, so the suite can never pass by skipping.

Fixtures:

* ``pwsh`` — the path of the PowerShell executable;
* ``pwsh_session`` — a fresh ``hvmagic.connect(..., via="process")`` session on ``pwsh -s``,
  closed after the test (function scope: tests that assert state start clean);
* ``shared_pwsh_session`` — one session for the module, for read-only questions;
* ``ask_pwsh`` — runs a script in a separate ``pwsh -NoProfile -NonInteractive`` and returns
  what PowerShell printed, or (``as_json=True``) the script's output through
  ``ConvertTo-Json``: PowerShell's own answer, to compare hvmagic's with in the same run.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import SHARED

REQUIRE_ENV = "HVMAGIC_REQUIRE_PWSH"


def find_pwsh() -> str | None:
    """``$HVMAGIC_PWSH``, else ``../shared/tools/pwsh``, else ``pwsh`` on PATH."""
    explicit = os.environ.get("HVMAGIC_PWSH")
    if explicit:
        return explicit
    shipped = SHARED / "tools" / "pwsh"
    if shipped.is_file() and os.access(shipped, os.X_OK):
        return str(shipped)
    return shutil.which("pwsh")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.pwsh)


@pytest.fixture(scope="session")
def pwsh() -> str:
    path = find_pwsh()
    if path is None:
        reason = (
            "no PowerShell: set HVMAGIC_PWSH, put ../shared/tools/pwsh beside the repository, "
            "or install pwsh on PATH"
        )
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"{REQUIRE_ENV}=1 but {reason}")
        pytest.skip(reason)
    return path


def _encoded(script: str) -> str:
    return base64.b64encode(script.encode("utf-16-le")).decode("ascii")


def run_pwsh(pwsh: str, script: str, *, timeout: float = 120, check: bool = True) -> str:
    """Run ``script`` in a new ``pwsh`` and return its standard output (stderr on failure)."""
    completed = subprocess.run(
        [pwsh, "-NoLogo", "-NoProfile", "-NonInteractive", "-EncodedCommand", _encoded(script)],
        capture_output=True,
        timeout=timeout,
        check=False,
    )
    out = completed.stdout.decode("utf-8", "replace")
    if check and completed.returncode != 0:
        err = completed.stderr.decode("utf-8", "replace")
        raise AssertionError(f"pwsh exited {completed.returncode}: {err or out}")
    return out


AskPwsh = Callable[..., Any]


@pytest.fixture(scope="session")
def ask_pwsh(pwsh: str) -> AskPwsh:
    def ask(script: str, *, as_json: bool = False, timeout: float = 120) -> Any:
        if as_json:
            script = f"& {{ {script} }} | ConvertTo-Json -Depth 6 -Compress -AsArray"
            return json.loads(run_pwsh(pwsh, script, timeout=timeout))
        return run_pwsh(pwsh, script, timeout=timeout)

    return ask


def _connect(pwsh: str) -> Any:
    import hvmagic

    return hvmagic.connect("pwsh", via="process", executable=pwsh, timeout=60)


@pytest.fixture
def pwsh_session(pwsh: str) -> Iterator[Any]:
    session = _connect(pwsh)
    try:
        yield session
    finally:
        session.close()


@pytest.fixture(scope="module")
def shared_pwsh_session(pwsh: str) -> Iterator[Any]:
    session = _connect(pwsh)
    try:
        yield session
    finally:
        session.close()
