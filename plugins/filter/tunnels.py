# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filter ``ikelab.ipsec.tunnel_set_entries``: a host's planned tunnels (from
``ikelab.ipsec.tunnel_plan``) as the ``tunnels`` of ``ikelab.ipsec.tunnel_set``, each with
its pre-shared key read from the controller's key file (``with_keys=false`` leaves it out).

With ``up=true`` the entries are those to bring up: the responding end of an on-demand tunnel
(``on_demand``, its peer traps) is left out, as nothing is negotiated before traffic needs it
and waiting for its SAs would only time out; the trapping end is kept (its trap is awaited)."""

from __future__ import annotations

from typing import Any

from ansible.errors import AnsibleFilterError

# planner fields that are not parameters of the tunnel modules
PLANNER_ONLY = ("psk_file", "peer", "tunnel_id", "negotiated", "on_demand")


def _awaitable(entry: dict[str, Any]) -> bool:
    return not (entry.get("on_demand") and entry.get("start_action") == "none")


def tunnel_set_entries(
    entries: list[dict[str, Any]], with_keys: bool = True, up: bool = False
) -> list[dict]:
    out = []
    for entry in entries or []:
        if up and not _awaitable(entry):
            continue
        params = {k: v for k, v in entry.items() if k not in PLANNER_ONLY and v is not None}
        if with_keys:
            path = entry.get("psk_file")
            try:
                with open(path, encoding="utf-8") as f:
                    params["psk"] = f.read().strip()
            except (OSError, TypeError) as e:
                raise AnsibleFilterError(
                    f"tunnel {entry.get('tunnel_id')}: cannot read its key {path}: {e}"
                )
        out.append(params)
    return out


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"tunnel_set_entries": tunnel_set_entries}
