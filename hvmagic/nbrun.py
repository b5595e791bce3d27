"""Execute a notebook headlessly, as a user's kernel would, into an output folder.

:func:`run_notebook` starts a fresh kernel (nbclient), runs the cells until the first error and
writes the executed ``.ipynb`` and a readable ``.html`` beside whatever the notebook itself
wrote; ``hvmagic demo`` and ``python -m hvmagic.demo.record`` both run runbooks this way.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
#: notebooks installed with the package (package data)
PACKAGE_NOTEBOOKS = PACKAGE_DIR / "notebooks"
#: notebooks of a source checkout (the repository's ``notebooks/``)
CHECKOUT_NOTEBOOKS = PACKAGE_DIR.parent / "notebooks"


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


def kernel_env(changes: Mapping[str, str | None] | None = None) -> dict[str, str]:
    """This process's environment for the kernel, with ``changes`` applied (``None`` removes a
    variable). The kernel must import *this* hvmagic, also from a source checkout that is not
    installed, so the package's parent leads ``PYTHONPATH``."""
    env = dict(os.environ)
    for key, value in (changes or {}).items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    parent = str(PACKAGE_DIR.parent)
    existing = env.get("PYTHONPATH")
    env["PYTHONPATH"] = parent if not existing else parent + os.pathsep + existing
    return env


def copy_companions(source: Path, output_dir: Path) -> None:
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
    env: Mapping[str, str | None] | None = None,
) -> RunSummary:
    """Execute ``notebook`` (cells run until the first error) and write ``.ipynb`` + ``.html``.

    ``env``: changes to this process's environment for the kernel (``None`` removes one)."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError
    from nbconvert import HTMLExporter

    nb = nbformat.read(str(notebook), as_version=4)
    output_dir.mkdir(parents=True, exist_ok=True)
    copy_companions(notebook.parent, output_dir)
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
            client.execute(env=kernel_env(env))
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


__all__ = [
    "CHECKOUT_NOTEBOOKS",
    "PACKAGE_NOTEBOOKS",
    "RunSummary",
    "copy_companions",
    "kernel_env",
    "run_notebook",
]
