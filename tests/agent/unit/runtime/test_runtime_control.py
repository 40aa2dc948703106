"""The control socket over a real UNIX socket, against a running in-process Agent (memory data
plane, STUB engine from agent_harness)."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import socket
import stat

import pytest
from agent_harness import make_config, running_agent, settle

from ikeagent.config.errors import ConfigError
from ikeagent.dataplane.base import ChildSa, SaKeys, TrafficSelector
from ikeagent.engine import events as ev
from ikeagent.runtime.control import ControlServer, request


def _call(agent, cmd, **args):
    return asyncio.to_thread(request, agent.socket_path, cmd, args, wait=5.0)


def _child_sa(reqid=1, spi_in=0xC0000001, spi_out=0xD0000001) -> ChildSa:
    return ChildSa(
        reqid=reqid,
        name="net",
        local_addr="127.0.0.1",
        remote_addr="127.0.0.2",
        inbound=SaKeys(spi_in, 20, b"k" * 36, None),
        outbound=SaKeys(spi_out, 20, b"k" * 36, None),
        local_ts=(TrafficSelector(ipaddress.ip_network("10.1.0.0/24")),),
        remote_ts=(TrafficSelector(ipaddress.ip_network("10.2.0.0/24")),),
        encap=(4500, 4500),
    )


def _status(now: float, reqid=1, spi_in=0xC0000001, spi_out=0xD0000001) -> ev.IkeSaStatus:
    child = ev.ChildSaStatus(
        name="net",
        reqid=reqid,
        state="INSTALLED",
        mode="TUNNEL",
        protocol="ESP",
        encap=True,
        spi_in=spi_in,
        spi_out=spi_out,
        encryption="AES_GCM_16_256",
        integrity=None,
        dh=None,
        esn=False,
        local_ts=["10.1.0.0/24"],
        remote_ts=["10.2.0.0/24"],
        installed_at=now - 10,
        rekey_at=now + 3000,
        expire_at=now + 3500,
    )
    return ev.IkeSaStatus(
        name="site-b",
        uid=7,
        version=2,
        state="ESTABLISHED",
        role="initiator",
        local_addr="127.0.0.1",
        local_port=4500,
        local_id="gw-a.example",
        remote_addr="127.0.0.2",
        remote_port=4500,
        remote_id="gw-b.example",
        spi_i=0x0102030405060708,
        spi_r=0x1112131415161718,
        encryption="AES_GCM_16_256",
        integrity=None,
        prf="PRF_HMAC_SHA2_256",
        dh="CURVE_25519",
        nat_local=False,
        nat_remote=True,
        established_at=now - 12,
        rekey_at=now + 14000,
        children=[child],
    )


def test_socket_permissions_status_and_cleanup():
    async def scenario():
        async with running_agent() as agent:
            path = agent.socket_path
            assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
            assert stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode) == 0o700
            response = await _call(agent, "status")
            assert response["ok"] is True
            st = response["result"]
            assert st["pid"] == os.getpid()
            assert st["dataplane"] == {"name": "memory", "reason": "requested on the command line"}
            assert (st["connections"], st["ike_sas"], st["child_sas"]) == (1, 0, 0)
            assert st["stats"]["engine"] == {"fake_dropped": 1}
            assert st["ports"]["ike"] == agent.port != 0
        assert not os.path.exists(path)
        assert agent.dataplane.closed

    asyncio.run(scenario())


def test_bad_requests_get_errors_and_the_connection_survives():
    async def scenario():
        async with running_agent() as agent:
            reader, writer = await asyncio.open_unix_connection(agent.socket_path)
            for line, words in (
                (b"not json\n", "not valid JSON"),
                (b'{"nocmd": 1}\n', '"cmd"'),
                (b'{"cmd": "frobnicate"}\n', "unknown command"),
                (b'{"cmd": "up"}\n', "name"),
                (b'{"cmd": "up", "name": "nope"}\n', "no connection or child named"),
                (b'{"cmd": "up", "name": "site-b", "timeout": -1}\n', "timeout"),
            ):
                writer.write(line)
                response = json.loads(await reader.readline())
                assert response["ok"] is False and words in response["error"], line
            writer.write(b'{"cmd": "list-conns"}\n')
            response = json.loads(await reader.readline())
            assert response["ok"] is True
            writer.close()

    asyncio.run(scenario())


def test_list_conns_has_no_secrets():
    async def scenario():
        async with running_agent() as agent:
            response = await _call(agent, "list-conns")
            (conn,) = response["result"]
            assert conn["name"] == "site-b"
            assert conn["local"] == {"auth": "psk", "id": "gw-a.example"}
            assert conn["proposals"] == ["aes256gcm16-prfsha256-x25519"]
            assert conn["children"][0]["local_ts"] == ["10.1.0.0/24"]
            assert "not-a-real-psk" not in json.dumps(response)

    asyncio.run(scenario())


def test_install_child_and_list_sas_merge_counters():
    async def scenario():
        async with running_agent() as agent:
            engine, dp = agent.engine, agent.dataplane
            now = agent.now()
            engine.events.append(ev.InstallChild(_child_sa()))
            engine.sas.append(_status(now))
            agent.process()
            assert dp.log[-1] == ("install", 1, 0xC0000001, 0xD0000001)
            dp.bump(
                1,
                0xC0000001,
                0xD0000001,
                bytes_in=840,
                packets_in=10,
                bytes_out=1680,
                packets_out=20,
                now=now - 3,
            )
            response = await _call(agent, "list-sas")
            (sa,) = response["result"]
            assert (sa["name"], sa["uid"], sa["state"], sa["role"]) == (
                "site-b",
                7,
                "ESTABLISHED",
                "initiator",
            )
            assert (sa["spi_i"], sa["spi_r"]) == ("0102030405060708", "1112131415161718")
            assert sa["established"] in (12, 13) and sa["rekey_in"] in (13999, 14000)
            (child,) = sa["children"]
            assert (child["spi_in"], child["spi_out"]) == ("c0000001", "d0000001")
            assert (
                child["bytes_in"],
                child["packets_in"],
                child["bytes_out"],
                child["packets_out"],
            ) == (840, 10, 1680, 20)
            assert child["last_used"] in (3, 4)
            assert child["expire_in"] in (3499, 3500)
            # a child the data plane does not know (e.g. just deleted) lists zero counters
            engine.sas[0].children[0].spi_in = 0xC0000099
            (sa,) = (await _call(agent, "list-sas"))["result"]
            assert sa["children"][0]["bytes_in"] == 0 and sa["children"][0]["last_used"] is None

    asyncio.run(scenario())


def test_up_waits_for_ike_and_children():
    async def scenario():
        async with running_agent() as agent:
            engine = agent.engine
            engine.on_initiate = [ev.IkeSaUp("site-b", 7)]  # the child comes later

            async def child_later():
                await settle(0.1)
                engine.sas.append(_status(agent.now()))
                engine.events.append(ev.InstallChild(_child_sa()))
                engine.events.append(ev.ChildUp("net", "site-b", 1))
                agent.process()

            task = asyncio.create_task(child_later())
            response = await _call(agent, "up", name="site-b", timeout=5)
            await task
            assert response["ok"] is True, response
            assert [sa["name"] for sa in response["result"]] == ["site-b"]
            assert ("initiate", "site-b") in engine.calls
            assert agent.dataplane.pairs[1]

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("script", "words"),
    [
        ([ev.IkeSaDown("site-b", 7, "AUTHENTICATION_FAILED")], "AUTHENTICATION_FAILED"),
        (
            [ev.IkeSaUp("site-b", 7), ev.ChildDown("net", "site-b", 1, "TS_UNACCEPTABLE")],
            "TS_UNACCEPTABLE",
        ),
        ([ev.IkeSaUp("site-b", 7)], "not up after"),
    ],
)
def test_up_reports_failures_and_timeouts(script, words):
    async def scenario():
        async with running_agent() as agent:
            agent.engine.on_initiate = script
            response = await _call(agent, "up", name="site-b", timeout=0.3)
            assert response["ok"] is False and words in response["error"]
            assert agent.waiters == []

    asyncio.run(scenario())


def test_down_rekey_and_graceful_shutdown():
    async def scenario():
        async with running_agent() as agent:
            engine = agent.engine
            response = await _call(agent, "rekey", name="site-b")
            assert response["ok"] is False and "no IKE SA" in response["error"]
            engine.sas.append(_status(agent.now()))
            response = await _call(agent, "rekey", name="site-b")
            assert response == {
                "ok": True,
                "result": {"rekeying": "site-b", "what": ["ike", "children"]},
            }
            assert engine.calls[-1] == ("rekey", "site-b", True, True)
            response = await _call(agent, "rekey", name="site-b", ike=False)
            assert response["result"]["what"] == ["children"]
            assert engine.calls[-1] == ("rekey", "site-b", False, True)
            response = await _call(agent, "rekey", name="site-b", ike=False, children=False)
            assert response["ok"] is False
            response = await _call(agent, "down", name="site-b", timeout=1)
            assert response == {"ok": True, "result": {"terminated": True}}
            assert ("remove_policy", 1) in agent.dataplane.log
            # shutdown terminates what is left and closes the data plane
            engine.sas.append(_status(agent.now()))
        assert ("terminate", "site-b") in engine.calls[-1:]
        assert agent.dataplane.log[-1] == ("close",)

    asyncio.run(scenario())


def test_reload_applies_good_config_and_keeps_running_one_on_errors():
    async def scenario():
        configs = []

        def loader():
            item = configs.pop(0)
            if isinstance(item, Exception):
                raise item
            return item

        good = make_config(log_level="info")
        async with running_agent(config_loader=loader) as agent:
            before = agent.config
            configs.append(ConfigError([("connections.x.version", "bad")]))
            response = await _call(agent, "reload")
            assert response["ok"] is False and "connections.x.version: bad" in response["error"]
            assert agent.config is before
            configs.append(good)
            response = await _call(agent, "reload")
            assert response == {"ok": True, "result": {"connections": ["site-b"]}}
            assert agent.config is good
            assert agent.engine.calls[-1] == ("load_config", ("site-b",))

    asyncio.run(scenario())


def test_dataplane_events_reach_the_engine():
    from ikeagent.dataplane.base import ExpireKind, SaExpired

    async def scenario():
        async with running_agent() as agent:
            event = SaExpired(1, 0xC0000001, ExpireKind.SOFT)
            await asyncio.to_thread(agent.dataplane.raise_event, event)  # from another thread
            await settle()
            assert ("dataplane_event", event) in agent.engine.calls

    asyncio.run(scenario())


def test_refuses_to_replace_a_live_socket_but_replaces_a_stale_one():
    async def scenario():
        async with running_agent() as agent:
            other = ControlServer(agent.socket_path, lambda req: None)
            with pytest.raises(RuntimeError, match="another agent"):
                await other.start()
            assert os.path.exists(agent.socket_path)  # the failed one did not remove it
            stale = os.path.join(os.path.dirname(agent.socket_path), "stale.sock")
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.bind(stale)
            s.close()  # a socket file nobody listens on
            server = ControlServer(stale, lambda req: asyncio.sleep(0, result="pong"))
            await server.start()
            assert (await asyncio.to_thread(request, stale, "x"))["result"] == "pong"
            await server.close()

    asyncio.run(scenario())


def test_up_returns_at_once_when_already_up():
    async def scenario():
        async with running_agent() as agent:
            agent.engine.sas.append(_status(agent.now()))  # established, child installed
            response = await _call(agent, "up", name="site-b", timeout=0.3)
            assert response["ok"] is True and response["result"][0]["uid"] == 7
            assert ("initiate", "site-b") not in agent.engine.calls

    asyncio.run(scenario())


def test_an_engine_failure_is_the_commands_error_not_an_empty_answer():
    async def scenario():
        async with running_agent() as agent:

            def broken() -> list:
                raise ValueError("status field mismatch")

            agent.engine.list_sas = broken
            for cmd in ("list-sas", "status"):
                response = await _call(agent, cmd)
                assert response["ok"] is False, cmd
                assert "engine failed" in response["error"] and "ValueError" in response["error"]
            # the agent carries on
            assert (await _call(agent, "list-conns"))["ok"] is True

    asyncio.run(scenario())
