"""plugin_utils.proposals: profiles, validation, weak refusal, rendering, negotiation."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ansible_collections.ikelab.ipsec.plugins.plugin_utils import agent_import, proposals
from ansible_collections.ikelab.ipsec.plugins.plugin_utils.proposals import (
    PROFILES,
    WEAK_TOKENS,
    keywords,
    negotiated,
    plan,
    resolve,
    swanctl,
)
from ikeagent.config.schema import parse_config
from ikeagent.crypto import suites
from ikeagent.crypto.suites import Kind, ProposalError, TransformType

KINDS = (Kind.IKE, Kind.ESP)

# --- profiles -----------------------------------------------------------------------------------


@pytest.mark.parametrize("profile", sorted(PROFILES))
@pytest.mark.parametrize("kind", KINDS)
def test_profiles_parse_with_the_agents_own_parser(profile: str, kind: Kind) -> None:
    texts = PROFILES[profile][kind]
    assert texts
    agent = suites.parse_proposals(", ".join(texts), kind)
    assert resolve(profile, kind) == agent
    # profiles are written in normalised form already
    assert keywords(agent) == list(texts)


@pytest.mark.parametrize("profile", sorted(PROFILES))
@pytest.mark.parametrize("kind", KINDS)
def test_profiles_contain_nothing_weak(profile: str, kind: Kind) -> None:
    for p in resolve(profile, kind):
        for a in p.transforms():
            assert a.keyword not in WEAK_TOKENS, (profile, a)
        assert all(suites.dh_info(d.id).name not in ("MODP_1024", "MODP_1536") for d in p.dh)


def test_modern_is_aead_only_and_prefers_x25519() -> None:
    for kind in KINDS:
        ps = resolve("modern", kind)
        assert all(suites.encr_info(a.id).aead for p in ps for a in p.encr)
        assert ps[0].dh[0].keyword == "x25519"
        assert ps[0].encr[0].keyword == "aes256gcm16"
    assert all(p.dh for p in resolve("modern", Kind.ESP))  # PFS


def test_compat_is_cbc_with_hmac_sha2_over_modp2048_or_ecp256() -> None:
    ike = resolve("compat", Kind.IKE)
    assert {a.keyword for p in ike for a in p.encr} <= {"aes256", "aes128"}
    assert {a.keyword for p in ike for a in p.integ} == {"sha256"}
    assert {a.keyword for p in ike for a in p.dh} == {"modp2048", "ecp256"}
    esp = resolve("compat", Kind.ESP)
    assert all(not p.dh for p in esp)  # no PFS: the usual default of older peers
    assert {a.keyword for p in esp for a in p.integ} == {"sha256"}


def test_profile_names_are_case_insensitive_and_kind_may_be_a_string() -> None:
    assert resolve("Modern", "ike") == resolve("modern", Kind.IKE)
    with pytest.raises(ValueError, match="kind must be 'ike' or 'esp'"):
        resolve("modern", "ah")


# --- forms and normalisation ----------------------------------------------------------------------


def test_string_list_and_comma_forms_are_the_same() -> None:
    a = resolve("aes256gcm16-prfsha256-x25519, aes256-sha256-modp2048", Kind.IKE)
    b = resolve(["aes256gcm16-prfsha256-x25519", "aes256-sha256-modp2048"], Kind.IKE)
    c = resolve(["aes256gcm16-prfsha256-x25519,aes256-sha256-modp2048"], Kind.IKE)
    assert a == b == c and len(a) == 2


@pytest.mark.parametrize(
    ("kind", "given", "normalised"),
    [
        (Kind.IKE, "AES256GCM128-PRFSHA2_256-CURVE25519", "aes256gcm16-prfsha256-x25519"),
        (Kind.IKE, "aes256-sha256-prfsha256-modp2048", "aes256-sha256-modp2048"),
        (Kind.IKE, "aes-sha2_256-ecp256", "aes128-sha256-ecp256"),
        (Kind.ESP, "aes256gcm16-noesn", "aes256gcm16"),
        (Kind.ESP, "aes256gcm-esn", "aes256gcm16-esn"),
        (Kind.ESP, "aes128-sha256-sha256", "aes128-sha256"),
    ],
)
def test_normalised_keywords(kind: Kind, given: str, normalised: str) -> None:
    assert keywords(resolve(given, kind)) == [normalised]


# --- errors name the proposal, the token and the reason -------------------------------------------


@pytest.mark.parametrize(
    ("kind", "text", "token", "reason"),
    [
        (Kind.IKE, "aes256-foo-modp2048", "foo", "unknown algorithm keyword"),
        (Kind.IKE, "aes256ccm16-prfsha256-x25519", "aes256ccm16", "algorithm not supported"),
        (Kind.IKE, "aes256gcm16-aes256-prfsha256-x25519", "aes256gcm16, aes256", "cannot be mixed"),
        (Kind.IKE, "aes256gcm16-x25519", "aes256gcm16", "a PRF (prfX) is mandatory"),
        (Kind.IKE, "aes256-modp2048", "aes256", "an integrity algorithm is mandatory"),
        (Kind.IKE, "aes256gcm16-prfsha256", "aes256gcm16-prfsha256", "a DH group is mandatory"),
        (Kind.IKE, "aes256gcm16-prfsha256-x25519-esn", "esn", "ESN is not negotiated"),
        (Kind.ESP, "aes256gcm16-prfsha256", "prfsha256", "a PRF is not negotiated for ESP"),
        (Kind.ESP, "aes256gcm16--x25519", "aes256gcm16--x25519", "empty algorithm keyword"),
    ],
)
def test_errors_name_proposal_token_and_reason(
    kind: Kind, text: str, token: str, reason: str
) -> None:
    with pytest.raises(ProposalError) as exc:
        resolve(["aes256gcm16-prfsha256-x25519" if kind is Kind.IKE else "aes256gcm16", text], kind)
    msg = str(exc.value)
    assert msg.startswith(f"{kind.value} proposal {text!r}: ")
    assert token in msg and reason in msg
    # the agent's own reason, reused verbatim
    with pytest.raises(ProposalError) as agent_exc:
        suites.parse_proposal(text, kind)
    assert msg.endswith(str(agent_exc.value))


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ([], "empty proposal list"),
        ("", "empty proposal list"),
        (" , ", "empty proposal list"),
        (5, "got a number"),
        ({"a": 1}, "got a mapping"),
        (None, "got null"),
        (["aes256gcm16", 3], "must be a string of keywords"),
        (["modern"], "a profile name is given alone"),
    ],
)
def test_bad_forms_are_refused(value: object, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        resolve(value, Kind.ESP)


# --- weak algorithms --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "text", "token", "reason"),
    [
        (Kind.IKE, "aes256-sha1-modp2048", "sha1", "SHA-1 integrity"),
        (Kind.IKE, "aes256-sha-modp2048", "sha", "SHA-1 integrity"),
        (Kind.IKE, "aes256gcm16-prfsha1-x25519", "prfsha1", "SHA-1 PRF"),
        (Kind.ESP, "aes256-sha1", "sha1", "SHA-1 integrity"),
        (Kind.IKE, "3des-sha256-modp2048", "3des", "64-bit block cipher"),
        (Kind.ESP, "des-sha256", "des", "64-bit block cipher"),
        (Kind.ESP, "blowfish-sha256", "blowfish", "64-bit block cipher"),
        (Kind.ESP, "null-sha256", "null", "null encryption"),
        (Kind.IKE, "aes256-md5-modp2048", "md5", "MD5"),
        (Kind.IKE, "aes256-sha256-modp1024", "modp1024", "smaller than 2048"),
        (Kind.IKE, "aes256-sha256-modp1536", "modp1536", "smaller than 2048"),
        (Kind.IKE, "aes256-sha256-modp768", "modp768", "smaller than 2048"),
        (Kind.IKE, "aes256-sha256-modp2048s256", "modp2048s256", "RFC 5114"),
        (Kind.ESP, "aes256gcm16-modp1024", "modp1024", "smaller than 2048"),
    ],
)
def test_weak_algorithms_are_refused_with_the_reason(
    kind: Kind, text: str, token: str, reason: str
) -> None:
    with pytest.raises(ProposalError) as exc:
        resolve(text, kind)
    msg = str(exc.value)
    assert f"{kind.value} proposal {text!r}: {token}: weak algorithm" in msg
    assert reason in msg and "allow_weak" in msg


def test_allow_weak_accepts_what_the_agent_implements() -> None:
    (p,) = resolve("aes256-sha1-modp2048", Kind.IKE, allow_weak=True)
    assert [a.keyword for a in p.integ] == ["sha1"]
    assert [a.keyword for a in p.prf] == ["prfsha1"]
    assert keywords(resolve("aes128-sha1", Kind.ESP, allow_weak=True)) == ["aes128-sha1"]


@pytest.mark.parametrize("token", ["des", "3des", "md5", "modp1024", "null"])
def test_allow_weak_still_refuses_what_the_agent_does_not_implement(token: str) -> None:
    text = {
        "des": "des-sha256",
        "3des": "3des-sha256",
        "md5": "aes256-md5",
        "modp1024": "aes256-sha256-modp1024",
        "null": "null-sha256",
    }[token]
    with pytest.raises(ProposalError, match="the agent does not implement it") as exc:
        resolve(text, Kind.ESP, allow_weak=True)
    assert token in str(exc.value)


def test_every_weak_token_is_refused_without_allow_weak() -> None:
    for token, reason in WEAK_TOKENS.items():
        with pytest.raises(ProposalError, match="weak algorithm") as exc:
            resolve(f"aes256-sha256-{token}", Kind.ESP)
        assert f": {token}: " in str(exc.value) and reason in str(exc.value)


def test_weak_algorithms_known_to_the_agents_table_are_covered() -> None:
    # every keyword the agent's table refuses as weak has a reason here
    agent_weak = set(suites._WEAK)  # the table's own list of weak keywords
    assert agent_weak <= set(WEAK_TOKENS)
    # and every SHA-1 spelling the table accepts is weak here
    for row in suites.TABLE:
        if row.algorithm.type in (TransformType.INTEG, TransformType.PRF):
            weak = row.algorithm.id == 2  # HMAC-SHA1 (RFC 7296 3.3.2)
            for word in (row.algorithm.keyword, *row.aliases):
                refused = False
                try:
                    resolve(
                        f"aes256-sha256-{word}-modp2048"
                        if row.algorithm.type is TransformType.PRF
                        else f"aes256-{word}-modp2048",
                        Kind.IKE,
                    )
                except ProposalError:
                    refused = True
                assert refused == weak, word


# --- rendering round-trips through the agent ----------------------------------------------------------


def _config(ike: object, esp: object) -> dict[str, object]:
    return {
        "connections": {
            "peer": {
                "remote_addrs": ["192.0.2.2"],
                "proposals": ike,
                "local": {"auth": "psk", "id": "gw-a.example"},
                "remote": {"auth": "psk", "id": "gw-b.example"},
                "children": {
                    "net": {
                        "local_ts": ["10.1.0.0/24"],
                        "remote_ts": ["10.2.0.0/24"],
                        "esp_proposals": esp,
                    }
                },
            }
        },
        "secrets": {"ike-peer": {"id": ["gw-a.example", "gw-b.example"], "secret": "0sAAAA"}},
    }


@pytest.mark.parametrize(
    ("ike", "esp", "allow_weak"),
    [
        ("modern", "modern", False),
        ("compat", "compat", False),
        (
            [
                "aes128gcm16-aes256gcm16-chacha20poly1305-prfsha512-ecp384-ecp521",
                "aes192-sha384-sha512-modp3072-modp4096",
            ],
            ["aes128gcm12-esn-noesn", "aes256-sha512-modp8192-esn"],
            False,
        ),
        ("aes256-sha1-modp2048", "aes128-sha1", True),
    ],
)
def test_rendered_strings_are_accepted_by_the_agents_config_schema(
    ike: object, esp: object, allow_weak: bool
) -> None:
    result = plan(ike, esp, allow_weak)
    ss = result["strongswan"]
    want_ike, want_esp = resolve(ike, Kind.IKE, allow_weak), resolve(esp, Kind.ESP, allow_weak)
    # swanctl.conf string form
    cfg = parse_config(_config(ss["proposals"], ss["esp_proposals"]))
    conn = cfg.connections["peer"]
    assert conn.proposals == want_ike
    assert conn.children["net"].esp_proposals == want_esp
    # the normalised lists, as YAML lists
    cfg = parse_config(_config(result["ike"], result["esp"]))
    assert cfg.connections["peer"].proposals == want_ike
    assert cfg.connections["peer"].children["net"].esp_proposals == want_esp
    assert ss == swanctl(want_ike, want_esp)
    assert ss["proposals"] == ",".join(result["ike"])
    assert "negotiated" not in result


# --- negotiation with a peer ----------------------------------------------------------------------------


def test_same_profile_negotiates_its_first_proposal() -> None:
    for profile in PROFILES:
        result = plan(profile, profile, peer={"ike": profile, "esp": profile})
        first_ike, first_esp = PROFILES[profile][Kind.IKE][0], PROFILES[profile][Kind.ESP][0]
        assert result["negotiated"] == {
            "ike": {"as_initiator": first_ike, "as_responder": first_ike},
            "esp": {"as_initiator": first_esp, "as_responder": first_esp},
        }


def test_roles_can_differ_and_peer_defaults_to_modern() -> None:
    result = plan(
        ["aes128gcm16-aes256gcm16-prfsha384-x25519"],
        ["aes128gcm16-aes256gcm16-x25519"],
        peer={"ike": ["aes256gcm16-aes128gcm16-prfsha384-x25519"]},
    )
    neg = result["negotiated"]
    assert neg["ike"] == {
        "as_initiator": "aes256gcm16-prfsha384-x25519",  # the peer responds: its order
        "as_responder": "aes128gcm16-prfsha384-x25519",  # we respond: our order
    }
    # the peer's esp defaults to modern (aes256gcm16 only)
    assert neg["esp"] == {
        "as_initiator": "aes256gcm16-x25519",
        "as_responder": "aes256gcm16-x25519",
    }


def test_nothing_in_common_names_what_each_side_offers() -> None:
    with pytest.raises(ProposalError) as exc:
        plan("modern", "modern", peer={"ike": "compat", "esp": "modern"})
    msg = str(exc.value)
    assert msg.startswith("no common IKE proposal")
    assert "this side offers aes256gcm16-prfsha384-x25519, " in msg
    assert "the peer offers aes256-sha256-modp2048, " in msg


def test_esp_pfs_mismatch_is_explained() -> None:
    with pytest.raises(ProposalError) as exc:
        plan("modern", ["aes256gcm16"], peer={"esp": "modern"})
    msg = str(exc.value)
    assert "no common ESP proposal with PFS" in msg and "rekey" in msg
    assert "this side none" in msg and "ecp256, x25519" in msg


def test_peer_errors_are_marked_as_the_peers() -> None:
    with pytest.raises(ProposalError, match=r"^peer: ike proposal 'aes256-sha1-modp2048': sha1"):
        plan(peer={"ike": "aes256-sha1-modp2048"})
    with pytest.raises(ValueError, match="peer: unknown key"):
        plan(peer={"ike": "modern", "proposals": "x"})


def test_negotiated_helper_matches_the_agents_negotiation() -> None:
    from ikeagent.crypto.negotiation import negotiate

    ours, theirs = resolve("compat", Kind.IKE), resolve("aes128-sha256-modp2048", Kind.IKE)
    n = negotiate(ours, theirs)
    assert negotiated(ours, theirs, "ike") == {
        "as_initiator": suites.format_proposal(n.as_initiator),
        "as_responder": suites.format_proposal(n.as_responder),
    }
    assert negotiated(ours, theirs, "ike")["as_initiator"] == "aes128-sha256-modp2048"


# --- the bundled agent is found without an installed one ------------------------------------------------


def test_agent_import_root_is_the_collection_root() -> None:
    assert (agent_import.AGENT_SOURCE / "ikeagent" / "crypto" / "suites.py").is_file()
    assert (agent_import.COLLECTION_ROOT / "galaxy.yml").is_file()
    with pytest.raises(ValueError, match="not a module of the agent"):
        agent_import.import_agent_module("os")


def test_bundled_agent_is_used_when_none_is_installed() -> None:
    collections = Path(proposals.__file__).resolve().parents[2] / ".collections"
    code = (
        "import sys\n"
        f"sys.path.insert(0, {str(collections)!r})\n"
        "import importlib.util\n"
        "assert importlib.util.find_spec('ikeagent') is None, 'ikeagent is installed'\n"
        "from ansible_collections.ikelab.ipsec.plugins.plugin_utils import proposals\n"
        "import ikeagent\n"
        "print(ikeagent.__file__)\n"
        "print(proposals.plan('modern', 'compat')['strongswan']['esp_proposals'])\n"
    )
    # -S: no site-packages, so the editable install of the agent is not on the path
    out = subprocess.run(
        [sys.executable, "-S", "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
    ).stdout.splitlines()
    assert Path(out[0]).resolve().is_relative_to(agent_import.AGENT_SOURCE.resolve())
    assert out[1] == "aes256-sha256,aes128-sha256"


def test_ikev1_defaults_to_compat_and_negotiates_with_an_ikev1_peer() -> None:
    out = proposals.plan(version=1, peer={"ike": "aes128-sha256-modp2048"})
    assert out["ike"] == list(proposals.PROFILES["compat"][Kind.IKE])
    assert out["negotiated"]["ike"] == {
        "as_initiator": "aes128-sha256-modp2048",
        "as_responder": "aes128-sha256-modp2048",
    }
    # IKEv2 keeps the modern default
    assert proposals.plan()["ike"] == list(proposals.PROFILES["modern"][Kind.IKE])


@pytest.mark.parametrize(
    "args,field,reason",
    [
        ({"ike": "modern"}, "ike", "AEAD"),
        ({"esp": "chacha20poly1305"}, "esp", "chacha20poly1305"),
        ({"peer": {"ike": "aes256gcm16-prfsha256-x25519"}}, "peer: ike", "AEAD"),
    ],
)
def test_ikev1_refuses_what_ikev1_cannot_express(args: dict, field: str, reason: str) -> None:
    with pytest.raises(ValueError) as err:
        proposals.plan(version=1, **args)
    text = str(err.value)
    assert text.startswith(f"{field}: cannot be used with IKEv1") and reason in text, text
    if "peer" not in args:
        proposals.plan(version=2, **args)  # the same is fine for IKEv2


def test_version_other_than_1_or_2_is_refused() -> None:
    with pytest.raises(ValueError, match="version"):
        proposals.plan(version=3)
