"""Building XFRM requests from a ``ChildSa``: algorithms, SAs, selectors and policies.

Pure functions (no sockets), so the unit tests check exactly what the kernel would be sent.

- Algorithms: IKEv2 transform IDs (RFC 7296 3.3.2, IANA registry) -> the kernel's crypto API
  names, with ICV/truncation lengths from RFC 4106 (GCM ICV 8/12/16), RFC 7634
  (ChaCha20-Poly1305), RFC 2404 (HMAC-SHA1-96) and RFC 4868 (HMAC-SHA2 truncated to half).
- SAs: tunnel mode, the engine's reqid, the owner mark, UDP encapsulation, replay window (the
  ESN replay state when ESN is on or the window exceeds what the u8 field holds), byte/packet
  lifetimes (time lifetimes stay with the engine: no time limit in the kernel).
- Policies: out/in/fwd for every (local TS, remote TS) pair of one address family, of a child
  or of a trap (``TrapPolicy``: the same fields); a port range is split into exact port/mask
  blocks (the selector has no ranges), the template names ESP, tunnel mode, the reqid and the
  tunnel endpoints. A trap without local address ("") leaves that endpoint all-zero: the
  kernel then takes the source of the route to the peer for the out template
  (``xfrm_tmpl_resolve_one``) and checks only the peer's address on in/fwd.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterator
from dataclasses import dataclass

from ..base import ChildSa, Lifetime, SaKeys, TrafficSelector, TrapPolicy
from .messages import (
    IPPROTO_ESP,
    UDP_ENCAP_ESPINUDP,
    XfrmMode,
    XfrmPolicyDir,
    XfrmStateFlag,
    xfrm_userpolicy_id,
    xfrm_userpolicy_info,
    xfrm_usersa_id,
    xfrm_usersa_info,
)
from .structs import XFRM_INF, XfrmLifetimeCfg, family_of, pack_address

# owner mark: value 0 under this mask (see plane.py for why)
DEFAULT_OWNER_MASK = 0x0000_2000
DEFAULT_PRIORITY_BASE = 0x10_0000
ALL_ALGOS = 0xFFFF_FFFF
MAX_U8_WINDOW = 255


@dataclass(frozen=True, slots=True)
class KernelAlg:
    """How the kernel names an IKEv2 transform: attribute kind, crypto API name, ICV bits."""

    kind: str  # "aead", "crypt" or "auth"
    name: str
    icv_bits: int = 0  # AEAD ICV or HMAC truncation length


# IKEv2 ENCR transform IDs (RFC 7296, IANA) -> kernel
ENCR_ALGS: dict[int, KernelAlg] = {
    12: KernelAlg("crypt", "cbc(aes)"),  # ENCR_AES_CBC (RFC 3602)
    18: KernelAlg("aead", "rfc4106(gcm(aes))", 64),  # ENCR_AES_GCM_8 (RFC 4106)
    19: KernelAlg("aead", "rfc4106(gcm(aes))", 96),  # ENCR_AES_GCM_12
    20: KernelAlg("aead", "rfc4106(gcm(aes))", 128),  # ENCR_AES_GCM_16
    28: KernelAlg("aead", "rfc7539esp(chacha20,poly1305)", 128),  # RFC 7634
}

# IKEv2 INTEG transform IDs -> kernel (truncation per RFC 2404 / RFC 4868)
INTEG_ALGS: dict[int, KernelAlg] = {
    2: KernelAlg("auth", "hmac(sha1)", 96),  # AUTH_HMAC_SHA1_96
    12: KernelAlg("auth", "hmac(sha256)", 128),  # AUTH_HMAC_SHA2_256_128
    13: KernelAlg("auth", "hmac(sha384)", 192),  # AUTH_HMAC_SHA2_384_192
    14: KernelAlg("auth", "hmac(sha512)", 256),  # AUTH_HMAC_SHA2_512_256
}


class UnsupportedAlgorithm(ValueError):
    pass


def algorithm_attrs(keys: SaKeys) -> list[tuple[str, dict]]:
    """The XFRMA_ALG_* attributes carrying the keys of one SA."""
    encr = ENCR_ALGS.get(keys.encr_id)
    if encr is None:
        raise UnsupportedAlgorithm(f"no kernel name for ENCR transform {keys.encr_id}")
    bits = len(keys.encr_key) * 8
    if encr.kind == "aead":
        if keys.integ_id is not None:
            raise UnsupportedAlgorithm("an AEAD transform takes no integrity algorithm")
        return [
            (
                "XFRMA_ALG_AEAD",
                {
                    "alg_name": encr.name,
                    "alg_key_len": bits,
                    "alg_icv_len": encr.icv_bits,
                    "alg_key": keys.encr_key,
                },
            )
        ]
    integ = INTEG_ALGS.get(keys.integ_id) if keys.integ_id is not None else None
    if integ is None:
        raise UnsupportedAlgorithm(f"no kernel name for INTEG transform {keys.integ_id}")
    return [
        ("XFRMA_ALG_CRYPT", {"alg_name": encr.name, "alg_key_len": bits, "alg_key": keys.encr_key}),
        (
            "XFRMA_ALG_AUTH_TRUNC",
            {
                "alg_name": integ.name,
                "alg_key_len": len(keys.integ_key) * 8,
                "alg_trunc_len": integ.icv_bits,
                "alg_key": keys.integ_key,
            },
        ),
    ]


def lifetime_cfg(lifetime: Lifetime) -> dict[str, int]:
    lft = XfrmLifetimeCfg.unlimited()
    for name, value in (
        ("soft_byte_limit", lifetime.soft_bytes),
        ("hard_byte_limit", lifetime.hard_bytes),
        ("soft_packet_limit", lifetime.soft_packets),
        ("hard_packet_limit", lifetime.hard_packets),
    ):
        lft[name] = value or XFRM_INF
    return lft


XFRM_POLICY_BLOCK = 1


def mark_attr(owner_mask: int, value: int = 0) -> tuple[str, dict]:
    return ("XFRMA_MARK", {"v": value, "m": owner_mask})


def sa_message(sa: ChildSa, inbound: bool, owner_mask: int) -> xfrm_usersa_info:
    """NEWSA for the inbound (peer -> us) or outbound SA of ``sa``."""
    keys = sa.inbound if inbound else sa.outbound
    src, dst = (sa.remote_addr, sa.local_addr) if inbound else (sa.local_addr, sa.remote_addr)
    family = family_of(src)
    msg = xfrm_usersa_info()
    msg["id"] = {"daddr": pack_address(dst), "spi": keys.spi, "proto": IPPROTO_ESP}
    msg["saddr"] = pack_address(src)
    msg["lft"] = lifetime_cfg(sa.lifetime)
    # the selector stays empty (tunnel mode: the policies check inner addresses), and
    # XFRM_STATE_AF_UNSPEC keeps the kernel from filling its family in with the outer one,
    # which would drop inner packets of the other family (strongSwan sets it on every
    # tunnel-mode SA too)
    flags = XfrmStateFlag.AF_UNSPEC
    attrs = [*algorithm_attrs(keys), mark_attr(owner_mask)]
    window = sa.replay_window
    if keys.esn or window > MAX_U8_WINDOW:
        if keys.esn:
            flags |= XfrmStateFlag.ESN
        attrs.append(
            ("XFRMA_REPLAY_ESN_VAL", {"bmp_len": (window + 31) // 32, "replay_window": window})
        )
        window = 0
    if sa.encap is not None:
        local_port, remote_port = sa.encap
        sport, dport = (remote_port, local_port) if inbound else (local_port, remote_port)
        attrs.append(
            (
                "XFRMA_ENCAP",
                {"encap_type": UDP_ENCAP_ESPINUDP, "encap_sport": sport, "encap_dport": dport},
            )
        )
    msg.update(
        reqid=sa.reqid,
        family=family,
        mode=XfrmMode.TUNNEL,
        replay_window=window,
        flags=flags,
    )
    msg["attrs"] = attrs
    return msg


def sa_id(daddr: str, spi: int, owner_mask: int) -> xfrm_usersa_id:
    """GETSA/DELSA key of one of our SAs."""
    msg = xfrm_usersa_id()
    msg.update(daddr=pack_address(daddr), spi=spi, family=family_of(daddr), proto=IPPROTO_ESP)
    msg["attrs"] = [mark_attr(owner_mask)]
    return msg


# -- selectors and policies --------------------------------------------------------------


ICMP_PROTOCOLS = frozenset({1, 58})  # ICMP, IPv6-ICMP


def _ts_family(ts: TrafficSelector) -> int:
    return socket.AF_INET if ts.network.version == 4 else socket.AF_INET6


def port_blocks(start: int, end: int) -> list[tuple[int, int]]:
    """An inclusive port range as exact (port, mask) blocks; (0, 0) is "any"."""
    if (start, end) == (0, 65535):
        return [(0, 0)]
    blocks = []
    while start <= end:
        size = start & -start if start else 1 << 16
        while size > end - start + 1:
            size >>= 1
        blocks.append((start, (0xFFFF ^ (size - 1)) & 0xFFFF))
        start += size
    return blocks


def selectors(src: TrafficSelector, dst: TrafficSelector) -> Iterator[dict]:
    """The xfrm selectors of traffic from ``src`` to ``dst`` (none across families or for
    conflicting protocols)."""
    if src.network.version != dst.network.version:
        return
    if src.protocol and dst.protocol and src.protocol != dst.protocol:
        return
    proto = src.protocol or dst.protocol
    if proto in ICMP_PROTOCOLS:
        yield from _icmp_selectors(src, dst, proto)
        return
    for sport in port_blocks(src.port_start, src.port_end):
        for dport in port_blocks(dst.port_start, dst.port_end):
            yield _selector(src, dst, proto, sport, dport)


def _selector(
    src: TrafficSelector,
    dst: TrafficSelector,
    proto: int,
    sport: tuple[int, int],
    dport: tuple[int, int],
) -> dict:
    """One xfrm selector; ``sport``/``dport`` are (value, mask)."""
    return {
        "daddr": pack_address(dst.network.network_address),
        "saddr": pack_address(src.network.network_address),
        "dport": dport[0],
        "dport_mask": dport[1],
        "sport": sport[0],
        "sport_mask": sport[1],
        "family": _ts_family(src),
        "prefixlen_d": dst.network.prefixlen,
        "prefixlen_s": src.network.prefixlen,
        "proto": proto,
    }


def _icmp_selectors(src: TrafficSelector, dst: TrafficSelector, proto: int) -> Iterator[dict]:
    """ICMP and ICMPv6: an IKEv2 selector's "port" is type (high octet) and code (low octet)
    (RFC 7296 3.13.1, both selectors carry it), while the kernel matches the type in ``sport``
    and the code in ``dport``. A range spanning several types leaves the code open."""
    ts = src if (src.port_start, src.port_end) != (0, 65535) else dst
    types = (ts.port_start >> 8, ts.port_end >> 8)
    codes = (ts.port_start & 0xFF, ts.port_end & 0xFF) if types[0] == types[1] else (0, 255)
    for sport in _octet_blocks(*types):
        for dport in _octet_blocks(*codes):
            yield _selector(src, dst, proto, sport, dport)


def _octet_blocks(start: int, end: int) -> list[tuple[int, int]]:
    """An inclusive 0..255 range as (value, mask) blocks; the whole range is "any"."""
    if (start, end) == (0, 255):
        return [(0, 0)]
    return port_blocks(start, end)


def priority(sel: dict, base: int = DEFAULT_PRIORITY_BASE) -> int:
    """Lower is preferred: longer prefixes, then port and protocol restrictions, win."""
    value = base + (256 - sel["prefixlen_s"] - sel["prefixlen_d"]) * 4
    value += 0 if (sel["sport_mask"] or sel["dport_mask"]) else 2
    value += 0 if sel["proto"] else 1
    return value


@dataclass(frozen=True, slots=True)
class PolicySpec:
    """One kernel policy: its key (direction, selector) and what it carries."""

    dir: XfrmPolicyDir
    sel: tuple  # the selector dict as sorted items (hashable)
    tmpl_src: str
    tmpl_dst: str
    reqid: int
    priority: int

    @property
    def selector(self) -> dict:
        return dict(self.sel)


def policy_specs(
    sa: ChildSa | TrapPolicy, priority_base: int = DEFAULT_PRIORITY_BASE
) -> list[PolicySpec]:
    """out (local -> remote), in and fwd (remote -> local) for every selector pair."""
    specs = []
    for local in sa.local_ts:
        for remote in sa.remote_ts:
            for sel in selectors(local, remote):
                specs.append(
                    PolicySpec(
                        XfrmPolicyDir.OUT,
                        tuple(sorted(sel.items())),
                        sa.local_addr,
                        sa.remote_addr,
                        sa.reqid,
                        priority(sel, priority_base),
                    )
                )
            for sel in selectors(remote, local):
                for direction in (XfrmPolicyDir.IN, XfrmPolicyDir.FWD):
                    specs.append(
                        PolicySpec(
                            direction,
                            tuple(sorted(sel.items())),
                            sa.remote_addr,
                            sa.local_addr,
                            sa.reqid,
                            priority(sel, priority_base),
                        )
                    )
    return list(dict.fromkeys(specs))


def template(src: str, dst: str, reqid: int) -> dict:
    """One ESP tunnel template; an endpoint "" (a trap without local address) stays all-zero,
    "any" to the kernel."""
    if not src and not dst:
        raise ValueError(f"reqid {reqid}: a template needs at least the peer's address")
    return {
        "id": {"daddr": _pack_or_any(dst), "spi": 0, "proto": IPPROTO_ESP},
        "family": family_of(src or dst),
        "saddr": _pack_or_any(src),
        "reqid": reqid,
        "mode": XfrmMode.TUNNEL,
        "aalgos": ALL_ALGOS,
        "ealgos": ALL_ALGOS,
        "calgos": ALL_ALGOS,
    }


def _pack_or_any(address: str) -> bytes:
    return pack_address(address) if address else bytes(16)


def policy_message(spec: PolicySpec, owner_mask: int) -> xfrm_userpolicy_info:
    msg = xfrm_userpolicy_info()
    msg["sel"] = spec.selector
    msg["lft"] = XfrmLifetimeCfg.unlimited()
    msg["priority"] = spec.priority
    msg["dir"] = spec.dir
    msg["attrs"] = [
        ("XFRMA_TMPL", [template(spec.tmpl_src, spec.tmpl_dst, spec.reqid)]),
        mark_attr(owner_mask),
    ]
    return msg


def guard_message(spec: PolicySpec, owner_mask: int) -> xfrm_userpolicy_info:
    """The guard of a policy: the same selector, direction and priority, for packets whose
    mark has the owner bit set (which our policy does not match), action block. Without it
    such a packet would leave in clear (out) or be accepted in clear (in, fwd): with it, the
    owner bit can only make the tunnel's traffic fail, never bypass it."""
    msg = xfrm_userpolicy_info()
    msg["sel"] = spec.selector
    msg["lft"] = XfrmLifetimeCfg.unlimited()
    msg["priority"] = spec.priority
    msg["dir"] = spec.dir
    msg["action"] = XFRM_POLICY_BLOCK
    msg["attrs"] = [mark_attr(owner_mask, owner_mask)]
    return msg


def policy_id(
    sel: dict, direction: int, owner_mask: int, *, guard: bool = False
) -> xfrm_userpolicy_id:
    msg = xfrm_userpolicy_id()
    msg["sel"] = sel
    msg["dir"] = direction
    msg["attrs"] = [mark_attr(owner_mask, owner_mask if guard else 0)]
    return msg


def socket_bypass_policy(family: int, direction: int) -> bytes:
    """The per-socket policy (IP_XFRM_POLICY) that lets a socket's own datagrams (IKE) pass
    whatever the system's policies say, as strongSwan sets on its IKE sockets."""
    from .structs import XfrmUserpolicyInfo

    value = XfrmUserpolicyInfo.empty()
    value["sel"]["family"] = family
    value["lft"] = XfrmLifetimeCfg.unlimited()
    value["dir"] = direction
    value["action"] = 0  # XFRM_POLICY_ALLOW
    return XfrmUserpolicyInfo.pack(value)


def network_of(sel: dict) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """(source, destination) networks of a selector (for listings and tests)."""
    from .structs import unpack_address

    family = sel["family"]
    return (
        ipaddress.ip_network(f"{unpack_address(sel['saddr'], family)}/{sel['prefixlen_s']}"),
        ipaddress.ip_network(f"{unpack_address(sel['daddr'], family)}/{sel['prefixlen_d']}"),
    )
