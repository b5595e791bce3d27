"""The "Python (hvmagic)" kernelspec: its content, installing it, and a kernel started from it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hvmagic import kernel
from hvmagic.__main__ import main as cli_main

REPO = Path(__file__).resolve().parent.parent


def test_kernel_spec_is_python_with_the_extension_preloaded() -> None:
    spec = kernel.kernel_spec("/opt/py/bin/python")
    assert spec["argv"] == ["/opt/py/bin/python", "-m", "ipykernel_launcher", "-f",
                            "{connection_file}", "--IPKernelApp.extensions=hvmagic"]
    # papermill picks its parameter translator from the language: it must stay python
    assert spec["language"] == "python"
    assert spec["display_name"] == "Python (hvmagic)"
    assert spec["interrupt_mode"] == "signal"


def test_install_via_module_cli_into_prefix(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "hvmagic.kernel", "install", "--prefix", str(tmp_path)],
        capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)}, check=False,
    )
    assert done.returncode == 0, done.stderr
    spec_dir = tmp_path / "share" / "jupyter" / "kernels" / "hvmagic"
    assert f"Installed kernelspec 'hvmagic' (Python (hvmagic)) in {spec_dir}" in done.stdout
    installed = json.loads((spec_dir / "kernel.json").read_text())
    assert installed["argv"][0] == sys.executable
    assert installed["argv"][-1] == "--IPKernelApp.extensions=hvmagic"
    assert (spec_dir / "logo-64x64.png").is_file()


def test_install_options_are_exclusive_and_hvmagic_alias(tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]
                                                         ) -> None:
    with pytest.raises(SystemExit) as info:
        kernel.main(["install", "--user", "--prefix", str(tmp_path)])
    assert info.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err
    with pytest.raises(ValueError, match="either user=True or a prefix"):
        kernel.install(user=True, prefix=str(tmp_path))
    assert cli_main(["kernel", "install", "--prefix", str(tmp_path), "--name", "hv2"]) == 0
    assert (tmp_path / "share/jupyter/kernels/hv2/kernel.json").is_file()


@pytest.mark.kernel
@pytest.mark.timeout(60)
def test_kernel_from_installed_spec_has_magics_without_load_ext(tmp_path: Path) -> None:
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager

    kernel.install(prefix=str(tmp_path))
    ksm = KernelSpecManager(kernel_dirs=[str(tmp_path / "share" / "jupyter" / "kernels")])
    km = KernelManager(kernel_name="hvmagic", kernel_spec_manager=ksm)
    km.start_kernel(env={**os.environ, "PYTHONPATH": str(REPO)})
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=30)
        assert km.kernel_spec is not None
        assert km.kernel_spec.display_name == "Python (hvmagic)"
        outputs: list[str] = []

        def collect(msg: dict) -> None:  # type: ignore[type-arg]
            if msg["msg_type"] == "stream":
                outputs.append(msg["content"]["text"])

        reply = kc.execute_interactive(
            "ip = get_ipython()\n"
            "print(sorted(n for n in ip.magics_manager.magics['line'] if n.startswith('vm')))\n"
            "print('hvmagic' in ip.extension_manager.loaded)\n"
            "ip.run_line_magic('config', 'VmMagics.displaylimit = 7')\n"
            "print(ip._hvmagic_magics.displaylimit)\n",
            output_hook=collect, timeout=30,
        )
        assert reply["content"]["status"] == "ok"
        assert "".join(outputs).splitlines() == [
            "['vmcellmode', 'vmclose', 'vmconnect', 'vmcopy', 'vmps', 'vmps_mode', "
            "'vmsessions', 'vmuse']",
            "True",
            "7",
        ]
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
