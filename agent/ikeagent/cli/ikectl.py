"""ikectl: talk to a running ikeagent over its control socket.

    ikectl [--socket PATH] status [--json]
    ikectl [--socket PATH] list-sas [--json] [NAME]
    ikectl [--socket PATH] list-traps [--json] [NAME]
    ikectl [--socket PATH] list-conns [--json]
    ikectl [--socket PATH] up NAME [--timeout S]
    ikectl [--socket PATH] down NAME [--timeout S]
    ikectl [--socket PATH] rekey [--ike | --child] NAME
    ikectl [--socket PATH] reload

``list-sas --json`` prints a list of IKE SAs, each with name, uid, version, state, role,
local_addr, local_port, local_id, remote_addr, remote_port, remote_id, spi_i, spi_r (hex),
encryption, integrity, prf, dh, established (seconds ago), rekey_in (seconds) and children, each
with name, reqid, state, mode, protocol, encap, spi_in, spi_out (hex), encryption, integrity, dh,
local_ts, remote_ts, bytes_in, packets_in, bytes_out, packets_out, last_used (seconds since the
last packet or null), rekey_in and expire_in (seconds left), idle (seconds without a packet)
and inactivity (the idle time after which it is closed, or null). In text, ``list-sas`` shows
the trap policies after the SAs; ``list-traps --json`` prints them: name, child, reqid,
version, local_ts, remote_ts, reason (what armed it: start_action, dpd_action, close_action),
acquires, last_acquire (seconds ago) and active (a CHILD_SA is up under its reqid).

Exit codes: 0 ok, 1 the command failed, 2 usage error, 3 the agent is not reachable.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any

from ikeagent.cli.formatting import format_conns, format_sas, format_status, format_traps
from ikeagent.runtime.control import DEFAULT_SOCKET, Unreachable, request

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_UNREACHABLE = 0, 1, 2, 3


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ikectl", description="Control a running ikeagent.")
    p.add_argument(
        "--socket", default=DEFAULT_SOCKET, help=f"control socket (default {DEFAULT_SOCKET})"
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    sub = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND")
    listing = argparse.ArgumentParser(add_help=False)
    listing.add_argument("--json", action="store_true", dest="json_sub", help="print JSON")
    sub.add_parser("status", parents=[listing], help="agent status and counters")
    ls = sub.add_parser("list-sas", parents=[listing], help="IKE and CHILD SAs with counters")
    ls.add_argument("name", nargs="?", help="only SAs of this connection")
    lt = sub.add_parser("list-traps", parents=[listing], help="trap policies (on-demand tunnels)")
    lt.add_argument("name", nargs="?", help="only traps of this connection")
    sub.add_parser("list-conns", parents=[listing], help="configured connections")
    for cmd, default, text in (("up", 30.0, "initiate"), ("down", 5.0, "terminate")):
        sp = sub.add_parser(cmd, parents=[listing], help=f"{text} a connection")
        sp.add_argument("name")
        sp.add_argument(
            "--timeout", type=float, default=default, help=f"seconds (default {default:g})"
        )
    sp = sub.add_parser("rekey", parents=[listing], help="rekey a connection's IKE SA and children")
    sp.add_argument("name")
    what = sp.add_mutually_exclusive_group()
    what.add_argument("--ike", action="store_true", help="rekey only the IKE SA")
    what.add_argument("--child", action="store_true", help="rekey only the CHILD_SAs")
    sub.add_parser("reload", parents=[listing], help="re-read the configuration file")
    return p


def _text_up(result: Any) -> str:
    return format_sas(result)


def _text_down(result: Any) -> str:
    return "terminated" if result.get("terminated") else "delete sent; the IKE SA is still there"


TEXT: dict[str, Callable[[Any], str]] = {
    "status": format_status,
    "list-sas": format_sas,
    "list-traps": format_traps,
    "list-conns": format_conns,
    "up": _text_up,
    "down": _text_down,
    "rekey": lambda r: f"rekeying {r['rekeying']} ({', '.join(r.get('what', []))})",
    "reload": lambda r: (
        "configuration reloaded: " + (", ".join(r["connections"]) or "no connections")
    ),
}


def _with_traps(socket: str, params: dict[str, Any], text: str) -> str:
    """``list-sas`` in text also shows the trap policies (an agent without them: none)."""
    try:
        response = request(socket, "list-traps", params, wait=10.0)
    except Unreachable:
        return text
    traps = response.get("result") if response.get("ok") else None
    if not traps:
        return text
    return text + "\ntrap policies:\n" + format_traps(traps)


def run(argv: list[str] | None = None, out: Any = None, err: Any = None) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    try:
        args = _parser().parse_args(argv)
    except SystemExit as e:
        return EXIT_USAGE if e.code not in (0, None) else EXIT_OK
    params: dict[str, Any] = {}
    if getattr(args, "name", None):
        params["name"] = args.name
    if args.cmd == "rekey" and (args.ike or args.child):
        params["ike"], params["children"] = args.ike, args.child
    wait = 10.0
    if getattr(args, "timeout", None) is not None:
        if args.timeout <= 0:
            print("ikectl: --timeout must be positive", file=err)
            return EXIT_USAGE
        params["timeout"] = args.timeout
        wait = args.timeout + 5.0
    try:
        response = request(args.socket, args.cmd, params, wait=wait)
    except Unreachable as e:
        print(f"ikectl: agent not reachable: {e}", file=err)
        return EXIT_UNREACHABLE
    if not response.get("ok"):
        print(f"ikectl: {args.cmd} failed: {response.get('error', 'unknown error')}", file=err)
        return EXIT_FAILED
    result = response.get("result")
    if args.json or getattr(args, "json_sub", False):
        print(json.dumps(result, indent=2, sort_keys=False), file=out)
    else:
        text = TEXT[args.cmd](result)
        if args.cmd == "list-sas":
            text = _with_traps(args.socket, params, text)
        print(text, file=out)
    if args.cmd == "down" and not result.get("terminated"):
        return EXIT_FAILED
    return EXIT_OK


def main() -> None:
    sys.exit(run())


if __name__ == "__main__":
    main()
