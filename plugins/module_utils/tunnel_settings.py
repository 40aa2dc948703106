# Copyright: ikelab.ipsec developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Lifetimes, liveness and on-demand settings of one tunnel (standard library only).

The ``tunnel`` module gives these agent keys (swanctl vocabulary) parameters of their own; this
module holds their table, parses their values and checks the rules that tie them together, so
that a bad combination fails naming the field before anything is written:

=======================  =============================  =======================================
parameter                agent key                      value
=======================  =============================  =======================================
``dpd_timeout``          ``dpd_timeout``                duration; IKEv1 only, needs dpd_delay
``over_time``            ``over_time``                  duration
``rand_time``            ``rand_time``                  duration, shorter than rekey_time
``reauth_time``          ``reauth_time``                duration (0: off)
``keyingtries``          ``keyingtries``                integer >= 0 (0: forever)
``inactivity_close_ike`` ``inactivity_close_ike``       bool; needs inactivity
``inactivity``           ``children.<c>.inactivity``    positive duration
``dpd_action``           ``children.<c>.dpd_action``    clear, trap, restart
``close_action``         ``children.<c>.close_action``  none, trap, start
``child_life_time``      ``children.<c>.life_time``     duration, longer than child_rekey_time
``child_rand_time``      ``children.<c>.rand_time``     duration, shorter than child_rekey_time
``rekey_bytes``          ``children.<c>.rekey_bytes``   count (``1g``, ``512k``; 0: off)
``life_bytes``           ``children.<c>.life_bytes``    count, more than rekey_bytes
``rekey_packets``        ``children.<c>.rekey_packets`` count (0: off)
``life_packets``         ``children.<c>.life_packets``  count, more than rekey_packets
=======================  =============================  =======================================

Child keys carry a ``child_`` prefix only where the connection has a key of the same name
(``rekey_time``, ``rand_time``) or the key pairs with one that has (``life_time`` with
``rekey_time``), as the module's ``child_rekey_time`` always did.

The same keys given in the free-form ``options``/``child_options`` (as before these parameters
existed) are still accepted, checked by the same rules and written unchanged; a key given both
ways is an error. ``settings(params, options, child_options, context)`` returns the validated
connection and child keys and the options left over.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

DPD_ACTIONS = ("clear", "trap", "restart")
CLOSE_ACTIONS = ("none", "trap", "start")
# values of start_action, dpd_action and close_action that make the agent initiate
INITIATING = frozenset({"start", "trap", "restart"})
# the agent's defaults that the rules compare against when a value is not given
DEFAULT_IKE_REKEY = 14400.0  # 4h
DEFAULT_CHILD_REKEY = 3600.0  # 1h

_DURATION = re.compile(r"[0-9]+(\.[0-9]+)?[smhd]?\Z")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_COUNT = re.compile(r"([0-9]+)([kmgKMG]?)\Z")
_COUNT_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}
DURATION_HELP = "must be a number of seconds or a duration like 30s, 4h"


class SpecError(ValueError):
    """A parameter is invalid; ``field`` names it (``options.mobike``, ``local_ts[1]``...)."""

    def __init__(self, field_name: str, reason: str) -> None:
        super().__init__(f"{field_name}: {reason}")
        self.field = field_name
        self.reason = reason


# --- values -------------------------------------------------------------------------------------


def duration(value: Any, field_name: str) -> int | float | str | None:
    """Seconds (a number) or swanctl's ``30s``/``5m``/``4h``/``1d``; digit strings become
    numbers so that ``"30"`` and ``30`` write the same file."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise SpecError(field_name, DURATION_HELP)
    if isinstance(value, (int, float)):
        if value < 0:
            raise SpecError(field_name, "cannot be negative")
        return int(value) if float(value).is_integer() else float(value)
    if isinstance(value, str) and _DURATION.match(value.strip()):
        text = value.strip()
        if text[-1].isdigit():
            return duration(float(text), field_name)
        return text
    raise SpecError(field_name, DURATION_HELP)


def seconds(value: Any) -> float:
    """A value ``duration`` accepted, in seconds."""
    if isinstance(value, str):
        text = value.strip()
        if text[-1] in _UNITS:
            return float(text[:-1]) * _UNITS[text[-1]]
        return float(text)
    return float(value)


def positive_duration(value: Any, field_name: str) -> int | float | str | None:
    out = duration(value, field_name)
    if out is not None and seconds(out) <= 0:
        raise SpecError(field_name, "must be a positive duration (leave it unset for no limit)")
    return out


def count(value: Any, field_name: str) -> int | str | None:
    """Bytes or packets: an integer, or digits with ``k``, ``m`` or ``g`` (powers of 1024)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise SpecError(field_name, "must be a whole number, optionally with k, m or g (1g)")
    if isinstance(value, int):
        if value < 0:
            raise SpecError(field_name, "cannot be negative")
        return value
    text = value.strip()
    m = _COUNT.match(text)
    if not m:
        raise SpecError(field_name, "must be a whole number, optionally with k, m or g (1g)")
    return int(text) if not m.group(2) else text


def count_value(value: Any) -> int:
    """A value ``count`` accepted, as a number."""
    if isinstance(value, int):
        return value
    m = _COUNT.match(value.strip())
    return int(m.group(1)) * _COUNT_UNITS[m.group(2).lower()] if m else 0


def tries(value: Any, field_name: str) -> int | None:
    """``keyingtries``: attempts to initiate, 0 for forever."""
    if value is None:
        return None
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int):
        raise SpecError(field_name, "must be a whole number of attempts (0: keep trying)")
    if value < 0:
        raise SpecError(field_name, "must be 0 (keep trying) or more")
    return value


def flag(value: Any, field_name: str) -> bool | None:
    """true or false; None leaves the agent's default."""
    if value is None or isinstance(value, bool):
        return value
    raise SpecError(field_name, "must be true or false")


def choice(*allowed: str) -> Callable[[Any, str], str | None]:
    def check(value: Any, field_name: str) -> str | None:
        if value is None:
            return None
        if value not in allowed:
            raise SpecError(field_name, f"must be one of {', '.join(allowed)}")
        return str(value)

    return check


# --- the table ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Setting:
    param: str  # the module's parameter
    key: str  # the agent's key (in the connection, or in its child)
    child: bool
    check: Callable[[Any, str], Any]


SETTINGS: tuple[Setting, ...] = (
    Setting("dpd_timeout", "dpd_timeout", False, duration),
    Setting("over_time", "over_time", False, duration),
    Setting("rand_time", "rand_time", False, duration),
    Setting("reauth_time", "reauth_time", False, duration),
    Setting("keyingtries", "keyingtries", False, tries),
    Setting("inactivity_close_ike", "inactivity_close_ike", False, flag),
    Setting("inactivity", "inactivity", True, positive_duration),
    Setting("dpd_action", "dpd_action", True, choice(*DPD_ACTIONS)),
    Setting("close_action", "close_action", True, choice(*CLOSE_ACTIONS)),
    Setting("child_life_time", "life_time", True, duration),
    Setting("child_rand_time", "rand_time", True, duration),
    Setting("rekey_bytes", "rekey_bytes", True, count),
    Setting("life_bytes", "life_bytes", True, count),
    Setting("rekey_packets", "rekey_packets", True, count),
    Setting("life_packets", "life_packets", True, count),
)
PARAMS = tuple(s.param for s in SETTINGS)
CONNECTION_KEYS = {s.key: s for s in SETTINGS if not s.child}
CHILD_KEYS = {s.key: s for s in SETTINGS if s.child}


@dataclass(frozen=True, slots=True)
class Context:
    """What the rules need from the rest of the parameters (as the module got them)."""

    version: int | None = None  # None: the agent's default, 2
    start_action: str = "none"
    local_addrs: tuple[str, ...] = ()
    remote_addrs: tuple[str, ...] = ()
    dpd_delay: Any = None
    rekey_time: Any = None  # the IKE SA's
    child_rekey_time: Any = None


@dataclass
class Settings:
    connection: dict[str, Any]  # agent key -> value, first-class and from options alike
    child: dict[str, Any]
    options: dict[str, Any]  # what is left of options / child_options
    child_options: dict[str, Any]
    fields: dict[tuple[bool, str], str]  # (child, key) -> the field it was given as

    def field(self, key: str, child: bool) -> str:
        return self.fields.get((child, key), key)


def settings(
    params: dict[str, Any],
    options: dict[str, Any],
    child_options: dict[str, Any],
    context: Context,
) -> Settings:
    """Split and check; every problem is a ``SpecError`` naming the field."""
    out = Settings({}, {}, dict(options), dict(child_options), {})
    for s in SETTINGS:
        target = out.child if s.child else out.connection
        free = out.child_options if s.child else out.options
        free_name = "child_options" if s.child else "options"
        given = params.get(s.param)
        if given is not None:
            if s.key in free:
                raise SpecError(
                    s.param, f"is also given as {free_name}.{s.key}; give it once, as {s.param}"
                )
            target[s.key] = s.check(given, s.param)
            out.fields[(s.child, s.key)] = s.param
        elif s.key in free:
            field = f"{free_name}.{s.key}"
            s.check(free[s.key], field)  # written as given (the file stays as it was)
            target[s.key] = free.pop(s.key)
            out.fields[(s.child, s.key)] = field
    check_rules(out, context)
    return out


# --- the rules ------------------------------------------------------------------------------------


def _shown(value: Any) -> str:
    return str(value) if isinstance(value, str) else f"{value:g}s"


def _longer(
    out: Settings, child: bool, key: str, base: Any, default: float, base_field: str
) -> None:
    """``key`` (a hard limit) must exceed ``base`` (its soft limit; ``default`` when unset)."""
    value = (out.child if child else out.connection).get(key)
    if value is None:
        return
    soft = seconds(base) if base is not None else default
    shown = _shown(base) if base is not None else f"{_shown(default)}, the agent's default"
    if soft and seconds(value) and seconds(value) <= soft:
        raise SpecError(
            out.field(key, child),
            f"must be longer than {base_field} ({shown}): the SA is rekeyed before its hard "
            "lifetime ends it",
        )


def _shorter(
    out: Settings, child: bool, key: str, base: Any, default: float, base_field: str
) -> None:
    """A jitter (``rand_time``) must be shorter than the rekey time it is subtracted from."""
    value = (out.child if child else out.connection).get(key)
    if value is None:
        return
    soft = seconds(base) if base is not None else default
    shown = _shown(base) if base is not None else f"{_shown(default)}, the agent's default"
    if soft and seconds(value) >= soft:
        raise SpecError(
            out.field(key, child),
            f"must be shorter than {base_field} ({shown}): it is a random time subtracted from it",
        )


def _more(out: Settings, unit: str) -> None:
    soft, hard = out.child.get(f"rekey_{unit}"), out.child.get(f"life_{unit}")
    if soft is None or hard is None:
        return
    if count_value(soft) and count_value(hard) and count_value(hard) <= count_value(soft):
        raise SpecError(
            out.field(f"life_{unit}", True),
            f"must be more than {out.field(f'rekey_{unit}', True)} ({soft}): the Child SA is "
            "rekeyed before its hard limit ends it",
        )


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def check_rules(out: Settings, ctx: Context) -> None:
    conn, child = out.connection, out.child
    _longer(out, True, "life_time", ctx.child_rekey_time, DEFAULT_CHILD_REKEY, "child_rekey_time")
    _shorter(out, True, "rand_time", ctx.child_rekey_time, DEFAULT_CHILD_REKEY, "child_rekey_time")
    _shorter(out, False, "rand_time", ctx.rekey_time, DEFAULT_IKE_REKEY, "rekey_time")
    for unit in ("bytes", "packets"):
        _more(out, unit)
    if "dpd_timeout" in conn:
        field = out.field("dpd_timeout", False)
        if ctx.version != 1:
            raise SpecError(
                field,
                "only applies to IKEv1 (version: 1); an IKEv2 peer is declared dead when a "
                "liveness check runs out of retransmissions",
            )
        if ctx.dpd_delay is None or not seconds(ctx.dpd_delay):
            raise SpecError(field, "needs dpd_delay (without it no liveness check is sent)")
    if conn.get("inactivity_close_ike") and not child.get("inactivity"):
        raise SpecError(
            out.field("inactivity_close_ike", False),
            "needs inactivity (a Child SA is only closed for inactivity when inactivity is set)",
        )
    _check_peer(out, ctx)


def _check_peer(out: Settings, ctx: Context) -> None:
    """Actions that trap or initiate need a peer to initiate to: a trap an IP address first in
    remote_addrs (and an IP address, or nothing, in local_addrs), as the agent arms it."""
    actions = (
        ("start_action", ctx.start_action),
        (out.field("dpd_action", True), out.child.get("dpd_action")),
        (out.field("close_action", True), out.child.get("close_action")),
    )
    initiating = [f"{name} {value}" for name, value in actions if value in INITIATING]
    if initiating and not ctx.remote_addrs:
        raise SpecError(
            "remote_addrs", f"is required with {initiating[0]} (the agent initiates to the peer)"
        )
    traps = [f"{name} trap" for name, value in actions if value == "trap"]
    if not traps:
        return
    if not _is_ip(ctx.remote_addrs[0]):
        raise SpecError(
            "remote_addrs",
            f"{traps[0]} needs the peer's IP address first in remote_addrs (a trap initiates "
            f"to it when traffic arrives), not {ctx.remote_addrs[0]!r}",
        )
    if ctx.local_addrs and not _is_ip(ctx.local_addrs[0]):
        raise SpecError(
            "local_addrs",
            f"{traps[0]} needs an IP address first in local_addrs (or none), not "
            f"{ctx.local_addrs[0]!r}",
        )
