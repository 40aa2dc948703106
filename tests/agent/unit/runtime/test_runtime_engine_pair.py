"""The real wiring: two in-process Agents with the real Engine and the memory data plane on
127.0.0.1 / 127.0.0.2 (high ports), brought up and torn down through their control sockets."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import tempfile

from ikeagent.cli.formatting import format_sas
from ikeagent.config.schema import parse_config
from ikeagent.dataplane.memory import MemoryDataplane
from ikeagent.runtime.agent import Agent
from ikeagent.runtime.control import request


def _free_port(addr: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((addr, 0))
        return s.getsockname()[1]


def _config(
    me: str,
    peer: str,
    port: int,
    natt: int,
    peer_port: int,
    local_ts: str,
    remote_ts: str,
    **child: object,
):
    return parse_config(
        {
            "agent": {"port": port, "natt_port": natt},
            "connections": {
                "site": {
                    "local_addrs": [me],
                    "remote_addrs": [peer],
                    "remote_port": peer_port,
                    "proposals": "aes256gcm16-prfsha256-x25519",
                    "local": {"auth": "psk", "id": f"gw-{me}.example"},
                    "remote": {"auth": "psk", "id": f"gw-{peer}.example"},
                    "children": {
                        "net": {
                            "local_ts": local_ts,
                            "remote_ts": remote_ts,
                            "esp_proposals": "aes256gcm16",
                            **child,
                        }
                    },
                }
            },
            "secrets": {"ike-1": {"secret": "lab-only-psk"}},
        }
    )


@contextlib.asynccontextmanager
async def _two_agents(**child_a: object):
    """Agents a (127.0.0.1, its child with ``child_a``) and b (127.0.0.2), started on free
    ports with memory data planes; shut down and cleaned up afterwards."""
    tmp = tempfile.mkdtemp(prefix="ika-")
    a_addr, b_addr = "127.0.0.1", "127.0.0.2"
    pa, na = _free_port(a_addr), _free_port(a_addr)
    pb, nb = _free_port(b_addr), _free_port(b_addr)
    a = Agent(
        _config(a_addr, b_addr, pa, na, pb, "10.1.0.0/24", "10.2.0.0/24", **child_a),
        MemoryDataplane(),
        socket_path=os.path.join(tmp, "a.sock"),
        listen=(a_addr,),
        shutdown_grace=1.0,
    )
    b = Agent(
        _config(b_addr, a_addr, pb, nb, pa, "10.2.0.0/24", "10.1.0.0/24"),
        MemoryDataplane(),
        socket_path=os.path.join(tmp, "b.sock"),
        listen=(b_addr,),
        shutdown_grace=1.0,
    )
    await a.start()
    await b.start()
    try:
        yield a, b, (pa, pb)
    finally:
        await a.shutdown()
        await b.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)


def test_two_agents_establish_and_delete_over_udp():
    async def scenario():
        async with _two_agents() as (a, b, (pa, pb)):
            up = await asyncio.to_thread(
                request, a.socket_path, "up", {"name": "site", "timeout": 10}, wait=15
            )
            assert up["ok"] is True, up
            (sa,) = up["result"]
            assert (sa["state"], sa["role"], sa["remote_id"]) == (
                "ESTABLISHED",
                "initiator",
                "gw-127.0.0.2.example",
            )
            assert (sa["local_port"], sa["remote_port"]) == (pa, pb)
            (child,) = sa["children"]
            assert (child["state"], child["local_ts"], child["remote_ts"]) == (
                "INSTALLED",
                ["10.1.0.0/24"],
                ["10.2.0.0/24"],
            )
            # the responder installed the mirror image of the same SA pair
            (theirs,) = (await asyncio.to_thread(request, b.socket_path, "list-sas"))["result"]
            assert theirs["role"] == "responder"
            assert (theirs["children"][0]["spi_in"], theirs["children"][0]["spi_out"]) == (
                child["spi_out"],
                child["spi_in"],
            )
            assert int(child["spi_in"], 16) in a.dataplane.installed_spis()
            assert "site: #1, ESTABLISHED, IKEv2" in format_sas([sa])
            st = (await asyncio.to_thread(request, b.socket_path, "status"))["result"]
            assert (st["ike_sas"], st["child_sas"]) == (1, 1)
            down = await asyncio.to_thread(
                request, a.socket_path, "down", {"name": "site", "timeout": 5}, wait=10
            )
            assert down == {"ok": True, "result": {"terminated": True}}
            for _ in range(40):  # the responder processes the DELETE
                if not b.dataplane.installed_spis():
                    break
                await asyncio.sleep(0.05)
            assert not a.dataplane.installed_spis() and not b.dataplane.installed_spis()
            # as swanctl --initiate --child: a child name brings its connection up with it
            again = await asyncio.to_thread(
                request, a.socket_path, "up", {"name": "net", "timeout": 10}, wait=15
            )
            assert again["ok"] is True, again
            assert [c["name"] for c in again["result"][0]["children"]] == ["net"]
            # and by child name only that child goes: the IKE SA stays
            gone = await asyncio.to_thread(
                request, a.socket_path, "down", {"name": "net", "timeout": 5}, wait=10
            )
            assert gone == {"ok": True, "result": {"terminated": True}}, gone
            (left,) = (await asyncio.to_thread(request, a.socket_path, "list-sas"))["result"]
            assert left["state"] == "ESTABLISHED" and left["children"] == []

    asyncio.run(scenario())


def test_trap_acquire_and_inactivity_through_the_runtime():
    """The runtime installs the engine's trap, feeds the data plane's Acquire back, and
    answers the engine's usage queries from the counters: the idle child goes, the IKE SA
    stays, and ``ikectl list-sas`` in text shows the trap."""
    from ikeagent.cli import ikectl
    from ikeagent.cli.formatting import format_traps
    from ikeagent.dataplane.base import Acquire

    async def scenario():
        async with _two_agents(start_action="trap", inactivity=1) as (a, b, (pa, pb)):
            (reqid,) = a.dataplane.traps
            (trap,) = (await asyncio.to_thread(request, a.socket_path, "list-traps"))["result"]
            assert (trap["reqid"], trap["active"], trap["reason"]) == (reqid, False, "start_action")
            a.dataplane.raise_event(Acquire(reqid, "10.1.0.9", "10.2.0.9"))
            for _ in range(100):
                if a.dataplane.pairs.get(reqid):
                    break
                await asyncio.sleep(0.05)
            (sa,) = (await asyncio.to_thread(request, a.socket_path, "list-sas"))["result"]
            (child,) = sa["children"]
            assert (child["reqid"], child["inactivity"]) == (reqid, 1)
            out = []
            await asyncio.to_thread(
                ikectl.run, ["--socket", a.socket_path, "list-sas"], _Out(out), _Out([])
            )
            assert "trap policies:" in "".join(out) and "CHILD_SA up" in "".join(out)
            # no traffic: closed after about a second, the IKE SA stays on both ends
            for _ in range(100):
                if not a.dataplane.pairs.get(reqid) and not b.dataplane.installed_spis():
                    break
                await asyncio.sleep(0.05)
            assert not a.dataplane.pairs.get(reqid) and not b.dataplane.installed_spis()
            (sa,) = (await asyncio.to_thread(request, a.socket_path, "list-sas"))["result"]
            assert sa["state"] == "ESTABLISHED" and sa["children"] == []
            assert reqid in a.dataplane.traps  # armed again
            (trap,) = (await asyncio.to_thread(request, a.socket_path, "list-traps"))["result"]
            assert (trap["acquires"], trap["active"]) == (1, False)
            assert "no CHILD_SA, 1 acquire" in format_traps([trap])

    asyncio.run(scenario())


class _Out:
    def __init__(self, sink: list) -> None:
        self.sink = sink

    def write(self, text: str) -> None:
        self.sink.append(text)

    def flush(self) -> None:
        pass
