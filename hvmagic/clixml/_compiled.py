"""Shape-compiled decoding: the fast path behind :func:`loads_fragment` and :func:`loads`.

Why: a pure-Python XML walk costs ~0.3 µs per element and a service object has ~70 elements, so
any element-by-element decoder tops out near 10-15k objects/s. PowerShell output, however, is
extremely repetitive: 20 000 services share a handful of *shapes* (the same tags and property
names in the same order; only texts and RefIds differ).

How: one C-level ``re.split`` cuts an object's bytes into its constant skeleton (tag bodies)
and its variable parts (element texts, and RefId values in documents). The skeleton, joined, is
the key of a cache of *builders*: Python functions generated once per shape that build the
values straight from the variable parts (a dict literal per object, ``int(p[7])`` per integer,
…). The first object of each shape is decoded by the expat decoder (the reference
implementation), then the generated builder is run on the same bytes and its result compared
with the reference; only an identical result admits the builder, otherwise the shape stays on
the expat path. At run time any exception inside a builder (an entity in a number, an unknown
RefId, an unhashable key…) sends that object to the expat path too (in a document, the whole
document: a builder that failed part way may have registered RefIds), so the paths cannot
disagree on values and every error is reported by the expat path, with its position.

Once a shape is admitted, its *matcher* takes over: one ``fullmatch`` of a regex made from the
sample's bytes checks the skeleton, the type names and the XML-safety of the texts and captures
only the texts (and document RefIds) the builder uses, all in one C call. Shapes with as many
``<`` share one *bucket* regex (common part once, an alternative per shape). Matchers are
admitted like builders, only after reproducing the expat value; what does not match takes the
split path. The "matchers" section below says why and how.

Input that could make the textual split differ from an XML parser's view (comments, CDATA,
processing instructions, DTDs, control characters, ``\\r``, ``]]>``, invalid UTF-8, U+FFFE and
U+FFFF) never takes these paths.

Where the time goes (20 000 services as PSRP messages, ``bench/bench_clixml.py``): decoding
and building ~0.9x a bare ``lxml.etree.fromstring`` of the same bytes; CPython's cyclic
collector walking the ~160 000 containers being built adds ~40 % on top (an lxml tree is C
memory it never sees).

Why it stays (issue "one composition root": keep it only if switching it off raises the client's
CPU per object by 15 % or more, end to end against real PowerShell): with ``bench/bench_pwsh.py
--compiled both`` against PowerShell 7.6.9, the client's CPU per object is 2.4–2.6× higher
without this path (20 000 objects: 134 vs 55 µs; 100 000: 182 vs 73 µs). One session is
server-bound, so this is what decides how many guests one notebook can drive at once.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from typing import Any

from hvmagic.clixml import decode as _decode
from hvmagic.clixml.values import (
    PSChar,
    PSCredential,
    PSDateTime,
    PSEnum,
    PSObject,
    PSTimeSpan,
)

# Texts are the variable parts. Fragments (one PSRP message): RefIds restart at 0 in every
# message, so they are part of the shape. Documents: RefIds grow through the file, so a second
# split (REFID, over the joined tags only) cuts them out of the key and hands them to the
# builder in order — cheaper than an alternation in the first split (~2x slower).
# Only texts followed by a closing tag are cut out (leaf contents and the whitespace before a
# container's end): the empty or whitespace gaps before opening tags stay in the key, which
# halves the number of parts (and the split's cost).
# Type-name texts are cut out too (keeping them in the key with a (?!T>) lookahead costs more
# than it saves); builders compare them with the sample's bytes and use a constant list when
# they match.
# A text is cut out only if it holds no ">": with "[^<]*" each ">" of a text full of them
# started a scan to the next "<" (quadratic: 80 KB took 13 s). PowerShell writes ">" as "&gt;";
# a text holding a raw one stays in the skeleton, its builder cannot reproduce expat's value
# and the shape is left to expat.
FRAGMENT_SPLIT = re.compile(rb">([^<>]*)</")
# The leading space keeps other attributes whose names end in "RefId" (xRefId="…") out; a RefId
# spelled any other way (single quotes, a tab before it, spaces around "=") is not cut out, and
# the compiler refuses such shapes (see _add_tag/compile_shape) so both views always agree.
# (A literal first byte keeps this a fast scan; a (?<=\s) lookbehind costs 6x.)
# No entity and no whitespace but spaces: an XML parser resolves those and turns tab, CR and
# LF into spaces in attribute values, so such a RefId is left to expat.
REFID = re.compile(rb' RefId="([^"<>&\t\n\r]*)"')
_REFID_TEXT = re.compile(REFID.pattern.decode("ascii"))
# Anything that makes a textual split unsafe sends the input to the expat path.
UNSAFE = re.compile(rb"[\x00-\x08\x0b-\x1f]|<[!?]|]]>")
# The same test without a regex scan (a character-class search costs ~10 µs on 2 KB): one C
# pass deleting control bytes, then substring searches whose last byte is rare in CLIXML.
_CONTROL_BYTES = bytes(range(0x20)).replace(b"\t", b"").replace(b"\n", b"")


def is_safe(body: bytes) -> bool:
    """True when a textual split sees exactly what an XML parser would (== not UNSAFE)."""
    # (a one-byte search is a memchr; a two-byte one walks the buffer, so guard with the rare
    # byte first)
    return (
        len(body.translate(None, _CONTROL_BYTES)) == len(body)
        and (b"!" not in body or b"<!" not in body)
        and (b"?" not in body or b"<?" not in body)
        and (b"]" not in body or b"]]>" not in body)
    )

_BOM = b"\xef\xbb\xbf"


def xml_chars_only(body: bytes) -> bool:
    """False when the UTF-8 ``body`` holds U+FFFE or U+FFFF: Python decodes them, XML forbids
    them (expat rejects the input), so only the expat path may decode such a body. Both start
    with the byte EF, which after a BOM is rare: one memchr (a two-byte search costs ~2 µs on
    2 KB)."""
    if body.find(b"\xef", 3 if body.startswith(_BOM) else 0) < 0:
        return True
    return b"\xef\xbf\xbe" not in body and b"\xef\xbf\xbf" not in body


_MAX_SHAPES = 4096
_MAX_TYPE_NAME_LISTS = 4096
#: bytes of one type-name list / one enum's texts worth caching (real ones are ~100 / ~30)
_MAX_CACHED_TYPE_NAMES = 4096
_MAX_CACHED_ENUM_TEXT = 256
#: A skeleton key longer than this is not compiled or cached: one object holding thousands of
#: list items (``Export-Clixml -InputObject (Get-Service)``) is one huge, never-repeating shape
#: whose generated builder would cost more than the reference decode, and hostile input must not
#: park megabytes per key in a process-wide cache. (A Get-Service object's key is ~2 KB.)
MAX_KEY_BYTES = 64 << 10
#: all keys of one cache together (4096 keys of 64 KiB would otherwise be 256 MiB), type-name
#: bytes and matcher patterns included
_MAX_KEYS_TOTAL = 32 << 20
#: type-name bytes one shape may embed (its builder compares them, its matcher's regex holds
#: them; a Get-Service object has ~1 KB): hostile megabyte type names stay on the expat path
_MAX_SHAPE_TYPE_NAME_BYTES = 8 << 10
#: a matcher's pattern is compiled to ~8x its size: only ordinary objects get one
_MAX_MATCHER_PATTERN_BYTES = 32 << 10


class Unsupported(Exception):
    """The shape uses something the code generator does not handle: expat path only."""


class Fallback(Exception):
    """Raised by a builder at run time: decode this object with the expat path."""


# --- run-time helpers used by generated builders ----------------------------------------------

_TYPE_NAMES: dict[tuple[bytes, ...], list[str]] = {}
_BOOLS = {b"true": True, b"false": False}
_XML_ENTITY = re.compile(r"&(#[0-9]+|#x[0-9A-Fa-f]+|amp|lt|gt|quot|apos);|&")
_NAMED = {"amp": "&", "lt": "<", "gt": ">", "quot": '"', "apos": "'"}


def _entity(match: re.Match[str]) -> str:
    name = match.group(1)
    if name is None:
        raise Fallback("bare & in text")
    if name[0] == "#":
        code = int(name[2:], 16) if name[1] == "x" else int(name[1:])
        if code in (0x9, 0xA, 0xD) or 0x20 <= code <= 0xD7FF or 0xE000 <= code <= 0xFFFD or (
            0x10000 <= code <= 0x10FFFF
        ):
            return chr(code)
        raise Fallback("character reference to a character XML forbids")
    return _NAMED[name]


def xml_text(raw: bytes) -> str:
    """Element text as an XML parser would report it (entities resolved)."""
    return resolve_entities(raw.decode("utf-8"))


def resolve_entities(text: str) -> str:
    if "&" in text:
        # The common case, named entities only, by C-level replaces; "&amp;" last so that
        # "&amp;lt;" stays "&lt;". Any other "&" (char refs, errors) takes the strict regex.
        named = (text.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", '"')
                 .replace("&apos;", "'"))
        if named.count("&") == named.count("&amp;"):
            return named.replace("&amp;", "&")
        text = _XML_ENTITY.sub(_entity, text)
    return text


def ps_text(raw: bytes) -> str:
    """An ``<S>``-like text: XML entities, then PowerShell's ``_xHHHH_`` escapes."""
    text = xml_text(raw)
    return _decode.unescape(text) if "_x" in text else text


def ps_texts(raws: tuple[bytes, ...]) -> list[str]:
    """:func:`ps_text` of every text, for a matcher: one C-level decode of all of them and one
    escape check over all of them (most messages have no escape in any string)."""
    texts = list(map(bytes.decode, raws))
    joined = "".join(texts)
    if "&" not in joined and "_x" not in joined:
        return texts
    return [text if "&" not in text and "_x" not in text else _ps_str(text) for text in texts]


def _ps_str(text: str) -> str:
    text = resolve_entities(text)
    return _decode.unescape(text) if "_x" in text else text


def type_names(key: tuple[bytes, ...]) -> list[str]:
    names = _TYPE_NAMES.get(key)
    if names is None:
        names = [ps_text(raw) for raw in key]
        # bounded by size, not only count: hostile megabyte type names must not stay cached
        if len(_TYPE_NAMES) < _MAX_TYPE_NAME_LISTS and sum(map(len, key)) <= _MAX_CACHED_TYPE_NAMES:
            _TYPE_NAMES[key] = names
    return names


_new = object.__new__


def make_object(
    names: list[str], to_string: str | None, props: dict[str, Any], adapted: tuple[str, ...]
) -> PSObject:
    cls: type[PSObject] = PSObject
    if names:
        first = names[0]
        rich = _decode._RICH.get(first)
        if rich is not None:
            cls = rich
        elif first in _decode._CREDENTIAL_TYPES:
            raise Fallback("credential")
    obj = _new(cls)
    obj._props = props
    obj.type_names = names
    obj.to_string = to_string
    obj.value = None
    obj.adapted = adapted
    return obj


def finish_with_value(
    names: list[str] | None,
    to_string: str | None,
    adapted: dict[str, Any] | None,
    extended: dict[str, Any] | None,
    value: Any,
) -> Any:
    """Objects holding a primitive or a collection: exactly the expat path's rules."""
    return _decode._finish_obj([None, 0, names, to_string, adapted, extended, value, None])


_ENUMS: dict[tuple[int, bytes, bytes], PSEnum] = {}
_MAX_ENUMS = 1 << 16


def enum_or_value(names: list[str], to_string_raw: bytes, number_raw: bytes) -> Any:
    """``<Obj><TN/><ToString/><I32/></Obj>``: an enum (shared instance per type/name/number) or,
    without ``System.Enum`` among the type names, the plain integer (expat path rules)."""
    key = (id(names), to_string_raw, number_raw)
    cached = _ENUMS.get(key)
    if cached is not None:
        return cached
    value = finish_with_value(names, ps_text(to_string_raw), None, None, int(number_raw))
    # the cached enum references ``names``, so id(names) cannot be reused while it is cached
    if (isinstance(value, PSEnum) and len(_ENUMS) < _MAX_ENUMS
            and len(to_string_raw) + len(number_raw) <= _MAX_CACHED_ENUM_TEXT):
        _ENUMS[key] = value
    return value


def enum_at(
    site: dict[bytes, tuple[bytes, Any]], names: list[str], to_string_raw: bytes,
    number_raw: bytes,
) -> Any:
    """:func:`enum_or_value` for one place in a matcher's shape (constant type names), keeping
    the enum by its number with the text it was decoded from: a hit costs one short-bytes hash
    and one comparison instead of building and hashing a three-item key."""
    value = enum_or_value(names, to_string_raw, number_raw)
    if (isinstance(value, PSEnum) and len(site) < _MAX_ENUMS_PER_SITE
            and len(to_string_raw) + len(number_raw) <= _MAX_CACHED_ENUM_TEXT):
        site[number_raw] = (to_string_raw, value)
    return value


_MAX_ENUMS_PER_SITE = 64


_GLOBALS: dict[str, Any] = {
    "_Fallback": Fallback,
    "_enum": enum_or_value,
    "_enum_at": enum_at,
    "_ps_texts": ps_texts,
    "_BOOLS": _BOOLS,
    "_xt": xml_text,
    "_ps": ps_text,
    "_tn": type_names,
    "_obj": make_object,
    "_fin": finish_with_value,
    "_cim": _decode.is_cim_instance,
    "_LEAF": _decode._LEAF,
}


# --- the code generator ---------------------------------------------------------------------

_ATTR = re.compile(r"""([A-Za-z_:][\w:.-]*)\s*=\s*(?:"([^"]*)"|'([^']*)')""")
_INT_TAGS = frozenset(("I32", "U32", "I64", "U64", "I16", "U16", "By", "SB"))
#: How a builder turns one cut-out text ``p[i]`` into a value, by kind ("leaf:DT" → "leaf").
#: The column builder applies the very same conversions to whole columns (_COLUMN).
_PER_OBJECT = {
    "str": "({raw}.decode() if b'&' not in {raw} and b'_x' not in {raw} else _ps({raw}))",
    "bool": "_BOOLS[{raw}]",
    "int": "int({raw})",
    "float": "float({raw})",
    "raw": "{raw}",
    "leaf": "_LEAF[{tag!r}](_xt({raw}))",
}
_LIST_TAGS = frozenset(("LST", "IE", "QUE", "STK"))


class _Node:
    __slots__ = ("attrs", "children", "const_text", "name", "refvar", "text")

    def __init__(self, name: str, attrs: dict[str, str], refvar: int | None) -> None:
        self.name = name
        self.attrs = attrs
        self.refvar = refvar  # index into r (the RefIds in order), documents only
        self.text: int | None = None  # index into parts of the element's text
        self.const_text: str | None = None  # raw text kept in the skeleton (type names)
        self.children: list[_Node] = []


_SKELETON_TOKEN = re.compile(r"<([^>]*)>|\x00(\d+)\x00|[^<\x00]+")


def _parse_skeleton(parts: list[Any], variable_refids: bool) -> tuple[_Node, int]:
    """Rebuild the element tree of one object from its split parts (compile time only).

    Returns the root and the number of RefId attributes (the builder's ``r`` entries when
    ``variable_refids``)."""
    # the skeleton with a \x00<index>\x00 placeholder where each cut-out text was (the split
    # consumed the ">" before and the "</" after it)
    pieces = [parts[0].decode("utf-8")]
    for index in range(1, len(parts), 2):
        pieces.append(f">\x00{index}\x00</")
        pieces.append(parts[index + 1].decode("utf-8"))
    skeleton = "".join(pieces)
    root = _Node("#root", {}, None)
    stack = [root]
    refids = [0]
    opened: _Node | None = None  # the element whose text a placeholder right after it is
    for match in _SKELETON_TOKEN.finditer(skeleton):
        body, placeholder = match.group(1), match.group(2)
        if body is not None:
            opened = _add_tag(stack, body, refids, variable_refids)
        elif placeholder is not None:
            if opened is not None:
                opened.text = int(placeholder)
            opened = None  # a placeholder after a closing tag is whitespace the builder skips
        elif opened is not None and opened.name == "T":
            opened.const_text = match.group()  # a type name: part of the key, a constant
        elif match.group().strip():
            opened = None  # text before a child element: ignored, as the expat path does
    if len(stack) != 1 or len(root.children) != 1:
        raise Unsupported("unbalanced skeleton")
    return root.children[0], refids[0]


def _add_tag(
    stack: list[_Node], body: str, refids: list[int], variable_refids: bool
) -> _Node | None:
    """Apply one tag to the element stack; returns the element it opened (None otherwise)."""
    body = body.strip()
    if body.startswith("/"):
        name = body[1:].strip()
        node = stack.pop()
        if node.name != name or len(stack) == 0:
            raise Unsupported("mismatched close tag")
        return None
    closed = body.endswith("/")
    if closed:
        body = body[:-1]
    pieces = body.split(None, 1)
    if not pieces:
        raise Unsupported("empty tag")
    name = pieces[0]
    attrs: dict[str, str] = {}
    if len(pieces) > 1:
        rest = pieces[1]
        for key, double, single in _ATTR.findall(rest):
            value = double or single
            if key in attrs or "&" in value or "<" in value:
                raise Unsupported("attribute needing an XML parser")
            attrs[key] = value
        if _ATTR.sub("", rest).strip():
            raise Unsupported("attribute syntax")
    refvar = None
    if variable_refids:
        # the run-time split must cut out exactly this tag's RefId attribute, nothing else
        found = _REFID_TEXT.findall(body)
        if found != ([attrs["RefId"]] if "RefId" in attrs else []):
            raise Unsupported("RefId spelled in a way the run-time split does not cut out")
    if "RefId" in attrs:
        if variable_refids:
            refvar = refids[0]
            del attrs["RefId"]
        refids[0] += 1
    node = _Node(name, attrs, refvar)
    stack[-1].children.append(node)
    if closed:
        return None
    stack.append(node)
    return node


class _Generator:
    def __init__(self, sample: list[Any], local_refs: bool) -> None:
        #: fragments are self-contained: RefIds resolve at compile time to local variables
        self.local_refs = local_refs
        self.local_objects: dict[str, str] = {}
        self.local_type_names: dict[str, str] = {}
        #: the parts of the object the shape is compiled from: type names seen there become
        #: constants guarded by a bytes comparison (a hit costs no hashing or allocation)
        self.sample = sample
        self.constants: dict[str, Any] = {}
        self.used_texts: set[int] = set()
        self.lines: list[str] = []
        self.counter = 0
        self.objects = 0
        self.depth = 0
        self.type_name_bytes = 0

    def var(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}{self.counter}"

    def refid(self, node: _Node) -> str | None:
        if node.refvar is not None:
            return f"r[{node.refvar}].decode('ascii')"
        if "RefId" in node.attrs:
            return repr(node.attrs["RefId"])
        return None

    def convert(self, kind: str, index: int) -> str:
        """The expression for text ``index`` converted as ``kind`` (see :data:`_PER_OBJECT`)."""
        self.used_texts.add(index)
        family, _, tag = kind.partition(":")
        return _PER_OBJECT[family].format(raw=f"p[{index}]", tag=tag)

    def value(self, node: _Node, depth: int) -> str:
        self.depth = max(self.depth, depth)
        name = node.name
        if name in _decode._VALUE_LEAF:
            if node.children:
                raise Unsupported("leaf with children")
            index = node.text
            if index is None:
                return "''" if name == "S" else f"_LEAF[{name!r}]('')"
            if name == "S":
                return self.convert("str", index)
            if name == "B":
                return self.convert("bool", index)
            if name in _INT_TAGS:
                return self.convert("int", index)
            if name == "Db" or name == "Sg":
                return self.convert("float", index)
            return self.convert(f"leaf:{name}", index)
        if name == "Nil":
            return "None"
        if name == "Ref":
            refid = self.refid(node)
            if refid is None:
                raise Unsupported("Ref without RefId")
            if self.local_refs:
                local = self.local_objects.get(node.attrs["RefId"])
                if local is None:
                    raise Unsupported("Ref to an object not yet complete (cycle)")
                return local
            # looked up on its own line, here: in document order relative to the nested
            # objects' "refs[…] = o" lines (inline in the parent's literal it would run after
            # them and, with a duplicated RefId, see an object decoded after this <Ref>)
            var = self.var("x")
            self.lines.append(f"{var} = refs[{refid}]")
            return var
        if name == "Obj":
            return self.obj(node, depth)
        raise Unsupported(f"<{name}> as a value")

    def collection(self, node: _Node, depth: int) -> str:
        if node.name in _LIST_TAGS:
            items = []
            for child in node.children:
                if child.name in _decode._STRUCTURAL:
                    raise Unsupported("structural element in a list")
                items.append(self.value(child, depth + 1))
            return "[" + ", ".join(items) + "]"
        # DCT
        entries = []
        for entry in node.children:
            if entry.name != "En":
                raise Unsupported("DCT child")
            key = value = None
            for child in entry.children:
                n = child.attrs.get("N")
                if n == "Key" and key is None:
                    key = self.value(child, depth + 2)
                elif n == "Value" and value is None:
                    value = self.value(child, depth + 2)
                else:
                    raise Unsupported("En child")
            if key is None:
                raise Unsupported("En without Key")
            entries.append(f"{key}: {value or 'None'}")
        return "{" + ", ".join(entries) + "}"

    def bag(self, node: _Node, depth: int) -> tuple[str, list[str], list[str]]:
        """A ``<Props>``/``<MS>`` as a dict literal, its names and its ``name: value`` items."""
        items = []
        names = []
        for child in node.children:
            n = child.attrs.get("N")
            if n is None or child.name in _decode._STRUCTURAL:
                raise Unsupported("property without N")
            key = _decode.unescape(n)
            names.append(key)
            items.append(f"{key!r}: {self.value(child, depth + 1)}")
        return "{" + ", ".join(items) + "}", names, items

    def type_name_list(self, child: _Node) -> str:
        """A ``<TN>``'s names as an expression usable where objects are built: a constant when
        every name is in the key, else guarded by the sample's bytes (a hit costs no hashing)."""
        pieces = self.type_name_pieces(child)
        names_var = self.var("t")
        const = f"_C{names_var}"
        indexes = [index for _, index in pieces if index is not None]
        if not indexes:
            # all type names are in the key: resolved now, once per shape
            self.constants[const] = type_names(tuple(text for text, _ in pieces))
            self.lines.append(f"{names_var} = {const}")
            return names_var
        key = "(" + "".join(
            (f"p[{index}]" if index is not None else repr(text)) + ", " for text, index in pieces
        ) + ")"
        if len(indexes) == len(pieces):
            self.constants[const] = type_names(tuple(self.sample[i] for i in indexes))
            guard = " and ".join(f"p[{i}] == {self.sample[i]!r}" for i in indexes)
            self.lines.append(f"{names_var} = {const} if {guard} else _tn({key})")
        else:
            self.lines.append(f"{names_var} = _tn({key})")
        return names_var

    def type_name_pieces(self, child: _Node) -> list[tuple[bytes, int | None]]:
        """(text in the key, None) or (b"", index of a cut-out text) per ``<T>``."""
        pieces: list[tuple[bytes, int | None]] = []
        for t in child.children:
            if t.name != "T" or t.children:
                raise Unsupported("TN child")
            if t.const_text is not None:
                if t.text is not None:
                    raise Unsupported("T text both constant and cut out")
                pieces.append((t.const_text.encode("utf-8"), None))
            else:
                if t.text is not None:
                    self.used_texts.add(t.text)
                    self.type_name_bytes += len(self.sample[t.text])
                pieces.append((b"", t.text))
        self.type_name_bytes += sum(len(text) for text, _ in pieces)
        if self.type_name_bytes > _MAX_SHAPE_TYPE_NAME_BYTES:
            raise Unsupported("type names too long to embed")
        return pieces

    def obj(self, node: _Node, depth: int) -> str:
        self.objects += 1
        if set(node.attrs) - {"N", "RefId"}:
            raise Unsupported("Obj attributes")
        names_expr = "[]"
        has_to_string = False
        to_string_index: int | None = None
        props: tuple[str, list[str], list[str]] | None = None
        ext: tuple[str, list[str], list[str]] | None = None
        value: str | None = None
        #: an integer leaf holding the object's value: an enum's number if nothing else is there
        number: _Node | None = None
        collection = False
        for child in node.children:
            tag = child.name
            if tag == "TN":
                names_var = self.type_name_list(child)
                refid = self.refid(child)
                if refid is not None:
                    if self.local_refs:
                        self.local_type_names[child.attrs["RefId"]] = names_var
                    else:
                        self.lines.append(f"tns[{refid}] = {names_var}")
                names_expr = names_var
            elif tag == "TNRef":
                refid = self.refid(child)
                if refid is None:
                    raise Unsupported("TNRef without RefId")
                if self.local_refs:
                    local = self.local_type_names.get(child.attrs["RefId"])
                    if local is None:
                        raise Unsupported("TNRef to an unknown TN")
                    names_expr = local
                else:
                    names_var = self.var("t")
                    self.lines.append(f"{names_var} = tns[{refid}]")
                    names_expr = names_var
            elif tag == "ToString":
                has_to_string = True
                to_string_index = child.text
            elif tag == "Props":
                props = self.bag(child, depth + 1)
            elif tag == "MS":
                ext = self.bag(child, depth + 1)
            elif tag in _LIST_TAGS or tag == "DCT":
                if value is not None or number is not None:
                    raise Unsupported("two values")
                value = self.collection(child, depth + 1)
                collection = True
            elif tag in _decode._STRUCTURAL or tag == "PR":
                raise Unsupported(f"<{tag}> in Obj")
            else:
                if value is not None or number is not None:
                    raise Unsupported("two values")
                if tag in _INT_TAGS and child.text is not None and not child.children:
                    number = child  # decided below: an enum's number or a plain integer
                else:
                    value = self.value(child, depth + 1)
        var = self.var("o")
        if number is not None and props is None and ext is None and to_string_index is not None:
            self.depth = max(self.depth, depth + 1)  # the leaf's level, as value() counts it
            assert number.text is not None
            self.enum(var, names_expr, self.convert("raw", to_string_index),
                      self.convert("raw", number.text))
            return self.register(node, var)
        if number is not None:
            value = self.value(number, depth + 1)
        to_string = "None"
        if has_to_string:
            to_string = ("''" if to_string_index is None
                         else self.convert("str", to_string_index))
        if value is None:
            if props and ext:
                # PowerShell's order (decode._merged): <MS>, then the <Props> it does not
                # shadow; a CIM instance's <Props> first
                shadowed = set(ext[1])
                rest = [item for name, item in zip(props[1], props[2], strict=True)
                        if name not in shadowed]
                members_first = "{" + ", ".join(ext[2] + rest) + "}"
                props_first = props[0][:-1] + ", " + ext[0][1:] if ext[1] else props[0]
                literal = f"({props_first} if _cim({names_expr}) else {members_first})"
                adapted = tuple(dict.fromkeys(props[1]))
            elif props:
                literal, adapted = props[0], tuple(dict.fromkeys(props[1]))
            elif ext:
                literal, adapted = ext[0], ()
            else:
                literal, adapted = "{}", ()
            if props and not props[1] and ext:
                literal = ext[0]
            self.lines.append(f"{var} = _obj({names_expr}, {to_string}, {literal}, {adapted!r})")
        elif collection and props is None and ext is None:
            self.lines.append(f"{var} = {value}")
        else:
            adapted_literal = props[0] if props else "None"
            ext_literal = ext[0] if ext else "None"
            self.lines.append(
                f"{var} = _fin({names_expr}, {to_string}, {adapted_literal}, {ext_literal}, "
                f"{value})"
            )
        return self.register(node, var)

    def enum(self, var: str, names_expr: str, to_string_raw: str, number_raw: str) -> None:
        self.lines.append(f"{var} = _enum({names_expr}, {to_string_raw}, {number_raw})")

    def register(self, node: _Node, var: str) -> str:
        """Make the object ``var`` reachable by its RefId (for later ``<Ref>``s)."""
        refid = self.refid(node)
        if refid is not None:
            if self.local_refs:
                self.local_objects[node.attrs["RefId"]] = var
            else:
                self.lines.append(f"refs[{refid}] = {var}")
        return var


class Shape:
    __slots__ = ("build", "depth", "objects", "weight")

    def __init__(self, build: Callable[..., Any], depth: int, objects: int, weight: int) -> None:
        self.build = build
        self.depth = depth
        self.objects = objects
        #: bytes it holds besides its key (embedded type names), counted in the cache budget
        self.weight = weight


def compile_shape(parts: list[Any], variable_refids: bool) -> Shape:
    """Generate the builder for the object ``parts`` came from (raises Unsupported)."""
    root, refid_count = _parse_skeleton(parts, variable_refids)
    if variable_refids and len(REFID.findall(b"\x00".join(parts[0::2]))) != refid_count:
        raise Unsupported("RefId-like text outside the tags' RefId attributes")
    gen = _Generator(parts, local_refs=not variable_refids)
    result = gen.value(root, 1)
    source = "def build(p, refs, tns, r):\n"
    if variable_refids:
        # (the key fixes the count; checked anyway, it is one comparison)
        source += f"    if len(r) != {refid_count}:\n        raise _Fallback\n"
    source += "".join(f"    {line}\n" for line in gen.lines)
    source += f"    return {result}\n"
    # Texts the builder ignores (whitespace before closing tags) must be ASCII without entity
    # references: an XML parser would resolve or reject those, so such an object takes the
    # expat path (this also makes a whole-body UTF-8 check unnecessary).
    gaps = sorted(set(range(1, len(parts), 2)) - gen.used_texts)
    if gaps:
        gen.constants["_GAPS"] = operator.itemgetter(*gaps, *gaps[:1])  # always a tuple
        source = source.replace(
            "def build(p, refs, tns, r):\n",
            "def build(p, refs, tns, r):\n    _g = b''.join(_GAPS(p))\n"
            "    if b'&' in _g or not _g.isascii():\n        raise _Fallback\n",
        )
    namespace: dict[str, Any] = dict(_GLOBALS)
    namespace.update(gen.constants)
    # the source is generated above from tag/property names, every one passed through repr()
    exec(compile(source, "<hvmagic.clixml shape>", "exec"), namespace)
    # (generated code costs a few times its source in code objects and constants)
    return Shape(namespace["build"], gen.depth + 2, gen.objects,
                 gen.type_name_bytes + 4 * len(source))


# --- matchers: one regex per shape (a fragment, or a top-level object of a document) ----------
#
# Why: splitting a ~2 KB message into ~150 parts, joining the skeleton into a key and checking
# the whole body for unsafe XML costs about as much as building its values. Once a shape is
# known, one ``fullmatch`` of a regex made from the sample's bytes does all three in one C call:
# the skeleton must be byte for byte the sample's (so it is as safe as the sample was, and the
# tags are the ones the builder was generated for), type names must equal the sample's (they
# are literals in the regex, constants in the builder), the whitespace the builder ignores must
# be whitespace, and each text the builder uses is captured, with no "<", ">" (so no "]]>"),
# control character or "\r" in it; in documents the RefId values are captured too. Whatever
# does not match takes the split path above, which gives the same values (the matcher's builder
# is verified against the expat decoder like any other builder). A body's count of "<" picks
# its bucket (see Bucket): a match there implies the skeleton of the shape it names.

#: a text a matcher captures: anything an XML parser reads back unchanged except for entities,
#: which the builders resolve as on the split path
_CAPTURED_TEXT = rb"([^<>\x00-\x08\x0b-\x1f]*)"
#: texts a builder ignores (before closing tags): only whitespace, nothing an XML parser resolves
_IGNORED_TEXT = rb"[ \t\n]*"
#: shapes combined in one bucket (shapes with as many elements: lists trading lengths)
_MAX_MATCHERS_PER_COUNT = 8


class _MatchGenerator(_Generator):
    """A builder over what a matcher captured: ``build(g, refs, tns)``, ``g`` being
    ``match.groups()`` (texts, and in documents the RefId values, in document order)."""

    def __init__(self, sample: list[Any], variable_refids: bool) -> None:
        super().__init__(sample, local_refs=not variable_refids)
        #: captured texts (by parts index) and RefIds (by number): placeholders until the
        #: regex fixes the group numbers
        self.captured: set[int] = set()
        self.captured_refids: set[int] = set()
        #: texts converted as strings: all decoded at once (``s``, see :func:`ps_texts`)
        self.strings: list[int] = []
        #: type-name texts: part of the regex, constants in the builder
        self.literal_texts: set[int] = set()

    def convert(self, kind: str, index: int) -> str:
        self.used_texts.add(index)
        self.captured.add(index)
        if kind == "str":
            self.strings.append(index)
            return f"s[{len(self.strings) - 1}]"
        family, _, tag = kind.partition(":")
        return _PER_OBJECT[family].format(raw=f"g[@t{index}@]", tag=tag)

    def refid(self, node: _Node) -> str | None:
        if node.refvar is None:
            return super().refid(node)
        self.captured_refids.add(node.refvar)
        return f"g[@r{node.refvar}@].decode('ascii')"

    def enum(self, var: str, names_expr: str, to_string_raw: str, number_raw: str) -> None:
        if names_expr not in self.constants:
            # names from a <TNRef> in a document differ from object to object: a per-site
            # cache keyed by the number alone would hand out another type's enum
            super().enum(var, names_expr, to_string_raw, number_raw)
            return
        site = f"_E{var}"
        self.constants[site] = {}
        self.lines.append(f"e = {site}.get({number_raw})")
        self.lines.append(
            f"{var} = e[1] if e is not None and e[0] == {to_string_raw} "
            f"else _enum_at({site}, {names_expr}, {to_string_raw}, {number_raw})"
        )

    def type_name_list(self, child: _Node) -> str:
        texts = []
        for text, index in self.type_name_pieces(child):
            if index is not None:
                self.literal_texts.add(index)
                text = self.sample[index]
            texts.append(text)
        const = f"_C{self.var('t')}"
        self.constants[const] = type_names(tuple(texts))
        return const


#: A compiled regex takes several times its pattern's length (literals become opcodes).
_COMPILED_REGEX_FACTOR = 8


def _compile_uncached(pattern: bytes) -> re.Pattern[bytes]:
    """``re.compile`` without ``re``'s module cache: these patterns are large, single-use keys,
    and 512 of them would stay alive there (and push out other code's regexes)."""
    compiler: Any = getattr(re, "_compiler", None)  # the module re.compile uses, 3.11+
    if compiler is None:
        import sre_compile as compiler  # Python 3.10
    return compiler.compile(pattern, 0)


class Matcher:
    """One shape's regex and builder, standalone (how it was verified) and as parts a
    :class:`Bucket` combines with the other shapes of as many elements."""

    __slots__ = ("build", "constants", "depth", "match", "objects", "sample", "sample_groups",
                 "source", "strings", "tokens", "weight")

    def __init__(self, tokens: list[tuple[str | None, bytes]], source: str,
                 constants: dict[str, Any], strings: list[str], depth: int, objects: int,
                 sample: bytes) -> None:
        #: the regex as (capture slot or None, piece): literal pieces and one capture each
        self.tokens = tokens
        #: the builder's source, ``g[@slot@]`` where a capture is read (see :func:`_finish`)
        self.source = source
        self.constants = constants
        self.strings = strings  # slots of the texts decoded as strings, in builder order
        self.depth = depth
        self.objects = objects
        self.sample = sample
        slots = [slot for slot, _ in tokens if slot is not None]
        rank = {slot: position for position, slot in enumerate(slots)}
        regex = b"".join(piece for _, piece in tokens)
        # standalone, until verified and combined into a bucket (then released)
        self.match: Callable[[bytes], re.Match[bytes] | None] | None = (
            _compile_uncached(regex).fullmatch)
        #: ``build(groups, refs, tns)`` (fragments: refs and tns are unused)
        self.build: Callable[..., Any] | None = _finish(self, rank)
        #: what the standalone regex captured from the sample: a bucket re-checks it
        self.sample_groups: tuple[Any, ...] | None = None
        #: bytes it keeps once in a bucket (tokens, sample, builder), counted in the budget
        self.weight = 2 * len(regex) + len(sample) + 4 * len(source)


def _finish(matcher: Matcher, rank: dict[str, int]) -> Callable[..., Any]:
    """The builder with each capture read at its group's place (``rank``: slot → index)."""
    source = matcher.source
    constants = dict(matcher.constants)
    if matcher.strings:
        ranks = [rank[slot] for slot in matcher.strings]
        if len(ranks) == 1:
            strings = f"    s = _ps_texts((g[{ranks[0]}],))\n"
        else:
            constants["_STRINGS"] = operator.itemgetter(*ranks)
            strings = "    s = _ps_texts(_STRINGS(g))\n"
        source = source.replace("    @STRINGS@\n", strings)
    source = re.sub(r"g\[@([tr]\d+)@\]", lambda m: f"g[{rank[m.group(1)]}]", source)
    namespace: dict[str, Any] = dict(_GLOBALS)
    namespace.update(constants)
    # generated from tag/property names, every one passed through repr(), as compile_shape
    exec(compile(source, "<hvmagic.clixml matcher>", "exec"), namespace)
    build: Callable[..., Any] = namespace["build"]
    return build


class Bucket:
    """The matchers of the shapes with as many elements, as ONE regex: the tokens all of them
    start with are matched once, then an alternative per shape, each ending in an empty marker
    group whose number (``lastindex``) names the shape. Shapes of one type that differ in a
    list's length diverge right after the common part, so a wrong shape costs a few bytes of
    matching instead of a partial match each (~6 % of the time for 12 shapes in 8 buckets)."""

    __slots__ = ("members", "state", "weight")

    def __init__(self) -> None:
        self.members: list[Matcher] = []
        #: the compiled combined regex's estimated size, counted in the cache budget
        self.weight = 0
        #: (the combined regex's fullmatch, marker group number → (builder, depth, objects)),
        #: replaced as one value so a decode in another thread never pairs a new regex with
        #: an old table
        self.state: tuple[Callable[[bytes], re.Match[bytes] | None],
                          dict[int, tuple[Callable[..., Any], int, int]]] = (_NEVER.fullmatch, {})

    def add(self, matcher: Matcher) -> bool:
        """Combine ``matcher`` with the others; False (nothing changed) unless every member's
        sample still gives exactly its own captures through the combined regex."""
        members = [*self.members, matcher]
        token_lists = [m.tokens for m in members]
        common = 0
        while all(len(tokens) > common for tokens in token_lists) and all(
            tokens[common] == token_lists[0][common] for tokens in token_lists
        ):
            common += 1
        pattern = [piece for _, piece in token_lists[0][:common]]
        prefix = {slot: n for n, slot in enumerate(
            slot for slot, _ in token_lists[0][:common] if slot is not None)}
        groups = len(prefix)
        alternatives = []
        ranks = []
        for tokens in token_lists:
            rank = dict(prefix)
            for slot, _ in tokens[common:]:
                if slot is not None:
                    rank[slot] = groups
                    groups += 1
            groups += 1  # the marker
            ranks.append((rank, groups))
            alternatives.append(b"".join(piece for _, piece in tokens[common:]) + b"()")
        pattern += [b"(?:", b"|".join(alternatives), b")"]
        regex = b"".join(pattern)
        match = _compile_uncached(regex).fullmatch
        dispatch = {}
        for member, (rank, marker) in zip(members, ranks, strict=True):
            found = match(member.sample)
            if found is None or found.lastindex != marker or member.sample_groups is None:
                return False
            slots = [slot for slot, _ in member.tokens if slot is not None]
            if tuple(found.group(rank[slot] + 1) for slot in slots) != member.sample_groups:
                return False
            dispatch[marker] = (_finish(member, rank), member.depth, member.objects)
        self.state = (match, dispatch)
        self.members = members
        self.weight = _COMPILED_REGEX_FACTOR * len(regex)
        matcher.match = matcher.build = None  # the bucket's regex and builder serve it now
        return True


_NEVER = re.compile(rb"(?!)")


#: a RefId value a document matcher captures (the split path's REFID allows the same)
_CAPTURED_REFID = rb'([^"<>&\t\n\r]*)'


def compile_matcher(parts: list[Any], variable_refids: bool, sample: bytes) -> Matcher:
    """The regex and builder for the shape ``parts`` (split from ``sample``) came from (raises
    Unsupported): a fragment's, or with ``variable_refids`` one top-level object of a document."""
    root, refid_count = _parse_skeleton(parts, variable_refids)
    if variable_refids and len(REFID.findall(b"\x00".join(parts[0::2]))) != refid_count:
        raise Unsupported("RefId-like text outside the tags' RefId attributes")
    gen = _MatchGenerator(parts, variable_refids)
    result = gen.value(root, 1)
    tokens: list[tuple[str | None, bytes]] = []
    refids = iter(range(refid_count))

    def literal(piece: bytes) -> None:
        if tokens and tokens[-1][0] is None:
            tokens[-1] = (None, tokens[-1][1] + piece)
        else:
            tokens.append((None, piece))

    def skeleton(piece: bytes) -> None:
        if not variable_refids:
            literal(re.escape(piece))
            return
        pieces = REFID.split(piece)  # literal, RefId value, literal, …
        literal(re.escape(pieces[0]))
        for position in range(1, len(pieces), 2):
            number = next(refids)
            literal(b' RefId="')
            if number in gen.captured_refids:
                tokens.append((f"r{number}", _CAPTURED_REFID))
            else:
                literal(re.escape(pieces[position]))
            literal(b'"' + re.escape(pieces[position + 1]))

    skeleton(parts[0])
    for index in range(1, len(parts), 2):
        literal(b">")
        if index in gen.literal_texts:
            literal(re.escape(parts[index]))
        elif index in gen.captured:
            tokens.append((f"t{index}", _CAPTURED_TEXT))
        else:
            literal(_IGNORED_TEXT)
        literal(b"</")
        skeleton(parts[index + 1])
    if sum(len(piece) for _, piece in tokens) > _MAX_MATCHER_PATTERN_BYTES:
        raise Unsupported("too large for a matcher")
    source = "def build(g, refs, tns):\n"
    if gen.strings:
        source += "    @STRINGS@\n"
    source += "".join(f"    {line}\n" for line in gen.lines)
    source += f"    return {result}\n"
    return Matcher(tokens, source, gen.constants, [f"t{index}" for index in gen.strings],
                   gen.depth + 2, gen.objects, sample)


# --- verification: the generated builder must reproduce the expat result exactly ---------------

def same(a: Any, b: Any, seen: set[tuple[int, int]] | None = None) -> bool:
    """Strict structural equality (types, type names, ToString, adapted names, members, tick
    remainders); cycles compare equal when they close at the same places."""
    if type(a) is not type(b):
        return False
    if seen is None:
        seen = set()
    pair = (id(a), id(b))
    if pair in seen:
        return True
    if isinstance(a, (PSObject, list, dict)):
        seen.add(pair)
    if isinstance(a, PSObject):
        return (
            a.type_names == b.type_names
            and a.to_string == b.to_string
            and a.adapted == b.adapted
            and same(a.value, b.value, seen)
            and list(a._props) == list(b._props)
            and all(same(a._props[k], b._props[k], seen) for k in a._props)
        )
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y, seen) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k], seen) for k in a)
    if isinstance(a, PSEnum):
        return int(a) == int(b) and a.name == b.name and a.type_names == b.type_names and (
            getattr(a, "properties", None) == getattr(b, "properties", None))
    if isinstance(a, float):
        return repr(a) == repr(b)
    if isinstance(a, (PSDateTime, PSTimeSpan)):
        return (a == b and a.tick_remainder == b.tick_remainder
                and getattr(a, "utcoffset", lambda: None)() == getattr(b, "utcoffset",
                                                                       lambda: None)()
                and a.__dict__.keys() == b.__dict__.keys())
    if isinstance(a, PSCredential):
        return a.username == b.username and a.password == b.password
    if isinstance(a, PSChar) or hasattr(a, "__dict__"):
        return bool(a == b) and getattr(a, "__dict__", None) == getattr(b, "__dict__", None)
    return bool(a == b)


class ShapeCache:
    """Builders by skeleton; ``None`` marks a skeleton that stays on the expat path."""

    __slots__ = ("hits", "key_bytes", "learned", "matchers", "shapes", "variable_refids")

    def __init__(self, variable_refids: bool) -> None:
        self.variable_refids = variable_refids
        self.shapes: dict[bytes, Shape | None] = {}
        #: matchers of the admitted shapes by the object's count of "<"
        self.matchers: dict[int, Bucket] = {}
        self.hits = 0
        self.learned = 0
        #: what the cache holds, estimated: keys, embedded type names, generated code, regexes
        self.key_bytes = 0  # (bounded by _MAX_KEYS_TOTAL)

    def may_learn(self) -> bool:
        """Compiling a shape costs ~0.6 ms, a hit saves ~20 µs: keep learning only while shapes
        pay off (output whose objects are all different shapes — lists of varying length in
        every object — then simply stays on the expat path)."""
        return self.learned < 64 or self.hits >= 32 * self.learned

    def learn(
        self,
        key: bytes,
        parts: list[Any],
        refids: list[bytes] | None,
        refs: dict[str, Any],
        tns: dict[str, list[str]],
        reference: Callable[[], Any],
        body: bytes | None = None,
    ) -> Any:
        """Decode one object the reference way and admit a builder for its shape if (and only
        if) the builder reproduces that value; returns the reference value. ``body`` is the
        object's bytes (a fragment, or one top-level object of a document): the shape's
        matcher is admitted the same way."""
        admit = (len(self.shapes) < _MAX_SHAPES and len(key) <= MAX_KEY_BYTES
                 and self.key_bytes + len(key) <= _MAX_KEYS_TOTAL)
        if not admit:
            return reference()  # neither compiled nor remembered: nothing to learn from it
        self.learned += 1
        # Candidates run before the reference decode registers this object's RefIds, so a
        # Ref a builder cannot resolve on its own fails here as it would at run time.
        shape: Shape | None = None
        candidate: Any = _NOTHING
        try:
            shape = compile_shape(parts, self.variable_refids)
            if self.variable_refids:
                candidate = shape.build(parts, _Overlay(refs), _Overlay(tns), refids)
            else:
                candidate = shape.build(parts, None, None, None)
        except Exception:  # any failure just means: this shape is decoded by expat
            shape = None
        matcher: Matcher | None = None
        matched: Any = _NOTHING
        bucket = self.matchers.get(body.count(b"<")) if body is not None else None
        if shape is not None and body is not None and (
            bucket is None or len(bucket.members) < _MAX_MATCHERS_PER_COUNT
        ):
            try:  # (the split path's builder alone serves a shape without a matcher)
                matcher = compile_matcher(parts, self.variable_refids, body)
                found = matcher.match(body)  # type: ignore[misc]
                if found is not None:
                    matcher.sample_groups = found.groups()
                    matched = matcher.build(  # type: ignore[misc]
                        matcher.sample_groups, _Overlay(refs), _Overlay(tns))
            except Exception:
                matcher = None
        value = reference()
        if shape is not None and not _reproduces(candidate, value):
            shape = None
        self.shapes[key] = shape
        self.key_bytes += len(key) + (shape.weight if shape is not None else 0)
        if (shape is not None and matcher is not None and _reproduces(matched, value)
                and self.key_bytes + matcher.weight
                + _COMPILED_REGEX_FACTOR * len(matcher.sample) <= _MAX_KEYS_TOTAL):
            if bucket is None:
                bucket = self.matchers[body.count(b"<")] = Bucket()  # type: ignore[union-attr]
            before = bucket.weight
            if bucket.add(matcher):
                self.key_bytes += matcher.weight + bucket.weight - before
        return value


def _reproduces(candidate: Any, reference: Any) -> bool:
    try:
        return candidate is not _NOTHING and same(candidate, reference)
    except Exception:  # a comparison that raises (Decimal sNaN) admits nothing
        return False


_NOTHING: Any = object()


class _Overlay(dict[str, Any]):
    """Writes stay here, reads fall through to the real context (verification only)."""

    def __init__(self, base: dict[str, Any]) -> None:
        super().__init__()
        self._base = base

    def __missing__(self, key: str) -> Any:
        return self._base[key]


FRAGMENTS = ShapeCache(variable_refids=False)
DOCUMENTS = ShapeCache(variable_refids=True)
