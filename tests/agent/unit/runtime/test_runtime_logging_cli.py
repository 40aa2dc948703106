"""Logging redaction (a backstop) and ``ikeagent --check``."""

from __future__ import annotations

import io
import logging

import pytest

from ikeagent.cli import agent as agent_cli
from ikeagent.runtime.logging import redact, setup_logging


@pytest.mark.parametrize(
    "text",
    [
        "secret=hunter2",
        "psk: 'hunter2'",
        "SK_d = 0x0011223344",
        "encr_key=b'\\x01\\x02'",
        "key material " + "ab" * 32,
        "loaded 0sc2VjcmV0c2VjcmV0c2VjcmV0",
    ],
)
def test_redact_hides_what_looks_like_secrets(text):
    out = redact(text)
    assert "<redacted>" in out
    for needle in ("hunter2", "0011223344", "\\x01", "ab" * 32, "c2VjcmV0c2Vj"):
        assert needle not in out


def test_redact_leaves_ordinary_text():
    text = "IKE SA site-b[1] established, SPIs 0102030405060708_i 1112131415161718_r"
    assert redact(text) == text


def test_logging_setup_format_level_and_filter():
    stream = io.StringIO()
    handler = setup_logging("warning", stream)
    try:
        log = logging.getLogger("ikeagent.test")
        log.info("not shown")
        log.warning("peer sent psk=%s", "hunter2")
        text = stream.getvalue()
        assert "not shown" not in text
        assert "WARNING ikeagent.test: peer sent psk=<redacted>" in text
        assert "hunter2" not in text
    finally:
        logging.getLogger().removeHandler(handler)
    with pytest.raises(ValueError):
        setup_logging("loud")


def test_check_mode(tmp_path, capsys):
    good = tmp_path / "good.yaml"
    good.write_text(
        "connections:\n"
        "  c:\n"
        "    remote_addrs: 192.0.2.2\n"
        "    local: {auth: psk}\n"
        "    remote: {auth: psk}\n"
        "    children: {net: {local_ts: 10.1.0.0/24, remote_ts: 10.2.0.0/24}}\n"
        "secrets: {ike-1: {secret: topsecret}}\n"
    )
    assert agent_cli.run(["--config", str(good), "--check"]) == 0
    assert "OK, 1 connection(s), 1 secret(s)" in capsys.readouterr().out
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "connections:\n  c:\n    version: 0\n    rekey_time: soon\nsecrets: {ike-1: {secret: topsecret, x: 1}}\n"
    )
    assert agent_cli.run(["--config", str(bad), "--check"]) == 1
    err = capsys.readouterr().err
    assert "connections.c.version: 0 (any version) is not supported" in err
    assert "connections.c.rekey_time: bad duration" in err
    assert "secrets.ike-1.x: unknown key" in err
    assert "topsecret" not in err
    # command-line overrides are validated like the file
    assert agent_cli.run(["--config", str(good), "--check", "--port", "0"]) == 1
    assert "agent.port: 0 is out of range" in capsys.readouterr().err
