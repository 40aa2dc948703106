"""The keygen and proposal modules through the real ansible, ansible-playbook and ansible-doc."""

from __future__ import annotations

import base64
import json
import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[3]
BIN = Path(sys.executable).parent


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
        ANSIBLE_LOCAL_TEMP=str(tmp_path / ".ansible-local"),
        ANSIBLE_REMOTE_TEMP=str(tmp_path / ".ansible-remote"),
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_FORCE_COLOR="0",
    )
    env.update(extra)
    return env


# A callback that records every task result as a JSON line (ansible.posix.json is not installed).
RECORDER = """\
import json, os
from ansible.plugins.callback import CallbackBase

class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "notification"
    CALLBACK_NAME = "record"
    CALLBACK_NEEDS_ENABLED = True

    def _write(self, result, failed):
        data = getattr(result, "result", None)
        if data is None:
            data = result._result
        data = dict(data, failed=failed)
        with open(os.environ["IKELAB_TEST_RECORD"], "a") as f:
            f.write(json.dumps(data, default=str) + "\\n")

    def v2_runner_on_ok(self, result):
        self._write(result, False)

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._write(result, True)
"""


def ansible(tmp_path: Path, *argv: str) -> tuple[subprocess.CompletedProcess[str], list[dict]]:
    """``ansible`` or ``ansible-playbook`` against localhost over the local connection, with
    this interpreter (it has ``cryptography``); the process and the recorded task results."""
    plugins = tmp_path / "callback_plugins"
    plugins.mkdir(exist_ok=True)
    (plugins / "record.py").write_text(RECORDER)
    record = tmp_path / "record.jsonl"
    record.unlink(missing_ok=True)
    tool, *rest = argv
    p = subprocess.run(
        [
            str(BIN / tool),
            *(["localhost"] if tool == "ansible" else []),
            "-i",
            "localhost,",
            "-c",
            "local",
            "-e",
            f"ansible_python_interpreter={sys.executable}",
            *rest,
        ],
        cwd=ROOT,
        env=_env(
            tmp_path,
            ANSIBLE_CALLBACK_PLUGINS=str(plugins),
            ANSIBLE_CALLBACKS_ENABLED="record",
            ANSIBLE_LOAD_CALLBACK_PLUGINS="1",
            IKELAB_TEST_RECORD=str(record),
        ),
        capture_output=True,
        text=True,
        timeout=240,
    )
    results = (
        [json.loads(line) for line in record.read_text().splitlines()] if record.exists() else []
    )
    return p, results


def adhoc(tmp_path: Path, module: str, args: dict[str, Any], *opts: str) -> tuple[dict, str]:
    """One module run; (its result, all of stdout and stderr)."""
    p, results = ansible(tmp_path, "ansible", "-m", module, "-a", json.dumps(args), *opts)
    out = p.stdout + p.stderr
    assert len(results) == 1, out
    return results[0], out


def playbook(tmp_path: Path, tasks: str, *opts: str) -> tuple[list[dict], str, int]:
    path = tmp_path / "play.yml"
    path.write_text(
        "- hosts: localhost\n  gather_facts: false\n  tasks:\n"
        + textwrap.indent(textwrap.dedent(tasks), "    ")
    )
    p, results = ansible(tmp_path, "ansible-playbook", str(path), *opts)
    return results, p.stdout + p.stderr, p.returncode


def secret_forms_of_psk(path: Path) -> list[str]:
    content = path.read_text().strip()
    secret = base64.b64decode(content[2:])
    return [content, content[2:], secret.hex(), content[2:24], content[-20:-2]]


def secret_forms_of_pem(path: Path) -> list[str]:
    lines = path.read_text().strip().splitlines()[1:-1]
    body = "".join(lines)
    return [body, *lines, body[:32], body[-32:]]


def assert_absent(forms: list[str], output: str) -> None:
    for form in forms:
        assert form not in output, "secret material in ansible output"


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# --- keygen ---------------------------------------------------------------------------------------


def test_psk_idempotent_0600_and_never_in_output(tmp_path: Path) -> None:
    path = tmp_path / "site1--site2.psk"
    args = {"type": "psk", "path": str(path)}
    first, out1 = adhoc(tmp_path, "ikelab.ipsec.keygen", args, "--diff")
    assert first["changed"] is True and first["generated"] is True
    assert mode_of(path) == 0o600
    assert first["fingerprint"].startswith("SHA256:")
    forms = secret_forms_of_psk(path)
    # the second run, as verbose as it gets and with a diff: unchanged, nothing secret shown
    second, out2 = adhoc(tmp_path, "ikelab.ipsec.keygen", args, "--diff", "-vvv")
    assert "ESTABLISH LOCAL CONNECTION" in out2  # really -vvv
    assert second["changed"] is False
    assert second["fingerprint"] == first["fingerprint"]
    assert secret_forms_of_psk(path) == forms
    assert_absent(forms, out1 + out2)
    # forced regeneration, -vvv: neither the old nor the new secret is shown
    forced, out3 = adhoc(tmp_path, "ikelab.ipsec.keygen", {**args, "force": True}, "--diff", "-vvv")
    assert forced["changed"] is True and forced["regenerated_reason"] == "forced"
    assert forced["fingerprint"] != first["fingerprint"]
    assert_absent(forms + secret_forms_of_psk(path), out3)
    assert mode_of(path) == 0o600


@pytest.mark.skipif(not Path("/usr/bin/python3").exists(), reason="no system python")
def test_keygen_runs_on_the_system_python(tmp_path: Path) -> None:
    """Managed hosts run modules with their system python, not the controller's venv."""
    cases = [{"type": "psk", "path": str(tmp_path / "k.psk")}]
    has_crypto = subprocess.run(["/usr/bin/python3", "-c", "import cryptography"]).returncode == 0
    if has_crypto:  # private keys need it (python3-cryptography); PSKs only the stdlib
        cases.append({"type": "private_key", "path": str(tmp_path / "k.pem")})
    for args in cases:
        result, out = adhoc(
            tmp_path,
            "ikelab.ipsec.keygen",
            args,
            "-e",
            "ansible_python_interpreter=/usr/bin/python3",
        )
        assert result["changed"] is True and not result["failed"], out
    assert mode_of(tmp_path / "k.psk") == 0o600
    if has_crypto:
        assert mode_of(tmp_path / "k.pem") == 0o600


def test_keygen_check_mode_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "k.psk"
    result, _ = adhoc(
        tmp_path, "ikelab.ipsec.keygen", {"type": "psk", "path": str(path)}, "--check"
    )
    assert result["changed"] is True and result["fingerprint"] is None
    assert not path.exists()
    adhoc(tmp_path, "ikelab.ipsec.keygen", {"type": "psk", "path": str(path)})
    content = path.read_bytes()
    path.chmod(0o644)
    result, out = adhoc(
        tmp_path,
        "ikelab.ipsec.keygen",
        {"type": "psk", "path": str(path), "force": True},
        "--check",
        "--diff",
    )
    assert result["changed"] is True and result["regenerated_reason"] == "forced"
    assert path.read_bytes() == content and mode_of(path) == 0o644
    assert_absent(secret_forms_of_psk(path), out)
    # the real run fixes the mode and keeps the key
    result, _ = adhoc(tmp_path, "ikelab.ipsec.keygen", {"type": "psk", "path": str(path)})
    assert result["changed"] is True and result["changes"] == ["mode"]
    assert path.read_bytes() == content and mode_of(path) == 0o600


def test_keygen_refuses_a_short_psk_naming_the_field(tmp_path: Path) -> None:
    path = tmp_path / "k.psk"
    result, _ = adhoc(
        tmp_path, "ikelab.ipsec.keygen", {"type": "psk", "path": str(path), "size": 8}
    )
    assert result["failed"] is True
    assert "size: a PSK needs at least 16 bytes" in result["msg"]
    assert not path.exists()


def test_private_key_and_proposal_in_a_playbook(tmp_path: Path) -> None:
    key = tmp_path / "gw.pem"
    tasks = f"""\
    - name: key
      ikelab.ipsec.keygen: {{type: private_key, path: "{key}", key_type: ecdsa-p256}}
      register: k1
    - name: key again
      ikelab.ipsec.keygen: {{type: private_key, path: "{key}", key_type: ecdsa-p256}}
      register: k2
    - name: same key
      ansible.builtin.assert:
        that:
          - k1 is changed
          - k2 is not changed
          - k1.fingerprint == k2.fingerprint
          - k2.public_key is search("BEGIN PUBLIC KEY")
    - name: proposals
      ikelab.ipsec.proposal:
        ike: modern
        esp: [aes256gcm16-x25519, aes256-sha256-modp2048]
        peer: {{ike: [aes128gcm16-aes256gcm16-prfsha384-x25519], esp: aes256gcm16-x25519}}
      register: p
    """
    results, out, rc = playbook(tmp_path, tasks, "--diff", "-vvv")
    assert rc == 0, out
    k1, k2, _, p = results
    assert k1["changed"] and not k2["changed"]
    assert k1["fingerprint"] == k2["fingerprint"] and k1["key_type"] == "ecdsa-p256"
    assert mode_of(key) == 0o600
    assert_absent(secret_forms_of_pem(key), out)
    assert p["changed"] is False
    assert p["strongswan"] == {
        "proposals": "aes256gcm16-prfsha384-x25519,aes256gcm16-prfsha256-ecp256,"
        "chacha20poly1305-prfsha256-x25519",
        "esp_proposals": "aes256gcm16-x25519,aes256-sha256-modp2048",
    }
    assert p["negotiated"] == {
        "ike": {
            "as_initiator": "aes256gcm16-prfsha384-x25519",
            "as_responder": "aes256gcm16-prfsha384-x25519",
        },
        "esp": {"as_initiator": "aes256gcm16-x25519", "as_responder": "aes256gcm16-x25519"},
    }


def test_proposal_works_in_check_mode_and_reports_errors(tmp_path: Path) -> None:
    tasks = """\
    - name: compat
      ikelab.ipsec.proposal: {ike: compat, esp: compat}
      register: c
    - name: weak refused
      ikelab.ipsec.proposal: {ike: aes256-sha1-modp2048, esp: compat}
      ignore_errors: true
    - name: weak allowed
      ikelab.ipsec.proposal: {ike: aes256-sha1-modp2048, esp: compat, allow_weak: true}
    - name: nothing in common
      ikelab.ipsec.proposal: {ike: modern, esp: modern, peer: {ike: compat}}
      ignore_errors: true
    - name: bad keyword
      ikelab.ipsec.proposal: {ike: modern, esp: [aes256gcm16-bogus]}
      ignore_errors: true
    - name: bad option
      ikelab.ipsec.proposal: {ike: modern, allow_weak: maybe}
      ignore_errors: true
    """
    results, out, rc = playbook(tmp_path, tasks, "--check")
    assert rc == 0, out
    compat, weak, allowed, common, bogus, option = results
    assert compat["changed"] is False
    assert compat["ike"] == [
        "aes256-sha256-modp2048",
        "aes256-sha256-ecp256",
        "aes128-sha256-modp2048",
    ]
    assert weak["failed"] and "'aes256-sha1-modp2048': sha1: weak algorithm" in weak["msg"]
    assert not allowed["failed"] and allowed["ike"] == ["aes256-sha1-modp2048"]
    assert common["failed"] and common["msg"].startswith("no common IKE proposal")
    assert "the peer offers aes256-sha256-modp2048" in common["msg"]
    assert bogus["failed"] and "esp proposal 'aes256gcm16-bogus': bogus: unknown" in bogus["msg"]
    assert option["failed"] and "allow_weak" in option["msg"]


# --- documentation --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("module", "options"),
    [
        (
            "ikelab.ipsec.keygen",
            {
                "type",
                "path",
                "size",
                "key_type",
                "bits",
                "force",
                "owner",
                "group",
                "private_key_path",
                "common_name",
                "subject",
                "subject_alt_names",
                "ca_cert",
                "ca_key",
                "validity_days",
                "renew_days",
                "provided",
            },
        ),
        ("ikelab.ipsec.proposal", {"ike", "esp", "allow_weak", "peer", "version"}),
    ],
)
def test_ansible_doc_renders(tmp_path: Path, module: str, options: set[str]) -> None:
    text = subprocess.run(
        [str(BIN / "ansible-doc"), module],
        cwd=ROOT,
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    assert module in text.stdout and "EXAMPLES" in text.stdout and "RETURN VALUES" in text.stdout
    assert "WARNING" not in text.stderr.upper(), text.stderr
    raw = subprocess.run(
        [str(BIN / "ansible-doc"), "-j", module],
        cwd=ROOT,
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    doc = json.loads(raw.stdout)[module]
    assert set(doc["doc"]["options"]) == options
    authors = doc["doc"]["author"]
    authors = [authors] if isinstance(authors, str) else authors
    # "(!UNKNOWN)": validate-modules' marker for an author without a GitHub handle
    assert authors == ["ikelab.ipsec developers (!UNKNOWN)"]
    assert doc["doc"]["attributes"]["check_mode"]["support"] == "full"
    assert doc["return"] and doc["examples"]
