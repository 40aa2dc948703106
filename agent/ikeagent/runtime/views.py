"""JSON views of the agent's state for the control socket (never any key or secret).

``ike_sa_view`` merges an engine ``IkeSaStatus`` with the data plane's per-child counters into
the ``list-sas`` shape documented in ``ikeagent.cli.ikectl``; ``connection_view`` describes a
configured connection for ``list-conns``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ikeagent.config.model import AuthConfig, ChildConfig, ConnectionConfig
from ikeagent.crypto.suites import Proposal
from ikeagent.dataplane.base import SaCounters
from ikeagent.engine.events import ChildSaStatus, IkeSaStatus, TrapStatus

CountersLookup = Callable[[int, int, int], SaCounters | None]


def _since(now: float, t: float | None) -> int | None:
    return None if t is None else max(0, int(now - t))


def _until(now: float, t: float | None) -> int | None:
    return None if t is None else max(0, int(t - now))


def child_sa_view(child: ChildSaStatus, counters: SaCounters | None, now: float) -> dict[str, Any]:
    c = counters or SaCounters()
    return {
        "name": child.name,
        "reqid": child.reqid,
        "state": child.state,
        "mode": child.mode,
        "protocol": child.protocol,
        "encap": child.encap,
        "spi_in": f"{child.spi_in:08x}",
        "spi_out": f"{child.spi_out:08x}",
        "encryption": child.encryption,
        "integrity": child.integrity,
        "dh": child.dh,
        "esn": child.esn,
        "local_ts": list(child.local_ts),
        "remote_ts": list(child.remote_ts),
        "bytes_in": c.bytes_in,
        "packets_in": c.packets_in,
        "bytes_out": c.bytes_out,
        "packets_out": c.packets_out,
        "last_used": _since(now, c.last_used),
        "installed": _since(now, child.installed_at),
        "rekey_in": _until(now, child.rekey_at),
        "expire_in": _until(now, child.expire_at),
        # seconds since the pair last carried a packet (or was installed, if it never did)
        "idle": _since(now, max(c.last_used or child.installed_at, child.installed_at)),
        "inactivity": child.inactivity or None,  # closed after this long idle (None: never)
    }


def trap_view(trap: TrapStatus, now: float, active: bool) -> dict[str, Any]:
    return {
        "name": trap.name,
        "child": trap.child,
        "reqid": trap.reqid,
        "version": trap.version,
        "local_ts": list(trap.local_ts),
        "remote_ts": list(trap.remote_ts),
        "reason": trap.reason,
        "acquires": trap.acquires,
        "last_acquire": _since(now, trap.last_acquire),
        "active": active,  # a Child SA is up under its reqid
    }


def ike_sa_view(sa: IkeSaStatus, counters: CountersLookup, now: float) -> dict[str, Any]:
    return {
        "name": sa.name,
        "uid": sa.uid,
        "version": sa.version,
        "state": sa.state,
        "role": sa.role,
        "mode": sa.mode,
        "local_addr": sa.local_addr,
        "local_port": sa.local_port,
        "local_id": sa.local_id,
        "remote_addr": sa.remote_addr,
        "remote_port": sa.remote_port,
        "remote_id": sa.remote_id,
        "spi_i": f"{sa.spi_i:016x}",
        "spi_r": f"{sa.spi_r:016x}",
        "encryption": sa.encryption,
        "integrity": sa.integrity,
        "prf": sa.prf,
        "dh": sa.dh,
        "nat_local": sa.nat_local,
        "nat_remote": sa.nat_remote,
        "established": _since(now, sa.established_at),
        "rekey_in": _until(now, sa.rekey_at),
        "expire_in": _until(now, getattr(sa, "expire_at", None)),
        "reauth_in": _until(now, getattr(sa, "reauth_at", None)),
        # certificate authentication (optional in IkeSaStatus): "psk" | "pubkey", peer cert DN
        "local_auth": getattr(sa, "local_auth", None),
        "remote_auth": getattr(sa, "remote_auth", None),
        "remote_cert": getattr(sa, "remote_cert", None),
        "children": [
            child_sa_view(c, counters(c.reqid, c.spi_in, c.spi_out), now) for c in sa.children
        ],
    }


def proposal_text(p: Proposal) -> str:
    from ikeagent.crypto import suites

    fmt = getattr(suites, "format_proposal", None)
    return fmt(p) if fmt else str(p)


def _auth_view(a: AuthConfig) -> dict[str, Any]:
    return {"auth": a.auth.value, "id": None if a.id is None else a.id.text}


def _child_view(c: ChildConfig) -> dict[str, Any]:
    return {
        "name": c.name,
        "mode": c.mode,
        "local_ts": [str(t) for t in c.local_ts],
        "remote_ts": [str(t) for t in c.remote_ts],
        "esp_proposals": [proposal_text(p) for p in c.esp_proposals],
        "start_action": c.start_action.value,
        "inactivity": c.inactivity,
        "life_bytes": c.life_bytes,
        "life_packets": c.life_packets,
        "rekey_time": c.rekey_time,
        "life_time": c.life_time,
        "rekey_bytes": c.rekey_bytes,
        "rekey_packets": c.rekey_packets,
        "dpd_action": c.dpd_action,
        "close_action": c.close_action,
    }


def connection_view(c: ConnectionConfig) -> dict[str, Any]:
    return {
        "name": c.name,
        "version": c.version,
        "local_addrs": list(c.local_addrs),
        "remote_addrs": list(c.remote_addrs),
        "local_port": c.local_port,
        "remote_port": c.remote_port,
        "proposals": [proposal_text(p) for p in c.proposals],
        "local": _auth_view(c.local),
        "remote": _auth_view(c.remote),
        "rekey_time": c.rekey_time,
        "reauth_time": c.reauth_time,
        "dpd_delay": c.dpd_delay,
        "encap": c.encap,
        "mobike": c.mobike,
        "fragmentation": c.fragmentation,
        "aggressive": c.aggressive,
        "children": [_child_view(ch) for ch in c.children.values()],
    }
