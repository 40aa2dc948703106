"""Host names in local_addrs/remote_addrs become addresses before the engine sees them."""

from __future__ import annotations

import logging

import pytest

from ikeagent.config.schema import parse_config
from ikeagent.runtime.resolve import is_name, resolve_names


def config(remote: list[str]) -> dict:
    return {
        "connections": {
            "peer": {
                "version": 2,
                "local_addrs": ["192.0.2.1"],
                "remote_addrs": remote,
                "proposals": ["aes256gcm16-prfsha256-x25519"],
                "local": {"auth": "psk", "id": "a.example"},
                "remote": {"auth": "psk", "id": "b.example"},
                "children": {
                    "net": {
                        "local_ts": ["10.1.0.0/24"],
                        "remote_ts": ["10.2.0.0/24"],
                        "esp_proposals": ["aes256gcm16"],
                    }
                },
            }
        },
        "secrets": {"ike-ab": {"id": ["a.example", "b.example"], "secret": "0123456789abcdef0123"}},
    }


@pytest.mark.parametrize(
    "value,name",
    [
        ("192.0.2.2", False),
        ("2001:db8::1", False),
        ("192.0.2.0/24", False),
        ("%any", False),
        ("192.0.2.1-192.0.2.9", False),
        ("gw-b.example", True),
        ("localhost", True),
    ],
)
def test_what_counts_as_a_name(value: str, name: bool) -> None:
    assert is_name(value) is name


def test_names_are_replaced_by_their_addresses() -> None:
    table = {"gw-b.example": ["198.18.0.2", "198.18.0.3"]}
    cfg = resolve_names(parse_config(config(["gw-b.example", "192.0.2.9"])), table.__getitem__)
    assert cfg.connections["peer"].remote_addrs == ("198.18.0.2", "198.18.0.3", "192.0.2.9")
    assert cfg.connections["peer"].local_addrs == ("192.0.2.1",)


def test_the_system_resolver_knows_localhost() -> None:
    cfg = resolve_names(parse_config(config(["localhost"])))
    assert (
        "127.0.0.1" in cfg.connections["peer"].remote_addrs
        or "::1" in cfg.connections["peer"].remote_addrs
    )


def test_an_unresolvable_name_is_logged_with_its_path_and_kept(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def fail(name: str) -> list[str]:
        raise OSError(f"no address for {name}")

    with caplog.at_level(logging.ERROR):
        cfg = resolve_names(parse_config(config(["gw-x.invalid"])), fail)
    assert cfg.connections["peer"].remote_addrs == ("gw-x.invalid",)
    assert "connections.peer.remote_addrs[0]" in caplog.text and "gw-x.invalid" in caplog.text


def test_a_config_without_names_is_returned_as_it_is() -> None:
    cfg = parse_config(config(["192.0.2.2"]))
    assert resolve_names(cfg, lambda n: pytest.fail("no lookup expected")) is cfg
