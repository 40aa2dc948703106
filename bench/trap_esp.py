"""On-demand tunnels in two User-mode Linux guests: time to first packet through a trap.

Two guests as in ``kernel_esp`` (a: 192.0.2.1, protected 10.1.0.1/24; b: 192.0.2.2, protected
10.2.0.1/24; IKEv2 aes256gcm16-prfsha256-x25519 with a PSK, ESP aes256gcm16, the guests' kernel
XFRM), two phases in turn: ``ikeagent --dataplane xfrm`` in both guests, then charon
(kernel-netlink) in both.  Guest a's side (the initiator) has ``start_action: trap``, b's
``none``; the only way off a guest's subnets is a default route via 192.0.2.254, which nobody
has, so nothing passes until the kernel's policies send it through ESP.

A probe in guest a (``uml_probe.py send``) sends a UDP datagram (its sequence number) from
10.1.0.1 to an echo server on 10.2.0.1 every ``SEND_INTERVAL`` s, with no request to any daemon:
the first one meets the trap, the kernel raises an ACQUIRE and the daemon negotiates.  Timed:
first probe sent -> first echo back (guest a's clock).  Per cycle:

- cold: no SA at all (fresh daemons, later after the IKE SA was terminated; the trap stays);
- warm: the IKE SA kept, only the Child SA closed with the daemon's own control (agent:
  ``{"cmd": "down", "name": "<child>"}`` on its socket; charon: VICI ``terminate`` with
  ``child``), so only Phase 2 (CREATE_CHILD_SA) is negotiated; checked: the same IKE SA before
  and after, on both ends.

Before each probe: no ESP SA in either kernel, the trap's out policy in guest a's kernel and
in the daemon's own list.  Also reported per probe: which probe came back first and which never
did (the agent sets ``xfrm_larval_drop`` to 0, so the kernel holds what meets the trap and
sends it once the SAs are in; charon leaves it at 1: those packets are dropped), and from
``ip -ts xfrm monitor`` in guest a: first probe -> ACQUIRE, first probe -> the last SA added
before the echo (the time ``ip`` read it: at or after the add; none if only after the
echo), that SA -> echo; and the IKE requests either daemon re-sent until both had the SAs (a
lost packet, not a slow daemon: charon re-sends after 4 s, the agent here after 2 s, as in
``kernel_esp``).  ``reps`` cycles count; one more first, not counted, warms
the daemons up.  Both guests get the kernel's defaults (``xfrm_larval_drop`` 1,
``xfrm_acq_expires`` 30) before each phase.
"""

from __future__ import annotations

import calendar
import json
import re
import secrets
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from kernel_esp import (
    CHILD,
    ECHO_PORT,
    ESP,
    IKE,
    LABELS,
    PROBE,
    UPSTREAM,
    esp_states,
    ids,
    net,
    wait_for,
    warm_crypto,
)

from ikelab_testing.charon import Child, Connection, Secret
from ikelab_testing.guest_agent import GuestAgent, xfrm_policies
from ikelab_testing.guest_charon import LAB_PACKAGE_DIR, GuestCharon
from ikelab_testing.netns import Lab
from ikelab_testing.uml import Guest, UmlLab, available

SEND_INTERVAL = 0.005
PROBE_TIMEOUT = 30.0  # seconds without an echo: the probe gives up
DRAIN = 1.0  # seconds to listen for echoes of earlier probes after the first one
WAIT = 60.0  # deadline of every other wait (SAs in or out, IKE SAs gone)
KINDS = ("cold", "warm")
_RETRANSMIT = re.compile(r"retransmit \d+ of request")  # charon's log (IKE level 1)
_MONITOR = re.compile(r"^\[(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)\.(\d{6})\] (.*)$")


@dataclass(frozen=True, slots=True)
class Probe:
    """One probe run, times in ms from the first probe sent."""

    kind: str  # cold | warm
    ms: float | None = None  # -> first echo back
    seq: int | None = None  # the probe whose echo came first
    first_ms: float | None = None  # -> the echo of the first probe (None: it was dropped)
    order: tuple[int, ...] = ()  # the first probes echoed, in arrival order
    probes: int = 0  # sent in all
    answered: int = 0  # echoed by the end of the drain
    missing: str = ""  # probes never echoed ("1-57")
    acquire_ms: float | None = None  # -> the kernel's ACQUIRE
    sa_ms: float | None = None  # -> the last ESP SA added before the echo (None: read after it)
    retransmits: int = 0  # IKE requests re-sent by either daemon until both had the SAs
    error: str = ""

    @property
    def sa_to_reply_ms(self) -> float | None:
        return self.ms - self.sa_ms if self.ms is not None and self.sa_ms is not None else None


@dataclass(slots=True)
class Phase:
    key: str  # agent | charon
    label: str
    cold: list[Probe] = field(default_factory=list)
    warm: list[Probe] = field(default_factory=list)
    larval_drop: str | None = None  # guest a's xfrm_larval_drop with the trap installed
    notes: list[str] = field(default_factory=list)  # failed cycles, warm-up included
    host: dict[str, Any] = field(default_factory=dict)  # the machine during the phase
    error: str = ""

    def ok(self, kind: str) -> list[Probe]:
        return [p for p in getattr(self, kind) if not p.error and p.ms is not None]

    def median(self, kind: str, name: str = "ms") -> float | None:
        values = [v for p in self.ok(kind) if (v := getattr(p, name)) is not None]
        return statistics.median(values) if values else None

    def as_dict(self) -> dict[str, Any]:
        doc = asdict(self)
        for kind in KINDS:
            for name in ("ms", "first_ms", "acquire_ms", "sa_ms", "sa_to_reply_ms"):
                doc[f"{kind}_{name}_median"] = self.median(kind, name)
            doc[f"{kind}_first_seqs"] = [p.seq for p in self.ok(kind)]
        return doc


# --- the daemons, driven over their own control sockets --------------------------------------


def ctl(g: Guest, kind: str, target: str, req: dict[str, Any]) -> dict[str, Any]:
    """One request on a daemon's socket in guest ``g`` (``uml_probe.py ctl``)."""
    argv = [g.uml.python, "-I", "-S", str(PROBE), "ctl", kind, target, json.dumps(req)]
    r = g.run([*argv, LAB_PACKAGE_DIR], timeout=WAIT + 30)
    try:
        return json.loads(r.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise RuntimeError(f"{kind} {req}: {(r.stdout + r.stderr)[-300:]}") from None


class AgentOps:
    key = "agent"

    def __init__(self, psk: str) -> None:
        self.psk = psk

    def start(self, me: Guest, peer: Guest, trap: bool) -> GuestAgent:
        local, remote = ids(me, peer)
        child = {
            "local_ts": [net(me)],
            "remote_ts": [net(peer)],
            "esp_proposals": [ESP],
            "start_action": "trap" if trap else "none",
        }
        conn = {
            "version": 2,
            "local_addrs": [me.address],
            "remote_addrs": [peer.address],
            "proposals": [IKE],
            "local": {"auth": "psk", "id": local},
            "remote": {"auth": "psk", "id": remote},
            "children": {CHILD: child},
        }
        config = {
            "agent": {"retransmit_timeout": 2.0},
            "connections": {f"site-{peer.name}": conn},
            "secrets": {"ike-lab": {"id": sorted([local, remote]), "secret": self.psk}},
        }
        return GuestAgent(me, config, dataplane="xfrm").start()

    def _call(self, d: GuestAgent, req: dict[str, Any]) -> Any:
        reply = ctl(d.guest, "agent", d.socket_path, req)
        if not reply.get("ok"):
            raise RuntimeError(f"agent {req['cmd']}: {reply.get('error', reply)}")
        return reply.get("result")

    def ike_sas(self, d: GuestAgent) -> set[tuple[int, int]]:
        sas = self._call(d, {"cmd": "list-sas"})
        return {
            (int(s["spi_i"], 16), int(s["spi_r"], 16)) for s in sas if s["state"] == "ESTABLISHED"
        }

    def retransmits(self, d: GuestAgent) -> int:
        return int(self._call(d, {"cmd": "status"})["stats"]["engine"].get("retransmits", 0))

    def trapped(self, d: GuestAgent) -> bool:
        return any(t["child"] == CHILD for t in self._call(d, {"cmd": "list-traps"}))

    def close_child(self, d: GuestAgent) -> None:
        result = self._call(d, {"cmd": "down", "name": CHILD, "timeout": 20})
        if not result.get("terminated"):
            raise RuntimeError(f"agent down {CHILD}: {result}")

    def close_ike(self, d: GuestAgent, peer: Guest) -> None:
        self._call(d, {"cmd": "down", "name": f"site-{peer.name}", "timeout": 20})


class CharonOps:
    key = "charon"

    def __init__(self, psk: str) -> None:
        self.psk = psk

    def start(self, me: Guest, peer: Guest, trap: bool) -> GuestCharon:
        local, remote = ids(me, peer)
        charon = GuestCharon(me).start()
        child = Child(
            CHILD,
            [net(me)],
            [net(peer)],
            esp_proposals=(ESP,),
            start_action="trap" if trap else "none",
        )
        conn = Connection(
            name=f"site-{peer.name}",
            local_addrs=[me.address],
            remote_addrs=[peer.address],
            local_id=local,
            remote_id=remote,
            proposals=(IKE,),
            children=[child],
        )
        charon.load([conn], [Secret("lab", sorted([local, remote]), self.psk)])
        return charon

    def _call(self, d: GuestCharon, req: dict[str, Any]) -> dict[str, Any]:
        reply = ctl(d.guest, "vici", d.vici_path, req)
        if reply.get("ok") is False or reply.get("success") == "no":
            raise RuntimeError(
                f"VICI {req['command']}: {reply.get('error') or reply.get('errmsg')}"
            )
        return reply

    def ike_sas(self, d: GuestCharon) -> set[tuple[int, int]]:
        events = self._call(d, {"command": "list-sas", "event": "list-sa"})["events"]
        return {
            (int(sa["initiator-spi"], 16), int(sa["responder-spi"], 16))
            for event in events
            for sa in event.values()
            if sa.get("state") == "ESTABLISHED"
        }

    def retransmits(self, d: GuestCharon) -> int:
        return len(_RETRANSMIT.findall(d.log_text()))

    def trapped(self, d: GuestCharon) -> bool:
        req = {"command": "list-policies", "msg": {"trap": "yes"}, "event": "list-policy"}
        events = self._call(d, req)["events"]
        return any(p.get("child") == CHILD for event in events for p in event.values())

    def close_child(self, d: GuestCharon) -> None:
        self._call(d, {"command": "terminate", "msg": {"child": CHILD, "timeout": "20000"}})

    def close_ike(self, d: GuestCharon, peer: Guest) -> None:
        self._call(
            d, {"command": "terminate", "msg": {"ike": f"site-{peer.name}", "timeout": "20000"}}
        )


# --- the guests' kernels ------------------------------------------------------------------------


def trap_policy(a: Guest, b: Guest) -> bool:
    """Guest a's kernel has an out policy for a's subnet -> b's, through ESP."""
    return any(
        p["dir"] == "out" and p["src"] == net(a) and p["dst"] == net(b) and p["proto"] == "esp"
        for p in xfrm_policies(a)
    )


def sysctls(g: Guest, larval_drop: int | None = None, acq_expires: int | None = None) -> str:
    """Set (when given) and read ``xfrm_larval_drop`` and ``xfrm_acq_expires``."""
    core = "/proc/sys/net/core"
    script = [
        f"echo {v} > {core}/{n}"
        for n, v in (("xfrm_larval_drop", larval_drop), ("xfrm_acq_expires", acq_expires))
        if v is not None
    ]
    script.append(f"cat {core}/xfrm_larval_drop")
    return g.sh(" && ".join(script)).stdout.strip()


def _monitor_times(text: str, gmtoff: int) -> list[tuple[float, str]]:
    """(time, what) of ``ip -ts xfrm monitor`` header lines: "acquire" or "sa" (a state added
    or updated; policies, whose selectors have a prefix length, are left out)."""
    out = []
    for raw in text.splitlines():
        m = _MONITOR.match(raw)
        if not m:
            continue
        body = m.group(3)
        if body.startswith("acquire"):
            what = "acquire"
        elif (s := re.match(r"(?:Updated )?src (\S+) dst (\S+)", body)) and "/" not in s.group(1):
            what = "sa"
        else:
            continue
        naive = calendar.timegm(time.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S"))
        out.append((naive - gmtoff + int(m.group(2)) / 1e6, what))
    return out


def send_probe(a: Guest, b: Guest, kind: str, monitor: Any) -> Probe:
    argv = [a.uml.python, "-I", "-S", str(PROBE), "send", a.protected_address, b.protected_address]
    argv += [str(ECHO_PORT), str(SEND_INTERVAL), str(PROBE_TIMEOUT), str(DRAIN)]
    r = a.run(argv, timeout=PROBE_TIMEOUT + DRAIN + 60)
    try:
        out = json.loads(r.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return Probe(kind, error=f"probe: {(r.stdout + r.stderr)[-200:]}")
    base = {"probes": out["probes"], "answered": out["answered"], "missing": out["missing"]}
    if "t_reply" not in out:
        return Probe(kind, error=f"no echo in {PROBE_TIMEOUT:g} s", **base)
    t0, t_reply, ms = out["t_first"], out["t_reply"], 1000.0
    events = [
        (t, w) for t, w in _monitor_times(monitor.log_text(), out["gmtoff"]) if t >= t0 - 0.001
    ]
    acquires = [t for t, w in events if w == "acquire"]
    sas = [t for t, w in events if w == "sa" and t <= t_reply]
    return Probe(
        kind,
        ms=(t_reply - t0) * ms,
        seq=out["seq"],
        first_ms=(out["t_reply_1"] - t0) * ms if "t_reply_1" in out else None,
        order=tuple(out["order"]),
        acquire_ms=(acquires[0] - t0) * ms if acquires else None,
        sa_ms=(max(sas) - t0) * ms if sas else None,
        **base,
    )


# --- one phase ----------------------------------------------------------------------------------


def _check(ok: bool, what: str) -> None:
    if not ok:
        raise RuntimeError(what)


def _settled(
    a: Guest, b: Guest, ops: Any, da: Any, db: Any, ike: set[tuple[int, int]] | None
) -> None:
    """No ESP SA left in either kernel, the trap still there (kernel and daemon), and the IKE
    SAs as expected: ``ike`` on both ends (warm) or none at all (cold)."""
    wait_for(lambda: not esp_states(a) and not esp_states(b), WAIT, "no ESP SA in the kernels")
    if ike is None:
        wait_for(lambda: not ops.ike_sas(da) and not ops.ike_sas(db), WAIT, "no IKE SA left")
    else:
        _check(ops.ike_sas(da) == ike and ops.ike_sas(db) == ike, "the IKE SA did not stay")
    _check(trap_policy(a, b), "the trap's policy left guest a's kernel")
    _check(ops.trapped(da), "the daemon no longer lists its trap")


def _up(a: Guest, b: Guest, ops: Any, da: Any, db: Any) -> set[tuple[int, int]]:
    wait_for(lambda: len(esp_states(a)) == 2 and len(esp_states(b)) == 2, WAIT, "the ESP SAs")
    ike = wait_for(lambda: ops.ike_sas(da), WAIT, "the initiator's IKE SA")
    _check(len(ike) == 1 and ops.ike_sas(db) == ike, f"IKE SAs: a {ike}, b {ops.ike_sas(db)}")
    return ike


def _measured(
    a: Guest, b: Guest, kind: str, ops: Any, da: Any, db: Any, monitor: Any
) -> tuple[Probe, set[tuple[int, int]]]:
    """A probe, then the tunnel up on both ends; with the IKE requests both daemons re-sent
    meanwhile (a lost packet shows as a retransmit, not as a slow daemon)."""
    before = ops.retransmits(da) + ops.retransmits(db)
    probe = send_probe(a, b, kind, monitor)
    if probe.error:
        return probe, set()
    ike = _up(a, b, ops, da, db)
    again = ops.retransmits(da) + ops.retransmits(db) - before
    return replace(probe, retransmits=again), ike


def _cycle(
    phase: Phase, a: Guest, b: Guest, ops: Any, da: Any, db: Any, monitor: Any, count: bool
) -> None:
    """cold probe, close the Child SA, warm probe, close the IKE SA (back to cold)."""
    _settled(a, b, ops, da, db, None)
    cold, ike = _measured(a, b, "cold", ops, da, db, monitor)
    if count:
        phase.cold.append(cold)
    _check(not cold.error, f"cold: {cold.error}")
    ops.close_child(da)
    _settled(a, b, ops, da, db, ike)
    warm, ike_after = _measured(a, b, "warm", ops, da, db, monitor)
    if not warm.error and ike_after != ike:
        warm = Probe("warm", error="a new IKE SA came up instead of a Child SA on the old one")
    if count:
        phase.warm.append(warm)
    _check(not warm.error, f"warm: {warm.error}")
    ops.close_ike(da, b)


def _cpu_ticks() -> list[int]:
    """The machine's CPU time so far (``/proc/stat``: user nice system idle iowait irq
    softirq steal ...)."""
    with open("/proc/stat") as f:
        return [int(v) for v in f.readline().split()[1:]]


def _load() -> float:
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


def run_phase(phase: Phase, a: Guest, b: Guest, ops: Any, reps: int) -> None:
    da = db = monitor = None
    before, load, started = _cpu_ticks(), _load(), time.monotonic()
    try:
        for g in (a, b):
            sysctls(g, larval_drop=1, acq_expires=30)  # the kernel's defaults
        db, da = ops.start(b, a, trap=False), ops.start(a, b, trap=True)
        phase.larval_drop = sysctls(a)
        monitor = a.spawn(
            ["/bin/sh", "-c", "exec ip -ts xfrm monitor | grep --line-buffered '^\\['"]
        )
        time.sleep(0.5)
        failures = 0
        for n in range(reps + 1):
            try:
                _cycle(phase, a, b, ops, da, db, monitor, count=n > 0)
            except Exception as exc:
                failures += 1
                phase.notes.append(f"cycle {n}: {type(exc).__name__}: {exc}".splitlines()[0][:300])
                for d in (da, db):
                    print(f"--- {d} log ---\n{d.log_tail(30)}", file=sys.stderr)
                if failures > 2:
                    raise
                try:  # back to cold: no IKE SA, no ESP SA
                    ops.close_ike(da, b)
                except Exception as again:
                    phase.notes.append(f"cycle {n}: reset: {again}".splitlines()[0][:300])
    except Exception as exc:
        phase.error = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
    finally:
        if monitor is not None:
            monitor.stop(5)
        for d in (da, db):
            if d is not None:
                d.stop()
    spent = [x - y for x, y in zip(_cpu_ticks(), before, strict=True)]
    total = sum(spent[:8]) or 1
    # the guests and daemons are this phase's own load; steal is the hypervisor's (another
    # machine's work on the same cores): a run with much of it is not comparable
    phase.host = {
        "seconds": round(time.monotonic() - started, 1),
        "load1_start": load,
        "load1_end": _load(),
        "busy_percent": round(100 * (total - spent[3] - spent[4]) / total, 1),
        "steal_percent": round(100 * spent[7] / total, 1) if len(spent) > 7 else None,
    }
    try:
        wait_for(lambda: not esp_states(a) and not esp_states(b), WAIT, "a clean kernel")
    except RuntimeError as exc:
        phase.error = phase.error or str(exc)


def measure_trap(*, reps: int = 5) -> list[Phase]:
    """Boot two guests and measure both phases (see the module's docstring)."""
    phases = [Phase(k, LABELS[k]) for k in ("agent", "charon")]
    reason = available()
    if reason:
        for p in phases:
            p.error = reason
        return phases
    psk = "k" + secrets.token_urlsafe(32)  # fresh per run, never printed; never "0x"/"0s"
    with Lab() as lab:
        uml = UmlLab(lab)
        try:
            a, b = uml.boot("a", "b")
            for g in (a, b):
                warm_crypto(g)
                g.run(["ip", "route", "add", "default", "via", UPSTREAM], check=True)
            echo = [uml.python, "-I", "-S", str(PROBE), "echo", b.protected_address, str(ECHO_PORT)]
            b.spawn(echo).wait_log("ready", 60)
            run_phase(phases[0], a, b, AgentOps(psk), reps)
            run_phase(phases[1], a, b, CharonOps(psk), reps)
        except Exception as exc:
            for p in phases:
                p.error = p.error or f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
        finally:
            uml.close()
    return phases
