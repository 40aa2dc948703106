"""The agent's UDP sockets on 127.0.0.1 (kernel-chosen high ports): local address from
IP_PKTINFO, the non-ESP marker on the NAT-T port, ESP and keepalives, and the engine timer.
The engine is the STUB from agent_harness; it answers b"ping..." with b"pong..."."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
import threading

import pytest
from agent_harness import running_agent, settle

from ikeagent.dataplane.memory import MemoryDataplane
from ikeagent.engine import events as ev
from ikeagent.runtime.sockets import Kind, classify_natt


def _client() -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.settimeout(2.0)
    return s


async def _exchange(sock: socket.socket, data: bytes, port: int) -> bytes:
    sock.sendto(data, ("127.0.0.1", port))
    reply, src = await asyncio.to_thread(sock.recvfrom, 4096)
    assert src == ("127.0.0.1", port)  # answered from the port it was sent to
    return reply


def test_classify_natt():
    # RFC 3948 section 2.2: IKE after four zero octets; 2.3: a single 0xff is a keepalive
    assert classify_natt(b"\x00\x00\x00\x00IKE") == (Kind.IKE, b"IKE")
    assert classify_natt(b"\xff") == (Kind.KEEPALIVE, b"")
    assert classify_natt(b"\x00\x00\x10\x01esp") == (Kind.ESP, b"\x00\x00\x10\x01esp")


def test_ike_port_round_trip_with_local_address():
    async def scenario():
        async with running_agent() as agent:
            client = _client()
            client_addr = client.getsockname()
            try:
                reply = await _exchange(client, b"ping-500", agent.port)
            finally:
                client.close()
            assert reply == b"pong-500"
            data, local, remote = agent.engine.received[-1]
            assert data == b"ping-500"
            assert local == ("127.0.0.1", agent.port)  # from IP_PKTINFO
            assert remote == client_addr
            assert agent.stats["rx_ike"] == 1 and agent.stats["tx_ike"] == 1

    asyncio.run(scenario())


def test_natt_port_strips_and_adds_the_marker_and_drops_esp():
    async def scenario():
        async with running_agent() as agent:
            client = _client()
            try:
                reply = await _exchange(client, b"\x00\x00\x00\x00ping-4500", agent.natt_port)
                assert reply == b"\x00\x00\x00\x00pong-4500"
                client.sendto(b"\xff", ("127.0.0.1", agent.natt_port))
                client.sendto(b"\x12\x34\x56\x78esp-payload", ("127.0.0.1", agent.natt_port))
                await settle(0.1)
            finally:
                client.close()
            received = [r[0] for r in agent.engine.received]
            assert received == [b"ping-4500"]  # neither the keepalive nor ESP reach the engine
            assert agent.engine.received[0][1] == ("127.0.0.1", agent.natt_port)
            assert agent.stats["rx_keepalive"] == 1 and agent.stats["rx_esp_unhandled"] == 1
            # the memory data plane declined to read the NAT-T socket
            assert ("attach_encap_socket", ("127.0.0.1", agent.natt_port)) in agent.dataplane.log

    asyncio.run(scenario())


def test_engine_datagrams_to_port_4500_get_the_marker():
    async def scenario():
        async with running_agent() as agent:
            client = _client()
            try:
                # the engine sends from its NAT-T port; the peer's port is whatever it is
                agent.engine.out.append(
                    ev.Datagram(b"IKE", ("127.0.0.1", agent.natt_port), client.getsockname())
                )
                agent.process()
                data, src = await asyncio.to_thread(client.recvfrom, 4096)
                assert (data, src) == (b"\x00\x00\x00\x00IKE", ("127.0.0.1", agent.natt_port))
                agent.engine.out.append(
                    ev.Datagram(b"IKE", ("127.0.0.1", agent.port), client.getsockname())
                )
                agent.process()
                data, src = await asyncio.to_thread(client.recvfrom, 4096)
                assert (data, src) == (b"IKE", ("127.0.0.1", agent.port))
                # no socket for IPv6 here: dropped and counted, not raised
                agent.engine.out.append(ev.Datagram(b"IKE", ("::1", agent.port), ("::1", 500)))
                agent.process()
                assert agent.stats["tx_no_socket"] == 1
            finally:
                client.close()

    asyncio.run(scenario())


def test_timer_is_armed_from_the_engine_deadline():
    async def scenario():
        async with running_agent() as agent:
            agent.engine.timer = agent.now() + 0.05
            agent.process()
            await settle(0.02)
            assert ("timer",) not in agent.engine.calls
            await settle(0.15)
            assert agent.engine.calls.count(("timer",)) == 1
            agent.engine.timer = agent.now() + 60
            agent.process()
            agent.engine.timer = None
            agent.process()  # cancelled: nothing fires later
            assert agent._timer is None

    asyncio.run(scenario())


# Runs in a private network namespace (only "lo"), so the wildcard socket is exposed nowhere.
_WILDCARD = """
from pyroute2 import IPRoute
from ikeagent.runtime.sockets import UdpSocket
import socket, select
with IPRoute() as ipr:
    ipr.link("set", index=ipr.link_lookup(ifname="lo")[0], state="up")
server = UdpSocket.open("0.0.0.0", 0, False)
client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
client.bind(("127.0.0.1", 0))
client.settimeout(2)
for dst in ("127.0.0.2", "127.0.0.3"):
    client.sendto(b"hello", (dst, server.port))
    select.select([server.sock], [], [], 2)
    data, local, remote = server.receive()
    assert (data, local, remote) == (b"hello", dst, client.getsockname()), (data, local, remote)
    server.send(b"reply", local, remote)  # IP_PKTINFO picks the source address
    data, src = client.recvfrom(100)
    assert (data, src) == (b"reply", (dst, server.port)), (data, src)
print("OK")
"""


def test_wildcard_socket_learns_and_uses_the_local_address():
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("needs root and unshare(1) for a private network namespace")
    result = subprocess.run(
        ["unshare", "--net", sys.executable, "-c", _WILDCARD],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.stdout.strip() == "OK", result.stderr


class _EncapReadingDataplane(MemoryDataplane):
    """A memory data plane that claims the NAT-T socket, as the userspace one does."""

    def attach_encap_socket(self, sock, local, ike_sink):
        super().attach_encap_socket(sock, local, ike_sink)
        self.sink, self.local = ike_sink, local
        return True


def test_a_dataplane_that_reads_the_natt_socket_feeds_ike_through_the_loop():
    async def scenario():
        dp = _EncapReadingDataplane()
        async with running_agent(dataplane=dp) as agent:
            natt = next(s for s in agent.sockets if s.natt)
            assert natt.read_by_dataplane
            # called from the data plane's thread: must be marshalled onto the loop
            thread = threading.Thread(
                target=dp.sink, args=(b"ping-dp", dp.local, ("127.0.0.9", 4500))
            )
            thread.start()
            thread.join()
            await settle()
            assert agent.engine.received == [(b"ping-dp", dp.local, ("127.0.0.9", 4500))]

    asyncio.run(scenario())
