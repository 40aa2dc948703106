"""ikeagent: run the IKE agent in the foreground.

    ikeagent --config FILE [--socket PATH] [--dataplane userspace|xfrm|auto|memory]
             [--log-level debug|info|warning|error] [--port N] [--natt-port N]
             [--listen ADDR ...] [--check]

``--check`` validates the configuration, prints the problems and exits 0 (valid) or 1; a
private key the agent would refuse (a file others can read) counts as a problem there, while
the agent itself starts and fails only the connections that need it, naming the reason.
Command-line options override the ``agent:`` section of the file (also on reload).
SIGHUP reloads the configuration; SIGTERM/SIGINT delete all IKE SAs and stop.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from typing import Any

from ikeagent import __version__
from ikeagent.config.errors import ConfigError
from ikeagent.config.model import AgentConfig
from ikeagent.config.schema import DATAPLANES, LOG_LEVELS, load_config
from ikeagent.runtime.control import DEFAULT_SOCKET
from ikeagent.runtime.logging import setup_logging

log = logging.getLogger("ikeagent")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ikeagent", description="IKEv1/IKEv2 agent.")
    p.add_argument("--config", "-c", required=True, help="YAML configuration file")
    p.add_argument(
        "--socket", default=DEFAULT_SOCKET, help=f"control socket (default {DEFAULT_SOCKET})"
    )
    p.add_argument("--dataplane", choices=DATAPLANES, help="override agent.dataplane")
    p.add_argument("--log-level", choices=LOG_LEVELS, help="override agent.log_level")
    p.add_argument("--port", type=int, help="IKE UDP port (default 500)")
    p.add_argument("--natt-port", type=int, help="NAT-T UDP port (default 4500)")
    p.add_argument(
        "--listen",
        action="append",
        metavar="ADDR",
        help="address to bind (repeatable; default 0.0.0.0 and ::)",
    )
    p.add_argument("--check", action="store_true", help="validate the configuration and exit")
    p.add_argument("--version", action="version", version=f"ikeagent {__version__}")
    return p


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    pairs = {
        "dataplane": args.dataplane,
        "log_level": args.log_level,
        "port": args.port,
        "natt_port": args.natt_port,
    }
    return {k: v for k, v in pairs.items() if v is not None}


def _create_dataplane(config: AgentConfig, socket_path: str) -> tuple[Any, str]:
    from ikeagent.dataplane.factory import choose_dataplane, create_dataplane

    name, reason = choose_dataplane(config.dataplane)
    options: dict[str, object] = {}
    if name == "xfrm":
        options = {
            "install_routes": config.install_routes,
            "routing_table": config.routing_table,
            "routing_priority": config.routing_priority,
            # beside the control socket (a private directory): the sysctls to put back
            "sysctl_state": os.path.join(
                os.path.dirname(os.path.abspath(socket_path)), "xfrm-sysctls.json"
            ),
        }
    return create_dataplane(name, **options), reason


def run(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    overrides = _overrides(args)
    try:
        config = load_config(args.config, overrides)
    except ConfigError as e:
        print(f"ikeagent: {args.config}: invalid configuration:\n{e}", file=sys.stderr)
        return 1
    if args.check:
        # the agent would run with these (the connections concerned fail to authenticate, with
        # the reason), but a check is there to catch them before that
        unusable = config.warnings()
        if unusable:
            print(f"ikeagent: {args.config}: unusable credentials:", file=sys.stderr)
            for warning in unusable:
                print(warning, file=sys.stderr)
            return 1
        print(
            f"{args.config}: OK, {len(config.connections)} connection(s), "
            f"{len(config.secrets)} secret(s), {len(config.private_keys)} private key(s)"
        )
        return 0
    setup_logging(config.log_level)
    from ikeagent.runtime.agent import Agent
    from ikeagent.runtime.resolve import resolve_names

    config = resolve_names(config)

    try:
        dataplane, reason = _create_dataplane(config, args.socket)
    except Exception as e:
        log.error("no data plane: %s", e)
        return 1
    log.info("data plane %s: %s", dataplane.name, reason)
    agent = Agent(
        config,
        dataplane,
        config_loader=lambda: resolve_names(load_config(args.config, overrides)),
        socket_path=args.socket,
        listen=tuple(args.listen) if args.listen else ("0.0.0.0", "::"),
        dataplane_reason=reason,
    )
    try:
        asyncio.run(agent.run())
    except (OSError, RuntimeError) as e:
        log.error("cannot run: %s", e)
        return 1
    return 0


def main() -> None:
    sys.exit(run())


if __name__ == "__main__":
    main()
