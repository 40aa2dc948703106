"""Certificate authentication (``auth: pubkey``) in the planner, the tunnel fragment and the
tunnel backend: the entries name each host's own certificate and key and the CA, no PSK file
is needed, the fragment is the agent's documented format (and its schema accepts it with real
certificates made by keygen), a reissued certificate changes the fragment, and nothing secret
appears in results or diffs."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from test_plan import MESH, SECRETS, inventory, plan, problems
from test_tunnel_backend import FakeAgent, SchemaValidator

from ansible_collections.ikelab.ipsec.plugins.filter.tunnels import tunnel_set_entries
from ansible_collections.ikelab.ipsec.plugins.module_utils import tunnel_backend as tb
from ansible_collections.ikelab.ipsec.plugins.module_utils import tunnel_config as tc
from ansible_collections.ikelab.ipsec.plugins.module_utils.cert_files import CertFile, CertParams

PKI = "/etc/ikelab/pki"


def entries_of(p: Any) -> dict[tuple[str, str], dict[str, Any]]:
    return {(host, e["peer"]): e for host, es in p.hosts.items() for e in es}


# --- the planner ---------------------------------------------------------------------------------


def test_pubkey_entries_name_each_hosts_own_certificate_key_and_the_ca() -> None:
    p = plan(
        inventory(3), topology=MESH, auth="pubkey", generate_keys=False, exists=lambda _: False
    )
    entries = entries_of(p)
    assert len(entries) == 6
    for (host, peer), e in entries.items():
        assert e["auth"] == "pubkey"
        assert e["certs"] == [f"{PKI}/{host}.crt"]
        assert e["private_key"] == f"{PKI}/{host}.key"
        assert e["cacerts"] == [f"{PKI}/ca.crt"]
        assert e["psk_file"] is None
        assert (e["local_id"], e["remote_id"]) == (host, peer)
    for t in p.tunnels:
        assert (t["auth"], t["psk_file"], t["psk_present"]) == ("pubkey", None, None)


def test_psk_plans_are_unchanged_and_still_need_their_key_files() -> None:
    p = plan(inventory(2), topology=MESH)
    (e, _) = [e for es in p.hosts.values() for e in es]
    assert e["psk_file"] == f"{SECRETS}/site1--site2.psk"
    assert not {"auth", "certs", "private_key", "cacerts"} & set(e)
    assert p.tunnels[0]["auth"] == "psk"
    lines = problems(inventory(2), topology=MESH, generate_keys=False, exists=lambda _: False)
    assert len(lines) == 1 and "field psk_file: missing key" in lines[0]


def test_pki_dir_and_identities_follow_the_inventory() -> None:
    hv = inventory(2, site1={"ikelab_ike_id": "gw1.example"})
    p = plan(hv, topology=MESH, auth="pubkey", pki_dir="/srv/pki/")
    e = entries_of(p)[("site1", "site2")]
    assert e["certs"] == ["/srv/pki/site1.crt"] and e["cacerts"] == ["/srv/pki/ca.crt"]
    assert e["local_id"] == "gw1.example"
    assert entries_of(p)[("site2", "site1")]["remote_id"] == "gw1.example"


@pytest.mark.parametrize(
    ("kw", "expected"),
    [
        ({"auth": "cert"}, "field auth: invalid: expected one of psk, pubkey"),
        ({"auth": "pubkey", "pki_dir": "pki"}, "field pki_dir: invalid: expected an absolute path"),
    ],
)
def test_bad_auth_settings_name_the_field(kw: dict[str, Any], expected: str) -> None:
    (line,) = problems(inventory(2), topology=MESH, **kw)
    assert expected in line


# --- the fragment ------------------------------------------------------------------------------


def params_of(p: Any, host: str) -> dict[str, Any]:
    (params,) = tunnel_set_entries(p.hosts[host], with_keys=False)
    return params


def test_the_fragment_is_the_agents_documented_format() -> None:
    p = plan(inventory(2), topology=MESH, auth="pubkey")
    spec = tc.TunnelSpec.from_params(params_of(p, "site1"))
    doc = yaml.safe_load(tc.render(spec, None))
    conn = doc["connections"]["site2"]
    assert conn["local"] == {"auth": "pubkey", "id": "site1", "certs": [f"{PKI}/site1.crt"]}
    assert conn["remote"] == {"auth": "pubkey", "id": "site2", "cacerts": [f"{PKI}/ca.crt"]}
    assert doc["secrets"] == {"private-site2": {"file": f"{PKI}/site1.key"}}


@pytest.mark.parametrize(
    ("over", "field"),
    [
        ({"certs": ["site1.crt"]}, "certs[0]"),
        ({"cacerts": None}, "cacerts"),
        ({"private_key": None}, "private_key"),
        ({"private_key": "key.pem"}, "private_key[0]"),
        ({"psk": "0sAAAA"}, "psk"),
        ({"auth": "rsa"}, "auth"),
    ],
)
def test_pubkey_parameters_name_the_field(over: dict[str, Any], field: str) -> None:
    base = params_of(plan(inventory(2), topology=MESH, auth="pubkey"), "site1")
    with pytest.raises(tc.SpecError) as e:
        tc.TunnelSpec.from_params(base | over)
    assert e.value.field == field


def test_certificate_paths_are_refused_with_a_psk() -> None:
    base = params_of(plan(inventory(2), topology=MESH), "site1")
    with pytest.raises(tc.SpecError) as e:
        tc.TunnelSpec.from_params(base | {"certs": ["/x.crt"]})
    assert e.value.field == "certs" and "only applies to auth pubkey" in str(e.value)


# --- with real certificates --------------------------------------------------------------------


@pytest.fixture
def pki(tmp_path: Path) -> Path:
    """A lab CA and site1's and site2's certificates, made by keygen's backend."""
    d = tmp_path / "pki"
    d.mkdir()
    CertFile(CertParams("ca", str(d / "ca.crt"), str(d / "ca.key"), common_name="Lab CA")).apply()
    for host in ("site1", "site2"):
        CertFile(
            CertParams(
                "certificate",
                str(d / f"{host}.crt"),
                str(d / f"{host}.key"),
                subject_alt_names=(host,),
                ca_cert=str(d / "ca.crt"),
                ca_key=str(d / "ca.key"),
            )
        ).apply()
    return d


def pubkey_params(pki: Path, host: str = "site1") -> dict[str, Any]:
    p = plan(inventory(2), topology=MESH, auth="pubkey", pki_dir=str(pki))
    return params_of(p, host)


def test_the_agent_loads_the_fragment_with_the_certificates_and_key(pki: Path) -> None:
    from ikeagent.config.model import AuthMethod
    from ikeagent.config.schema import load_config

    spec = tc.TunnelSpec.from_params(pubkey_params(pki))
    path = pki.parent / "site2.yaml"
    path.write_text(tc.render(spec, None, tc.certificate_stamps(spec)))
    path.chmod(0o600)
    cfg = load_config(str(path))
    conn = cfg.connections["site2"]
    assert conn.local.auth == AuthMethod.PUBKEY and conn.remote.auth == AuthMethod.PUBKEY
    (cert,) = conn.local.certs
    assert cert.subject.rfc4514_string() == "CN=site1"
    assert [c.subject.rfc4514_string() for c in conn.remote.cacerts] == ["CN=Lab CA"]
    assert conn.local.key is not None and conn.local.key.problem is None


def test_stamps_carry_the_certificate_fingerprints_and_follow_a_reissue(pki: Path) -> None:
    spec = tc.TunnelSpec.from_params(pubkey_params(pki))
    stamps = tc.certificate_stamps(spec)
    site1 = CertFile(
        CertParams(
            "certificate",
            str(pki / "site1.crt"),
            str(pki / "site1.key"),
            subject_alt_names=("site1",),
            ca_cert=str(pki / "ca.crt"),
            ca_key=str(pki / "ca.key"),
        )
    )
    assert stamps == (
        f"local.certs[0] {pki}/site1.crt {site1.dump()['fingerprint']}",
        f"remote.cacerts[0] {pki}/ca.crt {tc.certificate_fingerprint(str(pki / 'ca.crt'))}",
    )
    text = tc.render(spec, None, stamps)
    assert tc.redact(text) == text  # nothing secret; the stamps survive redaction
    # a reissued certificate (other identities) changes the fragment
    CertFile(
        CertParams(
            "certificate",
            str(pki / "site1.crt"),
            str(pki / "site1.key"),
            subject_alt_names=("site1", "192.0.2.11"),
            ca_cert=str(pki / "ca.crt"),
            ca_key=str(pki / "ca.key"),
        ),
        clock=lambda: dt.datetime.now(dt.UTC),
    ).apply()
    assert tc.render(spec, None, tc.certificate_stamps(spec)) != text
    os.unlink(pki / "ca.crt")
    assert tc.certificate_stamps(spec)[1].endswith(" (missing)")


def test_backend_writes_the_pubkey_fragment_without_a_psk(pki: Path, tmp_path: Path) -> None:
    agent = FakeAgent()
    params = pubkey_params(pki) | {"name": "site-b", "config_dir": str(tmp_path / "etc")}
    b = tb.TunnelBackend(params, agent, SchemaValidator())
    assert b.needs_change() and b.plan.write
    b.apply()
    result, diff = b.dump(), b.diff()
    assert result["auth"] == "pubkey" and "psk_fingerprint" not in result
    assert result["certificates"][f"{pki}/site1.crt"].startswith("SHA256:")
    text = (tmp_path / "etc" / "tunnels.d" / "site-b.yaml").read_text()
    assert "private-site-b:" in text and "secret:" not in text
    key_pem = (pki / "site1.key").read_text()
    body = [line for line in key_pem.splitlines() if not line.startswith("-----")]
    for shown in (str(result), str(diff)):
        assert not any(line in shown for line in body)
    # the second run changes nothing
    again = tb.TunnelBackend(params, agent, SchemaValidator())
    assert not again.needs_change()
