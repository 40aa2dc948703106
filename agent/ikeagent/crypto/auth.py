"""AUTH payload data (RFC 7296 2.15): the signed octets and shared-key MACs."""

from __future__ import annotations

import hmac

from ikeagent.crypto.prf import prf

KEY_PAD = b"Key Pad for IKEv2"


def signed_octets(
    message: bytes, peer_nonce: bytes, prf_id: int, sk_p: bytes, id_body: bytes
) -> bytes:
    """InitiatorSignedOctets = RealMessage1 | NonceRData | MACedIDForI, and the responder's
    mirror; ``id_body`` is the ID payload body from the ID Type octet on (IDx')."""
    return message + peer_nonce + prf(prf_id, sk_p, id_body)


def psk_auth(prf_id: int, psk: bytes, octets: bytes) -> bytes:
    """AUTH = prf( prf(Shared Secret, "Key Pad for IKEv2"), <SignedOctets>)."""
    return prf(prf_id, prf(prf_id, psk, KEY_PAD), octets)


def verify_psk_auth(prf_id: int, psk: bytes, octets: bytes, received: bytes) -> bool:
    """Constant-time check of a received shared-key AUTH value."""
    return hmac.compare_digest(psk_auth(prf_id, psk, octets), bytes(received))
