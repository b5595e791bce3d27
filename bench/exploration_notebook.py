"""Run the exploration's cells in a REAL Jupyter kernel and write what the notebook shows.

``tests/pwsh/test_exploration.py`` proves hvmagic's *values* are PowerShell's; this shows how the
notebook *presents* them (tables, text, stream records, errors, progress), cell by cell, for a
person to read, as issue 12 asks ("no wrong result and no confusing message")::

    HVMAGIC_PWSH=../shared/tools/pwsh PYTHONPATH=. python bench/exploration_notebook.py OUT

writes ``OUT/exploration.ipynb`` (executed) and ``OUT/exploration.txt``: per cell the script,
then each output's ``text/plain`` (``[html]`` marks outputs that also have HTML) and the
HTML of the first output in ``OUT/html/NNN.html``. The kernel is this interpreter's ``python3``;
the demo guest is ``hvmagic.demo.open_demo_session`` adopted with ``%vmconnect --session``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

import nbformat
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.pwsh.exploration_cells import CELLS  # noqa: E402

SETUP = """\
%load_ext hvmagic
import os
from hvmagic.demo import open_demo_session
try:
    from hvmagic.magics import NotebookHostUI
except ImportError:  # moved to its own module
    from hvmagic.hostui import NotebookHostUI
s = open_demo_session(executable=os.environ["HVMAGIC_PWSH"], host_ui=NotebookHostUI(guest="sim"))
%vmconnect sim --session s
"""


def _text(output: Any) -> str:
    kind = output.get("output_type")
    if kind == "stream":
        return f"[{output['name']}] {output['text']}"
    if kind == "error":
        return f"[error] {output['ename']}: {output['evalue']}"
    data = output.get("data", {})
    mark = " [html]" if "text/html" in data else ""
    return f"[{kind}{mark}]\n{data.get('text/plain', '')}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    args = parser.parse_args()
    out: Path = args.out
    (out / "html").mkdir(parents=True, exist_ok=True)
    nb = nbformat.v4.new_notebook()
    nb.cells.append(nbformat.v4.new_code_cell(SETUP))
    for cell in CELLS:
        nb.cells.append(nbformat.v4.new_code_cell("%%vmps\n" + cell.script))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    client = NotebookClient(nb, timeout=120, kernel_name="python3", allow_errors=True,
                            kernel_manager_class=KernelManager,
                            resources={"metadata": {"path": str(out)}})
    started = time.monotonic()
    with client.setup_kernel(env=env):
        for index, cell in enumerate(nb.cells):
            client.execute_cell(cell, index)
    seconds = time.monotonic() - started
    nbformat.write(nb, str(out / "exploration.ipynb"))
    lines = [f"# {len(CELLS)} cells in {seconds:.1f} s\n"]
    for index, cell in enumerate(nb.cells):
        lines.append(f"\n===== {index:03d} " + "=" * 60)
        lines.append(cell.source)
        lines.append("-----")
        for output in cell.get("outputs", []):
            lines.append(_text(output))
        htmls = [o["data"]["text/html"] for o in cell.get("outputs", [])
                 if "text/html" in o.get("data", {})]
        if htmls:
            (out / "html" / f"{index:03d}.html").write_text("\n".join(htmls), encoding="utf-8")
    (out / "exploration.txt").write_text("\n".join(lines), encoding="utf-8")
    print(f"{len(CELLS)} cells in {seconds:.1f} s -> {out}")


if __name__ == "__main__":
    main()
