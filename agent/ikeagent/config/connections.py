"""The ``connections:`` section: one IKE connection with its addresses, proposals, IKE SA
lifetimes, authentication rounds (``authentication``) and children (``children``), and the checks
that span them (Aggressive Mode, IKEv1 limits, actions that must initiate to the peer)."""

from __future__ import annotations

import ipaddress
from typing import Any

from ikeagent.config import ikev1
from ikeagent.config.authentication import AUTH
from ikeagent.config.children import CHILD
from ikeagent.config.errors import INVALID, Context, join
from ikeagent.config.model import AuthMethod, ConnectionConfig, StartAction
from ikeagent.config.sections import DERIVED, Field, MapOf, Raw, Section
from ikeagent.config.values import (
    Address,
    Bool,
    Choice,
    Duration,
    Int,
    ListOf,
    Port,
    Proposals,
    Version,
)

CONNECTION_FIELDS = (
    Field("version", Version(), 2, "IKE version: 1 or 2"),
    Field("local_addrs", ListOf(Address()), (), "local addresses (default %any)"),
    Field(
        "remote_addrs",
        ListOf(Address(ranges=True)),
        (),
        "remote addresses, names, subnets or ranges (default %any)",
    ),
    Field("local_port", Port(), DERIVED, "local IKE port (default: agent port)"),
    Field("remote_port", Port(), 500, "remote IKE port"),
    Field("proposals", Proposals("IKE"), Raw("default"), "IKE proposals"),
    Field("local", AUTH, Raw({}), "local authentication", aliases=("local-1",)),
    Field("remote", AUTH, Raw({}), "remote authentication", aliases=("remote-1",)),
    Field("dpd_delay", Duration(), 0.0, "liveness check interval (0: off)"),
    Field("dpd_timeout", Duration(), 0.0, "IKEv1 DPD timeout"),
    Field("rekey_time", Duration(), 14400.0, "IKE SA rekey interval (0: off)"),
    Field("over_time", Duration(), DERIVED, "hard limit after rekey_time (default 10%)"),
    Field("rand_time", Duration(), DERIVED, "rekey jitter (default over_time)"),
    Field("reauth_time", Duration(), 0.0, "reauthentication interval (0: off)"),
    Field("encap", Bool(), False, "force UDP encapsulation"),
    Field("mobike", Bool(), True, "MOBIKE (RFC 4555)"),
    Field("fragmentation", Bool(), True, "IKE fragmentation (RFC 7383)"),
    Field("aggressive", Bool(), False, "IKEv1 Aggressive Mode"),
    Field("allow_aggressive_psk", Bool(), False, "allow IKEv1 Aggressive Mode with PSK"),
    Field("keyingtries", Int(0), 1, "initiation attempts (0: forever)"),
    Field(
        "inactivity_close_ike",
        Bool(),
        False,
        "close the IKE SA too when its last CHILD_SA was closed for inactivity",
    ),
    Field("unique", Choice("no", "never", "keep", "replace"), "no", "uniqueness policy"),
    Field("children", MapOf(CHILD), {}, "CHILD_SAs"),
)


def _build_connection(name: str, v: dict[str, Any], path: str, ctx: Context) -> Any:
    bad = False
    if v["aggressive"] and v["version"] != 1:
        ctx.error(join(path, "aggressive"), "Aggressive Mode needs version: 1")
        bad = True
    elif (
        v["aggressive"]
        and not v["allow_aggressive_psk"]
        and AuthMethod.PSK
        in (getattr(v["local"], "auth", None), getattr(v["remote"], "auth", None))
    ):
        ctx.error(
            join(path, "allow_aggressive_psk"),
            "Aggressive Mode with a pre-shared key sends a hash of the key that can be guessed "
            "offline: set allow_aggressive_psk: true to accept that risk, or use Main Mode",
        )
        bad = True
    if v["version"] == 1 and not ikev1.check_connection(v, path, ctx):
        bad = True
    for action in (StartAction.START, StartAction.TRAP):
        starting = [c.name for c in v["children"].values() if c.start_action is action]
        if starting and not v["remote_addrs"]:
            ctx.error(
                join(path, "remote_addrs"),
                f"required when a child has start_action {action.value} ({', '.join(starting)})",
            )
            bad = True
            break
        if starting and action is StartAction.TRAP and not _initiable(v["remote_addrs"][0]):
            ctx.error(
                join(path, "remote_addrs"),
                f"start_action trap ({', '.join(starting)}) needs an address to initiate to "
                f"first, not {v['remote_addrs'][0]!r}",
            )
            bad = True
    # dpd_action/close_action trap and restart/start initiate later: they need a peer address
    later = [
        f"{c.name} ({key} {value})"
        for c in v["children"].values()
        for key, value in (("dpd_action", c.dpd_action), ("close_action", c.close_action))
        if value in ("trap", "restart", "start")
    ]
    if later and not bad and not (v["remote_addrs"] and _initiable(v["remote_addrs"][0])):
        first = repr(v["remote_addrs"][0]) if v["remote_addrs"] else "none"
        ctx.error(
            join(path, "remote_addrs"),
            f"{', '.join(later)} initiates to the peer: the first remote address must be an "
            f"IP address (it is {first})",
        )
        bad = True
    if bad:
        return INVALID
    rekey = v["rekey_time"]
    reauth = v["reauth_time"]
    if v["version"] == 1 and reauth > 0 and (rekey <= 0 or reauth < rekey):
        # IKEv1 replaces its ISAKMP SA with a new Phase 1, which authenticates again: the
        # shorter of the two intervals is when that happens
        rekey = reauth
    over = v.get("over_time", rekey / 10)
    rand = v.get("rand_time", over)
    return ConnectionConfig(
        name=name,
        version=v["version"],
        local_addrs=v["local_addrs"],
        remote_addrs=v["remote_addrs"],
        proposals=v["proposals"],
        local=v["local"],
        remote=v["remote"],
        children=v["children"],
        local_port=v.get("local_port", ctx.settings.get("port", 500)),
        remote_port=v["remote_port"],
        dpd_delay=v["dpd_delay"],
        dpd_timeout=v["dpd_timeout"],
        rekey_time=rekey,
        over_time=over,
        rand_time=rand,
        reauth_time=v["reauth_time"],
        encap=v["encap"],
        mobike=v["mobike"],
        fragmentation=v["fragmentation"],
        aggressive=v["aggressive"],
        allow_aggressive_psk=v["allow_aggressive_psk"],
        keyingtries=v["keyingtries"],
        unique=v["unique"],
        inactivity_close_ike=v["inactivity_close_ike"],
    )


def _initiable(addr: str) -> bool:
    """An IP address (not a subnet, range or name): what a trap can initiate to."""
    try:
        ipaddress.ip_address(addr)
    except ValueError:
        return False
    return True


CONNECTION = Section(CONNECTION_FIELDS, _build_connection, "an IKE connection")
