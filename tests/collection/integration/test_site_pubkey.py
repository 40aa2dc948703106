"""The collection's playbooks rolling out a fleet that authenticates with certificates: two lab
sites and ``ikelab_auth: pubkey`` (the role makes a lab CA and a certificate per gateway on the
controller and gives each gateway only its own key), site.yml brings the tunnel up over IKEv2
and then IKEv1, verify.yml proves it with traffic, a second run (with --diff) changes nothing,
the gateways' key files are 0600, the CA's key is on no gateway, and no key material appears
in Ansible's output."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from ikelab_testing.ansible_lab import LabRun, new_lab, site_playbook

pytestmark = [pytest.mark.netns, pytest.mark.slow]

HOSTS = ["site1", "site2"]
PKI = "/etc/ikelab/pki"


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabRun]:
    run = new_lab(tmp_path_factory.mktemp("pubkey"), "k", len(HOSTS))
    run.build()
    yield run
    run.playbook("teardown.yml")


def pubkey(lab: LabRun, **extra: object) -> list[str]:
    """Extra vars: certificates, with the controller's PKI in the test's own directory."""
    return [
        "-e",
        json.dumps({"ikelab_auth": "pubkey", "ikelab_pki_dir": str(lab.tmp / "pki"), **extra}),
    ]


def sas(lab: LabRun, host: str) -> list[dict]:
    result = lab.adhoc(host, "ikelab.ipsec.sa_info", {"socket": "/run/ikelab/ikeagent.sock"})
    return result[host]["sas"]


def verified(lab: LabRun, *args: str) -> None:
    run = site_playbook(lab, "verify.yml", *args)
    assert run.returncode == 0, run.output[-4000:]
    rows = re.findall(r"^\s*(site\d--site\d)\s.*\s(verified|FAILED)\s*$", run.stdout, re.M)
    assert rows == [("site1--site2", "verified")], run.stdout[-3000:]


def key_material(lab: LabRun) -> list[str]:
    """The base64 lines of every private key on the controller (the CA's and the gateways')."""
    lines = []
    for path in sorted((lab.tmp / "pki").glob("*.key")):
        lines += [line for line in path.read_text().splitlines() if not line.startswith("-----")]
    assert len(lines) >= 3, lines
    return lines


def changed_tasks(output: str) -> list[str]:
    """The tasks that reported a change (for a failure's message)."""
    found, task = [], ""
    for line in output.splitlines():
        if line.startswith("TASK ["):
            task = line
        elif line.startswith("changed:") and task not in found:
            found.append(task)
    return found


def fragment(lab: LabRun, host: str, name: str) -> dict:
    path = f"/etc/ikelab/tunnels.d/{name}.yaml"
    content = lab.adhoc(host, "ansible.builtin.slurp", {"src": path})[host]["content"]
    return yaml.safe_load(base64.b64decode(content))


def assert_no_key_material(lab: LabRun, output: str) -> None:
    leaked = [line for line in key_material(lab) if line in output]
    assert not leaked, leaked


def test_an_ikev2_fleet_with_certificates_rolls_out_and_is_verified(lab: LabRun) -> None:
    run = site_playbook(lab, "site.yml", *pubkey(lab))
    assert run.returncode == 0, run.output[-4000:]
    assert_no_key_material(lab, run.output)
    for host in HOSTS:
        [sa] = sas(lab, host)
        assert (sa["version"], sa["state"]) == (2, "ESTABLISHED"), sa
        [child] = sa["children"]
        assert child["state"] == "INSTALLED", child
    verified(lab, *pubkey(lab))
    # the SAs came up from fragments that hold no PSK at all: certificates authenticated them
    doc = fragment(lab, "site1", "site2")
    assert doc["connections"]["site2"]["local"] == {
        "auth": "pubkey",
        "id": "site1",
        "certs": [f"{PKI}/site1.crt"],
    }
    assert doc["secrets"] == {"private-site2": {"file": f"{PKI}/site1.key"}}

    # each gateway: its own key 0600, its certificate and the CA certificate 0644, no CA key,
    # and not the other gateway's key
    for host in HOSTS:
        other = next(h for h in HOSTS if h != host)
        stats = {
            name: lab.adhoc(host, "ansible.builtin.stat", {"path": f"{PKI}/{name}"})[host]["stat"]
            for name in (f"{host}.key", f"{host}.crt", "ca.crt", "ca.key", f"{other}.key")
        }
        assert stats[f"{host}.key"]["mode"] == "0600", stats
        assert stats[f"{host}.crt"]["mode"] == stats["ca.crt"]["mode"] == "0644", stats
        assert not stats["ca.key"]["exists"] and not stats[f"{other}.key"]["exists"], stats
    assert (lab.tmp / "pki" / "ca.key").stat().st_mode & 0o077 == 0

    again = site_playbook(lab, "site.yml", "--diff", *pubkey(lab))
    assert again.returncode == 0, again.output[-4000:]
    assert again.changed() == dict.fromkeys(HOSTS, 0), changed_tasks(again.output)
    assert_no_key_material(lab, again.output)


def test_the_same_certificates_serve_ikev1(lab: LabRun) -> None:
    before = {p.name: p.read_bytes() for p in Path(lab.tmp / "pki").iterdir()}
    args = pubkey(lab, ikelab_ike_version=1)
    run = site_playbook(lab, "site.yml", *args)
    assert run.returncode == 0, run.output[-4000:]
    assert_no_key_material(lab, run.output)
    for host in HOSTS:
        [sa] = sas(lab, host)
        assert (sa["version"], sa["mode"], sa["state"]) == (1, "main", "ESTABLISHED"), sa
    verified(lab, *args)
    # nothing was reissued on the controller
    assert {p.name: p.read_bytes() for p in Path(lab.tmp / "pki").iterdir()} == before
    again = site_playbook(lab, "site.yml", *args)
    assert again.returncode == 0, again.output[-4000:]
    assert again.changed() == dict.fromkeys(HOSTS, 0), changed_tasks(again.output)


def test_a_brought_certificate_without_the_identity_is_refused(lab: LabRun) -> None:
    """Bring your own: site2's certificate is site1's; the run fails naming the field before
    any host is touched."""
    pki = lab.tmp / "pki"
    args = pubkey(lab, ikelab_ca_cert=str(pki / "ca.crt"), ikelab_ca_key=str(pki / "ca.key"))
    inventory = lab.tmp / "byo.yml"
    inventory.write_text(
        json.dumps(
            {
                "sites": {
                    "hosts": {
                        "site2": {
                            "ikelab_cert": str(pki / "site1.crt"),
                            "ikelab_key": str(pki / "site1.key"),
                        }
                    }
                }
            }
        )
    )
    refused = site_playbook(lab, "site.yml", *args, inventories=(inventory,))
    assert refused.returncode != 0
    assert "subject_alt_names: the certificate does not carry 'site2'" in refused.output, (
        refused.output[-3000:]
    )
    assert refused.changed() == dict.fromkeys(HOSTS, 0), changed_tasks(refused.output)
    assert_no_key_material(lab, refused.output)
