"""The collection's playbooks rolling out an IKEv1 fleet: two lab sites, ``ikelab_ike_version:
1`` and nothing else (the planner gives IKEv1 tunnels the compat proposals), site.yml brings
the tunnel up in Main Mode, verify.yml proves it with traffic, and a second run changes
nothing; then Aggressive Mode is refused without its opt-in and comes up with it."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import pytest

from ikelab_testing.ansible_lab import LabRun, new_lab, site_playbook

pytestmark = [pytest.mark.netns, pytest.mark.slow]

HOSTS = ["site1", "site2"]
V1 = ["-e", json.dumps({"ikelab_ike_version": 1})]
AGGRESSIVE = {"ikelab_ike_version": 1, "ikelab_ike_aggressive": True}


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabRun]:
    run = new_lab(tmp_path_factory.mktemp("ikev1"), "v", len(HOSTS))
    run.build()
    yield run
    run.playbook("teardown.yml")


def sas(lab: LabRun, host: str) -> list[dict]:
    result = lab.adhoc(host, "ikelab.ipsec.sa_info", {"socket": "/run/ikelab/ikeagent.sock"})
    return result[host]["sas"]


def verified(lab: LabRun, *args: str) -> None:
    run = site_playbook(lab, "verify.yml", *args)
    assert run.returncode == 0, run.output[-4000:]
    rows = re.findall(r"^\s*(site\d--site\d)\s.*\s(verified|FAILED)\s*$", run.stdout, re.M)
    assert rows == [("site1--site2", "verified")], run.stdout[-3000:]


def test_an_ikev1_fleet_rolls_out_in_main_mode_and_is_verified(lab: LabRun) -> None:
    run = site_playbook(lab, "site.yml", *V1)
    assert run.returncode == 0, run.output[-4000:]
    for host in HOSTS:
        [sa] = sas(lab, host)
        assert (sa["version"], sa["mode"], sa["state"]) == (1, "main", "ESTABLISHED"), sa
        # compat: AES-CBC with HMAC-SHA2-256 over MODP-2048, chosen without being asked for
        assert (sa["encryption"], sa["dh"]) == ("AES_CBC_256", "MODP_2048"), sa
        [child] = sa["children"]
        assert child["state"] == "INSTALLED" and child["encryption"] == "AES_CBC_256", child
    verified(lab, *V1)
    again = site_playbook(lab, "site.yml", *V1)
    assert again.returncode == 0 and again.changed() == dict.fromkeys(HOSTS, 0), again.recap


def test_aggressive_mode_needs_its_opt_in(lab: LabRun) -> None:
    refused = site_playbook(lab, "site.yml", "-e", json.dumps(AGGRESSIVE))
    assert refused.returncode != 0
    assert "allow_aggressive_psk" in refused.output, refused.output[-3000:]
    assert refused.changed() == dict.fromkeys(HOSTS, 0), refused.recap
    allowed = {**AGGRESSIVE, "ikelab_allow_aggressive_psk": True}
    run = site_playbook(lab, "site.yml", "-e", json.dumps(allowed))
    assert run.returncode == 0, run.output[-4000:]
    for host in HOSTS:
        [sa] = sas(lab, host)
        assert (sa["version"], sa["mode"]) == (1, "aggressive"), sa
    verified(lab, "-e", json.dumps(allowed))
