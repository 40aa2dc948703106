# Copyright: ikelab.ipsec developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The ``tunnel`` module's backend: a fragment on disk plus the agent's SAs (stdlib only).

``TunnelBackend(params, client, validator)`` reads the current fragment and the agent's view;
``needs_change()`` plans (write / remove / reload / bring up / bring down) without touching
anything; ``apply()`` carries the plan out; ``dump()`` is the module's result (never the PSK:
the diff shows its fingerprint).

With ``start_action: trap`` nothing is negotiated before traffic needs it: state ``up`` waits
until the agent lists the child's trap (``list-traps``), not for SAs, and the result carries
the trap (``trap``: trapped or active, reqid).

Writing is all or nothing (the files: ``fragment_files``): the new text goes to a 0600 temporary file beside the fragment, is
validated with the agent's own ``ikeagent --check``, then renamed into place; if the running
agent then refuses the reload, the previous fragment is put back (the agent keeps running the
previous configuration, so both agree again) and the error carries the agent's message.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ansible_collections.ikelab.ipsec.plugins.module_utils.agent_client import (
    AgentClient,
    AgentCommandError,
    AgentError,
    AgentUnreachable,
    child_is_up,
    child_trap,
    connection_sas,
    trap_state,
)
from ansible_collections.ikelab.ipsec.plugins.module_utils.fragment_files import (
    FRAGMENT_DIR,
    AgentValidator,
    FragmentStore,
    TunnelError,
    ValidationError,
    validate_scratch,
)
from ansible_collections.ikelab.ipsec.plugins.module_utils.tunnel_config import (
    SpecError,
    TunnelSpec,
    certificate_stamps,
    check_name,
    decode_psk,
    existing_psk,
    psk_fingerprint,
    redact,
    render,
    render_redacted,
)

__all__ = [
    "FRAGMENT_DIR",
    "STATES",
    "AgentValidator",
    "FragmentStore",
    "TunnelBackend",
    "TunnelError",
    "ValidationError",
    "run_module",
    "validate_scratch",
]

STATES = ("present", "absent", "up", "down")
POLL = 0.25
ABSENT_WAIT = 10.0


# --- the plan -----------------------------------------------------------------------------------


@dataclass
class Plan:
    write: bool = False
    remove: bool = False
    reload: bool = False
    bring_up: bool = False
    bring_down: bool = False

    def any(self) -> bool:
        return self.write or self.remove or self.reload or self.bring_up or self.bring_down

    def names(self) -> list[str]:
        return [
            name
            for name in ("write", "remove", "reload", "bring_up", "bring_down")
            if getattr(self, name)
        ]


@dataclass
class AgentView:
    reachable: bool
    sas: list[dict[str, Any]] = field(default_factory=list)
    loaded: bool = False  # the agent knows the connection
    error: str = ""
    traps: list[dict[str, Any]] = field(default_factory=list)  # read for start_action trap


class TunnelBackend:
    """See the module docstring. ``client`` and ``validator`` are injected (tests use fakes)."""

    def __init__(
        self,
        params: dict[str, Any],
        client: AgentClient,
        validator: Callable[[str, str], None],
        check_mode: bool = False,
        store: FragmentStore | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.state = params.get("state") or "present"
        if self.state not in STATES:
            raise SpecError("state", f"must be one of {', '.join(STATES)}")
        self.name = check_name(params.get("name"), "name")
        timeout = params.get("timeout")
        self.timeout = 30.0 if timeout is None else float(timeout)
        if not 0 < self.timeout <= 600:
            raise SpecError("timeout", "must be a number of seconds in (0, 600]")
        self.client = client
        self.validator = validator
        self.check_mode = check_mode
        self.clock = clock
        self.sleep = sleep
        self.store = store or FragmentStore(params.get("config_dir") or "/etc/ikelab", self.name)
        self.warnings: list[str] = []
        self.actions: list[str] = []
        self.current = self.store.read()
        self.spec: TunnelSpec | None = None
        self.psk: bytes | None = None
        self.desired: str | None = None
        self.stamps: tuple[str, ...] = ()
        self.child = "net"
        self.start_action = "none"
        if self.state != "absent":
            self.spec = TunnelSpec.from_params(params)
            self.child, self.start_action = self.spec.child, self.spec.start_action
            if self.spec.auth == "pubkey":
                pass  # certificates: no secret in the fragment, only the key file's path
            elif params.get("psk") is not None:
                self.psk = decode_psk(params["psk"])
            else:
                self.psk = existing_psk(self.current, self.name) if self.current else None
                if self.psk is None:
                    raise SpecError(
                        "psk",
                        f"is required for state {self.state} "
                        + (
                            f"({self.store.path} holds no PSK this module can read)"
                            if self.current is not None
                            else f"(there is no {self.store.path} yet)"
                        ),
                    )
            self.stamps = certificate_stamps(self.spec)
            self.desired = render(self.spec, self.psk, self.stamps)
        self.view = self._look()
        if not self.view.reachable and self.state != "up":
            self.warnings.append(
                f"{self.view.error}; the fragment takes effect when the agent starts"
            )
        self.plan = self._plan()
        self.sas: list[dict[str, Any]] = connection_sas(self.view.sas, self.name)
        self.traps: list[dict[str, Any]] = self.view.traps

    # --- reading ----------------------------------------------------------------------------

    @property
    def traps_child(self) -> bool:
        """The child waits for traffic (``start_action: trap``): state up arms its trap and
        reports it instead of waiting for SAs that nothing negotiates yet."""
        return self.start_action == "trap"

    def _look(self) -> AgentView:
        try:
            sas = self.client.list_sas(self.name)
            conns = self.client.list_conns()
            traps = self._look_traps()
        except AgentUnreachable as e:
            return AgentView(reachable=False, error=str(e))
        except AgentError as e:
            raise TunnelError(str(e))
        loaded = any(c.get("name") == self.name for c in conns)
        return AgentView(reachable=True, sas=sas, loaded=loaded, traps=traps)

    def _look_traps(self) -> list[dict[str, Any]]:
        """The trap of a trapping child; only state up needs it (an agent that cannot list
        its traps is then an error), the other states report it when they can."""
        if not self.traps_child:
            return []
        try:
            return self._traps()
        except TunnelError as e:
            if self.state == "up":
                raise
            if str(e) not in self.warnings:
                self.warnings.append(str(e))
            return []

    def _traps(self) -> list[dict[str, Any]]:
        """The connection's trap policies (``AgentCommandError`` for an agent without
        ``list-traps`` becomes a clear message)."""
        try:
            return self.client.list_traps(self.name)
        except AgentCommandError as e:
            raise TunnelError(
                f"{self.name}: start_action trap needs an agent that lists its traps "
                f"(list-traps): {e.message}"
            )

    def _plan(self) -> Plan:
        plan = Plan()
        view = self.view
        if self.state == "absent":
            plan.remove = self.current is not None
            plan.reload = plan.remove and view.reachable
            return plan
        plan.write = self.desired != self.current
        plan.reload = view.reachable and (plan.write or not view.loaded)
        if self.state == "up" and self.traps_child:
            # nothing negotiates before traffic: "up" is the trap armed (a reload re-arms it)
            plan.bring_up = plan.reload or child_trap(view.traps, self.name, self.child) is None
        elif self.state == "up":
            # a changed connection is torn down by the reload: it comes up again
            plan.bring_up = plan.reload or not child_is_up(view.sas, self.name, self.child)
        elif self.state == "down":
            plan.bring_down = bool(connection_sas(view.sas, self.name))
        return plan

    def needs_change(self) -> bool:
        return self.plan.any()

    # --- changing -----------------------------------------------------------------------------

    def validate(self) -> None:
        """In check mode, run ``ikeagent --check`` on the new text from a scratch directory
        (only when the agent is installed: check mode must not fail before the install)."""
        if not self.plan.write or self.desired is None:
            return
        available = getattr(self.validator, "available", None)
        if available is not None and not available():
            self.warnings.append(
                "the fragment was not validated: ikeagent is not installed in agent_venv yet"
            )
            return
        validate_scratch(self.validator, self.desired, self.store.path)

    def apply(self) -> None:
        if self.state == "up" and not self.view.reachable:
            if self.check_mode:
                # a first run in check mode: the agent is not installed or started yet either
                self.warnings.append(
                    f"the SAs would be brought up once the agent runs ({self.view.error})"
                )
            else:
                raise TunnelError(f"state up needs the running agent: {self.view.error}")
        if self.check_mode:
            self.validate()
            return
        plan = self.plan
        if plan.write and self.desired is not None:
            self.store.write(self.desired, self.validator)
            self.actions.append("write")
        if plan.remove:
            self.store.remove()
            self.actions.append("remove")
        if not self.view.reachable:
            return
        if plan.reload:
            self._reload()
        if self.state == "absent":
            self._wait_gone()
        elif self.state == "up":
            self._bring_up()
        elif self.state == "down":
            self._bring_down()
        self.refresh()

    def refresh(self) -> None:
        """Read the SAs (and the trap) again for the result."""
        self.sas = self._sas()
        if self.state != "absent":
            try:
                self.traps = self._look_traps()
            except AgentError as e:
                raise TunnelError(str(e))

    def _reload(self) -> None:
        try:
            self.client.reload()
        except AgentCommandError as e:
            if self.plan.write or self.plan.remove:
                self.store.restore(self.current)
                self.actions.append("restore")
                raise TunnelError(
                    f"ikeagent rejected the new configuration; {self.store.path} was restored "
                    f"and the agent keeps running the previous one: {e.message}"
                )
            raise TunnelError(f"ikeagent rejected its configuration: {e.message}")
        except AgentError as e:
            raise TunnelError(str(e))
        self.actions.append("reload")
        if self.state == "absent":
            return
        try:
            loaded = any(c.get("name") == self.name for c in self.client.list_conns())
        except AgentError as e:
            raise TunnelError(str(e))
        if not loaded:
            message = (
                f"ikeagent reloaded but has no connection {self.name!r}: does its main "
                f"configuration include {FRAGMENT_DIR}/*.yaml from {self.store.config_dir}?"
            )
            if self.state in ("up", "down"):
                raise TunnelError(message)
            self.warnings.append(message)

    def _sas(self) -> list[dict[str, Any]]:
        try:
            return self.client.list_sas(self.name)
        except AgentError as e:
            raise TunnelError(str(e))

    def _bring_up(self) -> None:
        if self.traps_child:
            self._await_trap()
            return
        child = self.child
        if child_is_up(self._sas(), self.name, child):
            return
        if self.start_action == "start":
            try:
                self.client.up(self.name, self.timeout)
            except AgentError as e:
                raise TunnelError(f"{self.name} did not come up: {e}")
        else:  # the responder: the peer initiates, we wait for its SAs
            deadline = self.clock() + self.timeout
            while not child_is_up(self._sas(), self.name, child):
                if self.clock() >= deadline:
                    raise TunnelError(
                        f"{self.name}: the peer did not bring child {child!r} up within "
                        f"{self.timeout:g}s (this host responds: start_action none)"
                    )
                self.sleep(POLL)
        self.actions.append("up")

    def _await_trap(self) -> None:
        """The agent arms a trap when it loads the connection: wait until it lists it. The
        SAs are not awaited; the first packet that matches the trap starts them."""
        deadline = self.clock() + self.timeout
        while True:
            try:
                self.traps = self._traps()
            except AgentError as e:
                raise TunnelError(str(e))
            if child_trap(self.traps, self.name, self.child) is not None:
                break
            if self.clock() >= deadline:
                raise TunnelError(
                    f"{self.name}: the agent holds no trap for child {self.child!r} after "
                    f"{self.timeout:g}s (start_action trap); its log says why"
                )
            self.sleep(POLL)
        self.actions.append("trap")

    def _bring_down(self) -> None:
        if not self._sas():
            return
        try:
            result = self.client.down(self.name, self.timeout)
        except AgentError as e:
            raise TunnelError(f"{self.name} could not be terminated: {e}")
        if not result.get("terminated", False):
            self.warnings.append(
                f"{self.name}: delete sent, but SAs remain after {self.timeout:g}s"
            )
        self.actions.append("down")

    def _wait_gone(self) -> None:
        if "reload" not in self.actions:
            return
        deadline = self.clock() + min(self.timeout, ABSENT_WAIT)
        while self._sas():
            if self.clock() >= deadline:
                self.warnings.append(f"{self.name}: SAs still being deleted")
                return
            self.sleep(POLL)

    # --- output -------------------------------------------------------------------------------

    def changed(self) -> bool:
        return bool(self.actions) if not self.check_mode else self.plan.any()

    def diff(self) -> dict[str, str]:
        before = redact(self.current) if self.current is not None else ""
        if (
            self.state == "absent"
            or self.spec is None
            or self.psk is None
            and self.spec.auth == "psk"
        ):
            after = ""
        else:
            after = render_redacted(self.spec, self.psk, self.stamps)
        return {
            "before": before,
            "after": after,
            "before_header": self.store.path,
            "after_header": self.store.path,
        }

    def dump(self) -> dict[str, Any]:
        names = self.plan.names()
        if self.traps_child:
            names = ["trap" if n == "bring_up" else n for n in names]
        out: dict[str, Any] = {
            "changed": self.changed(),
            "config_path": self.store.path,
            "state": self.state,
            "sas": self.sas,
            "actions": self.actions if not self.check_mode else names,
        }
        if self.traps_child and self.state != "absent":
            trap = child_trap(self.traps, self.name, self.child)
            out["trap"] = trap_state(trap) if trap is not None else None
        if self.psk is not None:
            out["psk_fingerprint"] = psk_fingerprint(self.psk)
        if self.spec is not None:
            out["auth"] = self.spec.auth
            if self.spec.auth == "pubkey":
                # the certificate files and their fingerprints, as the fragment's header has them
                pairs = (stamp.split(" ", 1)[1].rsplit(" ", 1) for stamp in self.stamps)
                out["certificates"] = dict(pairs)
        return out


def run_module(module: Any, backend_class: Callable[..., Any]) -> None:
    """A module run over a tunnel backend (``TunnelBackend``, ``TunnelSetBackend``): change what
    needs it, fail with the message of a bad spec or an agent error, report warnings and, with
    --diff, the diff (fingerprints only)."""
    p = module.params
    try:
        backend = backend_class(
            p,
            AgentClient(p["socket"]),
            AgentValidator(p["agent_venv"]),
            check_mode=module.check_mode,
        )
        if backend.needs_change():
            backend.apply()
    except (SpecError, TunnelError) as e:
        module.fail_json(msg=str(e))
    result = backend.dump()
    for warning in backend.warnings:
        module.warn(warning)
    if module._diff:
        result["diff"] = backend.diff()
    module.exit_json(**result)
