"""The agent against strongSwan's charon with IKEv1 (RFC 2409): Main Mode and Aggressive Mode
with a PSK, Quick Mode with and without PFS, the agent as initiator and as responder.

charon's kernel-libipsec data plane forces NAT-T (RFC 3947): NAT-D payloads that claim a NAT, a
float to port 4500 and ESP in UDP (RFC 3948), so the agent must do all three.  charon runs with
``delete_rekeyed = yes`` (peers.IKEV1_OPTIONS): after a Quick Mode rekey it started, it deletes
the old SAs at once.  The harness itself is proven by test_charon_baseline_ikev1.py."""

from __future__ import annotations

import contextlib
import dataclasses
import re
import time
from typing import Any

import pytest
from tunnels import (
    DH_NAMES,
    IKE_NAMES,
    BackgroundPing,
    agent_children,
    agent_of,
    charon_of,
    installed_pairs_agent,
    installed_pairs_charon,
    print_logs,
    wait_for,
    with_spec,
)

from ikeagent.config.errors import ConfigError
from ikeagent.config.schema import parse_config
from ikelab_testing.agent import Agent, AgentError
from ikelab_testing.charon import CharonError
from ikelab_testing.checks import assert_blocked, assert_encrypted, assert_passes
from ikelab_testing.peers import (
    AgentPeer,
    CharonPeer,
    End,
    Tunnel,
    TunnelSpec,
    agent_config,
    agent_peer,
    charon_peer,
)

pytestmark = [pytest.mark.netns, pytest.mark.interop]

MODES = ["main", "aggressive"]
ROLES = ["initiator", "responder"]
# IKE proposal, ESP proposal (the second with PFS)
SUITES = [
    ("aes256-sha256-modp2048", "aes256-sha256"),
    ("aes128-sha1-modp2048", "aes128-sha1-modp2048"),
]
INTEG_NAMES = {"sha256": "HMAC_SHA2_256_128", "sha1": "HMAC_SHA1_96"}
PRF_NAMES = {"sha256": "PRF_HMAC_SHA2_256", "sha1": "PRF_HMAC_SHA1"}
# how charon logs the Phase 1 exchange (it generates or parses the first message of it)
EXCHANGE = {"main": "ID_PROT", "aggressive": "AGGRESSIVE"}


def v1_spec(mode: str, ike: str = SUITES[0][0], esp: str = SUITES[0][1]) -> TunnelSpec:
    return TunnelSpec(
        version=1, aggressive=mode == "aggressive", proposals=(ike,), esp_proposals=(esp,)
    )


def peers(agent_role: str):
    return (agent_peer, charon_peer) if agent_role == "initiator" else (charon_peer, agent_peer)


def fast_charon(end: End) -> CharonPeer:
    """charon that gives up on an unanswered exchange after a few seconds (default: ~90 s)."""
    return CharonPeer(end, options={"retransmit_timeout": "1", "retransmit_tries": "2"})


def fast_agent(end: End) -> AgentPeer:
    """The agent giving up on an unanswered exchange after about 6 s (default: about 40 s)."""
    return AgentPeer(end, settings={"retransmit_timeout": 0.5, "retransmit_tries": 3})


def dump(tunnel: Tunnel) -> None:
    print_logs(tunnel.peer_a, tunnel.peer_b)


def initiate(tunnel: Tunnel) -> None:
    """Start Phase 1 and 2 from A; a failure is expected and reported by the caller's checks."""
    a = tunnel.peer_a
    if isinstance(a, AgentPeer):
        a.agent.ikectl_raw("up", a.end.conn_name, "--timeout", "15", timeout=30)
    else:
        with contextlib.suppress(CharonError):  # charon reports the failure: expected
            a.charon.initiate(a.end.spec.child, timeout=8)


def charon_children(charon: CharonPeer) -> list[dict[str, Any]]:
    return charon.charon.children()


def established(charon: CharonPeer) -> list[dict[str, Any]]:
    return [s for s in charon.charon.list_sas().values() if s.get("state") == "ESTABLISHED"]


def nothing_up(agent: AgentPeer, charon: CharonPeer) -> bool:
    """No ISAKMP SA and no IPsec SA on the agent; none established and no child on charon."""
    return agent.agent.list_sas() == [] and not established(charon) and not charon_children(charon)


def warnings_naming(agent: AgentPeer, *names: str) -> list[str]:
    """The agent's WARNING/ERROR log lines that name one of ``names`` (the peer)."""
    return [
        line
        for line in agent.agent.log_text().splitlines()
        if re.search(r"\b(WARNING|ERROR)\b", line) and any(n in line for n in names)
    ]


# --- a working tunnel ---------------------------------------------------------------------------


@pytest.mark.parametrize("agent_role", ROLES)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("ike,esp", SUITES, ids=[f"{s[0]}/{s[1]}" for s in SUITES])
def test_ikev1_tunnel_with_charon(
    topology, capture_factory, agent_role: str, mode: str, ike: str, esp: str
) -> None:
    spec = v1_spec(mode, ike, esp)
    cap = capture_factory(topology.gw_a, "wan0")
    tunnel = Tunnel(topology, *peers(agent_role), spec).start()
    try:
        assert_blocked(topology)
        tunnel.up(timeout=15)
        a_to_b = assert_passes(topology, count=3)
        b_to_a = topology.host_b.ping(topology.spec.host_a_addr, count=3)
        assert a_to_b.received == 3 and b_to_a.received == 3, (a_to_b, b_to_a)

        agent, charon = agent_of(tunnel), charon_of(tunnel)
        encr, integ, dh = ike.split("-")
        esp_parts = esp.split("-")
        esp_dh = DH_NAMES[esp_parts[2]] if len(esp_parts) == 3 else None

        [ike_sa] = agent.agent.list_sas()
        assert (ike_sa["version"], ike_sa["mode"]) == (1, mode)
        assert (ike_sa["state"], ike_sa["role"]) == ("ESTABLISHED", agent_role)
        assert ike_sa["encryption"] == IKE_NAMES[encr][0]
        assert ike_sa["integrity"] == INTEG_NAMES[integ]
        assert ike_sa["prf"] == PRF_NAMES[integ]
        assert ike_sa["dh"] == DH_NAMES[dh]
        assert ike_sa["remote_id"] == agent.end.remote_id
        assert ike_sa["nat_remote"] and ike_sa["remote_port"] == 4500  # floated (RFC 3947)
        [child] = ike_sa["children"]
        assert (child["state"], child["protocol"], child["encap"]) == ("INSTALLED", "ESP", True)
        assert child["encryption"] == IKE_NAMES[esp_parts[0]][0]
        assert child["integrity"] == INTEG_NAMES[esp_parts[1]]
        assert child["dh"] == esp_dh
        assert child["local_ts"] == [agent.end.site.subnet]
        assert child["remote_ts"] == [agent.end.peer.subnet]
        assert child["packets_in"] >= 3 and child["packets_out"] >= 3

        [theirs] = charon.charon.list_sas().values()
        assert (theirs["version"], theirs["state"]) == ("1", "ESTABLISHED")
        assert (theirs["encr-alg"], theirs["encr-keysize"]) == IKE_NAMES[encr][1:]
        assert theirs["integ-alg"] == INTEG_NAMES[integ]
        assert theirs["dh-group"] == DH_NAMES[dh]
        assert theirs["remote-id"] == charon.end.remote_id
        [cchild] = theirs["child-sas"].values()
        assert (cchild["state"], cchild["encap"]) == ("INSTALLED", "yes")
        assert cchild["integ-alg"] == INTEG_NAMES[esp_parts[1]]
        assert cchild.get("dh-group") == esp_dh
        assert installed_pairs_agent(agent) == installed_pairs_charon(charon)
        assert f"{EXCHANGE[mode]} request" in charon.charon.log_text()

        summary = cap.summary()
        assert_encrypted(summary, topology, udp=True)
        assert summary.ike >= 2, f"no IKE exchange on the underlay:\n{summary}"
        text = agent.sas_text()
        assert "ESTABLISHED" in text and "INSTALLED" in text
    except BaseException:
        dump(tunnel)
        raise
    finally:
        codes = tunnel.stop()
    assert codes == {"a": 0, "b": 0}, codes


# --- Quick Mode rekey and delete ----------------------------------------------------------------


@pytest.mark.parametrize("agent_role", ROLES)
@pytest.mark.parametrize("mode", MODES)
def test_quick_mode_rekeys_from_both_sides_under_ping(topology, mode: str, agent_role: str) -> None:
    spec = v1_spec(mode, "aes256-sha256-modp2048", "aes128-sha1-modp2048")
    tunnel = Tunnel(topology, *peers(agent_role), spec).start()
    try:
        tunnel.up(timeout=15)
        agent, charon = agent_of(tunnel), charon_of(tunnel)
        conn = agent.end.conn_name
        isakmp = [(s["spi_i"], s["spi_r"]) for s in agent.agent.list_sas()]
        # (who, action, echoes it may lose): charon with delete_rekeyed removes its old inbound
        # SA the moment it sends the Delete, so an echo already in flight on the old SA can be
        # lost; that is charon's doing. The agent must lose nothing when it rekeys (it keeps
        # its old inbound SA until the peer has switched, as charon does in IKEv2)
        steps = [
            (
                "agent",
                lambda: agent.agent.ikectl("rekey", "--child", conn, json_output=False),
                0,
            ),
            ("charon", lambda: charon.charon.rekey(child=spec.child), 1),
        ]
        for who, action, may_lose in steps:
            before = installed_pairs_agent(agent)
            ping = BackgroundPing(topology.host_a, topology.spec.host_b_addr)
            time.sleep(0.5)
            action()

            def done(before=before) -> bool:
                pairs = installed_pairs_agent(agent)
                return (
                    len(pairs) == 1
                    and pairs.isdisjoint(before)
                    and pairs == installed_pairs_charon(charon)
                    # the old SAs are gone on both sides, not merely unused
                    and len(agent_children(agent)) == 1
                    and len(charon_children(charon)) == 1
                )

            wait_for(done, 10, f"Quick Mode rekey started by {who} to complete on both sides")
            sent, received, out = ping.stop()
            assert sent >= 10 and sent - received <= may_lose, (
                f"{who}'s rekey lost {sent - received} of {sent} echoes\n{out}"
            )
            # Phase 2 rekeying leaves the ISAKMP SA alone
            assert [(s["spi_i"], s["spi_r"]) for s in agent.agent.list_sas()] == isakmp
            assert len(charon.charon.list_sas()) == 1
        assert_passes(topology, count=2)
    except BaseException:
        dump(tunnel)
        raise
    finally:
        tunnel.stop()


@pytest.mark.parametrize("deleter", ["agent", "charon"])
@pytest.mark.parametrize("agent_role", ROLES)
@pytest.mark.parametrize("mode", MODES)
def test_quick_mode_delete_keeps_isakmp_sa(
    topology, mode: str, agent_role: str, deleter: str
) -> None:
    spec = v1_spec(mode)
    tunnel = Tunnel(topology, *peers(agent_role), spec).start()
    try:
        tunnel.up(timeout=15)
        agent, charon = agent_of(tunnel), charon_of(tunnel)
        if deleter == "agent":
            # ikectl down CHILD terminates one IPsec SA pair, as swanctl --terminate --child
            agent.agent.ikectl("down", spec.child, json_output=False)
        else:
            charon.charon.terminate(child=spec.child)
        wait_for(
            lambda: agent_children(agent) == [] and charon_children(charon) == [],
            10,
            "no IPsec SA left on either side",
        )
        [ike_sa] = agent.agent.list_sas()
        assert ike_sa["state"] == "ESTABLISHED" and ike_sa["version"] == 1
        assert len(established(charon)) == 1
        assert_blocked(topology)

        # the ISAKMP SA still works: a new Quick Mode from the side that deleted
        if deleter == "agent":
            agent.agent.up(spec.child)
        else:
            charon.charon.initiate(spec.child)
        wait_for(
            lambda: (
                installed_pairs_agent(agent)
                and installed_pairs_agent(agent) == installed_pairs_charon(charon)
            ),
            10,
            "a new IPsec SA pair on the same ISAKMP SA",
        )
        assert len(agent.agent.list_sas()) == 1
        assert_passes(topology, count=2)
    except BaseException:
        dump(tunnel)
        raise
    finally:
        tunnel.stop()


# --- bad input ----------------------------------------------------------------------------------

# (mode, agent role): in Aggressive Mode with charon initiating, charon finds the agent's HASH_R
# wrong and just stops; the agent only sees a half-open exchange expire, so that case is left out
WRONG_PSK_CASES = [("main", "initiator"), ("main", "responder"), ("aggressive", "initiator")]


@pytest.mark.parametrize(
    "mode,agent_role", WRONG_PSK_CASES, ids=[f"{m}-{r}" for m, r in WRONG_PSK_CASES]
)
def test_wrong_psk_leaves_no_sa(topology, mode: str, agent_role: str) -> None:
    wrong = b"a-different-psk-for-charon-only-0123456789"
    charon_factory = with_spec(fast_charon, psk=wrong)
    fa, fb = (
        (fast_agent, charon_factory) if agent_role == "initiator" else (charon_factory, fast_agent)
    )
    tunnel = Tunnel(topology, fa, fb, v1_spec(mode)).start()
    try:
        agent, charon = agent_of(tunnel), charon_of(tunnel)
        initiate(tunnel)
        peer_names = (agent.end.peer.outer, agent.end.remote_id)
        wait_for(
            lambda: warnings_naming(agent, *peer_names),
            20,
            "a warning in the agent's log naming the peer",
        )
        wait_for(lambda: nothing_up(agent, charon), 30, "no SA on either side")
        # the agent did take part in Phase 1 (the failure is the PSK, not a missing exchange)
        assert re.search(rf"parsed {EXCHANGE[mode]} (request|response)", charon.charon.log_text())
        log = agent.agent.log_text()
        assert wrong.decode() not in log and agent.end.spec.psk.decode() not in log
        assert wrong.hex() not in log and agent.end.spec.psk.hex() not in log
        assert_blocked(topology)
    except BaseException:
        dump(tunnel)
        raise
    finally:
        tunnel.stop()


NO_PROPOSAL = re.compile(r"NO_PROPOSAL_CHOSEN|no acceptable proposal", re.IGNORECASE)


@pytest.mark.parametrize("agent_role", ROLES)
@pytest.mark.parametrize("phase", [1, 2])
def test_proposal_mismatch(topology, phase: int, agent_role: str) -> None:
    if phase == 1:
        theirs = {"proposals": ("aes128-sha1-modp2048",)}
        ours = {"proposals": ("aes256-sha256-modp2048",)}
    else:
        theirs = {"esp_proposals": ("aes128-sha1",)}
        ours = {"esp_proposals": ("aes256-sha256",)}
    fc, fa_ = with_spec(fast_charon, **theirs), with_spec(fast_agent, **ours)
    fa, fb = (fa_, fc) if agent_role == "initiator" else (fc, fa_)
    tunnel = Tunnel(topology, fa, fb, v1_spec("main")).start()
    try:
        agent, charon = agent_of(tunnel), charon_of(tunnel)
        initiate(tunnel)
        wait_for(
            lambda: NO_PROPOSAL.search(agent.agent.log_text()),
            20,
            "NO_PROPOSAL_CHOSEN / no acceptable proposal in the agent's log",
        )
        if phase == 1:
            wait_for(lambda: nothing_up(agent, charon), 20, "no SA on either side")
        else:  # Phase 1 succeeded; no IPsec SA was made
            wait_for(
                lambda: agent_children(agent) == [] and charon_children(charon) == [],
                10,
                "no IPsec SA on either side",
            )
        theirs_log = charon.charon.log_text()
        if agent_role == "responder":  # the agent told charon why
            assert "received NO_PROPOSAL_CHOSEN" in theirs_log
        else:
            assert re.search(r"no (matching )?proposal found", theirs_log)
        assert_blocked(topology)
    except BaseException:
        dump(tunnel)
        raise
    finally:
        tunnel.stop()


# --- configuration --------------------------------------------------------------------------------


def aggressive_config_without_opt_in(topology) -> dict[str, Any]:
    a, b = topology.sites()
    end = End(topology, a, b, v1_spec("aggressive"), initiator=True)
    config = agent_config(end)
    [conn] = config["connections"].values()
    assert conn["aggressive"] is True
    del conn["allow_aggressive_psk"]
    return config


def test_aggressive_psk_needs_explicit_opt_in(topology) -> None:
    """Aggressive Mode with a PSK exposes a hash an eavesdropper can attack offline; the agent
    refuses it unless the connection says allow_aggressive_psk: true."""
    config = aggressive_config_without_opt_in(topology)
    with pytest.raises(ConfigError) as err:
        parse_config(config)
    assert "allow_aggressive_psk" in str(err.value)
    # the daemon refuses to start with it, naming the field
    agent = Agent(topology.gw_a, config, topology.lab, name="agent-aggressive")
    try:
        with pytest.raises(AgentError) as start_err:
            agent.start(timeout=5)
        assert "allow_aggressive_psk" in str(start_err.value)
    finally:
        agent.stop()
    # with the opt-in it loads
    conn = next(iter(config["connections"].values()))
    parse_config({**config, "connections": {"site-b": {**conn, "allow_aggressive_psk": True}}})


def test_spec_carries_aggressive_into_both_configs(topology) -> None:
    """The harness puts Aggressive Mode and the PSK opt-in into both daemons' configs."""
    a, b = topology.sites()
    spec = v1_spec("aggressive")
    end = End(topology, a, b, spec, initiator=True)
    [conn] = agent_config(end)["connections"].values()
    assert (conn["version"], conn["aggressive"], conn["allow_aggressive_psk"]) == (1, True, True)
    parse_config(agent_config(end))
    main = End(topology, a, b, dataclasses.replace(spec, aggressive=False), initiator=True)
    [conn] = agent_config(main)["connections"].values()
    assert "aggressive" not in conn and "allow_aggressive_psk" not in conn
