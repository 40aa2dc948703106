"""The two daemons of the on-demand benchmark (``trap_esp``), each driven over its own control
socket from inside its guest (``uml_probe.py ctl``): the agent's JSON lines, charon's VICI.

Both offer the same calls: ``start(me, peer, trap)`` (a daemon in guest ``me`` with one
connection to ``peer``, its child trapped or not), ``ike_sas`` (the ESTABLISHED IKE SAs as
(initiator SPI, responder SPI)), ``retransmits`` (IKE requests it re-sent so far),
``trapped`` (it lists the child's trap), ``close_child`` (that Child SA only, the IKE SA
stays: agent ``down <child>``, VICI ``terminate`` with ``child``) and ``close_ike``.
"""

from __future__ import annotations

import json
import re
from typing import Any

from kernel_esp import CHILD, ESP, IKE, PROBE, ids, net

from ikelab_testing.charon import Child, Connection, Secret
from ikelab_testing.guest_agent import GuestAgent
from ikelab_testing.guest_charon import LAB_PACKAGE_DIR, GuestCharon
from ikelab_testing.uml import Guest

WAIT = 60.0  # seconds a control request may take
_RETRANSMIT = re.compile(r"retransmit \d+ of request")  # charon's log (IKE level 1)


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
