#!/usr/bin/python
# Copyright: ikelab.ipsec developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: flow_check
short_description: Prove that traffic crosses an IPsec tunnel of the ikelab agent, encrypted
version_added: "0.1.0"
description:
  - Sends interesting traffic from O(source), an address of the managed host in its protected
    subnet, to O(destination), an address in the remote protected subnet, and checks two
    facts together.
  - It arrived. ICMP, an echo reply came back (raw ICMP sockets, no C(ping) command).
    TCP, the handshake completed or a RST came back. UDP, a reply or an ICMP port
    unreachable came back.
  - It went through the tunnel. The counters of the Child SA that covers the flow (found by
    its selectors, or named by O(connection) and O(child)) rose by at least the packets sent
    (out) and the answers received (in), read from the agent before and after.
  - Fails with the reason otherwise, for example when no installed Child SA covers the flow
    (the tunnel is down; then nothing is sent).
  - On-demand tunnels (C(start_action=trap)). When no installed Child SA covers the flow but a
    trap policy of the agent does (its C(list-traps)), the first traffic brings the Child SA
    up. The module then sends probes every 20 ms until the first answer comes back (within
    O(on_demand_wait)) and returns the time from the first probe sent to that answer as
    RV(time_to_first_packet_ms), with RV(on_demand=true); the probes held or lost while the
    SA was negotiated do not count. Then the proof is made as always, through the new Child
    SA (O(count) probes, its counters before and after), so a tunnel whose traffic crossed
    unencrypted still fails.
author: ikelab.ipsec developers (!UNKNOWN)
options:
  source:
    description:
      - The address to send from (bound explicitly). Default, the address the host's routing
        picks for O(destination).
    type: str
  destination:
    description: The address to reach, in the remote protected subnet.
    type: str
    required: true
  protocol:
    description: What to send.
    type: str
    choices: [icmp, tcp, udp]
    default: icmp
  port:
    description: Destination port for O(protocol=tcp) and O(protocol=udp).
    type: int
    default: 9
  count:
    description: How many probes (echo requests, connection attempts, datagrams), 1-100.
    type: int
    default: 3
  wait:
    description: Seconds to wait for the answer to each probe.
    type: float
    default: 2
  on_demand_wait:
    description:
      - Seconds to wait for the first answer through an on-demand tunnel whose Child SA is
        not up yet (it is negotiated meanwhile); at most 120.
    type: float
    default: 10
  connection:
    description: The connection whose Child SA must carry the flow.
    type: str
  child:
    description: The child (CHILD_SA name) that must carry the flow.
    type: str
  socket:
    description: The agent's control socket.
    type: path
    default: /run/ikelab/ikeagent.sock
attributes:
  check_mode:
    support: full
    description:
      - Sends the traffic in check mode too; it changes nothing on the host, except that the
        traffic brings an on-demand tunnel up, as any traffic would.
  diff_mode:
    support: none
    description: Changes nothing, so there is nothing to show.
  platform:
    support: full
    description: Linux hosts where the ikelab agent runs.
    platforms: posix
notes:
  - Runs on the managed host with its system Python (3.10 or later, standard library only).
  - ICMP needs raw sockets, so root (CAP_NET_RAW).
  - With TCP, a closed port is fine (the RST proves the path); an open one is closed with a
    RST right after the handshake.
seealso:
  - module: ikelab.ipsec.tunnel
  - module: ikelab.ipsec.sa_info
"""

EXAMPLES = r"""
- name: Ping the host behind site2 from the gateway's LAN address, through the tunnel
  ikelab.ipsec.flow_check:
    source: 10.1.0.1
    destination: 10.2.0.10
    connection: site2

- name: TCP to port 443 of the other side
  ikelab.ipsec.flow_check:
    source: 10.1.0.1
    destination: 10.2.0.10
    protocol: tcp
    port: 443
  register: flow

- name: Through an on-demand tunnel, report how long its first packet took
  ikelab.ipsec.flow_check:
    source: 10.1.0.1
    destination: 10.4.0.10
    connection: branch3
  register: first

- name: Show the time to first packet (on_demand is false when the Child SA was up already)
  ansible.builtin.debug:
    msg: "on demand: {{ first.on_demand }}, first answer after {{ first.time_to_first_packet_ms | default('-') }} ms"

- name: Show the proof
  ansible.builtin.debug:
    msg: "{{ flow.sa.name }}/{{ flow.sa.child }}: +{{ flow.delta.packets_out }} out, +{{ flow.delta.packets_in }} in"
"""

RETURN = r"""
arrived:
  description: Whether at least one probe was answered from the other side.
  returned: when the probes were sent
  type: bool
  sample: true
encrypted:
  description:
    - Whether the Child SA's packet counters rose by at least the probes sent (out) and the
      answers received (in).
  returned: when the probes were sent
  type: bool
  sample: true
sent:
  description: Probes sent.
  returned: when the probes were sent
  type: int
  sample: 3
received:
  description: Probes answered.
  returned: when the probes were sent
  type: int
  sample: 3
outcomes:
  description: What each probe got (C(echo reply), C(connected), C(refused (RST)), C(reply), C(port unreachable), C(timeout), ...).
  returned: when the probes were sent
  type: list
  elements: str
  sample: [echo reply, echo reply, echo reply]
sa:
  description: The Child SA that carried the flow, with its IKE SA's name.
  returned: when the probes were sent
  type: dict
  contains:
    name:
      description: The connection (IKE SA) name.
      type: str
    child:
      description: The child's name.
      type: str
    spi_in:
      description: Inbound SPI (hex).
      type: str
    spi_out:
      description: Outbound SPI (hex).
      type: str
    local_ts:
      description: Local traffic selectors.
      type: list
      elements: str
    remote_ts:
      description: Remote traffic selectors.
      type: list
      elements: str
  sample:
    name: site2
    child: net
    spi_in: c1f0a2b3
    spi_out: d4e5f607
    local_ts: [10.1.0.0/24]
    remote_ts: [10.2.0.0/24]
counters_before:
  description: The child's C(packets_out), C(packets_in), C(bytes_out), C(bytes_in) before.
  returned: when the probes were sent
  type: dict
  sample: {packets_out: 10, packets_in: 10, bytes_out: 840, bytes_in: 840}
counters_after:
  description: The same counters after.
  returned: when the probes were sent
  type: dict
  sample: {packets_out: 13, packets_in: 13, bytes_out: 1092, bytes_in: 1092}
delta:
  description: C(counters_after) minus C(counters_before).
  returned: when the probes were sent
  type: dict
  sample: {packets_out: 3, packets_in: 3, bytes_out: 252, bytes_in: 252}
on_demand:
  description:
    - Whether the Child SA was absent when the check started and a trap policy covered the
      flow, so that the first traffic brought it up (an on-demand tunnel).
  returned: when probes were sent
  type: bool
  sample: true
time_to_first_packet_ms:
  description:
    - With RV(on_demand=true), milliseconds from the first probe sent to the first answer
      through the tunnel (the Child SA negotiated in between); null when nothing came back.
  returned: when RV(on_demand) is true
  type: float
  sample: 84.6
first_packet:
  description:
    - With RV(on_demand=true), the first traffic. C(sent), the probes sent until the first
      answer; C(answered), which of them was answered (1 for the very first, ICMP and TCP);
      C(outcome), what came back (C(echo reply), ... or C(timeout)); C(elapsed_ms), as
      RV(time_to_first_packet_ms).
  returned: when RV(on_demand) is true
  type: dict
  sample: {sent: 5, answered: 1, outcome: echo reply, elapsed_ms: 84.6}
trap:
  description:
    - With RV(on_demand=true), the trap policy the traffic hit, as M(ikelab.ipsec.tunnel)
      returns it (C(state), C(reqid), C(acquires), selectors), read after the first answer.
  returned: when RV(on_demand) is true
  type: dict
  sample: {state: active, name: site2, child: net, reqid: 1, acquires: 1}
protocol:
  description: O(protocol).
  returned: always
  type: str
  sample: icmp
source:
  description: The address the probes were sent from.
  returned: always
  type: str
  sample: 10.1.0.1
destination:
  description: O(destination).
  returned: always
  type: str
  sample: 10.2.0.10
port:
  description: O(port), for TCP and UDP.
  returned: when O(protocol) is tcp or udp
  type: int
  sample: 443
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402

from ansible_collections.ikelab.ipsec.plugins.module_utils.agent_client import (  # noqa: E402
    DEFAULT_SOCKET,
    AgentClient,
)
from ansible_collections.ikelab.ipsec.plugins.module_utils.flows import (  # noqa: E402
    PROTOCOLS,
    FlowCheck,
    FlowError,
)


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "source": {"type": "str"},
            "destination": {"type": "str", "required": True},
            "protocol": {"type": "str", "default": "icmp", "choices": list(PROTOCOLS)},
            "port": {"type": "int", "default": 9},
            "count": {"type": "int", "default": 3},
            "wait": {"type": "float", "default": 2},
            "on_demand_wait": {"type": "float", "default": 10},
            "connection": {"type": "str"},
            "child": {"type": "str"},
            "socket": {"type": "path", "default": DEFAULT_SOCKET},
        },
        supports_check_mode=True,
    )
    try:
        check = FlowCheck(module.params, AgentClient(module.params["socket"]))
        check.apply()
    except FlowError as e:
        module.fail_json(msg=str(e))
    result = check.dump()
    failure = check.failure()
    if failure:
        module.fail_json(msg=failure, **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
