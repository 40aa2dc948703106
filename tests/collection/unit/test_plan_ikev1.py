"""The planner on IKEv1 tunnels: proposals no setting names become the ``compat`` profile
(``modern`` is AEAD only, which IKEv1 cannot use in Phase 1), and proposals a setting names
that IKEv1 cannot express are a problem naming host, tunnel and field, judged by the agent's
own IKEv1 mapping and schema."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from test_plan import MESH, inventory, only, plan, problems
from test_tunnel_config import PSK

from ansible_collections.ikelab.ipsec.plugins.filter.tunnels import tunnel_set_entries
from ansible_collections.ikelab.ipsec.plugins.module_utils import tunnel_config as tc
from ansible_collections.ikelab.ipsec.plugins.plugin_utils.plan_checks import Kind
from ansible_collections.ikelab.ipsec.plugins.plugin_utils.proposals import (
    PROFILES,
    ikev1_unusable,
    resolve,
)
from ikeagent.config.schema import ConfigError, parse_config
from ikeagent.crypto.suites import format_proposal

COMPAT_IKE = ["aes256-sha256-modp2048", "aes256-sha256-ecp256", "aes128-sha256-modp2048"]
COMPAT_ESP = ["aes256-sha256", "aes128-sha256"]
MODERN_IKE = [
    "aes256gcm16-prfsha384-x25519",
    "aes256gcm16-prfsha256-ecp256",
    "chacha20poly1305-prfsha256-x25519",
]
MODERN_ESP = ["aes256gcm16-x25519", "aes256gcm16-ecp256", "chacha20poly1305-x25519"]
V1_ENTRY = {"ikelab_tunnels": [{"peer": "site2", "version": 1}]}


def ends(p: Any) -> list[dict[str, Any]]:
    return [e for entries in p.hosts.values() for e in entries]


def by_tunnel(p: Any) -> dict[str, dict[str, Any]]:
    return {t["id"]: t for t in p.tunnels}


# --- built-in proposals: compat for IKEv1 ---------------------------------------------------------


def test_v1_tunnel_with_default_proposals_plans_compat_and_negotiates() -> None:
    p = plan(inventory(2, site1=V1_ENTRY))
    (tunnel,) = p.tunnels
    for e in ends(p):
        assert e["version"] == 1
        assert e["ike_proposals"] == COMPAT_IKE
        assert e["esp_proposals"] == COMPAT_ESP
    neg = tunnel["negotiated"]
    assert neg["ike"]["proposal"] == "aes256-sha256-modp2048"
    assert (neg["ike"]["encryption"], neg["ike"]["dh"]) == ("AES_CBC_256", "MODP_2048")
    assert neg["esp"]["proposal"] == "aes256-sha256"
    assert neg["esp_rekey_dh"] is None
    assert neg["reverse"]["ike"]["proposal"] == "aes256-sha256-modp2048"


def test_the_role_default_version_gives_every_tunnel_compat() -> None:
    """``ikelab_ike_version: 1`` reaches the planner as ``defaults.version`` (a templated value
    may be the string "1", which the agent reads as 1)."""
    for version in (1, "1"):
        p = plan(inventory(3), topology=MESH, defaults={"version": version})
        assert len(p.tunnels) == 3
        assert {tuple(e["ike_proposals"]) for e in ends(p)} == {tuple(COMPAT_IKE)}
        assert {tuple(e["esp_proposals"]) for e in ends(p)} == {tuple(COMPAT_ESP)}


def test_host_options_on_both_ends_give_compat() -> None:
    hv = inventory(2, **{h: {"ikelab_tunnel_options": {"version": 1}} for h in ("site1", "site2")})
    p = plan(hv, topology=MESH)
    assert [e["ike_proposals"] for e in ends(p)] == [COMPAT_IKE, COMPAT_IKE]


def test_only_the_v1_tunnels_of_a_host_change() -> None:
    hv = inventory(3, site1={"ikelab_tunnels": [{"peer": "site2", "version": 1}]})
    p = plan(hv, topology=MESH)
    got = {(e["tunnel_id"], e["name"]): e["ike_proposals"] for e in ends(p)}
    assert got[("site1--site2", "site2")] == COMPAT_IKE
    assert got[("site1--site2", "site1")] == COMPAT_IKE
    for tid, name in (("site1--site3", "site3"), ("site2--site3", "site2")):
        assert got[(tid, name)] == MODERN_IKE
    tunnels = by_tunnel(p)
    assert tunnels["site1--site2"]["negotiated"]["ike"]["proposal"] == "aes256-sha256-modp2048"
    assert tunnels["site1--site3"]["negotiated"]["ike"]["proposal"] == MODERN_IKE[0]


def test_one_end_defaulted_one_named_compatible_negotiates() -> None:
    """A named IKEv1-capable set on one end meets the other end's built-in compat."""
    hv = inventory(
        2,
        site1=V1_ENTRY,
        site2={"ikelab_ike_proposals": "aes128-sha256-modp2048", "ikelab_esp_proposals": "compat"},
    )
    p = plan(hv)
    (tunnel,) = p.tunnels
    entries = {e["name"]: e for e in ends(p)}
    assert entries["site2"]["ike_proposals"] == COMPAT_IKE  # site1's end, built in
    assert entries["site1"]["ike_proposals"] == ["aes128-sha256-modp2048"]  # site2's own
    assert tunnel["negotiated"]["ike"]["proposal"] == "aes128-sha256-modp2048"


def test_planned_v1_entries_render_a_configuration_the_agent_accepts() -> None:
    p = plan(inventory(2, site1=V1_ENTRY))
    for host, planned in p.hosts.items():
        (params,) = tunnel_set_entries(planned, with_keys=False)
        cfg = parse_config(yaml.safe_load(tc.render(tc.TunnelSpec.from_params(params), PSK)))
        (conn,) = cfg.connections.values()
        assert conn.version == 1, host
        assert [format_proposal(x) for x in conn.proposals] == COMPAT_IKE


# --- named proposals that IKEv1 cannot express ----------------------------------------------------


def test_v1_with_a_named_modern_profile_is_a_problem_of_that_field() -> None:
    hv = inventory(2, site1={**V1_ENTRY, "ikelab_ike_proposals": "modern"})
    lines = problems(hv)
    assert len(lines) == 1, lines  # no follow-up "no common proposal"
    line = lines[0]
    assert line.startswith(
        "host site1, tunnel site1--site2, field ikelab_ike_proposals: cannot be used with IKEv1"
    )
    for kw in MODERN_IKE:
        assert kw in line
    assert "AEAD ciphers are not defined for IKEv1" in line
    assert "compat profile" in line


def test_v1_with_modern_esp_names_only_chacha20() -> None:
    """AES-GCM is defined for ESP in IKEv1 (RFC 4106 section 8.1); ChaCha20-Poly1305 is not."""
    hv = inventory(2, site2={"ikelab_esp_proposals": "modern"})
    lines = problems(hv, topology=MESH, defaults={"version": 1})
    line = only(lines, "IKEv1")
    assert line.startswith("host site2, tunnel site1--site2, field ikelab_esp_proposals: ")
    assert "chacha20poly1305-x25519 (chacha20poly1305: not defined for ESP in IKEv1)" in line
    assert "aes256gcm16-x25519" not in line


def test_v1_with_modern_in_the_defaults_names_the_defaults_for_each_end() -> None:
    lines = problems(
        inventory(2), topology=MESH, defaults={"version": 1, "ike_proposals": "modern"}
    )
    assert [line.split(": ", 1)[0] for line in lines] == [
        f"host {h}, tunnel site1--site2, field defaults.ike_proposals" for h in ("site1", "site2")
    ]


def test_v1_with_an_aead_keyword_in_the_tunnel_entry_names_the_entry() -> None:
    entry = {"peer": "site2", "version": 1, "ike_proposals": ["aes256gcm16-prfsha256-modp2048"]}
    lines = problems(inventory(2, site1={"ikelab_tunnels": [entry]}))
    line = only(lines, "IKEv1")
    assert line.startswith("host site1, tunnel site1--site2, field ikelab_tunnels[0].ike_proposals")
    assert "aes256gcm16-prfsha256-modp2048 (aes256gcm16: AEAD" in line


def test_v1_with_cbc_keywords_is_planned_as_given() -> None:
    hv = inventory(
        2,
        site1={
            **V1_ENTRY,
            "ikelab_ike_proposals": ["aes128-sha384-ecp256"],
            "ikelab_esp_proposals": "aes128-sha384-ecp256",
        },
        site2={
            "ikelab_ike_proposals": "aes256-sha256-modp2048,aes128-sha384-ecp256",
            "ikelab_esp_proposals": ["aes128-sha384-ecp256"],
        },
    )
    p = plan(hv)
    entries = {e["name"]: e for e in ends(p)}
    assert entries["site2"]["ike_proposals"] == ["aes128-sha384-ecp256"]
    assert entries["site2"]["esp_proposals"] == ["aes128-sha384-ecp256"]
    neg = p.tunnels[0]["negotiated"]
    assert neg["ike"]["proposal"] == "aes128-sha384-ecp256"
    # IKEv1: the first Quick Mode already carries the PFS exchange, so its group is negotiated
    assert neg["esp"]["proposal"] == "aes128-sha384-ecp256"
    assert neg["esp_rekey_dh"] == "ECP_256"


def test_v1_first_quick_mode_needs_the_same_pfs_group() -> None:
    """With IKEv2 only the rekey fails on a PFS mismatch; with IKEv1 the first Child SA does."""
    hv = inventory(
        2,
        site1={"ikelab_esp_proposals": "aes256-sha256-modp2048"},
        site2={"ikelab_esp_proposals": "aes256-sha256"},
    )
    lines_v2 = problems(hv, topology=MESH)
    assert lines_v2 and all("first Child SA would come up" in line for line in lines_v2)
    lines_v1 = problems(hv, topology=MESH, defaults={"version": 1})
    assert lines_v1 and all(
        "no common ESP proposal between site1 and site2 in either role" in line for line in lines_v1
    )


def test_ends_on_different_versions_report_the_disagreement_only() -> None:
    hv = inventory(2, site2={"ikelab_tunnel_options": {"version": "1"}})
    lines = problems(hv, topology=MESH)
    assert len(lines) == 1, lines
    assert "the ends disagree: version is 2 on site1" in lines[0]


# --- IKEv2 unchanged ------------------------------------------------------------------------------


@pytest.mark.parametrize("defaults", [None, {"version": 2}, {"version": None}])
def test_v2_keeps_modern_by_default(defaults: dict[str, Any] | None) -> None:
    p = plan(inventory(2), topology=MESH, defaults=defaults)
    for e in ends(p):
        assert e["ike_proposals"] == MODERN_IKE
        assert e["esp_proposals"] == MODERN_ESP
    assert p.tunnels[0]["negotiated"]["ike"]["proposal"] == MODERN_IKE[0]


def test_v2_accepts_named_modern() -> None:
    hv = inventory(2, site1={"ikelab_ike_proposals": "modern", "ikelab_esp_proposals": "modern"})
    p = plan(hv, topology=MESH)
    assert p.tunnels[0]["negotiated"]["esp"]["proposal"] == "aes256gcm16"


# --- one authority: the planner's verdict is the agent schema's -----------------------------------


def _schema_refuses(ike: str, esp: str) -> bool:
    conn = {
        "version": 1,
        "local_addrs": ["192.0.2.1"],
        "remote_addrs": ["192.0.2.2"],
        "proposals": [ike],
        "local": {"auth": "psk", "id": "a.invalid"},
        "remote": {"auth": "psk", "id": "b.invalid"},
        "children": {
            "net": {
                "local_ts": ["10.1.0.0/24"],
                "remote_ts": ["10.2.0.0/24"],
                "esp_proposals": [esp],
            }
        },
    }
    try:
        parse_config({"connections": {"c": conn}})
    except ConfigError:
        return True
    return False


CASES = [(kind, t) for by_kind in PROFILES.values() for kind, ts in by_kind.items() for t in ts]
CASES += [
    (Kind.ESP, "aes128gcm16"),
    (Kind.ESP, "chacha20poly1305"),
    (Kind.IKE, "aes128gcm16-prfsha256-modp2048"),
    (Kind.IKE, "aes256-sha512-x25519"),
]


@pytest.mark.parametrize(("kind", "text"), CASES)
def test_planner_and_agent_schema_agree(kind: Kind, text: str) -> None:
    (proposal,) = resolve(text, kind)
    planner_refuses = bool(ikev1_unusable((proposal,), kind))
    ike, esp = (text, "aes256-sha256") if kind is Kind.IKE else ("aes256-sha256-modp2048", text)
    assert planner_refuses == _schema_refuses(ike, esp)
    assert planner_refuses == ("gcm" in text and kind is Kind.IKE or "chacha" in text)
