"""What every site of a rollout must show: the agent running under its service manager, its
configuration owned by root and private, the control socket answering, one established IKE SA
with an installed Child SA per configured tunnel, and traffic from the site's protected subnet
reaching each peer's subnet through that Child SA (its counters rise)."""

from __future__ import annotations

import json
import shlex
from typing import Any

import pytest

VENV = "/opt/ikelab/venv"
CONFIG_DIR = "/etc/ikelab"
SOCKET = "/run/ikelab/ikeagent.sock"
LAB_SERVICE = "/usr/local/sbin/ikelab-service"


def ikectl(host: Any, *args: str) -> Any:
    cmd = " ".join(
        shlex.quote(a) for a in (f"{VENV}/bin/ikectl", "--socket", SOCKET, "--json", *args)
    )
    return json.loads(host.check_output(cmd))


def connections(host: Any) -> list[dict[str, Any]]:
    return ikectl(host, "list-conns")


def test_the_agent_runs_under_its_service_manager(host: Any) -> None:
    if host.file("/run/systemd/system").is_directory:
        assert host.service("ikeagent").is_running
        assert host.service("ikeagent").is_enabled
    else:
        status = host.run(f"{LAB_SERVICE} status ikeagent")
        assert status.rc == 0, status.stdout + status.stderr
        assert json.loads(status.stdout)["running"] is True


def test_the_configuration_is_root_only(host: Any) -> None:
    main = host.file(f"{CONFIG_DIR}/ikeagent.yaml")
    assert main.is_file and main.user == "root" and main.mode == 0o600
    tunnels = host.file(f"{CONFIG_DIR}/tunnels.d")
    assert tunnels.is_directory and tunnels.user == "root" and tunnels.mode == 0o700
    fragments = [name for name in tunnels.listdir() if name.endswith(".yaml")]
    assert fragments, "no tunnel is configured"
    for name in fragments:
        f = host.file(f"{CONFIG_DIR}/tunnels.d/{name}")
        assert f.user == "root" and f.mode == 0o600, name


def test_the_control_socket_answers(host: Any) -> None:
    assert host.file(SOCKET).is_socket
    status = ikectl(host, "status")
    assert isinstance(status, dict) and "stats" in status


def test_every_tunnel_has_its_sas(host: Any) -> None:
    sas = ikectl(host, "list-sas")
    for conn in connections(host):
        mine = [sa for sa in sas if sa["name"] == conn["name"] and sa["state"] == "ESTABLISHED"]
        assert len(mine) == 1, f"{conn['name']}: {len(mine)} established IKE SAs"
        children = [c for c in mine[0]["children"] if c["state"] == "INSTALLED"]
        assert children, f"{conn['name']}: no installed Child SA"
        assert children[0]["protocol"] == "ESP"


def _counters(host: Any, name: str) -> tuple[int, int]:
    for sa in ikectl(host, "list-sas", name):
        for child in sa["children"]:
            if child["state"] == "INSTALLED":
                return child["packets_out"], child["packets_in"]
    return 0, 0


def _peer_target(host: Any, peer: str) -> str | None:
    runner = host.backend.ansible_runner
    peer_vars = runner.get_variables(peer)
    for key in ("ikelab_flow_target", "ikelab_lan_host", "ikelab_lan_address"):
        if peer_vars.get(key):
            return str(peer_vars[key])
    return None


def test_traffic_crosses_every_tunnel(host: Any) -> None:
    own = host.ansible.get_variables()
    source = own.get("ikelab_flow_source") or own.get("ikelab_lan_address")
    if not source:
        pytest.skip("the inventory gives no ikelab_lan_address for this host")
    for conn in connections(host):
        target = _peer_target(host, conn["name"])
        assert target, f"{conn['name']}: the inventory gives no address behind that peer"
        out0, in0 = _counters(host, conn["name"])
        ping = host.run(f"ping -n -q -c 3 -i 0.2 -W 2 -I {source} {target}")
        assert ping.rc == 0, f"{source} -> {target}: {ping.stdout}{ping.stderr}"
        out1, in1 = _counters(host, conn["name"])
        # the echo requests left through this tunnel's Child SA and the replies came back on it
        assert out1 - out0 >= 3 and in1 - in0 >= 3, (conn["name"], (out0, in0), (out1, in1))
