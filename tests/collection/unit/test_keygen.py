"""module_utils.keys: PSK and private key files, regeneration reasons, modes, check mode, diff."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import pwd
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from ansible_collections.ikelab.ipsec.plugins.module_utils import keys
from ansible_collections.ikelab.ipsec.plugins.module_utils.keys import (
    KeyFile,
    KeyFileError,
    KeyParams,
)
from ikeagent.config.values import decode_secret


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def run(params: KeyParams, check: bool = False) -> tuple[bool, dict, dict]:
    """What the module does: (changed, result, diff)."""
    backend = KeyFile(params)
    changed = backend.needs_change()
    if changed and not check:
        backend.apply()
    return changed, backend.dump(), backend.diff()


def sha256_fp(data: bytes) -> str:
    return "SHA256:" + base64.b64encode(hashlib.sha256(data).digest()).decode().rstrip("=")


def assert_no_secret(secret_forms: list[bytes], *outputs: object) -> None:
    text = json.dumps(outputs, default=repr)
    for form in secret_forms:
        assert form.decode("latin-1") not in text


def psk_forms(content: bytes) -> list[bytes]:
    secret = decode_secret(content.decode().strip())
    return [content.strip(), content.strip()[2:], secret.hex().encode(), base64.b64encode(secret)]


# --- PSKs ----------------------------------------------------------------------------------------


def test_psk_is_created_0600_in_0s_base64_form_the_agent_reads(tmp_path: Path) -> None:
    path = tmp_path / "a--b.psk"
    changed, result, diff = run(KeyParams("psk", str(path)))
    assert changed
    content = path.read_bytes()
    assert content.startswith(b"0s") and content.endswith(b"\n")
    secret = decode_secret(content.decode().rstrip("\n"))  # the agent's own decoder
    assert len(secret) == 32
    assert mode_of(path) == 0o600
    assert result["fingerprint"] == sha256_fp(secret)
    assert result["generated"] and result["regenerated_reason"] is None
    assert result["mode"] == "0600" and result["public_key"] is None
    assert result["changes"] == ["generate"]
    assert diff["before"] == {"state": "absent"}
    assert diff["after"]["fingerprint"] == result["fingerprint"]
    assert_no_secret(psk_forms(content), result, diff)
    assert [p.name for p in tmp_path.iterdir()] == ["a--b.psk"]  # no temporary left behind


def test_psk_size_is_honoured(tmp_path: Path) -> None:
    path = tmp_path / "k.psk"
    run(KeyParams("psk", str(path), size=48))
    assert len(decode_secret(path.read_text().strip())) == 48


def test_psk_bytes_come_from_the_secrets_module(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []

    def token_bytes(n: int) -> bytes:
        calls.append(n)
        return bytes(range(n))

    monkeypatch.setattr(keys.secrets, "token_bytes", token_bytes)
    path = tmp_path / "k.psk"
    _, result, _ = run(KeyParams("psk", str(path), size=20))
    assert calls == [20]
    assert path.read_bytes() == b"0s" + base64.b64encode(bytes(range(20))) + b"\n"
    assert result["fingerprint"] == sha256_fp(bytes(range(20)))


def test_second_run_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "k.psk"
    _, first, _ = run(KeyParams("psk", str(path)))
    content = path.read_bytes()
    changed, second, diff = run(KeyParams("psk", str(path)))
    assert not changed
    assert second["fingerprint"] == first["fingerprint"]
    assert second["changes"] == [] and not second["generated"]
    assert path.read_bytes() == content
    assert diff["before"] == diff["after"]


def test_force_regenerates_and_says_so(tmp_path: Path) -> None:
    path = tmp_path / "k.psk"
    _, first, _ = run(KeyParams("psk", str(path)))
    changed, second, diff = run(KeyParams("psk", str(path), force=True))
    assert changed and second["regenerated_reason"] == "forced"
    assert second["fingerprint"] != first["fingerprint"]
    assert diff["before"]["fingerprint"] == first["fingerprint"]
    assert diff["after"]["fingerprint"] == second["fingerprint"]


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (
            b"0s" + base64.b64encode(b"x" * 8) + b"\n",
            "invalid psk: too short: 8 bytes, want at least 32",
        ),
        (b"0x" + b"ab" * 31 + b"\n", "too short: 31 bytes"),
        (b"", "empty file"),
        (b"\n", "empty file"),
        (b"hunter2-but-longer-than-32-bytes-for-sure\n", "not a 0s<base64> or 0x<hex> secret"),
        (b"0s!!!notbase64\n", "not a 0s<base64> or 0x<hex> secret"),
        (b"0sAAA\n", "bad encoding"),
        (b"\xff\xfe0s\n", "not ASCII"),
    ],
)
def test_invalid_psk_is_regenerated_with_the_reason(
    tmp_path: Path, content: bytes, reason: str
) -> None:
    path = tmp_path / "k.psk"
    path.write_bytes(content)
    path.chmod(0o600)
    changed, result, diff = run(KeyParams("psk", str(path)))
    assert changed and result["generated"]
    assert reason in result["regenerated_reason"]
    assert len(decode_secret(path.read_text().strip())) == 32
    assert diff["before"]["fingerprint"] == "(invalid)"
    # the reason never quotes the old content
    if content.strip():
        assert content.strip().decode("latin-1") not in result["regenerated_reason"]


def test_valid_hex_psk_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "k.psk"
    path.write_text("0x" + "5a" * 32 + "\n")
    path.chmod(0o600)
    changed, result, _ = run(KeyParams("psk", str(path)))
    assert not changed and result["fingerprint"] == sha256_fp(b"\x5a" * 32)


def test_longer_psk_than_size_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "k.psk"
    run(KeyParams("psk", str(path), size=64))
    changed, _, _ = run(KeyParams("psk", str(path), size=32))
    assert not changed


@pytest.mark.parametrize("loose", [0o644, 0o640, 0o604, 0o666, 0o700])
def test_looser_mode_is_fixed_without_regenerating(tmp_path: Path, loose: int) -> None:
    path = tmp_path / "k.psk"
    _, first, _ = run(KeyParams("psk", str(path)))
    content = path.read_bytes()
    path.chmod(loose)
    changed, result, diff = run(KeyParams("psk", str(path)))
    if loose & 0o077:
        assert changed and result["changes"] == ["mode"]
        assert mode_of(path) == 0o600
        assert diff["before"]["mode"] == f"{loose:04o}" and diff["after"]["mode"] == "0600"
    else:  # 0700: not readable by others; left as it is
        assert not changed and mode_of(path) == loose
    assert path.read_bytes() == content
    assert result["fingerprint"] == first["fingerprint"] and not result["generated"]


def test_tighter_mode_is_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "k.psk"
    run(KeyParams("psk", str(path)))
    path.chmod(0o400)
    changed, result, _ = run(KeyParams("psk", str(path)))
    assert not changed and result["mode"] == "0400"


# --- check mode -----------------------------------------------------------------------------------


def test_check_mode_creates_nothing(tmp_path: Path) -> None:
    path = tmp_path / "k.psk"
    changed, result, diff = run(KeyParams("psk", str(path)), check=True)
    assert changed and not path.exists()
    assert result["fingerprint"] is None and result["changes"] == ["generate"]
    assert result["mode"] == "0600"
    assert diff["before"] == {"state": "absent"}
    assert diff["after"] == {"state": "present", "fingerprint": "(new key)", "mode": "0600"}
    assert list(tmp_path.iterdir()) == []


def test_check_mode_touches_neither_mode_nor_content(tmp_path: Path) -> None:
    path = tmp_path / "k.psk"
    _, first, _ = run(KeyParams("psk", str(path)))
    content = path.read_bytes()
    path.chmod(0o644)
    changed, result, diff = run(KeyParams("psk", str(path)), check=True)
    assert changed and result["changes"] == ["mode"] and mode_of(path) == 0o644
    assert result["fingerprint"] == first["fingerprint"]
    assert diff["after"]["mode"] == "0600" and diff["after"]["fingerprint"] == first["fingerprint"]
    changed, result, diff = run(KeyParams("psk", str(path), force=True), check=True)
    assert changed and result["regenerated_reason"] == "forced" and result["fingerprint"] is None
    assert diff["after"]["fingerprint"] == "(new key)"
    assert path.read_bytes() == content and mode_of(path) == 0o644


# --- parameters and paths -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"type": "psk", "size": 15}, "size: a PSK needs at least 16 bytes, got 15"),
        (
            {"type": "private_key", "key_type": "rsa", "bits": 1024},
            "bits: RSA keys need at least 2048",
        ),
        ({"type": "private_key", "key_type": "dsa"}, "key_type: must be one of"),
        ({"type": "x509"}, "type: must be one of psk, private_key"),
        ({"type": "psk", "owner": "no-such-user-ikelab"}, "owner: no such user"),
        ({"type": "psk", "group": "no-such-group-ikelab"}, "group: no such group"),
    ],
)
def test_bad_parameters_name_the_field(tmp_path: Path, params: dict, field: str) -> None:
    with pytest.raises(KeyFileError, match=field.replace("(", r"\(")):
        KeyFile(KeyParams(path=str(tmp_path / "k"), **params))
    assert list(tmp_path.iterdir()) == []


def test_missing_directory_and_non_files_are_errors(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match=r"path: directory .* does not exist"):
        KeyFile(KeyParams("psk", str(tmp_path / "nope" / "k.psk")))
    (tmp_path / "d").mkdir()
    with pytest.raises(KeyFileError, match="is not a regular file"):
        KeyFile(KeyParams("psk", str(tmp_path / "d")))


def test_symlink_is_followed(tmp_path: Path) -> None:
    real = tmp_path / "real.psk"
    run(KeyParams("psk", str(real)))
    link = tmp_path / "link.psk"
    link.symlink_to(real)
    changed, result, _ = run(KeyParams("psk", str(link)))
    assert not changed and result["path"] == str(real.resolve())


def test_failed_write_leaves_the_old_file_and_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "k.psk"
    run(KeyParams("psk", str(path)))
    old = path.read_bytes()

    def replace(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(keys.os, "replace", replace)
    with pytest.raises(KeyFileError, match="path: cannot write .*No space left on device"):
        run(KeyParams("psk", str(path), force=True))
    assert path.read_bytes() == old
    assert [p.name for p in tmp_path.iterdir()] == ["k.psk"]


def test_write_atomic_replaces_and_sets_0600(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"old")
    path.chmod(0o644)
    keys.write_atomic(str(path), b"new")
    assert path.read_bytes() == b"new" and mode_of(path) == 0o600


@pytest.mark.skipif(os.geteuid() != 0, reason="changing owners needs root")
def test_owner_and_group_are_set(tmp_path: Path) -> None:
    nobody = pwd.getpwnam("nobody")
    path = tmp_path / "k.psk"
    run(KeyParams("psk", str(path)))
    changed, result, diff = run(
        KeyParams("psk", str(path), owner="nobody", group=str(nobody.pw_gid))
    )
    assert changed and result["changes"] == ["owner"]
    st = path.stat()
    assert (st.st_uid, st.st_gid) == (nobody.pw_uid, nobody.pw_gid)
    assert diff["after"]["uid"] == nobody.pw_uid
    changed, _, _ = run(KeyParams("psk", str(path), owner="nobody"))
    assert not changed
    # a new file is written with the owner already set
    new = tmp_path / "n.psk"
    run(KeyParams("psk", str(new), owner="nobody"))
    assert new.stat().st_uid == nobody.pw_uid and mode_of(new) == 0o600


# --- private keys ---------------------------------------------------------------------------------------

KEY_CLASSES = {
    "ed25519": ed25519.Ed25519PrivateKey,
    "ecdsa-p256": ec.EllipticCurvePrivateKey,
    "ecdsa-p384": ec.EllipticCurvePrivateKey,
    "rsa": rsa.RSAPrivateKey,
}


@pytest.mark.parametrize("key_type", sorted(KEY_CLASSES))
def test_private_key_is_pkcs8_pem_0600_with_public_key_and_fingerprint(
    tmp_path: Path, key_type: str
) -> None:
    path = tmp_path / "key.pem"
    changed, result, diff = run(KeyParams("private_key", str(path), key_type=key_type, bits=2048))
    assert changed and mode_of(path) == 0o600
    pem = path.read_bytes()
    assert pem.startswith(b"-----BEGIN PRIVATE KEY-----\n")  # PKCS#8, unencrypted
    key = serialization.load_pem_private_key(pem, password=None)
    assert isinstance(key, KEY_CLASSES[key_type])
    if key_type.startswith("ecdsa"):
        assert key.curve.name == {"ecdsa-p256": "secp256r1", "ecdsa-p384": "secp384r1"}[key_type]
    if key_type == "rsa":
        assert key.key_size == 2048
    pub = key.public_key()
    spki = pub.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert result["fingerprint"] == sha256_fp(spki)
    assert (
        result["public_key"]
        == pub.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode()
    )
    assert result["key_type"] == key_type
    body = b"".join(pem.splitlines()[1:-1])
    assert_no_secret([body, body[:40], body[-40:]], result, diff)
    # idempotent
    changed, again, _ = run(KeyParams("private_key", str(path), key_type=key_type, bits=2048))
    assert not changed and again["fingerprint"] == result["fingerprint"]


def test_wrong_key_type_is_regenerated_with_the_reason(tmp_path: Path) -> None:
    path = tmp_path / "key.pem"
    run(KeyParams("private_key", str(path)))
    changed, result, _ = run(KeyParams("private_key", str(path), key_type="ecdsa-p256"))
    assert changed
    assert (
        result["regenerated_reason"]
        == "invalid private key: wrong key type: ed25519, want ecdsa-p256"
    )
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)


def test_short_rsa_key_is_regenerated(tmp_path: Path) -> None:
    path = tmp_path / "key.pem"
    run(KeyParams("private_key", str(path), key_type="rsa", bits=2048))
    changed, result, _ = run(KeyParams("private_key", str(path), key_type="rsa", bits=3072))
    assert (
        changed and "too short: RSA 2048 bits, want at least 3072" in result["regenerated_reason"]
    )
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    assert key.key_size == 3072


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (
            b"-----BEGIN PRIVATE KEY-----\nnot base64\n-----END PRIVATE KEY-----\n",
            "not a PEM private key",
        ),
        (b"0s" + base64.b64encode(b"k" * 32) + b"\n", "not a PEM private key"),
    ],
)
def test_unparsable_private_key_is_regenerated(tmp_path: Path, content: bytes, reason: str) -> None:
    path = tmp_path / "key.pem"
    path.write_bytes(content)
    changed, result, _ = run(KeyParams("private_key", str(path)))
    assert changed and reason in result["regenerated_reason"]


def test_encrypted_private_key_is_reported_as_such(tmp_path: Path) -> None:
    path = tmp_path / "key.pem"
    key = ed25519.Ed25519PrivateKey.generate()
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"passphrase"),
        )
    )
    changed, result, _ = run(KeyParams("private_key", str(path)), check=True)
    assert (
        changed
        and result["regenerated_reason"] == "invalid private key: the private key is encrypted"
    )


def test_existing_valid_key_in_another_pem_form_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "key.pem"
    key = ec.generate_private_key(ec.SECP256R1())
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)
    changed, _, _ = run(KeyParams("private_key", str(path), key_type="ecdsa-p256"))
    assert not changed


@pytest.mark.parametrize(
    ("key_type", "curve"), [("ecdsa-p256", ec.SECP256R1()), ("ecdsa-p384", ec.SECP384R1())]
)
def test_curve_orders_are_right(key_type: str, curve: ec.EllipticCurve) -> None:
    # (n - 1) * G = -G: same x as the generator (scalar 1), y negated. FIPS 186-4 D.1.2.
    n = keys._CURVE_ORDERS[key_type]
    g = ec.derive_private_key(1, curve).public_key().public_numbers()
    minus_g = ec.derive_private_key(n - 1, curve).public_key().public_numbers()
    assert minus_g.x == g.x and minus_g.y != g.y


def test_ecdsa_scalars_come_from_the_secrets_module(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(keys.secrets, "randbelow", lambda n: 41)
    material = keys.new_private_key("ecdsa-p256")
    key = serialization.load_pem_private_key(material.data, password=None)
    assert key.private_numbers().private_value == 42
    monkeypatch.setattr(keys.secrets, "token_bytes", lambda n: b"\x07" * n)
    material = keys.new_private_key("ed25519")
    key = serialization.load_pem_private_key(material.data, password=None)
    assert key.private_bytes_raw() == b"\x07" * 32


def test_material_repr_hides_the_secret() -> None:
    m = keys.new_psk(32)
    assert m.data.decode().strip() not in repr(m) and "data" not in repr(m)
