"""Reading magic lines: option splitting, comments, names, columns and helpful one-liners.

Pure functions (no IPython shell needed, unit-tested on their own); a mistake is a
:class:`~IPython.core.error.UsageError` whose one line says what to type instead.
"""

from __future__ import annotations

import difflib
import keyword
import re
from collections.abc import Mapping, Sequence
from typing import Any

from IPython.core.error import UsageError


def _is_python_name(name: str) -> bool:
    # Python identifiers (Unicode letters included) are all valid PowerShell variable names
    return name.isidentifier() and not keyword.iskeyword(name)


def parse_columns(spec: str | None) -> str | list[str]:
    """``default`` / ``all`` / ``Name,Status`` → what :func:`hvmagic.to_dataframe` takes."""
    if spec is None:
        return "default"
    text = spec.strip()
    if text.lower() in ("default", "all"):
        return text.lower()
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise UsageError(f"--columns needs default, all or a comma-separated list, not {spec!r}")
    return names


def parse_names(spec: str | None, option: str) -> list[str]:
    """``a,b`` → ``["a", "b"]``, each a Python identifier (and so a valid PowerShell name)."""
    if not spec:
        return []
    names = [n.strip() for n in spec.split(",") if n.strip()]
    for name in names:
        if not _is_python_name(name):
            raise UsageError(f"{option}: {name!r} is not a Python variable name")
    return names


def check_identifier(name: str, option: str) -> str:
    if not _is_python_name(name):
        raise UsageError(f"{option}: {name!r} is not a valid Python variable name")
    return name


def split_leading_options(
    line: str, value_options: Sequence[str], flag_options: Sequence[str],
    *, strict: bool = False,
) -> tuple[str, str]:
    """Split a line magic into its leading options and the PowerShell that follows.

    ``%vmps -o svc Get-ChildItem -Recurse C:\\x`` → (``-o svc``, ``Get-ChildItem -Recurse C:\\x``):
    options are read only until the first word that is not one of ours, so PowerShell's own
    ``-Parameters`` are never taken for options. ``--`` ends the options explicitly. The script
    part is returned verbatim (quotes, ``$`` and braces untouched).

    ``strict``: a leading ``--word`` that is not an option is a mistyped option (no PowerShell
    statement starts that way; ``--$i`` does, and stays script), so it is a :class:`UsageError`
    naming the closest option instead of being sent to PowerShell as script.
    """
    pos = 0
    taken: list[str] = []
    token = re.compile(r"\s*(\S+)")
    while True:
        match = token.match(line, pos)
        if match is None:
            return " ".join(taken), ""
        word = match.group(1)
        name = word.split("=", 1)[0]
        if word == "--":
            return " ".join(taken), line[match.end():].strip()
        if name in flag_options:
            taken.append(word)
            pos = match.end()
            continue
        if name in value_options:
            taken.append(word)
            pos = match.end()
            if "=" not in word:
                value = _quoted_or_word(line, pos)
                if value is None:
                    return " ".join(taken), ""
                text, pos = value
                taken.append(text)
            continue
        if strict and _LONG_OPTION.match(word):
            raise UsageError(
                explain_unknown_arguments("vmps", [word], [*value_options, *flag_options])
            )
        return " ".join(taken), line[match.start(1):].strip()


_LONG_OPTION = re.compile(r"--[A-Za-z][\w-]*(=.*)?\Z")


def _quoted_or_word(line: str, pos: int) -> tuple[str, int] | None:
    match = re.compile(r"""\s*("[^"]*"|'[^']*'|\S+)""").match(line, pos)
    if match is None:
        return None
    return match.group(1), match.end()


def unquote(text: str) -> str:
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        return text[1:-1]
    return text


_BRACED_NAME = re.compile(r"(?<![\w$@]){([A-Za-z_]\w*)}")


def python_name_hint(
    script: str, namespace: Mapping[str, Any], passed: Mapping[str, Any]
) -> str | None:
    """jupysql and sparkmagic users write ``{name}`` to use a Python variable; in PowerShell
    that is a script block, and hvmagic never pastes values into script text. One line that
    says how to pass it, when ``name`` is a Python variable not already passed."""
    for match in _BRACED_NAME.finditer(script):
        name = match.group(1)
        if name in namespace and not name.startswith("_") and name not in passed:
            return (f"Note: {{{name}}} is a PowerShell script block here, not the Python "
                    f"variable {name}; to use its value, add --with {name} and write ${name}.")
    return None


def strip_magic_comment(line: str) -> str:
    """Drop a ``# comment`` from a magic line (as pasted from the README): a ``#`` at the start
    or after whitespace, outside quotes, ends the arguments."""
    quote: str | None = None
    for index, char in enumerate(line):
        if quote:
            if char == quote:
                quote = None
        elif char in "'\"":
            quote = char
        elif char == "#" and (index == 0 or line[index - 1].isspace()):
            return line[:index].rstrip()
    return line


def explain_unknown_arguments(magic: str, words: Sequence[str], options: Sequence[str]) -> str:
    """One line for argparse's "unrecognized arguments": the first unknown option and the
    closest real one, or the stray words."""
    for word in words:
        if word.startswith("-") and word.split("=")[0] not in options:
            given = word.split("=")[0]
            close = difflib.get_close_matches(given, options, n=1, cutoff=0.6)
            hint = f" (did you mean {close[0]}?)" if close else ""
            return f"%{magic}: unknown option {given}{hint}; %{magic} -h lists the options"
    return f"%{magic}: unexpected argument(s) {' '.join(words)}; %{magic} -h shows the usage"


__all__ = [
    "check_identifier",
    "explain_unknown_arguments",
    "parse_columns",
    "parse_names",
    "python_name_hint",
    "split_leading_options",
    "strip_magic_comment",
    "unquote",
]
