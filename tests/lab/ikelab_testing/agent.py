"""The project's own agent (``ikeagent``) as a lab peer, driven through ``ikectl``.

CLI contract::

    ikeagent --config FILE --socket PATH --dataplane userspace --log-level info
    ikectl --socket PATH up NAME | down NAME | list-sas [--json] | status [--json]
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from ikelab_testing.netns import Lab, Namespace


def tool(name: str) -> str:
    """``ikeagent``/``ikectl`` from the running interpreter's venv, else from PATH."""
    candidate = Path(sys.executable).parent / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if found is None:
        raise FileNotFoundError(f"{name} is not installed (pip install -e agent)")
    return found


class AgentError(RuntimeError):
    pass


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to a new file created with mode 0600 (secrets never hit a wider mode)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


class Agent:
    """One ``ikeagent`` in ``ns`` with a config written to a 0600 file in its own directory."""

    def __init__(
        self,
        ns: Namespace,
        config: Mapping[str, Any],
        lab: Lab | None = None,
        *,
        name: str = "agent",
        dataplane: str = "userspace",
        log_level: str = "info",
        extra_args: Sequence[str] = (),
    ) -> None:
        self.ns = ns
        self.lab = lab or ns.lab
        self.name = name
        self.config = config
        self.dataplane = dataplane
        self.log_level = log_level
        self.extra_args = list(extra_args)
        self.dir = self.lab.workdir(f"{name}-{ns.role}")
        self.config_path = self.dir / "agent.yaml"
        self.socket_path = self.dir / "ikeagent.sock"
        self.log_path = self.dir / "agent.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.exit_code: int | None = None

    def __repr__(self) -> str:
        return f"Agent({self.name!r} in {self.ns.name})"

    def start(self, timeout: float = 10.0) -> Agent:
        write_private(self.config_path, yaml.safe_dump(dict(self.config), sort_keys=False))
        argv = [
            tool("ikeagent"),
            "--config",
            str(self.config_path),
            "--socket",
            str(self.socket_path),
            "--dataplane",
            self.dataplane,
            "--log-level",
            self.log_level,
            *self.extra_args,
        ]
        with self.log_path.open("wb") as log:
            self.proc = self.ns.spawn(argv, stdout=log)
        deadline = time.monotonic() + timeout
        while not self.socket_path.exists():
            if self.proc.poll() is not None:
                raise AgentError(f"{self} exited with {self.proc.returncode}:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise AgentError(
                    f"{self} did not open its socket in {timeout}s:\n{self.log_tail()}"
                )
            time.sleep(0.05)
        return self

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def ikectl_raw(self, *args: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [tool("ikectl"), "--socket", str(self.socket_path), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def ikectl(self, *args: str, json_output: bool = True, timeout: float = 30.0) -> Any:
        """Run ikectl; with ``json_output`` append ``--json`` and return the parsed document."""
        argv = ["--json", *args] if json_output else list(args)
        proc = self.ikectl_raw(*argv, timeout=timeout)
        if proc.returncode != 0:
            raise AgentError(
                f"ikectl {' '.join(argv)} failed ({proc.returncode}): {proc.stderr or proc.stdout}"
                f"\n--- agent log tail ---\n{self.log_tail()}"
            )
        return json.loads(proc.stdout) if json_output else proc.stdout

    def up(self, name: str, timeout: float = 30.0) -> str:
        return self.ikectl("up", name, json_output=False, timeout=timeout)

    def list_sas(self) -> Any:
        return self.ikectl("list-sas")

    def status(self) -> Any:
        return self.ikectl("status")

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM (SIGKILL after ``timeout``); returns the exit code, 0 on a clean stop."""
        if self.proc is None:
            return None
        self.exit_code = self.lab.stop(self.proc, timeout)
        return self.exit_code

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])


def child_states(list_sas: Any) -> list[tuple[str, str]]:
    """(child name, state) pairs from ``ikectl list-sas --json``, tolerant of its exact shape:
    a list of IKE SAs or a mapping of them, each with ``children``/``child_sas``/``child-sas``
    as a list or mapping of entries carrying ``name`` and ``state``."""
    found: list[tuple[str, str]] = []

    def items(x: Any) -> list[Any]:
        if isinstance(x, Mapping):
            return [
                ({"name": k, **v} if isinstance(v, Mapping) and "name" not in v else v)
                for k, v in x.items()
            ]
        if isinstance(x, list):
            return x
        return []

    root = (
        list_sas.get("ike_sas", list_sas.get("sas", list_sas))
        if isinstance(list_sas, Mapping)
        else list_sas
    )
    for ike in items(root):
        if not isinstance(ike, Mapping):
            continue
        for key in ("children", "child_sas", "child-sas"):
            for child in items(ike.get(key, [])):
                if isinstance(child, Mapping):
                    found.append((str(child.get("name", "")), str(child.get("state", "")).upper()))
    return found
