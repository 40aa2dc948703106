"""The agent against strongSwan's charon with certificates (``auth: pubkey``), IKEv1 and IKEv2,
the agent as initiator and as responder: RSA, ECDSA P-256 and (IKEv2) Ed25519 end-entity
certificates from a throw-away CA (ikelab_testing.pki), an intermediate CA chain, a fragmented
IKE_AUTH, and the agent refusing a peer certificate that is expired, not yet valid, from an
untrusted CA, revoked or not carrying the peer's identity, and refusing to use its own key
when the key file is readable by others.

Every gateway's certificate carries its IKE identity (``gw-<site>.example``) as subject CN and
dNSName; both ends trust the one root CA of the tunnel (peers.TunnelPki)."""

from __future__ import annotations

import contextlib
import re
from typing import Any

import pytest
from tunnels import agent_of, charon_of, print_logs, wait_for

from ikelab_testing import pki as pki_mod
from ikelab_testing.charon import CharonError
from ikelab_testing.checks import assert_blocked, assert_encrypted, assert_passes
from ikelab_testing.peers import (
    AgentPeer,
    CharonPeer,
    End,
    Tunnel,
    TunnelSpec,
    agent_peer,
    charon_peer,
)

pytestmark = [pytest.mark.netns, pytest.mark.interop]

ROLES = ["initiator", "responder"]
V1_SUITE = (("aes256-sha256-modp2048",), ("aes256-sha256",))
V2_SUITE = (("aes256gcm16-prfsha256-x25519",), ("aes256gcm16",))
# (IKE version, key type of both ends' certificates and of the CA); Ed25519 exists for IKEv2
# only (RFC 8420; IKEv1 has no authentication method for it)
KEYS = [
    (1, "rsa"),
    (1, "ecdsa-p256"),
    (1, "ecdsa-p384"),
    (2, "rsa"),
    (2, "ecdsa-p256"),
    (2, "ecdsa-p384"),
    (2, "ed25519"),
]
# the signature scheme charon names when it verified the agent's AUTH/SIG
FAMILY = {
    "rsa": "RSA",
    "rsa4096": "RSA",
    "ecdsa-p256": "ECDSA",
    "ecdsa-p384": "ECDSA",
    "ed25519": "ED25519",
}


def spec_for(version: int, key_type: str = "rsa", **changes: Any) -> TunnelSpec:
    proposals, esp = V1_SUITE if version == 1 else V2_SUITE
    return TunnelSpec(
        version=version,
        proposals=proposals,
        esp_proposals=esp,
        auth="pubkey",
        key_type=key_type,
        **changes,
    )


def peers(agent_role: str, agent=agent_peer, charon=charon_peer):
    return (agent, charon) if agent_role == "initiator" else (charon, agent)


def fast_charon(end: End) -> CharonPeer:
    """charon that gives up on an unanswered exchange after a few seconds."""
    return CharonPeer(end, options={"retransmit_timeout": "1", "retransmit_tries": "2"})


def fast_agent(end: End) -> AgentPeer:
    return AgentPeer(end, settings={"retransmit_timeout": 0.5, "retransmit_tries": 3})


def charon_end(tunnel: Tunnel, agent_role: str) -> End:
    return tunnel.end_b if agent_role == "initiator" else tunnel.end_a


def agent_end(tunnel: Tunnel, agent_role: str) -> End:
    return tunnel.end_a if agent_role == "initiator" else tunnel.end_b


def dump(tunnel: Tunnel) -> None:
    print_logs(tunnel.peer_a, tunnel.peer_b)


def verified_with(charon: CharonPeer, who: str) -> list[str]:
    """The signature schemes charon verified ``who``'s AUTH (IKEv2) or SIG (IKEv1) with."""
    text = charon.charon.log_text()
    return re.findall(rf"authentication of '{re.escape(who)}' with (\S+) successful", text)


def assert_tunnel_works(topology, tunnel: Tunnel, cap, key_type: str) -> None:
    """Traffic both ways, SAs on both sides with the peers' identities, the agent's
    certificate sent and verified by charon, only ESP-in-UDP on the underlay."""
    a_to_b = assert_passes(topology, count=3)
    b_to_a = topology.host_b.ping(topology.spec.host_a_addr, count=3)
    assert a_to_b.received == 3 and b_to_a.received == 3, (a_to_b, b_to_a)

    agent, charon = agent_of(tunnel), charon_of(tunnel)
    [ike_sa] = agent.agent.list_sas()
    assert ike_sa["state"] == "ESTABLISHED"
    assert ike_sa["version"] == tunnel.spec.version
    assert ike_sa["remote_id"] == agent.end.remote_id
    assert ike_sa["local_id"] == agent.end.local_id
    assert (ike_sa["local_auth"], ike_sa["remote_auth"]) == ("pubkey", "pubkey")
    [child] = ike_sa["children"]
    assert (child["state"], child["encap"]) == ("INSTALLED", True)
    assert child["packets_in"] >= 3 and child["packets_out"] >= 3

    [theirs] = charon.charon.list_sas().values()
    assert theirs["state"] == "ESTABLISHED"
    assert theirs["remote-id"] == agent.end.local_id
    [cchild] = theirs["child-sas"].values()
    assert cchild["state"] == "INSTALLED"
    log = charon.charon.log_text()
    # the agent sent its certificate and charon verified a signature of the key's type with it
    assert f'received end entity cert "O=ikelab, CN={agent.end.local_id}"' in log, log[-3000:]
    schemes = verified_with(charon, agent.end.local_id)
    assert schemes and all(FAMILY[key_type] in s.upper() for s in schemes), schemes
    if key_type == "ecdsa-p256":
        assert not any("ED25519" in s.upper() for s in schemes)

    summary = cap.summary()
    assert_encrypted(summary, topology, udp=True)
    assert summary.ike >= 2, f"no IKE exchange on the underlay:\n{summary}"
    text = agent.sas_text()
    assert "ESTABLISHED" in text and agent.end.remote_id in text


# --- the harness ------------------------------------------------------------------------------


@pytest.mark.parametrize("version", [1, 2])
def test_charon_to_charon_with_certificates(topology, version: int) -> None:
    """The lab itself: two charons authenticate with the TunnelPki's certificates.  If this
    fails, the harness is broken, not the agent."""
    spec = spec_for(version, "rsa")
    tunnel = Tunnel(topology, charon_peer, charon_peer, spec).start()
    try:
        tunnel.up(timeout=10)
        assert_passes(topology, count=2)
        for peer in (tunnel.peer_a, tunnel.peer_b):
            assert verified_with(peer, peer.end.remote_id), peer.charon.log_tail(60)
            certs = peer.charon.list_certs()
            assert f"CN={peer.end.local_id}" in certs and "has private key" in certs
    except BaseException:
        dump(tunnel)
        raise
    finally:
        tunnel.stop()


# --- working tunnels ----------------------------------------------------------------------------


@pytest.mark.parametrize("agent_role", ROLES)
@pytest.mark.parametrize("version,key_type", KEYS, ids=[f"ikev{v}-{k}" for v, k in KEYS])
def test_pubkey_tunnel_with_charon(
    topology, capture_factory, version: int, key_type: str, agent_role: str
) -> None:
    cap = capture_factory(topology.gw_a, "wan0")
    tunnel = Tunnel(topology, *peers(agent_role), spec_for(version, key_type)).start()
    try:
        assert_blocked(topology)
        tunnel.up(timeout=15)
        assert_tunnel_works(topology, tunnel, cap, key_type)
        [ike_sa] = agent_of(tunnel).agent.list_sas()
        assert ike_sa["role"] == agent_role
    except BaseException:
        dump(tunnel)
        raise
    finally:
        codes = tunnel.stop()
    assert codes == {"a": 0, "b": 0}, codes


@pytest.mark.parametrize("agent_role", ROLES)
@pytest.mark.parametrize("holder", ["charon", "agent"])
def test_intermediate_ca_chain(topology, capture_factory, holder: str, agent_role: str) -> None:
    """IKEv2: one gateway's certificate is issued by an intermediate CA which it sends after
    its own (CERT payloads); the other trusts only the root."""
    spec = spec_for(2, "rsa")
    cap = capture_factory(topology.gw_a, "wan0")
    tunnel = Tunnel(topology, *peers(agent_role), spec)
    end = charon_end(tunnel, agent_role) if holder == "charon" else agent_end(tunnel, agent_role)
    pki = spec.pki.attach(topology.lab)
    inter = pki.intermediate(spec.pki.root("rsa"), "Lab Intermediate CA")
    leaf = pki.issue(inter, end.local_id, [end.local_id])
    creds = spec.pki.default_for(leaf)
    assert [i.name for i in creds.intermediates] == ["Lab Intermediate CA"]
    spec.pki.set(end.local_id, creds)
    tunnel.start()
    try:
        tunnel.up(timeout=15)
        assert_tunnel_works(topology, tunnel, cap, "rsa")
        log = charon_of(tunnel).charon.log_text()
        verb = "sending" if holder == "charon" else "received"
        assert f'{verb} issuer cert "O=ikelab, CN=Lab Intermediate CA"' in log
    except BaseException:
        dump(tunnel)
        raise
    finally:
        tunnel.stop()


FRAGMENT = re.compile(r"parsed IKE_AUTH (request|response) \d+ \[ EF\((\d+)/(\d+)\) \]")


@pytest.mark.parametrize("agent_role", ROLES)
def test_fragmented_ike_auth_with_rsa4096(topology, capture_factory, agent_role: str) -> None:
    """IKEv2 with RSA 4096 certificates: IKE_AUTH (certificate, CERTREQ, 512-byte AUTH) is
    larger than the 1280-byte fragment size, so both ends send it in RFC 7383 fragments."""
    spec = spec_for(2, "rsa4096", fragmentation=True)
    cap = capture_factory(topology.gw_a, "wan0")
    tunnel = Tunnel(topology, *peers(agent_role), spec).start()
    try:
        tunnel.up(timeout=15)
        assert_tunnel_works(topology, tunnel, cap, "rsa4096")
        log = charon_of(tunnel).charon.log_text()
        # charon received the agent's IKE_AUTH in more than one encrypted fragment...
        received = {int(total) for _, _, total in FRAGMENT.findall(log)}
        assert received and min(received) >= 2, log[-3000:]
        # ...and sent its own in fragments, which the agent reassembled
        assert re.search(r"splitting IKE message \(\d+ bytes\) into [2-9] fragments", log)
        key = agent_of(tunnel).end.credentials.cert.cert.public_key()
        assert key.key_size == 4096
    except BaseException:
        dump(tunnel)
        raise
    finally:
        tunnel.stop()


# --- refusing a peer ------------------------------------------------------------------------------


def initiate(tunnel: Tunnel) -> None:
    """Start the exchange from A; a failure is expected and checked by the caller."""
    a = tunnel.peer_a
    if isinstance(a, AgentPeer):
        a.agent.ikectl_raw("up", a.end.conn_name, "--timeout", "10", timeout=20)
    else:
        with contextlib.suppress(CharonError):
            a.charon.initiate(a.end.spec.child, timeout=6)


def reason_lines(agent: AgentPeer, reason: re.Pattern[str], *names: str) -> list[str]:
    """The agent's WARNING/ERROR lines giving ``reason`` and naming one of ``names``."""
    return [
        line
        for line in agent.agent.log_text().splitlines()
        if re.search(r"\b(WARNING|ERROR)\b", line)
        and reason.search(line)
        and (not names or any(n in line for n in names))
    ]


def nothing_installed(agent: AgentPeer, charon: CharonPeer) -> bool:
    """No SA on the agent; no CHILD_SA on charon."""
    return agent.agent.list_sas() == [] and not charon.charon.children()


def expect_refusal(
    topology, tunnel: Tunnel, reason: re.Pattern[str], *names: str, charon_verified: bool
) -> None:
    """The agent refuses: its log gives ``reason`` naming one of ``names``, no SA is left, no
    traffic passes.  ``charon_verified``: charon had accepted the agent before that."""
    agent, charon = agent_of(tunnel), charon_of(tunnel)
    initiate(tunnel)
    wait_for(
        lambda: reason_lines(agent, reason, *names),
        15,
        f"a warning in the agent's log matching {reason.pattern!r} naming {names}",
    )
    wait_for(lambda: nothing_installed(agent, charon), 15, "no SA on the agent, no CHILD_SA")
    if charon_verified:  # it was the agent's check that failed, not charon's
        assert verified_with(charon, agent.end.local_id), charon.charon.log_tail(40)
    assert_blocked(topology)


def refused(
    topology, tunnel: Tunnel, reason: re.Pattern[str], *names: str, charon_verified: bool
) -> None:
    """Start the tunnel and ``expect_refusal``; the logs are printed if it fails."""
    tunnel.start()
    try:
        expect_refusal(topology, tunnel, reason, *names, charon_verified=charon_verified)
    except BaseException:
        dump(tunnel)
        raise
    finally:
        tunnel.stop()


def bad_charon_cert(
    spec: TunnelSpec, ident: str, issuer: pki_mod.Issued | None = None, **kwargs: Any
) -> None:
    """charon (IKE identity ``ident``) authenticates with a certificate made with ``kwargs``
    (pki.issue's), issued by ``issuer`` (default: the tunnel's root); it trusts the root."""
    pki = spec.pki.pki
    kwargs.setdefault("sans", [ident])
    cert = pki.issue(issuer or spec.pki.root("rsa"), kwargs.pop("cn", ident), **kwargs)
    spec.pki.set(ident, spec.pki.default_for(cert))


def setup_refusal(topology, version: int, agent_role: str) -> tuple[Tunnel, TunnelSpec, str]:
    spec = spec_for(version, "rsa")
    spec.pki.attach(topology.lab)
    tunnel = Tunnel(topology, *peers(agent_role, fast_agent, fast_charon), spec)
    return tunnel, spec, charon_end(tunnel, agent_role).local_id


BOTH = [(v, r) for v in (1, 2) for r in ROLES]
BOTH_IDS = [f"ikev{v}-agent-{r}" for v, r in BOTH]


@pytest.mark.parametrize("version,agent_role", BOTH, ids=BOTH_IDS)
def test_refuses_expired_certificate(topology, version: int, agent_role: str) -> None:
    tunnel, spec, ident = setup_refusal(topology, version, agent_role)
    before, after = pki_mod.expired()
    bad_charon_cert(spec, ident, not_before=before, not_after=after)
    refused(
        topology,
        tunnel,
        re.compile(r"expired"),
        ident,
        charon_verified=agent_role == "initiator",
    )


NOT_YET = [(2, "initiator"), (1, "responder")]


@pytest.mark.parametrize("version,agent_role", NOT_YET, ids=[f"ikev{v}-{r}" for v, r in NOT_YET])
def test_refuses_certificate_not_yet_valid(topology, version: int, agent_role: str) -> None:
    tunnel, spec, ident = setup_refusal(topology, version, agent_role)
    before, after = pki_mod.not_yet_valid()
    bad_charon_cert(spec, ident, not_before=before, not_after=after)
    refused(
        topology,
        tunnel,
        re.compile(r"not (yet )?valid"),
        ident,
        charon_verified=agent_role == "initiator",
    )


@pytest.mark.parametrize("version,agent_role", BOTH, ids=BOTH_IDS)
def test_refuses_certificate_from_untrusted_ca(topology, version: int, agent_role: str) -> None:
    tunnel, spec, ident = setup_refusal(topology, version, agent_role)
    other = spec.pki.pki.ca("Other CA")
    bad_charon_cert(spec, ident, issuer=other)
    refused(
        topology,
        tunnel,
        re.compile(r"trusted|trust anchor", re.IGNORECASE),
        ident,
        "Other CA",
        charon_verified=agent_role == "initiator",
    )


@pytest.mark.parametrize("version,agent_role", BOTH, ids=BOTH_IDS)
def test_refuses_revoked_certificate(topology, version: int, agent_role: str) -> None:
    tunnel, spec, ident = setup_refusal(topology, version, agent_role)
    root = spec.pki.root("rsa")
    bad_charon_cert(spec, ident)
    revoked = spec.pki.credentials(charon_end(tunnel, agent_role)).cert
    crl = spec.pki.pki.revoke(root, revoked)
    # the agent's own certificate is good; it is given the root's CRL
    mine = agent_end(tunnel, agent_role).local_id
    own = spec.pki.pki.issue(root, mine, [mine])
    spec.pki.set(mine, spec.pki.default_for(own, crls=(crl,)))
    refused(
        topology,
        tunnel,
        re.compile(r"revoked"),
        ident,
        charon_verified=agent_role == "initiator",
    )


IDENTITY = [(2, "initiator"), (2, "responder")]


@pytest.mark.parametrize("version,agent_role", IDENTITY, ids=[f"ikev{v}-{r}" for v, r in IDENTITY])
def test_refuses_identity_not_in_certificate(topology, version: int, agent_role: str) -> None:
    """charon sends its usual identity (gw-<site>.example) with a valid certificate from the
    trusted CA whose subject and subjectAltName carry another name: the certificate does not
    confirm the identity (charon itself refuses such a peer: "no trusted RSA public key").
    IKEv2 only: in IKEv1 charon will not sign with a certificate that lacks its identity
    ("no private key found"), so there the case cannot be made with charon."""
    tunnel, spec, ident = setup_refusal(topology, version, agent_role)
    alt = ident.replace("gw-", "gw-alt-")
    bad_charon_cert(spec, ident, cn=alt, sans=[alt])
    refused(
        topology,
        tunnel,
        re.compile(
            r"identity .*not (in|contained in|confirmed by|matched by) (the )?certificate"
            r"|certificate .*does not (carry|contain|match) .*identity",
            re.IGNORECASE,
        ),
        ident,
        charon_verified=agent_role == "initiator",
    )


KEY_MODE = [(2, "initiator"), (2, "responder"), (1, "initiator")]


@pytest.mark.parametrize("version,agent_role", KEY_MODE, ids=[f"ikev{v}-{r}" for v, r in KEY_MODE])
def test_own_key_readable_by_others_is_not_used(topology, version: int, agent_role: str) -> None:
    """The agent's private key file has mode 0644: the agent starts, logs that it does not
    load the key (naming the file and the mode) and cannot authenticate."""
    tunnel, spec, _ = setup_refusal(topology, version, agent_role)
    mine = agent_end(tunnel, agent_role).local_id
    own = spec.pki.pki.issue(spec.pki.root("rsa"), mine, [mine])
    exposed = pki_mod.write_key(own.key, own.key_path.with_name("exposed.key"), mode=0o644)
    spec.pki.set(mine, spec.pki.default_for(own, key_path=exposed))
    tunnel.start()
    try:
        agent, charon = agent_of(tunnel), charon_of(tunnel)
        mode = re.compile(r"0o?644|rw-r--r--|readable by")
        at_load = reason_lines(agent, mode, str(exposed))
        assert at_load, f"no warning naming {exposed} and its mode:\n{agent.agent.log_tail(30)}"
        initiate(tunnel)
        wait_for(
            lambda: len(reason_lines(agent, mode, str(exposed))) > len(at_load),
            15,
            "the failed authentication logged with the key file's problem",
        )
        wait_for(lambda: nothing_installed(agent, charon), 15, "no SA on the agent, no CHILD_SA")
        # charon never saw a signature by the agent
        assert not verified_with(charon, mine)
        assert "authentication of '" + mine not in charon.charon.log_text()
        assert_blocked(topology)
    except BaseException:
        dump(tunnel)
        raise
    finally:
        tunnel.stop()


# --- identities of every kind -----------------------------------------------------------------

ID_CASES = [
    (2, "ip", "initiator"),
    (2, "email", "responder"),
    (2, "dn", "initiator"),
    (2, "dn", "responder"),
    (1, "ip", "responder"),
    (1, "email", "initiator"),
    (1, "dn", "initiator"),
    (1, "dn", "responder"),
]


@pytest.mark.parametrize(
    "version,id_kind,agent_role", ID_CASES, ids=[f"ikev{v}-{k}-{r}" for v, k, r in ID_CASES]
)
def test_identity_kinds_matched_against_the_certificate(
    topology, version: int, id_kind: str, agent_role: str
) -> None:
    """IP address and email identities are found in the certificate's subjectAltNames, a DN
    identity is its subject (charon encodes it from the certificate, the agent from its
    configuration, with other string types: they must still match)."""
    spec = spec_for(version, "rsa", id_kind=id_kind)
    tunnel = Tunnel(topology, *peers(agent_role), spec).start()
    try:
        tunnel.up(timeout=15)
        assert_passes(topology, count=2)
        agent, charon = agent_of(tunnel), charon_of(tunnel)
        [ike_sa] = agent.agent.list_sas()
        assert (ike_sa["local_id"], ike_sa["remote_id"]) == (
            agent.end.local_id,
            agent.end.remote_id,
        )
        assert (ike_sa["local_auth"], ike_sa["remote_auth"]) == ("pubkey", "pubkey")
        [theirs] = charon.charon.list_sas().values()
        assert (theirs["local-id"], theirs["remote-id"]) == (
            charon.end.local_id,
            charon.end.remote_id,
        )
        assert verified_with(charon, agent.end.local_id), charon.charon.log_tail(40)
    except BaseException:
        dump(tunnel)
        raise
    finally:
        tunnel.stop()


@pytest.mark.parametrize("agent_role", ROLES)
def test_ikev1_aggressive_mode_with_signatures(topology, capture_factory, agent_role: str) -> None:
    """IKEv1 Aggressive Mode authenticated by RSA signatures (no PSK, so no opt-in needed)."""
    cap = capture_factory(topology.gw_a, "wan0")
    spec = spec_for(1, "rsa", aggressive=True)
    tunnel = Tunnel(topology, *peers(agent_role), spec).start()
    try:
        tunnel.up(timeout=15)
        assert_tunnel_works(topology, tunnel, cap, "rsa")
        [ike_sa] = agent_of(tunnel).agent.list_sas()
        assert ike_sa["mode"] == "aggressive"
        assert "aggressive" in charon_of(tunnel).charon.log_text().lower()
    except BaseException:
        dump(tunnel)
        raise
    finally:
        tunnel.stop()
