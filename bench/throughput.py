"""Throughput through a tunnel in the standard topology: iperf3 TCP from hostA to hostB.

A row is a label and one peer factory per gateway (``ikelab_testing.peers.PeerFactory``), so
any pair of IKE daemons can be measured the same way::

    measure("ikeagent <-> ikeagent", agent_peer, agent_peer)
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass

from ikelab_testing.netns import Lab, Site, Topology, TopologySpec
from ikelab_testing.peers import End, PeerFactory, Tunnel, TunnelSpec

IPERF_PORT = 5201


@dataclass(frozen=True, slots=True)
class ThroughputResult:
    label: str
    mbit_s: float
    retransmits: int
    seconds: float
    setup_ms: float | None
    ike_proposal: str
    esp_proposal: str
    error: str = ""

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


class PlainRouting:
    """A "peer" without IPsec: the gateway routes the other subnet over the underlay.

    Gives the veth/forwarding ceiling the tunnels are compared with."""

    label = "plain"

    def __init__(self, end: End) -> None:
        self.end = end

    def initiate(self) -> None:
        for site, peer in ((self.end.site, self.end.peer), (self.end.peer, self.end.site)):
            _route(site, peer)

    def wait_up(self, timeout: float) -> None:
        return None

    def sas_text(self) -> str:
        return "(no IPsec)"

    def stop(self) -> int | None:
        return 0


def _route(site: Site, peer: Site) -> None:
    site.gw.add_route(peer.subnet, gateway=peer.outer)


def plain_peer(end: End) -> PlainRouting:
    return PlainRouting(end)


def responder_only(end: End) -> PlainRouting:
    """The B side of the plain row (A adds the routes of both)."""
    return PlainRouting(end)


def measure(
    label: str,
    factory_a: PeerFactory,
    factory_b: PeerFactory,
    *,
    seconds: float = 8.0,
    spec: TunnelSpec | None = None,
    topology_spec: TopologySpec | None = None,
) -> ThroughputResult:
    """Build a fresh lab, bring the tunnel up and run iperf3 hostA -> hostB for ``seconds``."""
    spec = spec or TunnelSpec()
    setup_ms: float | None = None
    with Lab() as lab:
        topo = Topology(lab, topology_spec).build()
        with Tunnel(topo, factory_a, factory_b, spec) as tunnel:
            try:
                setup_ms = tunnel.up(timeout=30) * 1000
                mbit, retrans = _iperf(lab, topo, seconds)
            except Exception as exc:
                return ThroughputResult(
                    label,
                    0.0,
                    0,
                    seconds,
                    setup_ms,
                    spec.proposals[0],
                    spec.esp_proposals[0],
                    error=f"{type(exc).__name__}: {exc}".splitlines()[0],
                )
    return ThroughputResult(
        label, mbit, retrans, seconds, setup_ms, spec.proposals[0], spec.esp_proposals[0]
    )


def _iperf(lab: Lab, topo: Topology, seconds: float) -> tuple[float, int]:
    work = lab.workdir("iperf")
    log = work / "server.log"
    server_addr = topo.spec.host_b_addr
    with log.open("wb") as out:
        server = topo.host_b.spawn(
            ["iperf3", "-s", "-1", "--forceflush", "-B", server_addr, "-p", str(IPERF_PORT)],
            stdout=out,
        )
    deadline = time.monotonic() + 5
    while "listening" not in log.read_text(errors="replace"):
        if server.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"iperf3 server did not start: {log.read_text()}")
        time.sleep(0.05)
    proc = topo.host_a.run(
        ["iperf3", "-c", server_addr, "-p", str(IPERF_PORT), "-t", str(seconds), "-O", "1", "-J"],
        check=False,
        timeout=seconds + 30,
    )
    lab.stop(server)
    data = json.loads(proc.stdout or "{}")
    if proc.returncode != 0 or "error" in data:
        raise RuntimeError(f"iperf3 failed: {data.get('error', proc.stderr.strip())}")
    end = data["end"]
    mbit = end["sum_received"]["bits_per_second"] / 1e6
    retrans = int(end["sum_sent"].get("retransmits", 0))
    return mbit, retrans
