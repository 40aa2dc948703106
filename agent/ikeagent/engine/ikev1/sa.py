"""The state an ISAKMP SA (Phase 1) and its IPsec SAs (Phase 2) carry between messages."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ikeagent.config.model import ChildConfig, ConnectionConfig, Identity
from ikeagent.dataplane.base import Endpoint
from ikeagent.engine.ikev2.selectors import TsRange
from ikeagent.engine.ikev2.state import ChildState, IkeState, check_child, check_ike

if TYPE_CHECKING:
    from ikeagent.crypto.dh import KeyExchange
    from ikeagent.crypto.v1.attributes import EspTransform, IkeTransform
    from ikeagent.crypto.v1.cipher import V1Cipher
    from ikeagent.crypto.v1.keymat import Phase1Keys

MAIN = "main"
AGGRESSIVE = "aggressive"


@dataclass(eq=False)
class Exchange:
    """One exchange of an SA (Phase 1 has message ID 0): its IV chain and what to resend.

    IKEv1 has no request/response flag: the side that waits for a message resends its last one
    when the timer passes, and a repeat of the message our last one answered gets that answer
    again (RFC 2409 leaves retransmission to the implementation)."""

    kind: str  # "main" | "aggressive" | "quick" | "info"
    message_id: int
    initiator: bool  # we started this exchange
    iv: bytes = b""
    step: int = 0  # messages handled so far (sent or received)
    last_sent: list[bytes] = field(default_factory=list)
    last_received: bytes | None = None
    answers: bytes | None = None  # the received message ``last_sent`` answers, if any
    deadline: float | None = None  # resend ``last_sent`` then, while we wait
    tries: int = 0
    done: bool = False
    forget_at: float | None = None  # drop the record of a finished exchange then
    task: Any = None  # the Quick Mode state of this exchange


@dataclass(eq=False)
class V1Child:
    config: ChildConfig
    reqid: int
    spi_in: int
    spi_out: int
    esp: EspTransform
    local_ts: TsRange
    remote_ts: TsRange
    encap: bool
    installed_at: float
    lineage: int
    rekey_at: float | None = None
    expire_at: float | None = None
    state: ChildState = ChildState.INSTALLED
    delete_at: float | None = None  # REKEYED: delete it ourselves if the peer never does
    idle_check_at: float | None = None  # ask the data plane when it was last used (inactivity)
    activate_at: float | None = None  # Quick Mode initiator: send on this pair from then on
    idle_base: float = 0.0  # the rekey chain's last known use (or its first install)
    idle_packets: int = 0  # its packet count (both directions) at the last check
    idle_checked: bool = False  # its use was read once already

    def set_state(self, new: ChildState) -> None:
        self.state = check_child(self.state, new)

    @property
    def name(self) -> str:
        return self.config.name


@dataclass(eq=False)
class V1Sa:
    uid: int
    conn: ConnectionConfig | None
    initiator: bool  # we sent the first message of Phase 1
    mode: str  # MAIN | AGGRESSIVE
    spi_i: int  # CKY-I
    spi_r: int  # CKY-R (0 until the responder's first message)
    local: Endpoint
    remote: Endpoint
    state: IkeState = IkeState.CREATED
    transform: IkeTransform | None = None
    keys: Phase1Keys | None = field(default=None, repr=False)
    cipher: V1Cipher | None = field(default=None, repr=False)
    ke: KeyExchange | None = None
    gxi: bytes = b""
    gxr: bytes = b""
    ni: bytes = b""
    nr: bytes = b""
    sai_b: bytes = b""  # body of the initiator's SA payload (HASH_I / HASH_R input)
    idii_b: bytes = b""  # Aggressive Mode responder: body of the initiator's ID payload
    offered: tuple[Any, ...] = ()  # our own Phase 1 transforms (initiator)
    psk: bytes | None = field(default=None, repr=False)
    peer_cert: Any = field(default=None, repr=False)  # the peer's verified certificate (pubkey)
    local_id: Identity | None = None
    remote_id: Identity | None = None
    natt: bool = False  # both sent the RFC 3947 vendor ID
    natt_draft: bool = False  # only a draft NAT-T vendor ID was seen
    dpd: bool = False  # the peer sent the DPD vendor ID
    nat_local: bool = False
    nat_remote: bool = False
    force_encap: bool = False
    iv: bytes = b""  # Phase 1 IV chain
    p1_last_block: bytes = b""  # the last Phase 1 CBC block: seed of every Phase 2 IV
    exchanges: dict[int, Exchange] = field(default_factory=dict)
    children: list[V1Child] = field(default_factory=list)
    pending_children: list[ChildConfig] = field(default_factory=list)
    child_retries: list[tuple[float, ChildConfig]] = field(default_factory=list)
    created_at: float = 0.0
    established_at: float | None = None
    rekey_at: float | None = None
    expire_at: float | None = None
    last_recv: float = 0.0
    dpd_at: float | None = None
    dpd_seq: int = 0
    dpd_waiting_since: float | None = None  # an R-U-THERE of ours is unanswered
    keepalive_at: float | None = None
    half_open_until: float | None = None
    delete_at: float | None = None  # REKEYED: delete it ourselves if the peer never does
    delete_reason: str = "replaced ISAKMP SA was not deleted by the peer"
    replaced_by: V1Sa | None = None
    initial_contact: bool = False  # the peer said it holds no other SA with us
    rekey_of: V1Sa | None = None  # the ISAKMP SA this new Phase 1 replaces
    deadline: float | None = None
    fail_reason: str | None = None
    keying_try: int = 1  # initiator: which attempt of the connection's keyingtries this is
    # message IDs of the Informationals and Quick Modes handled: one seen again is a replay
    seen_info: set[int] = field(default_factory=set)

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
    def cookies(self) -> bytes:
        return self.spi_i.to_bytes(8, "big") + self.spi_r.to_bytes(8, "big")

    @property
    def hash_id(self) -> int:
        assert self.transform is not None
        return self.transform.hash_id

    def peer_label(self) -> str:
        rid_v = self.remote_id or (
            self.conn.remote.id if self.conn is not None and self.initiator else None
        )
        rid = f" '{rid_v}'" if rid_v else ""
        return f"{self.name}[{self.uid}] {self.remote[0]}:{self.remote[1]}{rid}"

    def live_children(self) -> list[V1Child]:
        return [c for c in self.children if c.state is not ChildState.DESTROYED]

    def child_by_spi_in(self, spi: int) -> V1Child | None:
        return next((c for c in self.children if c.spi_in == spi), None)

    def child_by_spi_out(self, spi: int) -> V1Child | None:
        return next((c for c in self.children if c.spi_out == spi), None)
