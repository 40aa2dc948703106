"""IKEv2 AUTH and IKEv1 SIG signatures: method choice, round trips, tampering, wrong keys,
RFC 7427 AlgorithmIdentifier known answers and the IKEv1 RSA padding without DigestInfo."""

from __future__ import annotations

import hashlib

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed448, padding, utils
from pki_factory import key

from ikeagent.crypto.pki import SignatureInvalid
from ikeagent.crypto.pki.signatures import (
    HASH_IDENTITY,
    HASH_SHA1,
    HASH_SHA256,
    HASH_SHA384,
    HASH_SHA512,
    SUPPORTED_HASHES,
    ecdsa_algid,
    eddsa_algid,
    parse_algid,
    parse_auth_data,
    rsa_pkcs1_algid,
    rsa_pss_algid,
    sign_v1,
    sign_v2,
    v1_auth_method,
    verify_v1,
    verify_v2,
)

OCTETS = b"RealMessage1 | NonceRData | MACedIDForI" * 7
ALL = {HASH_SHA1, HASH_SHA256, HASH_SHA384, HASH_SHA512, HASH_IDENTITY}

# RFC 7427 appendix A AlgorithmIdentifier encodings.
# A.4.2 "RSASSA-PSS with default parameters" (64 octets), as quoted in RFC Errata ID 4295:
PSS_DEFAULTS = bytes.fromhex(
    "303e06092a864886f70d01010a3031a00b300906052b0e03021a0500a118301606092a864886f70d010108"
    "300906052b0e03021a0500a203020114a303020101"
)
# sha256/sha512WithRSAEncryption: RFC 7427 A.1.2/A.1.4 (also Chromium's verify_signed_data
# test data "MA0GCSqGSIb3DQEBCwUA" / "MA0GCSqGSIb3DQEBDQUA")
KNOWN = {
    "sha1WithRSAEncryption": "300d06092a864886f70d0101050500",  # A.1.1
    "sha256WithRSAEncryption": "300d06092a864886f70d01010b0500",  # A.1.2
    "sha384WithRSAEncryption": "300d06092a864886f70d01010c0500",  # A.1.3
    "sha512WithRSAEncryption": "300d06092a864886f70d01010d0500",  # A.1.4
    "ecdsa-with-sha256": "300a06082a8648ce3d040302",  # A.3.2
    "ecdsa-with-sha384": "300a06082a8648ce3d040303",  # A.3.3
    "ecdsa-with-sha512": "300a06082a8648ce3d040304",  # A.3.4
    # A.4.3 RSASSA-PSS with SHA-256, MGF1 SHA-256, salt 32 (67 octets)
    "rsassa-pss-sha256": "304106092a864886f70d01010a3034a00f300d06096086480165030402010500"
    "a11c301a06092a864886f70d010108300d06096086480165030402010500a203020120",
    # RFC 8420 / RFC 8410: id-Ed25519 without parameters
    "ed25519": "300506032b6570",
}


def test_supported_hashes():
    assert SUPPORTED_HASHES == (2, 3, 4, 5)


def test_algid_known_answers():
    assert rsa_pkcs1_algid(HASH_SHA1).hex() == KNOWN["sha1WithRSAEncryption"]
    assert rsa_pkcs1_algid(HASH_SHA256).hex() == KNOWN["sha256WithRSAEncryption"]
    assert rsa_pkcs1_algid(HASH_SHA384).hex() == KNOWN["sha384WithRSAEncryption"]
    assert rsa_pkcs1_algid(HASH_SHA512).hex() == KNOWN["sha512WithRSAEncryption"]
    assert ecdsa_algid(HASH_SHA256).hex() == KNOWN["ecdsa-with-sha256"]
    assert ecdsa_algid(HASH_SHA384).hex() == KNOWN["ecdsa-with-sha384"]
    assert ecdsa_algid(HASH_SHA512).hex() == KNOWN["ecdsa-with-sha512"]
    assert rsa_pss_algid(HASH_SHA256).hex() == KNOWN["rsassa-pss-sha256"]
    assert len(rsa_pss_algid(HASH_SHA256)) == 67
    assert eddsa_algid().hex() == KNOWN["ed25519"]


def test_parse_known_answers():
    s = parse_algid(PSS_DEFAULTS)
    assert (s.kind, s.hash_id, s.mgf_hash, s.salt) == ("rsa-pss", HASH_SHA1, HASH_SHA1, 20)
    s = parse_algid(bytes.fromhex(KNOWN["rsassa-pss-sha256"]))
    assert (s.kind, s.hash_id, s.mgf_hash, s.salt) == ("rsa-pss", HASH_SHA256, HASH_SHA256, 32)
    # RFC 7427 A.4.1: RSASSA-PSS with empty parameters means all defaults
    s = parse_algid(bytes.fromhex("300d06092a864886f70d01010a3000"))
    assert (s.hash_id, s.mgf_hash, s.salt) == (HASH_SHA1, HASH_SHA1, 20)
    assert parse_algid(bytes.fromhex(KNOWN["sha384WithRSAEncryption"])).hash_id == HASH_SHA384
    assert parse_algid(bytes.fromhex(KNOWN["ecdsa-with-sha512"])).kind == "ecdsa"
    assert parse_algid(bytes.fromhex(KNOWN["ed25519"])).kind == "ed25519"
    # PKCS#1 with absent parameters is accepted too (RFC 4055 2.1)
    assert parse_algid(bytes.fromhex("300b06092a864886f70d01010b")).hash_id == HASH_SHA256
    for bad in [
        "300d06092a864886f70d0101010500",  # rsaEncryption: not a signature algorithm
        "300c06082a8648ce3d0403020500ff",  # trailing junk inside
        "3005060300",  # truncated OID
        "300706032b65700500",  # EdDSA with parameters
        "300da00b300906052b0e03021a0500",  # no OID
    ]:
        with pytest.raises(ValueError):
            parse_algid(bytes.fromhex(bad))


def _roundtrip(k, peer, expected_method):
    method, data = sign_v2(k, OCTETS, peer)
    assert method == expected_method
    verify_v2(k.public_key(), method, data, OCTETS)
    return method, data


@pytest.mark.parametrize(
    "kind,peer,method,algid",
    [
        ("rsa", ALL, 14, KNOWN["sha256WithRSAEncryption"]),
        ("rsa", {HASH_SHA512}, 14, KNOWN["sha512WithRSAEncryption"]),
        ("rsa", {HASH_SHA384, HASH_SHA512}, 14, KNOWN["sha384WithRSAEncryption"]),
        ("rsa", {HASH_IDENTITY}, 1, None),
        ("rsa", (), 1, None),
        ("p256", ALL, 14, KNOWN["ecdsa-with-sha256"]),
        ("p256", {HASH_SHA384}, 14, KNOWN["ecdsa-with-sha384"]),
        ("p384", ALL, 14, KNOWN["ecdsa-with-sha384"]),
        ("p384", {HASH_SHA256}, 10, None),
        ("p521", ALL, 14, KNOWN["ecdsa-with-sha512"]),
        ("p256", (), 9, None),
        ("p384", (), 10, None),
        ("p521", (), 11, None),
        ("ed25519", ALL, 14, KNOWN["ed25519"]),
    ],
)
def test_sign_verify_v2(kind, peer, method, algid):
    k = key(kind)
    _, data = _roundtrip(k, peer, method)
    if algid is not None:
        scheme, _sig = parse_auth_data(data)
        assert scheme.algid.hex() == algid
        assert data[0] == len(bytes.fromhex(algid))
    if method in (9, 10, 11):
        assert len(data) == {9: 64, 10: 96, 11: 132}[method]  # r||s, not DER
    # tampered octets, tampered signature, wrong key of the same type
    with pytest.raises(SignatureInvalid, match="does not verify"):
        verify_v2(k.public_key(), method, data, OCTETS + b"x")
    bad = bytearray(data)
    bad[-1] ^= 1
    with pytest.raises(SignatureInvalid):
        verify_v2(k.public_key(), method, bytes(bad), OCTETS)
    with pytest.raises(SignatureInvalid):
        verify_v2(key(kind, 1).public_key(), method, data, OCTETS)


def test_legacy_rsa_is_pkcs1_sha1():
    k = key("rsa")
    method, data = sign_v2(k, OCTETS, ())
    assert method == 1
    k.public_key().verify(data, OCTETS, padding.PKCS1v15(), hashes.SHA1())


def test_legacy_ecdsa_is_rfc4754_rs():
    k = key("p384")
    method, data = sign_v2(k, OCTETS, ())
    r, s = int.from_bytes(data[:48], "big"), int.from_bytes(data[48:], "big")
    k.public_key().verify(utils.encode_dss_signature(r, s), OCTETS, ec.ECDSA(hashes.SHA384()))


def test_method14_ecdsa_is_der():
    k = key("p256")
    _, data = sign_v2(k, OCTETS, {HASH_SHA256})
    _scheme, sig = parse_auth_data(data)
    k.public_key().verify(sig, OCTETS, ec.ECDSA(hashes.SHA256()))  # DER ECDSA-Sig-Value


def test_ed25519_without_identity_refused():
    with pytest.raises(SignatureInvalid, match="RFC 7427"):
        sign_v2(key("ed25519"), OCTETS, {HASH_SHA256})
    with pytest.raises(SignatureInvalid, match="RFC 7427"):
        sign_v2(key("ed25519"), OCTETS, ())


def test_ed448():
    k = ed448.Ed448PrivateKey.generate()
    method, data = sign_v2(k, OCTETS, {HASH_IDENTITY})
    assert method == 14
    verify_v2(k.public_key(), method, data, OCTETS)


@pytest.mark.parametrize("h", [HASH_SHA256, HASH_SHA384, HASH_SHA512])
def test_rsa_pss_sign_and_verify(h):
    k = key("rsa")
    method, data = sign_v2(k, OCTETS, {h}, rsa_pss=True)
    scheme, _ = parse_auth_data(data)
    assert method == 14 and scheme.kind == "rsa-pss" and scheme.hash_id == h
    verify_v2(k.public_key(), method, data, OCTETS)


def test_rsa_pss_verify_with_received_parameters():
    k = key("rsa")
    # PSS with the RFC 7427 A.4.2 default parameters: SHA-1, MGF1 SHA-1, salt 20
    sig = k.sign(OCTETS, padding.PSS(padding.MGF1(hashes.SHA1()), 20), hashes.SHA1())
    verify_v2(k.public_key(), 14, bytes([len(PSS_DEFAULTS)]) + PSS_DEFAULTS + sig, OCTETS)
    # odd parameters: SHA-384 with MGF1 SHA-256 and salt 0
    algid = rsa_pss_algid(HASH_SHA384, salt=0, mgf_hash=HASH_SHA256)
    sig = k.sign(OCTETS, padding.PSS(padding.MGF1(hashes.SHA256()), 0), hashes.SHA384())
    verify_v2(k.public_key(), 14, bytes([len(algid)]) + algid + sig, OCTETS)
    # the same signature under other announced parameters fails
    wrong = rsa_pss_algid(HASH_SHA384, salt=48, mgf_hash=HASH_SHA256)
    with pytest.raises(SignatureInvalid, match="RSASSA-PSS with SHA-384 signature does not verify"):
        verify_v2(k.public_key(), 14, bytes([len(wrong)]) + wrong + sig, OCTETS)


def test_sha1_accepted_in_method14():
    k = key("rsa")
    algid = rsa_pkcs1_algid(HASH_SHA1)
    sig = k.sign(OCTETS, padding.PKCS1v15(), hashes.SHA1())
    verify_v2(k.public_key(), 14, bytes([len(algid)]) + algid + sig, OCTETS)


def test_wrong_key_type_for_method():
    rsa_k, ec_k, ed_k = key("rsa"), key("p256"), key("ed25519")
    _, rsa_data = sign_v2(rsa_k, OCTETS, ALL)
    with pytest.raises(SignatureInvalid, match="key cannot verify a RSA PKCS#1 v1.5"):
        verify_v2(ec_k.public_key(), 14, rsa_data, OCTETS)
    _, ed_data = sign_v2(ed_k, OCTETS, ALL)
    with pytest.raises(SignatureInvalid, match="cannot verify a Ed25519"):
        verify_v2(rsa_k.public_key(), 14, ed_data, OCTETS)
    _, p256_legacy = sign_v2(ec_k, OCTETS, ())
    with pytest.raises(SignatureInvalid, match="needs an ECDSA key on secp384r1"):
        verify_v2(ec_k.public_key(), 10, p256_legacy, OCTETS)
    with pytest.raises(SignatureInvalid, match="needs an ECDSA key"):
        verify_v2(rsa_k.public_key(), 9, p256_legacy, OCTETS)
    with pytest.raises(SignatureInvalid):
        verify_v2(ec_k.public_key(), 1, p256_legacy, OCTETS)
    with pytest.raises(SignatureInvalid, match="unsupported AUTH method 2"):
        verify_v2(ec_k.public_key(), 2, p256_legacy, OCTETS)


def test_malformed_auth_data():
    k = key("p256").public_key()
    for data in [b"", b"\x05", b"\x20" + bytes.fromhex(KNOWN["ed25519"]), b"\x00abc"]:
        with pytest.raises(SignatureInvalid):
            verify_v2(k, 14, data, OCTETS)
    unknown = bytes.fromhex("300d06092a864886f70d0101010500")  # rsaEncryption
    with pytest.raises(SignatureInvalid, match="unknown AlgorithmIdentifier"):
        verify_v2(k, 14, bytes([len(unknown)]) + unknown + b"sig", OCTETS)


# ------------------------------------------------------------------------------ IKEv1

HASH_I = hashlib.sha256(b"HASH_I").digest()


def test_v1_auth_method():
    assert v1_auth_method(key("rsa")) == 3
    assert v1_auth_method(key("rsa").public_key()) == 3
    assert v1_auth_method(key("p256")) == 9
    assert v1_auth_method(key("p384").public_key()) == 10
    assert v1_auth_method(key("p521")) == 11
    with pytest.raises(SignatureInvalid, match="Ed25519"):
        v1_auth_method(key("ed25519"))
    with pytest.raises(SignatureInvalid):
        sign_v1(key("ed25519"), HASH_I)


@pytest.mark.parametrize("hlen", [16, 20, 32, 48, 64])
def test_v1_rsa_null_padding_raw(hlen):
    k = key("rsa")
    h = hashlib.sha512(bytes([hlen])).digest()[:hlen]
    sig = sign_v1(k, h)
    nums = k.public_key().public_numbers()
    em = pow(int.from_bytes(sig, "big"), nums.e, nums.n).to_bytes(256, "big")
    # RFC 2409 5.1 / strongSwan SIGN_RSA_EMSA_PKCS1_NULL: 00 01 FF.. 00 || HASH, no DigestInfo
    assert em == b"\x00\x01" + b"\xff" * (256 - 3 - hlen) + b"\x00" + h
    verify_v1(k.public_key(), 3, h, sig)
    with pytest.raises(SignatureInvalid):
        verify_v1(k.public_key(), 3, h[:-1] + bytes([h[-1] ^ 1]), sig)
    with pytest.raises(SignatureInvalid):
        verify_v1(key("rsa", 1).public_key(), 3, h, sig)


def test_v1_rsa_randomised_blinding_gives_deterministic_signature():
    k = key("rsa")
    assert sign_v1(k, HASH_I) == sign_v1(k, HASH_I)  # PKCS#1 v1.5 is deterministic


def test_v1_rsa_rejects_digestinfo_signature():
    k = key("rsa")
    # a normal PKCS#1 v1.5 SHA-256 signature carries a DigestInfo: not IKEv1's format
    sig = k.sign(b"HASH_I", padding.PKCS1v15(), hashes.SHA256())
    with pytest.raises(SignatureInvalid):
        verify_v1(k.public_key(), 3, HASH_I, sig)


@pytest.mark.parametrize("kind,method,size", [("p256", 9, 32), ("p384", 10, 48), ("p521", 11, 66)])
def test_v1_ecdsa_signs_hash_directly(kind, method, size):
    k = key(kind)
    for h in (hashlib.sha1(b"x").digest(), HASH_I, hashlib.sha512(b"x").digest()):
        sig = sign_v1(k, h)
        assert len(sig) == 2 * size
        verify_v1(k.public_key(), method, h, sig)
        # HASH_I is the ECDSA digest itself (strongSwan SIGN_ECDSA_WITH_NULL): no second hash
        r, s = int.from_bytes(sig[:size], "big"), int.from_bytes(sig[size:], "big")
        alg = {20: hashes.SHA1(), 32: hashes.SHA256(), 64: hashes.SHA512()}[len(h)]
        k.public_key().verify(utils.encode_dss_signature(r, s), h, ec.ECDSA(utils.Prehashed(alg)))
        with pytest.raises(SignatureInvalid):
            verify_v1(k.public_key(), method, hashlib.sha256(h).digest()[: len(h)], sig)
    with pytest.raises(SignatureInvalid):
        verify_v1(key(kind, 1).public_key(), method, HASH_I, sign_v1(k, HASH_I))
    with pytest.raises(SignatureInvalid, match="needs an ECDSA key"):
        verify_v1(key("rsa").public_key(), method, HASH_I, sign_v1(k, HASH_I))
    with pytest.raises(SignatureInvalid, match="octets, expected"):
        verify_v1(k.public_key(), method, HASH_I, sign_v1(k, HASH_I)[:-1])
    with pytest.raises(SignatureInvalid, match="unsupported IKEv1 signature method"):
        verify_v1(k.public_key(), 1, HASH_I, sign_v1(k, HASH_I))
