"""The verification table behind verify.yml: a tunnel is verified only with an established IKE
SA on both ends and traffic proven from each end."""

from __future__ import annotations

from typing import Any

from ansible_collections.ikelab.ipsec.plugins.plugin_utils.verification import verify

TUNNEL = {"id": "site1--site2"}


def sa(version: int = 2, mode: str | None = None, state: str = "ESTABLISHED") -> dict[str, Any]:
    return {
        "name": "peer",
        "state": state,
        "version": version,
        "mode": mode,
        "encryption": "AES_CBC_256",
        "integrity": "HMAC_SHA2_256_128",
        "prf": "PRF_HMAC_SHA2_256",
        "dh": "MODP_2048",
        "children": [
            {"encryption": "AES_CBC_256", "integrity": "HMAC_SHA2_256_128", "spi_in": "c1",
             "spi_out": "c2"}
        ],
    }  # fmt: skip


def flow(ok: bool = True) -> dict[str, Any]:
    return {
        "item": {"tunnel_id": TUNNEL["id"], "name": "peer"},
        "arrived": ok,
        "encrypted": ok,
        "failed": not ok,
        "msg": "" if ok else "no answer",
        "delta": {"packets_out": 3, "packets_in": 3 if ok else 0},
    }


def run(sa1: dict | None, sa2: dict | None, f1: dict, f2: dict) -> dict[str, Any]:
    return verify(
        [TUNNEL],
        {
            "site1": ([f1], {"sas": [sa1] if sa1 else []}),
            "site2": ([f2], {"sas": [sa2] if sa2 else []}),
        },
    )


def test_both_ends_up_and_proven_is_verified_and_names_the_ike_version() -> None:
    out = run(sa(1, "main"), sa(1, "main"), flow(), flow())
    [row] = out["rows"]
    assert row["result"] == "verified" and out["failures"] == []
    assert row["ike"].startswith("IKEv1-main AES_CBC_256/")
    assert row["a->b"] == row["b->a"] == "ok 3 out/3 in"
    assert run(sa(), sa(), flow(), flow())["rows"][0]["ike"].startswith("IKEv2 AES_CBC_256/")


def test_certificate_authentication_is_named() -> None:
    signed = sa() | {"local_auth": "pubkey", "remote_auth": "pubkey"}
    assert run(signed, signed, flow(), flow())["rows"][0]["ike"].startswith("IKEv2 pubkey AES_")


def test_traffic_not_proven_from_one_end_fails_with_the_reason() -> None:
    out = run(sa(), sa(), flow(), flow(ok=False))
    assert out["rows"][0]["result"] == "FAILED"
    assert out["failures"] == ["tunnel site1--site2: site2 -> site1: no answer"]


def test_no_established_ike_sa_on_one_end_fails() -> None:
    out = run(sa(), sa(state="CONNECTING"), flow(), flow())
    assert "tunnel site1--site2: site2: no established IKE SA" in out["failures"]
    assert out["table"][0].split() == ["tunnel", "ike", "esp", "spis", "a->b", "b->a", "result"]
