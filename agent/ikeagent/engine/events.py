"""What the sans-I/O engine asks of its shell, and what it reports.

Engine API (``ikeagent.engine.core.Engine``), after aioquic's QuicConnection:

    engine = Engine(config: AgentConfig, rng: RandomSource, now: float)
    engine.load_config(config, now)            # apply differences (new/removed/changed conns)
    engine.initiate(conn_name, now)            # bring up the IKE SA and its children
    engine.terminate(conn_name, now)           # delete the IKE SA(s) of a connection
    engine.rekey(conn_name, now)               # rekey the IKE SA and its children
    engine.receive_datagram(data, local, remote, now)   # local/remote: (ip, port)
    engine.handle_timer(now)
    engine.handle_dataplane_event(event, now)  # SaExpired / Acquire / SaUsage from the data plane
    engine.datagrams_to_send() -> list[Datagram]
    engine.next_event() -> Event | None
    engine.get_timer() -> float | None         # next deadline (same clock as ``now``)
    engine.list_sas() -> list[IkeSaStatus]     # snapshot for ikectl (counters come from the
                                               # data plane, merged by the runtime)
    engine.stats() -> dict[str, int]           # dropped datagrams by reason, etc.

``now`` is a monotonic time in seconds; the engine imports no clock, socket, asyncio or random.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ikeagent.dataplane.base import ChildSa, Endpoint, TrapPolicy


@dataclass(frozen=True, slots=True)
class Datagram:
    """An IKE message to send. When ``local[1]`` / ``remote[1]`` is 4500 the shell adds the
    4-byte non-ESP marker (RFC 3948) and sends from its port-4500 socket."""

    data: bytes
    local: Endpoint
    remote: Endpoint
    raw: bool = False  # send as it is, without the non-ESP marker (NAT-T keepalives)


@dataclass(frozen=True, slots=True)
class InstallChild:
    sa: ChildSa


@dataclass(frozen=True, slots=True)
class DeleteChild:
    reqid: int
    spi_in: int
    spi_out: int


@dataclass(frozen=True, slots=True)
class ActivateOutbound:
    """Send the reqid's traffic on this pair from now on (it was installed with
    ``outbound_active`` False and the peer has not used it yet)."""

    reqid: int
    spi_in: int
    spi_out: int


@dataclass(frozen=True, slots=True)
class RemovePolicy:
    """Remove the reqid's policy (a trap's too), its routes and any SA pair left under it."""

    reqid: int


@dataclass(frozen=True, slots=True)
class InstallTrap:
    """Install a trap policy (``Dataplane.install_trap``): traffic it covers comes back as an
    ``Acquire`` with its reqid."""

    trap: TrapPolicy


@dataclass(frozen=True, slots=True)
class QueryUsage:
    """Read when this SA pair was last used and answer with
    ``handle_dataplane_event(SaUsage(...))`` (the engine checks a child's ``inactivity``)."""

    reqid: int
    spi_in: int
    spi_out: int


@dataclass(frozen=True, slots=True)
class IkeSaUp:
    name: str
    uid: int


@dataclass(frozen=True, slots=True)
class IkeSaDown:
    name: str
    uid: int
    reason: str


@dataclass(frozen=True, slots=True)
class ChildUp:
    name: str  # child name
    ike_name: str
    reqid: int


@dataclass(frozen=True, slots=True)
class ChildDown:
    name: str
    ike_name: str
    reqid: int
    reason: str


Event = (
    InstallChild
    | DeleteChild
    | ActivateOutbound
    | RemovePolicy
    | InstallTrap
    | QueryUsage
    | IkeSaUp
    | IkeSaDown
    | ChildUp
    | ChildDown
)


@dataclass(slots=True)
class ChildSaStatus:
    name: str
    reqid: int
    state: str  # "INSTALLED", "REKEYING", "REKEYED", "DELETING", "CREATING"
    mode: str  # "TUNNEL"
    protocol: str  # "ESP"
    encap: bool
    spi_in: int
    spi_out: int
    encryption: str  # "AES_GCM_16_256"
    integrity: str | None
    dh: str | None  # PFS group
    esn: bool
    local_ts: list[str]
    remote_ts: list[str]
    installed_at: float  # engine clock
    rekey_at: float | None
    expire_at: float | None
    inactivity: float = 0.0  # seconds idle before it is closed (0: never)


@dataclass(slots=True)
class IkeSaStatus:
    name: str
    uid: int
    version: int
    state: str  # "CONNECTING", "ESTABLISHED", "REKEYING", "DELETING", ...
    role: str  # "initiator" | "responder" (of the current IKE SA)
    local_addr: str
    local_port: int
    local_id: str
    remote_addr: str
    remote_port: int
    remote_id: str
    spi_i: int
    spi_r: int
    encryption: str
    integrity: str | None
    prf: str
    dh: str
    nat_local: bool
    nat_remote: bool
    established_at: float | None
    rekey_at: float | None
    mode: str | None = None  # IKEv1: "main" | "aggressive"
    children: list[ChildSaStatus] = field(default_factory=list)
    local_auth: str | None = None  # "psk" | "pubkey" once authenticated
    remote_auth: str | None = None
    remote_cert: str | None = None  # the peer certificate's subject DN (pubkey)
    expire_at: float | None = None  # hard lifetime (engine clock)
    reauth_at: float | None = None  # reauthentication due (IKEv2, reauth_time)


@dataclass(slots=True)
class TrapStatus:
    """A trap policy the engine holds (``ikectl list-sas`` shows them)."""

    name: str  # connection
    child: str
    reqid: int
    version: int
    local_ts: list[str]
    remote_ts: list[str]
    reason: str  # "start_action", "close_action", "dpd_action"
    acquires: int = 0  # Acquires it raised
    last_acquire: float | None = None  # engine clock
