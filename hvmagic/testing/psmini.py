"""A very small PowerShell reader for the simulated guest: statements, pipelines, arguments,
and the expressions admins put in ``Where-Object`` / ``Select-Object`` / ``ForEach-Object``.

It is not a PowerShell implementation. It understands exactly what
:mod:`hvmagic.testing.demo` documents and raises :class:`PSSyntaxError` for the rest, so a
script the simulation cannot follow fails loudly instead of returning made-up data.
"""

from __future__ import annotations

import datetime as _dt
import fnmatch
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from hvmagic.errors import HvMagicError


class PSSyntaxError(HvMagicError):
    """The simulated guest cannot read this script (it is outside what the sim understands)."""


@dataclass(frozen=True)
class ScriptBlock:
    text: str

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True)
class SubExpression:
    """``( ... )``, ``$( ... )`` or ``@( ... )``: evaluated by the shell when bound."""

    text: str
    array: bool = False


@dataclass(frozen=True)
class VariableRef:
    name: str
    members: str = ""


@dataclass(frozen=True)
class HashLiteral:
    text: str


@dataclass(frozen=True)
class ExpandableString:
    text: str


_OPENERS = {"(": ")", "{": "}", "[": "]"}


def split_top(text: str, separators: str, *, keep_empty: bool = False) -> list[str]:
    """Split ``text`` at ``separators`` that sit outside quotes, brackets and braces.

    Newlines count as separators only when ``"\\n"`` is in ``separators``; a backtick before a
    newline continues the line, and a line ending in ``|`` continues the pipeline.
    """
    parts: list[str] = []
    depth: list[str] = []
    current: list[str] = []
    i = 0
    n = len(text)
    while i < n:
        ch = text[i]
        if ch == "`" and i + 1 < n:
            if text[i + 1] == "\n":
                current.append(" ")
            else:
                current.append(text[i : i + 2])
            i += 2
            continue
        if ch in "'\"":
            end = _string_end(text, i)
            current.append(text[i:end])
            i = end
            continue
        if ch == "<" and text.startswith("<#", i):
            end = text.find("#>", i + 2)
            i = n if end < 0 else end + 2
            continue
        if ch == "#" and (i == 0 or text[i - 1] in " \t\n;{(|"):
            end = text.find("\n", i)
            i = n if end < 0 else end
            continue
        if ch in _OPENERS:
            depth.append(_OPENERS[ch])
        elif depth and ch == depth[-1]:
            depth.pop()
        elif not depth and ch in separators:
            if ch == "\n" and "".join(current).rstrip().endswith("|"):
                current.append(" ")
                i += 1
                continue
            parts.append("".join(current))
            current = []
            i += 1
            continue
        current.append(ch)
        i += 1
    if depth:
        raise PSSyntaxError(f"Missing closing '{depth[-1]}' in the script.")
    parts.append("".join(current))
    stripped = [p.strip() for p in parts]
    return stripped if keep_empty else [p for p in stripped if p]


def _string_end(text: str, start: int) -> int:
    quote = text[start]
    i = start + 1
    while i < len(text):
        ch = text[i]
        if quote == '"' and ch == "`":
            i += 2
            continue
        if ch == quote:
            if i + 1 < len(text) and text[i + 1] == quote:
                i += 2
                continue
            return i + 1
        i += 1
    raise PSSyntaxError("The string is missing the terminator: " + quote)


def unquote(token: str) -> Any:
    if len(token) >= 2 and token[0] == "'" and token[-1] == "'":
        return token[1:-1].replace("''", "'")
    if len(token) >= 2 and token[0] == '"' and token[-1] == '"':
        body = token[1:-1].replace('""', '"')
        if "$" in body:
            return ExpandableString(body)
        return _unescape_backticks(body)
    return token


def _unescape_backticks(text: str) -> str:
    escapes = {"n": "\n", "t": "\t", "r": "\r", "0": "\0", "`": "`", '"': '"', "$": "$"}
    return re.sub(r"`(.)", lambda m: escapes.get(m.group(1), m.group(1)), text)


def tokenize_arguments(text: str) -> list[str]:
    """Whitespace-separated words of a command, quotes and brackets kept whole; ``a, b`` (a
    comma list written with spaces) stays one word."""
    words: list[str] = []
    for word in split_top(text, " \t\n"):
        if words and (words[-1].endswith(",") or word.startswith(",")):
            words[-1] += word
        else:
            words.append(word)
    return words


_NUMBER = re.compile(r"^-?(?:0x[0-9a-fA-F]+|\d+(?:\.\d+)?)(kb|mb|gb|tb|pb)?$", re.IGNORECASE)
_MULTIPLIERS = {"kb": 1 << 10, "mb": 1 << 20, "gb": 1 << 30, "tb": 1 << 40, "pb": 1 << 50}


def parse_number(token: str) -> int | float | None:
    match = _NUMBER.match(token)
    if match is None:
        return None
    body = token[: len(token) - len(match.group(1) or "")]
    value: int | float
    if body.lower().lstrip("-").startswith("0x"):
        value = int(body, 16)
    elif "." in body:
        value = float(body)
    else:
        value = int(body)
    if match.group(1):
        value = value * _MULTIPLIERS[match.group(1).lower()]
    return value


def parse_value_token(token: str) -> Any:
    """One argument word → a Python value or a deferred piece (variable, block, sub-pipeline)."""
    if "," in token and not token.startswith(("{", "(", "@", "'", '"')):
        pieces = split_top(token, ",")
        if len(pieces) > 1:
            return [parse_value_token(p) for p in pieces]
    if token.startswith(("'", '"')):
        pieces = split_top(token, ",")
        if len(pieces) > 1:
            return [parse_value_token(p) for p in pieces]
        return unquote(token)
    if token.startswith("{") and token.endswith("}"):
        return ScriptBlock(token[1:-1].strip())
    if token.startswith("@{") and token.endswith("}"):
        return HashLiteral(token[2:-1])
    if token.startswith("@(") and token.endswith(")"):
        return SubExpression(token[2:-1], array=True)
    if token.startswith("$(") and token.endswith(")"):
        return SubExpression(token[2:-1])
    if token.startswith("(") and token.endswith(")"):
        return SubExpression(token[1:-1])
    if token.startswith("$"):
        match = re.match(r"^\$(\{[^}]+\}|[A-Za-z_][\w]*(?::[\w]+)?|_|\?)(.*)$", token)
        if match is None:
            raise PSSyntaxError(f"Unexpected token '{token}'.")
        return VariableRef(match.group(1).strip("{}"), match.group(2))
    number = parse_number(token)
    if number is not None:
        return number
    return token


@dataclass
class Invocation:
    """A command with its bound arguments: ``named`` (lower-case keys) and ``positional``."""

    name: str
    named: dict[str, Any]
    positional: list[Any]
    text: str

    def get(self, *names: str, default: Any = None) -> Any:
        for name in names:
            if name.lower() in self.named:
                return self.named[name.lower()]
        return default

    def has(self, *names: str) -> bool:
        return any(n.lower() in self.named for n in names)

    def switch(self, *names: str) -> bool:
        value = self.get(*names)
        return bool(value) if value is not None else False


def parse_invocation(
    text: str,
    *,
    known: Mapping[str, tuple[tuple[str, ...], tuple[str, ...]]] | None = None,
) -> Invocation:
    """``Verb-Noun -Param value -Switch positional`` → :class:`Invocation`.

    ``known`` maps a lower-case command name to ``(parameter names, switch names)`` so
    unambiguous prefixes (``-Desc`` for ``-Descending``) resolve and switches do not swallow
    the next word. Unknown parameters are kept as written.
    """
    words = tokenize_arguments(text)
    if not words:
        raise PSSyntaxError("An empty pipe element is not allowed.")
    name = words[0]
    parameters, switches = (known or {}).get(name.lower(), ((), ()))
    all_names = [p.lower() for p in (*parameters, *switches)]
    switch_names = {s.lower() for s in switches} | {
        "verbose",
        "debug",
        "force",
        "passthru",
        "recurse",
        "wait",
        "whatif",
        "confirm",
        "descending",
        "unique",
        "asjob",
        "file",
        "directory",
        "noelement",
        "notypeinformation",
        "compress",
        "completed",
        "asstring",
        "list",
    }
    named: dict[str, Any] = {}
    positional: list[Any] = []
    i = 1
    while i < len(words):
        word = words[i]
        if re.match(r"^-[A-Za-z][\w-]*:?", word) and parse_number(word) is None:
            raw, _, attached = word[1:].partition(":")
            key = _resolve_parameter(raw.lower(), all_names)
            if attached:
                named[key] = parse_value_token(attached)
            elif key in switch_names and key not in {p.lower() for p in parameters}:
                named[key] = True
            elif i + 1 < len(words) and not (
                re.match(r"^-[A-Za-z]", words[i + 1]) and parse_number(words[i + 1]) is None
            ):
                named[key] = parse_value_token(words[i + 1])
                i += 1
            else:
                named[key] = True
        else:
            positional.append(parse_value_token(word))
        i += 1
    return Invocation(name, named, positional, text)


def _resolve_parameter(raw: str, names: list[str]) -> str:
    if raw in names or not names:
        return raw
    candidates = [n for n in names if n.startswith(raw)]
    if len(candidates) == 1:
        return candidates[0]
    return raw


# --------------------------------------------------------------------------------------------
# Expressions
# --------------------------------------------------------------------------------------------

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<str>'(?:[^']|'')*'|"(?:[^"`]|`.|"")*")
      | (?P<num>0x[0-9a-fA-F]+|\d+(?:\.\d+)?(?:kb|mb|gb|tb|pb)?)(?![\w])
      | (?P<type>\[[A-Za-z_][\w.]*(?:\[\])?\])
      | (?P<var>\$(?:\{[^}]+\}|[A-Za-z_]\w*(?::\w+)?|_|\?))
      | (?P<op>-(?:c|i)?(?:eq|ne|gt|ge|lt|le|like|notlike|match|notmatch|contains|notcontains
                          |in|notin)\b
               |-(?:and|or|not|xor|is|isnot|join|split|replace|f)\b)
      | (?P<sym>::|\.\.|[()\[\],.+\-*/%!=@{};])
      | (?P<word>[A-Za-z_][\w-]*)
    )""",
    re.VERBOSE | re.IGNORECASE,
)


def tokenize_expression(text: str) -> list[tuple[str, str]]:
    return tokenize_with_spans(text)[0]


def tokenize_with_spans(text: str) -> tuple[list[tuple[str, str]], list[int]]:
    """Tokens of ``text`` (already stripped) and where each token starts in it."""
    tokens: list[tuple[str, str]] = []
    starts: list[int] = []
    pos = 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None or match.end() == pos:
            if text[pos:].strip() == "":
                break
            raise PSSyntaxError(f"Unexpected token '{text[pos : pos + 20]}' in expression.")
        kind = match.lastgroup or ""
        tokens.append((kind, match.group(kind)))
        starts.append(match.start(kind))
        pos = match.end()
    return tokens, starts


class ExpressionEvaluator:
    """Evaluates one PowerShell expression against ``variables`` (and ``$_``)."""

    def __init__(
        self,
        variables: Callable[[str], Any],
        run_pipeline: Callable[[str], list[Any]],
        get_member: Callable[[Any, str], Any],
    ) -> None:
        self._variables = variables
        self._run_pipeline = run_pipeline
        self._member = get_member
        self._tokens: list[tuple[str, str]] = []
        self._starts: list[int] = []
        self._source = ""
        self._pos = 0
        self._in_arguments = 0  # inside f(a, b) the comma separates arguments

    def evaluate(self, text: str) -> Any:
        statements = split_top(text, ";\n")
        result: Any = None
        for statement in statements:
            result = self._evaluate_one(statement)
        return result

    def _evaluate_one(self, text: str) -> Any:
        if _looks_like_command(text):
            values = self._run_pipeline(text)
            return values[0] if len(values) == 1 else values
        saved = (self._tokens, self._pos, self._starts, self._source)
        self._source = text.strip()
        self._tokens, self._starts = tokenize_with_spans(self._source)
        self._pos = 0
        try:
            value = self._logical()
            if self._pos < len(self._tokens):
                raise PSSyntaxError(
                    f"Unexpected token '{self._tokens[self._pos][1]}' in expression."
                )
            return value
        finally:
            self._tokens, self._pos, self._starts, self._source = saved

    # ---- token helpers ----

    def _peek(self) -> tuple[str, str] | None:
        return self._tokens[self._pos] if self._pos < len(self._tokens) else None

    def _take(self) -> tuple[str, str]:
        token = self._peek()
        if token is None:
            raise PSSyntaxError("You must provide a value expression following the operator.")
        self._pos += 1
        return token

    def _accept(self, kind: str, value: str | None = None) -> bool:
        token = self._peek()
        if token and token[0] == kind and (value is None or token[1].lower() == value):
            self._pos += 1
            return True
        return False

    # ---- grammar: PowerShell gives -and/-or the same precedence, left to right ----

    def _logical(self) -> Any:
        left = self._unary()
        while True:
            token = self._peek()
            if token and token[0] == "op" and token[1].lower() in ("-and", "-or", "-xor"):
                self._pos += 1
                right = self._unary()
                op = token[1].lower()
                if op == "-and":
                    left = truthy(left) and truthy(right)
                elif op == "-or":
                    left = truthy(left) or truthy(right)
                else:
                    left = truthy(left) != truthy(right)
            else:
                return left

    def _unary(self) -> Any:
        if self._accept("op", "-not") or self._accept("sym", "!"):
            return not truthy(self._unary())
        return self._comparison()

    def _comparison(self) -> Any:
        left = self._additive()
        token = self._peek()
        if token and token[0] == "op" and token[1].lower() not in ("-and", "-or", "-xor", "-not"):
            self._pos += 1
            right = self._additive()
            return compare(token[1].lower(), left, right)
        return left

    def _additive(self) -> Any:
        left = self._multiplicative()
        while True:
            token = self._peek()
            if token and token[0] == "sym" and token[1] in "+-" and token[1]:
                self._pos += 1
                right = self._multiplicative()
                left = _arith(token[1], left, right)
            else:
                return left

    def _multiplicative(self) -> Any:
        left = self._range()
        while True:
            token = self._peek()
            if token and token[0] == "sym" and token[1] in ("*", "/", "%"):
                self._pos += 1
                right = self._range()
                left = _arith(token[1], left, right)
            else:
                return left

    def _range(self) -> Any:
        left = self._array()
        if self._accept("sym", ".."):
            right = self._array()
            step = 1 if int(right) >= int(left) else -1
            return list(range(int(left), int(right) + step, step))
        return left

    def _array(self) -> Any:
        """The comma operator binds tighter than every binary operator (``3 -in 1,2,3``)."""
        first = self._postfix()
        if self._in_arguments:
            return first
        items = [first]
        while self._accept("sym", ","):
            items.append(self._postfix())
        return items if len(items) > 1 else first

    def _postfix(self) -> Any:
        value = self._primary()
        while True:
            if self._accept("sym", "."):
                _kind, name = self._take()
                if self._accept("sym", "("):
                    args = self._arguments()
                    value = call_method(value, name, args)
                else:
                    value = self._member(value, name)
            elif self._accept("sym", "["):
                index = self._logical()
                if not self._accept("sym", "]"):
                    raise PSSyntaxError("Array index expression is missing or not valid.")
                value = _index(value, index)
            else:
                return value

    def _arguments(self) -> list[Any]:
        args: list[Any] = []
        if self._accept("sym", ")"):
            return args
        while True:
            self._in_arguments += 1
            try:
                args.append(self._logical())
            finally:
                self._in_arguments -= 1
            if self._accept("sym", ")"):
                return args
            if not self._accept("sym", ","):
                raise PSSyntaxError("Missing ')' in method call.")

    def _primary(self) -> Any:
        kind, text = self._take()
        if kind == "str":
            value = unquote(text)
            if isinstance(value, ExpandableString):
                return self.expand(value.text)
            return value
        if kind == "num":
            number = parse_number(text)
            return number
        if kind == "var":
            return self._variables(text[1:].strip("{}"))
        if kind == "sym" and text == "-":
            return _arith("*", -1, self._postfix())
        if kind == "sym" and text == "(":
            return self._nested(self._balanced("(", ")"))
        if kind == "sym" and text == "@":
            if self._accept("sym", "("):
                inner = self._balanced("(", ")")
                if not inner.strip():
                    return []
                value = self._nested(inner)
                return value if isinstance(value, list) else [value]
            if self._accept("sym", "{"):
                # ``@{ Key = value; ... }`` in an expression, e.g. ``[pscustomobject]@{...}``:
                # a dict, which the guest writes as a PSCustomObject.
                return parse_hashtable(self._balanced("{", "}"), self._nested)
            raise PSSyntaxError("'@' must be followed by '(' or '{' in an expression.")
        if kind == "type":
            type_name = text[1:-1].lower()
            if self._accept("sym", "::"):
                _k, member = self._take()
                if self._accept("sym", "("):
                    return static_call(type_name, member, self._arguments())
                return static_member(type_name, member)
            return cast(type_name, self._postfix())
        if kind == "word":
            lowered = text.lower()
            if lowered in ("true", "false"):
                return lowered == "true"
            return text
        raise PSSyntaxError(f"Unexpected token '{text}' in expression.")

    def _balanced(self, opener: str, closer: str) -> str:
        """Consume tokens up to the ``closer`` matching an ``opener`` just taken; return the
        original text between them."""
        start = self._pos
        depth = 1
        while depth:
            token = self._take()
            if token == ("sym", opener):
                depth += 1
            elif token == ("sym", closer):
                depth -= 1
        return self._inner_text(start)

    def _nested(self, text: str) -> Any:
        saved = self._in_arguments
        self._in_arguments = 0
        try:
            return self._evaluate_one(text)
        finally:
            self._in_arguments = saved

    def _inner_text(self, start: int) -> str:
        """The original text between token ``start`` and the ``)`` just consumed, so
        ``(Get-Service vm*)`` keeps ``vm*`` as written."""
        return self._source[self._starts[start] : self._starts[self._pos - 1]]

    def expand(self, body: str) -> str:
        """``"... $x ... $($_.Name) ... $env:COMPUTERNAME"``."""

        def replace(match: re.Match[str]) -> str:
            if match.group(1) is not None:
                return to_text(self._evaluate_one(match.group(1)))
            name = match.group(2).strip("{}")
            return to_text(self._variables(name))

        result = re.sub(
            r"\$\(((?:[^()]|\([^()]*\))*)\)|\$(\{[^}]+\}|[A-Za-z_]\w*(?::\w+)?|_)", replace, body
        )
        return _unescape_backticks(result)


def _looks_like_command(text: str) -> bool:
    stripped = text.strip()
    if len(split_top(stripped, "|")) > 1:
        return True
    return bool(re.match(r"^[A-Za-z][\w]*-[A-Za-z]\w*(\s|$)", stripped)) or bool(
        re.match(r"^(hostname|whoami|dir|ls|gci|gsv|gps|ps|echo)(\s|$)", stripped, re.I)
    )


# --------------------------------------------------------------------------------------------
# PowerShell value semantics
# --------------------------------------------------------------------------------------------


def truthy(value: Any) -> bool:
    if isinstance(value, list):
        return len(value) > 1 or (len(value) == 1 and truthy(value[0]))
    return bool(value)


def to_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, list):
        return " ".join(to_text(v) for v in value)
    if isinstance(value, _dt.datetime):
        return value.strftime("%m/%d/%Y %H:%M:%S").lstrip("0")
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _coerce_like(left: Any, right: Any) -> tuple[Any, Any]:
    """PowerShell converts the right operand to the left operand's type."""
    enum_name = getattr(left, "enum_name", None)
    if enum_name is not None:
        if isinstance(right, str) and parse_number(right) is None:
            return enum_name.lower(), right.lower()
        return int(left), int(right) if right is not None else right
    if isinstance(left, bool):
        return left, truthy(right)
    if isinstance(left, (int, float)) and not isinstance(left, bool):
        if isinstance(right, str):
            number = parse_number(right.strip())
            if number is None:
                return str(left).lower(), right.lower()
            return left, number
        if isinstance(right, _dt.datetime):
            return left, right.timestamp()
        return left, right
    if isinstance(left, _dt.datetime):
        if isinstance(right, str):
            return left, parse_datetime(right)
        if isinstance(right, _dt.datetime):
            return _aware(left), _aware(right)
        return left, right
    if isinstance(left, str):
        return left.lower(), to_text(right).lower()
    if left is None:
        return None, right
    return str(left).lower(), to_text(right).lower()


def _aware(value: _dt.datetime) -> _dt.datetime:
    return value if value.tzinfo else value.astimezone()


def compare(op: str, left: Any, right: Any) -> Any:
    case_sensitive = op.startswith("-c")
    base = "-" + op[2:] if op[1] in "ci" and op[2:] in _BASE_OPS else op
    if base == "-join":
        items = left if isinstance(left, list) else [left]
        return to_text(right).join(to_text(i) for i in items)
    if base == "-f":
        args = right if isinstance(right, list) else [right]
        return re.sub(
            r"\{(\d+)(?::[^}]*)?\}", lambda m: to_text(args[int(m.group(1))]), to_text(left)
        )
    if isinstance(left, list) and base in ("-replace", "-split"):
        return [compare(op, item, right) for item in left]
    if isinstance(left, list) and base not in ("-contains", "-notcontains"):
        return [item for item in left if truthy(compare(op, item, right))]
    if base in ("-contains", "-notcontains"):
        items = left if isinstance(left, list) else [left]
        found = any(truthy(compare("-ceq" if case_sensitive else "-eq", i, right)) for i in items)
        return found if base == "-contains" else not found
    if base in ("-in", "-notin"):
        items = right if isinstance(right, list) else [right]
        found = any(truthy(compare("-ceq" if case_sensitive else "-eq", left, i)) for i in items)
        return found if base == "-in" else not found
    if base in ("-like", "-notlike"):
        text, pattern = to_text(left), to_text(right)
        if not case_sensitive:
            text, pattern = text.lower(), pattern.lower()
        result = fnmatch.fnmatchcase(text, pattern)
        return result if base == "-like" else not result
    if base in ("-match", "-notmatch"):
        flags = 0 if case_sensitive else re.IGNORECASE
        result = re.search(to_text(right), to_text(left), flags) is not None
        return result if base == "-match" else not result
    if base == "-replace":
        pattern, replacement = ([*right, ""])[:2] if isinstance(right, list) else (right, "")
        return re.sub(to_text(pattern), to_text(replacement), to_text(left), flags=re.IGNORECASE)
    if base == "-split":
        return re.split(to_text(right), to_text(left), flags=re.IGNORECASE)
    if case_sensitive and isinstance(left, str):
        a, b = left, to_text(right)
    else:
        a, b = _coerce_like(left, right)
    try:
        if base == "-eq":
            return a == b
        if base == "-ne":
            return a != b
        if a is None or b is None:
            return False
        if base == "-gt":
            return a > b
        if base == "-ge":
            return a >= b
        if base == "-lt":
            return a < b
        if base == "-le":
            return a <= b
    except TypeError:
        return False
    raise PSSyntaxError(f"The operator '{op}' is not understood by the simulated guest.")


#: the comparison operators (without their ``-c``/``-i`` prefixes), as Where-Object takes them
COMPARISON_OPERATORS = frozenset(
    ("eq", "ne", "gt", "ge", "lt", "le", "like", "notlike", "match", "notmatch", "contains",
     "notcontains", "in", "notin")
)
_BASE_OPS = COMPARISON_OPERATORS | {"replace", "split"}


def _arith(op: str, left: Any, right: Any) -> Any:
    if isinstance(left, str) and op == "+":
        return left + to_text(right)
    if isinstance(left, list) and op == "+":
        return left + (right if isinstance(right, list) else [right])
    if isinstance(left, _dt.datetime) and isinstance(right, _dt.timedelta):
        return left + right if op == "+" else left - right
    if isinstance(left, _dt.datetime) and isinstance(right, _dt.datetime) and op == "-":
        return _aware(left) - _aware(right)
    a = _as_number(left)
    b = _as_number(right)
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    if op == "/":
        result = a / b
        return int(result) if float(result).is_integer() else result
    if op == "%":
        return a % b
    raise PSSyntaxError(f"The operator '{op}' is not understood by the simulated guest.")


def _as_number(value: Any) -> int | float:
    if value is None:
        return 0
    if isinstance(value, (int, float)):
        return value
    number = parse_number(str(value).strip())
    if number is None:
        raise PSSyntaxError(f'Cannot convert value "{value}" to type "System.Int32".')
    return number


def _index(value: Any, index: Any) -> Any:
    if isinstance(value, list):
        try:
            return value[int(index)]
        except IndexError:
            return None
    if isinstance(value, str):
        return value[int(index)]
    if isinstance(value, Mapping):
        for key in value:
            if str(key).lower() == str(index).lower():
                return value[key]
        return None
    raise PSSyntaxError("Unable to index into an object of this type.")


def parse_datetime(text: str) -> _dt.datetime:
    for fmt in (
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%d",
        "%m/%d/%Y %H:%M:%S",
        "%m/%d/%Y",
    ):
        try:
            return _dt.datetime.strptime(text.strip(), fmt).astimezone()
        except ValueError:
            continue
    try:
        return _dt.datetime.fromisoformat(text.strip()).astimezone()
    except ValueError as exc:
        raise PSSyntaxError(f'Cannot convert value "{text}" to type "System.DateTime".') from exc


def call_method(value: Any, name: str, args: list[Any]) -> Any:
    lowered = name.lower()
    if isinstance(value, _dt.datetime):
        units = {
            "adddays": "days",
            "addhours": "hours",
            "addminutes": "minutes",
            "addseconds": "seconds",
            "addmilliseconds": "milliseconds",
        }
        if lowered in units:
            return value + _dt.timedelta(**{units[lowered]: float(args[0])})
        if lowered == "tostring":
            return value.strftime(_dotnet_format(to_text(args[0]))) if args else to_text(value)
        if lowered == "touniversaltime":
            return _aware(value).astimezone(_dt.timezone.utc)
    if isinstance(value, str):
        if lowered == "toupper":
            return value.upper()
        if lowered == "tolower":
            return value.lower()
        if lowered == "trim":
            return value.strip(*(to_text(a) for a in args[:1]))
        if lowered == "startswith":
            return value.lower().startswith(to_text(args[0]).lower())
        if lowered == "endswith":
            return value.lower().endswith(to_text(args[0]).lower())
        if lowered == "contains":
            return to_text(args[0]) in value
        if lowered == "replace":
            return value.replace(to_text(args[0]), to_text(args[1]))
        if lowered == "split":
            return value.split(to_text(args[0])) if args else value.split()
        if lowered == "substring":
            start = int(args[0])
            return value[start : start + int(args[1])] if len(args) > 1 else value[start:]
        if lowered == "tostring":
            return value
    if isinstance(value, (int, float)) and lowered == "tostring":
        if args:
            return format(value, _numeric_format(to_text(args[0])))
        return to_text(value)
    if isinstance(value, _dt.timedelta) and lowered == "tostring":
        return str(value)
    raise PSSyntaxError(
        f"Method invocation failed because [{type(value).__name__}] does not contain a method "
        f"named '{name}' (in the simulated guest)."
    )


def _dotnet_format(fmt: str) -> str:
    mapping = [("yyyy", "%Y"), ("MM", "%m"), ("dd", "%d"), ("HH", "%H"), ("mm", "%M"), ("ss", "%S")]
    for dotnet, python in mapping:
        fmt = fmt.replace(dotnet, python)
    return fmt


def _numeric_format(fmt: str) -> str:
    match = re.match(r"^[Nn](\d*)$", fmt)
    if match:
        return f",.{match.group(1) or 2}f"
    match = re.match(r"^[Ff](\d*)$", fmt)
    if match:
        return f".{match.group(1) or 2}f"
    return ""


def static_call(type_name: str, member: str, args: list[Any]) -> Any:
    member = member.lower()
    if type_name == "math":
        if member == "round":
            digits = int(args[1]) if len(args) > 1 else 0
            result = round(float(args[0]), digits)
            return int(result) if digits == 0 else result
        if member in ("floor", "ceiling", "abs", "sqrt"):
            functions: dict[str, Callable[[float], float]] = {
                "floor": math.floor,
                "ceiling": math.ceil,
                "abs": abs,
                "sqrt": math.sqrt,
            }
            return functions[member](float(args[0]))
        if member in ("max", "min"):
            return (max if member == "max" else min)(args[0], args[1])
    if type_name in ("datetime", "system.datetime") and member == "parse":
        return parse_datetime(to_text(args[0]))
    if type_name in ("string", "system.string") and member == "isnullorempty":
        return not args[0]
    if type_name in ("convert", "system.convert") and member == "tobase64string":
        import base64

        return base64.b64encode(bytes(args[0])).decode("ascii")
    raise PSSyntaxError(f"[{type_name}]::{member}() is not understood by the simulated guest.")


def static_member(type_name: str, member: str) -> Any:
    member = member.lower()
    if type_name in ("datetime", "system.datetime"):
        if member == "now":
            return _dt.datetime.now().astimezone()
        if member == "utcnow":
            return _dt.datetime.now(_dt.timezone.utc)
        if member == "today":
            return (
                _dt.datetime.now().astimezone().replace(hour=0, minute=0, second=0, microsecond=0)
            )
    if type_name in ("environment", "system.environment") and member == "machinename":
        return "SIMULATED-GUEST"
    raise PSSyntaxError(f"[{type_name}]::{member} is not understood by the simulated guest.")


def cast(type_name: str, value: Any) -> Any:
    if type_name in ("int", "int32", "long", "int64"):
        return round(_as_number(value))
    if type_name in ("double", "float", "decimal", "single"):
        return float(_as_number(value))
    if type_name in ("string",):
        return to_text(value)
    if type_name in ("bool", "boolean"):
        return truthy(value)
    if type_name in ("datetime",):
        return value if isinstance(value, _dt.datetime) else parse_datetime(to_text(value))
    if type_name in ("array", "object[]"):
        return value if isinstance(value, list) else [value]
    if type_name in ("pscustomobject", "ordered", "hashtable"):
        return value
    raise PSSyntaxError(f"The type [{type_name}] is not understood by the simulated guest.")


def parse_hashtable(text: str, evaluate: Callable[[str], Any]) -> dict[str, Any]:
    """``@{ Name = 'x'; Level = 2, 3; StartTime = (Get-Date).AddDays(-1) }``."""
    result: dict[str, Any] = {}
    for entry in split_top(text, ";\n"):
        key, sep, value = entry.partition("=")
        if not sep:
            raise PSSyntaxError("Missing '=' operator after key in hash literal.")
        key = key.strip().strip("'\"")
        value = value.strip()
        if value.startswith("{") and value.endswith("}"):
            result[key] = ScriptBlock(value[1:-1].strip())
        else:
            result[key] = evaluate(value)
    return result
