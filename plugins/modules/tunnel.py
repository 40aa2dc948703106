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
        initiator); C(none) waits for the peer (this host responds).
    type: str
    choices: [none, start]
    default: none
  dpd_delay:
    description: Liveness check interval, seconds or a duration (C(30s)); the agent's default is off.
    type: raw
  rekey_time:
    description: IKE SA rekey interval, seconds or a duration (C(4h)).
    type: raw
  child_rekey_time:
    description: Child SA rekey interval, seconds or a duration (C(1h)).
    type: raw
  options:
    description:
      - Further swanctl connection keys (C(mobike), C(encap), C(keyingtries), ...), written as
        given and validated by the agent. Keys set by the parameters above (among them
        C(version), C(aggressive) and C(allow_aggressive_psk)) are refused.
    type: dict
    default: {}
  child_options:
    description:
      - Further swanctl child keys (C(dpd_action), C(close_action), C(rekey_bytes), ...),
        validated by the agent.
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
    brings it up again, a responder waits for its peer. Configure every end (O(state=present))
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
actions:
  description:
    - What was done, in order (C(write), C(remove), C(reload), C(restore), C(up), C(down));
      in check mode what would be (C(write), C(remove), C(reload), C(bring_up), C(bring_down)).
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


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "name": {"type": "str", "required": True},
            "state": {"type": "str", "default": "present", "choices": list(STATES)},
            "version": {"type": "int", "choices": [1, 2]},
            "aggressive": {"type": "bool"},
            "allow_aggressive_psk": {"type": "bool"},
            "local_addrs": {"type": "list", "elements": "str"},
            "remote_addrs": {"type": "list", "elements": "str"},
            "local_id": {"type": "str"},
            "remote_id": {"type": "str"},
            "psk": {"type": "str", "no_log": True},
            "auth": {"type": "str", "default": "psk", "choices": ["psk", "pubkey"]},
            "certs": {"type": "list", "elements": "path"},
            "private_key": {"type": "path", "no_log": False},
            "cacerts": {"type": "list", "elements": "path"},
            "ike_proposals": {"type": "list", "elements": "str"},
            "esp_proposals": {"type": "list", "elements": "str"},
            "local_ts": {"type": "list", "elements": "str"},
            "remote_ts": {"type": "list", "elements": "str"},
            "child": {"type": "str", "default": "net"},
            "start_action": {"type": "str", "default": "none", "choices": ["none", "start"]},
            "dpd_delay": {"type": "raw"},
            "rekey_time": {"type": "raw", "no_log": False},
            "child_rekey_time": {"type": "raw", "no_log": False},
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
