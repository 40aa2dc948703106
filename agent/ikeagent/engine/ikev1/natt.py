"""NAT traversal for IKEv1 (RFC 3947): vendor IDs, NAT-D payloads, the encapsulation mode."""

from __future__ import annotations

from collections.abc import Sequence

from ikeagent.crypto.v1.attributes import EncapsulationMode
from ikeagent.crypto.v1.keymat import nat_d
from ikeagent.engine.ikev1.sa import V1Sa
from ikeagent.wire import v1 as w1

NATT_PORT = 4500

# MD5("RFC 3947") (RFC 3947 section 3.1) and the drafts many peers still send
VID_RFC3947 = bytes.fromhex("4a131c81070358455c5728f20e95452f")
VID_NATT_DRAFT = (
    bytes.fromhex("90cb80913ebb696e086381b5ec427b1f"),  # draft-ietf-ipsec-nat-t-ike-02\n
    bytes.fromhex("cd60464335df21f87cfdb2fc68b6a448"),  # draft-ietf-ipsec-nat-t-ike-02
    bytes.fromhex("7d9419a65310ca6f2c179d9215529d56"),  # draft-ietf-ipsec-nat-t-ike-03
)
# RFC 3706 section 5.1: the DPD vendor ID (version 1.0)
VID_DPD = bytes.fromhex("afcad71368a1f1c96b8696fc77570100")


def our_vendor_ids() -> list[w1.VendorId]:
    return [w1.VendorId(VID_RFC3947), w1.VendorId(VID_DPD)]


def note_vendor_ids(sa: V1Sa, payloads: Sequence[w1.Payload]) -> None:
    for p in payloads:
        if not isinstance(p, w1.VendorId):
            continue
        if p.data == VID_RFC3947:
            sa.natt = True
        elif p.data in VID_NATT_DRAFT:
            sa.natt_draft = True
        elif p.data[:16] == VID_DPD[:16]:
            sa.dpd = True


def uses_natt(sa: V1Sa) -> bool:
    return sa.natt or sa.natt_draft


def nat_d_payloads(sa: V1Sa, rng_bytes: bytes) -> list[w1.Payload]:
    """NAT-D for the peer's address (destination) then ours (source); ours is faked when UDP
    encapsulation is forced, so the peer sees a NAT and both float to port 4500."""
    if not uses_natt(sa):
        return []
    ck_i, ck_r = sa.spi_i.to_bytes(8, "big"), sa.spi_r.to_bytes(8, "big")
    h = sa.hash_id
    dst = nat_d(h, ck_i, ck_r, sa.remote[0], sa.remote[1])
    src = (
        rng_bytes[: len(dst)] if sa.force_encap else nat_d(h, ck_i, ck_r, sa.local[0], sa.local[1])
    )
    return [w1.NatD(dst), w1.NatD(src)]


def process_nat_d(sa: V1Sa, payloads: Sequence[w1.Payload]) -> None:
    """The first NAT-D the peer sent hashes our address as it saw it; the others its own."""
    hashes = [p.data for p in payloads if isinstance(p, w1.NatD)]
    if not uses_natt(sa) or len(hashes) < 2:
        return
    ck_i, ck_r = sa.spi_i.to_bytes(8, "big"), sa.spi_r.to_bytes(8, "big")
    h = sa.hash_id
    ours = nat_d(h, ck_i, ck_r, sa.local[0], sa.local[1])
    theirs = nat_d(h, ck_i, ck_r, sa.remote[0], sa.remote[1])
    sa.nat_local = hashes[0] != ours
    sa.nat_remote = theirs not in hashes[1:]


def encap_mode(sa: V1Sa) -> int:
    if not sa.encap:
        return EncapsulationMode.TUNNEL
    if sa.natt:
        return EncapsulationMode.UDP_ENCAPSULATED_TUNNEL
    return EncapsulationMode.UDP_ENCAPSULATED_TUNNEL_DRAFT


def float_ports(sa: V1Sa) -> None:
    """The initiator moves to port 4500 once a NAT (or forced encapsulation) is known
    (RFC 3947 section 4); the responder follows where the initiator's next message came from."""
    if uses_natt(sa) and sa.encap and sa.initiator:
        sa.remote = (sa.remote[0], NATT_PORT)
        sa.local = (sa.local[0], NATT_PORT)
