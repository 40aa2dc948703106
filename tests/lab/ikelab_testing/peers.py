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
from pathlib import Path
from typing import Any, Protocol

from ikelab_testing.agent import Agent, child_states
from ikelab_testing.charon import Charon, Child, Connection, KeyFile, Secret, wait_for
from ikelab_testing.netns import Lab, Site, Topology
from ikelab_testing.pki import Issued, TestPki


def fresh_psk() -> bytes:
    """A new random PSK (32 bytes, printable) for one lab run; never logged."""
    # a leading letter: a secret written as "0x..." or "0s..." means hex or base64 to swanctl
    # and the agent, and token_urlsafe starts that way about once in 2000 draws
    return ("k" + secrets.token_urlsafe(32)).encode()


@dataclass(frozen=True, slots=True)
class EndCredentials:
    """What one gateway authenticates with under ``auth: pubkey``."""

    cert: Issued  # our end-entity certificate
    key_path: Path  # its private key file (maybe a copy with another mode)
    intermediates: tuple[Issued, ...] = ()  # sent after our certificate
    cacerts: tuple[Path, ...] = ()  # the anchors the peer's chain must end in
    crls: tuple[Path, ...] = ()
    revocation: str | None = None  # strict | ifuri | relaxed (None: the daemon's default)


def ca_key_type(key_type: str) -> str:
    """The CA's key type for end-entity certificates of ``key_type`` (no RSA 4096 CA)."""
    return "rsa" if key_type.startswith("rsa") else key_type


class TunnelPki:
    """The CA both ends of a tunnel trust and each gateway's certificate, made on first use in a
    directory of the lab.  ``set`` replaces one gateway's credentials (the failure cases)::

        spec = TunnelSpec(auth="pubkey")
        pki = spec.pki.attach(topology.lab)
        old = pki.issue(spec.pki.root(), "gw-b.example", ["gw-b.example"],
                        not_before=..., not_after=...)
        spec.pki.set("gw-b.example", spec.pki.default_for(old))
    """

    __slots__ = ("_pki", "_roots", "_creds")

    def __init__(self) -> None:
        self._pki: TestPki | None = None
        self._roots: dict[str, Issued] = {}
        self._creds: dict[str, EndCredentials] = {}

    def __repr__(self) -> str:
        return f"TunnelPki({self._pki.directory if self._pki else 'not attached'})"

    def attach(self, lab: Lab) -> TestPki:
        """The TestPki, made in a fresh directory of ``lab`` the first time."""
        if self._pki is None:
            self._pki = TestPki(lab.workdir("pki"))
        return self._pki

    @property
    def pki(self) -> TestPki:
        if self._pki is None:
            raise RuntimeError("TunnelPki.attach(lab) first")
        return self._pki

    def root(self, key_type: str = "rsa") -> Issued:
        """The tunnel's root CA with a ``key_type`` key (one per key type)."""
        if key_type not in self._roots:
            self._roots[key_type] = self.pki.ca(f"Lab Root CA {key_type}", key_type)
        return self._roots[key_type]

    def default_for(self, cert: Issued, key_type: str = "rsa", **changes: Any) -> EndCredentials:
        """Credentials for ``cert``: its key, its issuers below the root sent as intermediates,
        and the tunnel's root CA for ``key_type`` as the CA the peer must chain to (so a gateway
        whose own certificate is bad still trusts the other one); ``changes`` override."""
        fields: dict[str, Any] = {
            "cert": cert,
            "key_path": cert.key_path,
            "intermediates": tuple(cert.chain()[1:-1]),
            "cacerts": (self.root(ca_key_type(key_type)).cert_path,),
        }
        return EndCredentials(**{**fields, **changes})

    def set(self, identity: str, creds: EndCredentials) -> None:
        """Use ``creds`` for the gateway whose IKE identity is ``identity``."""
        self._creds[identity] = creds

    def credentials(self, end: End) -> EndCredentials:
        """``end``'s credentials: set ones, else a certificate for its identity (subject CN and
        dNSName SAN) of the spec's key type, issued by the root, made once."""
        if end.local_id not in self._creds:
            self.attach(end.topology.lab)
            root = self.root(ca_key_type(end.spec.key_type))
            sans = [end.fqdn] + ([end.local_id] if end.spec.id_kind in ("ip", "email") else [])
            cert = self.pki.issue(root, end.fqdn, sans, end.spec.key_type)
            self._creds[end.local_id] = self.default_for(cert, end.spec.key_type)
        return self._creds[end.local_id]


@dataclass(frozen=True, slots=True)
class TunnelSpec:
    version: int = 2
    proposals: tuple[str, ...] = ("aes256gcm16-prfsha256-x25519",)
    esp_proposals: tuple[str, ...] = ("aes256gcm16",)
    child: str = "net"
    psk: bytes = field(default_factory=fresh_psk, repr=False)
    aggressive: bool = False  # IKEv1 Aggressive Mode (both ends opt in to it with a PSK)
    auth: str = "psk"  # psk | pubkey (certificates from ``pki``)
    key_type: str = "rsa"  # rsa | rsa4096 | ecdsa-p256 | ecdsa-p384 | ed25519
    fragmentation: bool = False  # IKEv2 RFC 7383 fragmentation on both ends
    # the gateways' IKE identities: fqdn gw-<site>.example, ip (the outer address), email
    # gw@<site>.example, dn O=ikelab, CN=gw-<site>.example; certificates carry them (subject
    # CN and dNSName gw-<site>.example, plus the address or email as subjectAltName)
    id_kind: str = "fqdn"
    pki: TunnelPki = field(default_factory=TunnelPki, repr=False, compare=False)


@dataclass(frozen=True, slots=True)
class End:
    """One gateway's side of a tunnel."""

    topology: Topology
    site: Site
    peer: Site
    spec: TunnelSpec
    initiator: bool

    @property
    def fqdn(self) -> str:
        return f"gw-{self.site.name}.example"

    @property
    def local_id(self) -> str:
        return identity_of(self.site, self.spec.id_kind)

    @property
    def remote_id(self) -> str:
        return identity_of(self.peer, self.spec.id_kind)

    @property
    def conn_name(self) -> str:
        return f"site-{self.peer.name}"

    @property
    def credentials(self) -> EndCredentials:
        """This gateway's certificate, key and trusted CAs (``auth: pubkey``)."""
        return self.spec.pki.credentials(self)


def identity_of(site: Site, kind: str) -> str:
    """A gateway's IKE identity of the given kind (see TunnelSpec.id_kind)."""
    fqdn = f"gw-{site.name}.example"
    return {
        "fqdn": fqdn,
        "ip": site.outer,
        "email": f"gw@{site.name}.example",
        "dn": f"O=ikelab, CN={fqdn}",
    }[kind]


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

    def __init__(
        self,
        end: End,
        *,
        credentials: EndCredentials | None = None,
        child_options: Mapping[str, Any] | None = None,
        conn_options: Mapping[str, Any] | None = None,
        **charon_kwargs: Any,
    ) -> None:
        """``child_options``/``conn_options``: further swanctl keys of the child and the
        connection (``start_action``, ``inactivity``, ``dpd_delay``, ...)."""
        self.end = end
        spec = end.spec
        if spec.version == 1:
            aggressive = AGGRESSIVE_PSK_OPTION if spec.aggressive else {}
            options = {**IKEV1_OPTIONS, **aggressive, **charon_kwargs.pop("options", {})}
            charon_kwargs["options"] = options
        self.charon = Charon(end.site.gw, end.topology.lab, **charon_kwargs).start()
        auth: dict[str, Any] = {}
        secrets: list[Secret | KeyFile]
        if spec.auth == "pubkey":
            auth, secrets = self._install_credentials(credentials or end.credentials)
        else:
            ids = sorted([end.local_id, end.remote_id])
            secrets = [Secret("lab", ids, spec.psk)]
        if spec.fragmentation:
            auth["fragmentation"] = "yes"
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
                    extra=dict(child_options or {}),
                )
            ],
            extra=dict(conn_options or {}),
            **auth,
        )
        self.charon.load([conn], secrets)

    def _install_credentials(
        self, creds: EndCredentials
    ) -> tuple[dict[str, Any], list[Secret | KeyFile]]:
        """Copy the files into charon's swanctl folders; the Connection fields that use them."""
        c = self.charon
        cert = c.install(creds.cert.cert_path, "x509")
        for im in creds.intermediates:  # charon sends the chain it finds in x509ca
            c.install(im.cert_path, "x509ca")
        cacerts = [str(c.install(path, "x509ca")) for path in creds.cacerts]
        for crl in creds.crls:
            c.install(crl, "x509crl")
        key = c.install(creds.key_path, "private")
        fields: dict[str, Any] = {
            "auth": "pubkey",
            "local_certs": [str(cert)],
            "remote_cacerts": cacerts,
            "revocation": creds.revocation,
        }
        return fields, [KeyFile("gw", str(key))]

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


def pubkey_auth(end: End, creds: EndCredentials) -> tuple[dict[str, Any], ...]:
    """The agent's ``local``, ``remote`` and ``secrets`` for ``auth: pubkey`` (absolute paths)."""
    local = {
        "auth": "pubkey",
        "id": end.local_id,
        "certs": [str(creds.cert.cert_path), *(str(i.cert_path) for i in creds.intermediates)],
    }
    remote: dict[str, Any] = {
        "auth": "pubkey",
        "id": end.remote_id,
        "cacerts": [str(p) for p in creds.cacerts],
    }
    if creds.crls:
        remote["crls"] = [str(p) for p in creds.crls]
    if creds.revocation is not None:
        remote["revocation"] = creds.revocation
    return local, remote, {"private-gw": {"file": str(creds.key_path)}}


def agent_config(
    end: End,
    start_action: str = "none",
    settings: Mapping[str, Any] | None = None,
    credentials: EndCredentials | None = None,
) -> dict[str, Any]:
    """The agent's YAML config (swanctl vocabulary) for one end; ``settings`` is its ``agent:``
    section (e.g. faster retransmits), left out when None.  With ``spec.auth == "pubkey"`` it
    authenticates with ``credentials`` (default: the end's from the spec's TunnelPki)."""
    spec = end.spec
    aggressive = {"aggressive": True, "allow_aggressive_psk": True} if spec.aggressive else {}
    head = {"agent": dict(settings)} if settings else {}
    if spec.auth == "pubkey":
        local, remote, secrets = pubkey_auth(end, credentials or end.credentials)
    else:
        local = {"auth": "psk", "id": end.local_id}
        remote = {"auth": "psk", "id": end.remote_id}
        secrets = {
            "ike-lab": {
                "id": sorted([end.local_id, end.remote_id]),
                "secret": spec.psk.decode(),
            }
        }
    fragmentation = {"fragmentation": True} if spec.fragmentation else {}
    return {
        **head,
        "connections": {
            end.conn_name: {
                "version": spec.version,
                **aggressive,
                **fragmentation,
                "local_addrs": [end.site.outer],
                "remote_addrs": [end.peer.outer],
                "proposals": list(spec.proposals),
                "local": local,
                "remote": remote,
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
        "secrets": secrets,
    }


class AgentPeer:
    label = "ikeagent"

    def __init__(
        self,
        end: End,
        settings: Mapping[str, Any] | None = None,
        *,
        credentials: EndCredentials | None = None,
        config_hook: Callable[[dict[str, Any]], None] | None = None,
        **agent_kwargs: Any,
    ) -> None:
        """``config_hook`` may change the config dict in place before the agent starts."""
        self.end = end
        config = agent_config(end, settings=settings, credentials=credentials)
        if config_hook is not None:
            config_hook(config)
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
