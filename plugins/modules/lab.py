#!/usr/bin/python
# Copyright: contributors to the ikelab.ipsec collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: lab
short_description: Build a lab of IPsec sites as namespaces on the controller, reached over ssh
version_added: "0.1.0"
description:
  - Builds O(sites) sites on this machine. Each site is a network namespace C(<name>-site<i>)
    (the gateway) whose PID 1 is the lab's site init, with private mount, UTS, IPC and PID
    namespaces, copy-on-write views of C(/etc), C(/var), C(/opt), C(/usr/local) and C(/root),
    tmpfs on C(/run) and C(/tmp), its own sshd on the management address, and a process
    supervisor (C(ikelab-service start|stop|restart|status NAME)). Behind each gateway, a
    namespace C(<name>-site<i>-lan) holds one host of the site's protected subnet.
  - "Networks: the management bridge C(<name>-mgmt) in the root namespace (the only thing the
    lab adds there) with the management network's first address; site i's C(mgmt0) at address
    10+i of O(management_network), its C(wan0) at address 10+i of O(underlay_network) on the
    bridge in namespace C(<name>-wan), its C(lan0) at address 1 of the first /24 of the i-th
    block of O(lan_pool) (C(10.i.0.1/24) for C(10.0.0.0/8)) and the host behind it at address
    10. Gateways forward (C(net.ipv4.ip_forward=1)) but have no route to other sites."
  - Writes an Ansible inventory (group C(sites)) with the lab's ssh key and known_hosts, and
    optionally a containerlab topology file of the same lab.
  - Idempotent. A second run with the same parameters changes nothing and leaves running sites
    alone; a site whose init died is started again; a site whose configuration changed is
    restarted; sites beyond O(sites) are removed.
  - Runs on the controller as root with a python that can import pyroute2 (the controller's
    virtual environment). Interfaces, addresses, routes and sysctls are set through pyroute2.
  - With O(state=absent), removes everything of lab O(name) (found by its names, whatever
    O(sites) is) - its sites' processes, namespaces, bridge and bridge ports, the inventory
    and containerlab files if they are the lab's, and the lab's files under O(dir) - and
    nothing else.
author: ikelab.ipsec developers (!UNKNOWN)
options:
  name:
    description:
      - The lab's name, 1-5 characters (a lowercase letter, then lowercase letters or digits).
        It prefixes the lab's namespaces and interfaces, so labs with different names can
        run side by side (with different O(management_network)s).
    type: str
    default: ikl
  sites:
    description:
      - How many sites (C(site1) .. C(siteN)).
    type: int
    default: 4
  state:
    description:
      - C(present) builds or converges the lab, C(absent) removes it.
    type: str
    choices: [present, absent]
    default: present
  dir:
    description:
      - The lab's working directory (created, mode 0700) for the ssh key pair, known_hosts and
        each site's state (host key, init config, init record and log) under C(sites/).
    type: path
    required: true
  inventory:
    description:
      - Where to write the inventory (YAML). Not written when omitted. With O(state=absent),
        removed if it is one the lab wrote.
    type: path
  containerlab_file:
    description:
      - Where to write a containerlab topology of the same lab (linux nodes for the sites,
        their LAN hosts and the underlay bridge; links; management addresses). Only the file
        is written. With O(state=absent), removed if it is one the lab wrote.
    type: path
  containerlab_image:
    description:
      - The container image of the nodes in O(containerlab_file).
    type: str
    default: debian:bookworm
  management_network:
    description:
      - IPv4 network of the management bridge in the root namespace. It must not overlap an
        address or route the root namespace already has (for example another lab's).
    type: str
    default: 198.18.0.0/24
  underlay_network:
    description:
      - IPv4 network of the underlay, between the gateways' C(wan0) interfaces (only inside
        the lab's namespaces).
    type: str
    default: 192.0.2.0/24
  lan_pool:
    description:
      - IPv4 network (/16 or shorter) that the sites' protected /24 subnets are taken from.
    type: str
    default: 10.0.0.0/8
  init_script:
    description:
      - The site init (C(ikelab_site_init.py) of the C(ikelab.ipsec.lab) role, with
        C(ikelab_supervisor.py) and C(ikelab_service.py) beside it). Required with
        O(state=present).
    type: path
  ssh_key:
    description:
      - The private key Ansible logs in with (ed25519, generated with C(ssh-keygen) if
        missing; its C(.pub) is root's authorized key on every site). Default
        C(<dir>/id_ed25519), which O(state=absent) removes.
    type: path
  ready_timeout:
    description:
      - Seconds to wait for the sshd of each started site to answer.
    type: float
    default: 30
  engine:
    description:
      - What a site's gateway is. C(netns) - the namespaces described above, sharing this
        machine's kernel. C(uml) - a User-mode Linux guest (Debian's C(linux.uml), package
        C(user-mode-linux), and C(kmod)) - a real Linux kernel of its own with ESP, XFRM and
        their crypto loaded, so the agent's kernel data plane runs where this machine's kernel
        has no ESP. The guest runs inside the site's namespace with its C(mgmt0), C(wan0) and
        C(lan0) on the namespace's veth ends (which then carry no address), boots from this
        machine's root file system read-only under a tmpfs overlay, and runs the same site
        init (sshd, supervisor) as its PID 1; the LAN host stays a namespace.
      - Changing the engine of a running lab restarts its sites.
    type: str
    choices: [netns, uml]
    default: netns
  guest_memory:
    description:
      - Memory of each guest in MiB with O(engine=uml) (128 to 4096). The guest's files live
        in it (tmpfs), the agent's virtual environment included.
    type: int
    default: 256
notes:
  - Needs root, C(nsenter) and C(unshare) (util-linux), C(/usr/sbin/sshd) (openssh-server),
    C(ssh-keygen) and C(/usr/bin/python3) for the site init; with O(engine=uml) also
    C(/usr/bin/linux.uml) and its modules (user-mode-linux) and C(/sbin/modprobe) (kmod).
  - Supports check mode and diff mode (the running sites before and after).
"""

EXAMPLES = r"""
- name: Four sites, inventory for the other playbooks
  ikelab.ipsec.lab:
    name: ikl
    sites: 4
    dir: "{{ playbook_dir }}/../.lab/ikl"
    inventory: "{{ playbook_dir }}/../inventories/lab/hosts.yml"
    init_script: "{{ role_path }}/files/ikelab_site_init.py"
  register: lab

- name: The same lab as a containerlab topology too, on another management network
  ikelab.ipsec.lab:
    name: demo
    sites: 2
    dir: /srv/lab/demo
    management_network: 198.18.7.0/24
    containerlab_file: /srv/lab/demo.clab.yml
    init_script: /path/to/roles/lab/files/ikelab_site_init.py

- name: Two sites whose gateways are User-mode Linux guests (kernel ESP)
  ikelab.ipsec.lab:
    name: kern
    sites: 2
    engine: uml
    dir: /srv/lab/kern
    management_network: 198.18.8.0/24
    init_script: /path/to/roles/lab/files/ikelab_site_init.py

- name: Remove the lab
  ikelab.ipsec.lab:
    name: ikl
    dir: "{{ playbook_dir }}/../.lab/ikl"
    inventory: "{{ playbook_dir }}/../inventories/lab/hosts.yml"
    state: absent
"""

RETURN = r"""
sites:
  description: The sites (empty after O(state=absent)).
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: Inventory hostname and site hostname (C(site<i>)).
      type: str
      sample: site1
    index:
      description: The site's number i.
      type: int
      sample: 1
    netns:
      description: The gateway's network namespace.
      type: str
      sample: ikl-site1
    lan_netns:
      description: The namespace of the host behind the gateway.
      type: str
      sample: ikl-site1-lan
    management_address:
      description: The site's sshd address (C(ansible_host)).
      type: str
      sample: 198.18.0.11
    underlay_address:
      description: The gateway's underlay (IKE) address.
      type: str
      sample: 192.0.2.11
    protected_subnet:
      description: The site's protected subnet.
      type: str
      sample: 10.1.0.0/24
    lan_address:
      description: The gateway's address in its protected subnet.
      type: str
      sample: 10.1.0.1
    lan_host:
      description: The address of the host behind the gateway.
      type: str
      sample: 10.1.0.10
    running:
      description: Whether the site's init runs.
      type: bool
      sample: true
    pid:
      description: The site init's PID as the controller sees it.
      type: int
      sample: 4242
changes:
  description: What changed (or, in check mode, would change), one line per action.
  returned: always
  type: list
  elements: str
  sample: ["create network namespace ikl-site1", "start site1"]
inventory:
  description: The inventory file.
  returned: always
  type: str
ssh_private_key:
  description: The private key of the lab (its public key is root's authorized key).
  returned: always
  type: str
known_hosts:
  description: The known_hosts file with every site's host key.
  returned: always
  type: str
bridge:
  description: The management bridge in the root namespace.
  returned: state=present
  type: str
  sample: ikl-mgmt
bridge_address:
  description: The controller's address on the management bridge.
  returned: state=present
  type: str
  sample: 198.18.0.1
wan_netns:
  description: The namespace of the underlay bridge.
  returned: state=present
  type: str
  sample: ikl-wan
engine:
  description: What the gateways are (O(engine)).
  returned: state=present
  type: str
  sample: uml
"""

import os  # noqa: E402 (after the docs, as Ansible does)

from ansible.module_utils.basic import AnsibleModule  # noqa: E402

from ansible_collections.ikelab.ipsec.plugins.module_utils.lab.backend import (  # noqa: E402
    LabBackend,
    LabOptions,
    LabTeardown,
    running_sites,
)
from ansible_collections.ikelab.ipsec.plugins.module_utils.lab.network import (  # noqa: E402
    LabError,
)
from ansible_collections.ikelab.ipsec.plugins.module_utils.lab.plan import (  # noqa: E402
    NAME_RE,
    LabParameterError,
    LabSpec,
)


def _norm(path: str | None) -> str | None:
    return os.path.normpath(os.path.abspath(path)) if path else None


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "name": {"type": "str", "default": "ikl"},
            "sites": {"type": "int", "default": 4},
            "state": {"type": "str", "default": "present", "choices": ["present", "absent"]},
            "dir": {"type": "path", "required": True},
            "inventory": {"type": "path"},
            "containerlab_file": {"type": "path"},
            "containerlab_image": {"type": "str", "default": "debian:bookworm"},
            "management_network": {"type": "str", "default": "198.18.0.0/24"},
            "underlay_network": {"type": "str", "default": "192.0.2.0/24"},
            "lan_pool": {"type": "str", "default": "10.0.0.0/8"},
            "init_script": {"type": "path"},
            "ssh_key": {"type": "path"},
            "ready_timeout": {"type": "float", "default": 30.0},
            "engine": {"type": "str", "default": "netns", "choices": ["netns", "uml"]},
            "guest_memory": {"type": "int", "default": 256},
        },
        required_if=[("state", "present", ["init_script"])],
        supports_check_mode=True,
    )
    p = module.params
    options = LabOptions(
        dir=str(_norm(p["dir"])),
        init_script=_norm(p["init_script"]),
        inventory=_norm(p["inventory"]),
        containerlab_file=_norm(p["containerlab_file"]),
        containerlab_image=p["containerlab_image"],
        ssh_key=_norm(p["ssh_key"]),
        ready_timeout=p["ready_timeout"],
    )
    if os.geteuid() != 0:
        module.fail_json(msg="the lab module needs root (namespaces, mounts, interfaces)")
    try:
        if p["state"] == "present":
            spec = LabSpec.parse(
                p["name"],
                p["sites"],
                p["management_network"],
                p["underlay_network"],
                p["lan_pool"],
                p["engine"],
                p["guest_memory"],
            )
            backend: LabBackend | LabTeardown = LabBackend(spec, options)
        else:
            if not NAME_RE.fullmatch(p["name"]):
                raise LabParameterError("name", f"{p['name']!r} is not a lab name")
            backend = LabTeardown(p["name"], options)
        before = running_sites(p["name"], options)
        changes = backend.needs_change() if module.check_mode else backend.apply()
        result = backend.dump()
    except (LabParameterError, LabError) as exc:
        module.fail_json(msg=str(exc), field=getattr(exc, "field", None))
    # check mode: every planned site would run; otherwise what runs now
    after = [s["name"] for s in result["sites"] if module.check_mode or s["running"]]
    module.exit_json(
        changed=bool(changes),
        changes=changes,
        diff={
            "before": {"running_sites": sorted(before)},
            "after": {"running_sites": sorted(after)},
        },
        **result,
    )


if __name__ == "__main__":
    main()
