"""The ``hvmagic`` command line.

``hvmagic demo [--output DIR] [--notebook PATH] [--timeout S]``
    Execute the guest-services triage runbook against the simulated guest in a fresh kernel
    (nbclient) and write the executed notebook plus a readable HTML page into DIR (default
    ``./hvmagic-demo``); prints the HTML path and a short summary.

``hvmagic kernel install [--user | --sys-prefix | --prefix P]``
    Same as ``python -m hvmagic.kernel install``.

Where the demo notebook comes from (first match wins): ``--notebook PATH``; the notebooks
shipped inside the package, ``hvmagic/notebooks/*triage*.ipynb``; in a source checkout, the
repository's ``notebooks/*triage*.ipynb``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
#: notebooks installed with the package (package data)
PACKAGE_NOTEBOOKS = PACKAGE_DIR / "notebooks"
#: notebooks of a source checkout (the repository's ``notebooks/``)
CHECKOUT_NOTEBOOKS = PACKAGE_DIR.parent / "notebooks"
DEMO_PATTERN = "*triage*.ipynb"


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
class RunSummary:
    notebook: Path
    executed: Path
    html: Path
    seconds: float
    code_cells: int
    tables: int
    errors: list[str] = field(default_factory=list)
    #: the plain text of the notebook's last result (a runbook ends with its verdict)
    final_result: str = ""

    def lines(self) -> list[str]:
        verdict = "ok" if not self.errors else f"{len(self.errors)} cell(s) failed"
        out = [
            f"Executed {self.notebook.name}: {self.code_cells} code cells, {self.tables} tables, "
            f"{self.seconds:.1f} s, {verdict}",
            f"HTML:     {self.html}",
            f"Notebook: {self.executed}",
        ]
        out += [f"  error: {e}" for e in self.errors]
        if self.final_result and not self.errors:
            out += ["", "Result of the last cell:", self.final_result]
        return out


def _kernel_env() -> dict[str, str]:
    """The kernel must import *this* hvmagic, also from a source checkout that is not installed."""
    env = dict(os.environ)
    parent = str(PACKAGE_DIR.parent)
    existing = env.get("PYTHONPATH")
    env["PYTHONPATH"] = parent if not existing else parent + os.pathsep + existing
    return env


def _copy_companions(source: Path, output_dir: Path) -> None:
    """Folders that sit beside a runbook (``dsc/HvmDemoDsc``) and that it reads by relative
    path, copied into the output folder the runbook runs in."""
    target = output_dir.resolve()
    for child in source.iterdir():
        if not child.is_dir() or child.name.startswith((".", "_")):
            continue
        here = child.resolve()
        if here == target or here in target.parents or (child / "pyvenv.cfg").exists():
            continue  # the output folder itself (or one holding it), and virtual environments
        shutil.copytree(child, output_dir / child.name, dirs_exist_ok=True)


def run_notebook(
    notebook: Path,
    output_dir: Path,
    *,
    timeout: float = 300,
    kernel_name: str = "python3",
) -> RunSummary:
    """Execute ``notebook`` (cells run until the first error) and write ``.ipynb`` + ``.html``."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError
    from nbconvert import HTMLExporter

    nb = nbformat.read(str(notebook), as_version=4)
    output_dir.mkdir(parents=True, exist_ok=True)
    _copy_companions(notebook.parent, output_dir)
    # The kernel runs in the output folder: what a runbook writes (a troubleshooting bundle,
    # CSVs) lands beside its HTML, never beside the source notebook (which may be inside an
    # installed package); the companion folders it reads (dsc/) were copied there first.
    client = NotebookClient(
        nb,
        timeout=int(timeout),
        kernel_name=kernel_name,
        resources={"metadata": {"path": str(output_dir)}},
    )
    started = time.monotonic()
    errors: list[str] = []
    with tempfile.TemporaryDirectory(prefix="hvmagic-kernel-") as sockets:
        if os.name == "posix":
            # local IPC sockets instead of loopback TCP: nothing listens on a port, and the
            # kernel has no reason to warn about unencrypted TCP in the demo's output
            client.km = client.create_kernel_manager()
            client.km.transport = "ipc"
            client.km.ip = os.path.join(sockets, "kernel")
        try:
            client.execute(env=_kernel_env())
        except CellExecutionError as exc:
            errors.append(f"{exc.ename}: {exc.evalue}")
    seconds = time.monotonic() - started
    executed = output_dir / notebook.name
    nbformat.write(nb, str(executed))
    body, _ = HTMLExporter().from_notebook_node(nb)
    html_path = executed.with_suffix(".html")
    html_path.write_text(body, encoding="utf-8")
    code = [c for c in nb.cells if c.cell_type == "code"]
    tables = sum(
        1
        for c in code
        for o in c.get("outputs", [])
        if "hvmagic-frame" in str(o.get("data", {}).get("text/html", ""))
    )
    results = [
        o["data"]["text/plain"]
        for c in code
        for o in c.get("outputs", [])
        if o.get("output_type") == "execute_result" and "text/plain" in o.get("data", {})
    ]
    return RunSummary(
        notebook, executed, html_path, seconds, len(code), tables, errors,
        final_result=str(results[-1]) if results else "",
    )


def _demo(args: argparse.Namespace) -> int:
    try:
        notebook = Path(args.notebook) if args.notebook else find_demo_notebook()
        if not notebook.is_file():
            raise DemoError(f"no such notebook: {notebook}")
        summary = run_notebook(notebook, Path(args.output), timeout=args.timeout)
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
    demo = sub.add_parser("demo", help="run the triage runbook against the simulated guest")
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
