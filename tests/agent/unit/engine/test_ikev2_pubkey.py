"""IKEv2 certificate authentication between two in-memory engines: RFC 7296 CERT/CERTREQ/AUTH,
RFC 7427 digital signatures and SIGNATURE_HASH_ALGORITHMS, RFC 4754 ECDSA, RFC 7383 fragments
of large IKE_AUTH messages, and every way the peer's certificate can be refused."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
from harness import Pair, assert_matching_children, site_config

from ikeagent.config.identity import parse_identity
from ikeagent.config.model import AgentConfig, AuthMethod, PrivateKey
from ikeagent.crypto.pki import load_crl, spki_der
from ikeagent.crypto.pki.certreq import certreq_data
from ikeagent.crypto.pki.signatures import SUPPORTED_HASHES
from ikeagent.engine.ikev2 import ike_auth, pubkey
from ikeagent.wire import v2 as w
from ikelab_testing.pki import Issued, TestPki, expired, not_yet_valid

PUBKEY = AuthMethod.PUBKEY
KEY_TYPES = ("rsa", "ecdsa-p256", "ecdsa-p384", "ed25519")
SKF = 53
IKE_AUTH = 35


@dataclass
class Lab:
    pki: TestPki
    root: Issued
    gws: dict[tuple[str, str], Issued] = field(default_factory=dict)

    def gw(self, me: str, key_type: str = "ecdsa-p256") -> Issued:
        """gw-<me>.example, issued by the root, cached per key type."""
        k = (me, key_type)
        if k not in self.gws:
            self.gws[k] = self.pki.issue(
                self.root, f"gw-{me}.example", sans=[f"gw-{me}.example"], key_type=key_type
            )
        return self.gws[k]


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Lab:
    pki = TestPki(Path(tmp_path_factory.mktemp("pki")))
    return Lab(pki, pki.ca("Lab Root CA", "ecdsa-p384"))


def private_key(issued: Issued, problem: str | None = None) -> PrivateKey:
    if problem:
        return PrivateKey(issued.name, str(issued.key_path), None, problem=problem)
    return PrivateKey(issued.name, str(issued.key_path), issued.key, spki_der(issued.key))


def local_pubkey(issued: Issued, *chain: Issued, **kw: Any) -> dict[str, Any]:
    return {
        "auth": PUBKEY,
        "certs": (issued.cert, *(c.cert for c in chain)),
        "key": kw.pop("key", private_key(issued)),
        **kw,
    }


def remote_pubkey(*cas: Issued, **kw: Any) -> dict[str, Any]:
    return {"auth": PUBKEY, "cacerts": tuple(c.cert for c in cas), **kw}


def with_auth(
    cfg: AgentConfig,
    local: dict[str, Any] | None,
    remote: dict[str, Any] | None,
    *,
    psk_conn: str | None = None,
) -> AgentConfig:
    """The config's one connection with its local/remote rounds changed (None: keep PSK);
    ``psk_conn`` "first"/"last" adds the unchanged PSK connection before/after it."""
    (name, conn), *_ = cfg.connections.items()
    new = replace(
        conn,
        local=replace(conn.local, **(local or {})),
        remote=replace(conn.remote, **(remote or {})),
    )
    conns = {name: new}
    psk = replace(conn, name=f"{name}-psk")
    if psk_conn == "first":
        conns = {psk.name: psk, name: new}
    elif psk_conn == "last":
        conns = {name: new, psk.name: psk}
    keys = (new.local.key,) if new.local.key is not None else ()
    return replace(cfg, connections=conns, private_keys=keys)


def make_pair(
    a_local: dict[str, Any] | None,
    a_remote: dict[str, Any] | None,
    b_local: dict[str, Any] | None,
    b_remote: dict[str, Any] | None,
    *,
    agent: dict[str, Any] | None = None,
    psk_conn: str | None = None,
) -> Pair:
    p = Pair(site_config("a", agent=agent), site_config("b", start=False, agent=agent))
    p.a.engine.config = with_auth(p.a.engine.config, a_local, a_remote)
    p.b.engine.config = with_auth(p.b.engine.config, b_local, b_remote, psk_conn=psk_conn)
    p.a.engine.log = logging.getLogger("test.pubkey.a")
    p.b.engine.log = logging.getLogger("test.pubkey.b")
    return p


def logs(caplog: pytest.LogCaptureFixture, side: str) -> str:
    return "\n".join(r.getMessage() for r in caplog.records if r.name == f"test.pubkey.{side}")


def both_pubkey(lab: Lab, kt_a: str, kt_b: str, **kw: Any) -> Pair:
    return make_pair(
        local_pubkey(lab.gw("a", kt_a)),
        remote_pubkey(lab.root),
        local_pubkey(lab.gw("b", kt_b)),
        remote_pubkey(lab.root),
        **kw,
    )


def assert_up(p: Pair) -> None:
    assert p.a.up() and p.b.up(), (p.a.downs(), p.b.downs())
    assert assert_matching_children(p.a, p.b) == 1


def assert_refused(p: Pair, *, half_open_b: bool = False) -> None:
    """No SA anywhere (the responder keeps a half-open SA when no IKE_AUTH came)."""
    assert not p.a.up() and not p.a.engine.sas
    assert not p.b.up()
    if not half_open_b:
        assert not p.b.engine.sas
    assert not p.a.pairs() and not p.b.pairs()


@pytest.fixture
def seen(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, list[list[w.Payload]]]]:
    """The inner payloads of IKE_AUTH messages: what the initiator built ("request") and what
    the responder answered ("response")."""
    out: dict[str, list[list[w.Payload]]] = {"request": [], "response": []}
    build, respond = ike_auth.IkeAuthTask.build, ike_auth.respond

    def spy_build(self, eng, sa, now):  # type: ignore[no-untyped-def]
        got = build(self, eng, sa, now)
        if got is not None:
            out["request"].append(got)
        return got

    def spy_respond(eng, sa, payloads, now):  # type: ignore[no-untyped-def]
        got = respond(eng, sa, payloads, now)
        out["response"].append(got)
        return got

    monkeypatch.setattr(ike_auth.IkeAuthTask, "build", spy_build)
    monkeypatch.setattr(ike_auth, "respond", spy_respond)
    yield out


# ---- success ----------------------------------------------------------------------------------


@pytest.mark.parametrize("key_type", KEY_TYPES)
def test_rfc7427_signatures_both_ways(
    lab: Lab, key_type: str, caplog: pytest.LogCaptureFixture, seen
) -> None:
    caplog.set_level(logging.INFO)
    p = both_pubkey(lab, key_type, key_type)
    p.start()
    assert_up(p)
    for side, peer in (("a", "b"), ("b", "a")):
        text = logs(caplog, side)
        assert f"authenticated with certificate O=ikelab, CN=gw-{peer}.example" in text
        assert "DIGITAL_SIGNATURE (14)" in text
    req, resp = seen["request"][0], seen["response"][0]
    for msg, me in ((req, "a"), (resp, "b")):
        certs = w.payloads_of(msg, w.Certificate)
        assert [c.data for c in certs] == [lab.gw(me, key_type).der]
        assert certs[0].encoding == w.CertEncoding.X509_CERT_SIGNATURE
        assert w.payload(msg, w.Authentication).method == w.AuthMethod.DIGITAL_SIGNATURE
    # the status snapshot shows the methods and the peer's certificate
    st = p.a.engine.list_sas()[0]
    assert (st.local_auth, st.remote_auth) == ("pubkey", "pubkey")
    assert st.remote_cert == "O=ikelab, CN=gw-b.example"


def test_different_key_types_per_side(lab: Lab, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    p = both_pubkey(lab, "ed25519", "rsa")
    p.start()
    assert_up(p)


@pytest.mark.parametrize(
    ("key_type", "method"),
    [
        ("rsa", "RSA_DIGITAL_SIGNATURE (1)"),
        ("ecdsa-p256", "ECDSA_SHA256_P256 (9)"),
        ("ecdsa-p384", "ECDSA_SHA384_P384 (10)"),
    ],
)
def test_legacy_methods_without_hash_notify(
    lab: Lab, key_type: str, method: str, caplog: pytest.LogCaptureFixture, monkeypatch
) -> None:
    """A peer that sends no SIGNATURE_HASH_ALGORITHMS gets RFC 7296 / RFC 4754 methods."""
    caplog.set_level(logging.INFO)
    orig = pubkey.peer_hashes
    # the notify is left out of IKE_SA_INIT (stripping it on the wire would break AUTH, which
    # signs the whole IKE_SA_INIT message)
    from ikeagent.engine.ikev2 import ike_init

    monkeypatch.setattr(
        ike_init.pubkey, "uses_pubkey", lambda conns: False
    )  # no notify, no CERTREQ in IKE_SA_INIT
    p = both_pubkey(lab, key_type, key_type)
    p.start()
    assert_up(p)
    assert orig(list(_init_payloads(p, "a"))) == ()
    assert method in logs(caplog, "a") and method in logs(caplog, "b")


def test_ed25519_needs_the_hash_notify(lab: Lab, caplog: pytest.LogCaptureFixture, monkeypatch):
    from ikeagent.engine.ikev2 import ike_init

    monkeypatch.setattr(ike_init.pubkey, "uses_pubkey", lambda conns: False)
    p = both_pubkey(lab, "ed25519", "ed25519")
    p.start()
    assert_refused(p, half_open_b=True)
    assert "cannot authenticate with our certificate" in logs(caplog, "a")
    assert not _auth_datagrams(p, "a")  # nothing was sent


def test_hash_notify_and_certreq(lab: Lab, seen) -> None:
    p = both_pubkey(lab, "rsa", "rsa")
    p.start()
    assert_up(p)
    want_hashes = b"".join(h.to_bytes(2, "big") for h in SUPPORTED_HASHES)
    for side in ("a", "b"):
        n = w.find_notify(list(_init_payloads(p, side)), w.NotifyType.SIGNATURE_HASH_ALGORITHMS)
        assert n is not None and n.data == want_hashes
    # the responder asks for certificates of our root in IKE_SA_INIT, the initiator in IKE_AUTH
    creq = w.payload(list(_init_payloads(p, "b")), w.CertificateRequest)
    assert creq is not None and creq.encoding == w.CertEncoding.X509_CERT_SIGNATURE
    assert creq.data == certreq_data([lab.root.cert])
    req = w.payload(seen["request"][0], w.CertificateRequest)
    assert req is not None and req.data == certreq_data([lab.root.cert])
    sa_a, sa_b = next(iter(p.a.engine.sas.values())), next(iter(p.b.engine.sas.values()))
    assert sa_a.peer_hashes == sa_b.peer_hashes == SUPPORTED_HASHES


def test_psk_stays_without_pubkey_payloads(seen) -> None:
    p = make_pair(None, None, None, None)
    p.start()
    assert_up(p)
    for side in ("a", "b"):
        init = list(_init_payloads(p, side))
        assert w.find_notify(init, w.NotifyType.SIGNATURE_HASH_ALGORITHMS) is None
        assert w.payload(init, w.CertificateRequest) is None
    for msg in (seen["request"][0], seen["response"][0]):
        assert not w.payloads_of(msg, w.Certificate)
        assert not w.payloads_of(msg, w.CertificateRequest)
    st = p.b.engine.list_sas()[0]
    assert (st.local_auth, st.remote_auth, st.remote_cert) == ("psk", "psk", None)


def test_intermediate_sent_by_peer(lab: Lab, seen) -> None:
    inter = lab.pki.intermediate(lab.root, "Lab Sub CA", "rsa")
    gw_a = lab.pki.issue(inter, "gw-a.example", sans=["gw-a.example"], key_type="ecdsa-p256")
    p = make_pair(
        local_pubkey(gw_a, inter),
        remote_pubkey(lab.root),
        local_pubkey(lab.gw("b")),
        remote_pubkey(lab.root),
    )
    p.start()
    assert_up(p)
    assert [c.data for c in w.payloads_of(seen["request"][0], w.Certificate)] == [
        gw_a.der,
        inter.der,
    ]


def test_intermediate_missing(lab: Lab, caplog: pytest.LogCaptureFixture) -> None:
    inter = lab.pki.intermediate(lab.root, "Lab Sub CA 2", "rsa")
    gw_a = lab.pki.issue(inter, "gw-a.example", sans=["gw-a.example"])
    p = make_pair(
        local_pubkey(gw_a),
        remote_pubkey(lab.root),
        local_pubkey(lab.gw("b")),
        remote_pubkey(lab.root),
    )
    p.start()
    assert_refused(p)
    assert "not a trusted CA" in logs(caplog, "b")


def test_dn_identities(lab: Lab, caplog: pytest.LogCaptureFixture) -> None:
    """No local.id: the subject DN is sent; a DN remote.id written as text (PrintableString)
    matches the certificate's UTF8String subject."""
    caplog.set_level(logging.INFO)
    p = make_pair(
        local_pubkey(lab.gw("a"), id=None),
        remote_pubkey(lab.root, id=parse_identity("O=ikelab, CN=gw-b.example")),
        local_pubkey(lab.gw("b"), id=None),
        remote_pubkey(lab.root, id=parse_identity("O=ikelab, CN=gw-a.example")),
    )
    p.start()
    assert_up(p)
    st = p.b.engine.list_sas()[0]
    assert st.remote_id == "O=ikelab, CN=gw-a.example"
    assert st.local_id == "O=ikelab, CN=gw-b.example"


@pytest.mark.parametrize("pubkey_side", ["a", "b"])
def test_mixed_rounds(lab: Lab, pubkey_side: str) -> None:
    """One side signs, the other uses the PSK."""
    signer = lab.gw(pubkey_side)
    if pubkey_side == "a":
        p = make_pair(local_pubkey(signer), None, None, remote_pubkey(lab.root))
    else:
        p = make_pair(None, remote_pubkey(lab.root), local_pubkey(signer), None)
    p.start()
    assert_up(p)
    a = p.a.engine.list_sas()[0]
    want = ("pubkey", "psk") if pubkey_side == "a" else ("psk", "pubkey")
    assert (a.local_auth, a.remote_auth) == want


@pytest.mark.parametrize("peer_auth", ["pubkey", "psk"])
def test_responder_picks_connection_by_auth_method(lab: Lab, peer_auth: str) -> None:
    """b has a PSK and a pubkey connection for the same peer; the AUTH method decides."""
    a_auth = (local_pubkey(lab.gw("a")), None) if peer_auth == "pubkey" else (None, None)
    # the connection that does not fit is listed first
    first = "first" if peer_auth == "pubkey" else "last"
    p = make_pair(*a_auth, None, remote_pubkey(lab.root), psk_conn=first)
    p.start()
    assert_up(p)
    expected = "to-a" if peer_auth == "pubkey" else "to-a-psk"
    assert p.b.engine.list_sas()[0].name == expected


def test_fragmented_rsa4096_chain(lab: Lab, seen) -> None:
    root = lab.pki.ca("Big Root CA", "rsa4096")
    inter = lab.pki.intermediate(root, "Big Sub CA", "rsa4096")
    gws = {
        me: lab.pki.issue(inter, f"gw-{me}.example", sans=[f"gw-{me}.example"], key_type="rsa4096")
        for me in "ab"
    }
    p = make_pair(
        local_pubkey(gws["a"], inter),
        remote_pubkey(root),
        local_pubkey(gws["b"], inter),
        remote_pubkey(root),
    )
    p.start()
    assert_up(p)
    for side in ("a", "b"):
        auth = _auth_datagrams(p, side)
        assert len(auth) >= 3, f"{side}: IKE_AUTH not fragmented"
        assert all(len(d.data) <= 1280 for d in auth)
        assert all(d.data[16] == SKF for d in auth)


# ---- refusals ---------------------------------------------------------------------------------


def _bad_a_cert(lab: Lab, **kw: Any) -> Pair:
    gw_a = lab.pki.issue(lab.root, kw.pop("cn", "gw-a.example"), **kw)
    return make_pair(
        local_pubkey(gw_a),
        remote_pubkey(lab.root),
        local_pubkey(lab.gw("b")),
        remote_pubkey(lab.root),
    )


def _check_responder_refused(p: Pair, caplog: pytest.LogCaptureFixture, reason: str) -> None:
    p.start()
    assert_refused(p)
    b = logs(caplog, "b")
    line = next((x for x in b.splitlines() if "AUTHENTICATION_FAILED" in x), "")
    assert reason in line, b
    assert "192.0.2.1" in line and "gw-a.example" in line  # names the peer
    assert "peer answered AUTHENTICATION_FAILED" in logs(caplog, "a")


@pytest.mark.parametrize(
    ("window", "reason"),
    [(expired, "expired on"), (not_yet_valid, "is not valid before")],
)
def test_certificate_dates(lab: Lab, caplog, window, reason: str) -> None:
    nb, na = window()
    p = _bad_a_cert(lab, sans=["gw-a.example"], not_before=nb, not_after=na)
    _check_responder_refused(p, caplog, reason)
    assert "certificate 'O=ikelab, CN=gw-a.example'" in logs(caplog, "b")


def test_untrusted_ca(lab: Lab, caplog) -> None:
    other = lab.pki.ca("Rogue CA")
    gw_a = lab.pki.issue(other, "gw-a.example", sans=["gw-a.example"])
    p = make_pair(
        local_pubkey(gw_a),
        remote_pubkey(lab.root),
        local_pubkey(lab.gw("b")),
        remote_pubkey(lab.root),
    )
    _check_responder_refused(p, caplog, "which is not a trusted CA")


def test_revoked(lab: Lab, caplog) -> None:
    pki = TestPki(lab.pki.directory / "revoked")
    root = pki.ca("Revoking CA", "ecdsa-p256")
    gw_a = pki.issue(root, "gw-a.example", sans=["gw-a.example"], key_type="ecdsa-p256")
    gw_b = pki.issue(root, "gw-b.example", sans=["gw-b.example"], key_type="ecdsa-p256")
    crl = load_crl(pki.revoke(root, gw_a))
    p = make_pair(
        local_pubkey(gw_a),
        remote_pubkey(root),
        local_pubkey(gw_b),
        remote_pubkey(root, crls=(crl,), revocation="strict"),
    )
    _check_responder_refused(p, caplog, "is revoked")


def test_identity_not_in_certificate(lab: Lab, caplog) -> None:
    p = _bad_a_cert(lab, cn="gw-x.example", sans=["gw-x.example"])
    _check_responder_refused(
        p, caplog, "identity 'gw-a.example' is not in certificate O=ikelab, CN=gw-x.example"
    )


def test_tampered_signature(lab: Lab, caplog, monkeypatch) -> None:
    sign = pubkey.sign

    def bad_sign(conn, sa, octets):  # type: ignore[no-untyped-def]
        auth = sign(conn, sa, octets)
        if conn.name == "to-b":  # a's signature: flip its last bit
            return w.Authentication(auth.method, auth.data[:-1] + bytes([auth.data[-1] ^ 1]))
        return auth

    monkeypatch.setattr(pubkey, "sign", bad_sign)
    _check_responder_refused(
        both_pubkey(lab, "ecdsa-p256", "ecdsa-p256"), caplog, "signature does not verify"
    )


def test_responder_signature_refused_by_initiator(lab: Lab, caplog, monkeypatch) -> None:
    sign = pubkey.sign

    def bad_sign(conn, sa, octets):  # type: ignore[no-untyped-def]
        auth = sign(conn, sa, octets)
        if conn.name == "to-a":
            return w.Authentication(auth.method, bytes(len(auth.data)))
        return auth

    monkeypatch.setattr(pubkey, "sign", bad_sign)
    p = both_pubkey(lab, "rsa", "rsa")
    p.start()
    assert not p.a.up() and not p.a.engine.sas
    a = logs(caplog, "a")
    assert (
        "AUTHENTICATION_FAILED: signature does not verify with certificate O=ikelab, CN=gw-b" in a
    )
    # the initiator tells the responder, which tears its SA down
    assert "AUTHENTICATION_FAILED" in logs(caplog, "b") and not p.b.engine.sas


def test_responder_certificate_expired_seen_by_initiator(lab: Lab, caplog) -> None:
    nb, na = expired()
    gw_b = lab.pki.issue(
        lab.root, "gw-b.example", sans=["gw-b.example"], not_before=nb, not_after=na
    )
    p = make_pair(
        local_pubkey(lab.gw("a")),
        remote_pubkey(lab.root),
        local_pubkey(gw_b),
        remote_pubkey(lab.root),
    )
    p.start()
    assert not p.a.up() and not p.a.engine.sas and not p.b.engine.sas
    line = next(x for x in logs(caplog, "a").splitlines() if "AUTHENTICATION_FAILED" in x)
    assert "expired on" in line and "192.0.2.2" in line


REFUSED = "/etc/ikeagent/private/gw.key is readable by others (mode 0644); chmod 600 it"


def test_initiator_key_refused(lab: Lab, caplog) -> None:
    gw = lab.gw("a")
    p = make_pair(
        local_pubkey(gw, key=private_key(gw, problem=REFUSED)),
        remote_pubkey(lab.root),
        local_pubkey(lab.gw("b")),
        remote_pubkey(lab.root),
    )
    p.start()
    assert_refused(p, half_open_b=True)
    assert REFUSED in logs(caplog, "a")
    assert not _auth_datagrams(p, "a")


def test_responder_key_refused(lab: Lab, caplog) -> None:
    gw = lab.gw("b")
    p = make_pair(
        local_pubkey(lab.gw("a")),
        remote_pubkey(lab.root),
        local_pubkey(gw, key=private_key(gw, problem=REFUSED)),
        remote_pubkey(lab.root),
    )
    _check_responder_refused(p, caplog, REFUSED)


def test_psk_auth_where_pubkey_configured(lab: Lab, caplog) -> None:
    p = make_pair(None, None, local_pubkey(lab.gw("b")), remote_pubkey(lab.root))
    _check_responder_refused(
        p, caplog, "peer authenticated with a pre-shared key, but remote.auth is pubkey"
    )


def test_signature_where_psk_configured(lab: Lab, caplog) -> None:
    p = make_pair(local_pubkey(lab.gw("a")), remote_pubkey(lab.root), None, None)
    _check_responder_refused(
        p, caplog, "peer authenticated with a signature, but remote.auth is psk"
    )


def test_initiator_refuses_psk_from_pubkey_peer(lab: Lab, caplog) -> None:
    p = make_pair(local_pubkey(lab.gw("a")), remote_pubkey(lab.root), None, remote_pubkey(lab.root))
    p.start()
    assert not p.a.up() and not p.a.engine.sas
    assert "peer authenticated with a pre-shared key, but remote.auth is pubkey" in logs(
        caplog, "a"
    )


# ---- wire helpers -----------------------------------------------------------------------------


def _init_payloads(p: Pair, side: str) -> list[w.Payload]:
    """The payloads of the first IKE_SA_INIT message ``side`` sent."""
    for src, d in p.wire:
        if src == side and d.data[18] == w.ExchangeType.IKE_SA_INIT:
            return list(w.Message.from_bytes(d.data).payloads)
    raise AssertionError(f"{side} sent no IKE_SA_INIT")


def _auth_datagrams(p: Pair, side: str) -> list[Any]:
    return [d for src, d in p.wire if src == side and d.data[18] == IKE_AUTH]


def test_initiator_refuses_signature_where_psk_configured(lab: Lab, caplog) -> None:
    p = make_pair(
        local_pubkey(lab.gw("a")), None, local_pubkey(lab.gw("b")), remote_pubkey(lab.root)
    )
    p.start()
    assert not p.a.up() and not p.a.engine.sas and not p.b.engine.sas
    assert "peer authenticated with a signature, but remote.auth is psk" in logs(caplog, "a")


def test_ike_rekey_keeps_the_authentication(lab: Lab) -> None:
    p = both_pubkey(lab, "ecdsa-p256", "ecdsa-p256")
    p.start()
    assert_up(p)
    old = p.a.engine.list_sas()[0].uid
    p.a.engine.rekey("to-b", p.now, ike=True, children=False)
    p.run()
    for side, peer in ((p.a, "b"), (p.b, "a")):
        [st] = side.engine.list_sas()
        assert st.state == "ESTABLISHED"
        assert (st.local_auth, st.remote_auth) == ("pubkey", "pubkey")
        assert st.remote_cert == f"O=ikelab, CN=gw-{peer}.example"
    assert p.a.engine.list_sas()[0].uid != old
