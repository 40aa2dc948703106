"""Key exchange: RFC 5903 ECP vectors, RFC 7748 X25519 vectors, RFC 3526 MODP primes."""

from __future__ import annotations

import random

import pytest

from ikeagent.crypto.dh import (
    MODP_2048_P,
    MODP_3072_P,
    MODP_4096_P,
    MODP_6144_P,
    MODP_8192_P,
    InvalidPublicKey,
    KeyExchange,
    group_public_len,
    supported_groups,
)
from ikeagent.crypto.suites import dh_info

# RFC 5903 section 8.1 (256-bit), 8.2 (384-bit), 8.3 (521-bit) random ECP groups:
# private i and r, public g^i = gix|giy and g^r = grx|gry, shared x coordinate girx.
RFC5903 = {
    19: dict(
        i="c88f01f510d9ac3f70a292daa2316de544e9aab8afe84049c62a9c57862d1433",
        gix="dad0b65394221cf9b051e1feca5787d098dfe637fc90b9ef945d0c3772581180",
        giy="5271a0461cdb8252d61f1c456fa3e59ab1f45b33accf5f58389e0577b8990bb3",
        r="c6ef9c5d78ae012a011164acb397ce2088685d8f06bf9be0b283ab46476bee53",
        grx="d12dfb5289c8d4f81208b70270398c342296970a0bccb74c736fc7554494bf63",
        gry="56fbf3ca366cc23e8157854c13c58d6aac23f046ada30f8353e74f33039872ab",
        girx="d6840f6b42f6edafd13116e0e12565202fef8e9ece7dce03812464d04b9442de",
    ),
    20: dict(
        i="099f3c7034d4a2c699884d73a375a67f7624ef7c6b3c0f160647b67414dce655"
        "e35b538041e649ee3faef896783ab194",
        gix="667842d7d180ac2cde6f74f37551f55755c7645c20ef73e31634fe72b4c55ee6"
        "de3ac808acb4bdb4c88732aee95f41aa",
        giy="9482ed1fc0eeb9cafc4984625ccfc23f65032149e0e144ada024181535a0f38e"
        "eb9fcff3c2c947dae69b4c634573a81c",
        r="41cb0779b4bdb85d47846725fbec3c9430fab46cc8dc5060855cc9bda0aa2942"
        "e0308312916b8ed2960e4bd55a7448fc",
        grx="e558dbef53eecde3d3fccfc1aea08a89a987475d12fd950d83cfa41732bc509d"
        "0d1ac43a0336def96fda41d0774a3571",
        gry="dcfbec7aacf3196472169e838430367f66eebe3c6e70c416dd5f0c68759dd1ff"
        "f83fa40142209dff5eaad96db9e6386c",
        girx="11187331c279962d93d604243fd592cb9d0a926f422e47187521287e7156c5c4"
        "d603135569b9e9d09cf5d4a270f59746",
    ),
    21: dict(
        i="0037ade9319a89f4dabdb3ef411aaccca5123c61acab57b5393dce47608172a0"
        "95aa85a30fe1c2952c6771d937ba9777f5957b2639bab072462f68c27a57382d"
        "4a52",
        gix="0015417e84dbf28c0ad3c278713349dc7df153c897a1891bd98bab4357c9ecbe"
        "e1e3bf42e00b8e380aeae57c2d107564941885942af5a7f4601723c4195d176c"
        "ed3e",
        giy="017cae20b6641d2eeb695786d8c946146239d099e18e1d5a514c739d7cb4a10a"
        "d8a788015ac405d7799dc75e7b7d5b6cf2261a6a7f1507438bf01beb6ca3926f"
        "9582",
        r="0145ba99a847af43793fdd0e872e7cdfa16be30fdc780f97bccc3f078380201e"
        "9c677d600b343757a3bdbf2a3163e4c2f869cca7458aa4a4effc311f5cb15168"
        "5eb9",
        grx="00d0b3975ac4b799f5bea16d5e13e9af971d5e9b984c9f39728b5e5739735a21"
        "9b97c356436adc6e95bb0352f6be64a6c2912d4ef2d0433ced2b6171640012d9"
        "460f",
        gry="015c68226383956e3bd066e797b623c27ce0eac2f551a10c2c724d9852077b87"
        "220b6536c5c408a1d2aebb8e86d678ae49cb57091f4732296579ab44fcd17f0f"
        "c56a",
        girx="01144c7d79ae6956bc8edb8e7c787c4521cb086fa64407f97894e5e6b2d79b04"
        "d1427e73ca4baa240a34786859810c06b3c715a3a8cc3151f2bee417996d19f3"
        "ddea",
    ),
}


@pytest.mark.parametrize("group", sorted(RFC5903))
def test_rfc5903_ecp_vectors(group: int) -> None:
    v = {k: bytes.fromhex(x) for k, x in RFC5903[group].items()}
    ini = KeyExchange.from_private(group, v["i"])
    res = KeyExchange.from_private(group, v["r"])
    # RFC 5903 section 7: KE data is x | y, without the 0x04 point-format octet
    assert ini.public == v["gix"] + v["giy"]
    assert res.public == v["grx"] + v["gry"]
    # ... and the shared secret is the x coordinate only
    assert ini.compute(res.public) == v["girx"]
    assert res.compute(ini.public) == v["girx"]
    assert len(ini.public) == group_public_len(group)


# RFC 7748 section 6.1 (Curve25519 Diffie-Hellman); RFC 8031 uses these values unchanged
ALICE = bytes.fromhex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
ALICE_PUB = bytes.fromhex("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")
BOB = bytes.fromhex("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb")
BOB_PUB = bytes.fromhex("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f")
SHARED = bytes.fromhex("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742")


def test_rfc7748_x25519_diffie_hellman() -> None:
    a = KeyExchange.from_private(31, ALICE)
    b = KeyExchange.from_private(31, BOB)
    assert a.public == ALICE_PUB
    assert b.public == BOB_PUB
    assert a.compute(BOB_PUB) == SHARED
    assert b.compute(ALICE_PUB) == SHARED


def test_rfc7748_section_5_2_first_vector() -> None:
    scalar = bytes.fromhex("a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4")
    u = bytes.fromhex("e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c")
    out = bytes.fromhex("c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552")
    assert KeyExchange.from_private(31, scalar).compute(u) == out


@pytest.mark.parametrize("u", [bytes(32), b"\x01" + bytes(31)])
def test_x25519_low_order_points_give_invalid_public_key(u: bytes) -> None:
    # RFC 8031 section 2.1 / RFC 7748 section 6.1: an all-zero result MUST be refused
    with pytest.raises(InvalidPublicKey):
        KeyExchange.from_private(31, ALICE).compute(u)


def _pi_fixed(bits: int) -> int:
    """floor(pi * 2^bits) by Machin's formula, with guard bits."""
    guard = 64
    one = 1 << (bits + guard)

    def arctan_inv(x: int) -> int:
        total, term, n, sign = 0, one // x, 1, 1
        while term:
            total += sign * (term // n)
            term //= x * x
            n += 2
            sign = -sign
        return total

    return (16 * arctan_inv(5) - 4 * arctan_inv(239)) >> guard


# RFC 3526 sections 3-7: p = 2^n - 2^(n-64) - 1 + 2^64 * ( [2^(n-130) pi] + k ), generator 2
@pytest.mark.parametrize(
    ("prime", "n", "k"),
    [
        (MODP_2048_P, 2048, 124476),
        (MODP_3072_P, 3072, 1690314),
        (MODP_4096_P, 4096, 240904),
        (MODP_6144_P, 6144, 929484),
        (MODP_8192_P, 8192, 4743158),
    ],
)
def test_modp_primes_match_the_rfc3526_formula(prime: int, n: int, k: int) -> None:
    assert prime == 2**n - 2 ** (n - 64) - 1 + 2**64 * (_pi_fixed(n - 130) + k)


@pytest.mark.parametrize("group", supported_groups())
def test_both_sides_agree_and_lengths_are_rfc_formats(group: int) -> None:
    rng = random.Random(group)
    a = KeyExchange.generate(group, rng)
    b = KeyExchange.generate(group, rng)
    assert a.group == group
    assert len(a.public) == len(b.public) == dh_info(group).public_len
    z = a.compute(b.public)
    assert z == b.compute(a.public)
    expect_len = {19: 32, 20: 48, 21: 66, 31: 32}.get(group, dh_info(group).public_len)
    assert len(z) == expect_len
    assert a.public != b.public


@pytest.mark.parametrize("group", supported_groups())
def test_seeded_rng_gives_deterministic_keys(group: int) -> None:
    a1 = KeyExchange.generate(group, random.Random(7))
    a2 = KeyExchange.generate(group, random.Random(7))
    a3 = KeyExchange.generate(group, random.Random(8))
    assert a1.public == a2.public
    assert a1.public != a3.public


def test_modp_public_value_is_g_to_the_x_padded() -> None:
    rng = random.Random(1)
    a = KeyExchange.generate(14, rng)
    x = int.from_bytes(random.Random(1).randbytes(32), "big") | 1 << 255
    assert a.public == pow(2, x, MODP_2048_P).to_bytes(256, "big")


@pytest.mark.parametrize(
    "bad",
    [
        (0).to_bytes(256, "big"),
        (1).to_bytes(256, "big"),
        (MODP_2048_P - 1).to_bytes(256, "big"),
        MODP_2048_P.to_bytes(256, "big"),
        b"\xff" * 256,
        b"\x02" * 255,
        b"\x02" * 257,
    ],
)
def test_modp_rejects_out_of_range_or_wrong_length(bad: bytes) -> None:
    a = KeyExchange.generate(14, random.Random(3))
    with pytest.raises(InvalidPublicKey):
        a.compute(bad)


def test_modp_accepts_the_range_ends() -> None:
    a = KeyExchange.generate(14, random.Random(3))
    assert len(a.compute((2).to_bytes(256, "big"))) == 256
    assert len(a.compute((MODP_2048_P - 2).to_bytes(256, "big"))) == 256


@pytest.mark.parametrize("group", [19, 20, 21])
def test_ecp_rejects_points_off_the_curve_and_bad_lengths(group: int) -> None:
    a = KeyExchange.generate(group, random.Random(4))
    b = KeyExchange.generate(group, random.Random(5))
    off = bytearray(b.public)
    off[-1] ^= 1
    for bad in (bytes(off), b.public[:-1], b.public + b"\x00", bytes(len(b.public)), b""):
        with pytest.raises(InvalidPublicKey):
            a.compute(bad)


def test_x25519_rejects_wrong_length() -> None:
    a = KeyExchange.from_private(31, ALICE)
    for bad in (BOB_PUB[:-1], BOB_PUB + b"\x00", b""):
        with pytest.raises(InvalidPublicKey):
            a.compute(bad)


def test_invalid_public_key_is_a_value_error_and_unknown_group_is_key_error() -> None:
    assert issubclass(InvalidPublicKey, ValueError)
    with pytest.raises(KeyError):
        KeyExchange.generate(2, random.Random(0))  # MODP_1024: refused as weak
    with pytest.raises(KeyError):
        group_public_len(2)


def test_repr_hides_the_private_value() -> None:
    a = KeyExchange.from_private(31, ALICE)
    assert repr(a) == "KeyExchange(group=CURVE25519)"
    assert ALICE.hex() not in repr(a)


def test_modp_keygen_falls_back_to_pow(monkeypatch: pytest.MonkeyPatch) -> None:
    from ikeagent.crypto import dh

    expect = KeyExchange.generate(15, random.Random(11))
    real_key = dh._Modp._key

    def refuse_generator_trick(self, x: int, y: int):
        if y == 2:
            raise ValueError("refused")
        return real_key(self, x, y)

    monkeypatch.setattr(dh._Modp, "_key", refuse_generator_trick)
    got = KeyExchange.generate(15, random.Random(11))
    assert got.public == expect.public
    peer = KeyExchange.generate(15, random.Random(12))
    assert got.compute(peer.public) == peer.compute(got.public)
