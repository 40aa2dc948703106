"""The agent against strongSwan's charon (Debian packages, kernel-libipsec), IKEv2 with PSK,
the agent as initiator and as responder."""

from __future__ import annotations

import contextlib
import random
import time

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

from ikelab_testing.charon import CharonError
from ikelab_testing.checks import assert_blocked, assert_encrypted, assert_passes
from ikelab_testing.peers import Tunnel, TunnelSpec, agent_peer, charon_peer

pytestmark = [pytest.mark.netns, pytest.mark.interop]

SUITES = [
    ("aes256gcm16-prfsha256-x25519", "aes256gcm16"),
    ("aes256-sha256-modp2048", "aes256-sha256"),
    ("aes128-sha256-ecp256", "aes256gcm16"),
    ("chacha20poly1305-prfsha256-x25519", "aes256-sha256"),
]


def peers(agent_role: str):
    return (agent_peer, charon_peer) if agent_role == "initiator" else (charon_peer, agent_peer)


def dump(tunnel: Tunnel) -> None:
    print_logs(tunnel.peer_a, tunnel.peer_b)


@pytest.mark.parametrize("agent_role", ["initiator", "responder"])
@pytest.mark.parametrize("ike,esp", SUITES, ids=[s[0] + "/" + s[1] for s in SUITES])
def test_tunnel_with_charon(topology, capture_factory, agent_role: str, ike: str, esp: str) -> None:
    spec = TunnelSpec(proposals=(ike,), esp_proposals=(esp,))
    cap = capture_factory(topology.gw_a, "wan0")
    tunnel = Tunnel(topology, *peers(agent_role), spec).start()
    try:
        assert_blocked(topology)
        tunnel.up(timeout=15)
        a_to_b = assert_passes(topology, count=3)
        b_to_a = topology.host_b.ping(topology.spec.host_a_addr, count=3)
        assert a_to_b.received == 3 and b_to_a.received == 3, (a_to_b, b_to_a)

        agent, charon = agent_of(tunnel), charon_of(tunnel)
        [ike_sa] = agent.agent.list_sas()
        encr = ike.split("-")[0]
        assert ike_sa["state"] == "ESTABLISHED" and ike_sa["version"] == 2
        assert ike_sa["encryption"] == IKE_NAMES[encr][0]
        assert ike_sa["dh"] == DH_NAMES[ike.split("-")[-1]]
        assert ike_sa["role"] == agent_role
        [child] = ike_sa["children"]
        assert child["state"] == "INSTALLED" and child["protocol"] == "ESP" and child["encap"]
        assert child["encryption"] == IKE_NAMES[esp.split("-")[0]][0]
        assert child["packets_in"] >= 3 and child["packets_out"] >= 3
        assert child["bytes_in"] > 0 and child["bytes_out"] > 0

        [theirs] = charon.charon.list_sas().values()
        assert theirs["state"] == "ESTABLISHED"
        assert theirs["encr-alg"] == IKE_NAMES[encr][1]
        assert theirs["dh-group"] == DH_NAMES[ike.split("-")[-1]]
        [cchild] = theirs["child-sas"].values()
        assert cchild["state"] == "INSTALLED" and cchild["encap"] == "yes"
        assert installed_pairs_agent(agent) == installed_pairs_charon(charon)

        assert_encrypted(cap.summary(), topology, udp=True)
    except BaseException:
        dump(tunnel)
        raise
    finally:
        codes = tunnel.stop()
    assert codes == {"a": 0, "b": 0}, codes


@pytest.mark.parametrize("agent_role", ["initiator", "responder"])
def test_rekeys_from_both_sides_under_ping(topology, agent_role: str) -> None:
    spec = TunnelSpec(proposals=("aes256gcm16-prfsha256-x25519",), esp_proposals=("aes256gcm16",))
    tunnel = Tunnel(topology, *peers(agent_role), spec).start()
    try:
        tunnel.up(timeout=15)
        agent, charon = agent_of(tunnel), charon_of(tunnel)
        conn = agent.end.conn_name
        ping = BackgroundPing(topology.host_a, topology.spec.host_b_addr)
        steps = [
            (
                "agent child",
                lambda: agent.agent.ikectl("rekey", "--child", conn, json_output=False),
                "child",
            ),
            ("charon child", lambda: charon.charon.rekey(child=spec.child), "child"),
            (
                "agent ike",
                lambda: agent.agent.ikectl("rekey", "--ike", conn, json_output=False),
                "ike",
            ),
            ("charon ike", lambda: charon.charon.rekey(ike=charon.end.conn_name), "ike"),
        ]
        for what, action, kind in steps:
            before_child = installed_pairs_agent(agent)
            before_ike = {(s["spi_i"], s["spi_r"]) for s in agent.agent.list_sas()}
            action()

            def done(kind=kind, before_child=before_child, before_ike=before_ike) -> bool:
                sas = agent.agent.list_sas()
                pairs = installed_pairs_agent(agent)
                if kind == "child":
                    ok = (
                        pairs and pairs.isdisjoint(before_child) and len(agent_children(agent)) == 1
                    )
                else:
                    ok = len(sas) == 1 and {(s["spi_i"], s["spi_r"]) for s in sas}.isdisjoint(
                        before_ike
                    )
                    ok = ok and sas[0]["state"] == "ESTABLISHED" and len(sas[0]["children"]) == 1
                return (
                    bool(ok)
                    and pairs == installed_pairs_charon(charon)
                    and len(charon.charon.list_sas()) == 1
                )

            wait_for(done, 10, f"{what} rekey to complete on both sides")
        sent, received, out = ping.stop()
        assert sent >= 20 and received == sent, (
            f"lost packets during rekeys: {sent - received}\n{out}"
        )
    except BaseException:
        dump(tunnel)
        raise
    finally:
        tunnel.stop()


@pytest.mark.parametrize("deleter", ["agent", "charon"])
@pytest.mark.parametrize("agent_role", ["initiator", "responder"])
def test_delete_leaves_no_sa_on_either_side(topology, agent_role: str, deleter: str) -> None:
    tunnel = Tunnel(topology, *peers(agent_role), TunnelSpec()).start()
    try:
        tunnel.up(timeout=15)
        agent, charon = agent_of(tunnel), charon_of(tunnel)
        if deleter == "agent":
            agent.agent.ikectl("down", agent.end.conn_name, json_output=False)
        else:
            charon.charon.terminate(ike=charon.end.conn_name)
        wait_for(
            lambda: agent.agent.list_sas() == [] and charon.charon.list_sas() == {},
            10,
            "no SAs left",
        )
        assert_blocked(topology)
    except BaseException:
        dump(tunnel)
        raise
    finally:
        tunnel.stop()


@pytest.mark.parametrize("agent_role", ["initiator", "responder"])
def test_wrong_psk_authentication_failed(topology, agent_role: str) -> None:
    fa, fb = peers(agent_role)
    wrong = b"a-different-psk-for-charon-only-0123456789"
    if fa is charon_peer:
        fa = with_spec(charon_peer, psk=wrong)
    else:
        fb = with_spec(charon_peer, psk=wrong)
    tunnel = Tunnel(topology, fa, fb, TunnelSpec()).start()
    try:
        agent, charon = agent_of(tunnel), charon_of(tunnel)
        if agent_role == "initiator":
            agent.agent.ikectl_raw("up", agent.end.conn_name, timeout=20)
        else:
            with contextlib.suppress(CharonError):  # charon reports the failure: expected
                charon.charon.initiate(charon.end.spec.child, timeout=5)
        wait_for(
            lambda: "AUTHENTICATION_FAILED" in agent.agent.log_text(),
            10,
            "AUTHENTICATION_FAILED in the agent's log",
        )
        wait_for(
            lambda: agent.agent.list_sas() == [] and charon.charon.list_sas() == {},
            10,
            "no SAs left",
        )
        log = agent.agent.log_text()
        assert "gw-" in log  # the peer is named
        assert wrong.decode() not in log and agent.end.spec.psk.decode() not in log
        assert_blocked(topology)
    except BaseException:
        dump(tunnel)
        raise
    finally:
        tunnel.stop()


def test_no_common_proposal_logs_both_offers(topology) -> None:
    fa = with_spec(charon_peer, proposals=("aes128-sha256-modp2048",))
    fb = with_spec(agent_peer, proposals=("aes256gcm16-prfsha384-ecp384",))
    tunnel = Tunnel(topology, fa, fb, TunnelSpec()).start()
    try:
        agent, charon = agent_of(tunnel), charon_of(tunnel)
        with contextlib.suppress(CharonError):
            charon.charon.initiate(charon.end.spec.child, timeout=5)
        wait_for(
            lambda: "NO_PROPOSAL_CHOSEN" in agent.agent.log_text(),
            10,
            "NO_PROPOSAL_CHOSEN in the agent's log",
        )
        line = next(x for x in agent.agent.log_text().splitlines() if "NO_PROPOSAL_CHOSEN" in x)
        assert "AES_CBC_128" in line and "MODP_2048" in line  # what the peer offered
        assert "aes256gcm16-prfsha384-ecp384" in line  # what we accept
        assert "NO_PROPOSAL_CHOSEN" in charon.charon.log_text()
        assert agent.agent.list_sas() == []
    except BaseException:
        dump(tunnel)
        raise
    finally:
        tunnel.stop()


def drop_counts(agent) -> dict[str, int]:
    """Every counter of dropped input: the engine's, the data plane's drops, the receive path's."""
    stats = agent.agent.status()["stats"]
    out = {f"engine.{k}": v for k, v in stats["engine"].items() if k not in ("retransmits",)}
    passed = {"esp_in", "esp_out", "ike_in", "keepalive_in", "dummy_in"}
    out |= {f"dataplane.{k}": v for k, v in stats["dataplane"].items() if k not in passed}
    out |= {
        f"agent.{k}": v
        for k, v in stats["agent"].items()
        if k not in ("rx_ike", "tx_ike", "tx_keepalive")
    }
    return out


def test_garbage_is_dropped_counted_and_service_continues(topology) -> None:
    tunnel = Tunnel(topology, charon_peer, agent_peer, TunnelSpec()).start()
    try:
        tunnel.up(timeout=15)
        agent = agent_of(tunnel)
        target = topology.spec.gw_b_outer
        before_drops = drop_counts(agent)
        rng = random.Random(5)
        datagrams = [
            b"",
            b"\x01\x02",
            b"\x00" * 27,
            bytes(rng.randrange(256) for _ in range(60000)),
        ]
        for _ in range(200):
            n = rng.randrange(28, 400)
            d = bytearray(rng.randrange(256) for _ in range(n))
            d[17] = 0x20  # IKEv2 version byte: gets past the first check
            datagrams.append(bytes(d))
        script = (
            "import socket,sys,pickle\n"
            "ds=pickle.loads(sys.stdin.buffer.read())\n"
            "s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n"
            "import time\n"
            f"for port in (500,4500):\n for d in ds:\n  s.sendto((b'\\0\\0\\0\\0'+d) if port==4500 else d,('{target}',port))\n"
            # paced, so that the kernel's socket buffer never overflows: a datagram dropped
            # there never reaches the agent and could not be counted by it
            "  time.sleep(0.002)\n"
        )
        import pickle
        import subprocess
        import sys

        subprocess.run(
            topology.gw_a.argv([sys.executable, "-c", script]),
            input=pickle.dumps(datagrams),
            check=True,
            timeout=30,
        )
        expected = sum(before_drops.values()) + len(datagrams) * 2
        # the agent drains its sockets asynchronously: wait until it has seen them all
        wait_for(lambda: sum(drop_counts(agent).values()) >= expected, 15, "garbage counted")
        time.sleep(0.5)
        after = drop_counts(agent)
        # every datagram is counted once as a drop (by the engine, the data plane or the
        # receive path); none was taken for a real message
        assert sum(after.values()) - sum(before_drops.values()) == len(datagrams) * 2, (
            before_drops,
            after,
        )
        # the agent keeps serving: traffic still flows and a fresh rekey works
        assert_passes(topology, count=3)
        before = installed_pairs_agent(agent)
        agent.agent.ikectl("rekey", "--child", agent.end.conn_name, json_output=False)
        wait_for(
            lambda: (
                installed_pairs_agent(agent) and installed_pairs_agent(agent).isdisjoint(before)
            ),
            10,
            "rekey after garbage",
        )
        assert_passes(topology, count=3)
    except BaseException:
        dump(tunnel)
        raise
    finally:
        tunnel.stop()
