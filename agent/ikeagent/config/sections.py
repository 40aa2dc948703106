"""Field specs and sections: the table-driven core of the configuration parser and schema."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ikeagent.config.errors import INVALID, Context, join
from ikeagent.config.values import Converter


class _Required:
    __slots__ = ()

    def __repr__(self) -> str:
        return "REQUIRED"


class _Derived:
    __slots__ = ()

    def __repr__(self) -> str:
        return "DERIVED"


REQUIRED = _Required()  # the key must be present
DERIVED = _Derived()  # absent keys are computed by the section's builder from other fields


@dataclass(frozen=True, slots=True)
class Raw:
    """A default given as it would be written in YAML; it goes through the converter."""

    value: Any


@dataclass(frozen=True, slots=True)
class Field:
    key: str
    conv: Converter
    default: Any = None  # a plain value, REQUIRED, DERIVED or Raw(yaml value)
    doc: str = ""
    attr: str | None = None  # dataclass attribute, when it differs from the key
    aliases: tuple[str, ...] = ()  # other accepted spellings (e.g. "local-1")
    pattern: str | None = None  # regex of further keys collected into a list (e.g. id-1, id-2)
    required_reason: str = ""

    @property
    def name(self) -> str:
        return self.attr or self.key

    def matches(self, key: str) -> bool:
        return (
            key == self.key
            or key in self.aliases
            or bool(self.pattern and re.fullmatch(self.pattern, key))
        )

    def schema(self) -> dict[str, Any]:
        out = dict(self.conv.schema())
        if self.doc:
            out["description"] = self.doc
        if isinstance(self.default, Raw):
            out["default"] = self.default.value
        elif self.default is not REQUIRED and self.default is not DERIVED:
            out["default"] = _jsonable(self.default)
        return out


def _jsonable(value: Any) -> Any:
    if hasattr(value, "value") and not isinstance(value, int | float | str):
        return value.value  # Enum
    if isinstance(value, tuple):
        return list(value)
    return value


Builder = Callable[[str, dict[str, Any], str, Context], Any]


class Section(Converter):
    """A mapping with a fixed set of fields; ``build(name, values, path, ctx)`` turns the
    parsed values into the config object (or INVALID)."""

    def __init__(self, fields: tuple[Field, ...], build: Builder, doc: str = "") -> None:
        self.fields = fields
        self.build = build
        self.doc = doc

    def parse(self, value: Any, path: str, ctx: Context, name: str = "") -> Any:
        values = self.values(value, path, ctx)
        if values is INVALID:
            return INVALID
        return self.build(name, values, path, ctx)

    def values(self, value: Any, path: str, ctx: Context) -> Any:
        if value is None:
            value = {}
        if not isinstance(value, Mapping):
            return ctx.error(path, f"expected a mapping, got {type(value).__name__}")
        out: dict[str, Any] = {}
        seen: dict[str, str] = {}
        bad = False
        for key, raw in value.items():
            kpath = join(path, str(key))
            spec = next((f for f in self.fields if isinstance(key, str) and f.matches(key)), None)
            if spec is None:
                known = ", ".join(f.key for f in self.fields)
                ctx.error(kpath, f"unknown key (expected one of: {known})")
                bad = True
                continue
            parsed = spec.conv.parse(raw, kpath, ctx)
            if parsed is INVALID:
                bad = True
                out[spec.name] = INVALID
                continue
            if spec.pattern:  # collected keys: id, id-1, id-2 ... -> one list
                if parsed is not None:
                    out.setdefault(spec.name, [])
                    if out[spec.name] is not INVALID:
                        out[spec.name].extend(parsed if isinstance(parsed, tuple) else (parsed,))
                continue
            if spec.name in seen:
                ctx.error(kpath, f"duplicates {seen[spec.name]!r}")
                bad = True
                continue
            seen[spec.name] = str(key)
            out[spec.name] = parsed
        for spec in self.fields:
            if spec.name in out:
                continue
            if spec.default is REQUIRED:
                ctx.error(join(path, spec.key), spec.required_reason or "required")
                bad = True
            elif isinstance(spec.default, Raw):
                parsed = spec.conv.parse(spec.default.value, join(path, spec.key), ctx)
                bad = bad or parsed is INVALID
                out[spec.name] = parsed
            elif spec.default is not DERIVED:
                out[spec.name] = spec.default
        for name, v in out.items():
            if isinstance(v, list):
                out[name] = tuple(v)
        return INVALID if bad else out

    def schema(self) -> dict[str, Any]:
        props: dict[str, Any] = {}
        patterns: dict[str, Any] = {}
        for f in self.fields:
            props[f.key] = f.schema()
            for alias in f.aliases:
                props[alias] = {"$alias": f.key} | f.schema()
            if f.pattern:
                patterns[f"^{f.pattern}$"] = f.schema()
        out: dict[str, Any] = {
            "type": "object",
            "properties": props,
            "additionalProperties": False,
        }
        if patterns:
            out["patternProperties"] = patterns
        required = [f.key for f in self.fields if f.default is REQUIRED]
        if required:
            out["required"] = required
        if self.doc:
            out["description"] = self.doc
        return out


class MapOf(Converter):
    """A mapping of names to sections (connections, children, secrets)."""

    def __init__(
        self, section: Section, name_pattern: str = r"[^.\s\[\]]+", hint: str = ""
    ) -> None:
        self.section = section
        self.name_pattern = name_pattern
        self.hint = hint

    def parse(self, value: Any, path: str, ctx: Context) -> Any:
        if value is None:
            value = {}
        if not isinstance(value, Mapping):
            return ctx.error(path, f"expected a mapping of names, got {type(value).__name__}")
        out: dict[str, Any] = {}
        bad = False
        for name, body in value.items():
            npath = join(path, str(name))
            if not isinstance(name, str) or not re.fullmatch(self.name_pattern, name):
                ctx.error(npath, self.hint or "bad name (no dots, brackets or spaces)")
                bad = True
                continue
            parsed = self.section.parse(body, npath, ctx, name)
            if parsed is INVALID:
                bad = True
            else:
                out[name] = parsed
        return INVALID if bad else out

    def schema(self) -> dict[str, Any]:
        return {
            "type": "object",
            "propertyNames": {"pattern": f"^{self.name_pattern}$"},
            "additionalProperties": self.section.schema(),
        }
