"""The ``hvmagic`` command line.

``hvmagic demo [--live | --replay] [--output DIR] [--notebook PATH] [--timeout S]``
    Execute the guest-services triage runbook against the demo guest in a fresh kernel
    (nbclient) and write the executed notebook plus a readable HTML page into DIR (default
    ``./hvmagic-demo``); prints which mode it used, the HTML path and a short summary.

    *Live* where a PowerShell is found (``$HVMAGIC_PWSH``, ``pwsh`` on PATH, ``powershell.exe``):
    the demo guest is that real PowerShell with simulated Windows data. *Replay* elsewhere: the
    runbook replays the recording made through the demo guest that ships in the package
    (``hvmagic/demo/recordings/<notebook name>/``), so a fresh machine needs nothing else.
    ``--live`` / ``--replay`` force a mode; ``--live`` without PowerShell is an error that says
    what to install.

``hvmagic kernel install [--user | --sys-prefix | --prefix P]``
    Same as ``python -m hvmagic.kernel install``.

Where the demo notebook comes from (first match wins): ``--notebook PATH``; the notebooks
shipped inside the package, ``hvmagic/notebooks/*triage*.ipynb``; in a source checkout, the
repository's ``notebooks/*triage*.ipynb``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from hvmagic.nbrun import CHECKOUT_NOTEBOOKS, PACKAGE_NOTEBOOKS, run_notebook

DEMO_PATTERN = "*triage*.ipynb"
INSTALL_HINT = "install PowerShell 7 (https://aka.ms/powershell) or set $HVMAGIC_PWSH"


class DemoError(Exception):
    """The demo could not run (no notebook found, or the notebook failed)."""


def find_demo_notebook(search: Sequence[Path] = (PACKAGE_NOTEBOOKS, CHECKOUT_NOTEBOOKS)) -> Path:
    for folder in search:
        found = sorted(folder.glob(DEMO_PATTERN)) if folder.is_dir() else []
        if found:
            return found[0]
    places = ", ".join(str(f / DEMO_PATTERN) for f in search)
    raise DemoError(f"no demo notebook found (looked for {places}); pass --notebook PATH")


@dataclass
class DemoMode:
    """How the demo runs: ``live`` or ``replay``, the kernel's environment changes, and the
    one line that tells the user."""

    name: str
    env: dict[str, str | None]
    line: str


def choose_mode(notebook: Path, forced: str | None = None) -> DemoMode:
    """Live where a PowerShell is found (or ``forced == "live"``), else the shipped recording
    of ``notebook``. Record/replay variables of the caller's environment are not passed on: the
    mode decides."""
    from hvmagic.demo import PWSH_ENV, RECORDINGS, resolve_powershell
    from hvmagic.errors import UnsupportedPlatformError
    from hvmagic.recording import RECORD_ENV, REPLAY_ENV, SUFFIX

    executable: str | None = None
    if forced != "replay":
        try:
            executable = resolve_powershell()
        except UnsupportedPlatformError as exc:
            if forced == "live":
                raise DemoError(f"--live: {exc}") from exc
    if executable is not None:
        return DemoMode(
            "live",
            {PWSH_ENV: executable, RECORD_ENV: None, REPLAY_ENV: None},
            f"Live: the demo guest is {executable} (a real PowerShell with simulated Windows "
            "data).",
        )
    folder = RECORDINGS / notebook.stem
    if not any(folder.glob(f"*{SUFFIX}")):
        raise DemoError(
            f"no PowerShell found and no shipped recording of {notebook.name} (looked in "
            f"{folder}); to run it live, {INSTALL_HINT}"
        )
    why = "--replay" if forced == "replay" else "no PowerShell found"
    return DemoMode(
        "replay",
        {REPLAY_ENV: str(folder), RECORD_ENV: None},
        f"Replay ({why}): the recording of this runbook made through the demo guest, shipped "
        f"in {folder}; to run it live, {INSTALL_HINT}.",
    )


def _demo(args: argparse.Namespace) -> int:
    try:
        notebook = Path(args.notebook) if args.notebook else find_demo_notebook()
        if not notebook.is_file():
            raise DemoError(f"no such notebook: {notebook}")
        mode = choose_mode(notebook, "live" if args.live else "replay" if args.replay else None)
        print(mode.line, flush=True)
        summary = run_notebook(notebook, Path(args.output), timeout=args.timeout, env=mode.env)
    except DemoError as exc:
        print(f"hvmagic demo: {exc}", file=sys.stderr)
        return 2
    for line in summary.lines():
        print(line)
    return 0 if not summary.errors else 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="hvmagic", description="hvmagic: PowerShell in Hyper-V guests from Jupyter."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser(
        "demo", help="run the triage runbook against the demo guest (live, or its recording)"
    )
    modes = demo.add_mutually_exclusive_group()
    modes.add_argument("--live", action="store_true",
                       help="run against the demo guest in a local PowerShell (error without)")
    modes.add_argument("--replay", action="store_true",
                       help="replay the shipped recording, even where PowerShell is installed")
    demo.add_argument("--output", default="hvmagic-demo", help="folder for .ipynb and .html")
    demo.add_argument("--notebook", default=None, help="run this notebook instead")
    demo.add_argument("--timeout", type=float, default=300, help="per-cell timeout (s)")
    kernel = sub.add_parser("kernel", help="kernelspec commands (see python -m hvmagic.kernel)")
    kernel.add_argument("rest", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    if args.command == "kernel":
        from hvmagic.kernel import main as kernel_main

        return kernel_main(args.rest)
    return _demo(args)


if __name__ == "__main__":
    sys.exit(main())
