"""ISAKMP payloads other than SA (RFC 2408 3.7-3.16, RFC 2407 4.6, RFC 3947 3.2/5.2,
RFC 3706) and the type -> class registry.

The SA payload and its substructures live in ``sa``.  Unknown payload types decode as
``RawPayload``.  The draft NAT-T payload types (130, 131) decode to subclasses of ``NatD`` and
``NatOa`` that keep their type, so they re-encode as received.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address
from typing import ClassVar, Self

from ikeagent.wire.errors import InvalidLength, InvalidSyntax
from ikeagent.wire.iana import lookup_table
from ikeagent.wire.v1.base import Payload, need
from ikeagent.wire.v1.enums import (
    DOI_IPSEC,
    CertEncoding,
    IdType,
    NotifyType,
    PayloadType,
    ProtocolId,
)
from ikeagent.wire.v1.sa import SecurityAssociation

IPAddress = IPv4Address | IPv6Address
IPNetwork = IPv4Network | IPv6Network

_ID = struct.Struct(">BBH")  # ID Type, Protocol ID, Port
_B3 = struct.Struct(">Bxxx")  # one type octet and three RESERVED octets
_NOTIFY = struct.Struct(">IBBH")  # DOI, Protocol-Id, SPI Size, Notify Message Type
_DELETE = struct.Struct(">IBBH")  # DOI, Protocol-Id, SPI Size, # of SPIs
_SEQ = struct.Struct(">I")
_COOKIES_LEN = 16

# ID types whose data has a fixed size (RFC 2407 4.6.2.2 - 4.6.2.11)
_ID_DATA_LEN = {
    IdType.ID_IPV4_ADDR: 4,
    IdType.ID_IPV4_ADDR_SUBNET: 8,
    IdType.ID_IPV4_ADDR_RANGE: 8,
    IdType.ID_IPV6_ADDR: 16,
    IdType.ID_IPV6_ADDR_SUBNET: 32,
    IdType.ID_IPV6_ADDR_RANGE: 32,
}
_ID_ADDR_LEN = {IdType.ID_IPV4_ADDR: 4, IdType.ID_IPV6_ADDR: 16}
_ID_TYPES = lookup_table(IdType)
_NOTIFY_TYPES = lookup_table(NotifyType)
_PROTOCOLS = lookup_table(ProtocolId)
_CERT_ENCODINGS = lookup_table(CertEncoding)


@dataclass(frozen=True, slots=True)
class _Opaque(Payload):
    """A payload whose body is one opaque field."""

    data: bytes

    def body_bytes(self) -> bytes:
        return self.data

    @classmethod
    def from_body(cls, body: bytes) -> Self:
        return cls(body)


@dataclass(frozen=True, slots=True)
class KeyExchange(_Opaque):
    """KE (3.7): Key Exchange Data (g^x, as wide as the group's prime)."""

    TYPE: ClassVar[PayloadType] = PayloadType.KE


@dataclass(frozen=True, slots=True)
class Hash(_Opaque):
    """HASH (3.11)."""

    TYPE: ClassVar[PayloadType] = PayloadType.HASH


@dataclass(frozen=True, slots=True)
class Signature(_Opaque):
    """SIG (3.12)."""

    TYPE: ClassVar[PayloadType] = PayloadType.SIG


@dataclass(frozen=True, slots=True)
class Nonce(_Opaque):
    """NONCE (3.13).  RFC 2409 wants 8..256 bytes; the engine checks that range."""

    TYPE: ClassVar[PayloadType] = PayloadType.NONCE


@dataclass(frozen=True, slots=True)
class VendorId(_Opaque):
    """VID (3.16)."""

    TYPE: ClassVar[PayloadType] = PayloadType.VENDOR_ID


@dataclass(frozen=True, slots=True)
class NatD(_Opaque):
    """NAT-D (RFC 3947 3.2): HASH(CKY-I | CKY-R | IP | Port)."""

    TYPE: ClassVar[PayloadType] = PayloadType.NAT_D


@dataclass(frozen=True, slots=True)
class NatDDraft(NatD):
    """NAT-D with the pre-RFC payload type 130 (draft-ietf-ipsec-nat-t-ike-02/03)."""

    TYPE: ClassVar[PayloadType] = PayloadType.NAT_D_DRAFT


@dataclass(frozen=True, slots=True)
class Identification(Payload):
    """ID (3.8 with the IPsec DOI layout of RFC 2407 4.6.2): ID Type, Protocol ID, Port,
    Identification Data.  ``body_bytes()`` is IDii_b/IDir_b of RFC 2409."""

    TYPE: ClassVar[PayloadType] = PayloadType.ID

    id_type: int
    protocol: int
    port: int
    data: bytes

    def body_bytes(self) -> bytes:
        return _ID.pack(self.id_type, self.protocol, self.port) + self.data

    @classmethod
    def from_body(cls, body: bytes) -> Self:
        need(body, _ID.size, "ID")
        id_type, protocol, port = _ID.unpack_from(body)
        id_type = _ID_TYPES[id_type]
        size = _ID_DATA_LEN.get(id_type)
        if size is not None and len(body) - _ID.size != size:
            raise InvalidLength(f"{id_type.name} with {len(body) - _ID.size} bytes of data")
        return cls(id_type, protocol, port, body[_ID.size :])

    @classmethod
    def from_address(cls, address: IPAddress, protocol: int = 0, port: int = 0) -> Self:
        """ID_IPV4_ADDR / ID_IPV6_ADDR."""
        id_type = IdType.ID_IPV4_ADDR if address.version == 4 else IdType.ID_IPV6_ADDR
        return cls(id_type, protocol, port, address.packed)

    @classmethod
    def from_network(cls, network: IPNetwork, protocol: int = 0, port: int = 0) -> Self:
        """ID_IPV4_ADDR_SUBNET / ID_IPV6_ADDR_SUBNET: address then mask."""
        v4 = network.version == 4
        id_type = IdType.ID_IPV4_ADDR_SUBNET if v4 else IdType.ID_IPV6_ADDR_SUBNET
        return cls(id_type, protocol, port, network.network_address.packed + network.netmask.packed)

    @classmethod
    def from_range(
        cls, first: IPAddress, last: IPAddress, protocol: int = 0, port: int = 0
    ) -> Self:
        """ID_IPV4_ADDR_RANGE / ID_IPV6_ADDR_RANGE."""
        if first.version != last.version:
            raise ValueError("range ends of different address families")
        v4 = first.version == 4
        id_type = IdType.ID_IPV4_ADDR_RANGE if v4 else IdType.ID_IPV6_ADDR_RANGE
        return cls(id_type, protocol, port, first.packed + last.packed)

    def address_range(self) -> tuple[IPAddress, IPAddress] | None:
        """(first, last) address for the address ID types, None for the others.

        A subnet's mask must be contiguous and a range's first address not above its last
        (else InvalidSyntax); the data sizes were checked when decoding.
        """
        size = _ID_DATA_LEN.get(self.id_type)  # type: ignore[call-overload]
        if size is None:
            return None
        if len(self.data) != size:
            raise InvalidLength(f"ID type {self.id_type} with {len(self.data)} bytes of data")
        if self.id_type in _ID_ADDR_LEN:
            addr = ip_address(self.data)
            return addr, addr
        half = size // 2
        a = int.from_bytes(self.data[:half], "big")
        b = int.from_bytes(self.data[half:], "big")
        if self.id_type in (IdType.ID_IPV4_ADDR_SUBNET, IdType.ID_IPV6_ADDR_SUBNET):
            full = (1 << (8 * half)) - 1
            inverse = full ^ b
            if inverse & (inverse + 1):
                raise InvalidSyntax(f"non-contiguous subnet mask {self.data[half:].hex()}")
            a, b = a & b, (a & b) | inverse
        elif a > b:
            raise InvalidSyntax("address range whose first address is above its last")
        return ip_address(a.to_bytes(half, "big")), ip_address(b.to_bytes(half, "big"))


@dataclass(frozen=True, slots=True)
class _Encoded(Payload):
    """A payload whose body is an encoding octet and opaque data."""

    encoding: int
    data: bytes

    def body_bytes(self) -> bytes:
        return bytes((self.encoding,)) + self.data

    @classmethod
    def from_body(cls, body: bytes) -> Self:
        need(body, 1, cls.__name__)
        return cls(_CERT_ENCODINGS[body[0]], body[1:])


@dataclass(frozen=True, slots=True)
class Certificate(_Encoded):
    """CERT (3.9): Cert Encoding, Certificate Data."""

    TYPE: ClassVar[PayloadType] = PayloadType.CERT


@dataclass(frozen=True, slots=True)
class CertificateRequest(_Encoded):
    """CR (3.10): Cert Type, Certificate Authority (a DER DN, or empty for any CA)."""

    TYPE: ClassVar[PayloadType] = PayloadType.CR


@dataclass(frozen=True, slots=True)
class NatOa(Payload):
    """NAT-OA (RFC 3947 5.2): ID Type, RESERVED (3), IPv4 (4) or IPv6 (16) address."""

    TYPE: ClassVar[PayloadType] = PayloadType.NAT_OA

    id_type: int
    data: bytes

    def body_bytes(self) -> bytes:
        return _B3.pack(self.id_type) + self.data

    @classmethod
    def from_body(cls, body: bytes) -> Self:
        need(body, _B3.size, cls.__name__)
        id_type = _ID_TYPES[body[0]]
        size = _ID_ADDR_LEN.get(id_type)
        if size is not None and len(body) - _B3.size != size:
            raise InvalidLength(f"NAT-OA {id_type.name} with {len(body) - 4} bytes")
        return cls(id_type, body[_B3.size :])

    @classmethod
    def from_address(cls, address: IPAddress) -> Self:
        id_type = IdType.ID_IPV4_ADDR if address.version == 4 else IdType.ID_IPV6_ADDR
        return cls(id_type, address.packed)


@dataclass(frozen=True, slots=True)
class NatOaDraft(NatOa):
    """NAT-OA with the pre-RFC payload type 131."""

    TYPE: ClassVar[PayloadType] = PayloadType.NAT_OA_DRAFT


@dataclass(frozen=True, slots=True)
class Notification(Payload):
    """N (3.14): DOI, Protocol-Id, SPI Size, Notify Message Type, SPI, Notification Data."""

    TYPE: ClassVar[PayloadType] = PayloadType.NOTIFICATION

    notify_type: int
    protocol: int = ProtocolId.ISAKMP
    spi: bytes = b""
    data: bytes = b""
    doi: int = DOI_IPSEC

    def body_bytes(self) -> bytes:
        if len(self.spi) > 255:
            raise ValueError(f"notification SPI of {len(self.spi)} bytes")
        head = _NOTIFY.pack(self.doi, self.protocol, len(self.spi), self.notify_type)
        return head + self.spi + self.data

    @classmethod
    def from_body(cls, body: bytes) -> Self:
        need(body, _NOTIFY.size, "Notification")
        doi, protocol, spi_size, ntype = _NOTIFY.unpack_from(body)
        spi_end = _NOTIFY.size + spi_size
        if spi_end > len(body):
            raise InvalidLength(f"Notification SPI size {spi_size} overruns the payload")
        return cls(
            _NOTIFY_TYPES[ntype],
            _PROTOCOLS[protocol],
            body[_NOTIFY.size : spi_end],
            body[spi_end:],
            doi,
        )

    @classmethod
    def dpd(cls, notify_type: int, cky_i: bytes, cky_r: bytes, sequence: int) -> Self:
        """R-U-THERE / R-U-THERE-ACK (RFC 3706 5): ISAKMP protocol, the two cookies as the
        16-byte SPI, the 32-bit sequence number as the data."""
        if len(cky_i) != 8 or len(cky_r) != 8:
            raise ValueError("cookies are 8 bytes each")
        return cls(notify_type, ProtocolId.ISAKMP, cky_i + cky_r, _SEQ.pack(sequence))

    @property
    def sequence(self) -> int:
        """The DPD sequence number (RFC 3706 5); InvalidLength unless the data is 4 bytes
        and the SPI the 16 bytes of the two cookies."""
        if len(self.data) != _SEQ.size or len(self.spi) != _COOKIES_LEN:
            raise InvalidLength(
                f"DPD notification with {len(self.spi)}-byte SPI, {len(self.data)}-byte data"
            )
        return _SEQ.unpack(self.data)[0]


@dataclass(frozen=True, slots=True)
class Delete(Payload):
    """D (3.15): DOI, Protocol-Id, SPI Size, # of SPIs, SPIs.  The SPI size is that of the
    SPIs (all equal; 16 for an ISAKMP SA's cookies, 4 for ESP/AH)."""

    TYPE: ClassVar[PayloadType] = PayloadType.DELETE

    protocol: int
    spis: tuple[bytes, ...]
    doi: int = DOI_IPSEC

    def body_bytes(self) -> bytes:
        size = len(self.spis[0]) if self.spis else 0
        if size > 255 or len(self.spis) > 0xFFFF:
            raise ValueError("Delete SPI too long or too many SPIs")
        if any(len(s) != size for s in self.spis):
            raise ValueError("Delete SPIs of different sizes")
        head = _DELETE.pack(self.doi, self.protocol, size, len(self.spis))
        return head + b"".join(self.spis)

    @classmethod
    def from_body(cls, body: bytes) -> Self:
        need(body, _DELETE.size, "Delete")
        doi, protocol, size, count = _DELETE.unpack_from(body)
        if size == 0 and count:
            raise InvalidSyntax(f"Delete with SPI size 0 and {count} SPIs")
        if len(body) - _DELETE.size != size * count:
            raise InvalidLength(f"Delete of {count} SPIs of {size} bytes in {len(body) - 8}")
        off = _DELETE.size
        spis = tuple(body[i : i + size] for i in range(off, off + size * count, size or 1))
        return cls(_PROTOCOLS[protocol], spis, doi)


@dataclass(frozen=True, slots=True)
class RawPayload(Payload):
    """A payload of a type this codec does not model, kept raw (IKEv1 has no critical bit)."""

    TYPE: ClassVar[PayloadType] = PayloadType.NONE  # the real type is ``type``

    type: int
    data: bytes

    def wire_type(self) -> int:
        return self.type

    def body_bytes(self) -> bytes:
        return self.data


PAYLOAD_CLASSES: tuple[type[Payload], ...] = (
    SecurityAssociation,
    KeyExchange,
    Identification,
    Certificate,
    CertificateRequest,
    Hash,
    Signature,
    Nonce,
    Notification,
    Delete,
    VendorId,
    NatD,
    NatOa,
    NatDDraft,
    NatOaDraft,
)

# payload type -> class; other types (except PROPOSAL/TRANSFORM) decode as RawPayload
PAYLOAD_REGISTRY: dict[int, type[Payload]] = {int(cls.TYPE): cls for cls in PAYLOAD_CLASSES}
