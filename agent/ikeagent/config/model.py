"""The validated agent configuration, as the engine and runtime consume it.

``ikeagent.config.schema.load_config(path)`` / ``parse_config(mapping)`` turn the YAML file
(swanctl vocabulary) into these frozen objects; every error names the field's path.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from ikeagent.crypto.suites import Proposal
from ikeagent.dataplane.base import TrafficSelector


class StartAction(Enum):
    NONE = "none"
    START = "start"
    TRAP = "trap"


class AuthMethod(Enum):
    PSK = "psk"
    PUBKEY = "pubkey"


@dataclass(frozen=True, slots=True)
class Identity:
    """An IKE identity as strongSwan writes it ("192.0.2.1", "@gw.example", "user@example",
    "C=CH, O=x, CN=y"), with its ID type (IKEv2 ID Type numbers: 1 IPV4_ADDR, 2 FQDN,
    3 RFC822_ADDR, 5 IPV6_ADDR, 9 DER_ASN1_DN, 11 KEY_ID) and the bytes of its ID data."""

    text: str
    id_type: int
    data: bytes

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True, slots=True)
class PrivateKey:
    """A private key named in ``secrets.private<suffix>`` (or found in the ``private/`` folder
    beside the config file). ``key`` is the ``cryptography`` private key object, or None when
    the file was refused; ``problem`` then says why (e.g. readable by group or others), so
    an authentication that needs it fails with that reason."""

    name: str
    path: str
    key: Any = field(repr=False, compare=False)
    spki: bytes = b""  # DER SubjectPublicKeyInfo of the matching public key ("" if unknown)
    problem: str | None = None

    def __repr__(self) -> str:
        state = f"refused: {self.problem}" if self.problem else "loaded"
        return f"PrivateKey({self.name!r}, {self.path!r}, {state})"


@dataclass(frozen=True, slots=True)
class AuthConfig:
    """One authentication round (swanctl ``local``/``remote``).

    For ``auth: pubkey``:
    - local: ``certs`` holds our certificate first, then any intermediate CA certificates we
      send along (``cryptography.x509.Certificate`` objects); ``key`` the private key whose
      public key is that of ``certs[0]`` (None: no such key configured; a PrivateKey with
      ``problem`` set: configured but refused).
    - remote: ``cacerts`` are the trust anchors the peer's chain must end in; ``certs``
      (optional) pins the peer's end-entity certificate; ``crls`` are
      ``cryptography.x509.CertificateRevocationList`` objects; ``revocation`` is swanctl's
      policy: ``strict`` (a CRL must be present and current for every CA in the chain),
      ``ifuri`` (strict for certificates that name a CRL distribution point; we fetch nothing,
      so their CRL must be among the files), ``relaxed`` (check the CRLs we have).
    """

    auth: AuthMethod = AuthMethod.PSK
    id: Identity | None = None  # None: the local/remote address (local) or any (remote)
    certs: tuple[Any, ...] = ()
    cacerts: tuple[Any, ...] = ()
    crls: tuple[Any, ...] = ()
    revocation: str = "relaxed"
    key: PrivateKey | None = None


@dataclass(frozen=True, slots=True)
class ChildConfig:
    name: str
    local_ts: tuple[TrafficSelector, ...]
    remote_ts: tuple[TrafficSelector, ...]
    esp_proposals: tuple[Proposal, ...]
    start_action: StartAction = StartAction.NONE
    mode: str = "tunnel"
    rekey_time: float = 3600.0  # seconds; 0 disables
    life_time: float = 0.0  # hard limit; 0 = rekey_time * 1.1
    rekey_bytes: int = 0
    life_bytes: int = 0
    rekey_packets: int = 0
    life_packets: int = 0
    rand_time: float = 0.0  # jitter subtracted from rekey_time; 0 = (life - rekey)
    replay_window: int = 64
    inactivity: float = 0.0
    dpd_action: str = "clear"
    close_action: str = "none"


@dataclass(frozen=True, slots=True)
class ConnectionConfig:
    name: str
    version: int  # 1 or 2
    local_addrs: tuple[str, ...]  # IPs or hostnames; empty = any
    remote_addrs: tuple[str, ...]  # IPs or hostnames; empty = any (responder only)
    proposals: tuple[Proposal, ...]
    local: AuthConfig
    remote: AuthConfig
    children: dict[str, ChildConfig]
    local_port: int = 500
    remote_port: int = 500
    dpd_delay: float = 0.0  # seconds; 0 disables liveness checks
    dpd_timeout: float = 0.0  # IKEv1 only
    rekey_time: float = 14400.0  # IKE SA rekey; 0 disables
    over_time: float = 0.0  # hard limit after rekey_time; 0 = 10% of rekey_time
    rand_time: float = 0.0
    reauth_time: float = 0.0
    encap: bool = False  # force UDP encapsulation (fake NAT-D)
    mobike: bool = True
    fragmentation: bool = True
    aggressive: bool = False  # IKEv1
    allow_aggressive_psk: bool = False  # IKEv1 Aggressive Mode with PSK needs this explicit opt-in
    keyingtries: int = 1  # 0 = forever
    unique: str = "no"
    inactivity_close_ike: bool = False  # close the IKE SA when its last child went idle

    def __repr__(self) -> str:
        return f"ConnectionConfig({self.name!r}, v{self.version}, {self.local_addrs}->{self.remote_addrs})"


@dataclass(frozen=True, slots=True)
class SharedSecret:
    name: str
    ids: tuple[Identity, ...]  # empty: matches any identity
    secret: bytes = field(repr=False)

    def __repr__(self) -> str:
        return f"SharedSecret({self.name!r}, ids={[str(i) for i in self.ids]}, secret=<hidden>)"


@dataclass(frozen=True, slots=True)
class AgentConfig:
    connections: dict[str, ConnectionConfig]
    secrets: tuple[SharedSecret, ...] = ()
    private_keys: tuple[PrivateKey, ...] = ()
    # agent-wide settings (optional "agent:" section)
    log_level: str = "info"
    dataplane: str = "auto"  # userspace | xfrm | auto | memory
    # xfrm only: routes to the remote traffic selectors in a table of the agent's own, as
    # strongSwan's charon.install_routes / routing_table / routing_table_prio
    install_routes: bool = True
    routing_table: int = 220
    routing_priority: int = 220
    port: int = 500  # UDP port the agent listens on for IKE (strongSwan charon.port)
    natt_port: int = 4500  # UDP port for NAT-T / non-ESP-marker IKE and ESP (charon.port_nat_t)
    cookie_threshold: int = 30  # half-open IKE SAs before COOKIEs are demanded
    fragment_size: int = 1280  # bytes of an IKE message before it is fragmented (RFC 7383)
    keep_alive: float = 20.0  # NAT-T keepalive interval while behind a NAT (0: off)
    retransmit_timeout: float = 1.0
    retransmit_tries: int = 5
    retransmit_base: float = 1.8

    def warnings(self) -> list[str]:
        """Problems that do not stop the configuration from loading but will make some
        authentication fail: private keys that were refused, and the connections needing them."""
        out = []
        for k in self.private_keys:
            if k.problem is None:
                continue
            users = [c.name for c in self.connections.values() if c.local.key is k]
            uses = f"; connection(s) {', '.join(users)} cannot authenticate" if users else ""
            out.append(f"private key {k.name} not loaded: {k.problem}{uses}")
        return out

    def find_psk(self, local_id: Identity | None, remote_id: Identity | None) -> bytes | None:
        """The best-matching PSK for a pair of identities, as swanctl matches secrets: a secret
        listing both ids wins over one listing one of them, which wins over one with no ids."""
        best: tuple[int, bytes] | None = None
        wanted = [i for i in (local_id, remote_id) if i is not None]
        for s in self.secrets:
            if not s.ids:
                score = 1
            else:
                matched = sum(1 for i in s.ids if any(_same_id(i, w) for w in wanted))
                if matched == 0:
                    continue
                score = 1 + matched * 2
            if best is None or score > best[0]:
                best = (score, s.secret)
        return None if best is None else best[1]


def _same_id(a: Identity, b: Identity) -> bool:
    return a.id_type == b.id_type and a.data == b.data
