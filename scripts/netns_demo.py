"""The namespace demo behind ``scripts/netns-demo`` (run that, not this file)."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from types import FrameType

from ikelab_testing.capture import Capture
from ikelab_testing.netns import Lab, Topology
from ikelab_testing.peers import Tunnel, TunnelSpec, agent_peer, charon_peer

PEERS = {"agent": agent_peer, "charon": charon_peer}


MAIN_PID = os.getpid()


def _terminate(signum: int, frame: FrameType | None) -> None:
    # pyroute2 forks short-lived helpers that inherit this handler (and Ctrl-C reaches the whole
    # process group): only the main process unwinds and cleans up
    if os.getpid() == MAIN_PID:
        raise KeyboardInterrupt(f"signal {signum}")


def step(text: str) -> None:
    print(f"\n==> {text}", flush=True)


def demo(peer: str, timeout: float) -> int:
    factory = PEERS[peer]
    with Lab() as lab:
        step("building the lab")
        topo = Topology(lab).build()
        print(f"    {topo.describe()}")
        print(f"    namespaces: {', '.join(ns.name for ns in lab.namespaces.values())}")
        a, b = topo.sites()

        step(f"ping hostA {a.host_addr} -> hostB {b.host_addr} without a tunnel")
        before = a.host.ping(b.host_addr, count=1, wait=0.5)
        print(f"    {before}: {'PASSED (unexpected!)' if before.ok else 'fails, as it should'}")
        if before.ok:
            return 1

        label = "ikeagent" if peer == "agent" else "charon"
        step(f"starting {label} on gwA and gwB (fresh PSK, config mode 0600)")
        capture = Capture(a.gw, a.wan, lab.workdir("pcap") / "underlay.pcap").start()
        tunnel = Tunnel(topo, factory, factory, TunnelSpec())
        try:
            tunnel.start()
            step(f"bringing the tunnel up from gwA (site-b/{tunnel.spec.child})")
            seconds = tunnel.up(timeout=timeout)
            print(f"    CHILD_SA installed on both sides after {seconds * 1000:.0f} ms")

            step(f"ping hostA {a.host_addr} -> hostB {b.host_addr} through the tunnel")
            after = a.host.ping(b.host_addr, count=3)
            print(f"    {after}: {'passes' if after.ok else 'FAILS'}")

            for site, p in (("gwA", tunnel.peer_a), ("gwB", tunnel.peer_b)):
                assert p is not None
                step(f"list-sas on {site}")
                print(p.sas_text().rstrip())

            summary = capture.summary()
            step("what crossed the underlay (capture on gwA's wan0)")
            print(f"    {summary.describe()}")
            clear = summary.cleartext_between(a.subnet, b.subnet)
            print(f"    cleartext packets between the protected subnets: {len(clear)}")
            ok = after.ok and not clear and summary.esp > 0
        finally:
            step("removing the lab")
            codes = tunnel.stop()
            print(f"    daemons stopped (exit codes {codes})")
    print("    namespaces removed")
    print("\nRESULT:", "tunnel works" if ok else "FAILED")
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--peer", choices=sorted(PEERS), default="agent")
    parser.add_argument("--timeout", type=float, default=30.0)
    args = parser.parse_args(argv)
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _terminate)
    try:
        return demo(args.peer, args.timeout)
    except KeyboardInterrupt:
        print("\ninterrupted; the lab was removed", file=sys.stderr)
        return 130
    except Exception as exc:  # a demo reports, it does not dump a traceback
        print(f"\nFAILED: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
