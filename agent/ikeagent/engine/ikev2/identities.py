"""IKE identities on the wire <-> the config's Identity, and matching.

Distinguished names (ID_DER_ASN1_DN) are shown as strongSwan writes them ("C=CH, O=Org, CN=gw")
and compared attribute by attribute, ignoring the ASN.1 string types (a DN configured as text
is PrintableString, a certificate subject often UTF8String)."""

from __future__ import annotations

import ipaddress

from ikeagent.config.model import Identity
from ikeagent.crypto.pki.names import dn_equal, dn_text_of_der
from ikeagent.wire.v2 import IdType


def identity_from_wire(id_type: int, data: bytes) -> Identity:
    t = int(id_type)
    try:
        if t == IdType.ID_IPV4_ADDR and len(data) == 4:
            text = str(ipaddress.IPv4Address(data))
        elif t == IdType.ID_IPV6_ADDR and len(data) == 16:
            text = str(ipaddress.IPv6Address(data))
        elif t in (IdType.ID_FQDN, IdType.ID_RFC822_ADDR):
            text = data.decode("utf-8", "replace")
        elif t == IdType.ID_DER_ASN1_DN:
            text = dn_text_of_der(data) or "DN:" + data.hex()
        elif t == IdType.ID_KEY_ID:
            text = "@#" + data.hex()
        else:
            text = f"({IdType(t).name}) " + data.hex()
    except Exception:  # noqa: BLE001 - peer input; any decoding failure renders as hex
        text = f"({t}) " + data.hex()
    return Identity(text=text, id_type=t, data=bytes(data))


def same_identity(a: Identity | None, b: Identity | None) -> bool:
    if a is None or b is None:
        return False
    if a.id_type != b.id_type:
        return False
    if a.data == b.data:
        return True
    return a.id_type == IdType.ID_DER_ASN1_DN and dn_equal(a.data, b.data)


def matches(configured: Identity | None, received: Identity) -> bool:
    """A configured remote identity (None = any) against the one the peer sent."""
    if configured is None or configured.text in ("%any", "*"):
        return True
    return same_identity(configured, received)
