"""AUTH payload data (RFC 7296 2.15) and NAT detection hashes (RFC 7296 2.23).

No published known-answer vectors were found for these two constructions; the tests pin the
octet layout the RFC defines, built independently with hashlib/hmac.
"""

from __future__ import annotations

import hashlib
import hmac

from ikeagent.crypto.auth import KEY_PAD, psk_auth, signed_octets, verify_psk_auth
from ikeagent.crypto.nat import nat_hash

PRF_SHA256, PRF_SHA1 = 5, 2


def test_key_pad_is_the_17_ascii_octets_of_rfc7296() -> None:
    assert KEY_PAD == b"Key Pad for IKEv2" and len(KEY_PAD) == 17


def test_psk_auth_is_prf_of_prf_of_the_secret_and_key_pad() -> None:
    psk, octets = b"correct horse battery staple", b"message|nonce|maced-id"
    inner = hmac.digest(psk, KEY_PAD, "sha256")
    assert psk_auth(PRF_SHA256, psk, octets) == hmac.digest(inner, octets, "sha256")
    assert len(psk_auth(PRF_SHA1, psk, octets)) == 20


def test_verify_psk_auth() -> None:
    psk, octets = b"secret", b"signed octets"
    good = psk_auth(PRF_SHA256, psk, octets)
    assert verify_psk_auth(PRF_SHA256, psk, octets, good)
    assert not verify_psk_auth(PRF_SHA256, b"Secret", octets, good)
    assert not verify_psk_auth(PRF_SHA256, psk, octets + b"x", good)
    assert not verify_psk_auth(PRF_SHA256, psk, octets, good[:-1])
    assert not verify_psk_auth(PRF_SHA256, psk, octets, b"")


def test_signed_octets_layout() -> None:
    message, nonce, sk_p, id_body = (
        b"IKE_SA_INIT bytes",
        b"N" * 32,
        b"P" * 32,
        b"\x01\x00\x00\x00\xc0\x00\x02\x01",
    )
    got = signed_octets(message, nonce, PRF_SHA256, sk_p, id_body)
    assert got == message + nonce + hmac.digest(sk_p, id_body, "sha256")


def test_nat_hash_ipv4_layout() -> None:
    data = bytes.fromhex("01020304050607080000000000000000c000020101f4")
    assert nat_hash(0x0102030405060708, 0, "192.0.2.1", 500) == hashlib.sha1(data).digest()


def test_nat_hash_ipv6_layout() -> None:
    data = bytes.fromhex("0102030405060708111213141516171820010db80000000000000000000000011194")
    assert (
        nat_hash(0x0102030405060708, 0x1112131415161718, "2001:db8::1", 4500)
        == hashlib.sha1(data).digest()
    )


def test_nat_hash_changes_with_every_input() -> None:
    base = nat_hash(1, 2, "198.18.0.1", 500)
    assert len(base) == 20
    others = {
        nat_hash(3, 2, "198.18.0.1", 500),
        nat_hash(1, 3, "198.18.0.1", 500),
        nat_hash(1, 2, "198.18.0.2", 500),
        nat_hash(1, 2, "198.18.0.1", 4500),
    }
    assert base not in others and len(others) == 4
