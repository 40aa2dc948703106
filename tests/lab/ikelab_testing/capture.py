"""Packet captures inside lab namespaces, analysed with tshark.

``Capture`` runs tcpdump on one interface of a namespace into a pcap file; ``analyse()`` reads
it back with tshark and classifies every frame as IKE, ESP (raw or in UDP 4500), NAT-T
keepalive, link noise (ARP, IPv6 neighbour discovery/MLD), ICMP or other.  ``CaptureSummary``
answers the questions a tunnel test asks: was everything between the gateways ESP (or IKE)? did
any packet between the protected subnets cross in cleartext?
"""

from __future__ import annotations

import contextlib
import dataclasses
import ipaddress
import os
import signal
import subprocess
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from ikelab_testing.netns import Namespace

IKE_PORTS = {500, 4500}
TSHARK_FIELDS = (
    "frame.number",
    "frame.protocols",
    "ip.src",
    "ip.dst",
    "ipv6.src",
    "ipv6.dst",
    "udp.srcport",
    "udp.dstport",
    "esp.spi",
    "frame.len",
    "icmpv6.type",
    "ip.reassembled_in",
)
# ICMPv6 router/neighbour discovery and redirects (RFC 4861) keep the link itself working
ND_TYPES = {"133", "134", "135", "136", "137"}
LINK_PROTOCOLS = {"arp", "lldp", "stp"}


@dataclass(frozen=True, slots=True)
class Packet:
    number: int
    protocols: tuple[str, ...]
    src: str
    dst: str
    sport: int | None
    dport: int | None
    spi: str
    length: int
    kind: str  # ike | esp | esp-in-udp | keepalive | link | icmp | other
    reassembled_in: int | None = None  # an IP fragment: the frame that completes its datagram

    def __str__(self) -> str:
        ports = f" {self.sport}->{self.dport}" if self.sport is not None else ""
        return (
            f"#{self.number} {self.kind} {self.src}->{self.dst}{ports} [{':'.join(self.protocols)}]"
        )


@dataclass(frozen=True, slots=True)
class CaptureSummary:
    path: str
    packets: tuple[Packet, ...]
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return len(self.packets)

    def of(self, *kinds: str) -> list[Packet]:
        return [p for p in self.packets if p.kind in kinds]

    @property
    def esp(self) -> int:
        return len(self.of("esp", "esp-in-udp"))

    @property
    def ike(self) -> int:
        return len(self.of("ike"))

    def not_esp_or_ike(self) -> list[Packet]:
        """Frames that are neither IKE, ESP, NAT-T keepalives nor link-layer noise."""
        return [
            p
            for p in self.packets
            if p.kind not in {"ike", "esp", "esp-in-udp", "keepalive", "link"}
        ]

    def cleartext_between(self, net_a: str, net_b: str) -> list[Packet]:
        """Packets whose visible (outer) addresses are in the two protected subnets."""
        a = ipaddress.ip_network(net_a)
        b = ipaddress.ip_network(net_b)
        found = []
        for p in self.packets:
            try:
                src, dst = ipaddress.ip_address(p.src), ipaddress.ip_address(p.dst)
            except ValueError:
                continue
            if (src in a and dst in b) or (src in b and dst in a):
                found.append(p)
        return found

    def esp_only(self, *, require_udp: bool | None = None) -> bool:
        """True if everything was IKE/ESP (and at least one ESP packet was seen).

        ``require_udp=True`` also demands that the ESP was UDP-encapsulated, False that it was
        raw; None accepts both."""
        if self.not_esp_or_ike() or self.esp == 0:
            return False
        if require_udp is True and self.of("esp"):
            return False
        return not (require_udp is False and self.of("esp-in-udp"))

    def describe(self, limit: int = 15) -> str:
        counts = ", ".join(f"{k}={v}" for k, v in sorted(self.counts.items())) or "nothing"
        lines = [f"{self.total} packets in {self.path}: {counts}"]
        odd = self.not_esp_or_ike()
        if odd:
            lines.append("unexpected:")
            lines += [f"  {p}" for p in odd[:limit]]
            if len(odd) > limit:
                lines.append(f"  ... {len(odd) - limit} more")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.describe()


class Capture:
    """tcpdump on ``ifname`` inside ``ns`` writing ``path``; use as a context manager or
    ``start()``/``stop()``; ``summary()`` stops (if needed) and analyses."""

    def __init__(
        self, ns: Namespace, ifname: str, path: str | os.PathLike[str], bpf: str = ""
    ) -> None:
        self.ns = ns
        self.ifname = ifname
        self.path = Path(path)
        self.bpf = bpf
        self.proc: subprocess.Popen[bytes] | None = None
        self.err_path = self.path.with_suffix(".tcpdump.log")

    def start(self, timeout: float = 5.0) -> Capture:
        # -Z root: tcpdump would otherwise drop to its own user, which cannot write a 0700 dir
        argv = ["tcpdump", "-Z", "root", "-i", self.ifname, "-n", "-U", "--immediate-mode"]
        argv += ["-w", str(self.path)]
        if self.bpf:
            argv.append(self.bpf)
        with self.err_path.open("wb") as err:
            self.proc = self.ns.spawn(argv, stdout=subprocess.DEVNULL, stderr=err)
        deadline = time.monotonic() + timeout
        while "listening on" not in self._err():
            if self.proc.poll() is not None:
                raise RuntimeError(f"tcpdump failed: {self._err()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"tcpdump did not start: {self._err()}")
            time.sleep(0.02)
        return self

    def _err(self) -> str:
        try:
            return self.err_path.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        # SIGINT makes tcpdump flush and close the file cleanly
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.proc.pid, signal.SIGINT)
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.ns.lab.stop(self.proc)
        else:
            self.ns.lab.stop(self.proc)

    def __enter__(self) -> Capture:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def summary(self) -> CaptureSummary:
        self.stop()
        return analyse(self.path)


def analyse(path: str | os.PathLike[str]) -> CaptureSummary:
    argv = [
        "tshark",
        "-n",
        "-2",  # two passes, so a fragment knows the frame its datagram was reassembled in
        "-r",
        str(path),
        "-o",
        "esp.enable_null_encryption_decode_heuristic:FALSE",
        "-T",
        "fields",
        "-E",
        "separator=\t",
        "-E",
        "occurrence=f",
    ]
    for f in TSHARK_FIELDS:
        argv += ["-e", f]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"tshark failed on {path}: {proc.stderr.strip()}")
    packets = _fragments_as_their_datagram(
        [_packet(line) for line in proc.stdout.splitlines() if line.strip()]
    )
    counts = Counter(p.kind for p in packets)
    return CaptureSummary(str(path), packets, dict(counts))


def _packet(line: str) -> Packet:
    cols = (line.split("\t") + [""] * len(TSHARK_FIELDS))[: len(TSHARK_FIELDS)]
    number, protocols, src4, dst4, src6, dst6, sport, dport, spi, length, icmp6, reasm = cols
    protos = tuple(protocols.split(":")) if protocols else ()
    sp = int(sport) if sport else None
    dp = int(dport) if dport else None
    return Packet(
        number=int(number or 0),
        protocols=protos,
        src=src4 or src6,
        dst=dst4 or dst6,
        sport=sp,
        dport=dp,
        spi=spi,
        length=int(length or 0),
        kind="link" if icmp6 in ND_TYPES else _classify(protos, sp, dp, src6),
        reassembled_in=int(reasm) if reasm.isdigit() and int(reasm) != int(number or 0) else None,
    )


def _fragments_as_their_datagram(packets: list[Packet]) -> tuple[Packet, ...]:
    """An IP fragment before the last one shows as bare IP data; it is of the kind of the
    datagram tshark reassembled from it (e.g. a large IKE message with certificates), so a
    fragment of cleartext is still cleartext."""
    kinds = {p.number: p.kind for p in packets}
    return tuple(
        dataclasses.replace(p, kind=kinds.get(p.reassembled_in, p.kind))
        if p.reassembled_in is not None and p.kind == "other"
        else p
        for p in packets
    )


def _classify(protos: tuple[str, ...], sport: int | None, dport: int | None, src6: str) -> str:
    p = set(protos)
    if "isakmp" in p:
        return "ike"
    if "esp" in p:
        return "esp-in-udp" if "udp" in p else "esp"
    if "udpencap" in p or ("udp" in p and (sport == 4500 or dport == 4500) and "data" not in p):
        return "keepalive"
    if p & LINK_PROTOCOLS:
        return "link"
    if "icmpv6" in p and (src6.startswith("fe80:") or src6 == "::"):
        return "link"  # neighbour discovery / MLD on the veth itself
    if "icmp" in p or "icmpv6" in p:
        return "icmp"
    return "other"
