"""Kernel ESP between two User-mode Linux guests: SAs installed by the agent vs by charon.

One run, one pair of guests (``ikelab_testing.uml``): a (192.0.2.1, protected 10.1.0.1/24) and
b (192.0.2.2, protected 10.2.0.1/24), the same proposals everywhere (IKEv2
aes256gcm16-prfsha256-x25519 with a PSK, ESP aes256gcm16), three phases in turn:

- ``plain``: a route to the other protected subnet via the peer, no IPsec (the baseline);
- ``agent``: ``ikeagent --dataplane xfrm`` in both guests;
- ``charon``: strongSwan's charon with kernel-netlink in both guests.

In the IPsec phases each guest's only way off its subnets is a default route via 192.0.2.254,
which nobody has (as in ``tests/agent/uml``): nothing passes until the kernel's policies send it
through ESP.  Per phase:

1. set-up latency, ``reps`` times: a probe in guest a (``uml_probe.py``) sends a UDP datagram
   from 10.1.0.1 to an echo server on 10.2.0.1 every ``PROBE_INTERVAL`` s and triggers the
   initiation itself over the daemon's control socket (agent: ``up``; charon: VICI
   ``initiate``), so no CLI start-up is timed.  Reported: ``up``->first reply, the initiator's
   "installed" log line (agent: "installed ... in the kernel"; charon: "CHILD_SA ... established")
   ->first reply, and the last XFRM add the guest kernel announced (``ip xfrm monitor``)->first
   reply.  All times are guest a's clock; "kernel" is when ``ip monitor`` read the
   notification (so at or after the add), and a log line may be written after the first
   packet already passed (negative log->reply).  One extra initiation first, not counted,
   primes the daemons.  Then the tunnel is taken down and the kernels checked
   empty;
2. with the tunnel up again, the SAs as the kernels hold them (algorithm, key/ICV bits, mode,
   encapsulation, replay window, flags), then iperf3 TCP (and UDP) a->b, ``repeat`` times.
"""

from __future__ import annotations

import calendar
import json
import re
import secrets
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ikelab_testing.charon import Child, Connection, Secret
from ikelab_testing.guest_agent import GuestAgent, xfrm_states
from ikelab_testing.guest_charon import LAB_PACKAGE_DIR, GuestCharon
from ikelab_testing.netns import Lab
from ikelab_testing.uml import Guest, UmlLab, available

IKE = "aes256gcm16-prfsha256-x25519"
ESP = "aes256gcm16"
CHILD = "net"
UPSTREAM = "192.0.2.254"  # the guests' default router in the IPsec phases: nobody has it
ECHO_PORT = 7777
IPERF_PORT = 5201
PROBE_INTERVAL = 0.002
UDP_LEN = 1400  # fits the 1500-byte underlay with the ESP tunnel overhead (no fragments)
PROBE = Path(__file__).resolve().parent / "uml_probe.py"
LABELS = {
    "plain": "plain routing (no IPsec)",
    "agent": "ikeagent <-> ikeagent (kernel xfrm)",
    "charon": "charon <-> charon (kernel-netlink)",
}
_AGENT_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3}) .*installed .* in the kernel")
_CHARON_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)\.(\d{3}) .*CHILD_SA \S+ established")
_MONITOR_LINE = re.compile(r"^\[(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)\.(\d{6})\] (.*)$")


@dataclass(frozen=True, slots=True)
class Iperf:
    mode: str  # tcp | udp
    mbit_s: float
    retransmits: int = 0
    lost_percent: float = 0.0
    error: str = ""


@dataclass(frozen=True, slots=True)
class Setup:
    """One initiation, in ms: up->first reply, daemon log->reply, kernel add->reply."""

    up_to_reply: float | None
    log_to_reply: float | None
    kernel_to_reply: float | None
    up_to_log: float | None
    error: str = ""


@dataclass(slots=True)
class Phase:
    key: str
    label: str
    tcp: list[Iperf] = field(default_factory=list)
    udp: list[Iperf] = field(default_factory=list)
    setups: list[Setup] = field(default_factory=list)
    sas: list[dict[str, Any]] = field(default_factory=list)
    error: str = ""

    def median(self, mode: str) -> Iperf | None:
        runs = [r for r in (self.tcp if mode == "tcp" else self.udp) if not r.error]
        if not runs:
            return None
        return sorted(runs, key=lambda r: r.mbit_s)[len(runs) // 2]

    def setup_median(self, name: str) -> float | None:
        values = [getattr(s, name) for s in self.setups if getattr(s, name) is not None]
        return statistics.median(values) if values else None

    def as_dict(self) -> dict[str, Any]:
        doc = asdict(self)
        for mode in ("tcp", "udp"):
            m = self.median(mode)
            doc[f"{mode}_median_mbit_s"] = m.mbit_s if m else None
        for name in ("up_to_reply", "log_to_reply", "kernel_to_reply", "up_to_log"):
            doc[f"{name}_median_ms"] = self.setup_median(name)
        return doc


# --- guests and daemons --------------------------------------------------------------------------


def net(g: Guest) -> str:
    return g.protected[0].rsplit(".", 1)[0] + ".0/24"


def ids(me: Guest, peer: Guest) -> tuple[str, str]:
    return f"gw-{me.name}.example", f"gw-{peer.name}.example"


def agent_for(me: Guest, peer: Guest, psk: str) -> GuestAgent:
    local, remote = ids(me, peer)
    config = {
        "agent": {"retransmit_timeout": 2.0},
        "connections": {
            f"site-{peer.name}": {
                "version": 2,
                "local_addrs": [me.address],
                "remote_addrs": [peer.address],
                "proposals": [IKE],
                "local": {"auth": "psk", "id": local},
                "remote": {"auth": "psk", "id": remote},
                "children": {
                    CHILD: {
                        "local_ts": [net(me)],
                        "remote_ts": [net(peer)],
                        "esp_proposals": [ESP],
                        "start_action": "none",
                    }
                },
            }
        },
        "secrets": {"ike-lab": {"id": sorted([local, remote]), "secret": psk}},
    }
    return GuestAgent(me, config, dataplane="xfrm").start()


def charon_for(me: Guest, peer: Guest, psk: str) -> GuestCharon:
    local, remote = ids(me, peer)
    # dates and milliseconds in the file log: the "established" line is a timing point
    log = {"filelog": {"lab": {"time_format": "%Y-%m-%d %H:%M:%S", "time_add_ms": "yes"}}}
    charon = GuestCharon(me, options=log).start()
    conn = Connection(
        name=f"site-{peer.name}",
        local_addrs=[me.address],
        remote_addrs=[peer.address],
        local_id=local,
        remote_id=remote,
        proposals=(IKE,),
        children=[Child(CHILD, [net(me)], [net(peer)], esp_proposals=(ESP,))],
    )
    charon.load([conn], [Secret("lab", sorted([local, remote]), psk)])
    return charon


def warm_crypto(g: Guest) -> None:
    """The first rfc4106(gcm(aes)) state in a guest costs seconds (the crypto API builds the
    transform); pay it with a throw-away state, outside every timing."""
    key = "0x" + secrets.token_hex(36)
    sa = "src 192.0.2.250 dst 192.0.2.251 proto esp spi 0x77"
    aead = f"aead 'rfc4106(gcm(aes))' {key} 128"
    g.sh(f"ip xfrm state add {sa} mode tunnel {aead} && ip xfrm state delete {sa}", timeout=120)


def esp_states(g: Guest) -> list[dict[str, Any]]:
    return [st for st in xfrm_states(g) if st["proto"] == "esp"]


def wait_for(pred: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while not (result := pred()):
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.2)
    return result


def sa_summary(g: Guest) -> list[dict[str, Any]]:
    """What makes two SAs equivalent for the data path (keys and SPIs left out)."""
    out = []
    for st in esp_states(g):
        flags = re.search(r"flag (\S+(?: \S+)*)", st["text"])
        out.append(
            {
                "guest": g.name,
                "dir": "out" if st["src"] == g.address else "in",
                "mode": st["mode"],
                "aead": st.get("aead"),
                "enc": st.get("enc"),
                "auth": st.get("auth-trunc") or st.get("auth"),
                "encap": st["encap"],
                "replay_window": st["replay_window"],
                "esn": "esn" in st["text"],
                "flags": flags.group(1) if flags else "",
                "packets": st["packets"],
            }
        )
    return sorted(out, key=lambda s: (s["guest"], s["dir"]))


# --- measurements ----------------------------------------------------------------------------------


def iperf(a: Guest, b: Guest, seconds: float, udp: bool) -> Iperf:
    argv = ["iperf3", "-c", b.protected_address, "-B", a.protected_address, "-p", str(IPERF_PORT)]
    argv += ["-t", f"{seconds:g}", "-J"]
    # UDP: unpaced, the receiver's rate is the result (omitted seconds confuse its loss count)
    argv += ["-u", "-b", "0", "-l", str(UDP_LEN)] if udp else ["-O", "1"]
    mode = "udp" if udp else "tcp"
    r = a.run(argv, timeout=seconds + 60)
    try:
        data = json.loads(r.stdout or "{}")
    except ValueError:
        data = {"error": (r.stdout + r.stderr).strip()[:200]}
    if r.returncode != 0 or "error" in data:
        return Iperf(mode, 0.0, error=str(data.get("error", r.stderr.strip()))[:200])
    end = data["end"]
    if udp:
        s = end.get("sum_received") or end["sum"]
        return Iperf(mode, s["bits_per_second"] / 1e6, lost_percent=float(s["lost_percent"]))
    return Iperf(
        mode,
        end["sum_received"]["bits_per_second"] / 1e6,
        retransmits=int(end["sum_sent"].get("retransmits", 0)),
    )


def _log_times(text: str, line: re.Pattern[str], gmtoff: int) -> list[float]:
    times = []
    for raw in text.splitlines():
        m = line.match(raw)
        if m:
            naive = calendar.timegm(time.strptime(m.group(1), "%Y-%m-%d %H:%M:%S"))
            times.append(naive - gmtoff + int(m.group(2)) / 1000)
    return times


def _monitor_adds(text: str, gmtoff: int) -> list[float]:
    """Times of the XFRM states/policies added or updated (``ip -ts xfrm monitor``)."""
    times = []
    for raw in text.splitlines():
        m = _MONITOR_LINE.match(raw)
        if m and re.match(r"(Updated )?src ", m.group(3)):
            naive = calendar.timegm(time.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S"))
            times.append(naive - gmtoff + int(m.group(2)) / 1e6)
    return times


def setup_once(
    a: Guest, b: Guest, kind: str, target: str, name: str, log_text: Callable[[], str]
) -> Setup:
    monitor = a.spawn(
        ["/bin/sh", "-c", "exec ip -ts xfrm monitor | grep --line-buffered '^\\['"]
    )  # only the header lines: the key lines never reach the log
    time.sleep(0.5)
    try:
        argv = [a.uml.python, "-I", "-S", str(PROBE), "probe", a.protected_address]
        argv += [b.protected_address, str(ECHO_PORT), str(PROBE_INTERVAL), "30", kind, target]
        argv += [name, LAB_PACKAGE_DIR]
        r = a.run(argv, timeout=120)
        time.sleep(0.3)  # the monitor's last lines
        mon = monitor.log_text()
    finally:
        monitor.stop(5)
    try:
        out = json.loads(r.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return Setup(None, None, None, None, error=f"probe: {(r.stdout + r.stderr)[-200:]}")
    if "t_reply" not in out or not out.get("ok"):
        return Setup(None, None, None, None, error=str(out.get("error", "no reply"))[:200])
    t_up, t_reply, gmtoff = out["t_up"], out["t_reply"], out["gmtoff"]
    line = _AGENT_LINE if kind == "agent" else _CHARON_LINE
    logged = [t for t in _log_times(log_text(), line, gmtoff) if t >= t_up - 0.001]
    kernel = [t for t in _monitor_adds(mon, gmtoff) if t_up <= t <= t_reply]
    t_log = logged[0] if logged else None
    t_kernel = max(kernel) if kernel else None
    ms = 1000.0
    return Setup(
        up_to_reply=(t_reply - t_up) * ms,
        log_to_reply=(t_reply - t_log) * ms if t_log else None,
        kernel_to_reply=(t_reply - t_kernel) * ms if t_kernel else None,
        up_to_log=(t_log - t_up) * ms if t_log else None,
    )


def routes(a: Guest, b: Guest, add: bool) -> None:
    for me, peer in ((a, b), (b, a)):
        verb = "add" if add else "del"
        argv = ["ip", "route", verb, net(peer), "via", peer.address]
        me.run([*argv, "src", me.protected_address], check=True)


def _ipsec_phase(
    phase: Phase,
    a: Guest,
    b: Guest,
    start: Callable[[Guest, Guest], Any],
    ops: dict[str, Callable[..., Any]],
    *,
    seconds: float,
    repeat: int,
    reps: int,
    udp: bool,
) -> None:
    da = db = None
    try:
        da, db = start(a, b), start(b, a)
        for n in range(reps + 1):
            s = ops["setup"](a, b, da)
            if n:  # the first one primes the daemons (imports, caches): not counted
                phase.setups.append(s)
            wait_for(lambda: len(esp_states(a)) == 2 and len(esp_states(b)) == 2, 60, "SAs")
            if n < reps:
                ops["down"](da)
                wait_for(lambda: not esp_states(a) and not esp_states(b), 60, "SAs removed")
        phase.sas = sa_summary(a) + sa_summary(b)
        for _ in range(repeat):
            phase.tcp.append(iperf(a, b, seconds, udp=False))
            if udp:
                phase.udp.append(iperf(a, b, seconds, udp=True))
        after = {(s["guest"], s["dir"]): s["packets"] for s in sa_summary(a) + sa_summary(b)}
        for s in phase.sas:
            s["packets"] = after.get((s["guest"], s["dir"]), 0) - s["packets"]
    except Exception as exc:
        phase.error = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
        for d in (da, db):
            if d is not None:
                print(f"--- {d} log ---\n{d.log_tail(40)}", file=sys.stderr)
    finally:
        for d in (da, db):
            if d is not None:
                d.stop()
    wait_for(lambda: not esp_states(a) and not esp_states(b), 60, "a clean kernel")


def measure_kernel_esp(
    *, seconds: float = 5.0, repeat: int = 1, reps: int = 5, udp: bool = True
) -> list[Phase]:
    """Boot two guests and measure the three phases (see the module's docstring)."""
    reason = available()
    if reason:
        return [Phase(k, LABELS[k], error=reason) for k in LABELS]
    psk = "k" + secrets.token_urlsafe(32)  # fresh per run, never printed; never "0x"/"0s"
    phases = [Phase(k, LABELS[k]) for k in LABELS]
    with Lab() as lab:
        uml = UmlLab(lab)
        try:
            a, b = uml.boot("a", "b")
            for g in (a, b):
                warm_crypto(g)
            b.spawn(
                [uml.python, "-I", "-S", str(PROBE), "echo", b.protected_address, str(ECHO_PORT)]
            )
            b.spawn(["iperf3", "-s", "-B", b.protected_address, "-p", str(IPERF_PORT)])
            time.sleep(1.0)

            plain = phases[0]
            routes(a, b, add=True)
            for _ in range(repeat):
                plain.tcp.append(iperf(a, b, seconds, udp=False))
                if udp:
                    plain.udp.append(iperf(a, b, seconds, udp=True))
            routes(a, b, add=False)
            for g in (a, b):
                g.run(["ip", "route", "add", "default", "via", UPSTREAM], check=True)

            agent_ops = {
                "setup": lambda a, b, d: setup_once(
                    a, b, "agent", d.socket_path, f"site-{b.name}", d.log_text
                ),
                "down": lambda d: d.ikectl("down", f"site-{b.name}", json_output=False),
            }
            charon_ops = {
                "setup": lambda a, b, d: setup_once(a, b, "vici", d.vici_path, CHILD, d.log_text),
                "down": lambda d: d.terminate(ike=f"site-{b.name}"),
            }
            common = {"seconds": seconds, "repeat": repeat, "reps": reps, "udp": udp}
            _ipsec_phase(phases[1], a, b, lambda m, p: agent_for(m, p, psk), agent_ops, **common)
            _ipsec_phase(phases[2], a, b, lambda m, p: charon_for(m, p, psk), charon_ops, **common)
        except Exception as exc:
            for p in phases:
                p.error = p.error or f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
        finally:
            uml.close()
    return phases
