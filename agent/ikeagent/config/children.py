"""The ``children:`` section of a connection: one CHILD_SA's traffic selectors, ESP proposals,
start action and lifetimes. Absent hard limits and jitter are derived here from the rekey values,
as swanctl.conf(5) documents them, so the engine receives concrete numbers."""

from __future__ import annotations

from typing import Any

from ikeagent.config.errors import Context, join
from ikeagent.config.model import ChildConfig, StartAction
from ikeagent.config.sections import DERIVED, REQUIRED, Field, Raw, Section
from ikeagent.config.values import (
    Choice,
    Count,
    Duration,
    Int,
    ListOf,
    Proposals,
    TrafficSelectorValue,
)

CHILD_FIELDS = (
    Field(
        "local_ts",
        ListOf(TrafficSelectorValue(), min_items=1),
        REQUIRED,
        "local traffic selectors",
        required_reason="required (swanctl's default 'dynamic' is not supported)",
    ),
    Field(
        "remote_ts",
        ListOf(TrafficSelectorValue(), min_items=1),
        REQUIRED,
        "remote traffic selectors",
        required_reason="required (swanctl's default 'dynamic' is not supported)",
    ),
    Field("esp_proposals", Proposals("ESP"), Raw("default"), "ESP proposals"),
    Field(
        "start_action",
        Choice("none", "start", "trap", names={a.value: a for a in StartAction}),
        StartAction.NONE,
        "what to do after loading",
    ),
    Field("mode", Choice("tunnel"), "tunnel", "IPsec mode (tunnel only)"),
    Field("rekey_time", Duration(), 3600.0, "CHILD_SA rekey interval (0: off)"),
    Field("life_time", Duration(), DERIVED, "hard lifetime (default rekey_time + 10%)"),
    Field("rand_time", Duration(), DERIVED, "rekey jitter (default life_time - rekey_time)"),
    Field("rekey_bytes", Count(), 0, "bytes before rekeying (0: off)"),
    Field("life_bytes", Count(), DERIVED, "hard byte limit (default rekey_bytes + 10%)"),
    Field("rekey_packets", Count(), 0, "packets before rekeying (0: off)"),
    Field("life_packets", Count(), DERIVED, "hard packet limit (default rekey_packets + 10%)"),
    Field("replay_window", Int(0, 2**32 - 1), 32, "replay window in packets"),
    Field("inactivity", Duration(), 0.0, "close the CHILD_SA after this idle time (0: off)"),
    Field("dpd_action", Choice("clear", "trap", "restart"), "clear", "action on DPD timeout"),
    Field("close_action", Choice("none", "trap", "start"), "none", "action when peer closes"),
)


def _build_child(name: str, v: dict[str, Any], path: str, ctx: Context) -> Any:
    rekey = v["rekey_time"]
    life = v.get("life_time", rekey + rekey / 10)
    if "life_time" in v and rekey and life and life <= rekey:
        return ctx.error(join(path, "life_time"), "must be greater than rekey_time")
    rand = v.get("rand_time", max(life - rekey, 0.0) if rekey else 0.0)
    for unit in ("bytes", "packets"):
        soft = v[f"rekey_{unit}"]
        hard = v.get(f"life_{unit}", soft + soft // 10)
        if f"life_{unit}" in v and soft and hard and hard <= soft:
            return ctx.error(join(path, f"life_{unit}"), f"must be greater than rekey_{unit}")
        v[f"life_{unit}"] = hard
    return ChildConfig(
        name=name,
        local_ts=v["local_ts"],
        remote_ts=v["remote_ts"],
        esp_proposals=v["esp_proposals"],
        start_action=v["start_action"],
        mode=v["mode"],
        rekey_time=rekey,
        life_time=life,
        rand_time=rand,
        rekey_bytes=v["rekey_bytes"],
        life_bytes=v["life_bytes"],
        rekey_packets=v["rekey_packets"],
        life_packets=v["life_packets"],
        replay_window=v["replay_window"],
        inactivity=v["inactivity"],
        dpd_action=v["dpd_action"],
        close_action=v["close_action"],
    )


CHILD = Section(CHILD_FIELDS, _build_child, "a CHILD_SA")
