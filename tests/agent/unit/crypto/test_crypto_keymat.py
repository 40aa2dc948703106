"""IKEv2 key derivation against the NIST SP 800-135 (CAVS) IKEv2 KDF test vectors.

Vector A: a FIPS self-test vector in the CAVS IKEv2 KDF layout, SHA-1 (Ni/Nr 64 bits, g^ir
1024 bits, DKM 1056 bits), as embedded in the FIPS KAT fips/kdf/fips_kdf_ikev2.c
(openssl/openssl, commit 4d6101570872ed3f1d83d4888985450ee538d4ef, test_ikev2_kdf):
SKEYSEED, DKM, DKM(Child SA), DKM(Child SA D-H), SKEYSEED(Rekey).

Vector B: the CAVP SHA-1 IKEv2 vector (g^ir 256 bits) from libreswan's PRF self-test table
(libreswan/libreswan, ike_alg_test_prf.c, hmac_sha1_kdf_tests "CAVP: IKEv2 key derivation with
HMAC-SHA1": SKEYSEED, DKM, SKEYSEED(Rekey)). Its DKM(Child SA) and DKM(Child SA D-H) are the
values libreswan's IKEv2 CAVS helper prints for the same input (quoted in that helper's
source comment), i.e. a second implementation's answer rather than the NIST response file.
"""

from __future__ import annotations

import pytest

from ikeagent.crypto.keymat import (
    ChildKeys,
    IkeKeys,
    derive_child_keys,
    derive_ike_keys,
    skeyseed,
    skeyseed_rekey,
)
from ikeagent.crypto.prf import prf_plus

PRF_SHA1, PRF_SHA256 = 2, 5
ENCR_AES_CBC, ENCR_AES_GCM_16, ENCR_CHACHA = 12, 20, 28
AUTH_SHA1_96, AUTH_SHA256_128 = 2, 12


def h(text: str) -> bytes:
    return bytes.fromhex(text)


A = {
    "ni": h("36 51 fe f5 c9 c3 5e 93"),
    "nr": h("c0 9a 8b 90 a3 f0 4d 59"),
    "spi_i": 0x8E5C3AE507221684,
    "spi_r": 0xB1F201BB155C3ACD,
    "gir": h(
        "d0 84 a3 01 66 a5 0f b7 32 5c 39 60 87 4a 83 94 49 ef 97 41 c2 f4 f9 47"
        "d0 20 1d d8 c1 26 92 73 d7 95 09 f3 7e 3c a3 eb 4f a2 fe 2a 28 25 4e 28"
        "9c d3 f3 4d ad 4e b4 df 1a 07 68 5a 4b 8a 94 fa 61 e2 49 1f 75 98 b3 ce"
        "65 54 7f f1 33 b3 f6 3d 1a c4 17 5e aa 69 50 33 f3 ce db 02 6a 68 73 a3"
        "64 55 17 2a 85 40 b8 a5 d2 3a 01 43 be d0 39 0e e4 9b 16 82 69 d7 5f ff"
        "ee 9f b6 2b e9 65 99 3c"
    ),
    "gir_new": h(
        "52 f0 0a b1 74 c2 5d 5b 71 39 ae 5f f4 e8 e9 ed de e5 99 2d 2e 36 ad f8"
        "a5 59 ff d9 0d ab 14 42 e4 fb e4 29 d3 20 c0 f3 35 52 a1 7d 15 57 fa 41"
        "ea 70 e8 fb 91 6c 4f a2 7e d5 2b 5f 8e bd 84 61 af a7 8f 11 59 15 9a 64"
        "05 5a c5 f6 31 9e 29 c2 8e ae 58 cb c6 84 77 70 f3 2c 3f ed 1d 04 75 04"
        "84 f8 54 79 0f 95 e9 ec 01 bc 5b c4 61 f2 49 66 46 2e 35 95 11 32 93 05"
        "03 8e 94 de b6 dd 42 c2"
    ),
    "skeyseed": h("cd 2e 80 50 13 78 32 24 5f 1d ba cc 6e 4f 0a 92 f9 4d 45 d6"),
    "dkm": h(
        "6f 1b 12 ca d3 cb e0 97 b3 54 30 35 6d 86 9d 54 cd db 01 98 ec 85 91 74"
        "d5 3c eb 92 dd de db e2 43 6d b6 9f 60 97 7c 58 fa 63 bb b6 67 f8 d3 69"
        "20 b1 09 ba ae 8f 6c 61 a9 ac 49 fe da 01 84 32 25 d0 80 ec 55 39 d5 88"
        "1a 25 52 1f fb 2a 0a 91 87 4a 9c 0a 27 fc c2 d7 17 eb 89 63 a9 e3 a8 9c"
        "7a b2 64 75 72 84 c2 8c f8 c3 ca 40 57 6f 42 20 b0 52 b1 fb 8e 9a d6 0b"
        "a3 c8 05 57 32 33 31 a8 cb b8 9f 20"
    ),
    "dkm_child": h(
        "47 27 dc 0e f9 4e b3 26 ce 13 1c f2 82 fb 65 2f aa 63 8a d0 dd ae 37 86"
        "a1 1b cc 03 09 87 60 09 f8 c4 85 de 01 1a d9 62 c5 b1 ca 8a 41 ff 81 45"
        "44 57 49 07 9c 56 86 e2 6f fe bb c3 42 f0 69 81 f3 da 74 5e 11 ca 09 76"
        "42 4d 1f 8c ae c6 23 d5 9d c7 18 6d eb 20 a2 7b 41 1d 1d cb 70 a3 65 44"
        "0b f7 de 90 50 88 b0 69 2e 8a dd c0 94 e1 8d 19 39 bd b6 7e 89 79 8c a6"
        "b2 39 e2 cc b8 1c 24 09 da c0 10 6c"
    ),
    "dkm_child_dh": h(
        "b1 09 c2 1a d4 c0 79 77 68 c1 ce c9 e6 35 54 68 1e 48 f2 24 bc a7 f2 3c"
        "20 c4 ea 70 41 98 34 51 e9 aa 1d 54 08 65 6c 8a 97 5f f1 b9 d9 a1 2c 75"
        "ff eb 64 bd ec b3 01 74 66 4c cc b4 e1 4f 1c 37 7b 7f 6d 15 25 af 77 c7"
        "09 2a ac 3e 47 f9 17 eb ae 82 97 fb 55 39 d2 00 8c e8 30 82 3a 09 cc 19"
        "73 61 d4 a2 89 c7 27 45 f6 ce 9f ef e8 12 be 5b f5 5b 32 00 fb b8 2e 41"
        "a4 a4 08 77 d3 fe 10 6d b9 09 70 7b"
    ),
    "skeyseed_rekey": h("3b 03 bc e7 48 c9 6d 5e 83 06 91 8d 2f f8 9b 68 f0 64 8d a3"),
}

B = {
    "ni": h("32b50d5f4a3763f3"),
    "nr": h("9206a04b26564cb1"),
    "spi_i": 0x34C9E7C188868785,
    "spi_r": 0x3FF77D760D2B2199,
    "gir": h("4b2c1f971981a8ad8d0abeafabf38cf75fc8349c148142465ed9c8b516b8be52"),
    "gir_new": h("863f3c9d06efd39d2b907b97f8699e5dd5251ef64a2a176f36ee40c87d4f9330"),
    "skeyseed": h("a9a7b222b59f8f48645f28a1db5b5f5d7479cba7"),
    "dkm": h(
        "a14293677cc80ff8f9cc0eee30d895da9d8f405666e30ef0dfcb63c634a46002"
        "a2a63080e514a062768b76606f9fa5e992204fc5a670bde3f10d6b027113936a"
        "5c55b648a194ae587b0088d52204b702c979fa280870d2ed41efa9c549fd1119"
        "8af1670b143d384bd275c5f594cf266b05ebadca855e4249520a441a81157435"
        "a7a56cc4"
    ),
    "dkm_child": h(
        "8059e3ee8810e6c3a91bc8bcd2a7a41151b8d0e6ae239c7b38093ad85ef4c581"
        "1a8e7b5d1cdabd9560b2d5e092d1f24e2d4b85eccdf0ad0dc9abd94b51ee7181"
        "4ca6dbc8bb51b6309f5b9545c7eb35cf5580b1e521a8fe20754a2d883ba0c2cf"
        "285f524aea6545b33106bc03e614296d319d41d4b50b3f510b1c0a22f3e66499"
        "4d234cb4"
    ),
    "dkm_child_dh": h(
        "bb43244c1860ad65ee1e211ffe8bb3661750c8f89cb9f547df7f4fa61d373016"
        "28190e38c66232eab4b3ab14c400a5197dd3730ed4820a8a10394d51e1c04000"
        "52f63ebd36b0e7ef53aaed31eba4a5080d7d4b5666023a8bbb5ffb7857240f9a"
        "05884d1b7d2f933708450b7b3288f1fc863ab49fa901227cffc06e27899c7054"
        "d56fd74c"
    ),
    "skeyseed_rekey": h("63e81194946ebd05df7df5ebf5d8750056bf1f1d"),
}

VECTORS = pytest.mark.parametrize("v", [A, B], ids=["openssl-fips-cavs", "libreswan-cavp"])


def spis(v: dict) -> bytes:
    return v["spi_i"].to_bytes(8, "big") + v["spi_r"].to_bytes(8, "big")


def concat(keys: IkeKeys | ChildKeys) -> bytes:
    return b"".join(getattr(keys, f) for f in keys.__slots__)


@VECTORS
def test_vector_lengths(v: dict) -> None:
    assert len(v["dkm"]) == len(v["dkm_child"]) == len(v["dkm_child_dh"]) == 132
    assert len(v["gir"]) == len(v["gir_new"])


@VECTORS
def test_skeyseed(v: dict) -> None:
    assert skeyseed(PRF_SHA1, v["ni"], v["nr"], v["gir"]) == v["skeyseed"]


@VECTORS
def test_dkm_is_the_seven_ike_keys(v: dict) -> None:
    # 3 x 20 (SK_d, SK_pi, SK_pr) + 2 x 20 (HMAC-SHA1-96) + 2 x 16 (AES-128-CBC) = 132 octets
    keys = derive_ike_keys(
        PRF_SHA1,
        ENCR_AES_CBC,
        128,
        AUTH_SHA1_96,
        v["ni"],
        v["nr"],
        v["gir"],
        v["spi_i"],
        v["spi_r"],
    )
    assert concat(keys) == v["dkm"]
    assert keys.sk_d == v["dkm"][:20]
    assert keys.sk_ai == v["dkm"][20:40]
    assert keys.sk_ei == v["dkm"][60:76]
    assert keys.sk_pr == v["dkm"][-20:]


@VECTORS
def test_dkm_child_sa(v: dict) -> None:
    sk_d = v["dkm"][:20]
    assert prf_plus(PRF_SHA1, sk_d, v["ni"] + v["nr"], 132) == v["dkm_child"]
    # AES-256-CBC + HMAC-SHA2-256: 2 x (32 + 32) = 128 octets, a prefix of the same stream
    keys = derive_child_keys(PRF_SHA1, sk_d, v["ni"], v["nr"], ENCR_AES_CBC, 256, AUTH_SHA256_128)
    assert concat(keys) == v["dkm_child"][:128]
    assert keys.encr_i == v["dkm_child"][:32]
    assert keys.integ_i == v["dkm_child"][32:64]
    assert keys.encr_r == v["dkm_child"][64:96]
    assert keys.integ_r == v["dkm_child"][96:128]


@VECTORS
def test_dkm_child_sa_with_pfs(v: dict) -> None:
    sk_d = v["dkm"][:20]
    keys = derive_child_keys(
        PRF_SHA1, sk_d, v["ni"], v["nr"], ENCR_AES_CBC, 256, AUTH_SHA256_128, shared=v["gir_new"]
    )
    assert concat(keys) == v["dkm_child_dh"][:128]


@VECTORS
def test_skeyseed_rekey(v: dict) -> None:
    sk_d = v["dkm"][:20]
    assert skeyseed_rekey(PRF_SHA1, sk_d, v["gir_new"], v["ni"], v["nr"]) == v["skeyseed_rekey"]


@VECTORS
def test_rekeyed_ike_sa_keys_come_from_the_rekey_skeyseed(v: dict) -> None:
    sk_d = v["dkm"][:20]
    keys = derive_ike_keys(
        PRF_SHA1,
        ENCR_AES_CBC,
        128,
        AUTH_SHA1_96,
        v["ni"],
        v["nr"],
        v["gir_new"],
        v["spi_i"],
        v["spi_r"],
        old_sk_d=sk_d,
    )
    expect = prf_plus(PRF_SHA1, v["skeyseed_rekey"], v["ni"] + v["nr"] + spis(v), 132)
    assert concat(keys) == expect


def test_rekey_uses_the_old_sas_prf_for_skeyseed_and_the_new_prf_for_prf_plus() -> None:
    # RFC 7296 2.18: the old IKE SA's PRF computes SKEYSEED; the new SA's PRF expands it.
    v = A
    sk_d = v["dkm"][:20]
    keys = derive_ike_keys(
        PRF_SHA256,
        ENCR_AES_GCM_16,
        256,
        None,
        v["ni"],
        v["nr"],
        v["gir_new"],
        v["spi_i"],
        v["spi_r"],
        old_sk_d=sk_d,
        old_prf_id=PRF_SHA1,
    )
    sizes = 32 + 0 + 0 + 36 + 36 + 32 + 32
    expect = prf_plus(PRF_SHA256, v["skeyseed_rekey"], v["ni"] + v["nr"] + spis(v), sizes)
    assert concat(keys) == expect


def test_aead_key_sizes_include_salt_and_no_integrity_keys() -> None:
    keys = derive_ike_keys(
        PRF_SHA256, ENCR_AES_GCM_16, 256, None, b"n" * 32, b"m" * 32, b"g" * 32, 1, 2
    )
    assert (len(keys.sk_d), len(keys.sk_pi), len(keys.sk_pr)) == (32, 32, 32)
    assert (len(keys.sk_ei), len(keys.sk_er)) == (36, 36)  # RFC 5282: 32 key + 4 salt
    assert keys.sk_ai == keys.sk_ar == b""
    child = derive_child_keys(PRF_SHA256, keys.sk_d, b"n" * 32, b"m" * 32, ENCR_CHACHA, None, None)
    assert (len(child.encr_i), len(child.encr_r)) == (36, 36)  # RFC 7634: 32 key + 4 salt
    assert child.integ_i == child.integ_r == b""
    assert child.encr_i != child.encr_r


def test_reprs_hide_key_material() -> None:
    keys = derive_ike_keys(
        PRF_SHA256, ENCR_AES_CBC, 128, AUTH_SHA256_128, b"n" * 16, b"m" * 16, b"g" * 32, 1, 2
    )
    text = repr(keys)
    assert keys.sk_d.hex() not in text and "sk_d=<32 octets>" in text
    child = derive_child_keys(
        PRF_SHA256, keys.sk_d, b"n" * 16, b"m" * 16, ENCR_AES_CBC, 128, AUTH_SHA256_128
    )
    assert child.encr_i.hex() not in repr(child) and "encr_i=<16 octets>" in repr(child)
