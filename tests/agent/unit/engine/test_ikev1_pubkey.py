"""IKEv1 Phase 1 with signatures (RFC 2409 5.1, RFC 4754, RFC 2408 CERT/CR) between two engines in
memory: RSA and ECDSA in Main and Aggressive Mode, chains, every certificate failure, a tampered
SIG, a refused own key and a signature proposal against a pre-shared-key responder."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from harness import Pair, assert_matching_children, site_config

from ikeagent.config.errors import Context
from ikeagent.config.ikev1 import check_connection
from ikeagent.config.model import AgentConfig, AuthConfig, AuthMethod, PrivateKey
from ikeagent.crypto.v1.iana import AuthMethod as V1Auth
from ikeagent.crypto.v1.iana import IkeAttr
from ikeagent.wire import v1 as w1
from ikelab_testing.pki import Issued, TestPki, expired, not_yet_valid

IKE = "aes256-sha256-modp2048"
ESP = "aes256-sha256"
MAIN: dict[str, Any] = {"version": 1}
AGGR: dict[str, Any] = {"version": 1, "aggressive": True}
ET = w1.ExchangeType

METHOD = {
    "rsa": V1Auth.RSA_SIGNATURES,
    "ecdsa-p256": V1Auth.ECDSA_SHA256_P256,
    "ecdsa-p384": V1Auth.ECDSA_SHA384_P384,
}


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    t = TestPki(tmp_path_factory.mktemp("pki"))
    root = t.ca("Lab Root CA")
    other = t.ca("Other CA")
    inter = t.intermediate(root, "Lab Intermediate CA")
    out: dict[str, Any] = {"pki": t, "root": root, "other": other, "inter": inter}
    for kt in METHOD:
        out[f"a-{kt}"] = t.issue(root, "gw-a.example", ["gw-a.example"], kt)
        out[f"b-{kt}"] = t.issue(root, "gw-b.example", ["gw-b.example"], kt)
    out["a-inter"] = t.issue(inter, "gw-a.example", ["gw-a.example"])
    out["a-expired"] = t.issue(root, "gw-a.example", ["gw-a.example"], **_window(expired()))
    out["a-future"] = t.issue(root, "gw-a.example", ["gw-a.example"], **_window(not_yet_valid()))
    out["a-untrusted"] = t.issue(other, "gw-a.example", ["gw-a.example"])
    out["a-elsewhere"] = t.issue(root, "gw-x.example", ["gw-x.example"])
    out["a-revoked"] = t.issue(root, "gw-a.example", ["gw-a.example"])
    out["crl"] = t.revoke(root, out["a-revoked"])
    return out


def _window(w: tuple) -> dict[str, Any]:
    return {"not_before": w[0], "not_after": w[1]}


def _crl(path) -> Any:  # noqa: ANN001
    from cryptography import x509

    return x509.load_pem_x509_crl(path.read_bytes())


def _key(issued: Issued, problem: str | None = None) -> PrivateKey:
    from ikeagent.crypto.pki.files import spki_der

    return PrivateKey(
        issued.name,
        str(issued.key_path),
        None if problem else issued.key,
        spki_der(issued.cert.public_key()),
        problem,
    )


def with_certs(
    cfg: AgentConfig,
    mine: Issued,
    *,
    chain: tuple[Issued, ...] = (),
    cacerts: tuple[Issued, ...] = (),
    crls: tuple = (),
    key_problem: str | None = None,
) -> AgentConfig:
    """The site's one connection switched to auth pubkey with ``mine`` as its certificate."""
    (name, conn), *_ = cfg.connections.items()
    key = _key(mine, key_problem)
    local = dataclasses.replace(
        conn.local,
        auth=AuthMethod.PUBKEY,
        certs=(mine.cert, *(c.cert for c in chain)),
        key=key,
    )
    remote = dataclasses.replace(
        conn.remote,
        auth=AuthMethod.PUBKEY,
        cacerts=tuple(c.cert for c in cacerts),
        crls=crls,
    )
    # signatures need no allow_aggressive_psk (the PSK config parsed first had to set it)
    conn = dataclasses.replace(conn, local=local, remote=remote, allow_aggressive_psk=False)
    return dataclasses.replace(cfg, connections={name: conn}, secrets=(), private_keys=(key,))


def pubkey_pair(
    pki: dict[str, Any],
    a_cert: Issued,
    b_cert: Issued,
    *,
    mode: dict[str, Any] = MAIN,
    a_kw: dict[str, Any] | None = None,
    b_kw: dict[str, Any] | None = None,
    b_psk: bool = False,
) -> Pair:
    parse_mode = {**mode, "allow_aggressive_psk": True} if mode.get("aggressive") else mode
    cfg_a = site_config("a", proposals=[IKE], esp=[ESP], conn=parse_mode)
    cfg_b = site_config("b", proposals=[IKE], esp=[ESP], conn=parse_mode, start=False)
    p = Pair(cfg_a, cfg_b)
    root = pki["root"]
    p.a.engine.config = with_certs(
        p.a.engine.config, a_cert, **{"cacerts": (root,), **(a_kw or {})}
    )
    if not b_psk:
        p.b.engine.config = with_certs(
            p.b.engine.config, b_cert, **{"cacerts": (root,), **(b_kw or {})}
        )
    return p


def auth_methods(p: Pair, who: str) -> set[int]:
    """The Authentication Method attributes of the Phase 1 SA payloads ``who`` sent."""
    out = set()
    for src, d in p.wire:
        h = w1.Header.from_bytes(d.data)
        if (
            src != who
            or h.encrypted
            or int(h.exchange) not in (ET.IDENTITY_PROTECTION, ET.AGGRESSIVE)
        ):
            continue
        for pl in w1.decode_payloads(h.next_payload, d.data[w1.HEADER_LEN :]):
            if isinstance(pl, w1.SecurityAssociation):
                for prop in pl.proposals:
                    for tr in prop.transforms:
                        out |= {
                            int(a.value)
                            for a in tr.attributes
                            if int(a.type) == IkeAttr.AUTHENTICATION_METHOD
                        }
    return out


def payload_types(p: Pair, who: str, exchange: int) -> list[list[int]]:
    out = []
    for src, d in p.wire:
        h = w1.Header.from_bytes(d.data)
        if src == who and int(h.exchange) == exchange and not h.encrypted:
            out.append([int(t) for t, _, _ in w1.payload_spans(h.next_payload, d.data[28:])])
    return out


def no_sa(p: Pair) -> None:
    for s in (p.a, p.b):
        assert not s.up() or s.downs(), f"{s.name} kept an ISAKMP SA"
        assert all(st.state != "ESTABLISHED" for st in s.engine.list_sas())
        assert not s.pairs()


# ---- establishment ---------------------------------------------------------------------------


@pytest.mark.parametrize("key_type", list(METHOD))
def test_main_mode_signatures_establish_and_install_esp(pki, key_type: str) -> None:
    p = pubkey_pair(pki, pki[f"a-{key_type}"], pki[f"b-{key_type}"])
    p.start()
    assert len(p.a.up()) == 1 and len(p.b.up()) == 1
    assert assert_matching_children(p.a, p.b) == 1
    assert auth_methods(p, "a") == {int(METHOD[key_type])}
    assert auth_methods(p, "b") == {int(METHOD[key_type])}
    # messages 3 and 4 carry a CR for the trusted CA (its DER subject DN)
    kinds = payload_types(p, "a", ET.IDENTITY_PROTECTION) + payload_types(
        p, "b", ET.IDENTITY_PROTECTION
    )
    assert sum(w1.PayloadType.CR in k for k in kinds) == 2
    for side, peer in ((p.a, "gw-b.example"), (p.b, "gw-a.example")):
        [st] = side.engine.list_sas()
        assert st.state == "ESTABLISHED" and st.remote_id == peer
        assert len(st.children) == 1 and st.children[0].state == "INSTALLED"
        assert (st.local_auth, st.remote_auth) == ("pubkey", "pubkey")
        assert st.remote_cert == f"O=ikelab, CN={peer}"
    sa_a = next(iter(p.a.engine.v1.sas.values()))
    assert sa_a.peer_cert.subject == pki[f"b-{key_type}"].cert.subject


def test_cr_names_the_ca_subject(pki) -> None:
    p = pubkey_pair(pki, pki["a-rsa"], pki["b-rsa"])
    p.start()
    crs = []
    for _, d in p.wire:
        h = w1.Header.from_bytes(d.data)
        if not h.encrypted:
            crs += [
                pl
                for pl in w1.decode_payloads(h.next_payload, d.data[28:])
                if isinstance(pl, w1.CertificateRequest)
            ]
    assert crs and all(c.encoding == 4 for c in crs)
    assert {c.data for c in crs} == {pki["root"].cert.subject.public_bytes()}


def test_chain_with_intermediate(pki) -> None:
    p = pubkey_pair(pki, pki["a-inter"], pki["b-rsa"], a_kw={"chain": (pki["inter"],)})
    p.start()
    assert len(p.a.up()) == 1 and len(p.b.up()) == 1
    assert assert_matching_children(p.a, p.b) == 1


def test_chain_without_intermediate_is_untrusted(pki, caplog) -> None:
    p = pubkey_pair(pki, pki["a-inter"], pki["b-rsa"])
    with caplog.at_level("INFO"):
        p.start()
        p.advance(30)
    no_sa(p)
    assert "gw-a.example" in caplog.text and "certificate refused" in caplog.text


@pytest.mark.parametrize("key_type", ["rsa", "ecdsa-p256"])
def test_aggressive_mode_signatures_need_no_psk_opt_in(pki, key_type: str) -> None:
    p = pubkey_pair(pki, pki[f"a-{key_type}"], pki[f"b-{key_type}"], mode=AGGR)
    p.start()
    assert len(p.a.up()) == 1 and len(p.b.up()) == 1
    assert assert_matching_children(p.a, p.b) == 1
    assert auth_methods(p, "a") == {int(METHOD[key_type])}
    [m1, m3] = payload_types(p, "a", ET.AGGRESSIVE)
    assert w1.PayloadType.SIG in m3 and w1.PayloadType.CERT in m3 and w1.PayloadType.HASH not in m3
    [m2] = payload_types(p, "b", ET.AGGRESSIVE)
    assert w1.PayloadType.SIG in m2 and w1.PayloadType.CR in m2


# ---- refusals ---------------------------------------------------------------------------------

BAD = {
    "a-expired": "expired",
    "a-future": "not valid before",
    "a-untrusted": "not a trusted CA",
    "a-elsewhere": "identity 'gw-a.example' is not in certificate",
    "a-revoked": "revoked",
}


@pytest.mark.parametrize("bad", list(BAD))
def test_bad_initiator_certificate_gives_no_sa(pki, bad: str, caplog) -> None:
    b_kw = {"crls": (_crl(pki["crl"]),)} if bad == "a-revoked" else {}
    p = pubkey_pair(pki, pki[bad], pki["b-rsa"], b_kw=b_kw)
    with caplog.at_level("INFO"):
        p.start()
        p.advance(30)
    no_sa(p)
    lines = [r.getMessage() for r in caplog.records if "AUTHENTICATION_FAILED" in r.getMessage()]
    # the responder names the peer, the certificate and the reason
    assert any(BAD[bad] in ln and "gw-a.example" in ln for ln in lines), lines
    # the initiator learns it from the responder's encrypted notify
    assert any(
        "peer refused Phase 1 with AUTHENTICATION_FAILED" in r.getMessage() for r in caplog.records
    )


def test_bad_responder_certificate_gives_no_sa(pki, caplog) -> None:
    p = pubkey_pair(pki, pki["a-rsa"], pki["a-expired"])  # b presents an expired certificate
    with caplog.at_level("INFO"):
        p.start()
        p.advance(30)
    no_sa(p)
    assert any(
        "expired" in r.getMessage() and r.getMessage().startswith("to-b")
        for r in caplog.records
        if "AUTHENTICATION_FAILED" in r.getMessage()
    )


def _flip_in_sig(exchange: int, who: str, count: list[int]):  # noqa: ANN202
    """A filter corrupting the SIG of the first encrypted (Main Mode) or SIG-carrying
    (Aggressive Mode) Phase 1 message ``who`` sends."""

    def f(src: str, d) -> bool:  # noqa: ANN001
        h = w1.Header.from_bytes(d.data)
        if src != who or int(h.exchange) != exchange or count[0]:
            return True
        data = bytearray(d.data)
        if h.encrypted:
            # CBC: a flipped ciphertext byte garbles its plaintext block and flips one in the
            # next; 128 bytes from the end both lie inside the 256-byte RSA signature
            data[len(data) - 128] ^= 0x01
        else:
            spans = w1.payload_spans(h.next_payload, bytes(data[28:]))
            sig = next((s for s in spans if s[0] == w1.PayloadType.SIG), None)
            if sig is None:
                return True
            data[28 + sig[2] - 1] ^= 0x01
        count[0] += 1
        object.__setattr__(d, "data", bytes(data))
        return True

    return f


@pytest.mark.parametrize(
    ("mode", "exchange"), [(MAIN, ET.IDENTITY_PROTECTION), (AGGR, ET.AGGRESSIVE)]
)
def test_tampered_signature_gives_no_sa(pki, mode, exchange, caplog) -> None:
    p = pubkey_pair(pki, pki["a-rsa"], pki["b-rsa"], mode=mode)
    count = [0]
    p.filter = _flip_in_sig(exchange, "b", count)
    with caplog.at_level("INFO"):
        p.start()
        p.advance(30)
    assert count[0] == 1
    no_sa(p)
    assert any(
        "does not verify" in r.getMessage() and "gw-b.example" in r.getMessage()
        for r in caplog.records
    )


def test_own_key_refused_initiator_sends_nothing(pki, caplog) -> None:
    problem = "/etc/x/private/gw-a.key is readable by others (mode 0644); chmod 600 it"
    p = pubkey_pair(pki, pki["a-rsa"], pki["b-rsa"], a_kw={"key_problem": problem})
    with caplog.at_level("INFO"):
        p.start()
    assert not p.wire
    no_sa(p)
    assert any(problem in r.getMessage() for r in caplog.records)


def test_own_key_refused_responder_fails_before_message_6(pki, caplog) -> None:
    problem = "/etc/x/private/gw-b.key is readable by others (mode 0644); chmod 600 it"
    p = pubkey_pair(pki, pki["a-rsa"], pki["b-rsa"], b_kw={"key_problem": problem})
    with caplog.at_level("INFO"):
        p.start()
        p.advance(30)
    no_sa(p)
    assert any(problem in r.getMessage() and "to-a" in r.getMessage() for r in caplog.records)
    assert (
        len(
            [
                1
                for src, d in p.wire
                if src == "b"
                and int(w1.Header.from_bytes(d.data).exchange) == ET.IDENTITY_PROTECTION
            ]
        )
        == 2
    )
    assert any(
        "peer refused Phase 1 with AUTHENTICATION_FAILED" in r.getMessage() for r in caplog.records
    )


def test_signature_proposal_refused_by_psk_responder(pki, caplog) -> None:
    p = pubkey_pair(pki, pki["a-rsa"], pki["b-rsa"], b_psk=True)
    with caplog.at_level("INFO"):
        p.start()
        p.advance(30)
    no_sa(p)
    [line] = [
        r.getMessage() for r in caplog.records if "NO_PROPOSAL_CHOSEN: peer" in r.getMessage()
    ]
    assert "RSA signatures" in line and "pre-shared key" in line


def test_rsa_initiator_against_ecdsa_responder_is_refused(pki) -> None:
    p = pubkey_pair(pki, pki["a-rsa"], pki["b-ecdsa-p256"])
    p.start()
    p.advance(30)
    no_sa(p)


# ---- configuration ----------------------------------------------------------------------------


def test_config_refuses_ed25519_for_ikev1(pki) -> None:
    ed = pki["pki"].issue(pki["root"], "gw-ed.example", ["gw-ed.example"], "ed25519")
    v = {
        "proposals": (),
        "children": {},
        "local": AuthConfig(auth=AuthMethod.PUBKEY, certs=(ed.cert,)),
        "remote": AuthConfig(auth=AuthMethod.PUBKEY, cacerts=(pki["root"].cert,)),
    }
    ctx = Context()
    assert not check_connection(v, "connections.x", ctx)
    [(path, reason)] = [pr for pr in ctx.problems if "certs" in pr[0]]
    assert path == "connections.x.local.certs" and "Ed25519" in reason


def test_config_refuses_mixed_methods_for_ikev1(pki) -> None:
    v = {
        "proposals": (),
        "children": {},
        "local": AuthConfig(auth=AuthMethod.PSK),
        "remote": AuthConfig(auth=AuthMethod.PUBKEY, cacerts=(pki["root"].cert,)),
    }
    ctx = Context()
    assert not check_connection(v, "connections.x", ctx)
    assert any("one method" in r for _, r in ctx.problems)
