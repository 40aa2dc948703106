"""XFRM netlink messages (``NETLINK_XFRM``) on pyroute2's ``nlmsg``/``nla`` classes.

pyroute2 ships no XFRM state or policy messages, so they are defined here after the kernel's
``include/uapi/linux/xfrm.h``: message types ``XFRM_MSG_*``, attributes ``XFRMA_*`` and the
struct layouts (``structs``). A message's fixed part is its top-level fields (``msg["reqid"]``,
``msg["sel"]["saddr"]`` ...), its attributes are pyroute2 NLAs (``msg.get_attr("XFRMA_MARK")``).

Variable-length attributes (algorithms with their key, the template list, the ESN replay
state) have their own ``nla`` classes; attributes the agent never reads are kept as raw bytes.
"""

from __future__ import annotations

import struct
from enum import IntEnum
from typing import Any

from pyroute2.netlink import nla, nlmsg
from pyroute2.netlink.marshal import Marshal

from .structs import (
    XfrmEncapTmpl,
    XfrmLifetimeCur,
    XfrmMark,
    XfrmReplayState,
    XfrmReplayStateEsn,
    XfrmUserAcquire,
    XfrmUserExpire,
    XfrmUserPolexpire,
    XfrmUserpolicyId,
    XfrmUserpolicyInfo,
    XfrmUserpolicyType,
    XfrmUsersaId,
    XfrmUsersaInfo,
    XfrmUserTmpl,
)

NETLINK_XFRM = 6
IPPROTO_ESP = 50
UDP_ENCAP_ESPINUDP = 2  # linux/udp.h


class XfrmMsg(IntEnum):
    NEWSA = 0x10
    DELSA = 0x11
    GETSA = 0x12
    NEWPOLICY = 0x13
    DELPOLICY = 0x14
    GETPOLICY = 0x15
    ALLOCSPI = 0x16
    ACQUIRE = 0x17
    EXPIRE = 0x18
    UPDPOLICY = 0x19
    UPDSA = 0x1A
    POLEXPIRE = 0x1B
    FLUSHSA = 0x1C
    FLUSHPOLICY = 0x1D


class XfrmNlGroup(IntEnum):
    """Multicast groups (``enum xfrm_nlgroups``), for NETLINK_ADD_MEMBERSHIP."""

    ACQUIRE = 1
    EXPIRE = 2
    SA = 3
    POLICY = 4


class XfrmMode(IntEnum):
    TRANSPORT = 0
    TUNNEL = 1


class XfrmPolicyDir(IntEnum):
    IN = 0
    OUT = 1
    FWD = 2


class XfrmStateFlag(IntEnum):
    NOECN = 1
    DECAP_DSCP = 2
    NOPMTUDISC = 4
    WILDRECV = 8
    ICMP = 16
    AF_UNSPEC = 32
    ALIGN4 = 64
    ESN = 128


# -- attributes ------------------------------------------------------------------------


class _XfrmAttrs:
    """The ``XFRMA_*`` attribute classes, shared by every XFRM message."""

    class xfrm_algo(nla):
        """``struct xfrm_algo``: name, key length in bits, key."""

        fields = (("alg_name", "64s"), ("alg_key_len", "=I"), ("alg_key", "s"))
        _fixed = 68

        def decode(self) -> None:
            nla.decode(self)
            _finish_algo(self, self._fixed)

    class xfrm_algo_auth(nla):
        """``struct xfrm_algo_auth``: name, key length and ICV truncation in bits, key."""

        fields = (
            ("alg_name", "64s"),
            ("alg_key_len", "=I"),
            ("alg_trunc_len", "=I"),
            ("alg_key", "s"),
        )
        _fixed = 72

        def decode(self) -> None:
            nla.decode(self)
            _finish_algo(self, self._fixed)

    class xfrm_algo_aead(nla):
        """``struct xfrm_algo_aead``: name, key length (with salt) and ICV length in bits, key."""

        fields = (
            ("alg_name", "64s"),
            ("alg_key_len", "=I"),
            ("alg_icv_len", "=I"),
            ("alg_key", "s"),
        )
        _fixed = 72

        def decode(self) -> None:
            nla.decode(self)
            _finish_algo(self, self._fixed)

    class xfrm_encap_tmpl(nla):
        fields = XfrmEncapTmpl.fields
        defaults = {"encap_oa": b""}

    class xfrm_mark(nla):
        fields = XfrmMark.fields

    class xfrm_lifetime_cur(nla):
        fields = XfrmLifetimeCur.fields

    class xfrm_replay_state(nla):
        fields = XfrmReplayState.fields

    class xfrm_userpolicy_type(nla):
        fields = XfrmUserpolicyType.fields

    class xfrm_replay_state_esn(nla):
        """The fixed part plus ``bmp``: a list of ``bmp_len`` 32-bit bitmap words."""

        fields = (*XfrmReplayStateEsn.fields, ("bmp", "s"))

        def encode(self) -> None:
            # the kernel takes the fixed part alone (a zero bitmap of ``bmp_len`` words), as
            # iproute2 sends it; a given bitmap is appended
            words = list(self.get("bmp") or [])
            self["bmp"] = struct.pack(f"={len(words)}I", *words)
            nla.encode(self)

        def decode(self) -> None:
            nla.decode(self)
            start = self.offset + 4 + XfrmReplayStateEsn.size
            count = max(0, (self.offset + self.length - start) // 4)
            self["bmp"] = list(struct.unpack_from(f"={count}I", self.data, start))

    class xfrm_user_tmpl(nla):
        """``XFRMA_TMPL``: one or more ``struct xfrm_user_tmpl`` back to back; the value is a
        list of dicts."""

        fields = ()

        def ft_encode(self, offset: int) -> tuple[int, int]:
            for tmpl in self.value:
                offset = XfrmUserTmpl.encode_into(self.data, offset, tmpl)
            return offset, 0

        def ft_decode(self, offset: int) -> None:
            end = self.offset + self.length
            self.value = [
                XfrmUserTmpl.unpack_from(self.data, pos)
                for pos in range(offset, end - XfrmUserTmpl.size + 1, XfrmUserTmpl.size)
            ]
            self.pop("attrs", None)

    class xfrm_address(nla):
        fields = (("value", "16s"),)
        defaults = {"value": b""}


def _finish_algo(attr: nla, fixed: int) -> None:
    """After the generic decode: the name as text and the key as the NLA's remaining bytes."""
    attr["alg_name"] = bytes(attr["alg_name"]).split(b"\0", 1)[0].decode("ascii", "replace")
    start = attr.offset + 4 + fixed
    attr["alg_key"] = bytes(attr.data[start : attr.offset + attr.length])


# XFRMA_* numbers from enum xfrm_attr_type_t; classes for what the agent sends or reads,
# "hex" (raw bytes) for the rest
XFRMA_MAP = (
    (0, "XFRMA_UNSPEC", "none"),
    (1, "XFRMA_ALG_AUTH", "xfrm_algo"),
    (2, "XFRMA_ALG_CRYPT", "xfrm_algo"),
    (3, "XFRMA_ALG_COMP", "xfrm_algo"),
    (4, "XFRMA_ENCAP", "xfrm_encap_tmpl"),
    (5, "XFRMA_TMPL", "xfrm_user_tmpl"),
    (6, "XFRMA_SA", "hex"),
    (7, "XFRMA_POLICY", "hex"),
    (8, "XFRMA_SEC_CTX", "hex"),
    (9, "XFRMA_LTIME_VAL", "xfrm_lifetime_cur"),
    (10, "XFRMA_REPLAY_VAL", "xfrm_replay_state"),
    (11, "XFRMA_REPLAY_THRESH", "uint32"),
    (12, "XFRMA_ETIMER_THRESH", "uint32"),
    (13, "XFRMA_SRCADDR", "xfrm_address"),
    (14, "XFRMA_COADDR", "xfrm_address"),
    (15, "XFRMA_LASTUSED", "uint64"),
    (16, "XFRMA_POLICY_TYPE", "xfrm_userpolicy_type"),
    (17, "XFRMA_MIGRATE", "hex"),
    (18, "XFRMA_ALG_AEAD", "xfrm_algo_aead"),
    (19, "XFRMA_KMADDRESS", "hex"),
    (20, "XFRMA_ALG_AUTH_TRUNC", "xfrm_algo_auth"),
    (21, "XFRMA_MARK", "xfrm_mark"),
    (22, "XFRMA_TFCPAD", "uint32"),
    (23, "XFRMA_REPLAY_ESN_VAL", "xfrm_replay_state_esn"),
    (24, "XFRMA_SA_EXTRA_FLAGS", "uint32"),
    (25, "XFRMA_PROTO", "uint8"),
    (26, "XFRMA_ADDRESS_FILTER", "hex"),
    (27, "XFRMA_PAD", "hex"),
    (28, "XFRMA_OFFLOAD_DEV", "hex"),
    (29, "XFRMA_SET_MARK", "uint32"),
    (30, "XFRMA_SET_MARK_MASK", "uint32"),
    (31, "XFRMA_IF_ID", "uint32"),
    (32, "XFRMA_MTIMER_THRESH", "uint32"),
    (33, "XFRMA_SA_DIR", "uint8"),
    (34, "XFRMA_NAT_KEEPALIVE_INTERVAL", "uint32"),
    (35, "XFRMA_SA_PCPU", "uint32"),
)


class _XfrmMessage(_XfrmAttrs, nlmsg):
    """Base of the XFRM messages: the fixed part comes from ``fields``, then XFRMA_* NLAs."""

    prefix = "XFRMA_"
    nla_map = XFRMA_MAP

    def fixed(self) -> dict[str, Any]:
        """The fixed part as a plain dict (without header and attributes)."""
        skip = ("header", "attrs", "event", "value")
        return {k: v for k, v in self.items() if k not in skip and not k.startswith("_")}


class xfrm_usersa_info(_XfrmMessage):
    """NEWSA / UPDSA (and the kernel's answers to GETSA and SA dumps)."""

    fields = XfrmUsersaInfo.fields
    defaults = {"saddr": b""}


class xfrm_usersa_id(_XfrmMessage):
    """GETSA / DELSA: an SA by (daddr, SPI, family, proto); XFRMA_MARK selects the mark."""

    fields = XfrmUsersaId.fields
    defaults = {"daddr": b""}


class xfrm_userpolicy_info(_XfrmMessage):
    """NEWPOLICY / UPDPOLICY (and answers to GETPOLICY and policy dumps)."""

    fields = XfrmUserpolicyInfo.fields


class xfrm_userpolicy_id(_XfrmMessage):
    """GETPOLICY / DELPOLICY: a policy by (selector, dir) or index, plus XFRMA_MARK."""

    fields = XfrmUserpolicyId.fields


class xfrm_user_acquire(_XfrmMessage):
    """ACQUIRE (kernel -> key manager): traffic hit a policy without SA; XFRMA_TMPL follows."""

    fields = XfrmUserAcquire.fields
    defaults = {"saddr": b""}


class xfrm_user_expire(_XfrmMessage):
    """EXPIRE: a soft or hard lifetime of an SA ran out (``hard`` 0 or 1)."""

    fields = XfrmUserExpire.fields


class xfrm_user_polexpire(_XfrmMessage):
    """POLEXPIRE: a policy lifetime ran out."""

    fields = XfrmUserPolexpire.fields


# the fixed-part size of each message type (for the unit tests and sanity checks)
FIXED_SIZES = {
    xfrm_usersa_info: XfrmUsersaInfo.size,
    xfrm_usersa_id: XfrmUsersaId.size,
    xfrm_userpolicy_info: XfrmUserpolicyInfo.size,
    xfrm_userpolicy_id: XfrmUserpolicyId.size,
    xfrm_user_acquire: XfrmUserAcquire.size,
    xfrm_user_expire: XfrmUserExpire.size,
    xfrm_user_polexpire: XfrmUserPolexpire.size,
}

# which class parses a message of each type coming from the kernel
MESSAGE_CLASSES: dict[int, type[_XfrmMessage]] = {
    XfrmMsg.NEWSA: xfrm_usersa_info,
    XfrmMsg.UPDSA: xfrm_usersa_info,
    XfrmMsg.DELSA: xfrm_usersa_id,
    XfrmMsg.GETSA: xfrm_usersa_id,
    XfrmMsg.NEWPOLICY: xfrm_userpolicy_info,
    XfrmMsg.UPDPOLICY: xfrm_userpolicy_info,
    XfrmMsg.DELPOLICY: xfrm_userpolicy_id,
    XfrmMsg.GETPOLICY: xfrm_userpolicy_id,
    XfrmMsg.ACQUIRE: xfrm_user_acquire,
    XfrmMsg.EXPIRE: xfrm_user_expire,
    XfrmMsg.POLEXPIRE: xfrm_user_polexpire,
}


class MarshalXfrm(Marshal):
    """pyroute2 marshal for NETLINK_XFRM: message type -> class."""

    msg_map = {int(k): v for k, v in MESSAGE_CLASSES.items()}


def encode(msg: _XfrmMessage, msg_type: int, flags: int, seq: int = 0, pid: int = 0) -> bytes:
    """Encode ``msg`` as one netlink message (for tests and the event socket's own use)."""
    msg["header"]["type"] = msg_type
    msg["header"]["flags"] = flags
    msg["header"]["sequence_number"] = seq
    msg["header"]["pid"] = pid
    msg.encode()
    return bytes(msg.data)


def parse(data: bytes) -> list[_XfrmMessage]:
    """Decode every netlink message in ``data`` (errors become ``header["error"]``)."""
    return list(MarshalXfrm().parse(data))
