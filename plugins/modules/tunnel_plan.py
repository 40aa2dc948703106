#!/usr/bin/python
# Copyright: ikelab.ipsec developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

# Documentation only: the module is the action plugin plugins/action/tunnel_plan.py, which runs
# on the controller.

from __future__ import annotations

DOCUMENTATION = r"""
---
module: tunnel_plan
short_description: Plan every site-to-site tunnel of the inventory on the controller
version_added: 0.1.0
description:
  - Computes every IPsec tunnel from the inventory (a topology and each host's
    C(ikelab_tunnels)) and validates all of it before any host is touched.
  - Reads from C(hostvars) of every inventory host the variables C(ikelab_underlay_address),
    C(ikelab_protected_subnets), C(ikelab_ike_id) (default the inventory name),
    C(ikelab_ike_proposals), C(ikelab_esp_proposals), C(ikelab_tunnels),
    C(ikelab_tunnel_options) and C(ikelab_topology).
  - "Topologies: C({type: full_mesh, group: G}) (every two hosts of G);
    C({type: hub_and_spoke, hubs: G1, spokes: G2}) (every spoke to every hub, hubs meshed among
    themselves, no spoke-to-spoke tunnels and no transit through a hub);
    C({type: pairs, pairs: [[a, b], ...]})."
  - "Tunnel C(a--b) (names sorted): C(a) initiates (C(start_action: start)), C(b) responds
    (C(none)); on each end the connection is named after the peer unless its C(ikelab_tunnels)
    entry gives a C(name); the PSK file is C(<secrets_dir>/a--b.psk)."
  - A pair declared several times (both sides, twice, or also by the topology) is one tunnel;
    differing settings for the same tunnel are an error. An end's proposals are the tunnel's
    (from C(ikelab_tunnels) entries), else the host's, else O(defaults).
  - "Proposals on IKEv1 tunnels (C(version: 1)): where no setting names an end's IKE or ESP
    proposals (neither the tunnel's C(ike_proposals)/C(esp_proposals), nor the host's
    C(ikelab_ike_proposals)/C(ikelab_esp_proposals), nor O(defaults)), that end uses the
    C(compat) profile instead of C(modern), which is AEAD only and cannot be used in IKEv1
    Phase 1. Proposals that are named and that IKEv1 cannot express (AES-GCM or
    ChaCha20-Poly1305 in IKE, ChaCha20-Poly1305 in ESP, an IKE proposal without a hash or a DH
    group) are a problem of the field that names them, judged by the agent's own IKEv1 rules.
    On IKEv1 the first Child SA (Quick Mode) already uses the ESP PFS groups."
  - "IKE version and mode: C(version) (C(1) or C(2)), C(aggressive) (IKEv1 Aggressive Mode) and
    C(allow_aggressive_psk) (its opt-in with a pre-shared key) may be given by name in an
    C(ikelab_tunnels) entry and in O(defaults), or as options (C(ikelab_tunnel_options));
    a tunnel's setting wins over the host's, the host's over O(defaults). Their combination is
    checked by the agent's own schema (Aggressive Mode needs C(version: 1)), and the two ends
    of a tunnel must agree on C(version) and C(aggressive). Unset, the agent's defaults apply
    (IKEv2) and the entries leave them out."
  - "On-demand tunnels: C(start_action: trap) (in an C(ikelab_tunnels) entry, or in
    O(defaults) for every tunnel) makes the initiating end install a trap and start the tunnel
    when traffic needs it instead of when its agent loads it (C(start), the default); the
    responding end still waits (C(none)). The entries of both ends then say C(on_demand: true)
    and the tunnel's summary C(start_action: trap)."
  - "Lifetimes, liveness checks and on-demand settings may be given by the parameter names of
    M(ikelab.ipsec.tunnel) (C(dpd_delay), C(dpd_timeout), C(dpd_action), C(close_action),
    C(inactivity), C(inactivity_close_ike), C(keyingtries), C(rekey_time), C(over_time),
    C(rand_time), C(reauth_time), C(child_rekey_time), C(child_life_time),
    C(child_rand_time), C(rekey_bytes), C(life_bytes), C(rekey_packets), C(life_packets)) in
    an C(ikelab_tunnels) entry and in O(defaults), or as the agent's keys in options
    (C(ikelab_tunnel_options), C(child: {inactivity: 5m})); the tunnel's setting wins over the
    host's, the host's over O(defaults). They are checked with the agent's schema and the
    tunnel module's own rules (an C(inactivity) of 0, C(dpd_timeout) on an IKEv2 tunnel,
    C(child_life_time) not longer than C(child_rekey_time), ...), a problem naming the
    setting as it was written."
  - "Fails listing every problem, one per line, each naming host, tunnel and field:
    a peer not in the inventory or not in the play, a tunnel to itself, a missing or invalid
    underlay address, missing, invalid or overlapping protected subnets (between the ends of a
    tunnel, and between two peers of one host), duplicate underlay addresses or IKE ids, no
    common IKE or ESP proposal in either role (ESP also with its PFS groups, as on a rekey),
    proposals that IKEv1 cannot express on a C(version: 1) tunnel,
    unknown keys in C(ikelab_tunnels) entries, in the topology and in options (checked with the
    agent's own configuration schema), ends that disagree on C(version) or C(aggressive), and a
    missing PSK file unless O(generate_keys)."
  - "With O(auth=pubkey) every tunnel authenticates with certificates: each end's entry has
    C(auth: pubkey), C(certs: [<pki_dir>/<host>.crt]), C(private_key: <pki_dir>/<host>.key) and
    C(cacerts: [<pki_dir>/ca.crt]) (paths on the hosts, where the C(site_to_site) role puts each
    host's own certificate and key and the CA certificate), no C(psk_file), and no PSK file is
    needed. The certificate of a host should carry its IKE identity (C(ikelab_ike_id))."
  - Never reads or returns a key; it only tests whether the PSK files exist.
  - This is an action plugin that runs on the controller only; no host is contacted.
author:
  - ikelab.ipsec developers (!UNKNOWN)
options:
  hosts:
    description:
      - The hosts of the play to plan for. Tunnels to inventory hosts outside this list are
        errors (only one end would be configured).
      - Defaults to C(ansible_play_hosts_all).
    type: list
    elements: str
  topology:
    description:
      - The topology; overrides C(ikelab_topology) of the hosts. When absent or empty
        (C({})), the C(ikelab_topology) of the play's hosts applies (they must agree).
    type: raw
  secrets_dir:
    description:
      - Controller directory holding the PSK files C(<tunnel id>.psk).
    type: path
    required: true
  generate_keys:
    description:
      - When true, a missing PSK file is not an error (the caller generates it with
        M(ikelab.ipsec.keygen) after planning); C(psk_present) in RV(tunnels) says which exist.
    type: bool
    default: false
  defaults:
    description:
      - "Defaults for every host: C(ike_proposals) and C(esp_proposals) (a profile name,
        C(modern) or C(compat), or keyword proposals; default C(modern), on IKEv1 tunnels
        C(compat)), C(options) (agent
        settings for every tunnel), C(allow_weak) (accept weak algorithms; default false), and
        C(version), C(aggressive), C(allow_aggressive_psk) for every tunnel (default: unset,
        the agent's defaults), C(start_action) (C(start) or C(trap), default C(start)), and the
        lifetimes, liveness and on-demand settings by the parameter names of
        M(ikelab.ipsec.tunnel) (default: unset)."
      - "Options are agent connection settings (for example C(dpd_delay), C(rekey_time),
        C(mobike)); child settings go under C(child) (for example C(child: {rekey_time: 30m})).
        Keys the planner sets (addresses, identities, traffic selectors, proposals,
        C(start_action)) are refused."
    type: dict
  auth:
    description:
      - How every planned tunnel authenticates, C(psk) (a PSK file per tunnel in O(secrets_dir))
        or C(pubkey) (certificates, see the description).
    type: str
    choices: [psk, pubkey]
    default: psk
  pki_dir:
    description:
      - With O(auth=pubkey), the directory on the hosts holding C(<host>.crt), C(<host>.key)
        and C(ca.crt).
    type: str
    default: /etc/ikelab/pki
attributes:
  check_mode:
    support: full
    description: Planning changes nothing, so it runs the same in check mode.
  diff_mode:
    support: none
    description: Nothing changes, so there is no diff.
  platform:
    support: full
    platforms: posix
    description: Runs on the controller.
notes:
  - "Run it once per play (C(run_once: true)); the result holds the plan of every host."
seealso:
  - module: ikelab.ipsec.tunnel
  - module: ikelab.ipsec.keygen
  - module: ikelab.ipsec.proposal
"""

EXAMPLES = r"""
- name: Plan every tunnel of the play
  ikelab.ipsec.tunnel_plan:
    secrets_dir: "{{ playbook_dir }}/secrets"
    generate_keys: true
    defaults:
      ike_proposals: modern
      esp_proposals: modern
  run_once: true
  register: __ikelab_plan

- name: Configure this host's tunnels
  ikelab.ipsec.tunnel:
    name: "{{ item.name }}"
    local_addrs: "{{ item.local_addrs }}"
    remote_addrs: "{{ item.remote_addrs }}"
    local_id: "{{ item.local_id }}"
    remote_id: "{{ item.remote_id }}"
    local_ts: "{{ item.local_ts }}"
    remote_ts: "{{ item.remote_ts }}"
    ike_proposals: "{{ item.ike_proposals }}"
    esp_proposals: "{{ item.esp_proposals }}"
    start_action: "{{ item.start_action }}"
    child: "{{ item.child }}"
    dpd_delay: "{{ item.dpd_delay }}"
    rekey_time: "{{ item.rekey_time }}"
    child_rekey_time: "{{ item.child_rekey_time }}"
    options: "{{ item.options }}"
    child_options: "{{ item.child_options }}"
    # present in an entry only when planned (IKEv1 tunnels)
    version: "{{ item.version | default(omit) }}"
    aggressive: "{{ item.aggressive | default(omit) }}"
    allow_aggressive_psk: "{{ item.allow_aggressive_psk | default(omit) }}"
    psk: "{{ lookup('ansible.builtin.file', item.psk_file) }}"
  loop: "{{ __ikelab_plan.plan[inventory_hostname] }}"
  loop_control:
    label: "{{ item.tunnel_id }}"
  no_log: true

- name: Every tunnel with IKEv1 Main Mode (an ikelab_tunnels entry may still say version 2)
  ikelab.ipsec.tunnel_plan:
    secrets_dir: "{{ playbook_dir }}/secrets"
    defaults:
      version: 1
      # proposals left unset: compat on the IKEv1 tunnels, modern on the others
  run_once: true
  register: __ikelab_plan

- name: On-demand tunnels, closed after five idle minutes, the Child SA rekeyed every 30 minutes
  ikelab.ipsec.tunnel_plan:
    secrets_dir: "{{ playbook_dir }}/secrets"
    defaults:
      start_action: trap
      inactivity: 5m
      dpd_delay: 30s
      dpd_action: trap
      child_rekey_time: 30m
  run_once: true
  register: __ikelab_plan

- name: A hub and spoke topology given to the planner directly
  ikelab.ipsec.tunnel_plan:
    secrets_dir: /srv/ipsec/secrets
    topology:
      type: hub_and_spoke
      hubs: datacenters
      spokes: branches
  run_once: true
  register: __ikelab_plan
"""

RETURN = r"""
plan:
  description:
    - Per host of the play, its tunnel entries sorted by peer (an empty list for a host
      without tunnels). Each entry holds the parameters of M(ikelab.ipsec.tunnel) (C(name),
      C(local_addrs), C(remote_addrs), C(local_id), C(remote_id), C(local_ts), C(remote_ts),
      C(ike_proposals), C(esp_proposals), C(start_action), C(child), C(dpd_delay),
      C(rekey_time), C(child_rekey_time), C(options), C(child_options), and C(version),
      C(aggressive), C(allow_aggressive_psk) and the other lifetimes, liveness and on-demand
      parameters (C(inactivity), C(dpd_action), C(child_life_time), ...) when they are set;
      with O(auth=pubkey) also C(auth), C(certs), C(private_key), C(cacerts)), the PSK's
      C(psk_file) on the controller (null with O(auth=pubkey)), and C(peer), C(tunnel_id),
      C(on_demand) (the initiating end traps) and C(negotiated) for the verification.
  returned: success
  type: dict
  sample:
    site1:
      - name: site2
        peer: site2
        tunnel_id: site1--site2
        local_addrs: [192.0.2.11]
        remote_addrs: [192.0.2.12]
        local_id: site1
        remote_id: site2
        local_ts: [10.1.0.0/24]
        remote_ts: [10.2.0.0/24]
        ike_proposals: [aes256gcm16-prfsha384-x25519]
        esp_proposals: [aes256gcm16-x25519]
        start_action: start
        on_demand: false
        psk_file: /srv/ipsec/secrets/site1--site2.psk
        child: net
        dpd_delay: 30s
        rekey_time: null
        child_rekey_time: null
        options: {}
        child_options: {}
        negotiated:
          ike: {proposal: aes256gcm16-prfsha384-x25519, encryption: AES_GCM_16_256,
                integrity: null, prf: PRF_HMAC_SHA2_384, dh: CURVE_25519}
          esp: {proposal: aes256gcm16, encryption: AES_GCM_16_256, integrity: null, esn: false}
          esp_rekey_dh: CURVE_25519
          reverse: {}
tunnels:
  description:
    - Every tunnel, sorted by id. C(auth) is O(auth); C(start_action) what the initiator
      does (C(start), or C(trap) for an on-demand tunnel); C(psk_file) and C(psk_present) are null
      with O(auth=pubkey). C(negotiated) is what the ends agree on when the initiator
      initiates (C(esp) is the first Child SA, created without a key exchange;
      C(esp_rekey_dh) the PFS group of a rekey); C(negotiated.reverse) the same when the
      responder initiates, where the other end's preference decides.
  returned: success
  type: list
  elements: dict
  sample:
    - id: site1--site2
      ends: [site1, site2]
      initiator: site1
      responder: site2
      connections: {site1: site2, site2: site1}
      underlay: {site1: 192.0.2.11, site2: 192.0.2.12}
      subnets: {site1: [10.1.0.0/24], site2: [10.2.0.0/24]}
      ike_ids: {site1: site1, site2: site2}
      auth: psk
      start_action: start
      psk_file: /srv/ipsec/secrets/site1--site2.psk
      psk_present: true
      negotiated: {}
problems:
  description: On failure, every problem found (also in C(msg), one per line).
  returned: failure
  type: list
  elements: dict
  sample:
    - host: site3
      tunnels: [site1--site3]
      field: ikelab_protected_subnets
      reason: "overlaps: 10.1.0.0/24 of site1 overlaps 10.1.0.0/16 of peer site3"
"""
