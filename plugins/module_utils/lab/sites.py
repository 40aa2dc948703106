# Copyright: contributors to the ikelab.ipsec collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Start, find and stop a site's init (PID 1 of the site's PID namespace).

A site is started as ``nsenter --net=/run/netns/NS -- unshare --mount --uts --ipc --pid --fork
--kill-child --mount-proc --propagation private /usr/bin/python3 -I -B INIT CONFIG`` in a new
session, detached from the module. Its record (``init.json`` in the site's state directory)
holds the init's PID as the root namespace sees it and the process start time, so a reused
PID is never mistaken for the site. A site runs when that process lives in the site's
network namespace.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass

from ansible_collections.ikelab.ipsec.plugins.module_utils.lab.network import (
    LabError,
    netns_path,
    netns_pids,
)

SITE_PYTHON = "/usr/bin/python3"
SSHD = "/usr/sbin/sshd"
RECORD = "init.json"
LOG = "init.log"
CLEAN_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LANG": "C.UTF-8",
}


@dataclass(frozen=True, slots=True)
class InitRecord:
    pid: int
    starttime: int
    launcher: int

    def to_json(self) -> str:
        return json.dumps({"pid": self.pid, "starttime": self.starttime, "launcher": self.launcher})


def starttime(pid: int) -> int | None:
    """Field 22 of /proc/PID/stat (clock ticks since boot), None if the process is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            data = f.read()
    except OSError:
        return None
    fields = data[data.rindex(")") + 2 :].split()
    if fields[0] == "Z":
        return None
    return int(fields[19])


def load_record(state_dir: str) -> InitRecord | None:
    try:
        with open(os.path.join(state_dir, RECORD)) as f:
            data = json.load(f)
        return InitRecord(int(data["pid"]), int(data["starttime"]), int(data["launcher"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _same_netns(pid: int, netns: str) -> bool:
    try:
        a = os.stat(f"/proc/{pid}/ns/net")
        b = os.stat(netns_path(netns))
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def running_init(state_dir: str, netns: str) -> InitRecord | None:
    """The site's init when it runs (the recorded process, alive, in the site's netns)."""
    rec = load_record(state_dir)
    if rec is None or starttime(rec.pid) != rec.starttime:
        return None
    return rec if _same_netns(rec.pid, netns) else None


def log_tail(state_dir: str, lines: int = 15) -> str:
    try:
        with open(os.path.join(state_dir, LOG), errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError:
        return ""


def check_tools(init_script: str) -> None:
    for tool in ("nsenter", "unshare"):
        if shutil.which(tool) is None:
            raise LabError(f"{tool} (util-linux) is not installed")
    for path, what in ((SITE_PYTHON, "python3"), (SSHD, "sshd (openssh-server)")):
        if not os.access(path, os.X_OK):
            raise LabError(f"{what} is not installed at {path}")
    if not os.path.isfile(init_script):
        raise LabError(f"the site init {init_script} does not exist", field="init_script")


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def start_site(netns: str, state_dir: str, init_script: str, config: str) -> InitRecord:
    argv = [
        shutil.which("nsenter") or "nsenter",
        f"--net={netns_path(netns)}",
        "--",
        shutil.which("unshare") or "unshare",
        "--mount",
        "--uts",
        "--ipc",
        "--pid",
        "--fork",
        "--kill-child",
        "--mount-proc",
        "--propagation",
        "private",
        SITE_PYTHON,
        "-I",  # isolated from the controller's PYTHON* environment
        "-B",  # and writes no bytecode beside the role's files
        init_script,
        config,
    ]
    proc = launch(argv, state_dir, CLEAN_ENV)
    deadline = time.monotonic() + 10.0
    while True:
        kids = _children(proc.pid)
        if kids:
            pid = kids[0]
            st = starttime(pid)
            if st is not None:
                break
        if proc.poll() is not None or time.monotonic() > deadline:
            raise LabError(
                f"the init of {netns} did not start (exit {proc.poll()}):\n{log_tail(state_dir)}"
            )
        time.sleep(0.01)
    # the module does not wait for the launcher; keep Popen from reporting it at exit
    proc.returncode = 0
    return save_record(state_dir, InitRecord(pid, st, proc.pid))


def launch(argv: list[str], state_dir: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """Start a site's init (or guest) detached, in a session of its own, logging to its log."""
    with open(os.path.join(state_dir, LOG), "ab") as log:
        return subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            env=env,
            cwd="/",
            start_new_session=True,
        )


def save_record(state_dir: str, rec: InitRecord) -> InitRecord:
    tmp = os.path.join(state_dir, RECORD + ".tmp")
    with open(tmp, "w") as f:
        f.write(rec.to_json())
    os.replace(tmp, os.path.join(state_dir, RECORD))
    return rec


BANNER_WAIT = 10.0  # seconds for a connected sshd to send its banner


def sshd_answers(address: str, banner_wait: float = BANNER_WAIT, port: int = 22) -> bool:
    """sshd listens at ``address`` and sends its banner. A loaded guest's sshd may take
    seconds for that (it starts a new process for each connection): closing sooner and trying
    again would start that cost over each time, and never see the banner."""
    try:
        with socket.create_connection((address, port), timeout=0.5) as s:
            s.settimeout(banner_wait)
            return s.recv(64).startswith(b"SSH-")
    except OSError:
        return False


def wait_ready(sites: dict[str, tuple[str, str, str]], timeout: float) -> None:
    """Wait until each site's sshd answers; ``sites``: name -> (netns, state dir, address)."""
    pending = dict(sites)
    deadline = time.monotonic() + timeout
    while pending:
        for name, (netns, state_dir, address) in list(pending.items()):
            left = deadline - time.monotonic()
            if sshd_answers(address, min(BANNER_WAIT, max(left, 1.0))):
                del pending[name]
            elif running_init(state_dir, netns) is None:
                raise LabError(f"the init of {name} exited:\n{log_tail(state_dir)}")
        if not pending:
            return
        if time.monotonic() > deadline:
            names = ", ".join(sorted(pending))
            tails = "\n".join(f"--- {n}:\n{log_tail(pending[n][1])}" for n in sorted(pending))
            raise LabError(f"sshd of {names} did not answer within {timeout:.0f}s\n{tails}")
        time.sleep(0.05)


def _wait_gone(pid: int, start: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while starttime(pid) == start:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def stop_site(netns: str, state_dir: str, grace: float = 3.0, everything: bool = True) -> bool:
    """Stop the site's init (SIGTERM, SIGKILL after ``grace``; the kernel then ends its PID
    namespace) and, with ``everything`` (the namespace is about to go), whatever else runs in
    its network namespace. True if anything was running."""
    acted = False
    rec = running_init(state_dir, netns)
    if rec is not None:
        acted = True
        with contextlib.suppress(ProcessLookupError):
            os.kill(rec.pid, signal.SIGTERM)
        if not _wait_gone(rec.pid, rec.starttime, grace):
            with contextlib.suppress(ProcessLookupError):
                os.kill(rec.pid, signal.SIGKILL)
            _wait_gone(rec.pid, rec.starttime, 5.0)
        if rec.launcher == rec.pid:  # a guest's kernel (engine uml): its helper processes too
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(rec.pid, signal.SIGKILL)
    if everything:
        acted = kill_netns_processes(netns) or acted
    with contextlib.suppress(FileNotFoundError):
        os.unlink(os.path.join(state_dir, RECORD))
    return acted


def kill_netns_processes(netns: str, timeout: float = 5.0) -> bool:
    """SIGKILL every process in the lab's namespace ``netns`` until none is left."""
    acted = False
    deadline = time.monotonic() + timeout
    while True:
        pids = [p for p in netns_pids(netns) if p != os.getpid()]
        if not pids:
            return acted
        if time.monotonic() > deadline:
            raise LabError(f"processes {pids} in {netns} do not exit")
        acted = True
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.02)
