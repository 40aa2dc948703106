# Copyright: ikelab.ipsec developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The ``tunnel_set`` module's backend: every tunnel of a host in one pass (stdlib only).

The same per-tunnel logic as ``tunnel`` (one ``TunnelBackend`` per entry: its fragment, its
plan, bringing it up), but the expensive steps happen once per host instead of once per
tunnel: every new fragment is validated by one ``ikeagent --check`` run over a scratch copy of
the set, the files are written, the agent reloads once, and the SAs are awaited together. With
``exclusive`` the fragments of connections not in the set are removed in the same reload.

All or nothing: if the agent refuses the reload, every fragment written or removed is put back
(the agent keeps running the previous configuration, so both agree again).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from typing import Any

from ansible_collections.ikelab.ipsec.plugins.module_utils.agent_client import (
    AgentClient,
    AgentCommandError,
    AgentError,
)
from ansible_collections.ikelab.ipsec.plugins.module_utils.tunnel_backend import (
    FRAGMENT_DIR,
    FragmentStore,
    TunnelBackend,
    TunnelError,
)
from ansible_collections.ikelab.ipsec.plugins.module_utils.tunnel_config import (
    SpecError,
    check_name,
    redact,
)

SET_STATES = ("present", "up")
COMMON = ("config_dir", "socket", "agent_venv", "timeout")


def _no_validation(path: str, shown: str) -> None:
    """Each entry's own validation is replaced by one run over the whole set."""


class TunnelSetBackend:
    def __init__(
        self,
        params: dict[str, Any],
        client: AgentClient,
        validator: Callable[[str, str], None],
        check_mode: bool = False,
        **backend_kw: Any,
    ) -> None:
        self.state = params.get("state") or "present"
        if self.state not in SET_STATES:
            raise SpecError("state", f"must be one of {', '.join(SET_STATES)}")
        self.config_dir = params.get("config_dir") or "/etc/ikelab"
        self.exclusive = bool(params.get("exclusive"))
        self.client = client
        self.validator = validator
        self.check_mode = check_mode
        entries = params.get("tunnels") or []
        if not isinstance(entries, list):
            raise SpecError("tunnels", "must be a list of tunnels")
        self.entries: list[TunnelBackend] = []
        names: set[str] = set()
        for i, entry in enumerate(entries):
            if not isinstance(entry, dict):
                raise SpecError(f"tunnels[{i}]", "must be a mapping of tunnel parameters")
            unknown = sorted(set(entry) & {"state", *COMMON})
            if unknown:
                raise SpecError(f"tunnels[{i}].{unknown[0]}", "is set for the whole set, not here")
            name = check_name(entry.get("name"), f"tunnels[{i}].name")
            if name in names:
                raise SpecError(f"tunnels[{i}].name", f"{name!r} is given twice")
            names.add(name)
            item = dict(entry) | {k: params.get(k) for k in COMMON} | {"state": self.state}
            try:
                backend = TunnelBackend(item, client, _no_validation, check_mode, **backend_kw)
            except SpecError as e:
                raise SpecError(f"tunnels[{i}] ({name}).{e.field}", e.reason) from None
            self.entries.append(backend)
        self.stale: list[FragmentStore] = []
        if self.exclusive:
            self.stale = [
                FragmentStore(self.config_dir, other)
                for other in self._configured()
                if other not in names
            ]
        self.stale_text = {s.name: s.read() for s in self.stale}
        self.warnings: list[str] = []
        for backend in self.entries:
            self.warnings += [w for w in backend.warnings if w not in self.warnings]
        self.reachable = all(b.view.reachable for b in self.entries) if self.entries else True
        self.actions: list[str] = []

    def _configured(self) -> list[str]:
        directory = os.path.join(self.config_dir, FRAGMENT_DIR)
        try:
            files = sorted(os.listdir(directory))
        except FileNotFoundError:
            return []
        return [f[: -len(".yaml")] for f in files if f.endswith(".yaml") and not f.startswith(".")]

    # --- planning -------------------------------------------------------------------------------

    def needs_change(self) -> bool:
        return bool(self.stale) or any(b.needs_change() for b in self.entries)

    def _written(self) -> list[TunnelBackend]:
        return [b for b in self.entries if b.plan.write and b.desired is not None]

    def validate(self) -> None:
        """One ``ikeagent --check`` over a scratch directory holding every new fragment."""
        written = self._written()
        if not written:
            return
        available = getattr(self.validator, "available", None)
        if self.check_mode and available is not None and not available():
            self.warnings.append(
                "the fragments were not validated: ikeagent is not installed in agent_venv yet"
            )
            return
        scratch = tempfile.mkdtemp(prefix="ikelab-check-")
        try:
            main = os.path.join(scratch, "ikeagent.yaml")
            fd = os.open(main, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write('include: ["tunnels.d/*.yaml"]\n')
            os.mkdir(os.path.join(scratch, FRAGMENT_DIR), 0o700)
            for b in written:
                path = os.path.join(scratch, FRAGMENT_DIR, f"{b.name}.yaml")
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "w", encoding="utf-8") as f:
                    f.write(b.desired or "")
            try:
                self.validator(main, os.path.join(self.config_dir, "ikeagent.yaml"))
            except TunnelError as e:
                raise type(e)(str(e).replace(scratch + os.sep, self.config_dir + os.sep))
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    # --- changing -------------------------------------------------------------------------------

    def apply(self) -> None:
        if self.state == "up" and not self.reachable and not self.check_mode:
            down = next(b for b in self.entries if not b.view.reachable)
            raise TunnelError(f"state up needs the running agent: {down.view.error}")
        self.validate()
        if self.check_mode:
            if self.state == "up" and not self.reachable:
                self.warnings.append("the SAs would be brought up once the agent runs")
            return
        done: list[tuple[FragmentStore, str | None]] = []
        try:
            for b in self._written():
                b.store.write(b.desired or "")
                b.actions.append("write")
                done.append((b.store, b.current))
            for store in self.stale:
                store.remove()
                done.append((store, self.stale_text[store.name]))
                self.actions.append(f"remove {store.name}")
        except BaseException:
            self._restore(done)
            raise
        if not self.reachable:
            return
        if any(b.plan.reload for b in self.entries) or self.stale:
            self._reload(done)
        if self.state == "up":
            for b in self.entries:
                if b.plan.bring_up or "reload" in b.actions:
                    b._bring_up()
        for b in self.entries:
            b.refresh()

    def _restore(self, done: list[tuple[FragmentStore, str | None]]) -> None:
        for store, previous in reversed(done):
            store.restore(previous)

    def _reload(self, done: list[tuple[FragmentStore, str | None]]) -> None:
        try:
            self.client.reload()
        except AgentCommandError as e:
            self._restore(done)
            self.actions.append("restore")
            raise TunnelError(
                "ikeagent rejected the new configuration; the previous files were restored and "
                f"the agent keeps running the previous one: {e.message}"
            )
        except AgentError as e:
            raise TunnelError(str(e))
        self.actions.append("reload")
        try:
            loaded = {c.get("name") for c in self.client.list_conns()}
        except AgentError as e:
            raise TunnelError(str(e))
        for b in self.entries:
            if b.plan.reload:
                b.actions.append("reload")
            if b.name not in loaded:
                raise TunnelError(
                    f"ikeagent reloaded but has no connection {b.name!r}: does its main "
                    f"configuration include {FRAGMENT_DIR}/*.yaml from {self.config_dir}?"
                )

    # --- output ---------------------------------------------------------------------------------

    def changed(self) -> bool:
        if self.check_mode:
            return self.needs_change()
        return bool(self.actions) or any(b.actions for b in self.entries)

    def diff(self) -> list[dict[str, str]]:
        out = [b.diff() for b in self.entries if b.plan.write or b.plan.remove]
        for store in self.stale:
            text = self.stale_text[store.name]
            out.append(
                {
                    "before": redact(text) if text is not None else "",
                    "after": "",
                    "before_header": store.path,
                    "after_header": store.path,
                }
            )
        return out

    def dump(self) -> dict[str, Any]:
        return {
            "changed": self.changed(),
            "state": self.state,
            "tunnels": [b.dump() | {"name": b.name} for b in self.entries],
            "removed": [s.name for s in self.stale],
            "actions": self.actions,
        }
