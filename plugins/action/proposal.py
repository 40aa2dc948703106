# Copyright: contributors to the ikelab.ipsec collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""ikelab.ipsec.proposal: validate, normalise and render IKE/ESP proposals on the controller.

No remote execution: the logic is ``plugin_utils.proposals`` over the agent's suite table.
"""

from __future__ import annotations

from typing import Any

from ansible.plugins.action import ActionBase

from ansible_collections.ikelab.ipsec.plugins.plugin_utils import proposals

_PROPOSALS = {"type": "raw"}

ARGUMENT_SPEC: dict[str, Any] = {
    "ike": dict(_PROPOSALS),
    "esp": dict(_PROPOSALS),
    "version": {"type": "int", "choices": [1, 2], "default": 2},
    "allow_weak": {"type": "bool", "default": False},
    "peer": {
        "type": "dict",
        "options": {"ike": dict(_PROPOSALS), "esp": dict(_PROPOSALS)},
    },
}


def _plain(value: Any) -> Any:
    """Task values as plain str/list (templating may hand over str/list subclasses)."""
    if isinstance(value, str):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False
    _supports_check_mode = True
    _supports_async = False

    def run(self, tmp: Any = None, task_vars: Any = None) -> dict[str, Any]:
        result = super().run(tmp, task_vars)
        del tmp
        _spec, args = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC)
        peer = args.get("peer")
        if peer is not None:
            peer = {k: _plain(v) for k, v in peer.items() if v is not None}
        try:
            planned = proposals.plan(
                ike=_plain(args["ike"]),
                esp=_plain(args["esp"]),
                allow_weak=bool(args["allow_weak"]),
                peer=peer,
                version=int(args["version"]),
            )
        except ValueError as e:
            result.update(failed=True, changed=False, msg=str(e))
            return result
        result.update(planned)
        result["changed"] = False
        return result
