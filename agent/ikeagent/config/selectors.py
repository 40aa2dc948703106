"""Traffic selectors in swanctl syntax: ``NET[PROTO/PORT]``.

- ``NET`` is a CIDR subnet (``10.1.0.0/24``, ``2001:db8::/64``) or a single address (a /32 or
  /128). Host bits must be clear. ``dynamic`` (the tunnel's own address) and address ranges
  (``a-b``) are not supported.
- ``PROTO`` is a protocol number, a name (tcp, udp, icmp, ipv6-icmp/icmpv6, sctp, gre, esp, ah,
  udplite) or ``%any``; ``PORT`` is a number, a range ``lo-hi``, a few service names (https, ...)
  or ``%any``. ``[tcp]``, ``[tcp/443]``, ``[udp/%any]`` and ``[17/1000-2000]`` are all accepted;
  a port needs a protocol.
- For ICMP and ICMPv6 the port is the message type: ``[icmp/8]`` selects type 8 with any code,
  encoded as the port range 0x0800-0x08ff (type in the high byte, code in the low byte, as
  RFC 4301 section 4.4.1.1 and IKEv2 traffic selectors carry them).
"""

from __future__ import annotations

import ipaddress
import re

from ikeagent.config.errors import Invalid
from ikeagent.dataplane.base import TrafficSelector

PROTOCOLS: dict[str, int] = {
    "icmp": 1,
    "tcp": 6,
    "udp": 17,
    "gre": 47,
    "esp": 50,
    "ah": 51,
    "ipv6-icmp": 58,
    "icmpv6": 58,
    "sctp": 132,
    "udplite": 136,
}
SERVICES: dict[str, int] = {
    "ssh": 22,
    "smtp": 25,
    "domain": 53,
    "http": 80,
    "ntp": 123,
    "snmp": 161,
    "bgp": 179,
    "https": 443,
    "isakmp": 500,
    "ipsec-nat-t": 4500,
}
_ICMP = (1, 58)
_TS = re.compile(r"^(?P<net>[^\[\]]+?)\s*(?:\[(?P<sel>[^\[\]]*)\])?$")


def _protocol(text: str) -> int:
    text = text.strip().lower()
    if text in ("", "%any", "any"):
        return 0
    if text.isdigit():
        value = int(text)
        if value > 255:
            raise Invalid(f"protocol {value} is out of range 0-255")
        return value
    if text in PROTOCOLS:
        return PROTOCOLS[text]
    raise Invalid(f"unknown protocol {text!r} (use a number or one of {', '.join(PROTOCOLS)})")


def _port(text: str) -> int:
    text = text.strip().lower()
    if text.isdigit():
        value = int(text)
        if value > 65535:
            raise Invalid(f"port {value} is out of range 0-65535")
        return value
    if text in SERVICES:
        return SERVICES[text]
    raise Invalid(f"bad port {text!r}")


def _ports(text: str, protocol: int) -> tuple[int, int]:
    text = text.strip().lower()
    if text in ("", "%any", "any"):
        return 0, 65535
    if protocol in _ICMP:
        if not text.isdigit() or int(text) > 255:
            raise Invalid(f"bad ICMP type {text!r} (0-255)")
        icmp_type = int(text)
        return icmp_type << 8, (icmp_type << 8) | 0xFF
    lo, dash, hi = text.partition("-")
    start = _port(lo)
    end = _port(hi) if dash else start
    if start > end:
        raise Invalid(f"port range {start}-{end} is empty")
    return start, end


def parse_ts(text: object) -> TrafficSelector:
    """One swanctl traffic selector string to a TrafficSelector (raises Invalid)."""
    if not isinstance(text, str):
        raise Invalid(f"a traffic selector must be a string, not {type(text).__name__}")
    text = text.strip()
    if text.lower() == "dynamic":
        raise Invalid("'dynamic' traffic selectors are not supported; give the subnets")
    m = _TS.match(text)
    if not m:
        raise Invalid(f"bad traffic selector {text!r} (want NET or NET[PROTO/PORT])")
    net_text = m.group("net").strip()
    if "-" in net_text:
        raise Invalid("address ranges are not supported in traffic selectors; use CIDR subnets")
    if net_text in ("%any", "0.0.0.0/0"):
        net_text = "0.0.0.0/0"
    elif net_text == "%any6":
        net_text = "::/0"
    try:
        network = ipaddress.ip_network(net_text, strict=True)
    except ValueError as e:
        raise Invalid(f"bad subnet {net_text!r}: {e}")
    protocol, start, end = 0, 0, 65535
    sel = m.group("sel")
    if sel is not None:
        proto_text, slash, port_text = sel.partition("/")
        protocol = _protocol(proto_text)
        if slash:
            start, end = _ports(port_text, protocol)
            if protocol == 0 and (start, end) != (0, 65535):
                raise Invalid("a port needs a protocol (e.g. [tcp/443])")
    return TrafficSelector(network, protocol, start, end)
