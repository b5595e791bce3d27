"""A Jupyter kernelspec "Python (hvmagic)": the ordinary IPython kernel with hvmagic preloaded.

``python -m hvmagic.kernel install [--user | --sys-prefix | --prefix P] [--name N]``

The kernel is ipykernel's own (``python -m ipykernel_launcher``) started with
``--IPKernelApp.extensions=hvmagic``, so the magics are there from the first cell without a
``%load_ext`` line. Its language stays ``python``: papermill injects its parameters cell as
Python, and every Python tool treats the kernel as the Python kernel it is.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

KERNEL_NAME = "hvmagic"
DISPLAY_NAME = "Python (hvmagic)"


def kernel_spec(python: str | None = None) -> dict[str, Any]:
    """The ``kernel.json`` content for an interpreter (default: this one)."""
    return {
        "argv": [
            python or sys.executable,
            "-m",
            "ipykernel_launcher",
            "-f",
            "{connection_file}",
            "--IPKernelApp.extensions=hvmagic",
        ],
        "display_name": DISPLAY_NAME,
        "language": "python",
        "interrupt_mode": "signal",  # SIGINT → KeyboardInterrupt → the remote pipeline stops
        "metadata": {"debugger": True, "hvmagic": {"extension": "hvmagic"}},
    }


def install(
    *,
    user: bool = False,
    prefix: str | None = None,
    name: str = KERNEL_NAME,
    python: str | None = None,
) -> str:
    """Install the kernelspec and return the directory it was installed into.

    ``user`` installs for this user only, ``prefix`` under ``PREFIX/share/jupyter/kernels``;
    with neither, into the system-wide Jupyter data directory (may need privileges).
    """
    from jupyter_client.kernelspec import KernelSpecManager

    if user and prefix:
        raise ValueError("give either user=True or a prefix, not both")
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / name
        source.mkdir()
        (source / "kernel.json").write_text(json.dumps(kernel_spec(python), indent=1) + "\n",
                                            encoding="utf-8")
        _copy_logos(source)
        return str(
            KernelSpecManager().install_kernel_spec(
                str(source), kernel_name=name, user=user, prefix=prefix
            )
        )


def _copy_logos(target: Path) -> None:
    """Reuse ipykernel's Python logos so the launcher shows a familiar icon."""
    try:
        import ipykernel
    except ImportError:  # pragma: no cover - ipykernel is a dependency
        return
    resources = Path(ipykernel.__file__).parent / "resources"
    for logo in resources.glob("logo-*.png"):
        (target / logo.name).write_bytes(logo.read_bytes())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m hvmagic.kernel",
        description="Install the 'Python (hvmagic)' Jupyter kernel (IPython with hvmagic loaded).",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    inst = sub.add_parser("install", help="install the kernelspec")
    where = inst.add_mutually_exclusive_group()
    where.add_argument("--user", action="store_true", help="for the current user only")
    where.add_argument("--sys-prefix", action="store_true",
                       help=f"into this environment ({sys.prefix})")
    where.add_argument("--prefix", default=None, help="under PREFIX/share/jupyter/kernels")
    inst.add_argument("--name", default=KERNEL_NAME, help=f"kernel name (default {KERNEL_NAME})")
    args = parser.parse_args(argv)
    prefix = sys.prefix if args.sys_prefix else args.prefix
    try:
        path = install(user=args.user, prefix=prefix, name=args.name)
    except OSError as exc:
        print(f"could not install the kernelspec: {exc} (try --user or --sys-prefix)",
              file=sys.stderr)
        return 1
    print(f"Installed kernelspec {args.name!r} ({DISPLAY_NAME}) in {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
