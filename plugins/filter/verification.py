# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filter ``ikelab.ipsec.verification``: the table of verified tunnels (see verify.yml)."""

from __future__ import annotations

from typing import Any

from ansible.errors import AnsibleFilterError

from ansible_collections.ikelab.ipsec.plugins.plugin_utils.verification import verify


def verification(
    tunnels: list[dict[str, Any]],
    hostvars: Any,
    hosts: list[str],
    flows_var: str,
    sas_var: str,
) -> dict[str, Any]:
    """Rows, table lines and failures for ``tunnels`` from each host's registered results."""
    per_host = {}
    for host in hosts:
        try:
            host_vars = hostvars[host]
        except KeyError:
            raise AnsibleFilterError(f"verification: unknown host {host!r}")
        flows = host_vars.get(flows_var) or {}
        per_host[host] = (flows.get("results") or [], host_vars.get(sas_var))
    return verify(tunnels, per_host)


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"verification": verification}
