#!/usr/bin/python
# Copyright: ikelab.ipsec developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: tunnel
short_description: Configure an IPsec tunnel of the ikelab agent and bring its SAs up or down
version_added: "0.1.0"
description:
  - Manages one connection of the ikelab IKE agent (C(ikeagent)) on the managed host as a
    configuration fragment C(<config_dir>/tunnels.d/<name>.yaml) holding the connection
    (in strongSwan swanctl vocabulary) and its pre-shared key, and drives the running agent
    over its control socket.
  - The fragment is rendered deterministically and written only when its content differs,
    to a temporary file with mode C(0600) beside it (directory C(0700)), validated with the
    agent's own schema (C(<agent_venv>/bin/ikeagent --check)), then renamed into place; the
    agent is then told to reload. If the agent rejects the reload, the previous fragment is
    restored and the module fails with the agent's message.
  - O(state=up) also waits until the IKE SA is established and the child is installed. When
    this host initiates (O(start_action=start)) it asks the agent to initiate; when it responds
    (O(start_action=none)) it waits for the peer to bring the SAs up.
  - An on-demand tunnel (O(start_action=trap)) negotiates nothing until traffic needs it; the
    agent installs a trap policy for the child's selectors, and the first packet that matches
    it starts the Child SA (and an IKE SA when there is none). With O(state=up) the module then
    waits only until the agent lists the trap, and returns it (RV(trap)); O(inactivity) closes
    the Child SA again when it was idle that long, and the trap stays for the next packet.
  - Lifetimes, liveness checks and on-demand behaviour have parameters of their own, checked
    before anything is written, each failure naming the parameter and the reason
    (O(child_life_time) must be longer than O(child_rekey_time), O(inactivity) must be
    positive, O(dpd_timeout) only applies to IKEv1, O(keyingtries) cannot be negative, a trap
    needs the peer's IP address first in O(remote_addrs), ...).
  - The main agent configuration must include the fragments (C(include) of
    C(tunnels.d/*.yaml)); the agent role writes it so.
  - The PSK is never returned or shown; diffs and results carry its fingerprint.
  - With O(auth=pubkey) the connection authenticates with certificates (both IKE versions);
    the fragment names this host's certificate (O(certs)), its private key (O(private_key),
    as a C(private-<name>) secret with C(file)) and the CAs the peer's certificate must chain
    to (O(cacerts)); all are paths on the managed host, which must exist there before the
    fragment is validated (M(ikelab.ipsec.keygen) makes them). The fragment's header records
    the SHA-256 fingerprint of every certificate file, so a reissued certificate rewrites the
    fragment and reloads the agent.
author: ikelab.ipsec developers (!UNKNOWN)
options:
  name:
    description:
      - The connection name, also the fragment's file name. 1-64 letters, digits, C(.),
        C(_) or C(-), starting with a letter or digit.
    type: str
    required: true
  state:
    description:
      - C(present) writes the fragment and reloads the agent.
      - C(up) is C(present), then the connection's IKE SA and child are brought up (or waited
        for) within O(timeout).
      - C(down) is C(present), then the connection's SAs are terminated.
      - C(absent) removes the fragment and reloads the agent, which deletes the SAs.
    type: str
    choices: [present, absent, up, down]
    default: present
  version:
    description:
      - The IKE version, C(2) (RFC 7296) or C(1) (RFC 2409, Main Mode unless O(aggressive)).
      - When not given, the fragment leaves it to the agent, whose default is C(2).
      - Both ends of a tunnel must use the same version.
    type: int
    choices: [1, 2]
  aggressive:
    description:
      - Use IKEv1 Aggressive Mode instead of Main Mode; needs O(version=1).
      - Aggressive Mode sends the identities in the clear and, with a pre-shared key (the only
        authentication this module configures), a hash an eavesdropper can attack offline, so
        the agent also requires O(allow_aggressive_psk=true).
      - When not given, the agent's default applies (Main Mode).
    type: bool
  allow_aggressive_psk:
    description:
      - The explicit opt-in to IKEv1 Aggressive Mode with a pre-shared key (swanctl has it as
        C(charon.i_dont_care_about_security_and_use_aggressive_mode_psk)).
      - When not given, the agent's default applies (not allowed).
    type: bool
  local_addrs:
    description: Local IKE addresses (swanctl C(local_addrs)); the agent's default is any.
    type: list
    elements: str
  remote_addrs:
    description:
      - Remote IKE addresses, host names, subnets or ranges (swanctl C(remote_addrs)).
      - Required by the agent when O(start_action=start).
    type: list
    elements: str
  local_id:
    description:
      - This host's IKE identity. Required unless O(state=absent).
    type: str
  remote_id:
    description:
      - The peer's IKE identity. Required unless O(state=absent).
    type: str
  auth:
    description:
      - How both ends authenticate, C(psk) (a pre-shared key, O(psk)) or C(pubkey)
        (certificates and signatures, O(certs), O(private_key), O(cacerts)). Both ends of a
        tunnel must use the same.
    type: str
    choices: [psk, pubkey]
    default: psk
  certs:
    description:
      - With O(auth=pubkey), this host's certificate file (PEM or DER), then any intermediate
        CA certificates to send along; absolute paths on the managed host. Required with
        O(auth=pubkey).
      - The certificate should carry O(local_id) (a subjectAltName, or its subject when the
        identity is a distinguished name); the peer checks it.
    type: list
    elements: path
  private_key:
    description:
      - With O(auth=pubkey), the private key file of the first of O(certs) (PEM or DER,
        unencrypted), an absolute path on the managed host. The agent refuses a key file that
        group or others can read; keep it C(0600).
    type: path
  cacerts:
    description:
      - With O(auth=pubkey), the CA certificates the peer's certificate must chain to
        (absolute paths on the managed host). Required with O(auth=pubkey).
    type: list
    elements: path
  psk:
    description:
      - The pre-shared key (O(auth=psk) only), as swanctl writes secrets, C(0s<base64>) (as
        M(ikelab.ipsec.keygen) writes it), C(0x<hex>), or the string itself.
      - Required with O(auth=psk) unless O(state=absent), except when the fragment exists
        already and was written by this module; its PSK is then kept.
    type: str
  ike_proposals:
    description: IKE proposals as strongSwan keywords (C(aes256gcm16-prfsha256-x25519)).
    type: list
    elements: str
  esp_proposals:
    description: ESP proposals as strongSwan keywords (C(aes256gcm16)).
    type: list
    elements: str
  local_ts:
    description: Local traffic selectors (C(10.1.0.0/24), C(10.1.0.0/24[tcp/443])).
    type: list
    elements: str
  remote_ts:
    description: Remote traffic selectors.
    type: list
    elements: str
  child:
    description: The name of the connection's child (CHILD_SA).
    type: str
    default: net
  start_action:
    description:
      - C(start) initiates the connection when the agent loads it (this host is the
        initiator); C(none) waits for the peer (this host responds); C(trap) installs a trap
        policy and initiates when the first packet matches it (an on-demand tunnel).
      - C(trap) needs the peer's IP address first in O(remote_addrs) (and an IP address, or
        nothing, first in O(local_addrs)).
    type: str
    choices: [none, start, trap]
    default: none
  dpd_delay:
    description: Liveness check interval, seconds or a duration (C(30s)); the agent's default is off.
    type: raw
  dpd_timeout:
    description:
      - IKEv1 only (O(version=1)), with O(dpd_delay); how long a peer may leave liveness checks
        unanswered before it is declared dead, seconds or a duration (C(150s), the agent's
        default). IKEv2 declares a peer dead when a check runs out of retransmissions.
    type: raw
  dpd_action:
    description:
      - What becomes of the child when the peer is found dead (a liveness check or any request
        ran out of retransmissions). C(clear) (the agent's default) removes it; C(trap) arms a
        trap, so the next packet renegotiates it; C(restart) initiates again at once.
      - C(trap) and C(restart) need O(remote_addrs) (C(trap) an IP address first).
    type: str
    choices: [clear, trap, restart]
  close_action:
    description:
      - What becomes of the child when the peer deletes it (and nothing replaces it). C(none)
        (the agent's default), C(trap) (arm a trap for the next packet) or C(start) (initiate
        again).
      - C(trap) and C(start) need O(remote_addrs) (C(trap) an IP address first).
    type: str
    choices: [none, trap, start]
  inactivity:
    description:
      - Close the Child SA when no packet crossed it for this long, seconds or a duration
        (C(5m)); must be positive. Unset, a child is never closed for inactivity.
      - With O(start_action=trap) the trap stays, so the next packet brings the child back.
    type: raw
  inactivity_close_ike:
    description:
      - Also close the IKE SA when its last Child SA was closed for inactivity (the agent's
        default is to keep it). Needs O(inactivity).
    type: bool
  keyingtries:
    description:
      - How many times to try to initiate before giving up (the agent's default is 1);
        C(0) keeps trying.
    type: int
  rekey_time:
    description: IKE SA rekey interval, seconds or a duration (C(4h), the agent's default).
    type: raw
  over_time:
    description:
      - How long after O(rekey_time) the IKE SA may live at most (a rekey that keeps failing
        ends it then), seconds or a duration; the agent's default is 10% of O(rekey_time).
    type: raw
  rand_time:
    description:
      - The range of a random time subtracted from O(rekey_time) (so that peers do not rekey
        at once), seconds or a duration; the agent's default is O(over_time). Must be shorter
        than O(rekey_time).
    type: raw
  reauth_time:
    description:
      - IKE SA reauthentication interval (a new IKE SA, authenticated again), seconds or a
        duration; the agent's default is off.
    type: raw
  child_rekey_time:
    description: Child SA rekey interval, seconds or a duration (C(1h), the agent's default).
    type: raw
  child_life_time:
    description:
      - Child SA hard lifetime, seconds or a duration; the agent's default is
        O(child_rekey_time) plus 10%. Must be longer than O(child_rekey_time) (C(1h) when
        that is not given).
    type: raw
  child_rand_time:
    description:
      - The range of a random time subtracted from O(child_rekey_time), seconds or a duration;
        the agent's default is O(child_life_time) minus O(child_rekey_time). Must be shorter
        than O(child_rekey_time).
    type: raw
  rekey_bytes:
    description:
      - Rekey the Child SA after this many bytes, a number or with C(k), C(m), C(g) (powers of
        1024, C(1g)); C(0) or unset, never.
    type: raw
  life_bytes:
    description:
      - Hard byte limit of the Child SA (the agent's default is O(rekey_bytes) plus 10%); must
        be more than O(rekey_bytes).
    type: raw
  rekey_packets:
    description: Rekey the Child SA after this many packets (as O(rekey_bytes)); C(0) or unset, never.
    type: raw
  life_packets:
    description:
      - Hard packet limit of the Child SA (the agent's default is O(rekey_packets) plus 10%);
        must be more than O(rekey_packets).
    type: raw
  options:
    description:
      - Further swanctl connection keys (C(mobike), C(encap), ...), written as given and
        validated by the agent. Keys set by the parameters above (among them C(version),
        C(aggressive) and C(allow_aggressive_psk)) are refused.
      - The keys that now have parameters of their own (C(dpd_timeout), C(over_time),
        C(rand_time), C(reauth_time), C(keyingtries), C(inactivity_close_ike)) are still
        accepted here, checked as their parameters are and written the same way; a key given
        both here and as its parameter is refused.
    type: dict
    default: {}
  child_options:
    description:
      - Further swanctl child keys, validated by the agent.
      - The child keys that now have parameters of their own (C(inactivity), C(dpd_action),
        C(close_action), C(life_time), C(rand_time), C(rekey_bytes), C(life_bytes),
        C(rekey_packets), C(life_packets)) are still accepted here, checked as their parameters
        (O(child_life_time), O(child_rand_time), ...) are and written the same way; a key
        given both ways is refused.
    type: dict
    default: {}
  timeout:
    description: Seconds to wait for the SAs (O(state=up) and O(state=down)).
    type: int
    default: 30
  config_dir:
    description: The agent's configuration directory; fragments go to its C(tunnels.d).
    type: path
    default: /etc/ikelab
  socket:
    description: The agent's control socket.
    type: path
    default: /run/ikelab/ikeagent.sock
  agent_venv:
    description: The agent's virtual environment (C(bin/ikeagent) validates fragments).
    type: path
    default: /opt/ikelab/venv
attributes:
  check_mode:
    support: full
    description:
      - Reports what would change (file, reload, SAs) without writing, reloading or initiating;
        the new fragment is validated from a scratch directory when the agent is installed.
  diff_mode:
    support: full
    description: Shows the fragment before and after, the PSK replaced by its fingerprint.
  platform:
    support: full
    description: Linux hosts where the ikelab agent runs.
    platforms: posix
notes:
  - Runs on the managed host with its system Python (3.10 or later, standard library only),
    as root.
  - When the agent is not running, O(state=present) and O(state=absent) still write or remove
    the fragment (with a warning), and O(state=down) has nothing to terminate; O(state=up)
    fails.
  - The combination of O(version), O(aggressive) and O(allow_aggressive_psk) is checked by the
    agent's own schema (C(ikeagent --check)) before anything is written; its message names the
    field (C(connections.<name>.aggressive), ...).
  - A changed connection is torn down by the agent's reload; with O(state=up) an initiator
    brings it up again, a responder waits for its peer, and an on-demand end
    (O(start_action=trap)) has its trap armed again. Configure every end (O(state=present))
    before bringing any end up.
seealso:
  - module: ikelab.ipsec.sa_info
  - module: ikelab.ipsec.flow_check
  - module: ikelab.ipsec.keygen
"""

EXAMPLES = r"""
- name: The tunnel to site2, initiated from here, up
  ikelab.ipsec.tunnel:
    name: site2
    state: up
    local_addrs: [192.0.2.11]
    remote_addrs: [192.0.2.12]
    local_id: site1
    remote_id: site2
    psk: "{{ lookup('ansible.builtin.file', 'secrets/site1--site2.psk') }}"
    ike_proposals: [aes256gcm16-prfsha256-x25519]
    esp_proposals: [aes256gcm16]
    local_ts: [10.1.0.0/24]
    remote_ts: [10.2.0.0/24]
    start_action: start
    dpd_delay: 30s
    options:
      mobike: false
  register: tunnel

- name: An IKEv1 tunnel to an older peer that only speaks Aggressive Mode
  ikelab.ipsec.tunnel:
    name: legacy-peer
    state: up
    version: 1
    aggressive: true
    allow_aggressive_psk: true
    local_addrs: [192.0.2.11]
    remote_addrs: [192.0.2.13]
    local_id: site1
    remote_id: legacy-peer
    psk: "{{ lookup('ansible.builtin.file', 'secrets/site1--legacy-peer.psk') }}"
    ike_proposals: [aes256-sha256-modp2048]
    esp_proposals: [aes256-sha256]
    local_ts: [10.1.0.0/24]
    remote_ts: [10.3.0.0/24]
    start_action: start

- name: The same tunnel authenticated with certificates (files made by ikelab.ipsec.keygen)
  ikelab.ipsec.tunnel:
    name: site2
    state: up
    auth: pubkey
    certs: [/etc/ikelab/pki/site1.crt]
    private_key: /etc/ikelab/pki/site1.key
    cacerts: [/etc/ikelab/pki/ca.crt]
    local_addrs: [192.0.2.11]
    remote_addrs: [192.0.2.12]
    local_id: site1
    remote_id: site2
    local_ts: [10.1.0.0/24]
    remote_ts: [10.2.0.0/24]
    start_action: start

- name: An on-demand tunnel, negotiated when traffic needs it and closed after 5 idle minutes
  ikelab.ipsec.tunnel:
    name: branch3
    state: up
    local_addrs: [192.0.2.11]
    remote_addrs: [192.0.2.14]
    local_id: site1
    remote_id: branch3
    psk: "{{ lookup('ansible.builtin.file', 'secrets/site1--branch3.psk') }}"
    local_ts: [10.1.0.0/24]
    remote_ts: [10.4.0.0/24]
    start_action: trap
    inactivity: 5m
    dpd_delay: 30s
    dpd_action: trap
    child_rekey_time: 1h
    child_life_time: 66m
    rekey_bytes: 1g
    keyingtries: 0
  register: branch3

- name: Show the trap (state trapped until the first packet, then active)
  ansible.builtin.debug:
    msg: "{{ branch3.trap.state }} reqid {{ branch3.trap.reqid }}"

- name: Show the child's SPIs
  ansible.builtin.debug:
    msg: "{{ tunnel.sas[0].children | map(attribute='spi_in') }}"

- name: Terminate its SAs, keep the configuration (the PSK stays as it is in the fragment)
  ikelab.ipsec.tunnel:
    name: site2
    state: down
    local_addrs: [192.0.2.11]
    remote_addrs: [192.0.2.12]
    local_id: site1
    remote_id: site2
    ike_proposals: [aes256gcm16-prfsha256-x25519]
    esp_proposals: [aes256gcm16]
    local_ts: [10.1.0.0/24]
    remote_ts: [10.2.0.0/24]
    start_action: start
    dpd_delay: 30s
    options:
      mobike: false

- name: Remove the tunnel
  ikelab.ipsec.tunnel:
    name: site2
    state: absent
"""

RETURN = r"""
config_path:
  description: The fragment's path.
  returned: always
  type: str
  sample: /etc/ikelab/tunnels.d/site2.yaml
state:
  description: O(state).
  returned: always
  type: str
  sample: up
sas:
  description:
    - The connection's IKE SAs as the agent's C(list-sas) gives them (state, role, addresses,
      identities, SPIs, algorithms and C(children) with their states, SPIs, selectors and
      byte and packet counters); no key material.
  returned: always
  type: list
  elements: dict
  sample:
    - name: site2
      state: ESTABLISHED
      role: initiator
      encryption: AES_GCM_16_256
      children:
        - name: net
          state: INSTALLED
          spi_in: c1f0a2b3
          spi_out: d4e5f607
          local_ts: [10.1.0.0/24]
          remote_ts: [10.2.0.0/24]
          packets_in: 0
          packets_out: 0
trap:
  description:
    - With O(start_action=trap), the child's trap policy as the agent's C(list-traps) gives it,
      with C(state) C(trapped) (no Child SA under it; the next matching packet starts one) or
      C(active) (a Child SA is up under its reqid); null when the agent holds none (it is not
      running, or in check mode before the first run).
  returned: with O(start_action=trap), unless O(state=absent)
  type: dict
  contains:
    state:
      description: C(trapped) or C(active).
      type: str
    name:
      description: The connection.
      type: str
    child:
      description: The child.
      type: str
    reqid:
      description: The reqid of the trap policy; the child's SAs are installed under it.
      type: int
    local_ts:
      description: Local traffic selectors of the policy.
      type: list
      elements: str
    remote_ts:
      description: Remote traffic selectors of the policy.
      type: list
      elements: str
    reason:
      description: What armed it (C(start_action), C(dpd_action), C(close_action)).
      type: str
    acquires:
      description: How many times traffic hit the trap and started the child.
      type: int
    last_acquire:
      description: Seconds since the last such time, or null.
      type: float
  sample:
    state: trapped
    name: branch3
    child: net
    reqid: 3
    local_ts: [10.1.0.0/24]
    remote_ts: [10.4.0.0/24]
    reason: start_action
    acquires: 0
    last_acquire: null
actions:
  description:
    - What was done, in order (C(write), C(remove), C(reload), C(restore), C(up), C(trap),
      C(down)); in check mode what would be (C(write), C(remove), C(reload), C(bring_up),
      C(trap), C(bring_down)). C(trap) is the trap of O(start_action=trap) armed (and listed
      by the agent) instead of SAs brought up.
  returned: always
  type: list
  elements: str
  sample: [write, reload, up]
psk_fingerprint:
  description: C(SHA256:) and the unpadded base64 SHA-256 of the PSK bytes (as M(ikelab.ipsec.keygen) gives it).
  returned: with O(auth=psk), unless O(state=absent)
  type: str
  sample: "SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU"
auth:
  description: O(auth).
  returned: unless O(state=absent)
  type: str
  sample: pubkey
certificates:
  description:
    - With O(auth=pubkey), each certificate file of O(certs) and O(cacerts) with the SHA-256
      fingerprint of its DER (as M(ikelab.ipsec.keygen) gives it), or C((missing)).
  returned: with O(auth=pubkey), unless O(state=absent)
  type: dict
  sample: {"/etc/ikelab/pki/site1.crt": "SHA256:C7IRGxGnHSh8OK2lm0Mp6Kf6xCPPeGScvgVtbYp7bvo"}
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402

from ansible_collections.ikelab.ipsec.plugins.module_utils.agent_client import (  # noqa: E402
    DEFAULT_SOCKET,
)
from ansible_collections.ikelab.ipsec.plugins.module_utils.tunnel_backend import (  # noqa: E402
    STATES,
    TunnelBackend,
    run_module,
)
from ansible_collections.ikelab.ipsec.plugins.module_utils.tunnel_config import (  # noqa: E402
    AUTH_METHODS,
    IKE_VERSIONS,
    START_ACTIONS,
)
from ansible_collections.ikelab.ipsec.plugins.module_utils.tunnel_settings import (  # noqa: E402
    CLOSE_ACTIONS,
    DPD_ACTIONS,
)


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "name": {"type": "str", "required": True},
            "state": {"type": "str", "default": "present", "choices": list(STATES)},
            "version": {"type": "int", "choices": list(IKE_VERSIONS)},
            "aggressive": {"type": "bool"},
            "allow_aggressive_psk": {"type": "bool"},
            "local_addrs": {"type": "list", "elements": "str"},
            "remote_addrs": {"type": "list", "elements": "str"},
            "local_id": {"type": "str"},
            "remote_id": {"type": "str"},
            "psk": {"type": "str", "no_log": True},
            "auth": {"type": "str", "default": "psk", "choices": list(AUTH_METHODS)},
            "certs": {"type": "list", "elements": "path"},
            "private_key": {"type": "path", "no_log": False},
            "cacerts": {"type": "list", "elements": "path"},
            "ike_proposals": {"type": "list", "elements": "str"},
            "esp_proposals": {"type": "list", "elements": "str"},
            "local_ts": {"type": "list", "elements": "str"},
            "remote_ts": {"type": "list", "elements": "str"},
            "child": {"type": "str", "default": "net"},
            "start_action": {"type": "str", "default": "none", "choices": list(START_ACTIONS)},
            "dpd_delay": {"type": "raw"},
            "dpd_timeout": {"type": "raw"},
            "dpd_action": {"type": "str", "choices": list(DPD_ACTIONS)},
            "close_action": {"type": "str", "choices": list(CLOSE_ACTIONS)},
            "inactivity": {"type": "raw"},
            "inactivity_close_ike": {"type": "bool"},
            "keyingtries": {"type": "int", "no_log": False},
            "rekey_time": {"type": "raw", "no_log": False},
            "over_time": {"type": "raw"},
            "rand_time": {"type": "raw"},
            "reauth_time": {"type": "raw"},
            "child_rekey_time": {"type": "raw", "no_log": False},
            "child_life_time": {"type": "raw"},
            "child_rand_time": {"type": "raw"},
            "rekey_bytes": {"type": "raw", "no_log": False},
            "life_bytes": {"type": "raw"},
            "rekey_packets": {"type": "raw", "no_log": False},
            "life_packets": {"type": "raw"},
            "options": {"type": "dict", "default": {}},
            "child_options": {"type": "dict", "default": {}},
            "timeout": {"type": "int", "default": 30},
            "config_dir": {"type": "path", "default": "/etc/ikelab"},
            "socket": {"type": "path", "default": DEFAULT_SOCKET},
            "agent_venv": {"type": "path", "default": "/opt/ikelab/venv"},
        },
        required_if=[
            ("state", "present", ("local_id", "remote_id", "local_ts", "remote_ts")),
            ("state", "up", ("local_id", "remote_id", "local_ts", "remote_ts")),
            ("state", "down", ("local_id", "remote_id", "local_ts", "remote_ts")),
        ],
        supports_check_mode=True,
    )
    run_module(module, TunnelBackend)


if __name__ == "__main__":
    main()
