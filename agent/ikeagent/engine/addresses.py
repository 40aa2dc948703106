"""Addresses as connections name them: which peers and local addresses a connection accepts."""

from __future__ import annotations

import ipaddress

# what a socket bound to the wildcard (the NAT-T one) reports as the local address
UNBOUND = frozenset({"", "0.0.0.0", "::"})


def is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def addr_ok(allowed: tuple[str, ...], addr: str) -> bool:
    """``addr`` is one of ``allowed`` (empty: any): addresses, subnets, swanctl ranges
    (``192.0.2.10-192.0.2.20``) and %any."""
    if not allowed:
        return True
    for a in allowed:
        if a in ("%any", "%any4", "%any6", "0.0.0.0/0", "::/0") or a == addr:
            return True
        try:
            ip = ipaddress.ip_address(addr)
            if "-" in a:  # a range, as swanctl writes it: 192.0.2.10-192.0.2.20
                lo, hi = (ipaddress.ip_address(x.strip()) for x in a.split("-", 1))
                if lo.version == ip.version and lo <= ip <= hi:
                    return True
            elif ip in ipaddress.ip_network(a, strict=False):
                return True
        except ValueError:
            continue
    return False
