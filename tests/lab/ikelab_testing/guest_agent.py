"""The project's agent (``ikeagent``) inside a User-mode Linux guest, driven through ``ikectl``.

``GuestAgent(guest, config)`` writes the config (YAML, mode 0600) into the guest's own writable
root, spawns the checkout's ``ikeagent`` there (the guest sees the host's ``.venv`` read-only)
with its log in the guest's shared work directory (readable here while it runs), and runs
``ikectl`` in the guest with ``Guest.run``::

    agent = GuestAgent(guest, config, dataplane="xfrm").start()
    agent.ikectl("up", "site-b", json_output=False)
    sas = agent.list_sas()
    agent.stop()            # SIGTERM: the agent deletes its SAs and exits 0
    agent.kill()            # SIGKILL: leftovers stay in the kernel

Also here: the guest's XFRM state and policies as ``ip xfrm`` shows them, parsed into dicts
(iproute2 has no JSON output for ``ip xfrm``; ``-j`` is accepted and ignored), and a ping
running in the background of a guest.
"""

from __future__ import annotations

import json
import re
import signal
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from ikelab_testing.uml import Guest, GuestProcess


class GuestAgentError(RuntimeError):
    pass


class GuestAgent:
    """One ``ikeagent`` in ``guest``; its files live under ``/run/ikelab-<name>`` there."""

    def __init__(
        self,
        guest: Guest,
        config: Mapping[str, Any],
        *,
        name: str = "agent",
        dataplane: str = "xfrm",
        log_level: str = "info",
    ) -> None:
        self.guest = guest
        self.config = config
        self.name = name
        self.dataplane = dataplane
        self.log_level = log_level
        self.bin = Path(guest.uml.python).parent
        self.run_dir = f"/run/ikelab-{name}"
        self.config_path = f"{self.run_dir}/agent.yaml"
        self.socket_path = f"{self.run_dir}/ikeagent.sock"
        self.proc: GuestProcess | None = None
        self.starts = 0

    def __repr__(self) -> str:
        return f"GuestAgent({self.name!r} in {self.guest.name})"

    # --- lifecycle ----------------------------------------------------------------------------
    def start(self, timeout: float = 120.0) -> GuestAgent:
        """Spawn the agent and wait (deadline ``timeout``) for its "agent started" log line."""
        self.guest.put(
            self.config_path, yaml.safe_dump(dict(self.config), sort_keys=False), mode=0o600
        )
        self.starts += 1
        argv = [
            str(self.bin / "ikeagent"),
            "--config",
            self.config_path,
            "--socket",
            self.socket_path,
            "--dataplane",
            self.dataplane,
            "--log-level",
            self.log_level,
        ]
        log = self.guest.dir / f"ikeagent-{self.name}-{self.starts}.log"
        self.proc = self.guest.spawn(argv, log_path=log)
        self.wait_log("agent started", timeout)
        return self

    def running(self) -> bool:
        return self.proc is not None and self.guest.alive() and self.proc.poll() is None

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM (SIGKILL after ``timeout``); the exit code, 0 on a clean stop."""
        if self.proc is None:
            return None
        return self.proc.stop(timeout)

    def kill(self, timeout: float = 30.0) -> int | None:
        """SIGKILL: nothing is cleaned up by the agent."""
        if self.proc is None:
            return None
        self.proc.signal(signal.SIGKILL)
        return self.proc.wait(timeout)

    # --- log ----------------------------------------------------------------------------------
    def log_text(self) -> str:
        return self.proc.log_text() if self.proc is not None else ""

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def wait_log(self, text: str, timeout: float = 60.0) -> str:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while text not in (log := self.log_text()):
            if self.proc.poll() is not None:
                raise GuestAgentError(f"{self} exited:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise GuestAgentError(f"{self}: no {text!r} in {timeout:.0f} s:\n{self.log_tail()}")
            time.sleep(0.2)
        return log

    # --- ikectl -------------------------------------------------------------------------------
    def ikectl(self, *args: str, json_output: bool = True, timeout: float = 60.0) -> Any:
        """``ikectl`` in the guest; with ``json_output`` ``--json`` is added and parsed."""
        argv = [str(self.bin / "ikectl"), "--socket", self.socket_path]
        argv += ["--json", *args] if json_output else list(args)
        r = self.guest.run(argv, timeout=timeout)
        if r.returncode != 0:
            raise GuestAgentError(
                f"ikectl {' '.join(args)} in {self.guest.name} failed ({r.returncode}): "
                f"{r.stderr or r.stdout}\n--- agent log tail ---\n{self.log_tail()}"
            )
        return json.loads(r.stdout) if json_output else r.stdout

    def list_sas(self) -> list[dict[str, Any]]:
        return self.ikectl("list-sas")

    def status(self) -> dict[str, Any]:
        return self.ikectl("status")

    def children(self, name: str | None = None) -> list[dict[str, Any]]:
        """Every CHILD_SA of every IKE SA (of connection ``name`` if given)."""
        return [c for sa in self.list_sas() if name in (None, sa["name"]) for c in sa["children"]]

    def installed(self, child: str) -> list[dict[str, Any]]:
        return [c for c in self.children() if c["name"] == child and c["state"] == "INSTALLED"]


# --- the guest kernel's view -----------------------------------------------------------------

_STATE_HEAD = re.compile(r"^src (\S+) dst (\S+)$")
_KEY = re.compile(r"0x[0-9a-f]{16,}(?= \(\d+ bits\))")
_POLICY_HEAD = re.compile(r"^src (\S+) dst (\S+)(?: .*)?$")


def _blocks(text: str, head: re.Pattern[str]) -> list[list[str]]:
    blocks: list[list[str]] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        if not line[0].isspace() and head.match(line):
            blocks.append([line.strip()])
        elif blocks:
            blocks[-1].append(line.strip())
    return blocks


def xfrm_states(guest: Guest) -> list[dict[str, Any]]:
    """``ip -s xfrm state`` as dicts: src, dst, spi (int), reqid, mode, mark (value, mask),
    aead/enc/auth (name, key bits, ICV/truncation bits), encap (type, sport, dport) or None,
    sel (src, dst), bytes, packets (``curlft``: what the kernel counted), replay window, and
    ``text`` (the block with its keys replaced by ``0x<key>``)."""
    text = guest.run(["ip", "-s", "xfrm", "state", "list"], check=True).stdout
    states = []
    for block in _blocks(text, _STATE_HEAD):
        src, dst = _STATE_HEAD.match(block[0]).groups()  # type: ignore[union-attr]
        body = "\n".join(block[1:])
        # keys never reach a test's output: the text keeps only their length
        text = _KEY.sub("0x<key>", "\n".join(block))
        st: dict[str, Any] = {"src": src, "dst": dst, "text": text}
        m = re.search(r"proto (\S+) spi (0x[0-9a-f]+)\S* reqid (\d+)\S* mode (\S+)", body)
        if m is None:
            raise ValueError(f"unparsed xfrm state: {block}")
        st["proto"], st["spi"], st["reqid"], st["mode"] = (
            m.group(1),
            int(m.group(2), 16),
            int(m.group(3)),
            m.group(4),
        )
        m = re.search(r"replay-window (\d+)", body)
        st["replay_window"] = int(m.group(1)) if m else None
        for kind in ("aead", "enc", "auth-trunc", "auth"):
            m = re.search(
                rf"^{kind} (\S+) 0x([0-9a-f]+)(?: \((\d+) bits\))?(?: (\d+))?", body, re.M
            )
            if m:
                bits = int(m.group(3)) if m.group(3) else len(m.group(2)) * 4
                st[kind] = (m.group(1), bits, int(m.group(4)) if m.group(4) else None)
        m = re.search(r"encap type (\S+) sport (\d+) dport (\d+)", body)
        st["encap"] = (m.group(1), int(m.group(2)), int(m.group(3))) if m else None
        m = re.search(r"^mark (0x[0-9a-f]+|\d+)/(0x[0-9a-f]+)", body, re.M)
        st["mark"] = (int(m.group(1), 0), int(m.group(2), 16)) if m else None
        m = re.search(r"^sel src (\S+) dst (\S+)", body, re.M)
        st["sel"] = (m.group(1), m.group(2)) if m else None
        m = re.search(r"(\d+)\(bytes\), (\d+)\(packets\)", body)
        st["bytes"], st["packets"] = (int(m.group(1)), int(m.group(2))) if m else (0, 0)
        states.append(st)
    return states


def xfrm_policies(guest: Guest) -> list[dict[str, Any]]:
    """``ip xfrm policy`` as dicts: src, dst (selector), dir, action, priority, mark, socket (a
    per-socket policy), and the template's tmpl_src, tmpl_dst, proto, reqid, mode."""
    text = guest.run(["ip", "xfrm", "policy", "list"], check=True).stdout
    policies = []
    for block in _blocks(text, _POLICY_HEAD):
        src, dst = _POLICY_HEAD.match(block[0]).groups()  # type: ignore[union-attr]
        body = "\n".join(block[1:])
        pol: dict[str, Any] = {"src": src, "dst": dst, "text": "\n".join(block)}
        # a per-socket policy (e.g. the agent's IPsec bypass on its NAT-T socket) has "socket
        # in"/"socket out" instead of a direction: it lives and dies with its socket
        m = re.search(r"(dir|socket) (\S+) (?:action (\S+) )?priority (\d+)", body)
        pol["socket"] = bool(m and m.group(1) == "socket")
        pol["dir"], pol["priority"] = (m.group(2), int(m.group(4))) if m else (None, None)
        pol["action"] = (m.group(3) or "allow") if m else None
        m = re.search(r"^mark (0x[0-9a-f]+|\d+)/(0x[0-9a-f]+)", body, re.M)
        pol["mark"] = (int(m.group(1), 0), int(m.group(2), 16)) if m else None
        m = re.search(r"^tmpl src (\S+) dst (\S+)", body, re.M)
        pol["tmpl_src"], pol["tmpl_dst"] = (m.group(1), m.group(2)) if m else (None, None)
        m = re.search(r"proto (\S+) reqid (\d+) mode (\S+)", body)
        pol["proto"], pol["reqid"], pol["mode"] = (
            (m.group(1), int(m.group(2)), m.group(3)) if m else (None, None, None)
        )
        policies.append(pol)
    return policies


def owned(entries: Sequence[dict[str, Any]], mask: int = 0x2000) -> list[dict[str, Any]]:
    """The entries carrying the agent's owner mark (value 0 under ``mask``)."""
    return [e for e in entries if e["mark"] == (0, mask)]


# --- a ping in the background of a guest ------------------------------------------------------


class GuestPing:
    """``ping`` running in ``guest`` until ``stop()``, which returns (sent, received, output).

    ping sends until interrupted, so its very last echo request may leave just before the
    SIGINT with no time for its reply: that one does not count as sent unless it was answered
    (the same rule as the namespace lab's ``BackgroundPing``)."""

    def __init__(
        self,
        guest: Guest,
        dst: str,
        *,
        src: str | None = None,
        interval: float = 0.05,
        size: int | None = None,
    ) -> None:
        argv = ["ping", "-n", "-i", str(interval), "-W", "1"]
        if size is not None:
            argv += ["-s", str(size)]
        if src:
            argv += ["-I", src]
        self.guest = guest
        self.proc = guest.spawn([*argv, dst])

    def replies(self) -> int:
        return len(re.findall(r"icmp_seq=\d+ ttl=", self.proc.log_text()))

    def wait_replies(self, n: int, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while self.replies() < n:
            if time.monotonic() > deadline:
                raise AssertionError(f"fewer than {n} replies:\n{self.proc.log_text()[-2000:]}")
            time.sleep(0.1)

    def stop(self, settle: float = 1.5) -> tuple[int, int, str]:
        time.sleep(settle)
        self.proc.signal(signal.SIGINT, group=False)
        deadline = time.monotonic() + 30
        while self.proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        out = self.proc.log_text()
        m = re.search(r"(\d+) packets transmitted, (\d+) received", out)
        if m is None:
            raise AssertionError(f"no ping summary:\n{out[-2000:]}")
        sent = int(m.group(1))
        replied = {int(n) for n in re.findall(r"icmp_seq=(\d+) ttl=", out)}
        if sent and sent not in replied:
            sent -= 1
        return sent, len({n for n in replied if n <= sent}), out
