# Copyright: contributors to the ikelab.ipsec collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""ikelab-service: control the services of a lab site's supervisor (the site init, PID 1).

    ikelab-service start|stop|restart|status NAME
    ikelab-service list

A service is defined by /etc/ikelab/services/NAME.json ({"argv": [...], "env": {...}}); its
output goes to /var/log/ikelab/NAME.log. Every command prints the service's status as JSON,
``{"name", "running", "pid", "state", "restarts", "last_exit"}``. ``status`` exits 0 when the
service runs and 3 when it does not; the other commands exit 0 on success and 1 on an error
(told on stderr). 4: the supervisor cannot be reached.
"""

from __future__ import annotations

import json
import os
import socket
import sys

# the environment variable serves the supervisor's own tests
SOCKET = os.environ.get("IKELAB_SERVICE_SOCKET", "/run/ikelab-lab/supervisor.sock")
COMMANDS = ("start", "stop", "restart", "status", "list")
TIMEOUT = 120.0  # a stop waits for the service's stop_timeout


def request(cmd: str, name: str | None) -> dict[str, object]:
    req: dict[str, object] = {"cmd": cmd}
    if name is not None:
        req["name"] = name
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(TIMEOUT)
        s.connect(SOCKET)
        s.sendall(json.dumps(req).encode() + b"\n")
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
    reply = json.loads(buf)
    if not isinstance(reply, dict):
        raise ValueError("malformed reply")
    return reply


def main(argv: list[str]) -> int:
    args = argv[1:]
    if not args or args[0] not in COMMANDS or len(args) != (1 if args[0] == "list" else 2):
        print("usage: ikelab-service start|stop|restart|status NAME | list", file=sys.stderr)
        return 2
    cmd, name = args[0], (args[1] if len(args) == 2 else None)
    try:
        reply = request(cmd, name)
    except (OSError, ValueError) as exc:
        print(
            f"ikelab-service: the site supervisor does not answer on {SOCKET}: {exc}",
            file=sys.stderr,
        )
        return 4
    if not reply.get("ok"):
        print(f"ikelab-service: {reply.get('error')}", file=sys.stderr)
        return 1
    result = reply.get("result")
    print(json.dumps(result, sort_keys=True))
    if cmd == "status":
        return 0 if isinstance(result, dict) and result.get("running") else 3
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
