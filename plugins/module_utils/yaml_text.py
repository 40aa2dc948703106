# Copyright: ikelab.ipsec developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A small, deterministic YAML emitter and the matching reader (standard library only).

``emit(doc)`` writes mappings, lists and scalars in block style: every string is double-quoted
(JSON escapes, plus YAML's ``\\U`` for characters beyond the BMP that are not printable), keys
are plain only when no YAML 1.1 reader could take them for anything but a string, mapping keys
keep their insertion order, and the text ends with one newline. The same document always gives
the same bytes, and PyYAML's safe loader reads it back as the same document.

``load(text)`` reads exactly that subset back (for the files this collection writes); anything
else raises ``ValueError`` naming the line.
"""

from __future__ import annotations

import math
import re
from typing import Any

INDENT = "  "
_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*\Z")
# words a YAML 1.1 loader (PyYAML) resolves to booleans or null
_YAML11_WORDS = frozenset(("y", "yes", "n", "no", "true", "false", "on", "off", "null"))
_NEVER_RAW = frozenset("\u0085\u2028\u2029\ufeff")
_SIMPLE_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\b": "\\b",
    "\f": "\\f",
}


class EmitError(ValueError):
    """A value that the emitter cannot write; ``path`` names where it is."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}" if path else reason)
        self.path = path
        self.reason = reason


def quote(text: str) -> str:
    """``text`` as a double-quoted scalar that both JSON and YAML readers decode to ``text``
    (except ``\\U`` escapes, which only YAML knows, for non-printable astral characters)."""
    out = ['"']
    for ch in text:
        if ch in _SIMPLE_ESCAPES:
            out.append(_SIMPLE_ESCAPES[ch])
        elif (ch.isprintable() and ch not in _NEVER_RAW) and not (0xD800 <= ord(ch) <= 0xDFFF):
            out.append(ch)
        elif ord(ch) <= 0xFFFF:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(f"\\U{ord(ch):08x}")
    out.append('"')
    return "".join(out)


def key_text(key: str) -> str:
    if _PLAIN_KEY.match(key) and key.lower() not in _YAML11_WORDS:
        return key
    return quote(key)


def scalar_text(value: Any, path: str = "") -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise EmitError(path, "a number must be finite")
        return repr(value)
    if isinstance(value, str):
        return quote(value)
    raise EmitError(path, f"unsupported value of type {type(value).__name__}")


def _join(path: str, key: Any) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else str(key)


def _is_block(value: Any) -> bool:
    return isinstance(value, (dict, list, tuple)) and len(value) > 0


def _lines(value: Any, depth: int, path: str, out: list[str]) -> None:
    pad = INDENT * depth
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise EmitError(path, f"mapping keys must be strings, not {type(key).__name__}")
            here = _join(path, key)
            if _is_block(item):
                out.append(f"{pad}{key_text(key)}:")
                _lines(item, depth + 1, here, out)
            else:
                out.append(f"{pad}{key_text(key)}: {_inline(item, here)}")
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            here = _join(path, i)
            if _is_block(item):
                out.append(f"{pad}-")
                _lines(item, depth + 1, here, out)
            else:
                out.append(f"{pad}- {_inline(item, here)}")
    else:
        raise EmitError(path, "expected a mapping or a list")


def _inline(value: Any, path: str) -> str:
    if isinstance(value, dict):
        return "{}"
    if isinstance(value, (list, tuple)):
        return "[]"
    return scalar_text(value, path)


def emit(doc: dict[str, Any]) -> str:
    """The document as block-style YAML text (deterministic)."""
    if not isinstance(doc, dict):
        raise EmitError("", "the top level must be a mapping")
    if not doc:
        return "{}\n"
    out: list[str] = []
    _lines(doc, 0, "", out)
    return "\n".join(out) + "\n"


# --- reading the subset back -------------------------------------------------------------------

_ESCAPES = {
    '"': '"',
    "\\": "\\",
    "/": "/",
    "n": "\n",
    "r": "\r",
    "t": "\t",
    "b": "\b",
    "f": "\f",
    "0": "\0",
}
_HEX_LEN = {"x": 2, "u": 4, "U": 8}
_INT = re.compile(r"-?(0|[1-9][0-9]*)\Z")
_FLOAT = re.compile(r"-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?\Z")


def unquote(text: str) -> str:
    """Decode a double-quoted scalar written by ``quote``."""
    if len(text) < 2 or text[0] != '"' or text[-1] != '"':
        raise ValueError("not a double-quoted string")
    body = text[1:-1]
    out: list[str] = []
    i = 0
    while i < len(body):
        ch = body[i]
        if ch == '"':
            raise ValueError("unescaped quote inside a string")
        if ch != "\\":
            out.append(ch)
            i += 1
            continue
        if i + 1 >= len(body):
            raise ValueError("dangling backslash")
        code = body[i + 1]
        if code in _ESCAPES:
            out.append(_ESCAPES[code])
            i += 2
        elif code in _HEX_LEN:
            n = _HEX_LEN[code]
            digits = body[i + 2 : i + 2 + n]
            if len(digits) != n or not all(c in "0123456789abcdefABCDEF" for c in digits):
                raise ValueError(f"bad \\{code} escape")
            out.append(chr(int(digits, 16)))
            i += 2 + n
        else:
            raise ValueError(f"unknown escape \\{code}")
    return "".join(out)


def parse_scalar(text: str) -> Any:
    if text.startswith('"'):
        return unquote(text)
    if text == "null":
        return None
    if text in ("true", "false"):
        return text == "true"
    if text == "[]":
        return []
    if text == "{}":
        return {}
    if _INT.match(text):
        return int(text)
    if _FLOAT.match(text):
        return float(text)
    raise ValueError(f"not a scalar of this format: {text!r}")


def _split_key(body: str) -> tuple[str, str]:
    """``key: value`` or ``key:`` -> (key, value text)."""
    if body.startswith('"'):
        end = 1
        while end < len(body):
            if body[end] == "\\":
                end += 2
                continue
            if body[end] == '"':
                break
            end += 1
        key = unquote(body[: end + 1])
        rest = body[end + 1 :]
    else:
        colon = body.find(":")
        if colon <= 0:
            raise ValueError("expected 'key:'")
        key, rest = body[:colon], body[colon:]
        if not _PLAIN_KEY.match(key):
            raise ValueError(f"unquoted key {key!r} is not plain")
    if rest == ":":
        return key, ""
    if not rest.startswith(": "):
        raise ValueError("expected ': ' after the key")
    return key, rest[2:]


def load(text: str) -> Any:
    """Read text written by ``emit`` (and only that subset)."""
    lines: list[tuple[int, int, str]] = []
    for number, raw in enumerate(text.split("\n"), 1):
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        stripped = raw.lstrip(" ")
        width = len(raw) - len(stripped)
        if width % len(INDENT) or "\t" in raw[:width]:
            raise ValueError(f"line {number}: indentation is not a multiple of two spaces")
        lines.append((number, width // len(INDENT), stripped.rstrip()))
    if not lines:
        return None
    if len(lines) == 1 and lines[0][2] == "{}":
        return {}
    value, pos = _block(lines, 0, 0)
    if pos != len(lines):
        raise ValueError(f"line {lines[pos][0]}: unexpected indentation")
    return value


def _block(lines: list[tuple[int, int, str]], pos: int, depth: int) -> tuple[Any, int]:
    number, level, body = lines[pos]
    if level != depth:
        raise ValueError(f"line {number}: unexpected indentation")
    if body == "-" or body.startswith("- "):
        items: list[Any] = []
        while pos < len(lines) and lines[pos][1] == depth:
            number, body = lines[pos][0], lines[pos][2]
            if body == "-":
                if pos + 1 >= len(lines) or lines[pos + 1][1] != depth + 1:
                    raise ValueError(f"line {number}: '-' without a nested block")
                item, pos = _block(lines, pos + 1, depth + 1)
            elif body.startswith("- "):
                item, pos = _scalar_at(number, body[2:]), pos + 1
            else:
                raise ValueError(f"line {number}: expected '- ' in a list")
            items.append(item)
        return items, pos
    mapping: dict[str, Any] = {}
    while pos < len(lines) and lines[pos][1] == depth:
        number, body = lines[pos][0], lines[pos][2]
        try:
            key, rest = _split_key(body)
        except ValueError as e:
            raise ValueError(f"line {number}: {e}")
        if key in mapping:
            raise ValueError(f"line {number}: duplicate key {key!r}")
        if rest:
            mapping[key], pos = _scalar_at(number, rest), pos + 1
        else:
            if pos + 1 >= len(lines) or lines[pos + 1][1] != depth + 1:
                raise ValueError(f"line {number}: '{key}:' without a nested block")
            mapping[key], pos = _block(lines, pos + 1, depth + 1)
    return mapping, pos


def _scalar_at(number: int, text: str) -> Any:
    try:
        return parse_scalar(text)
    except ValueError as e:
        raise ValueError(f"line {number}: {e}")
