"""IKE SAs per CPU-second of a responder: the agent against charon, same load, same proposal, in
IKEv2 and in IKEv1 (Main Mode + Quick Mode), authenticated with a PSK or with certificates
(``rsa``: RSA-2048, ``ecdsa``: ECDSA P-256, both issued by one throw-away RSA-2048 CA).

The load comes from ``ike_rate.py`` (many initiators on the agent's own engine) in gwA; the
responder runs in gwB. Both responders establish an IKE SA and one Child SA per exchange and
install it in their userspace data plane (the agent's, and charon's kernel-libipsec). The
responder (every thread of it) is pinned to one CPU and the load generator to the others, so
neither responder can spread its signatures over more cores than the other.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ikelab_testing.agent import Agent
from ikelab_testing.charon import Charon, Child, Connection, KeyFile, Secret
from ikelab_testing.netns import topology
from ikelab_testing.pki import TestPki

HERE = Path(__file__).resolve().parent
PROPOSAL = "aes128-sha256-x25519"
ESP = "aes128gcm16"
LOAD_ID, RESP_ID = "load.example", "responder.example"
LOAD_TS, RESP_TS = "10.8.0.0/24", "10.9.0.0/24"

# --ike-auth names: the key type of both end-entity certificates (TestPki key types), None: PSK
AUTH_KEY_TYPES: dict[str, str | None] = {"psk": None, "rsa": "rsa", "ecdsa": "ecdsa-p256"}
AUTH_TEXT = {"psk": "PSK", "rsa": "RSA-2048 certificates", "ecdsa": "ECDSA P-256 certificates"}
CA_KEY_TYPE = "rsa"  # the one CA that issues both certificates: RSA-2048


@dataclass(frozen=True, slots=True)
class Credentials:
    """The certificate files of one ``--ike-auth`` kind: one CA, a responder certificate and the
    client certificate every load connection shares (keys are PKCS#8 PEM, mode 0600)."""

    auth: str
    ca: Path
    responder_cert: Path
    responder_key: Path
    load_cert: Path
    load_key: Path


def make_credentials(auth: str, directory: Path) -> Credentials:
    """A throw-away CA in ``directory`` and the two end-entity certificates for ``auth``."""
    key_type = AUTH_KEY_TYPES[auth]
    if key_type is None:
        raise ValueError("PSK needs no certificates")
    pki = TestPki(directory)
    ca = pki.ca("Bench CA", CA_KEY_TYPE)
    resp = pki.issue(ca, RESP_ID, sans=[RESP_ID], key_type=key_type)
    load = pki.issue(ca, LOAD_ID, sans=[LOAD_ID], key_type=key_type)
    return Credentials(
        auth, ca.cert_path, resp.cert_path, resp.key_path, load.cert_path, load.key_path
    )


@dataclass
class RateResult:
    label: str
    responder: str = ""
    version: int = 2
    auth: str = "psk"
    established: int = 0
    failed: int = 0
    cpu_seconds: float = 0.0
    sas_per_cpu_second: float | None = None
    sas_per_second: float | None = None
    median_setup_ms: float | None = None
    load_cpu_seconds: float | None = None  # the load generator's own CPU time
    load_stats: dict[str, int] | None = None  # its engine's counters (retransmits, drops)
    error: str = ""


def _agent_responder(topo, psk: str, version: int = 2, creds: Credentials | None = None):
    gw = topo.gw_b
    local: dict[str, Any] = {"auth": "psk", "id": RESP_ID}
    remote: dict[str, Any] = {"auth": "psk", "id": LOAD_ID}
    secret: dict[str, Any] = {"ike-load": {"id": [LOAD_ID, RESP_ID], "secret": psk}}
    if creds is not None:
        local = {"auth": "pubkey", "id": RESP_ID, "certs": [str(creds.responder_cert)]}
        remote = {"auth": "pubkey", "id": LOAD_ID, "cacerts": [str(creds.ca)]}
        secret = {"private-responder": {"file": str(creds.responder_key)}}
    cfg = {
        "connections": {
            "load": {
                "version": version,
                "local_addrs": [topo.spec.gw_b_outer],
                "remote_addrs": [topo.spec.gw_a_outer],
                "proposals": [PROPOSAL],
                "local": local,
                "remote": remote,
                "rekey_time": 0,
                "children": {
                    "net": {
                        "local_ts": [RESP_TS],
                        "remote_ts": [LOAD_TS],
                        "esp_proposals": [ESP],
                        "rekey_time": 0,
                    }
                },
            }
        },
        "secrets": secret,
    }
    agent = Agent(gw, cfg, topo.lab, name="bench", log_level="warning").start()
    assert agent.proc is not None
    return agent.proc.pid, agent.stop


# both responders log as little as they can: the agent at "warning", charon at level 0 (its
# audit messages), so neither pays for verbose logging the other does not
QUIET_CHARON = dict.fromkeys(("default", "ike", "cfg", "chd", "knl", "net", "enc", "esp"), 0)
# the load comes from one address with --conns half-open SAs at a time: charon's DoS defences
# (block_threshold: drop IKE_SA_INITs beyond 5 half-open SAs per address; cookie_threshold: ask
# for COOKIEs beyond 10 half-open SAs) would drop or lengthen exchanges; the agent's defaults
# (cookie_threshold 30, no blocking) never trigger at this load, so both are set out of reach
CHARON_OPTIONS = {"block_threshold": 100000, "cookie_threshold": 100000}


def _charon_responder(topo, psk: str, version: int = 2, creds: Credentials | None = None):
    charon = Charon(topo.gw_b, topo.lab, log_levels=QUIET_CHARON, options=CHARON_OPTIONS).start()
    auth: dict[str, Any] = {}
    creds_conf: list[Secret | KeyFile] = [Secret("load", sorted([LOAD_ID, RESP_ID]), psk.encode())]
    if creds is not None:
        # as the lab's CharonPeer does: the files in charon's swanctl folders
        cert = charon.install(creds.responder_cert, "x509")
        ca = charon.install(creds.ca, "x509ca")
        key = charon.install(creds.responder_key, "private")
        auth = {"auth": "pubkey", "local_certs": [str(cert)], "remote_cacerts": [str(ca)]}
        creds_conf = [KeyFile("responder", str(key))]
    conn = Connection(
        name="load",
        version=version,
        local_addrs=[topo.spec.gw_b_outer],
        remote_addrs=[topo.spec.gw_a_outer],
        local_id=RESP_ID,
        remote_id=LOAD_ID,
        proposals=(PROPOSAL,),
        rekey_time="0",
        children=[Child("net", [RESP_TS], [LOAD_TS], esp_proposals=(ESP,), rekey_time="0")],
        **auth,
    )
    charon.load([conn], creds_conf)
    assert charon.proc is not None
    return charon.proc.pid, charon.stop


RESPONDERS = {
    "agent": ("ikeagent responder", _agent_responder),
    "charon": ("charon responder", _charon_responder),
}


def cpu_split() -> tuple[set[int], set[int]] | None:
    """(responder CPU, load generator CPUs): the last CPU we may use for the responder, the
    others for the load; None with a single CPU (nothing to pin then)."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None
    return {cpus[-1]}, set(cpus[:-1])


def pin_process(pid: int, cpus: set[int]) -> int:
    """Pin every thread of ``pid`` and of its child processes to ``cpus``; threads made later
    inherit it. Returns the number of threads pinned."""
    pinned = 0
    todo = [pid]
    while todo:
        p = todo.pop()
        with contextlib.suppress(OSError):
            for tid in os.listdir(f"/proc/{p}/task"):
                with contextlib.suppress(OSError):
                    os.sched_setaffinity(int(tid), cpus)
                    pinned += 1
                with contextlib.suppress(OSError):
                    children = Path(f"/proc/{p}/task/{tid}/children").read_text().split()
                    todo.extend(int(c) for c in children)
    return pinned


def measure_rate(
    kind: str,
    seconds: float = 8.0,
    conns: int = 16,
    version: int = 2,
    auth: str = "psk",
    creds: Credentials | None = None,
) -> RateResult:
    """One responder (``agent`` or ``charon``) under the load for ``seconds``; ``auth`` is a key
    of AUTH_KEY_TYPES; certificates come from ``creds`` (made here when None)."""
    label, start = RESPONDERS[kind]
    result = RateResult(f"{label} (IKEv{version}, {auth})", kind, version, auth)
    psk = "k" + secrets.token_urlsafe(32)  # never "0x"/"0s" (hex/base64 forms)
    with topology() as topo:
        if AUTH_KEY_TYPES[auth] is not None and creds is None:
            creds = make_credentials(auth, topo.lab.workdir(f"pki-{auth}"))
        if AUTH_KEY_TYPES[auth] is None:
            creds = None
        pid, stop = start(topo, psk, version, creds)
        try:
            time.sleep(0.5)
            split = cpu_split()
            pin: list[str] = []
            if split is not None:
                pin_process(pid, split[0])
                pin = ["--cpus", ",".join(str(c) for c in sorted(split[1]))]
            if creds is None:
                auth_args = [f"--psk={psk}"]
            else:
                auth_args = [
                    "--auth",
                    "pubkey",
                    "--cert",
                    str(creds.load_cert),
                    "--key",
                    str(creds.load_key),
                    "--cacert",
                    str(creds.ca),
                ]
            argv = topo.gw_a.argv(
                [
                    sys.executable,
                    str(HERE / "ike_rate.py"),
                    "--local",
                    topo.spec.gw_a_outer,
                    "--remote",
                    topo.spec.gw_b_outer,
                    "--pid",
                    str(pid),
                    "--duration",
                    str(seconds),
                    "--conns",
                    str(conns),
                    "--proposal",
                    PROPOSAL,
                    "--esp",
                    ESP,
                    *auth_args,
                    *pin,
                    "--local-id",
                    LOAD_ID,
                    "--remote-id",
                    RESP_ID,
                    "--local-ts",
                    LOAD_TS,
                    "--remote-ts",
                    RESP_TS,
                    "--version",
                    str(version),
                ]
            )
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60)
            if proc.returncode != 0:
                result.error = (proc.stderr or proc.stdout).strip().splitlines()[-1][:200]
                return result
            data = json.loads(proc.stdout.strip().splitlines()[-1])
            result.established = data["established"]
            result.failed = data["failed"]
            result.cpu_seconds = data["responder_cpu_seconds"]
            result.sas_per_cpu_second = data["sas_per_cpu_second"]
            result.sas_per_second = data["sas_per_second"]
            result.median_setup_ms = data["median_setup_ms"]
            result.load_cpu_seconds = data.get("load_cpu_seconds")
            result.load_stats = data.get("drops")
            if not result.established:
                result.error = "no SA established"
        finally:
            stop()
    return result


def rate_table(results: list[RateResult]) -> str:
    head = (
        "responder",
        "IKE",
        "auth",
        "SAs",
        "failed",
        "CPU s",
        "SAs/CPU-s",
        "SAs/s",
        "median setup ms",
        "note",
    )
    rows = [head]
    for r in results:
        rows.append(
            (
                RESPONDERS[r.responder][0] if r.responder in RESPONDERS else r.label,
                f"v{r.version}",
                r.auth,
                str(r.established),
                str(r.failed),
                f"{r.cpu_seconds:.2f}",
                "-" if r.sas_per_cpu_second is None else f"{r.sas_per_cpu_second:.0f}",
                "-" if r.sas_per_second is None else f"{r.sas_per_second:.0f}",
                "-" if r.median_setup_ms is None else f"{r.median_setup_ms:.1f}",
                r.error,
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    out = []
    for n, row in enumerate(rows):
        out.append("  ".join(c.ljust(widths[i]) for i, c in enumerate(row)).rstrip())
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def ratios(results: list[RateResult]) -> list[dict[str, Any]]:
    """agent/charon SAs per CPU-second for every (version, auth) measured on both."""
    found: dict[tuple[int, str], dict[str, RateResult]] = {}
    for r in results:
        found.setdefault((r.version, r.auth), {})[r.responder] = r
    out = []
    for (version, auth), pair in found.items():
        agent, charon = pair.get("agent"), pair.get("charon")
        if agent is None or charon is None:
            continue
        ok = bool(agent.sas_per_cpu_second and charon.sas_per_cpu_second)
        out.append(
            {
                "version": version,
                "auth": auth,
                "agent_sas_per_cpu_second": agent.sas_per_cpu_second,
                "charon_sas_per_cpu_second": charon.sas_per_cpu_second,
                "ratio": round(agent.sas_per_cpu_second / charon.sas_per_cpu_second, 3)  # type: ignore[operator]
                if ok
                else None,
            }
        )
    return out


if __name__ == "__main__":
    secs = float(sys.argv[1]) if len(sys.argv) > 1 else 6.0
    kinds = sys.argv[2].split(",") if len(sys.argv) > 2 else ["psk"]
    res = [measure_rate(k, secs, auth=a) for a in kinds for k in ("agent", "charon")]
    print(rate_table(res))
