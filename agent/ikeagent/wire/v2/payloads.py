"""IKEv2 payloads (RFC 7296 section 3; SKF RFC 7383 section 2.5) and their registry.

SA and TS payloads live in ``sa`` and ``selectors``; this module holds the others and
``PAYLOAD_CLASSES``, from which the type -> class registry is built.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import ClassVar, Self

from ikeagent.wire.errors import InvalidLength, InvalidSyntax
from ikeagent.wire.iana import lookup_table
from ikeagent.wire.v2.base import CRITICAL, GENERIC, GENERIC_LEN, MAX_PAYLOAD_LEN, Payload, need
from ikeagent.wire.v2.enums import (
    AuthMethod,
    CertEncoding,
    CfgType,
    ConfigAttributeType,
    IdType,
    NotifyType,
    PayloadType,
    ProtocolId,
)
from ikeagent.wire.v2.sa import SecurityAssociation
from ikeagent.wire.v2.selectors import TrafficSelectorsInitiator, TrafficSelectorsResponder

_H = struct.Struct(">H")
_HH = struct.Struct(">HH")
_BBH = struct.Struct(">BBH")
_B3 = struct.Struct(">Bxxx")  # one type octet and three RESERVED octets
_SKF = struct.Struct(">BBHHH")  # generic header + Fragment Number, Total Fragments
_ID_ADDR_LEN = {IdType.ID_IPV4_ADDR: 4, IdType.ID_IPV6_ADDR: 16}
_AUTH_METHODS = lookup_table(AuthMethod)
_CERT_ENCODINGS = lookup_table(CertEncoding)
_CFG_TYPES = lookup_table(CfgType)
_CFG_ATTRS = lookup_table(ConfigAttributeType)
_ID_TYPES = lookup_table(IdType)
_NOTIFY_TYPES = lookup_table(NotifyType)
_PROTOCOLS = lookup_table(ProtocolId)


@dataclass(frozen=True, slots=True)
class KeyExchange(Payload):
    """KE (3.4): Diffie-Hellman Group Num, RESERVED, Key Exchange Data."""

    TYPE: ClassVar[PayloadType] = PayloadType.KE

    group: int
    data: bytes

    def body_bytes(self) -> bytes:
        return _HH.pack(self.group, 0) + self.data

    @classmethod
    def from_body(cls, body: bytes) -> Self:
        need(body, 4, "KE")
        return cls(_H.unpack_from(body)[0], body[4:])


@dataclass(frozen=True, slots=True)
class Nonce(Payload):
    """Ni/Nr (3.9).  RFC 7296 wants 16..256 bytes; the engine checks that range."""

    TYPE: ClassVar[PayloadType] = PayloadType.NONCE

    data: bytes

    def body_bytes(self) -> bytes:
        return self.data

    @classmethod
    def from_body(cls, body: bytes) -> Self:
        need(body, 1, "Nonce")
        return cls(body)


@dataclass(frozen=True, slots=True)
class Identification(Payload):
    """Shared base of IDi and IDr (3.5): ID Type, RESERVED (3), Identification Data."""

    id_type: IdType
    data: bytes

    def body_bytes(self) -> bytes:
        return _B3.pack(self.id_type) + self.data

    def id_body(self) -> bytes:
        """The payload body (type, reserved, data): what AUTH hashes as RestOfInitIDPayload."""
        return self.body_bytes()

    @classmethod
    def from_body(cls, body: bytes) -> Self:
        need(body, 4, cls.__name__)
        id_type = _ID_TYPES[body[0]]
        size = _ID_ADDR_LEN.get(id_type)
        if size is not None and len(body) - 4 != size:
            raise InvalidLength(f"{id_type.name} with {len(body) - 4} bytes of data")
        return cls(id_type, body[4:])


@dataclass(frozen=True, slots=True)
class IdentificationInitiator(Identification):
    TYPE: ClassVar[PayloadType] = PayloadType.IDi


@dataclass(frozen=True, slots=True)
class IdentificationResponder(Identification):
    TYPE: ClassVar[PayloadType] = PayloadType.IDr


@dataclass(frozen=True, slots=True)
class Certificate(Payload):
    """CERT (3.6): Cert Encoding, Certificate Data."""

    TYPE: ClassVar[PayloadType] = PayloadType.CERT

    encoding: int
    data: bytes

    def body_bytes(self) -> bytes:
        return bytes((self.encoding,)) + self.data

    @classmethod
    def from_body(cls, body: bytes) -> Self:
        need(body, 1, cls.__name__)
        return cls(_CERT_ENCODINGS[body[0]], body[1:])


@dataclass(frozen=True, slots=True)
class CertificateRequest(Payload):
    """CERTREQ (3.7): Cert Encoding, Certification Authority (concatenated SHA-1 hashes)."""

    TYPE: ClassVar[PayloadType] = PayloadType.CERTREQ

    encoding: int
    data: bytes

    def body_bytes(self) -> bytes:
        return bytes((self.encoding,)) + self.data

    @classmethod
    def from_body(cls, body: bytes) -> Self:
        need(body, 1, cls.__name__)
        return cls(_CERT_ENCODINGS[body[0]], body[1:])


@dataclass(frozen=True, slots=True)
class Authentication(Payload):
    """AUTH (3.8): Auth Method, RESERVED (3), Authentication Data."""

    TYPE: ClassVar[PayloadType] = PayloadType.AUTH

    method: AuthMethod
    data: bytes

    def body_bytes(self) -> bytes:
        return _B3.pack(self.method) + self.data

    @classmethod
    def from_body(cls, body: bytes) -> Self:
        need(body, 4, "AUTH")
        return cls(_AUTH_METHODS[body[0]], body[4:])


@dataclass(frozen=True, slots=True)
class Notify(Payload):
    """N (3.10): Protocol ID, SPI Size, Notify Message Type, SPI, Notification Data."""

    TYPE: ClassVar[PayloadType] = PayloadType.NOTIFY

    notify_type: NotifyType
    protocol: int = 0
    spi: bytes = b""
    data: bytes = b""

    def body_bytes(self) -> bytes:
        return _BBH.pack(self.protocol, len(self.spi), self.notify_type) + self.spi + self.data

    @classmethod
    def from_body(cls, body: bytes) -> Self:
        if len(body) < 4:
            raise InvalidLength(f"Notify body of {len(body)} bytes")
        protocol, spi_size, ntype = _BBH.unpack_from(body)
        if spi_size == 0:
            return cls(_NOTIFY_TYPES[ntype], protocol, b"", body[4:])
        if 4 + spi_size > len(body):
            raise InvalidLength(f"Notify SPI size {spi_size} overruns the payload")
        return cls(_NOTIFY_TYPES[ntype], protocol, body[4 : 4 + spi_size], body[4 + spi_size :])


@dataclass(frozen=True, slots=True)
class Delete(Payload):
    """D (3.11): Protocol ID, SPI Size, Num of SPIs, SPIs (as unsigned big-endian ints)."""

    TYPE: ClassVar[PayloadType] = PayloadType.DELETE

    protocol: ProtocolId
    spi_size: int
    spis: tuple[int, ...]

    def body_bytes(self) -> bytes:
        if self.spi_size == 0 and self.spis:
            raise ValueError("a Delete with SPI size 0 carries no SPIs")
        size = self.spi_size
        return _BBH.pack(self.protocol, size, len(self.spis)) + b"".join(
            s.to_bytes(size, "big") for s in self.spis
        )

    @classmethod
    def from_body(cls, body: bytes) -> Self:
        need(body, 4, "Delete")
        protocol, size, count = _BBH.unpack_from(body)
        if size == 0 and count:
            raise InvalidSyntax(f"Delete with SPI size 0 and {count} SPIs")
        if len(body) - 4 != size * count:
            raise InvalidLength(f"Delete of {count} SPIs of {size} bytes in {len(body) - 4}")
        if size == 0:
            spis: tuple[int, ...] = ()
        elif size == 4:
            spis = struct.unpack_from(f">{count}I", body, 4)
        else:
            spis = tuple(
                int.from_bytes(body[i : i + size], "big") for i in range(4, len(body), size)
            )
        return cls(_PROTOCOLS[protocol], size, spis)


@dataclass(frozen=True, slots=True)
class VendorId(Payload):
    """V (3.12)."""

    TYPE: ClassVar[PayloadType] = PayloadType.VENDOR

    data: bytes

    def body_bytes(self) -> bytes:
        return self.data

    @classmethod
    def from_body(cls, body: bytes) -> Self:
        return cls(body)


@dataclass(frozen=True, slots=True)
class Configuration(Payload):
    """CP (3.15): CFG Type, RESERVED (3), attributes (R|Attribute Type, Length, Value)."""

    TYPE: ClassVar[PayloadType] = PayloadType.CP

    cfg_type: int
    attributes: tuple[tuple[int, bytes], ...]

    def body_bytes(self) -> bytes:
        parts = [_B3.pack(self.cfg_type)]
        for atype, value in self.attributes:
            if not 0 <= atype < 0x8000:
                raise ValueError(f"configuration attribute type {atype} does not fit 15 bits")
            parts.append(_HH.pack(atype, len(value)))
            parts.append(value)
        return b"".join(parts)

    @classmethod
    def from_body(cls, body: bytes) -> Self:
        need(body, 4, "CP")
        attrs = []
        off, end = 4, len(body)
        while off < end:
            if end - off < 4:
                raise InvalidLength("configuration attribute header cut short")
            atype, alen = _HH.unpack_from(body, off)
            off += 4
            if off + alen > end:
                raise InvalidLength(f"configuration attribute length {alen} overruns CP")
            attrs.append((_CFG_ATTRS[atype & 0x7FFF], body[off : off + alen]))
            off += alen
        return cls(_CFG_TYPES[body[0]], tuple(attrs))


@dataclass(frozen=True, slots=True)
class Eap(Payload):
    """EAP (3.16): one EAP message (RFC 3748), kept raw."""

    TYPE: ClassVar[PayloadType] = PayloadType.EAP

    data: bytes

    def body_bytes(self) -> bytes:
        return self.data

    @classmethod
    def from_body(cls, body: bytes) -> Self:
        return cls(body)


@dataclass(frozen=True, slots=True)
class EncryptedAndAuthenticated(Payload):
    """SK (3.14).  ``next_payload`` is the generic header's Next Payload, i.e. the type of the
    first inner payload; ``body`` is IV || ciphertext || ICV, raw.  It ends the chain."""

    TYPE: ClassVar[PayloadType] = PayloadType.SK
    LAST: ClassVar[bool] = True

    next_payload: int
    body: bytes

    def body_bytes(self) -> bytes:
        return self.body

    @classmethod
    def from_body(cls, body: bytes, next_payload: int = 0) -> Self:
        return cls(next_payload, body)

    def to_bytes(self, next_payload: int = 0) -> bytes:
        """With its generic header; the ``next_payload`` argument is ignored (see class doc)."""
        return sk_header(self.next_payload, len(self.body)) + self.body


@dataclass(frozen=True, slots=True)
class EncryptedFragment(Payload):
    """SKF (RFC 7383 2.5).  ``next_payload`` is the first inner payload's type in fragment 1
    and 0 in the others; ``body`` (IV || ciphertext || ICV) follows the Fragment Number and
    Total Fragments fields.  It ends the chain."""

    TYPE: ClassVar[PayloadType] = PayloadType.SKF
    LAST: ClassVar[bool] = True

    next_payload: int
    fragment_number: int
    total_fragments: int
    body: bytes

    def body_bytes(self) -> bytes:
        return _HH.pack(self.fragment_number, self.total_fragments) + self.body

    @classmethod
    def from_body(cls, body: bytes, next_payload: int = 0) -> Self:
        need(body, 4, "SKF")
        number, total = _HH.unpack_from(body)
        if not 1 <= number <= total:
            raise InvalidSyntax(f"SKF fragment {number} of {total}")
        return cls(next_payload, number, total, body[4:])

    def to_bytes(self, next_payload: int = 0) -> bytes:
        """With its generic header; the ``next_payload`` argument is ignored (see class doc)."""
        return (
            skf_header(
                self.next_payload, self.fragment_number, self.total_fragments, len(self.body)
            )
            + self.body
        )


@dataclass(frozen=True, slots=True)
class UnknownPayload(Payload):
    """A payload of a type this decoder does not know, kept raw.  Decoding only produces
    non-critical ones (a critical unknown payload raises UnsupportedCriticalPayload);
    ``critical=True`` is for building test messages."""

    TYPE: ClassVar[PayloadType] = PayloadType.NONE  # the real type is ``payload_type``

    payload_type: int
    critical: bool
    data: bytes

    def wire_type(self) -> int:
        return self.payload_type

    def body_bytes(self) -> bytes:
        return self.data

    def to_bytes(self, next_payload: int = 0) -> bytes:
        length = GENERIC_LEN + len(self.data)
        if length > MAX_PAYLOAD_LEN:
            raise ValueError(f"payload type {self.payload_type} too long: {length} bytes")
        return GENERIC.pack(next_payload, CRITICAL if self.critical else 0, length) + self.data


def sk_header(next_payload: int, body_len: int) -> bytes:
    """The 4-byte generic header of an SK payload whose body (IV..ICV) is ``body_len`` bytes;
    together with the IKE header it is the associated data of AEAD ciphers (RFC 5282 5.1)."""
    length = GENERIC_LEN + body_len
    if length > MAX_PAYLOAD_LEN:
        raise ValueError(f"SK payload too long: {length} bytes")
    return GENERIC.pack(next_payload, 0, length)


def skf_header(
    next_payload: int, fragment_number: int, total_fragments: int, body_len: int
) -> bytes:
    """The 8 bytes before an SKF body: generic header, Fragment Number, Total Fragments
    (RFC 7383 2.5); the associated data of AEAD ciphers together with the IKE header."""
    length = _SKF.size + body_len
    if length > MAX_PAYLOAD_LEN:
        raise ValueError(f"SKF payload too long: {length} bytes")
    return _SKF.pack(next_payload, 0, length, fragment_number, total_fragments)


PAYLOAD_CLASSES: tuple[type[Payload], ...] = (
    SecurityAssociation,
    KeyExchange,
    IdentificationInitiator,
    IdentificationResponder,
    Certificate,
    CertificateRequest,
    Authentication,
    Nonce,
    Notify,
    Delete,
    VendorId,
    TrafficSelectorsInitiator,
    TrafficSelectorsResponder,
    EncryptedAndAuthenticated,
    Configuration,
    Eap,
    EncryptedFragment,
)

# payload type -> class; types not in here decode as UnknownPayload
PAYLOAD_REGISTRY: dict[int, type[Payload]] = {int(cls.TYPE): cls for cls in PAYLOAD_CLASSES}
