"""Chain validation: good chains per key type and every failure reason."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from pki_factory import DAY, NOW, NOW_TS, key, make_cert, make_chain, make_crl, name

from ikeagent.crypto.pki import CertificateInvalid
from ikeagent.crypto.pki.names import serial_text
from ikeagent.crypto.pki.validate import MAX_CHAIN, TrustPolicy, validate_chain


def _policy(*anchors, crls=(), revocation="relaxed"):
    return TrustPolicy(tuple(anchors), tuple(crls), revocation)


@pytest.mark.parametrize("kind", ["rsa", "p256", "p384", "ed25519"])
def test_good_three_level_chain(kind):
    c = make_chain(kind)
    got = validate_chain(c.leaf.cert, [c.inter.cert], _policy(c.root.cert), NOW_TS)
    assert got == [c.leaf.cert, c.inter.cert, c.root.cert]
    # the intermediate may also be configured as the anchor
    assert validate_chain(c.leaf.cert, [], _policy(c.inter.cert), NOW_TS) == [
        c.leaf.cert,
        c.inter.cert,
    ]


def test_rsa_pss_signed_certificate():
    root = make_cert(name("PSS Root"), key("rsa", 0), ca=True)
    pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
    leaf = make_cert(name("pss-leaf"), key("rsa", 2), root, rsa_padding=pss)
    assert validate_chain(leaf.cert, [], _policy(root.cert), NOW_TS)[-1] == root.cert


def test_mixed_key_types_and_extra_intermediates(rsa_chain, p256_chain):
    root = rsa_chain.root
    inter = make_cert(name("EC Sub"), key("p256", 3), root, ca=True)
    leaf = make_cert(name("mixed"), key("ed25519", 3), inter)
    extras = [p256_chain.inter.cert, leaf.cert, inter.cert, root.cert]
    got = validate_chain(leaf.cert, extras, _policy(rsa_chain.root.cert), NOW_TS)
    assert got == [leaf.cert, inter.cert, root.cert]


def test_anchor_as_end_entity_only_if_configured(rsa_chain):
    root = rsa_chain.root.cert
    assert validate_chain(root, [], _policy(root), NOW_TS) == [root]
    other = make_cert(name("rsa Root CA"), key("rsa", 5), ca=True)  # same name, other key
    with pytest.raises(CertificateInvalid, match="does not verify with the key of"):
        validate_chain(other.cert, [], _policy(root), NOW_TS)


def test_self_signed_leaf_not_trusted(rsa_chain):
    me = make_cert(name("selfie"), key("p256", 4))
    with pytest.raises(
        CertificateInvalid, match="issued by 'O=Lab, CN=selfie', which is not a trusted CA"
    ):
        validate_chain(me.cert, [me.cert], _policy(rsa_chain.root.cert), NOW_TS)


def test_expired_and_not_yet_valid(p256_chain):
    c = p256_chain
    old = make_cert(
        name("gw-b"),
        key("p256", 2),
        c.inter,
        not_before=NOW - 90 * DAY,
        not_after=dt.datetime(2029, 12, 1, tzinfo=dt.UTC),
    )
    with pytest.raises(CertificateInvalid) as e:
        validate_chain(old.cert, [c.inter.cert], _policy(c.root.cert), NOW_TS)
    assert str(e.value) == "certificate 'O=Lab, CN=gw-b' expired on 2029-12-01 00:00:00 UTC"
    young = make_cert(
        name("gw-b"), key("p256", 2), c.inter, not_before=dt.datetime(2030, 2, 1, tzinfo=dt.UTC)
    )
    with pytest.raises(CertificateInvalid) as e:
        validate_chain(young.cert, [c.inter.cert], _policy(c.root.cert), NOW_TS)
    assert (
        str(e.value) == "certificate 'O=Lab, CN=gw-b' is not valid before 2030-02-01 00:00:00 UTC"
    )
    # the same chain at the leaf's time of validity is fine
    ok = dt.datetime(2030, 3, 1, tzinfo=dt.UTC).timestamp()
    assert len(validate_chain(young.cert, [c.inter.cert], _policy(c.root.cert), ok)) == 3


def test_expired_intermediate(p256_chain):
    c = p256_chain
    inter = make_cert(name("p256 Sub CA"), key("p256", 1), c.root, ca=True, not_after=NOW - DAY)
    with pytest.raises(CertificateInvalid, match="certificate 'O=Lab, CN=p256 Sub CA' expired"):
        validate_chain(c.leaf.cert, [inter.cert], _policy(c.root.cert), NOW_TS)


def test_untrusted_issuer(rsa_chain, p256_chain):
    with pytest.raises(CertificateInvalid) as e:
        validate_chain(rsa_chain.leaf.cert, [], _policy(p256_chain.root.cert), NOW_TS)
    assert str(e.value) == (
        "certificate 'O=Lab, CN=gw-b' is issued by 'O=Lab, CN=rsa Sub CA', "
        "which is not a trusted CA"
    )
    # the intermediate is there but leads to an unconfigured root
    with pytest.raises(CertificateInvalid, match="'O=Lab, CN=rsa Root CA', which is not a trusted"):
        validate_chain(
            rsa_chain.leaf.cert, [rsa_chain.inter.cert], _policy(p256_chain.root.cert), NOW_TS
        )


def test_bad_signature(p256_chain):
    c = p256_chain
    impostor = make_cert(name("p256 Sub CA"), key("p256", 6), c.root, ca=True, ski=False)
    forged = make_cert(name("gw-b"), key("p256", 2), impostor, aki=False)
    with pytest.raises(CertificateInvalid) as e:
        validate_chain(forged.cert, [c.inter.cert], _policy(c.root.cert), NOW_TS)
    assert str(e.value) == (
        "signature on certificate 'O=Lab, CN=gw-b' does not verify with the key of "
        "'O=Lab, CN=p256 Sub CA'"
    )


def test_issuer_not_a_ca(rsa_chain):
    root = rsa_chain.root
    for label, kw in [
        ("basicConstraints cA false", {"ca": False}),
        ("no basicConstraints cA", {"ca": None}),
    ]:
        inter = make_cert(name("Not CA"), key("rsa", 1), root, **kw)
        leaf = make_cert(name("leaf"), key("rsa", 2), inter)
        with pytest.raises(CertificateInvalid) as e:
            validate_chain(leaf.cert, [inter.cert], _policy(root.cert), NOW_TS)
        assert str(e.value) == f"issuer 'O=Lab, CN=Not CA' is not a CA ({label})"


def test_issuer_without_key_cert_sign(rsa_chain):
    root = rsa_chain.root
    ku = x509.KeyUsage(True, False, False, False, False, False, True, False, False)
    inter = make_cert(name("No Sign"), key("rsa", 1), root, ca=True, key_usage=ku)
    leaf = make_cert(name("leaf"), key("rsa", 2), inter)
    with pytest.raises(CertificateInvalid, match="keyUsage without keyCertSign"):
        validate_chain(leaf.cert, [inter.cert], _policy(root.cert), NOW_TS)


def test_path_length_exceeded(p256_chain):
    c = p256_chain  # the intermediate has pathLenConstraint 0
    sub2 = make_cert(name("Sub 2"), key("p256", 3), c.inter, ca=True)
    leaf = make_cert(name("deep"), key("p256", 4), sub2)
    with pytest.raises(CertificateInvalid) as e:
        validate_chain(leaf.cert, [sub2.cert, c.inter.cert], _policy(c.root.cert), NOW_TS)
    assert "path length constraint of 'O=Lab, CN=p256 Sub CA' exceeded" in str(e.value)
    # root without constraint and sub with pathLen 1: fine
    sub1 = make_cert(name("Sub 1"), key("p256", 5), c.root, ca=True, path_len=1)
    sub2b = make_cert(name("Sub 2b"), key("p256", 3), sub1, ca=True)
    leaf2 = make_cert(name("deep2"), key("p256", 4), sub2b)
    got = validate_chain(leaf2.cert, [sub2b.cert, sub1.cert], _policy(c.root.cert), NOW_TS)
    assert len(got) == 4


def test_chain_length_limit():
    root = make_cert(name("Long Root"), key("p256", 0), ca=True)
    prev, certs = root, []
    for i in range(MAX_CHAIN):
        prev = make_cert(name(f"Long {i}"), key("p256", 1), prev, ca=True)
        certs.append(prev.cert)
    leaf = make_cert(name("long leaf"), key("p256", 2), prev)
    with pytest.raises(CertificateInvalid, match=f"longer than {MAX_CHAIN}"):
        validate_chain(leaf.cert, certs, _policy(root.cert), NOW_TS)
    # one CA fewer fits exactly (leaf + 6 intermediates + root = 8)
    prev, certs = root, []
    for i in range(MAX_CHAIN - 2):
        prev = make_cert(name(f"Short {i}"), key("p256", 1), prev, ca=True)
        certs.append(prev.cert)
    leaf = make_cert(name("short leaf"), key("p256", 2), prev)
    assert len(validate_chain(leaf.cert, certs, _policy(root.cert), NOW_TS)) == MAX_CHAIN


def test_issuer_loop_is_not_followed():
    a_key, b_key = key("p256", 3), key("p256", 4)
    # A issued by B and B issued by A (cross-signed loop), neither trusted
    a = make_cert(name("Loop A"), a_key, None, ca=True)
    b = make_cert(name("Loop B"), b_key, a, ca=True)
    a2 = make_cert(name("Loop A"), a_key, b, ca=True)
    leaf = make_cert(name("loop leaf"), key("p256", 5), a2)
    anchor = make_cert(name("Elsewhere"), key("p256", 6), ca=True)
    with pytest.raises(CertificateInvalid, match="not a trusted CA|does not verify"):
        validate_chain(leaf.cert, [a2.cert, b.cert, a.cert], _policy(anchor.cert), NOW_TS)


def test_revoked(rsa_chain):
    c = rsa_chain
    when = dt.datetime(2029, 12, 24, 12, 0, tzinfo=dt.UTC)
    crl = make_crl(c.inter, [(c.leaf.cert.serial_number, when)])
    with pytest.raises(CertificateInvalid) as e:
        validate_chain(c.leaf.cert, [c.inter.cert], _policy(c.root.cert, crls=[crl]), NOW_TS)
    assert str(e.value) == (
        f"certificate 'O=Lab, CN=gw-b' (serial {serial_text(c.leaf.cert)}) is revoked "
        "(CRL of 'O=Lab, CN=rsa Sub CA', since 2029-12-24 12:00:00 UTC)"
    )
    # a revoked intermediate, in the root's CRL
    root_crl = make_crl(c.root, [(c.inter.cert.serial_number, when)])
    with pytest.raises(CertificateInvalid, match="CN=rsa Sub CA' .* is revoked"):
        validate_chain(c.leaf.cert, [c.inter.cert], _policy(c.root.cert, crls=[root_crl]), NOW_TS)
    # other serials listed: fine, strict too
    other = make_crl(c.inter, [(12345, when)])
    pol = _policy(c.root.cert, crls=[other, make_crl(c.root)], revocation="strict")
    assert len(validate_chain(c.leaf.cert, [c.inter.cert], pol, NOW_TS)) == 3


def test_strict_needs_crl(rsa_chain):
    c = rsa_chain
    with pytest.raises(CertificateInvalid) as e:
        validate_chain(
            c.leaf.cert, [c.inter.cert], _policy(c.root.cert, revocation="strict"), NOW_TS
        )
    assert str(e.value) == (
        "revocation status of certificate 'O=Lab, CN=gw-b' is unknown (strict): "
        "no CRL of 'O=Lab, CN=rsa Sub CA' is configured"
    )
    # relaxed: no CRL is fine
    assert len(validate_chain(c.leaf.cert, [c.inter.cert], _policy(c.root.cert), NOW_TS)) == 3


def test_crl_bad_signature(rsa_chain):
    c = rsa_chain
    forged = make_crl(c.inter, [(c.leaf.cert.serial_number, NOW - DAY)], signer=key("rsa", 5))
    root_crl = make_crl(c.root)
    relaxed = _policy(c.root.cert, crls=[forged, root_crl])
    assert len(validate_chain(c.leaf.cert, [c.inter.cert], relaxed, NOW_TS)) == 3
    strict = _policy(c.root.cert, crls=[forged, root_crl], revocation="strict")
    with pytest.raises(
        CertificateInvalid, match="the CRL of 'O=Lab, CN=rsa Sub CA' has a bad signature"
    ):
        validate_chain(c.leaf.cert, [c.inter.cert], strict, NOW_TS)


def test_stale_crl(rsa_chain):
    c = rsa_chain
    stale = make_crl(c.inter, this_update=NOW - 10 * DAY, next_update=NOW - DAY)
    root_crl = make_crl(c.root)
    relaxed = _policy(c.root.cert, crls=[stale, root_crl])
    assert len(validate_chain(c.leaf.cert, [c.inter.cert], relaxed, NOW_TS)) == 3
    strict = _policy(c.root.cert, crls=[stale, root_crl], revocation="strict")
    with pytest.raises(CertificateInvalid, match="CRL of 'O=Lab, CN=rsa Sub CA' is stale"):
        validate_chain(c.leaf.cert, [c.inter.cert], strict, NOW_TS)
    # a stale CRL that lists the certificate still revokes it in relaxed mode
    stale_rev = make_crl(
        c.inter,
        [(c.leaf.cert.serial_number, NOW - 20 * DAY)],
        this_update=NOW - 10 * DAY,
        next_update=NOW - DAY,
    )
    with pytest.raises(CertificateInvalid, match="is revoked"):
        validate_chain(c.leaf.cert, [c.inter.cert], _policy(c.root.cert, crls=[stale_rev]), NOW_TS)


def test_ifuri_policy(rsa_chain):
    c = rsa_chain  # no cRLDistributionPoints: ifuri behaves as relaxed
    pol = _policy(c.root.cert, revocation="ifuri")
    assert len(validate_chain(c.leaf.cert, [c.inter.cert], pol, NOW_TS)) == 3


def test_bad_policy_and_no_anchors(rsa_chain):
    with pytest.raises(CertificateInvalid, match="unknown revocation policy"):
        validate_chain(
            rsa_chain.leaf.cert, [], _policy(rsa_chain.root.cert, revocation="x"), NOW_TS
        )
    with pytest.raises(CertificateInvalid, match="no CA certificates"):
        validate_chain(rsa_chain.leaf.cert, [], TrustPolicy(()), NOW_TS)
