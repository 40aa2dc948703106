"""Validation of the lab's parameters: every error names the module option at fault."""

from __future__ import annotations

import pytest

from ansible_collections.ikelab.ipsec.plugins.module_utils.lab.plan import (
    LabParameterError,
    LabSpec,
)


@pytest.mark.parametrize("name", ["", "Ikl", "abcdef", "1ab", "a-b", "ik l", "ikl\n"])
def test_bad_lab_names(name: str) -> None:
    with pytest.raises(LabParameterError) as err:
        LabSpec.parse(name=name)
    assert err.value.field == "name"
    assert str(err.value).startswith("name: ")


@pytest.mark.parametrize("name", ["a", "ikl", "t1234", "lab9"])
def test_good_lab_names(name: str) -> None:
    assert LabSpec.parse(name=name).name == name


@pytest.mark.parametrize("sites", [0, -1, True, "3", 2.0])
def test_bad_site_counts(sites: object) -> None:
    with pytest.raises(LabParameterError) as err:
        LabSpec.parse(sites=sites)  # type: ignore[arg-type]
    assert err.value.field == "sites"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("management_network", "300.1.1.0/24"),
        ("management_network", "198.18.0.1/24"),  # host bits set
        ("management_network", "2001:db8::/64"),
        ("management_network", "198.18.0.0/30"),
        ("underlay_network", "not-a-network"),
        ("lan_pool", "10.0.0.0/24"),  # too small for /24 subnets per site
    ],
)
def test_bad_networks_name_their_field(field: str, value: str) -> None:
    with pytest.raises(LabParameterError) as err:
        LabSpec.parse(**{field: value})
    assert err.value.field == field
    assert str(err.value).startswith(f"{field}: ")


def test_overlapping_networks_are_refused() -> None:
    with pytest.raises(LabParameterError) as err:
        LabSpec.parse(underlay_network="198.18.0.0/25")
    assert err.value.field == "underlay_network"
    assert "overlaps management_network" in str(err.value)
    with pytest.raises(LabParameterError) as err:
        LabSpec.parse(management_network="10.200.0.0/24")
    assert err.value.field == "lan_pool"


def test_small_networks_limit_the_sites() -> None:
    spec = LabSpec.parse(sites=2, underlay_network="192.0.2.0/28")  # .11 .. .14 usable
    assert spec.sites == 2
    with pytest.raises(LabParameterError) as err:
        LabSpec.parse(sites=5, underlay_network="192.0.2.0/28")
    assert err.value.field == "sites"
    assert "underlay_network holds at most 4" in str(err.value)
