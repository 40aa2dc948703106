"""The C structs of the kernel's XFRM netlink API (``include/uapi/linux/xfrm.h``) as codecs.

Each ``CStruct`` subclass lists its fields in the kernel's order with explicit padding, so its
``size`` equals ``sizeof`` on Linux (x86_64 and the other LP64 ABIs; checked by the unit tests
against the header). The classes plug into pyroute2 as field formats: an ``nlmsg``/``nla``
field whose format is a class calls its ``decode_from(data, offset)`` and
``encode_into(data, offset, value)``, so nested structs become nested dicts in a message
(``msg["sel"]["prefixlen_d"]``). Addresses stay 16 raw bytes (``xfrm_address_t``); the
helpers ``pack_address``/``unpack_address`` convert them.

Byte order follows the header: ``__be16``/``__be32`` fields (ports, SPI) are network order,
everything else host order ("=").
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from typing import Any, ClassVar

XFRM_INF = 0xFFFF_FFFF_FFFF_FFFF  # "no limit" in xfrm_lifetime_cfg

FieldSpec = tuple[str, "str | type[CStruct]"]


class CStruct:
    """A fixed-size C struct: ``fields`` is a tuple of (name, struct format or CStruct).

    Names starting with ``_`` are padding (format ``"Nx"``): never stored in the dict."""

    fields: ClassVar[tuple[FieldSpec, ...]] = ()
    size: ClassVar[int] = 0

    def __init_subclass__(cls) -> None:
        super().__init_subclass__()
        cls.size = sum(
            fmt.size if isinstance(fmt, type) else struct.calcsize(fmt) for _, fmt in cls.fields
        )

    @classmethod
    def empty(cls) -> dict[str, Any]:
        """A value with every field zero (nested structs as dicts, byte strings as b"")."""
        value: dict[str, Any] = {}
        for name, fmt in cls.fields:
            if name.startswith("_"):
                continue
            if isinstance(fmt, type):
                value[name] = fmt.empty()
            else:
                value[name] = b"" if fmt.endswith("s") else 0
        return value

    @classmethod
    def pack_into(cls, data: bytearray, offset: int, value: object) -> int:
        """Write ``value`` (a dict; missing fields are zero) at ``offset`` of a buffer that
        already has room; returns the offset after the struct."""
        fields = value if isinstance(value, dict) else {}
        for name, fmt in cls.fields:
            if isinstance(fmt, type):
                offset = fmt.pack_into(data, offset, fields.get(name))
                continue
            size = struct.calcsize(fmt)
            if not name.startswith("_"):
                item = fields.get(name) or (b"" if fmt.endswith("s") else 0)
                if isinstance(item, str):
                    item = item.encode()
                struct.pack_into(fmt, data, offset, item)
            offset += size
        return offset

    @classmethod
    def unpack_from(cls, data: bytes | bytearray | memoryview, offset: int = 0) -> dict[str, Any]:
        value: dict[str, Any] = {}
        for name, fmt in cls.fields:
            if isinstance(fmt, type):
                value[name] = fmt.unpack_from(data, offset)
                offset += fmt.size
                continue
            if not name.startswith("_"):
                (value[name],) = struct.unpack_from(fmt, data, offset)
            offset += struct.calcsize(fmt)
        return value

    @classmethod
    def pack(cls, value: object) -> bytes:
        data = bytearray(cls.size)
        cls.pack_into(data, 0, value)
        return bytes(data)

    # -- the pyroute2 field-format hooks --------------------------------------------------

    @classmethod
    def decode_from(cls, data: bytes | bytearray, offset: int) -> tuple[dict[str, Any], int]:
        return cls.unpack_from(data, offset), offset + cls.size

    @classmethod
    def encode_into(cls, data: bytearray, offset: int, value: object) -> int:
        data.extend(bytes(cls.size))
        return cls.pack_into(data, offset, value)


class XfrmSelector(CStruct):
    fields = (
        ("daddr", "16s"),
        ("saddr", "16s"),
        ("dport", ">H"),
        ("dport_mask", ">H"),
        ("sport", ">H"),
        ("sport_mask", ">H"),
        ("family", "=H"),
        ("prefixlen_d", "B"),
        ("prefixlen_s", "B"),
        ("proto", "B"),
        ("_pad", "3x"),
        ("ifindex", "=i"),
        ("user", "=I"),
    )


class XfrmId(CStruct):
    fields = (("daddr", "16s"), ("spi", ">I"), ("proto", "B"), ("_pad", "3x"))


class XfrmLifetimeCfg(CStruct):
    fields = (
        ("soft_byte_limit", "=Q"),
        ("hard_byte_limit", "=Q"),
        ("soft_packet_limit", "=Q"),
        ("hard_packet_limit", "=Q"),
        ("soft_add_expires_seconds", "=Q"),
        ("hard_add_expires_seconds", "=Q"),
        ("soft_use_expires_seconds", "=Q"),
        ("hard_use_expires_seconds", "=Q"),
    )

    @classmethod
    def unlimited(cls) -> dict[str, int]:
        """No byte/packet limit, no time limit (what ``ip xfrm`` sends by default)."""
        value = dict.fromkeys((name for name, _ in cls.fields), 0)
        for name in ("soft_byte_limit", "hard_byte_limit"):
            value[name] = XFRM_INF
        for name in ("soft_packet_limit", "hard_packet_limit"):
            value[name] = XFRM_INF
        return value


class XfrmLifetimeCur(CStruct):
    fields = (("bytes", "=Q"), ("packets", "=Q"), ("add_time", "=Q"), ("use_time", "=Q"))


class XfrmStats(CStruct):
    fields = (("replay_window", "=I"), ("replay", "=I"), ("integrity_failed", "=I"))


class XfrmUsersaInfo(CStruct):
    fields = (
        ("sel", XfrmSelector),
        ("id", XfrmId),
        ("saddr", "16s"),
        ("lft", XfrmLifetimeCfg),
        ("curlft", XfrmLifetimeCur),
        ("stats", XfrmStats),
        ("seq", "=I"),
        ("reqid", "=I"),
        ("family", "=H"),
        ("mode", "B"),
        ("replay_window", "B"),
        ("flags", "B"),
        ("_pad", "7x"),
    )


class XfrmUsersaId(CStruct):
    fields = (
        ("daddr", "16s"),
        ("spi", ">I"),
        ("family", "=H"),
        ("proto", "B"),
        ("_pad", "1x"),
    )


class XfrmUserpolicyInfo(CStruct):
    fields = (
        ("sel", XfrmSelector),
        ("lft", XfrmLifetimeCfg),
        ("curlft", XfrmLifetimeCur),
        ("priority", "=I"),
        ("index", "=I"),
        ("dir", "B"),
        ("action", "B"),
        ("flags", "B"),
        ("share", "B"),
        ("_pad", "4x"),
    )


class XfrmUserpolicyId(CStruct):
    fields = (("sel", XfrmSelector), ("index", "=I"), ("dir", "B"), ("_pad", "3x"))


class XfrmUserTmpl(CStruct):
    fields = (
        ("id", XfrmId),
        ("family", "=H"),
        ("_pad", "2x"),
        ("saddr", "16s"),
        ("reqid", "=I"),
        ("mode", "B"),
        ("share", "B"),
        ("optional", "B"),
        ("_pad2", "1x"),
        ("aalgos", "=I"),
        ("ealgos", "=I"),
        ("calgos", "=I"),
    )


class XfrmUserAcquire(CStruct):
    fields = (
        ("id", XfrmId),
        ("saddr", "16s"),
        ("sel", XfrmSelector),
        ("policy", XfrmUserpolicyInfo),
        ("aalgos", "=I"),
        ("ealgos", "=I"),
        ("calgos", "=I"),
        ("seq", "=I"),
    )


class XfrmUserExpire(CStruct):
    fields = (("state", XfrmUsersaInfo), ("hard", "B"), ("_pad", "7x"))


class XfrmUserPolexpire(CStruct):
    fields = (("pol", XfrmUserpolicyInfo), ("hard", "B"), ("_pad", "7x"))


class XfrmEncapTmpl(CStruct):
    fields = (
        ("encap_type", "=H"),
        ("encap_sport", ">H"),
        ("encap_dport", ">H"),
        ("_pad", "2x"),
        ("encap_oa", "16s"),
    )


class XfrmMark(CStruct):
    fields = (("v", "=I"), ("m", "=I"))


class XfrmReplayState(CStruct):
    fields = (("oseq", "=I"), ("seq", "=I"), ("bitmap", "=I"))


class XfrmReplayStateEsn(CStruct):
    """The fixed part of ``xfrm_replay_state_esn``; ``bmp_len`` 32-bit words follow."""

    fields = (
        ("bmp_len", "=I"),
        ("oseq", "=I"),
        ("seq", "=I"),
        ("oseq_hi", "=I"),
        ("seq_hi", "=I"),
        ("replay_window", "=I"),
    )


class XfrmUserpolicyType(CStruct):
    fields = (("type", "B"), ("_pad", "1x"), ("reserved1", "=H"), ("reserved2", "B"), ("_p", "1x"))


# -- addresses ---------------------------------------------------------------------------


def pack_address(address: str | ipaddress.IPv4Address | ipaddress.IPv6Address) -> bytes:
    """An IPv4 or IPv6 address as ``xfrm_address_t`` (16 bytes, IPv4 in the first 4)."""
    packed = ipaddress.ip_address(address).packed
    return packed + bytes(16 - len(packed))


def unpack_address(raw: bytes, family: int) -> str:
    if family == socket.AF_INET:
        return str(ipaddress.IPv4Address(bytes(raw[:4])))
    if family == socket.AF_INET6:
        return str(ipaddress.IPv6Address(bytes(raw[:16])))
    raise ValueError(f"unknown address family {family}")


def family_of(address: str) -> int:
    return socket.AF_INET if ipaddress.ip_address(address).version == 4 else socket.AF_INET6
