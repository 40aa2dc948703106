"""The state an IKE SA and its Child SAs carry between messages."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ikeagent.config.model import ChildConfig, ConnectionConfig, Identity
from ikeagent.crypto.keymat import IkeKeys
from ikeagent.crypto.sk import SkCipher
from ikeagent.dataplane.base import Endpoint
from ikeagent.engine.ikev2.proposals import Chosen
from ikeagent.engine.ikev2.selectors import TsRange
from ikeagent.engine.ikev2.state import ChildState, IkeState, check_child, check_ike

if TYPE_CHECKING:
    from ikeagent.crypto.dh import KeyExchange


@dataclass(eq=False)
class ChildEntry:
    config: ChildConfig
    reqid: int
    spi_in: int
    spi_out: int
    chosen: Chosen
    local_ts: tuple[TsRange, ...]
    remote_ts: tuple[TsRange, ...]
    encap: bool
    installed_at: float
    rekey_at: float | None = None
    expire_at: float | None = None
    nonces: tuple[bytes, bytes] = (b"", b"")  # (Ni, Nr) of the exchange that created it
    state: ChildState = ChildState.INSTALLED
    peer_replacement: ChildEntry | None = None  # set when the peer rekeyed it during our rekey
    delete_at: float | None = None  # REKEYED: delete ourselves if the peer never does
    # the rekey chain this pair belongs to (the reqid may be shared with other chains)
    lineage: int = 0
    idle_check_at: float | None = None  # ask the data plane when it was last used (inactivity)
    idle_base: float = 0.0  # the rekey chain's last known use (or its first install)
    idle_packets: int = 0  # its packet count (both directions) at the last check
    idle_checked: bool = False  # its use was read once already
    order: int = 0  # when its pair went to the data plane, against other pairs (a counter)

    def set_state(self, new: ChildState) -> None:
        self.state = check_child(self.state, new)

    @property
    def name(self) -> str:
        return self.config.name


@dataclass(eq=False)
class Outstanding:
    """Our request in flight: what to resend and when."""

    task: Any
    message_id: int
    datagrams: list[bytes]
    tries: int
    deadline: float
    # a Delete of the IKE SA waits behind it: if it is not answered by ``deadline`` the Delete
    # takes its message ID instead of it being retransmitted again
    give_way: bool = False


@dataclass(eq=False)
class FragmentBuffer:
    total: int
    first_type: int = 0
    parts: dict[int, bytes] = field(default_factory=dict)
    deadline: float = 0.0


@dataclass(eq=False)
class IkeSa:
    uid: int
    conn: ConnectionConfig | None
    initiator: bool  # we sent the IKE_SA_INIT (or the rekey exchange that created this SA)
    spi_i: int
    spi_r: int
    local: Endpoint
    remote: Endpoint
    state: IkeState = IkeState.CREATED
    chosen: Chosen | None = None
    keys: IkeKeys | None = None
    sk_in: SkCipher | None = None
    sk_out: SkCipher | None = None
    ni: bytes = b""
    nr: bytes = b""
    ke: KeyExchange | None = None
    dh_group: int | None = None
    init_request: bytes = b""
    init_response: bytes = b""
    cookie: bytes | None = None
    ke_retries: int = 0
    local_id: Identity | None = None
    remote_id: Identity | None = None
    nat_local: bool = False  # we are behind a NAT
    nat_remote: bool = False  # the peer is behind a NAT
    force_encap: bool = False
    frag_supported: bool = False
    candidates: tuple[ConnectionConfig, ...] = ()  # responder: conns matching the addresses
    init_offer: tuple[Any, ...] = ()  # responder: the initiator's IKE proposals
    rekeyed_by_peer: IkeSa | None = None  # the SA that replaced it when the peer rekeyed it
    replaced_by: IkeSa | None = None
    peer_deleted: bool = False  # the peer deleted it while our rekey of it was in flight
    # message IDs (window size 1 in each direction)
    next_msgid: int = 0
    expected_msgid: int = 0
    last_response: tuple[int, list[bytes]] | None = None
    outstanding: Outstanding | None = None
    queue: deque[Any] = field(default_factory=deque)
    fragments: dict[tuple[bool, int], FragmentBuffer] = field(default_factory=dict)
    children: list[ChildEntry] = field(default_factory=list)
    created_at: float = 0.0
    established_at: float | None = None
    rekey_at: float | None = None
    expire_at: float | None = None  # hard lifetime: rekey_time + over_time after it came up
    reauth_at: float | None = None  # reauthenticate (a new IKE SA takes over), see reauth.py
    reauth_of: IkeSa | None = None  # the IKE SA this one reauthenticates (until it takes over)
    last_recv: float = 0.0
    dpd_at: float | None = None
    keepalive_at: float | None = None  # next NAT-T keepalive (RFC 3948 2.3) while behind a NAT
    half_open_until: float | None = None
    # responder: its key in Engine.half_open (the IKE_SA_INIT's source: ``remote`` may float)
    half_open_key: tuple[int, str, int] | None = None
    delete_at: float | None = None  # REKEYED SAs: destroy if the peer never deletes
    closing: str | None = None  # why a Delete of this SA waits behind its exchange in flight
    pending_children: list[ChildConfig] = field(default_factory=list)
    # child name -> (source, destination) of the packet that asked for it (an acquire): its
    # selectors go first in the child's TSi/TSr (RFC 7296 2.9)
    packet_hints: dict[str, tuple[str, str]] = field(default_factory=dict)
    child_retries: list[tuple[float, ChildConfig]] = field(default_factory=list)
    deadline: float | None = None  # the earliest timer of this SA, as last pushed
    fail_reason: str | None = None
    keying_try: int = 1  # initiator: which attempt of the connection's keyingtries this is
    # certificate authentication (RFC 7427): the peer's SIGNATURE_HASH_ALGORITHMS hash IDs,
    # the auth method class each side used ("psk"/"pubkey"), the peer's validated certificate
    peer_hashes: tuple[int, ...] = ()
    local_auth: str | None = None
    remote_auth: str | None = None
    peer_cert: Any = None

    def set_state(self, new: IkeState) -> None:
        self.state = check_ike(self.state, new)

    @property
    def name(self) -> str:
        return self.conn.name if self.conn else "(unknown)"

    @property
    def our_spi(self) -> int:
        return self.spi_i if self.initiator else self.spi_r

    @property
    def encap(self) -> bool:
        return self.nat_local or self.nat_remote or self.force_encap

    @property
    def prf_id(self) -> int:
        assert self.chosen is not None and self.chosen.prf is not None
        return self.chosen.prf.id

    def peer_label(self) -> str:
        rid_v = self.remote_id or (
            self.conn.remote.id if self.conn is not None and self.initiator else None
        )
        rid = f" '{rid_v}'" if rid_v else ""
        return f"{self.name}[{self.uid}] {self.remote[0]}:{self.remote[1]}{rid}"

    def live_children(self) -> list[ChildEntry]:
        return [c for c in self.children if c.state not in (ChildState.DESTROYED,)]

    def child_by_spi_in(self, spi: int) -> ChildEntry | None:
        return next((c for c in self.children if c.spi_in == spi), None)

    def child_by_spi_out(self, spi: int) -> ChildEntry | None:
        return next((c for c in self.children if c.spi_out == spi), None)
