"""Key exchange for IKEv2: MODP (RFC 3526), ECP (RFC 5903) and Curve25519 (RFC 8031).

``KeyExchange.generate(group, rng)`` derives the private value from ``rng.randbytes`` only, so a
seeded ``random.Random`` gives the same keys every run (tests, simulations); production passes
``random.SystemRandom()``. Wire formats:

- MODP: public value big-endian, zero-padded to the prime's length (RFC 7296 3.4); shared
  secret likewise padded (RFC 7296 2.14 "g^ir ... padded with zeros ... to the length of the
  prime").
- ECP: public value x | y, each padded to the field size, no 0x04 prefix (RFC 5903 section 7);
  shared secret is the x coordinate only (RFC 5903 section 7).
- Curve25519: 32 raw octets both ways (RFC 8031 section 2); an all-zero shared secret is refused
  (RFC 8031 section 2.1, RFC 7748 section 6.1).

Peer values are checked: exact length, MODP value in [2, p-2] (RFC 7296 5.1 / NIST SP 800-56A
5.6.2.3.1 partial validation), ECP point on the curve; failures raise ``InvalidPublicKey``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from cryptography.hazmat.primitives.asymmetric import dh, ec, x25519
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from ikeagent.crypto.suites import DhId, dh_info


class InvalidPublicKey(ValueError):
    """The peer's KE data is malformed, off the curve, or gives a degenerate secret."""


class RandomBytes(Protocol):
    def randbytes(self, n: int) -> bytes: ...


def _hex(*lines: str) -> int:
    return int("".join(lines), 16)


# RFC 3526 section 3-7 primes (generator 2). Cross-checked in the tests against the formula the
# RFC gives: p = 2^n - 2^(n-64) - 1 + 2^64 * ( [2^(n-130) pi] + k ).
MODP_2048_P = _hex(
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74",
    "020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F1437",
    "4FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED",
    "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF05",
    "98DA48361C55D39A69163FA8FD24CF5F83655D23DCA3AD961C62F356208552BB",
    "9ED529077096966D670C354E4ABC9804F1746C08CA18217C32905E462E36CE3B",
    "E39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF695581718",
    "3995497CEA956AE515D2261898FA051015728E5A8AACAA68FFFFFFFFFFFFFFFF",
)

MODP_3072_P = _hex(
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74",
    "020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F1437",
    "4FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED",
    "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF05",
    "98DA48361C55D39A69163FA8FD24CF5F83655D23DCA3AD961C62F356208552BB",
    "9ED529077096966D670C354E4ABC9804F1746C08CA18217C32905E462E36CE3B",
    "E39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF695581718",
    "3995497CEA956AE515D2261898FA051015728E5A8AAAC42DAD33170D04507A33",
    "A85521ABDF1CBA64ECFB850458DBEF0A8AEA71575D060C7DB3970F85A6E1E4C7",
    "ABF5AE8CDB0933D71E8C94E04A25619DCEE3D2261AD2EE6BF12FFA06D98A0864",
    "D87602733EC86A64521F2B18177B200CBBE117577A615D6C770988C0BAD946E2",
    "08E24FA074E5AB3143DB5BFCE0FD108E4B82D120A93AD2CAFFFFFFFFFFFFFFFF",
)

MODP_4096_P = _hex(
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74",
    "020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F1437",
    "4FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED",
    "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF05",
    "98DA48361C55D39A69163FA8FD24CF5F83655D23DCA3AD961C62F356208552BB",
    "9ED529077096966D670C354E4ABC9804F1746C08CA18217C32905E462E36CE3B",
    "E39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF695581718",
    "3995497CEA956AE515D2261898FA051015728E5A8AAAC42DAD33170D04507A33",
    "A85521ABDF1CBA64ECFB850458DBEF0A8AEA71575D060C7DB3970F85A6E1E4C7",
    "ABF5AE8CDB0933D71E8C94E04A25619DCEE3D2261AD2EE6BF12FFA06D98A0864",
    "D87602733EC86A64521F2B18177B200CBBE117577A615D6C770988C0BAD946E2",
    "08E24FA074E5AB3143DB5BFCE0FD108E4B82D120A92108011A723C12A787E6D7",
    "88719A10BDBA5B2699C327186AF4E23C1A946834B6150BDA2583E9CA2AD44CE8",
    "DBBBC2DB04DE8EF92E8EFC141FBECAA6287C59474E6BC05D99B2964FA090C3A2",
    "233BA186515BE7ED1F612970CEE2D7AFB81BDD762170481CD0069127D5B05AA9",
    "93B4EA988D8FDDC186FFB7DC90A6C08F4DF435C934063199FFFFFFFFFFFFFFFF",
)

MODP_6144_P = _hex(
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74",
    "020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F1437",
    "4FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED",
    "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF05",
    "98DA48361C55D39A69163FA8FD24CF5F83655D23DCA3AD961C62F356208552BB",
    "9ED529077096966D670C354E4ABC9804F1746C08CA18217C32905E462E36CE3B",
    "E39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF695581718",
    "3995497CEA956AE515D2261898FA051015728E5A8AAAC42DAD33170D04507A33",
    "A85521ABDF1CBA64ECFB850458DBEF0A8AEA71575D060C7DB3970F85A6E1E4C7",
    "ABF5AE8CDB0933D71E8C94E04A25619DCEE3D2261AD2EE6BF12FFA06D98A0864",
    "D87602733EC86A64521F2B18177B200CBBE117577A615D6C770988C0BAD946E2",
    "08E24FA074E5AB3143DB5BFCE0FD108E4B82D120A92108011A723C12A787E6D7",
    "88719A10BDBA5B2699C327186AF4E23C1A946834B6150BDA2583E9CA2AD44CE8",
    "DBBBC2DB04DE8EF92E8EFC141FBECAA6287C59474E6BC05D99B2964FA090C3A2",
    "233BA186515BE7ED1F612970CEE2D7AFB81BDD762170481CD0069127D5B05AA9",
    "93B4EA988D8FDDC186FFB7DC90A6C08F4DF435C93402849236C3FAB4D27C7026",
    "C1D4DCB2602646DEC9751E763DBA37BDF8FF9406AD9E530EE5DB382F413001AE",
    "B06A53ED9027D831179727B0865A8918DA3EDBEBCF9B14ED44CE6CBACED4BB1B",
    "DB7F1447E6CC254B332051512BD7AF426FB8F401378CD2BF5983CA01C64B92EC",
    "F032EA15D1721D03F482D7CE6E74FEF6D55E702F46980C82B5A84031900B1C9E",
    "59E7C97FBEC7E8F323A97A7E36CC88BE0F1D45B7FF585AC54BD407B22B4154AA",
    "CC8F6D7EBF48E1D814CC5ED20F8037E0A79715EEF29BE32806A1D58BB7C5DA76",
    "F550AA3D8A1FBFF0EB19CCB1A313D55CDA56C9EC2EF29632387FE8D76E3C0468",
    "043E8F663F4860EE12BF2D5B0B7474D6E694F91E6DCC4024FFFFFFFFFFFFFFFF",
)

MODP_8192_P = _hex(
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74",
    "020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F1437",
    "4FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED",
    "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF05",
    "98DA48361C55D39A69163FA8FD24CF5F83655D23DCA3AD961C62F356208552BB",
    "9ED529077096966D670C354E4ABC9804F1746C08CA18217C32905E462E36CE3B",
    "E39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF695581718",
    "3995497CEA956AE515D2261898FA051015728E5A8AAAC42DAD33170D04507A33",
    "A85521ABDF1CBA64ECFB850458DBEF0A8AEA71575D060C7DB3970F85A6E1E4C7",
    "ABF5AE8CDB0933D71E8C94E04A25619DCEE3D2261AD2EE6BF12FFA06D98A0864",
    "D87602733EC86A64521F2B18177B200CBBE117577A615D6C770988C0BAD946E2",
    "08E24FA074E5AB3143DB5BFCE0FD108E4B82D120A92108011A723C12A787E6D7",
    "88719A10BDBA5B2699C327186AF4E23C1A946834B6150BDA2583E9CA2AD44CE8",
    "DBBBC2DB04DE8EF92E8EFC141FBECAA6287C59474E6BC05D99B2964FA090C3A2",
    "233BA186515BE7ED1F612970CEE2D7AFB81BDD762170481CD0069127D5B05AA9",
    "93B4EA988D8FDDC186FFB7DC90A6C08F4DF435C93402849236C3FAB4D27C7026",
    "C1D4DCB2602646DEC9751E763DBA37BDF8FF9406AD9E530EE5DB382F413001AE",
    "B06A53ED9027D831179727B0865A8918DA3EDBEBCF9B14ED44CE6CBACED4BB1B",
    "DB7F1447E6CC254B332051512BD7AF426FB8F401378CD2BF5983CA01C64B92EC",
    "F032EA15D1721D03F482D7CE6E74FEF6D55E702F46980C82B5A84031900B1C9E",
    "59E7C97FBEC7E8F323A97A7E36CC88BE0F1D45B7FF585AC54BD407B22B4154AA",
    "CC8F6D7EBF48E1D814CC5ED20F8037E0A79715EEF29BE32806A1D58BB7C5DA76",
    "F550AA3D8A1FBFF0EB19CCB1A313D55CDA56C9EC2EF29632387FE8D76E3C0468",
    "043E8F663F4860EE12BF2D5B0B7474D6E694F91E6DBE115974A3926F12FEE5E4",
    "38777CB6A932DF8CD8BEC4D073B931BA3BC832B68D9DD300741FA7BF8AFC47ED",
    "2576F6936BA424663AAB639C5AE4F5683423B4742BF1C978238F16CBE39D652D",
    "E3FDB8BEFC848AD922222E04A4037C0713EB57A81A23F0C73473FC646CEA306B",
    "4BCBC8862F8385DDFA9D4B7FA2C087E879683303ED5BDD3A062B3CF5B3A278A6",
    "6D2A13F83F44F82DDF310EE074AB6A364597E899A0255DC164F31CC50846851D",
    "F9AB48195DED7EA1B1D510BD7EE74D73FAF36BC31ECFA268359046F4EB879F92",
    "4009438B481C6CD7889A002ED5EE382BC9190DA6FC026E479558E4475677E9AA",
    "9E3050E2765694DFC81F56E880B96E7160C980DD98EDD3DFFFFFFFFFFFFFFFFF",
)

# order of prime256v1
_N_PRIME256V1 = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551

# order of secp384r1
_N_SECP384R1 = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFC7634D81F4372DDF581A0DB248B0A77AECEC196ACCC52973

# order of secp521r1
_N_SECP521R1 = 0x1FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFA51868783BF2F966B7FCC0148F709A5D03BB5C9B8899C47AEBB6FB71E91386409


class _Group(Protocol):
    def private_from(self, rng: RandomBytes) -> bytes: ...

    def keypair(self, private: bytes) -> tuple[object, bytes]: ...

    def shared(self, state: object, peer: bytes) -> bytes: ...


class _Modp:
    """RFC 3526 group, generator 2, exponentiation by OpenSSL through ``cryptography``.

    Measured (2 cores, OpenSSL 3.0): OpenSSL's constant-time modexp is 7-10x faster than
    Python's ``pow`` (MODP_2048: 0.4 ms vs 3.1 ms per operation; MODP_8192: 9 ms vs 87 ms).
    Our public value g^x is computed as the DH "shared secret" of x with the peer value g
    (Python's ``pow`` if OpenSSL refuses that); peer values refused by OpenSSL are invalid.
    """

    __slots__ = ("p", "exponent_bits", "size", "_numbers", "_generator")

    def __init__(self, p: int, exponent_bits: int) -> None:
        self.p = p
        self.exponent_bits = exponent_bits  # >= twice the security strength (NIST SP 800-57)
        self.size = (p.bit_length() + 7) // 8
        self._numbers = dh.DHParameterNumbers(p, 2)
        self._generator = dh.DHPublicNumbers(2, self._numbers)

    def private_from(self, rng: RandomBytes) -> bytes:
        n = self.exponent_bits // 8
        x = int.from_bytes(rng.randbytes(n), "big")
        return (x | 1 << (self.exponent_bits - 1)).to_bytes(n, "big")

    def _key(self, x: int, y: int) -> dh.DHPrivateKey:
        return dh.DHPrivateNumbers(x, dh.DHPublicNumbers(y, self._numbers)).private_key()

    def keypair(self, private: bytes) -> tuple[object, bytes]:
        x = int.from_bytes(private, "big")
        if not 1 < x < self.p - 1:
            raise ValueError("MODP private exponent out of range")
        try:
            y = int.from_bytes(self._key(x, 2).exchange(self._generator.public_key()), "big")
        except ValueError:
            y = pow(2, x, self.p)
        return self._key(x, y), y.to_bytes(self.size, "big")

    def shared(self, state: object, peer: bytes) -> bytes:
        if len(peer) != self.size:
            raise InvalidPublicKey(f"MODP public value is {len(peer)} octets, expected {self.size}")
        y = int.from_bytes(peer, "big")
        if not 2 <= y <= self.p - 2:
            raise InvalidPublicKey("MODP public value outside [2, p-2]")
        try:
            peer_key = dh.DHPublicNumbers(y, self._numbers).public_key()
            z = int.from_bytes(state.exchange(peer_key), "big")  # type: ignore[attr-defined]
        except ValueError as exc:  # OpenSSL's own public value checks
            raise InvalidPublicKey("MODP public value refused") from exc
        if z <= 1:
            raise InvalidPublicKey("MODP shared secret is degenerate")
        return z.to_bytes(self.size, "big")


@dataclass(frozen=True, slots=True)
class _Ecp:
    curve: ec.EllipticCurve
    order: int
    size: int  # field element octets

    def private_from(self, rng: RandomBytes) -> bytes:
        # FIPS 186-4 B.4.1: 64 extra bits, then c mod (n-1) + 1.
        c = int.from_bytes(rng.randbytes(self.size + 8), "big")
        return (c % (self.order - 1) + 1).to_bytes(self.size, "big")

    def keypair(self, private: bytes) -> tuple[object, bytes]:
        d = int.from_bytes(private, "big")
        if not 0 < d < self.order:
            raise ValueError("ECP private scalar out of range")
        key = ec.derive_private_key(d, self.curve)
        point = key.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
        return key, point[1:]

    def shared(self, state: object, peer: bytes) -> bytes:
        if len(peer) != 2 * self.size:
            raise InvalidPublicKey(
                f"ECP public value is {len(peer)} octets, expected {2 * self.size}"
            )
        try:
            pub = ec.EllipticCurvePublicKey.from_encoded_point(self.curve, b"\x04" + peer)
            return state.exchange(ec.ECDH(), pub)  # type: ignore[attr-defined]
        except ValueError as exc:
            raise InvalidPublicKey("ECP public value is not a point on the curve") from exc


@dataclass(frozen=True, slots=True)
class _Curve25519:
    def private_from(self, rng: RandomBytes) -> bytes:
        return rng.randbytes(32)

    def keypair(self, private: bytes) -> tuple[object, bytes]:
        key = x25519.X25519PrivateKey.from_private_bytes(private)
        return key, key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    def shared(self, state: object, peer: bytes) -> bytes:
        if len(peer) != 32:
            raise InvalidPublicKey(f"Curve25519 public value is {len(peer)} octets, expected 32")
        try:
            z = state.exchange(x25519.X25519PublicKey.from_public_bytes(peer))  # type: ignore[attr-defined]
        except ValueError as exc:  # cryptography refuses an all-zero result
            raise InvalidPublicKey("Curve25519 shared secret is all zero") from exc
        if not any(z):
            raise InvalidPublicKey("Curve25519 shared secret is all zero")
        return z


_GROUPS: dict[int, _Group] = {
    DhId.MODP_2048: _Modp(MODP_2048_P, 256),
    DhId.MODP_3072: _Modp(MODP_3072_P, 256),
    DhId.MODP_4096: _Modp(MODP_4096_P, 320),
    DhId.MODP_6144: _Modp(MODP_6144_P, 384),
    DhId.MODP_8192: _Modp(MODP_8192_P, 512),
    DhId.ECP_256: _Ecp(ec.SECP256R1(), _N_PRIME256V1, 32),
    DhId.ECP_384: _Ecp(ec.SECP384R1(), _N_SECP384R1, 48),
    DhId.ECP_521: _Ecp(ec.SECP521R1(), _N_SECP521R1, 66),
    DhId.CURVE25519: _Curve25519(),
}


def group_public_len(group_id: int) -> int:
    """Octets of KE payload data for the group (KeyError if unsupported)."""
    return dh_info(group_id).public_len


def supported_groups() -> tuple[int, ...]:
    return tuple(int(g) for g in _GROUPS)


class KeyExchange:
    """One side of a key exchange: our private value, our public KE data, and the shared secret."""

    __slots__ = ("group", "public", "_state", "_impl")

    def __init__(self, group: int, impl: _Group, private: bytes) -> None:
        self.group = int(group)
        self._impl = impl
        self._state, self.public = impl.keypair(private)

    @classmethod
    def generate(cls, group_id: int, rng: RandomBytes) -> KeyExchange:
        """A fresh key pair whose private value comes from ``rng.randbytes`` (KeyError if the
        group is unsupported)."""
        impl = _GROUPS[int(group_id)]
        return cls(group_id, impl, impl.private_from(rng))

    @classmethod
    def from_private(cls, group_id: int, private: bytes) -> KeyExchange:
        """A key pair from a known private value (big-endian exponent or scalar, or the 32
        Curve25519 octets), for known-answer tests."""
        return cls(group_id, _GROUPS[int(group_id)], private)

    def compute(self, peer_public: bytes) -> bytes:
        """The shared secret g^ir in IKEv2 format; InvalidPublicKey for bad peer data."""
        return self._impl.shared(self._state, bytes(peer_public))

    def __repr__(self) -> str:
        return f"KeyExchange(group={dh_info(self.group).name})"
