"""``ikeagent`` as a process (memory data plane, 127.0.0.1, kernel-chosen free high ports):
ikectl status, SIGHUP with a broken file keeps the running config, SIGTERM stops cleanly."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

from ikeagent.cli import ikectl

CONFIG = """\
connections:
  site-b:
    local_addrs: [127.0.0.1]
    remote_addrs: [127.0.0.2]
    local: {auth: psk}
    remote: {auth: psk}
    children:
      net: {local_ts: 10.1.0.0/24, remote_ts: 10.2.0.0/24}
secrets:
  ike-1: {secret: lab-only-psk}
"""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_agent_process_lifecycle(capsys):
    tmp = tempfile.mkdtemp(prefix="ika-")
    cfg = os.path.join(tmp, "agent.yaml")
    sock = os.path.join(tmp, "ikeagent.sock")
    with open(cfg, "w") as f:
        f.write(CONFIG)
    argv = [sys.executable, "-m", "ikeagent.cli.agent", "--config", cfg, "--socket", sock]
    argv += ["--dataplane", "memory", "--listen", "127.0.0.1", "--log-level", "debug"]
    argv += ["--port", str(_free_port()), "--natt-port", str(_free_port())]
    proc = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 10
        while not os.path.exists(sock):
            assert proc.poll() is None and time.monotonic() < deadline, "agent did not start"
            time.sleep(0.05)
        assert ikectl.run(["--socket", sock, "status"]) == 0
        assert "data plane: memory (configured)" in capsys.readouterr().out
        with open(cfg, "a") as f:
            f.write("  bogus: {}\n")
        proc.send_signal(signal.SIGHUP)
        time.sleep(0.3)
        assert ikectl.run(["--socket", sock, "list-conns"]) == 0  # still serving the old config
        assert "site-b: IKEv2" in capsys.readouterr().out
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0
    assert "reload rejected" in err and "secrets.bogus" in err
    assert "lab-only-psk" not in err
    assert "agent stopped" in err
    assert not os.path.exists(sock)
    os.unlink(cfg)
    os.rmdir(tmp)
