"""The agent against strongSwan's charon with IKEv1: the ISAKMP SA replaced by a new Phase 1
(IKEv1 has no IKE SA rekey; the new SA adopts the IPsec SAs, make-before-break) started by each
side under a continuous ping, dead peer detection (RFC 3706) when charon vanishes, and garbage
that carries the IKEv1 version byte."""

from __future__ import annotations

import os
import signal

import pytest
from test_charon_ikev1 import dump, peers, v1_spec
from tunnels import BackgroundPing, agent_of, charon_of, installed_pairs_agent, wait_for

from ikelab_testing.agent import Agent
from ikelab_testing.checks import assert_passes
from ikelab_testing.peers import AgentPeer, End, Tunnel, agent_config, charon_peer

pytestmark = [pytest.mark.netns, pytest.mark.interop]


def isakmp_sas(agent) -> list[tuple[str, str]]:
    return [(s["spi_i"], s["spi_r"]) for s in agent.agent.list_sas() if s["state"] == "ESTABLISHED"]


@pytest.mark.parametrize("who", ["agent", "charon"])
@pytest.mark.parametrize("agent_role", ["initiator", "responder"])
def test_isakmp_sa_replaced_under_ping(topology, agent_role: str, who: str) -> None:
    spec = v1_spec("main")
    tunnel = Tunnel(topology, *peers(agent_role), spec).start()
    try:
        tunnel.up(timeout=15)
        agent, charon = agent_of(tunnel), charon_of(tunnel)
        conn = agent.end.conn_name
        before = isakmp_sas(agent)
        assert len(before) == 1
        ping = BackgroundPing(topology.host_a, topology.spec.host_b_addr)
        if who == "agent":
            agent.agent.ikectl("rekey", "--ike", conn, json_output=False)
        else:
            charon.charon.rekey(ike=charon.end.conn_name)

        def replaced() -> bool:
            now = isakmp_sas(agent)
            theirs = [s for s in charon.charon.list_sas().values() if s["state"] == "ESTABLISHED"]
            return (
                len(now) == 1
                and now != before
                and len(agent.agent.list_sas()) == 1
                and len(theirs) == 1
                and len(installed_pairs_agent(agent)) >= 1
            )

        wait_for(replaced, 45, f"the ISAKMP SA replaced by {who} on both sides")
        sent, received, out = ping.stop()
        assert sent >= 10 and received == sent, f"lost {sent - received} during the rekey\n{out}"
        assert_passes(topology, count=2)
    except BaseException:
        dump(tunnel)
        print(charon_of(tunnel).charon.log_text()[-15000:])
        raise
    finally:
        tunnel.stop()


class DpdAgent(AgentPeer):
    """The agent with DPD: R-U-THERE after 2 s without a word from the peer, dead after 6 s."""

    def __init__(self, end: End) -> None:
        self.end = end
        config = agent_config(end)
        config["connections"][end.conn_name].update(dpd_delay=2, dpd_timeout=6)
        self.agent = Agent(end.site.gw, config, end.topology.lab)
        self.agent.start()


def test_dpd_keeps_a_live_peer_and_notices_a_vanished_one(topology) -> None:
    spec = v1_spec("main")
    tunnel = Tunnel(topology, DpdAgent, charon_peer, spec).start()
    try:
        agent, charon = agent_of(tunnel), charon_of(tunnel)
        tunnel.up(timeout=15)
        before = isakmp_sas(agent)
        # an idle but live peer answers R-U-THERE: after several DPD rounds all is still up
        wait_for(
            lambda: agent.agent.status()["stats"]["engine"].get("ikev1_dpd_sent", 0) >= 2,
            15,
            "two R-U-THERE sent",
        )
        assert isakmp_sas(agent) == before
        assert "N(DPD_ACK)" in charon.charon.log_text()  # charon answered our R-U-THERE
        proc = charon.charon.proc
        os.killpg(proc.pid, signal.SIGKILL)
        wait_for(lambda: agent.agent.list_sas() == [], 30, "the agent to declare charon dead")
        assert "dead" in agent.agent.log_text()
    except BaseException:
        dump(tunnel)
        raise
    finally:
        tunnel.stop()


NOT_DROPS = ("ikev1_retransmits", "ikev1_deletes_sent", "ikev1_dpd_sent", "ikev1_dpd_answered")


def test_ikev1_garbage_is_dropped_counted_and_service_continues(topology) -> None:
    """Random datagrams with the IKEv1 version byte, on 500 and 4500 (after the non-ESP marker):
    each is counted once as dropped, and the tunnel with charon keeps working and rekeying."""
    import pickle
    import random
    import subprocess
    import sys

    from test_charon_ikev2 import drop_counts

    def drops() -> int:
        return sum(v for k, v in drop_counts(agent).items() if k.split(".", 1)[1] not in NOT_DROPS)

    tunnel = Tunnel(topology, charon_peer, DpdAgent, v1_spec("main")).start()
    try:
        tunnel.up(timeout=15)
        agent = agent_of(tunnel)
        before = drops()
        rng = random.Random(7)
        datagrams = [
            bytes(rng.randrange(256) for _ in range(rng.randrange(28, 400))) for _ in range(150)
        ]
        datagrams = [d[:17] + b"\x10" + d[18:] for d in datagrams]  # ISAKMP version 1.0
        script = (
            "import socket,sys,pickle,time\n"
            "ds=pickle.loads(sys.stdin.buffer.read())\n"
            "s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n"
            f"for port in (500,4500):\n for d in ds:\n  s.sendto((b'\\0\\0\\0\\0'+d) if port==4500 else d,('{topology.spec.gw_b_outer}',port))\n"
            "  time.sleep(0.002)\n"
        )
        subprocess.run(
            topology.gw_a.argv([sys.executable, "-c", script]),
            input=pickle.dumps(datagrams),
            check=True,
            timeout=30,
        )
        expected = before + 2 * len(datagrams)
        wait_for(lambda: drops() >= expected, 15, "garbage counted")
        assert drops() == expected
        assert_passes(topology, count=3)
        pairs = installed_pairs_agent(agent)
        agent.agent.ikectl("rekey", "--child", agent.end.conn_name, json_output=False)
        wait_for(
            lambda: installed_pairs_agent(agent) and installed_pairs_agent(agent).isdisjoint(pairs),
            10,
            "a Quick Mode rekey after the garbage",
        )
        assert_passes(topology, count=3)
    except BaseException:
        dump(tunnel)
        raise
    finally:
        tunnel.stop()
