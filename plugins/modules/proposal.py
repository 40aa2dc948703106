#!/usr/bin/python
# Copyright: contributors to the ikelab.ipsec collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

# Documentation only: the module is the action plugin plugins/action/proposal.py, which runs
# on the controller.

from __future__ import annotations

DOCUMENTATION = r"""
---
module: proposal
short_description: Validate, normalise and render IKE and ESP proposals, and predict negotiation
version_added: "0.1.0"
description:
  - Checks IKE and ESP proposals written as strongSwan keywords (for example
    C(aes256gcm16-prfsha384-x25519)) against the ikelab agent's own algorithm table, and
    returns them normalised and in swanctl.conf syntax.
  - Unknown keywords and unusable combinations are refused, naming the proposal, the token and
    the reason. Weak algorithms (DES and 3DES, 64-bit block ciphers, null encryption, MD5,
    SHA-1 integrity and PRF, MODP groups below 2048 bits and the RFC 5114 groups) are refused
    unless O(allow_weak=true); those the agent does not implement at all stay refused.
  - With O(peer), predicts what the two sides agree on in both roles, with the agent's
    negotiation rules (the responder's configured order decides, so the two roles can end in
    different algorithms), and fails naming what each side offers when they share nothing.
  - Runs on the controller and never changes anything.
author: ikelab.ipsec developers (!UNKNOWN)
options:
  ike:
    description:
      - IKE SA proposals, most preferred first. A profile name (V(modern) or V(compat)), a
        comma-separated string of keyword proposals, or a list of keyword proposals.
      - V(modern) is C(aes256gcm16-prfsha384-x25519), C(aes256gcm16-prfsha256-ecp256),
        C(chacha20poly1305-prfsha256-x25519).
      - V(compat), for older peers without AEAD or Curve25519, is C(aes256-sha256-modp2048),
        C(aes256-sha256-ecp256), C(aes128-sha256-modp2048).
      - Within a proposal, several algorithms of one type are alternatives in preference order;
        without C(prfX), an integrity keyword implies the PRF of the same hash; a DH group is
        required.
      - Unset, V(modern), or V(compat) when O(version=1).
    type: raw
  esp:
    description:
      - ESP (Child SA) proposals, in the same forms as O(ike). A DH group in an ESP proposal
        means perfect forward secrecy on Child SA rekeys; C(esn)/C(noesn) select extended
        sequence numbers (default C(noesn)).
      - V(modern) is C(aes256gcm16-x25519), C(aes256gcm16-ecp256), C(chacha20poly1305-x25519)
        (with PFS).
      - V(compat) is C(aes256-sha256), C(aes128-sha256) (without PFS, the usual default of
        older peers).
      - Unset, V(modern), or V(compat) when O(version=1).
    type: raw
  version:
    description:
      - The IKE version the proposals are for. With V(1) (IKEv1, RFC 2409) proposals IKEv1
        cannot express are refused with the reason, as the agent refuses them (no AEAD cipher
        or ChaCha20 in the IKE SA, no ChaCha20 in ESP, a hash and a DH group in every IKE
        proposal), and unset proposals are the V(compat) profile.
    type: int
    choices: [1, 2]
    default: 2
  allow_weak:
    description:
      - Accept weak algorithms that the agent implements (SHA-1 integrity and PRF).
    type: bool
    default: false
  peer:
    description:
      - The other side's proposals. When given, the result has RV(negotiated).
    type: dict
    suboptions:
      ike:
        description: The peer's IKE proposals, in the forms of O(ike); as O(ike) when omitted.
        type: raw
      esp:
        description: The peer's ESP proposals, in the forms of O(esp); as O(esp) when omitted.
        type: raw
attributes:
  check_mode:
    support: full
    description: The module never changes anything; it runs the same in check mode.
  diff_mode:
    support: none
    description: Nothing changes, so there is nothing to diff.
  platform:
    support: full
    platforms: all
    description: Runs on the controller; the target's platform does not matter.
  action:
    support: full
    description: Runs on the controller only.
seealso:
  - module: ikelab.ipsec.keygen
  - name: strongSwan proposal keywords
    description: The keyword vocabulary the proposals use.
    link: https://docs.strongswan.org/docs/5.9/config/proposals.html
"""

EXAMPLES = r"""
- name: Render the modern profile for swanctl.conf
  ikelab.ipsec.proposal:
    ike: modern
    esp: modern
  register: p

- name: Use it
  ansible.builtin.debug:
    msg: "proposals = {{ p.strongswan.proposals }}, esp_proposals = {{ p.strongswan.esp_proposals }}"

- name: Own keywords, checked against a peer that uses the compat profile
  ikelab.ipsec.proposal:
    ike:
      - aes256gcm16-prfsha384-x25519
      - aes256-sha256-modp2048
    esp: aes256gcm16,aes256-sha256
    peer:
      ike: compat
      esp: compat
  register: p

- name: A peer that still needs SHA-1
  ikelab.ipsec.proposal:
    ike: aes256-sha1-modp2048
    esp: aes256-sha1
    allow_weak: true

- name: An IKEv1 peer (a firewall that speaks only IKEv1); unset proposals are compat
  ikelab.ipsec.proposal:
    version: 1
    peer:
      ike: aes128-sha256-modp2048
"""

RETURN = r"""
ike:
  description: The IKE proposals, normalised (canonical keywords, implied PRFs left out).
  returned: success
  type: list
  elements: str
  sample: [aes256gcm16-prfsha384-x25519, aes256gcm16-prfsha256-ecp256]
esp:
  description: The ESP proposals, normalised (canonical keywords, the default C(noesn) left out).
  returned: success
  type: list
  elements: str
  sample: [aes256gcm16-x25519, aes256gcm16-ecp256]
strongswan:
  description: The proposals in swanctl.conf syntax.
  returned: success
  type: dict
  contains:
    proposals:
      description: Value of a connection's C(proposals).
      type: str
      sample: aes256gcm16-prfsha384-x25519,aes256gcm16-prfsha256-ecp256
    esp_proposals:
      description: Value of a child's C(esp_proposals).
      type: str
      sample: aes256gcm16-x25519,aes256gcm16-ecp256
negotiated:
  description:
    - What this side and O(peer) agree on, one algorithm per type, as keyword proposals.
    - C(as_initiator) is the result when this side initiates (the peer's order decides),
      C(as_responder) when the peer initiates (this side's order decides).
    - ESP is negotiated including the PFS group (as on a Child SA rekey).
  returned: when O(peer) is given
  type: dict
  contains:
    ike:
      description: C(as_initiator) and C(as_responder) for the IKE SA.
      type: dict
      sample: {as_initiator: aes256gcm16-prfsha384-x25519, as_responder: aes256gcm16-prfsha384-x25519}
    esp:
      description: C(as_initiator) and C(as_responder) for the Child SA.
      type: dict
      sample: {as_initiator: aes256gcm16-x25519, as_responder: aes256gcm16-x25519}
"""
