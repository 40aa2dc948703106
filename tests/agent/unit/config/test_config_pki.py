"""The configuration's certificate, CRL and private key fields (auth: pubkey)."""

from __future__ import annotations

import os
import shutil

import pytest

from ikeagent.config.model import AuthMethod
from ikeagent.config.schema import ConfigError, load_config, parse_config
from ikelab_testing.pki import TestPki


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    p = TestPki(tmp_path_factory.mktemp("pki"))
    ca = p.ca("Lab Root CA")
    gw = p.issue(ca, "gw-a", ["gw-a.example", "192.0.2.1"], key_type="ecdsa-p256")
    other = p.issue(ca, "gw-b", ["gw-b.example"])
    return p, ca, gw, other


def _conn(local=None, remote=None):
    return {
        "local": local or {},
        "remote": remote or {},
        "children": {"n": {"local_ts": "10.1.0.0/16", "remote_ts": "10.2.0.0/16"}},
    }


def _problems(mapping, base_dir=None):
    with pytest.raises(ConfigError) as info:
        parse_config(mapping, base_dir)
    return dict(info.value.problems)


def test_pubkey_connection_loads_certs_cas_crls_and_finds_the_key(pki):
    p, ca, gw, _ = pki
    crl = p.revoke(ca)
    cfg = parse_config(
        {
            "connections": {
                "c": _conn(
                    {"auth": "pubkey", "id": "gw-a.example", "certs": [str(gw.cert_path)]},
                    {"auth": "pubkey", "cacerts": [str(ca.cert_path)], "crls": [str(crl)]},
                )
            },
            "secrets": {"private-gw": {"file": str(gw.key_path)}},
        }
    )
    conn = cfg.connections["c"]
    assert conn.local.auth is AuthMethod.PUBKEY
    assert conn.local.certs == (gw.cert,)
    assert conn.remote.cacerts == (ca.cert,)
    assert len(conn.remote.crls) == 1 and conn.remote.revocation == "relaxed"
    assert conn.local.key is not None and conn.local.key.problem is None
    assert conn.local.key.key.public_key() == gw.cert.public_key()
    assert cfg.warnings() == []
    assert "BEGIN" not in repr(cfg.private_keys)


def test_local_id_defaults_to_the_subject_and_must_be_in_the_certificate(pki):
    _, ca, gw, _ = pki
    cfg = parse_config(
        {
            "connections": {
                "c": _conn(
                    {"auth": "pubkey", "certs": [str(gw.cert_path)]},
                    {"auth": "pubkey", "cacerts": [str(ca.cert_path)]},
                )
            },
            "secrets": {"private-gw": {"file": str(gw.key_path)}},
        }
    )
    assert cfg.connections["c"].local.id.id_type == 9  # ID_DER_ASN1_DN
    assert cfg.connections["c"].local.id.data == gw.cert.subject.public_bytes()
    problems = _problems(
        {
            "connections": {
                "c": _conn(
                    {"auth": "pubkey", "id": "gw-z.example", "certs": [str(gw.cert_path)]},
                    {"auth": "pubkey", "cacerts": [str(ca.cert_path)]},
                )
            },
            "secrets": {"private-gw": {"file": str(gw.key_path)}},
        }
    )
    assert "'gw-z.example' is not in certificate" in problems["connections.c.local.id"]


def test_missing_key_files_and_bad_certificates_name_the_field(pki, tmp_path):
    _, ca, gw, _ = pki
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    problems = _problems(
        {
            "connections": {
                "junk": _conn(
                    {"auth": "pubkey", "certs": [str(junk)]},
                    {"auth": "pubkey", "cacerts": [str(tmp_path / "absent.pem")]},
                ),
                "psk": _conn({"auth": "psk", "certs": [str(gw.cert_path)]}, {"auth": "psk"}),
            },
            "secrets": {"private-gw": {"file": str(gw.key_path)}, "private-x": {"id": "a"}},
        }
    )
    assert "junk.pem" in problems["connections.junk.local.certs"]
    assert "absent.pem" in problems["connections.junk.remote.cacerts"]
    assert "need auth: pubkey" in problems["connections.psk.local.certs"]
    assert "secrets.private-x.id" in problems


def test_a_certificate_without_any_matching_key_is_an_error(pki):
    _, ca, _, other = pki
    problems = _problems(
        {
            "connections": {
                "c": _conn(
                    {"auth": "pubkey", "certs": [str(other.cert_path)]},
                    {"auth": "pubkey", "cacerts": [str(ca.cert_path)]},
                )
            }
        }
    )
    assert "no private key matches certificate" in problems["connections.c.local.certs"]


def test_a_key_readable_by_others_is_refused_but_reported(pki, tmp_path):
    _, ca, gw, _ = pki
    loose = tmp_path / "gw.key"
    shutil.copy(gw.key_path, loose)
    os.chmod(loose, 0o644)
    cfg = parse_config(
        {
            "connections": {
                "c": _conn(
                    {"auth": "pubkey", "certs": [str(gw.cert_path)]},
                    {"auth": "pubkey", "cacerts": [str(ca.cert_path)]},
                )
            },
            "secrets": {"private-gw": {"file": str(loose)}},
        }
    )
    key = cfg.connections["c"].local.key
    assert key is not None and key.key is None
    assert "readable by others (mode 0644)" in key.problem and str(loose) in key.problem
    [warning] = cfg.warnings()
    assert "private-gw" in warning and "connection(s) c cannot authenticate" in warning


def test_swanctl_folders_beside_the_config_file(pki, tmp_path):
    p, ca, gw, _ = pki
    for folder in ("x509", "x509ca", "x509crl", "private"):
        (tmp_path / folder).mkdir()
    shutil.copy(gw.cert_path, tmp_path / "x509" / "gw.pem")
    shutil.copy(ca.cert_path, tmp_path / "x509ca" / "ca.pem")
    shutil.copy(p.revoke(ca), tmp_path / "x509crl" / "ca.crl")
    shutil.copy(gw.key_path, tmp_path / "private" / "gw.key")
    os.chmod(tmp_path / "private" / "gw.key", 0o600)
    (tmp_path / "agent.yaml").write_text(
        "connections:\n"
        "  c:\n"
        "    local: {auth: pubkey, id: gw-a.example, certs: [gw.pem]}\n"
        "    remote: {auth: pubkey, cacerts: [ca.pem]}\n"
        "    children: {n: {local_ts: 10.1.0.0/16, remote_ts: 10.2.0.0/16}}\n"
    )
    cfg = load_config(str(tmp_path / "agent.yaml"))
    conn = cfg.connections["c"]
    assert conn.local.certs == (gw.cert,) and conn.remote.cacerts == (ca.cert,)
    assert len(conn.remote.crls) == 1  # x509crl/ is always read
    assert conn.local.key is not None and conn.local.key.name == "private/gw.key"


def test_included_files_resolve_their_certificates_beside_themselves(pki, tmp_path):
    _, ca, gw, _ = pki
    sub = tmp_path / "tunnels.d"
    sub.mkdir()
    shutil.copy(gw.cert_path, sub / "gw.pem")
    shutil.copy(ca.cert_path, sub / "ca.pem")
    shutil.copy(gw.key_path, sub / "gw.key")
    os.chmod(sub / "gw.key", 0o600)
    (sub / "t.yaml").write_text(
        "connections:\n"
        "  c:\n"
        "    local: {auth: pubkey, id: gw-a.example, certs: [gw.pem]}\n"
        "    remote: {auth: pubkey, cacerts: ca.pem}\n"
        "    children: {n: {local_ts: 10.1.0.0/16, remote_ts: 10.2.0.0/16}}\n"
        "secrets:\n"
        "  private-gw: {file: gw.key}\n"
    )
    (tmp_path / "agent.yaml").write_text("include: [tunnels.d/*.yaml]\n")
    cfg = load_config(str(tmp_path / "agent.yaml"))
    assert cfg.connections["c"].local.key.key is not None


def test_check_refuses_a_key_others_can_read(pki, tmp_path, capsys):
    from ikeagent.cli.agent import run

    _, ca, gw, _ = pki
    loose = tmp_path / "gw.key"
    shutil.copy(gw.key_path, loose)
    os.chmod(loose, 0o644)
    path = tmp_path / "agent.yaml"
    path.write_text(
        "connections:\n"
        "  c:\n"
        f"    local: {{auth: pubkey, id: gw-a.example, certs: [{gw.cert_path}]}}\n"
        f"    remote: {{auth: pubkey, cacerts: [{ca.cert_path}]}}\n"
        "    children: {n: {local_ts: 10.1.0.0/16, remote_ts: 10.2.0.0/16}}\n"
        "secrets:\n"
        "  private-gw: {file: gw.key}\n"
    )
    assert run(["--config", str(path), "--check"]) == 1
    err = capsys.readouterr().err
    assert "private-gw" in err and "mode 0644" in err and "c cannot authenticate" in err
    os.chmod(loose, 0o600)
    assert run(["--config", str(path), "--check"]) == 0
    assert "1 private key(s)" in capsys.readouterr().out
