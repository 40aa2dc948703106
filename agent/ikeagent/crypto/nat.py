"""NAT detection hashes (RFC 7296 2.23): NAT_DETECTION_SOURCE_IP / _DESTINATION_IP data."""

from __future__ import annotations

import functools
import hashlib
import ipaddress


@functools.lru_cache(maxsize=4096)
def _packed(ip: str) -> bytes:
    return ipaddress.ip_address(ip).packed


def nat_hash(spi_i: int, spi_r: int, ip: str, port: int) -> bytes:
    """SHA-1(SPIi | SPIr | IP | Port); SPIr is 0 in the IKE_SA_INIT request.

    IP is 4 octets for IPv4, 16 for IPv6; SPIs are 8 octets and the port 2, all network order.
    """
    data = (
        int(spi_i).to_bytes(8, "big")
        + int(spi_r).to_bytes(8, "big")
        + _packed(ip)
        + int(port).to_bytes(2, "big")
    )
    return hashlib.sha1(data, usedforsecurity=False).digest()
