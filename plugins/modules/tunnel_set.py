#!/usr/bin/python
# Copyright: ikelab.ipsec developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: tunnel_set
short_description: Configure every IPsec tunnel of a host in one pass
version_added: "0.1.0"
description:
  - The tunnels of one host, each as M(ikelab.ipsec.tunnel) manages it (one fragment
    C(<config_dir>/tunnels.d/<name>.yaml) per connection, with its pre-shared key, mode
    C(0600)), handled together so that a host with many tunnels costs one module run, one
    validation, one reload and one wait instead of one of each per tunnel.
  - Every new fragment is validated with the agent's own schema (one C(ikeagent --check) over a
    scratch copy of the set) before any file is written; then the files are written, the agent
    reloads once, and with O(state=up) the SAs are brought up (this host initiates the tunnels
    with C(start_action=start) and waits for its peers on the others; for on-demand tunnels,
    C(start_action=trap), it waits only until the agent lists their traps, and each tunnel's
    result carries its C(trap) as M(ikelab.ipsec.tunnel) returns it).
  - With O(exclusive=true) the fragments of connections not in O(tunnels) are removed in the
    same reload (the agent deletes their SAs).
  - If the agent rejects the reload, every file written or removed is put back and the module
    fails with the agent's message.
  - Pre-shared keys are never returned or shown; diffs and results carry their fingerprints.
author: ikelab.ipsec developers (!UNKNOWN)
options:
  tunnels:
    description:
      - The tunnels, each a mapping of the parameters of M(ikelab.ipsec.tunnel) (C(name),
        C(version), C(aggressive), C(allow_aggressive_psk), C(local_addrs), C(remote_addrs),
        C(local_id), C(remote_id), C(auth), C(psk), C(certs), C(private_key), C(cacerts),
        C(ike_proposals), C(esp_proposals), C(local_ts),
        C(remote_ts), C(child), C(start_action), C(dpd_delay), C(dpd_timeout), C(dpd_action),
        C(close_action), C(inactivity), C(inactivity_close_ike), C(keyingtries), C(rekey_time),
        C(over_time), C(rand_time), C(reauth_time), C(child_rekey_time), C(child_life_time),
        C(child_rand_time), C(rekey_bytes), C(life_bytes), C(rekey_packets), C(life_packets),
        C(options), C(child_options)); C(state), C(timeout), C(config_dir), C(socket) and
        C(agent_venv) are set for the whole set.
      - The lifetimes, liveness and on-demand parameters are checked as M(ikelab.ipsec.tunnel)
        checks them, before anything is written.
      - C(version) is C(1) or C(2) (the agent's default); C(aggressive) (IKEv1 Aggressive Mode,
        needs C(version=1)) and C(allow_aggressive_psk) (its opt-in with a pre-shared key) are
        true or false. Their combination is checked by the agent's schema with the set.
      - C(auth) is C(psk) (the default; C(psk) holds the key) or C(pubkey) (certificates;
        C(certs), C(private_key) and C(cacerts) are absolute paths of files on the managed host,
        see M(ikelab.ipsec.tunnel)).
    type: list
    elements: dict
    required: true
  state:
    description:
      - C(present) writes the fragments and reloads the agent.
      - C(up) also brings every tunnel's SAs up (or waits for the peer) within O(timeout).
    type: str
    choices: [present, up]
    default: present
  exclusive:
    description: Remove the fragments of connections that are not in O(tunnels).
    type: bool
    default: false
  timeout:
    description: Seconds to wait for each tunnel's SAs with O(state=up).
    type: int
    default: 30
  config_dir:
    description: The agent's configuration directory (fragments go to its C(tunnels.d)).
    type: path
    default: /etc/ikelab
  socket:
    description: The agent's control socket.
    type: path
    default: /run/ikelab/ikeagent.sock
  agent_venv:
    description: The agent's virtual environment (for C(bin/ikeagent --check)).
    type: path
    default: /opt/ikelab/venv
attributes:
  check_mode:
    support: full
    description: Reports what would be written, removed and brought up; validates when the agent is installed.
  diff_mode:
    support: full
    description: One diff per fragment, pre-shared keys replaced by their fingerprints.
  platform:
    support: full
    platforms: posix
    description: Runs on the host that runs the agent.
seealso:
  - module: ikelab.ipsec.tunnel
  - module: ikelab.ipsec.sa_info
"""

EXAMPLES = r"""
- name: Every tunnel of this gateway, nothing else
  ikelab.ipsec.tunnel_set:
    state: up
    exclusive: true
    tunnels:
      - name: branch-b
        local_addrs: [192.0.2.1]
        remote_addrs: [192.0.2.2]
        local_id: gw-a.example
        remote_id: gw-b.example
        psk: "{{ lookup('ansible.builtin.file', 'secrets/a--b.psk') }}"
        local_ts: [10.1.0.0/24]
        remote_ts: [10.2.0.0/24]
        start_action: start
      - name: legacy-peer
        version: 1
        aggressive: true
        allow_aggressive_psk: true
        local_addrs: [192.0.2.1]
        remote_addrs: [192.0.2.3]
        local_id: gw-a.example
        remote_id: legacy-peer.example
        psk: "{{ lookup('ansible.builtin.file', 'secrets/a--legacy.psk') }}"
        ike_proposals: [aes256-sha256-modp2048]
        esp_proposals: [aes256-sha256]
        local_ts: [10.1.0.0/24]
        remote_ts: [10.3.0.0/24]
"""

RETURN = r"""
tunnels:
  description: Per tunnel, what M(ikelab.ipsec.tunnel) returns, with its C(name).
  returned: always
  type: list
  elements: dict
removed:
  description: Connections whose fragments were removed (O(exclusive=true)).
  returned: always
  type: list
  elements: str
actions:
  description: What was done for the whole set (C(reload), C(remove NAME), C(restore)).
  returned: always
  type: list
  elements: str
state:
  description: The requested state.
  returned: always
  type: str
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402

from ansible_collections.ikelab.ipsec.plugins.module_utils.agent_client import (  # noqa: E402
    DEFAULT_SOCKET,
)
from ansible_collections.ikelab.ipsec.plugins.module_utils.tunnel_backend import (  # noqa: E402
    run_module,
)
from ansible_collections.ikelab.ipsec.plugins.module_utils.tunnel_set import (  # noqa: E402
    SET_STATES,
    TunnelSetBackend,
)


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "tunnels": {"type": "list", "elements": "dict", "required": True, "no_log": False},
            "state": {"type": "str", "default": "present", "choices": list(SET_STATES)},
            "exclusive": {"type": "bool", "default": False},
            "timeout": {"type": "int", "default": 30},
            "config_dir": {"type": "path", "default": "/etc/ikelab"},
            "socket": {"type": "path", "default": DEFAULT_SOCKET},
            "agent_venv": {"type": "path", "default": "/opt/ikelab/venv"},
        },
        supports_check_mode=True,
    )
    p = module.params
    # the keys are secrets even inside the list: mask them wherever they might be echoed
    for entry in p["tunnels"] or []:
        if isinstance(entry, dict) and entry.get("psk"):
            module.no_log_values.add(str(entry["psk"]))
    run_module(module, TunnelSetBackend)


if __name__ == "__main__":
    main()
