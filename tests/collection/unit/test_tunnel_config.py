"""Tunnel fragments: deterministic rendering that the agent's own schema accepts, parameter
errors that name their field, and PSKs that never show."""

from __future__ import annotations

import base64
import hashlib
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from ansible_collections.ikelab.ipsec.plugins.module_utils import tunnel_config as tc
from ansible_collections.ikelab.ipsec.plugins.module_utils import yaml_text
from ikeagent.config.model import AuthMethod, StartAction
from ikeagent.config.schema import ConfigError, load_config, parse_config

PSK = b"correct horse battery staple \xe2\x9c\x93"


def params(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "name": "site-b",
        "local_addrs": ["192.0.2.1"],
        "remote_addrs": ["192.0.2.2"],
        "local_id": "gw-a.example",
        "remote_id": "gw-b.example",
        "ike_proposals": ["aes256gcm16-prfsha256-x25519", "aes256-sha256-modp2048"],
        "esp_proposals": ["aes256gcm16"],
        "local_ts": ["10.1.0.0/24"],
        "remote_ts": ["10.2.0.0/24", "10.3.0.0/24[tcp/443]"],
        "child": "net",
        "start_action": "start",
        "dpd_delay": "30s",
        "rekey_time": 3600,
        "child_rekey_time": "20m",
        "options": {"mobike": False, "keyingtries": 0, "encap": True},
        "child_options": {"close_action": "start", "rekey_bytes": "1g"},
    }
    base.update(over)
    return base


def render(**over: Any) -> str:
    return tc.render(tc.TunnelSpec.from_params(params(**over)), PSK)


# --- rendering ------------------------------------------------------------------------------------


def test_rendering_is_deterministic_and_independent_of_option_order() -> None:
    a = render()
    b = render(options={"encap": True, "keyingtries": 0, "mobike": False})
    assert a == b
    assert a.encode() == render().encode()
    assert a.endswith("\n") and not a.endswith("\n\n")


def test_equal_inputs_in_other_forms_give_the_same_file() -> None:
    """A PSK given as 0s/0x/plain, and durations as numbers or digit strings, write one file."""
    spec = tc.TunnelSpec.from_params(params(dpd_delay=30, rekey_time="3600"))
    spec2 = tc.TunnelSpec.from_params(params(dpd_delay="30", rekey_time=3600.0))
    forms = [
        PSK.decode(),
        "0s" + base64.b64encode(PSK).decode(),
        "0x" + PSK.hex(),
    ]
    texts = {tc.render(spec, tc.decode_psk(f)) for f in forms} | {tc.render(spec2, PSK)}
    assert len(texts) == 1


def test_changing_any_field_changes_the_text() -> None:
    base = render()
    for over in (
        {"local_ts": ["10.1.1.0/24"]},
        {"esp_proposals": ["aes128gcm16"]},
        {"start_action": "none"},
        {"options": {"mobike": True}},
        {"child": "lan"},
    ):
        assert render(**over) != base, over
    assert tc.render(tc.TunnelSpec.from_params(params()), b"other") != base


def test_the_agents_schema_accepts_the_fragment_with_the_values_given() -> None:
    text = render()
    config = parse_config(yaml.safe_load(text))
    conn = config.connections["site-b"]
    assert conn.local_addrs == ("192.0.2.1",) and conn.remote_addrs == ("192.0.2.2",)
    assert conn.local.auth is AuthMethod.PSK and conn.remote.auth is AuthMethod.PSK
    assert conn.local.id.text == "gw-a.example" and conn.remote.id.text == "gw-b.example"
    assert len(conn.proposals) == 2
    assert (conn.dpd_delay, conn.rekey_time, conn.keyingtries) == (30.0, 3600.0, 0)
    assert conn.mobike is False and conn.encap is True
    child = conn.children["net"]
    assert [str(t) for t in child.local_ts] == ["10.1.0.0/24"]
    assert [str(t) for t in child.remote_ts] == ["10.2.0.0/24", "10.3.0.0/24[6/443]"]
    assert child.start_action is StartAction.START
    assert child.rekey_time == 1200.0 and child.rekey_bytes == 1 << 30
    assert child.close_action == "start"
    [secret] = config.secrets
    assert secret.name == "ike-site-b" and secret.secret == PSK
    assert [i.text for i in secret.ids] == ["gw-a.example", "gw-b.example"]


def test_minimal_fragment_leaves_the_agents_defaults() -> None:
    text = tc.render(
        tc.TunnelSpec.from_params(
            {
                "name": "b",
                "local_id": "a",
                "remote_id": "b",
                "local_ts": "10.1.0.0/24",
                "remote_ts": "10.2.0.0/24",
            }
        ),
        PSK,
    )
    for key in ("local_addrs", "remote_addrs", "proposals", "dpd_delay", "rekey_time"):
        assert f"{key}:" not in text
    conn = parse_config(yaml.safe_load(text)).connections["b"]
    assert conn.children["net"].start_action is StartAction.NONE
    assert conn.rekey_time == 14400.0  # the agent's default, not ours


def test_ikeagent_check_accepts_the_fragment_alone_and_included(tmp_path: Path) -> None:
    """The agent's CLI validates the fragment file as it is, and as part of a main config."""
    fragments = tmp_path / "tunnels.d"
    fragments.mkdir(mode=0o700)
    path = fragments / "site-b.yaml"
    path.write_text(render())
    path.chmod(0o600)
    ikeagent = Path(sys.executable).parent / "ikeagent"
    proc = subprocess.run(
        [str(ikeagent), "--check", "--config", str(path)], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    assert "1 connection(s), 1 secret(s)" in proc.stdout
    main = tmp_path / "ikeagent.yaml"
    main.write_text('include:\n  - "tunnels.d/*.yaml"\n')
    try:
        config = load_config(str(main))
    except ConfigError as e:  # pragma: no cover - the message is the point
        pytest.fail(str(e))
    assert sorted(config.connections) == ["site-b"]


def test_ikeagent_check_names_a_bad_option() -> None:
    text = render(options={"mobike": "maybe"})
    with pytest.raises(ConfigError) as info:
        parse_config(yaml.safe_load(text))
    assert "connections.site-b.mobike" in str(info.value)


# --- the emitter ----------------------------------------------------------------------------------

AWKWARD = [
    "",
    "plain",
    'quote " and backslash \\',
    "tab\tnewline\ncarriage\r",
    "\x00\x07\x1b\x7f",
    "yes",
    "null",
    "~",
    "- dash",
    "key: value",
    "# comment",
    "caf\u00e9 \u65e5\u672c",
    "line\u2028separator\u0085next\ufeffbom",
    "astral \U0001f512 and unassigned private \U000f0000",
    "0x1f",
    "12",
    "1e3",
]


@pytest.mark.parametrize("text", AWKWARD)
def test_quoted_strings_read_back_the_same_by_pyyaml_and_ours(text: str) -> None:
    doc = {"k": text, "list": [text], text or "empty": {"nested": text}}
    emitted = yaml_text.emit(doc)
    assert yaml.safe_load(emitted) == doc
    assert yaml_text.load(emitted) == doc


def test_keys_that_yaml_would_misread_are_quoted() -> None:
    doc = {"on": 1, "No": 2, "null": 3, "1": 4, "a b": 5, "plain_key-1": 6}
    emitted = yaml_text.emit(doc)
    assert yaml.safe_load(emitted) == doc
    assert "\nplain_key-1: 6" in emitted and '"on": 1' in emitted


def test_scalars_lists_and_nesting_round_trip() -> None:
    doc = {
        "b": [True, False, None, 0, -7, 2.5, "x"],
        "empty_list": [],
        "empty_map": {},
        "nested": [[1, 2], {"a": [3]}, []],
    }
    emitted = yaml_text.emit(doc)
    assert yaml.safe_load(emitted) == doc
    assert yaml_text.load(emitted) == doc


def test_emit_rejects_what_it_cannot_write() -> None:
    with pytest.raises(yaml_text.EmitError) as info:
        yaml_text.emit({"a": {"b": [1, object()]}})
    assert info.value.path == "a.b[1]"
    with pytest.raises(yaml_text.EmitError):
        yaml_text.emit({"a": float("nan")})


def test_load_refuses_other_yaml() -> None:
    for text in ("a: [1, 2]\n", "a:\n   b: 1\n", "a: plain\n", "a: 1\na: 2\n", "- 1\nb: 2\n"):
        with pytest.raises(ValueError):
            yaml_text.load(text)


# --- parameter errors name their field --------------------------------------------------------------


@pytest.mark.parametrize(
    ("over", "field"),
    [
        ({"name": "../etc"}, "name"),
        ({"name": "a/b"}, "name"),
        ({"name": ""}, "name"),
        ({"child": "x y"}, "child"),
        ({"local_ts": []}, "local_ts"),
        ({"local_ts": None}, "local_ts"),
        ({"remote_ts": ["10.2.0.0/24", " "]}, "remote_ts[1]"),
        ({"local_id": ""}, "local_id"),
        ({"remote_id": None}, "remote_id"),
        ({"start_action": "sometimes"}, "start_action"),
        ({"dpd_delay": "soon"}, "dpd_delay"),
        ({"rekey_time": -1}, "rekey_time"),
        ({"child_rekey_time": True}, "child_rekey_time"),
        ({"options": {"children": {}}}, "options.children"),
        ({"options": {"local_addrs": ["x"]}}, "options.local_addrs"),
        ({"options": {"remote-1": {}}}, "options.remote-1"),
        ({"options": {"Bad Key": 1}}, "options.Bad Key"),
        ({"options": {"mobike": {"x": [1, object()]}}}, "options.mobike.x[1]"),
        ({"options": ["mobike"]}, "options"),
        ({"child_options": {"start_action": "start"}}, "child_options.start_action"),
    ],
)
def test_errors_name_the_field(over: dict[str, Any], field: str) -> None:
    with pytest.raises(tc.SpecError) as info:
        tc.TunnelSpec.from_params(params(**over))
    assert info.value.field == field
    assert str(info.value).startswith(f"{field}: ")


@pytest.mark.parametrize("bad", ["0xnothex", "0s!!!", "", "0x", "0s"])
def test_bad_psks_are_refused_without_echoing_them(bad: str) -> None:
    with pytest.raises(tc.SpecError) as info:
        tc.decode_psk(bad)
    assert info.value.field == "psk"
    if len(bad) > 2:
        assert bad[2:] not in str(info.value)


# --- the PSK never shows ----------------------------------------------------------------------------


def secret_forms(secret: bytes) -> list[str]:
    return [
        secret.decode(errors="replace"),
        base64.b64encode(secret).decode(),
        secret.hex(),
    ]


def test_fingerprint_is_sha256_base64_like_keygen() -> None:
    # SHA-256("abc") = ba7816bf...f20015ad (FIPS 180-2, Appendix B.1)
    digest = bytes.fromhex("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    assert hashlib.sha256(b"abc").digest() == digest
    assert tc.psk_fingerprint(b"abc") == "SHA256:" + base64.b64encode(digest).decode().rstrip("=")
    assert tc.psk_fingerprint(b"abc") == "SHA256:ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0"


def test_redacted_texts_carry_the_fingerprint_never_the_psk() -> None:
    spec = tc.TunnelSpec.from_params(params())
    text = tc.render(spec, PSK)
    redacted = [tc.render_redacted(spec, PSK), tc.redact(text)]
    assert redacted[0] == redacted[1]
    for shown in redacted:
        assert tc.psk_fingerprint(PSK) in shown
        for form in secret_forms(PSK):
            assert form not in shown
    assert "0s" + base64.b64encode(PSK).decode() in text  # the real file does hold it


def test_redact_masks_hand_written_fragments_too() -> None:
    text = "connections: {}\nsecrets:\n  ike-x:\n    secret: hunter2-is-my-psk\n"
    shown = tc.redact(text)
    assert "hunter2" not in shown and "secret:" in shown


def test_existing_psk_is_read_back_from_our_fragment_only() -> None:
    text = render()
    assert tc.existing_psk(text, "site-b") == PSK
    assert tc.existing_psk(text, "other") is None
    assert tc.existing_psk("secrets: {ike-site-b: {secret: x}}\n", "site-b") is None
