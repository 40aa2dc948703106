"""Value converters of the configuration: each parses one YAML value and describes itself as a
JSON-schema fragment, so the parser and ``config_schema()`` come from the same table."""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
from collections.abc import Callable
from typing import Any

from ikeagent.config.errors import INVALID, Context, Invalid, join
from ikeagent.config.identity import parse_identity
from ikeagent.config.selectors import parse_ts

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
_COUNT = re.compile(r"^\s*(\d+)\s*([kmg]?)\s*$", re.IGNORECASE)
_COUNT_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}
_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,62})(?:\.[A-Za-z0-9_-]{1,63})*\.?$"
)
_TRUE = {"yes", "true", "on", "1"}
_FALSE = {"no", "false", "off", "0"}


class Converter:
    """Parse one value at ``path``; return the value or INVALID after recording a problem."""

    def parse(self, value: Any, path: str, ctx: Context) -> Any:
        try:
            return self.check(value)
        except Invalid as e:
            return ctx.error(path, str(e))

    def check(self, value: Any) -> Any:  # scalar converters override this
        raise NotImplementedError

    def schema(self) -> dict[str, Any]:
        raise NotImplementedError


def _not_bool(value: Any, what: str) -> None:
    if isinstance(value, bool):
        raise Invalid(f"expected {what}, got a boolean")


class Str(Converter):
    def __init__(self, pattern: str | None = None) -> None:
        self.pattern = pattern

    def check(self, value: Any) -> str:
        if not isinstance(value, str):
            raise Invalid(f"expected a string, got {type(value).__name__}")
        if self.pattern and not re.fullmatch(self.pattern, value):
            raise Invalid(f"{value!r} does not match {self.pattern}")
        return value

    def schema(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "string"}
        if self.pattern:
            out["pattern"] = f"^{self.pattern}$"
        return out


class Int(Converter):
    def __init__(self, minimum: int = 0, maximum: int | None = None) -> None:
        self.minimum, self.maximum = minimum, maximum

    def check(self, value: Any) -> int:
        _not_bool(value, "an integer")
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value)
        if not isinstance(value, int):
            raise Invalid(f"expected an integer, got {type(value).__name__}")
        if value < self.minimum or (self.maximum is not None and value > self.maximum):
            top = "" if self.maximum is None else f"-{self.maximum}"
            raise Invalid(f"{value} is out of range {self.minimum}{top or ' or more'}")
        return value

    def schema(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "integer", "minimum": self.minimum}
        if self.maximum is not None:
            out["maximum"] = self.maximum
        return out


class Port(Int):
    def __init__(self) -> None:
        super().__init__(1, 65535)


class Version(Int):
    """IKE version 1 or 2; swanctl's 0 (either) is refused with a reason."""

    def __init__(self) -> None:
        super().__init__(1, 2)

    def check(self, value: Any) -> int:
        if value == 0 and not isinstance(value, bool):
            raise Invalid("0 (any version) is not supported: choose 1 or 2")
        return super().check(value)


class Bool(Converter):
    def check(self, value: Any) -> bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise Invalid(f"expected yes/no (a boolean), got {value!r}")

    def schema(self) -> dict[str, Any]:
        return {"type": ["boolean", "string"], "enum": [True, False, "yes", "no"]}


class Choice(Converter):
    def __init__(self, *choices: Any, names: dict[str, Any] | None = None) -> None:
        self.choices = choices
        self.names = names or {}

    def check(self, value: Any) -> Any:
        _not_bool(value, f"one of {self._list()}")
        key = value.lower() if isinstance(value, str) else value
        if key in self.names:
            return self.names[key]
        if key in self.choices:
            return key
        raise Invalid(f"{value!r} is not one of {self._list()}")

    def _list(self) -> str:
        return ", ".join(str(c) for c in self.choices)

    def schema(self) -> dict[str, Any]:
        return {"enum": list(self.choices)}


class Number(Converter):
    def __init__(self, minimum: float = 0.0) -> None:
        self.minimum = minimum

    def check(self, value: Any) -> float:
        _not_bool(value, "a number")
        if not isinstance(value, int | float) or value < self.minimum:
            raise Invalid(f"expected a number of at least {self.minimum}")
        return float(value)

    def schema(self) -> dict[str, Any]:
        return {"type": "number", "minimum": self.minimum}


class Duration(Converter):
    """Seconds as a number, or a string with unit s, m, h or d ("30s", "5m", "4h", "1d")."""

    def check(self, value: Any) -> float:
        _not_bool(value, "a duration")
        if isinstance(value, int | float):
            if value < 0:
                raise Invalid("a duration cannot be negative")
            return float(value)
        if isinstance(value, str):
            m = _DURATION.match(value)
            if m:
                return float(m.group(1)) * _UNITS[m.group(2)]
        raise Invalid(f"bad duration {value!r} (use seconds or a number with s, m, h or d)")

    def schema(self) -> dict[str, Any]:
        return {
            "type": ["integer", "number", "string"],
            "minimum": 0,
            "pattern": r"^\d+(\.\d+)?[smhd]?$",
        }


class Count(Converter):
    """A byte or packet count: an integer, or a string with k, m or g (powers of 1024)."""

    def check(self, value: Any) -> int:
        _not_bool(value, "a count")
        if isinstance(value, int):
            if value < 0:
                raise Invalid("a count cannot be negative")
            return value
        if isinstance(value, str):
            m = _COUNT.match(value)
            if m:
                return int(m.group(1)) * _COUNT_UNITS[m.group(2).lower()]
        raise Invalid(f"bad count {value!r} (an integer, optionally with k, m or g)")

    def schema(self) -> dict[str, Any]:
        return {"type": ["integer", "string"], "minimum": 0, "pattern": r"^\d+[kKmMgG]?$"}


class Address(Converter):
    """An IP address or a DNS name of a gateway; ``%any`` parses to None (any address).
    With ``ranges`` (remote_addrs, as in swanctl) also a subnet or an address range, which a
    responder accepts peers from (an initiator needs an address or a name first)."""

    def __init__(self, ranges: bool = False) -> None:
        self.ranges = ranges

    def check(self, value: Any) -> str | None:
        if not isinstance(value, str):
            raise Invalid(f"expected an address, got {type(value).__name__}")
        text = value.strip()
        if text in ("%any", "%any4", "%any6"):
            return None
        try:
            return str(ipaddress.ip_address(text))
        except ValueError:
            pass
        if "/" in text or re.fullmatch(r"[0-9a-fA-F.:]+-[0-9a-fA-F.:]+", text):
            if not self.ranges:
                raise Invalid(
                    f"{text!r}: subnets and ranges are not supported here, give an address"
                )
            return _subnet_or_range(text)
        if re.fullmatch(r"[\d.]+", text) or ":" in text or not _HOSTNAME.match(text):
            raise Invalid(f"{text!r} is not an IP address or a host name")
        return text

    def schema(self) -> dict[str, Any]:
        return {"type": "string", "description": "IP address, host name or %any"}


def _subnet_or_range(text: str) -> str:
    if "/" in text:
        try:
            return str(ipaddress.ip_network(text, strict=False))
        except ValueError:
            raise Invalid(f"{text!r} is not a subnet") from None
    lo_text, hi_text = text.split("-", 1)
    try:
        lo, hi = ipaddress.ip_address(lo_text), ipaddress.ip_address(hi_text)
    except ValueError:
        raise Invalid(f"{text!r} is not an address range") from None
    if lo.version != hi.version or lo > hi:
        raise Invalid(f"{text!r}: a range runs from a lower to a higher address of one family")
    return f"{lo}-{hi}"


class IdentityValue(Converter):
    def check(self, value: Any) -> Any:
        return parse_identity(value)

    def schema(self) -> dict[str, Any]:
        return {"type": "string"}


class TrafficSelectorValue(Converter):
    def check(self, value: Any) -> Any:
        return parse_ts(value)

    def schema(self) -> dict[str, Any]:
        return {"type": "string", "description": "CIDR subnet, optionally [proto/port]"}


class SecretValue(Converter):
    """A PSK: a string, ``0x`` + hex or ``0s`` + base64 (swanctl's forms). Reasons never
    include the value."""

    def check(self, value: Any) -> bytes:
        if not isinstance(value, str):
            raise Invalid("a secret must be a string")
        return decode_secret(value)

    def schema(self) -> dict[str, Any]:
        return {"type": "string", "minLength": 1}


def decode_secret(text: str) -> bytes:
    if text.startswith("0x"):
        try:
            data = bytes.fromhex(text[2:])
        except ValueError:
            raise Invalid("a secret starting with 0x must be hex")
    elif text.startswith("0s"):
        try:
            data = base64.b64decode(text[2:], validate=True)
        except (binascii.Error, ValueError):
            raise Invalid("a secret starting with 0s must be base64")
    else:
        data = text.encode()
    if not data:
        raise Invalid("a secret cannot be empty")
    return data


class ListOf(Converter):
    """A YAML list or (as swanctl writes) a comma-separated string, parsed item by item; the
    path of a bad item carries its index."""

    def __init__(self, item: Converter, min_items: int = 0, keep_none: bool = False) -> None:
        self.item, self.min_items, self.keep_none = item, min_items, keep_none

    @staticmethod
    def items(value: Any) -> list[Any] | None:
        if isinstance(value, str):
            return [p.strip() for p in value.split(",") if p.strip()]
        if isinstance(value, list | tuple):
            out: list[Any] = []
            for v in value:
                if isinstance(v, str) and "," in v:
                    out.extend(p.strip() for p in v.split(",") if p.strip())
                else:
                    out.append(v)
            return out
        return None

    def parse(self, value: Any, path: str, ctx: Context) -> Any:
        items = self.items(value)
        if items is None:
            return ctx.error(
                path, f"expected a list or a comma-separated string, got {type(value).__name__}"
            )
        if len(items) < self.min_items:
            return ctx.error(path, "must not be empty")
        out = []
        bad = False
        for i, item in enumerate(items):
            parsed = self.item.parse(item, join(path, i), ctx)
            if parsed is INVALID:
                bad = True
            elif parsed is not None or self.keep_none:
                out.append(parsed)
        return INVALID if bad else tuple(out)

    def schema(self) -> dict[str, Any]:
        return {
            "anyOf": [
                {"type": "array", "items": self.item.schema(), "minItems": self.min_items},
                {"type": "string"},
            ]
        }


class Proposals(Converter):
    """swanctl proposal keywords through ``ikeagent.crypto.suites.parse_proposal``;
    ``default`` expands to ``default_proposals(kind)``."""

    def __init__(self, kind_name: str) -> None:
        self.kind_name = kind_name  # "IKE" | "ESP"

    def parse(self, value: Any, path: str, ctx: Context) -> Any:
        from ikeagent.crypto import suites

        items = ListOf.items(value)
        if items is None:
            return ctx.error(path, "expected a list or a comma-separated string of proposals")
        if not items:
            return ctx.error(path, "must not be empty")
        kind = suites.Kind[self.kind_name]
        out: list[Any] = []
        bad = False
        for i, item in enumerate(items):
            if not isinstance(item, str):
                ctx.error(join(path, i), "a proposal must be a string")
                bad = True
                continue
            try:
                if item.strip().lower() == "default":
                    out.extend(_call(suites, "default_proposals", kind))
                else:
                    out.append(_call(suites, "parse_proposal", item.strip(), kind))
            except suites.ProposalError as e:
                ctx.error(join(path, i), str(e) or f"bad proposal {item!r}")
                bad = True
        return INVALID if bad else tuple(out)

    def schema(self) -> dict[str, Any]:
        return ListOf(Str()).schema() | {"x-proposal-kind": self.kind_name.lower()}


def _call(module: Any, name: str, *args: Any) -> Any:
    func: Callable[..., Any] | None = getattr(module, name, None)
    if func is None:  # the crypto table has not landed yet
        raise module.ProposalError(f"{module.__name__}.{name} is not available")
    return func(*args)
