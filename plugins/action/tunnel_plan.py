# Copyright: contributors to the ikelab.ipsec collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin ``ikelab.ipsec.tunnel_plan``: plan every tunnel on the controller.

Reads the site-to-site variables of every inventory host from ``hostvars`` and the groups, runs
the planner (``plugin_utils.plan``) and returns the plan, or fails listing every problem, one
per line. Contacts no host, reads no key (it only tests whether PSK files exist).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ansible.errors import AnsibleError
from ansible.plugins.action import ActionBase

from ansible_collections.ikelab.ipsec.plugins.plugin_utils.plan import (
    PlanError,
    Problem,
    make_plan,
)

# The variables the planner reads from each host (nothing else is templated).
PLAN_VARS = (
    "ikelab_underlay_address",
    "ikelab_protected_subnets",
    "ikelab_ike_id",
    "ikelab_ike_proposals",
    "ikelab_esp_proposals",
    "ikelab_tunnels",
    "ikelab_tunnel_options",
    "ikelab_topology",
)

ARGUMENT_SPEC: dict[str, Any] = {
    "hosts": {"type": "list", "elements": "str"},
    "topology": {"type": "raw"},
    "secrets_dir": {"type": "path", "required": True},
    "generate_keys": {"type": "bool", "default": False},
    "defaults": {"type": "dict"},
    "auth": {"type": "str", "default": "psk", "choices": ["psk", "pubkey"]},
    "pki_dir": {"type": "str", "default": "/etc/ikelab/pki"},
}


def plain(value: Any) -> Any:
    """Templated Ansible values (tagged strings, lazy containers) as plain Python data."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, str):
        return str(value)
    return value


def host_variables(hostvars: Any) -> tuple[dict[str, dict[str, Any]], list[Problem]]:
    """The planner's variables of every inventory host; a variable that cannot be templated is
    a problem naming host and field."""
    out: dict[str, dict[str, Any]] = {}
    problems: list[Problem] = []
    for host in sorted(str(h) for h in hostvars):
        hv = hostvars[host]
        values: dict[str, Any] = {}
        for var in PLAN_VARS:
            if var not in hv:
                continue
            try:
                values[var] = plain(hv[var])
            except Exception as e:  # templating errors of any kind name the variable
                problems.append(Problem(host, (), var, f"cannot be evaluated: {e}"))
        out[host] = values
    return out, problems


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False
    _supports_check_mode = True

    def run(self, tmp: Any = None, task_vars: dict[str, Any] | None = None) -> dict[str, Any]:
        task_vars = task_vars or {}
        result = super().run(tmp, task_vars)
        del tmp
        _spec, args = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC)

        hosts = args["hosts"]
        if hosts is None:
            hosts = [str(h) for h in task_vars.get("ansible_play_hosts_all", [])]
        if "hostvars" not in task_vars:
            raise AnsibleError("tunnel_plan needs hostvars (run it as a task of a play)")
        hostvars, problems = host_variables(task_vars["hostvars"])
        groups = {
            str(g): [str(h) for h in members] for g, members in task_vars.get("groups", {}).items()
        }

        try:
            plan = make_plan(
                hostvars,
                groups,
                hosts=hosts,
                topology=plain(args["topology"]),
                secrets_dir=args["secrets_dir"],
                generate_keys=args["generate_keys"],
                defaults=plain(args["defaults"]),
                problems=problems,
                auth=args["auth"],
                pki_dir=args["pki_dir"],
            )
        except PlanError as e:
            result.update(
                failed=True,
                changed=False,
                msg=f"tunnel plan: {len(e.problems)} problem(s)\n{e}",
                problems=[
                    {
                        "host": p.host,
                        "tunnels": list(p.tunnels),
                        "field": p.field,
                        "reason": p.reason,
                    }
                    for p in e.problems
                ],
            )
            return result
        result.update(changed=False, plan=plan.hosts, tunnels=plan.tunnels)
        return result
