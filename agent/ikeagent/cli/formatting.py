"""Text output of ikectl, modelled on ``swanctl --list-sas`` / ``--list-conns``; pure
functions of the JSON results the control socket returns."""

from __future__ import annotations

from typing import Any


def _ago(seconds: Any) -> str:
    return "never" if seconds is None else f"{seconds}s ago"


def _duration(seconds: float) -> str:
    s = int(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= size and s % size == 0:
            return f"{s // size}{unit}"
    return f"{s}s"


def _algs(*names: str | None) -> str:
    return "/".join(n for n in names if n)


def format_child(c: dict[str, Any]) -> list[str]:
    mode = c["mode"] + ("-in-UDP" if c.get("encap") else "")
    head = f"  {c['name']}: #{c['reqid']}, {c['state']}, {mode}, {c['protocol']}:"
    head += _algs(c.get("encryption"), c.get("integrity"), c.get("dh"))
    times = []
    if c.get("installed") is not None:
        times.append(f"installed {c['installed']}s ago")
    if c.get("rekey_in") is not None:
        times.append(f"rekeying in {c['rekey_in']}s")
    if c.get("expire_in") is not None:
        times.append(f"expires in {c['expire_in']}s")
    if c.get("inactivity"):
        times.append(f"idle {c.get('idle', 0)}s of {c['inactivity']}s")
    lines = [head]
    if times:
        lines.append("    " + ", ".join(times))
    last = _ago(c.get("last_used"))
    lines.append(
        f"    in  {c['spi_in']}, {c['bytes_in']:>8} bytes, {c['packets_in']:>6} packets, {last}"
    )
    lines.append(
        f"    out {c['spi_out']}, {c['bytes_out']:>8} bytes, {c['packets_out']:>6} packets, {last}"
    )
    lines.append("    local  " + " ".join(c["local_ts"]))
    lines.append("    remote " + " ".join(c["remote_ts"]))
    return lines


def format_sa(sa: dict[str, Any]) -> list[str]:
    ours_i = sa.get("role") == "initiator"
    spis = f"{sa['spi_i']}_i{'*' if ours_i else ''} {sa['spi_r']}_r{'' if ours_i else '*'}"
    version = f"IKEv{sa['version']}" + (f" {sa['mode']} mode" if sa.get("mode") else "")
    lines = [f"{sa['name']}: #{sa['uid']}, {sa['state']}, {version}, {spis}"]
    nat_l = " NAT" if sa.get("nat_local") else ""
    nat_r = " NAT" if sa.get("nat_remote") else ""
    auth_l = f" {sa['local_auth']}" if sa.get("local_auth") else ""
    auth_r = f" {sa['remote_auth']}" if sa.get("remote_auth") else ""
    lines.append(
        f"  local  '{sa['local_id']}' @ {sa['local_addr']}[{sa['local_port']}]{nat_l}{auth_l}"
    )
    lines.append(
        f"  remote '{sa['remote_id']}' @ {sa['remote_addr']}[{sa['remote_port']}]{nat_r}{auth_r}"
    )
    if sa.get("remote_cert"):
        lines.append(f"  remote certificate '{sa['remote_cert']}'")
    algs = _algs(sa.get("encryption"), sa.get("integrity"), sa.get("prf"), sa.get("dh"))
    if algs:
        lines.append(f"  {algs}")
    times = []
    if sa.get("established") is not None:
        times.append(f"established {sa['established']}s ago")
    if sa.get("rekey_in") is not None:
        times.append(f"rekeying in {sa['rekey_in']}s")
    if sa.get("reauth_in") is not None:
        times.append(f"reauthenticating in {sa['reauth_in']}s")
    if sa.get("expire_in") is not None:
        times.append(f"expires in {sa['expire_in']}s")
    if times:
        lines.append("  " + ", ".join(times))
    for child in sa.get("children", []):
        lines.extend(format_child(child))
    return lines


def format_sas(sas: list[dict[str, Any]]) -> str:
    if not sas:
        return "no IKE SAs"
    return "\n".join(line for sa in sas for line in format_sa(sa))


def format_trap(t: dict[str, Any]) -> list[str]:
    head = f"{t['name']}/{t['child']}: #{t['reqid']}, TRAPPED ({t['reason']}), IKEv{t['version']}"
    head += ", CHILD_SA up" if t.get("active") else ", no CHILD_SA"
    acq = t.get("acquires", 0)
    if acq:
        head += f", {acq} acquire{'s' if acq != 1 else ''}, last {_ago(t.get('last_acquire'))}"
    return [
        head,
        "  local  " + " ".join(t["local_ts"]),
        "  remote " + " ".join(t["remote_ts"]),
    ]


def format_traps(traps: list[dict[str, Any]]) -> str:
    if not traps:
        return "no trap policies"
    return "\n".join(line for t in traps for line in format_trap(t))


_AUTH_TEXT = {"psk": "pre-shared key", "pubkey": "public key"}


def format_conn(c: dict[str, Any]) -> list[str]:
    head = f"{c['name']}: IKEv{c['version']}"
    head += (
        ", no reauthentication"
        if not c.get("reauth_time")
        else f", reauth every {_duration(c['reauth_time'])}"
    )
    if c.get("rekey_time"):
        head += f", rekeying every {_duration(c['rekey_time'])}"
    if c.get("dpd_delay"):
        head += f", dpd delay {_duration(c['dpd_delay'])}"
    lines = [head]
    lines.append("  local:  " + (", ".join(c["local_addrs"]) or "%any") + f"[{c['local_port']}]")
    lines.append("  remote: " + (", ".join(c["remote_addrs"]) or "%any") + f"[{c['remote_port']}]")
    lines.append("  proposals: " + ", ".join(c.get("proposals", [])))
    for side in ("local", "remote"):
        auth = c[side]
        lines.append(f"  {side} {_AUTH_TEXT.get(auth['auth'], auth['auth'])} authentication:")
        lines.append(f"    id: {auth['id'] or '%any'}")
    for ch in c.get("children", []):
        rekey = f", rekeying every {_duration(ch['rekey_time'])}" if ch.get("rekey_time") else ""
        lines.append(
            f"  {ch['name']}: {ch['mode'].upper()}{rekey}, start_action {ch['start_action']}"
        )
        lines.append("    local:  " + " ".join(ch["local_ts"]))
        lines.append("    remote: " + " ".join(ch["remote_ts"]))
        lines.append("    esp_proposals: " + ", ".join(ch.get("esp_proposals", [])))
    return lines


def format_conns(conns: list[dict[str, Any]]) -> str:
    if not conns:
        return "no connections"
    return "\n".join(line for c in conns for line in format_conn(c))


def _stats(stats: dict[str, int]) -> str:
    return " ".join(f"{k}={v}" for k, v in sorted(stats.items())) or "-"


def format_status(st: dict[str, Any]) -> str:
    dp = st["dataplane"]
    lines = [
        f"ikeagent {st['version']} (pid {st['pid']}), up {st['uptime']}s",
        f"  data plane: {dp['name']}" + (f" ({dp['reason']})" if dp.get("reason") else ""),
    ]
    if "ports" in st:
        lines.append(f"  ports: IKE {st['ports']['ike']}, NAT-T {st['ports']['natt']}")
    lines.append(
        f"  connections: {st['connections']}, IKE SAs: {st['ike_sas']}, CHILD_SAs: {st['child_sas']}"
    )
    for key in ("agent", "engine", "dataplane"):
        lines.append(f"  {key} counters: {_stats(st.get('stats', {}).get(key, {}))}")
    return "\n".join(lines)
