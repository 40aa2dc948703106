"""ikectl: text output from a sample snapshot, and exit codes against a running agent."""

from __future__ import annotations

import asyncio
import io
import json

from agent_harness import running_agent

from ikeagent.cli import ikectl
from ikeagent.cli.formatting import format_conns, format_sas, format_status

SAMPLE_SA = {
    "name": "site-b",
    "uid": 3,
    "version": 2,
    "state": "ESTABLISHED",
    "role": "initiator",
    "mode": None,
    "local_addr": "192.0.2.1",
    "local_port": 4500,
    "local_id": "gw-a.example",
    "remote_addr": "192.0.2.2",
    "remote_port": 4500,
    "remote_id": "gw-b.example",
    "spi_i": "0102030405060708",
    "spi_r": "1112131415161718",
    "encryption": "AES_GCM_16_256",
    "integrity": None,
    "prf": "PRF_HMAC_SHA2_256",
    "dh": "CURVE_25519",
    "nat_local": False,
    "nat_remote": True,
    "established": 120,
    "rekey_in": 13980,
    "children": [
        {
            "name": "net",
            "reqid": 1,
            "state": "INSTALLED",
            "mode": "TUNNEL",
            "protocol": "ESP",
            "encap": True,
            "spi_in": "c1a2b3c4",
            "spi_out": "c5d6e7f8",
            "encryption": "AES_GCM_16_256",
            "integrity": None,
            "dh": None,
            "esn": False,
            "local_ts": ["10.1.0.0/24"],
            "remote_ts": ["10.2.0.0/24", "10.3.0.0/24[6/443]"],
            "bytes_in": 1234,
            "packets_in": 10,
            "bytes_out": 5678,
            "packets_out": 12,
            "last_used": 5,
            "installed": 118,
            "rekey_in": 3300,
            "expire_in": 3842,
        }
    ],
}

EXPECTED_SAS = """\
site-b: #3, ESTABLISHED, IKEv2, 0102030405060708_i* 1112131415161718_r
  local  'gw-a.example' @ 192.0.2.1[4500]
  remote 'gw-b.example' @ 192.0.2.2[4500] NAT
  AES_GCM_16_256/PRF_HMAC_SHA2_256/CURVE_25519
  established 120s ago, rekeying in 13980s
  net: #1, INSTALLED, TUNNEL-in-UDP, ESP:AES_GCM_16_256
    installed 118s ago, rekeying in 3300s, expires in 3842s
    in  c1a2b3c4,     1234 bytes,     10 packets, 5s ago
    out c5d6e7f8,     5678 bytes,     12 packets, 5s ago
    local  10.1.0.0/24
    remote 10.2.0.0/24 10.3.0.0/24[6/443]"""


def test_list_sas_text_like_swanctl():
    assert format_sas([SAMPLE_SA]) == EXPECTED_SAS
    responder = dict(SAMPLE_SA, role="responder", children=[])
    assert (
        format_sas([responder]).splitlines()[0].endswith("0102030405060708_i 1112131415161718_r*")
    )
    assert format_sas([]) == "no IKE SAs"


def test_status_and_conns_text():
    status = {
        "version": "0.1.0",
        "pid": 42,
        "uptime": 61,
        "dataplane": {"name": "userspace", "reason": "kernel lacks ESP"},
        "ports": {"ike": 500, "natt": 4500},
        "connections": 1,
        "ike_sas": 1,
        "child_sas": 2,
        "stats": {"agent": {"rx_ike": 3}, "engine": {}, "dataplane": {"replay": 1}},
    }
    assert format_status(status).splitlines() == [
        "ikeagent 0.1.0 (pid 42), up 61s",
        "  data plane: userspace (kernel lacks ESP)",
        "  ports: IKE 500, NAT-T 4500",
        "  connections: 1, IKE SAs: 1, CHILD_SAs: 2",
        "  agent counters: rx_ike=3",
        "  engine counters: -",
        "  dataplane counters: replay=1",
    ]
    conn = {
        "name": "site-b",
        "version": 2,
        "local_addrs": ["192.0.2.1"],
        "remote_addrs": [],
        "local_port": 500,
        "remote_port": 500,
        "proposals": ["aes256gcm16-prfsha256-x25519"],
        "local": {"auth": "psk", "id": "gw-a.example"},
        "remote": {"auth": "psk", "id": None},
        "rekey_time": 14400.0,
        "reauth_time": 0.0,
        "dpd_delay": 30.0,
        "children": [
            {
                "name": "net",
                "mode": "tunnel",
                "local_ts": ["10.1.0.0/24"],
                "remote_ts": ["10.2.0.0/24"],
                "esp_proposals": ["aes256gcm16"],
                "start_action": "trap",
                "rekey_time": 3600.0,
            }
        ],
    }
    assert format_conns([conn]).splitlines() == [
        "site-b: IKEv2, no reauthentication, rekeying every 4h, dpd delay 30s",
        "  local:  192.0.2.1[500]",
        "  remote: %any[500]",
        "  proposals: aes256gcm16-prfsha256-x25519",
        "  local pre-shared key authentication:",
        "    id: gw-a.example",
        "  remote pre-shared key authentication:",
        "    id: %any",
        "  net: TUNNEL, rekeying every 1h, start_action trap",
        "    local:  10.1.0.0/24",
        "    remote: 10.2.0.0/24",
        "    esp_proposals: aes256gcm16",
    ]


def _ikectl(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = ikectl.run(list(argv), out, err)
    return code, out.getvalue(), err.getvalue()


def test_exit_codes_against_a_running_agent(tmp_path):
    async def scenario():
        async with running_agent() as agent:
            sock = ("--socket", agent.socket_path)
            code, out, _ = await asyncio.to_thread(_ikectl, *sock, "list-conns", "--json")
            assert code == 0 and json.loads(out)[0]["name"] == "site-b"
            code, out, _ = await asyncio.to_thread(_ikectl, *sock, "--json", "status")
            assert code == 0 and json.loads(out)["dataplane"]["name"] == "memory"
            code, out, _ = await asyncio.to_thread(_ikectl, *sock, "list-sas")
            assert (code, out) == (0, "no IKE SAs\n")
            code, _, err = await asyncio.to_thread(_ikectl, *sock, "up", "nope")
            assert code == 1 and "no connection or child named 'nope'" in err
            code, _, err = await asyncio.to_thread(
                _ikectl, *sock, "up", "site-b", "--timeout", "0.2"
            )
            assert code == 1 and "not up after" in err
            code, out, _ = await asyncio.to_thread(_ikectl, *sock, "reload")
            assert (code, out) == (0, "configuration reloaded: site-b\n")

    asyncio.run(scenario())
    code, _, err = _ikectl("--socket", str(tmp_path / "absent.sock"), "status")
    assert code == 3 and "not reachable" in err
    assert _ikectl("up")[0] == 2  # NAME missing
    assert _ikectl("frobnicate")[0] == 2
