"""On-demand tunnels in two User-mode Linux guests: time to first packet through a trap.

Four guests on one underlay, two pairs as in ``kernel_esp`` (IKEv2 aes256gcm16-prfsha256-x25519
with a PSK, ESP aes256gcm16, the guests' kernel XFRM): ``ikeagent --dataplane xfrm`` in a
(192.0.2.1, protected 10.1.0.1/24) and b (192.0.2.2, 10.2.0.1/24), charon (kernel-netlink) in
c (192.0.2.3, 10.3.0.1/24) and d (192.0.2.4, 10.4.0.1/24).  Both pairs run all along and take
turns a cycle at a time (agent first in even rounds, charon in odd ones), so a change in the
machine's load (other virtual machines on its cores: the CPU steal is reported) falls on both.
The initiator (a, c) has ``start_action: trap``, the responder (b, d) ``none``; the only way off
a guest's subnets is a default route via 192.0.2.254, which nobody has, so nothing passes until
the kernel's policies send it through ESP.

A probe in the initiator's guest (``uml_probe.py send``) sends a UDP datagram (its sequence
number) from its protected address to an echo server on the responder's every
``SEND_INTERVAL`` s, with no request to any daemon:
the first one meets the trap, the kernel raises an ACQUIRE and the daemon negotiates.  Timed:
first probe sent -> first echo back (the initiator guest's clock).  Per cycle:

- cold: no SA at all (fresh daemons, later after the IKE SA was terminated; the trap stays);
- warm: the IKE SA kept, only the Child SA closed with the daemon's own control (agent:
  ``{"cmd": "down", "name": "<child>"}`` on its socket; charon: VICI ``terminate`` with
  ``child``), so only Phase 2 (CREATE_CHILD_SA) is negotiated; checked: the same IKE SA before
  and after, on both ends.

Before each probe: no ESP SA in either kernel, the trap's out policy in the initiator's kernel
and in the daemon's own list.  Also reported per probe: which probe came back first and which never
did (the agent sets ``xfrm_larval_drop`` to 0, so the kernel holds what meets the trap and
sends it once the SAs are in; charon leaves it at 1: those packets are dropped), and from
``ip -ts xfrm monitor`` in the initiator's guest: first probe -> ACQUIRE, first probe -> the last SA added
before the echo (the time ``ip`` read it: at or after the add; none if only after the
echo), that SA -> echo; and the IKE requests either daemon re-sent until both had the SAs (a
lost packet, not a slow daemon: charon re-sends after 4 s, the agent here after 2 s, as in
``kernel_esp``).  ``reps`` cycles count; one more first, not counted, warms
the daemons up.  Every guest starts with the kernel's defaults (``xfrm_larval_drop`` 1,
``xfrm_acq_expires`` 30).
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
    ECHO_PORT,
    LABELS,
    PROBE,
    UPSTREAM,
    esp_states,
    net,
    wait_for,
    warm_crypto,
)
from trap_daemons import AgentOps, CharonOps

from ikelab_testing.guest_agent import xfrm_policies
from ikelab_testing.netns import Lab
from ikelab_testing.uml import Guest, UmlLab, available

SEND_INTERVAL = 0.005
PROBE_TIMEOUT = 30.0  # seconds without an echo: the probe gives up
DRAIN = 1.0  # seconds to listen for echoes of earlier probes after the first one
WAIT = 60.0  # deadline of every other wait (SAs in or out, IKE SAs gone)
KINDS = ("cold", "warm")
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
    larval_drop: str | None = None  # the initiator's xfrm_larval_drop with the trap installed
    notes: list[str] = field(default_factory=list)  # failed cycles, warm-up included
    host: dict[str, Any] = field(default_factory=dict)  # the machine during the measurement
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
    _check(trap_policy(a, b), "the trap's policy left the initiator's kernel")
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


class PhaseRun:
    """One daemon pair in its own two guests (a: initiator with the trap, b: responder), run
    a cycle at a time so that the two pairs' cycles can take turns."""

    def __init__(self, phase: Phase, a: Guest, b: Guest, ops: Any) -> None:
        self.phase, self.a, self.b, self.ops = phase, a, b, ops
        self.da: Any = None
        self.db: Any = None
        self.monitor: Any = None
        self.failures = 0

    def start(self) -> bool:
        a, b = self.a, self.b
        try:
            for g in (a, b):
                sysctls(g, larval_drop=1, acq_expires=30)  # the kernel's defaults
            self.db = self.ops.start(b, a, trap=False)
            self.da = self.ops.start(a, b, trap=True)
            self.phase.larval_drop = sysctls(a)
            monitor = ["/bin/sh", "-c", "exec ip -ts xfrm monitor | grep --line-buffered '^\\['"]
            self.monitor = a.spawn(monitor)
            time.sleep(0.5)
            return True
        except Exception as exc:
            self._fail(exc)
            return False

    def cycle(self, n: int, count: bool) -> bool:
        """Cycle ``n``; False once the phase gave up (more than two cycles failed)."""
        if self.phase.error:
            return False
        try:
            _cycle(self.phase, self.a, self.b, self.ops, self.da, self.db, self.monitor, count)
            return True
        except Exception as exc:
            self.failures += 1
            self.phase.notes.append(f"cycle {n}: {type(exc).__name__}: {exc}".splitlines()[0][:300])
            for d in (self.da, self.db):
                print(f"--- {d} log ---\n{d.log_tail(30)}", file=sys.stderr)
            if self.failures > 2:
                self._fail(exc)
                return False
        try:  # back to cold: no IKE SA, no ESP SA
            self.ops.close_ike(self.da, self.b)
        except Exception as exc:
            self.phase.notes.append(f"cycle {n}: reset: {exc}".splitlines()[0][:300])
        return True

    def stop(self) -> None:
        """Stop the monitor and both daemons (each tried), then check both kernels are clean."""
        a, b = self.a, self.b
        steps = [p.stop for p in (self.monitor, self.da, self.db) if p is not None]
        steps.append(
            lambda: wait_for(
                lambda: not esp_states(a) and not esp_states(b), WAIT, "a clean kernel"
            )
        )
        for step in steps:
            try:
                step()
            except Exception as exc:
                self._fail(exc)

    def _fail(self, exc: Exception) -> None:
        self.phase.error = self.phase.error or f"{type(exc).__name__}: {exc}".splitlines()[0][:300]


class HostUsage:
    """The machine's CPU time and load over a measurement (``/proc/stat``, ``/proc/loadavg``)."""

    def __init__(self) -> None:
        self.ticks, self.load, self.started = _cpu_ticks(), _load(), time.monotonic()

    def summary(self) -> dict[str, Any]:
        spent = [x - y for x, y in zip(_cpu_ticks(), self.ticks, strict=True)]
        total = sum(spent[:8]) or 1  # user nice system idle iowait irq softirq steal
        # the guests and daemons are the bench's own load; steal is the hypervisor's (other
        # virtual machines on the same cores): a run with much of it is not comparable
        return {
            "seconds": round(time.monotonic() - self.started, 1),
            "load1_start": self.load,
            "load1_end": _load(),
            "busy_percent": round(100 * (total - spent[3] - spent[4]) / total, 1),
            "steal_percent": round(100 * spent[7] / total, 1) if len(spent) > 7 else None,
        }


def measure_trap(*, reps: int = 5) -> list[Phase]:
    """Boot four guests and measure both pairs, their cycles taking turns (see the module's
    docstring)."""
    phases = [Phase(k, LABELS[k]) for k in ("agent", "charon")]
    reason = available()
    if reason:
        for p in phases:
            p.error = reason
        return phases
    psk = "k" + secrets.token_urlsafe(32)  # fresh per run, never printed; never "0x"/"0s"
    with Lab() as lab:
        uml = UmlLab(lab)
        runs: list[PhaseRun] = []
        try:
            a, b, c, d = uml.boot("a", "b", "c", "d")
            for g in (a, b, c, d):
                warm_crypto(g)
                g.run(["ip", "route", "add", "default", "via", UPSTREAM], check=True)
            for g in (b, d):
                echo = [uml.python, "-I", "-S", str(PROBE), "echo", g.protected_address]
                g.spawn([*echo, str(ECHO_PORT)]).wait_log("ready", 60)
            runs = [
                PhaseRun(phases[0], a, b, AgentOps(psk)),
                PhaseRun(phases[1], c, d, CharonOps(psk)),
            ]
            usage = HostUsage()
            live = [r for r in runs if r.start()]
            for n in range(reps + 1):
                # turns: agent first in even rounds, charon first in odd ones
                live = [r for r in (live if n % 2 == 0 else live[::-1]) if r.cycle(n, n > 0)]
                live = sorted(live, key=runs.index)
            host = usage.summary()
            for p in phases:
                p.host = host
        except Exception as exc:
            for p in phases:
                p.error = p.error or f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
        finally:
            try:
                for r in runs:
                    r.stop()
            finally:
                uml.close()
    return phases
