#!/usr/bin/python
# Copyright: ikelab.ipsec developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: sa_info
short_description: List the IKE and Child SAs and the connections of the ikelab agent
version_added: "0.1.0"
description:
  - Asks the running ikelab agent (C(ikeagent)) on the managed host over its control socket for
    its IKE SAs with their Child SAs (states, algorithms, SPIs, selectors, byte and packet
    counters; as C(ikectl list-sas --json) prints them), its configured connections (as
    C(ikectl list-conns --json)) and its status.
  - Read-only; never shows key material.
author: ikelab.ipsec developers (!UNKNOWN)
options:
  name:
    description: Only this connection's SAs and configuration.
    type: str
  socket:
    description: The agent's control socket.
    type: path
    default: /run/ikelab/ikeagent.sock
attributes:
  check_mode:
    support: full
    description: Reads the same in check mode.
  diff_mode:
    support: none
    description: Changes nothing, so there is nothing to show.
  platform:
    support: full
    description: Linux hosts where the ikelab agent runs.
    platforms: posix
notes:
  - Runs on the managed host with its system Python (3.10 or later, standard library only).
  - Fails when the agent is not reachable on O(socket).
seealso:
  - module: ikelab.ipsec.tunnel
  - module: ikelab.ipsec.flow_check
"""

EXAMPLES = r"""
- name: All SAs of the host
  ikelab.ipsec.sa_info:
  register: ipsec

- name: Every child installed
  ansible.builtin.assert:
    that: >-
      ipsec.sas | map(attribute='children') | flatten
      | rejectattr('state', 'equalto', 'INSTALLED') | list | length == 0

- name: One connection
  ikelab.ipsec.sa_info:
    name: site2
  register: site2
"""

RETURN = r"""
sas:
  description:
    - IKE SAs, each with C(name), C(uid), C(version), C(state), C(role), C(local_addr),
      C(local_port), C(local_id), C(remote_addr), C(remote_port), C(remote_id), C(spi_i),
      C(spi_r), C(encryption), C(integrity), C(prf), C(dh), C(established), C(rekey_in) and
      C(children).
    - Each child has C(name), C(reqid), C(state), C(mode), C(protocol), C(encap), C(spi_in),
      C(spi_out), C(encryption), C(integrity), C(dh), C(local_ts), C(remote_ts), C(bytes_in),
      C(packets_in), C(bytes_out), C(packets_out), C(last_used), C(installed), C(rekey_in) and
      C(expire_in).
  returned: success
  type: list
  elements: dict
  sample:
    - name: site2
      state: ESTABLISHED
      role: initiator
      encryption: AES_GCM_16_256
      prf: PRF_HMAC_SHA2_256
      dh: CURVE_25519
      children:
        - name: net
          state: INSTALLED
          spi_in: c1f0a2b3
          spi_out: d4e5f607
          encryption: AES_GCM_16_256
          local_ts: [10.1.0.0/24]
          remote_ts: [10.2.0.0/24]
          bytes_in: 252
          packets_in: 3
          bytes_out: 252
          packets_out: 3
connections:
  description: The configured connections (addresses, identities, proposals, children); no secrets.
  returned: success
  type: list
  elements: dict
  sample:
    - name: site2
      version: 2
      local_addrs: [192.0.2.11]
      remote_addrs: [192.0.2.12]
      proposals: [aes256gcm16-prfsha256-x25519]
      children:
        - name: net
          start_action: start
agent:
  description: The agent's status (version, pid, uptime, data plane, counts and statistics).
  returned: success
  type: dict
  sample:
    version: 0.1.0
    dataplane:
      name: userspace
    ike_sas: 1
    child_sas: 1
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402

from ansible_collections.ikelab.ipsec.plugins.module_utils.agent_client import (  # noqa: E402
    DEFAULT_SOCKET,
    AgentClient,
    AgentError,
    SaInfo,
)


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "name": {"type": "str"},
            "socket": {"type": "path", "default": DEFAULT_SOCKET},
        },
        supports_check_mode=True,
    )
    info = SaInfo(AgentClient(module.params["socket"]), module.params["name"])
    try:
        info.apply()
    except AgentError as e:
        module.fail_json(msg=str(e))
    module.exit_json(**info.dump())


if __name__ == "__main__":
    main()
