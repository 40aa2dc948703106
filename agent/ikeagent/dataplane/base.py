"""The data plane contract shared by the engine's shell and every backend.

The engine never touches a data plane: it emits events (see ``ikeagent.engine.events``) that the
runtime applies through a ``Dataplane``.  Three implementations follow this Protocol:
``userspace`` (TUN device + UDP-encapsulated ESP), ``xfrm`` (Linux kernel over netlink) and
``memory`` (a fake recording what it was told, for engine and runtime tests).

Algorithms are named by their IKEv2 IANA transform IDs (RFC 7296 section 3.3.2 and the IANA
"Internet Key Exchange Version 2 (IKEv2) Parameters" registry), which every IPsec stack shares:
ENCR_AES_CBC=12, ENCR_AES_GCM_16=20, ENCR_CHACHA20_POLY1305=28; AUTH_HMAC_SHA1_96=2,
AUTH_HMAC_SHA2_256_128=12, AUTH_HMAC_SHA2_384_192=13, AUTH_HMAC_SHA2_512_256=14.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Protocol, runtime_checkable

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address
# (ip, port) as the socket layer gives it
Endpoint = tuple[str, int]


@dataclass(frozen=True, slots=True)
class TrafficSelector:
    """One traffic selector: an address range, an IP protocol (0 = any) and a port range."""

    network: Network
    protocol: int = 0
    port_start: int = 0
    port_end: int = 65535

    def __str__(self) -> str:
        text = str(self.network)
        if self.protocol or (self.port_start, self.port_end) != (0, 65535):
            ports = (
                str(self.port_start)
                if self.port_start == self.port_end
                else f"{self.port_start}-{self.port_end}"
            )
            text += f"[{self.protocol}/{ports}]"
        return text


@dataclass(frozen=True, slots=True)
class Lifetime:
    """Limits after which the data plane reports an expiry (0 = no limit)."""

    soft_bytes: int = 0
    hard_bytes: int = 0
    soft_packets: int = 0
    hard_packets: int = 0


@dataclass(frozen=True, slots=True)
class SaKeys:
    """One direction of an ESP SA."""

    spi: int
    encr_id: int  # IKEv2 ENCR transform ID
    encr_key: bytes  # for AEAD algorithms: key || 4-byte salt (RFC 4106, RFC 7634)
    integ_id: int | None  # IKEv2 INTEG transform ID, None for AEAD
    integ_key: bytes = b""
    esn: bool = False

    def __repr__(self) -> str:  # keys never reach logs
        return f"SaKeys(spi=0x{self.spi:08x}, encr_id={self.encr_id}, integ_id={self.integ_id})"


@dataclass(frozen=True, slots=True)
class ChildSa:
    """A pair of ESP SAs (inbound and outbound) in tunnel mode between two gateways.

    ``reqid`` identifies the child's policy and is stable across rekeys: installing a new
    ChildSa with the same reqid adds a second pair (make-before-break) and switches outbound
    traffic to the newest pair; inbound SAs of both pairs keep working until deleted.
    ``encap`` gives the UDP ports when ESP is UDP-encapsulated (RFC 3948), else None.
    """

    reqid: int
    name: str  # child config name, for logs and listings
    local_addr: str
    remote_addr: str
    inbound: SaKeys
    outbound: SaKeys
    local_ts: tuple[TrafficSelector, ...]
    remote_ts: tuple[TrafficSelector, ...]
    encap: tuple[int, int] | None = None  # (local port, remote port)
    replay_window: int = 64
    lifetime: Lifetime = field(default_factory=Lifetime)
    # False: install the outbound SA but keep sending on the reqid's previous pair until the
    # first packet arrives on this pair's inbound SA (the peer uses it, so it has it) or the
    # previous pair is deleted. A rekey responder installs this way: the initiator installs
    # its inbound SA only when our response reaches it (RFC 7296 2.8; strongSwan does so too).
    outbound_active: bool = True

    def __repr__(self) -> str:
        return (
            f"ChildSa(reqid={self.reqid}, name={self.name!r}, in=0x{self.inbound.spi:08x}, "
            f"out=0x{self.outbound.spi:08x}, {self.local_ts}=={self.remote_ts})"
        )


@dataclass(frozen=True, slots=True)
class TrapPolicy:
    """The policy of a child that is not up yet (``start_action: trap``, or re-armed after
    inactivity, ``dpd_action: trap`` or ``close_action: trap``): the child's selectors and the
    reqid its SAs will have, with no SA under it.

    Traffic it covers raises an ``Acquire`` (once, then again only after ``ACQUIRE_RETRY``
    seconds while still no SA is installed) and is held in a bounded queue; when an SA pair of
    that reqid is installed, the held packets leave through it, in order. The policy stays
    when the reqid's SA pairs are deleted (the trap is armed again) and goes with
    ``remove_policy(reqid)``. ``local_addr`` is "" when the connection names no local address
    (the data plane then leaves the tunnel source to routing).
    """

    reqid: int
    name: str  # child config name, for logs and listings
    local_addr: str
    remote_addr: str
    local_ts: tuple[TrafficSelector, ...]
    remote_ts: tuple[TrafficSelector, ...]


# seconds after which a trap whose Acquire brought no SA raises another one for new traffic
ACQUIRE_RETRY = 5.0
# packets a trap holds while its SA is negotiated (the kernel's hold queue takes 100 as well)
TRAP_QUEUE_LIMIT = 100


@dataclass(frozen=True, slots=True)
class SaCounters:
    bytes_in: int = 0
    packets_in: int = 0
    bytes_out: int = 0
    packets_out: int = 0
    # monotonic time of the last packet in either direction, None when none yet
    last_used: float | None = None
    # False when ``last_used`` is only the time of the first packet (kernels before 6.2 keep
    # no per-packet time for an SA)
    last_used_exact: bool = True
    replay_drops: int = 0
    auth_failures: int = 0


class ExpireKind(Enum):
    SOFT = "soft"
    HARD = "hard"


@dataclass(frozen=True, slots=True)
class SaExpired:
    """A byte or packet lifetime of an inbound or outbound SA ran out (reported once per kind)."""

    reqid: int
    spi: int  # the SA's SPI (inbound or outbound)
    kind: ExpireKind


@dataclass(frozen=True, slots=True)
class Acquire:
    """Traffic hit a trap policy (``install_trap``) while no SA was installed under its reqid;
    ``src``/``dst`` are the addresses of the packet that did (for logs, and as the first,
    narrowest traffic selectors of the negotiation, RFC 7296 2.9)."""

    reqid: int
    src: str
    dst: str


@dataclass(frozen=True, slots=True)
class SaUsage:
    """How much an SA pair was used, read by the runtime from the data plane when the engine
    asks (``QueryUsage``) to decide whether the child is idle: ``last_used`` as in
    ``SaCounters`` and ``packets`` in both directions together (both None when the pair is
    gone). Where ``last_used`` is only the first use (``exact`` False: kernels before 6.2 keep
    no per-packet time), a count that grew since the last check means "used since"."""

    reqid: int
    spi_in: int
    spi_out: int
    last_used: float | None
    packets: int | None = None
    exact: bool = True  # SaCounters.last_used_exact


DataplaneEvent = SaExpired | Acquire | SaUsage

# Called by a data plane that owns the UDP-encapsulation socket for every datagram that is not
# ESP (i.e. IKE after the non-ESP marker was stripped): (data, local endpoint, remote endpoint).
# It may return an object with ``wait(timeout) -> bool`` (a ``threading.Event``) that is set once
# the message has been handled, SAs it installed included: ESP that came after it with an SPI
# not known yet waits for that (an IKE_AUTH answer, then the peer's first packet on its SA).
IkeSink = Callable[[bytes, Endpoint, Endpoint], Any]


@runtime_checkable
class Dataplane(Protocol):
    """What the runtime needs from a data plane. Methods are called from the runtime's event loop
    thread; implementations that run their own threads must be thread-safe behind this API."""

    name: str  # "userspace", "xfrm", "memory"

    def start(self) -> None:
        """Acquire devices and threads; reconcile leftovers of an earlier run."""

    def close(self) -> None:
        """Remove every SA, policy, route and device this instance installed."""

    def attach_encap_socket(self, sock: object, local: Endpoint, ike_sink: IkeSink) -> bool:
        """Offer the bound UDP socket for port 4500 (non-ESP-marker framing, RFC 3948).

        Return True when the data plane now reads this socket itself (it then passes IKE
        datagrams, marker stripped, to ``ike_sink``, and ESP never reaches the runtime); False
        when the runtime keeps reading it (e.g. the kernel handles ESP after UDP_ENCAP is set).
        """

    def install_child(self, sa: ChildSa) -> None:
        """Install both SAs of ``sa`` and (on the first pair of a reqid) its policy and routes."""

    def install_trap(self, trap: TrapPolicy) -> None:
        """Install the policy (and routes) of a reqid that has no SA yet: see ``TrapPolicy``.
        Installing a trap for a reqid that already has its policy changes nothing."""

    def activate_outbound(self, reqid: int, spi_in: int, spi_out: int) -> None:
        """Send the reqid's traffic on this pair from now on (installed with
        ``outbound_active`` False); its other pairs keep receiving until deleted."""

    def delete_child_sas(self, reqid: int, spi_in: int, spi_out: int) -> None:
        """Delete one SA pair; the policy of the reqid stays while other pairs remain."""

    def remove_policy(self, reqid: int) -> None:
        """Remove the policy and routes of a reqid and every SA pair left under it."""

    def counters(self, reqid: int, spi_in: int, spi_out: int) -> SaCounters:
        """Counters of one SA pair (KeyError when unknown)."""

    def poll_events(self) -> list[DataplaneEvent]:
        """Return (and forget) the events raised since the last call."""

    def set_event_callback(self, wakeup: Callable[[], None]) -> None:
        """Thread-safe hook the data plane calls after queueing an event, so the runtime wakes."""

    def stats(self) -> dict[str, int]:
        """Data-plane-wide counters (dropped packets by reason, etc.)."""
