"""Choosing and creating a data plane by name: "userspace", "memory", "xfrm" or "auto".

``auto`` probes the kernel: it asks XFRM over netlink to add an ESP state with an AES-GCM key
(127.0.0.1 to 127.0.0.2 with SPI 0xfe, from the range IANA reserves, never used by any policy)
and deletes it again. An agent stopped between the two leaves that one state, which the next
probe deletes first: probes never pile up states. Success means
the kernel has ESP and GCM, so the xfrm data plane can work; "not found"/"not supported" means
it has not (as on kernels built without INET_ESP), so the userspace data plane is chosen. The
probe needs CAP_NET_ADMIN; without it the answer is userspace.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
from collections.abc import Callable

from .base import Dataplane

NETLINK_XFRM = 6
XFRM_MSG_NEWSA = 16
XFRM_MSG_DELSA = 17
XFRMA_ALG_AEAD = 18
NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
NLMSG_ERROR = 2
IPPROTO_ESP = 50
XFRM_MODE_TUNNEL = 1
USERSA_INFO_LEN = 224  # sizeof(struct xfrm_usersa_info) on Linux
PROBE_DST = socket.inet_aton("127.0.0.2") + bytes(12)
PROBE_SPI = 0xFE  # reserved (RFC 4303 section 2.1): no IKE SA ever negotiates it


class DataplaneUnavailable(RuntimeError):
    """A requested data plane cannot be created here."""


def _nlmsg(msg_type: int, flags: int, seq: int, payload: bytes) -> bytes:
    return struct.pack("=IHHII", 16 + len(payload), msg_type, flags, seq, 0) + payload


def _nlattr(attr_type: int, data: bytes) -> bytes:
    length = 4 + len(data)
    return struct.pack("=HH", length, attr_type) + data + bytes((-length) % 4)


def _usersa_info(spi: int) -> bytes:
    selector = bytes(56)
    xfrm_id = PROBE_DST + struct.pack("!I", spi) + bytes([IPPROTO_ESP]) + bytes(3)
    saddr = socket.inet_aton("127.0.0.1") + bytes(12)
    lifetime_cfg = struct.pack("=8Q", *([0xFFFFFFFFFFFFFFFF] * 4 + [0] * 4))
    tail = bytes(32 + 12) + struct.pack("=IIHBBB", 0, 0, socket.AF_INET, XFRM_MODE_TUNNEL, 0, 0)
    info = selector + xfrm_id + saddr + lifetime_cfg + tail
    return info + bytes(USERSA_INFO_LEN - len(info))


def _request(sock: socket.socket, msg_type: int, payload: bytes, seq: int) -> int:
    """Send one request with ACK and return its errno (0 on success)."""
    sock.send(_nlmsg(msg_type, NLM_F_REQUEST | NLM_F_ACK, seq, payload))
    while True:
        data = sock.recv(65536)
        offset = 0
        while offset + 16 <= len(data):
            length, kind, _, rseq, _ = struct.unpack_from("=IHHII", data, offset)
            if kind == NLMSG_ERROR and rseq == seq and length >= 20:
                (code,) = struct.unpack_from("=i", data, offset + 16)
                return -code
            offset += max((length + 3) & ~3, 16)


def _probe_id() -> bytes:
    """struct xfrm_usersa_id of the probe state: daddr, spi (network order), family, proto."""
    return (
        PROBE_DST + struct.pack("!I", PROBE_SPI) + struct.pack("=HBx", socket.AF_INET, IPPROTO_ESP)
    )


def probe_kernel_esp() -> tuple[bool, str]:
    """Whether the kernel can hold an ESP state with AES-GCM; (answer, reason)."""
    key = bytes(20)
    aead = struct.pack("=64sII", b"rfc4106(gcm(aes))", len(key) * 8, 128) + key
    add = _usersa_info(PROBE_SPI) + _nlattr(XFRMA_ALG_AEAD, aead)
    try:
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_XFRM)
    except OSError as exc:
        return False, f"no XFRM netlink ({exc.strerror})"
    with sock:
        sock.settimeout(30.0)  # the kernel may load the ESP and crypto modules first
        try:
            sock.bind((0, 0))
            _request(sock, XFRM_MSG_DELSA, _probe_id(), 1)  # an earlier probe's, if any
            code = _request(sock, XFRM_MSG_NEWSA, add, 2)
            if code == 0:
                gone = _request(sock, XFRM_MSG_DELSA, _probe_id(), 3)
                why = "kernel accepted an ESP state with rfc4106(gcm(aes))"
                if gone:
                    why += (
                        f" (the probe state, SPI {PROBE_SPI:#x} to 127.0.0.2, was not removed: "
                        f"{errno.errorcode.get(gone, gone)})"
                    )
                return True, why
        except OSError as exc:
            return False, f"XFRM probe failed ({exc})"
    return (
        False,
        f"kernel refused an ESP state: {errno.errorcode.get(code, code)} ({os.strerror(code)})",
    )


def choose_dataplane(
    requested: str, probe: Callable[[], tuple[bool, str]] = probe_kernel_esp
) -> tuple[str, str]:
    """Resolve a configured data plane name to (name, reason)."""
    if requested != "auto":
        if requested not in _FACTORIES and requested != "xfrm":
            raise ValueError(f"unknown data plane {requested!r}")
        return requested, "configured"
    has_esp, why = probe()
    if has_esp and "xfrm" in _FACTORIES:
        return "xfrm", why
    if has_esp:
        return "userspace", f"{why}, but the xfrm data plane is not available yet"
    return "userspace", why


def _userspace(**options: object) -> Dataplane:
    from .userspace import UserspaceDataplane

    return UserspaceDataplane(**options)  # type: ignore[arg-type]


def _memory(**options: object) -> Dataplane:
    from .memory import MemoryDataplane

    return MemoryDataplane(**options)  # type: ignore[arg-type]


def _xfrm(**options: object) -> Dataplane:
    from .xfrm import XfrmDataplane

    return XfrmDataplane(**options)  # type: ignore[arg-type]


_FACTORIES: dict[str, Callable[..., Dataplane]] = {
    "userspace": _userspace,
    "memory": _memory,
    "xfrm": _xfrm,
}


def register(name: str, factory: Callable[..., Dataplane]) -> None:
    """Add a backend (the xfrm data plane registers itself here)."""
    _FACTORIES[name] = factory


def create_dataplane(name: str, **options: object) -> Dataplane:
    """Create the data plane ``name`` ("auto" resolves through ``choose_dataplane``)."""
    if name == "auto":
        name, _ = choose_dataplane(name)
    factory = _FACTORIES.get(name)
    if factory is None:
        known = ", ".join(sorted([*_FACTORIES, "auto"]))
        raise DataplaneUnavailable(f"data plane {name!r} is not available; choose one of {known}")
    return factory(**options)
