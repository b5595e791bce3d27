"""%vmcopy endpoints as IPython hands them over (non-POSIX split: quotes stay on the word)."""

from __future__ import annotations

from IPython.utils.process import arg_split

from hvmagic.magic_args import unquote
from hvmagic.vmcopy import parse_copy_endpoint


def test_quoted_guest_path_with_spaces_is_remote() -> None:
    words = arg_split(r'-r dsc/Mod "VM:C:\Program Files\WindowsPowerShell\Modules\Mod"')
    assert words[-1].startswith('"')  # what IPython really passes to the magic
    endpoint = parse_copy_endpoint(unquote(words[-1]), lambda alias: False)
    assert endpoint.remote
    assert endpoint.path == r"C:\Program Files\WindowsPowerShell\Modules\Mod"
    local = parse_copy_endpoint(unquote("'C:\\Temp\\x y.txt'"), lambda alias: False)
    assert not local.remote and local.path == "C:\\Temp\\x y.txt"
    assert unquote('"unbalanced') == '"unbalanced'
