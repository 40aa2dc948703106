"""Gateway peers behind one interface, so a tunnel can be built from any pair of IKE daemons.

A ``PeerFactory`` takes an ``End`` (one gateway's view of the tunnel: its site, the other site,
identities, proposals, a PSK, whether it initiates) and returns a started ``Peer``.  ``Tunnel``
puts two factories on the two sites of a ``Topology``::

    with Tunnel(topo, charon_peer, agent_peer) as tunnel:
        tunnel.up()
        topo.host_a.ping(topo.spec.host_b_addr)
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from ikelab_testing.agent import Agent, child_states
from ikelab_testing.charon import Charon, Child, Connection, Secret, wait_for
from ikelab_testing.netns import Site, Topology


def fresh_psk() -> bytes:
    """A new random PSK (32 bytes, printable) for one lab run; never logged."""
    return secrets.token_urlsafe(32).encode()


@dataclass(frozen=True, slots=True)
class TunnelSpec:
    version: int = 2
    proposals: tuple[str, ...] = ("aes256gcm16-prfsha256-x25519",)
    esp_proposals: tuple[str, ...] = ("aes256gcm16",)
    child: str = "net"
    psk: bytes = field(default_factory=fresh_psk, repr=False)
    aggressive: bool = False  # IKEv1 Aggressive Mode (both ends opt in to it with a PSK)


@dataclass(frozen=True, slots=True)
class End:
    """One gateway's side of a tunnel."""

    topology: Topology
    site: Site
    peer: Site
    spec: TunnelSpec
    initiator: bool

    @property
    def local_id(self) -> str:
        return f"gw-{self.site.name}.example"

    @property
    def remote_id(self) -> str:
        return f"gw-{self.peer.name}.example"

    @property
    def conn_name(self) -> str:
        return f"site-{self.peer.name}"


class Peer(Protocol):
    label: str

    def initiate(self) -> None: ...

    def wait_up(self, timeout: float) -> None: ...

    def sas_text(self) -> str: ...

    def stop(self) -> int | None: ...


PeerFactory = Callable[[End], Peer]


# --- strongSwan ---------------------------------------------------------------------------------


# charon refuses to respond to IKEv1 Aggressive Mode with a PSK unless this is set
AGGRESSIVE_PSK_OPTION = {"i_dont_care_about_security_and_use_aggressive_mode_psk": "yes"}
# IKEv1 only: after a Quick Mode rekey it started, charon deletes the old SAs (Delete payload)
# at once instead of keeping them until they expire, so a test sees the old SPIs go
IKEV1_OPTIONS = {"delete_rekeyed": "yes"}


class CharonPeer:
    label = "charon"

    def __init__(self, end: End, **charon_kwargs: Any) -> None:
        self.end = end
        spec = end.spec
        if spec.version == 1:
            aggressive = AGGRESSIVE_PSK_OPTION if spec.aggressive else {}
            options = {**IKEV1_OPTIONS, **aggressive, **charon_kwargs.pop("options", {})}
            charon_kwargs["options"] = options
        self.charon = Charon(end.site.gw, end.topology.lab, **charon_kwargs).start()
        conn = Connection(
            name=end.conn_name,
            version=spec.version,
            aggressive=True if spec.aggressive else None,
            local_addrs=[end.site.outer],
            remote_addrs=[end.peer.outer],
            local_id=end.local_id,
            remote_id=end.remote_id,
            proposals=spec.proposals,
            children=[
                Child(
                    spec.child,
                    [end.site.subnet],
                    [end.peer.subnet],
                    esp_proposals=spec.esp_proposals,
                )
            ],
        )
        ids = sorted([end.local_id, end.remote_id])
        self.charon.load([conn], [Secret("lab", ids, spec.psk)])

    def initiate(self) -> None:
        self.charon.initiate(self.end.spec.child)

    def wait_up(self, timeout: float) -> None:
        self.charon.wait_child_installed(self.end.spec.child, timeout)

    def sas_text(self) -> str:
        return self.charon.swanctl("--list-sas").stdout

    def stop(self) -> int | None:
        return self.charon.stop()


def charon_peer(end: End) -> CharonPeer:
    return CharonPeer(end)


# --- ikeagent -----------------------------------------------------------------------------------


def agent_config(
    end: End, start_action: str = "none", settings: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The agent's YAML config (swanctl vocabulary) for one end; ``settings`` is its ``agent:``
    section (e.g. faster retransmits), left out when None."""
    spec = end.spec
    aggressive = {"aggressive": True, "allow_aggressive_psk": True} if spec.aggressive else {}
    head = {"agent": dict(settings)} if settings else {}
    return {
        **head,
        "connections": {
            end.conn_name: {
                "version": spec.version,
                **aggressive,
                "local_addrs": [end.site.outer],
                "remote_addrs": [end.peer.outer],
                "proposals": list(spec.proposals),
                "local": {"auth": "psk", "id": end.local_id},
                "remote": {"auth": "psk", "id": end.remote_id},
                "children": {
                    spec.child: {
                        "local_ts": [end.site.subnet],
                        "remote_ts": [end.peer.subnet],
                        "esp_proposals": list(spec.esp_proposals),
                        "start_action": start_action,
                    }
                },
            }
        },
        "secrets": {
            "ike-lab": {
                "id": sorted([end.local_id, end.remote_id]),
                "secret": spec.psk.decode(),
            }
        },
    }


class AgentPeer:
    label = "ikeagent"

    def __init__(
        self, end: End, settings: Mapping[str, Any] | None = None, **agent_kwargs: Any
    ) -> None:
        self.end = end
        config = agent_config(end, settings=settings)
        self.agent = Agent(end.site.gw, config, end.topology.lab, **agent_kwargs)
        self.agent.start()

    def initiate(self) -> None:
        self.agent.up(self.end.conn_name)

    def installed(self) -> bool:
        states = child_states(self.agent.list_sas())
        return any(name == self.end.spec.child and st == "INSTALLED" for name, st in states)

    def wait_up(self, timeout: float) -> None:
        try:
            wait_for(self.installed, timeout, 0.1, f"{self.end.spec.child} INSTALLED")
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}\n--- agent log tail ---\n{self.agent.log_tail()}") from None

    def sas_text(self) -> str:
        return self.agent.ikectl("list-sas", json_output=False)

    def stop(self) -> int | None:
        return self.agent.stop()


def agent_peer(end: End) -> AgentPeer:
    return AgentPeer(end)


# --- a tunnel between two peers -----------------------------------------------------------------


class Tunnel:
    """Peers on site A (initiator) and site B (responder) of ``topology``."""

    def __init__(
        self,
        topology: Topology,
        factory_a: PeerFactory,
        factory_b: PeerFactory,
        spec: TunnelSpec | None = None,
    ) -> None:
        self.topology = topology
        self.spec = spec or TunnelSpec()
        a, b = topology.sites()
        self.end_a = End(topology, a, b, self.spec, initiator=True)
        self.end_b = End(topology, b, a, self.spec, initiator=False)
        self.factory_a = factory_a
        self.factory_b = factory_b
        self.peer_a: Peer | None = None
        self.peer_b: Peer | None = None
        self.setup_seconds: float | None = None

    def start(self) -> Tunnel:
        self.peer_b = self.factory_b(self.end_b)
        self.peer_a = self.factory_a(self.end_a)
        return self

    def up(self, timeout: float = 20.0) -> float:
        """Initiate from A and wait until both sides have the child INSTALLED; returns seconds."""
        if self.peer_a is None or self.peer_b is None:
            self.start()
        assert self.peer_a is not None and self.peer_b is not None
        t0 = time.monotonic()
        self.peer_a.initiate()
        self.peer_a.wait_up(timeout)
        self.peer_b.wait_up(timeout)
        self.setup_seconds = time.monotonic() - t0
        return self.setup_seconds

    def stop(self) -> dict[str, int | None]:
        codes = {}
        for key, peer in (("a", self.peer_a), ("b", self.peer_b)):
            if peer is not None:
                codes[key] = peer.stop()
        self.peer_a = self.peer_b = None
        return codes

    def __enter__(self) -> Tunnel:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
