# Copyright: ikelab.ipsec developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The files of the tunnel modules (standard library only): a fragment on disk, written
atomically with mode 0600 (``FragmentStore``), and the agent's own validation of it
(``AgentValidator``: ``ikeagent --check``; ``validate_scratch`` from a private scratch
directory, as check mode does)."""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Callable

FRAGMENT_DIR = "tunnels.d"


class TunnelError(Exception):
    """The tunnel could not be brought into the requested state."""


class ValidationError(TunnelError):
    """``ikeagent --check`` rejected a fragment."""


# --- files --------------------------------------------------------------------------------------


class FragmentStore:
    """``<config_dir>/tunnels.d/<name>.yaml``: read, atomic 0600 write, remove, restore."""

    def __init__(self, config_dir: str, name: str) -> None:
        self.config_dir = config_dir
        self.directory = os.path.join(config_dir, FRAGMENT_DIR)
        self.name = name
        self.path = os.path.join(self.directory, f"{name}.yaml")

    def read(self) -> str | None:
        try:
            with open(self.path, encoding="utf-8") as f:
                return f.read()
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as e:
            raise TunnelError(f"cannot read {self.path}: {getattr(e, 'strerror', None) or e}")

    def _ensure_dir(self) -> None:
        for path in (self.config_dir, self.directory):
            if not os.path.isdir(path):
                os.makedirs(path, mode=0o700, exist_ok=True)
                os.chmod(path, 0o700)
        if os.stat(self.directory).st_mode & 0o077:
            os.chmod(self.directory, 0o700)

    def write(self, text: str, validate: Callable[[str, str], None] | None = None) -> None:
        """Write ``text`` to a temporary file (0600) in the directory, let ``validate(tmp,
        final_path)`` look at it, then rename it over the fragment."""
        try:
            self._ensure_dir()
            fd, tmp = tempfile.mkstemp(
                dir=self.directory, prefix=f".{self.name}.yaml.", suffix=".tmp"
            )
        except OSError as e:
            raise TunnelError(f"cannot write in {self.directory}: {e.strerror or e}")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                os.fchmod(f.fileno(), 0o600)
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            if validate is not None:
                validate(tmp, self.path)
            os.replace(tmp, self.path)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
        self._sync_dir()

    def remove(self) -> None:
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            return
        self._sync_dir()

    def restore(self, previous: str | None) -> None:
        """Put back what was there before (``None``: no file)."""
        if previous is None:
            self.remove()
        else:
            self.write(previous)

    def _sync_dir(self) -> None:
        try:
            fd = os.open(self.directory, os.O_RDONLY)
        except OSError:
            return
        try:
            os.fsync(fd)
        except OSError:
            pass
        finally:
            os.close(fd)


class AgentValidator:
    """``<venv>/bin/ikeagent --check --config FILE``: the agent's own schema."""

    def __init__(self, venv: str, timeout: float = 60.0) -> None:
        self.binary = os.path.join(venv, "bin", "ikeagent")
        self.timeout = timeout

    def available(self) -> bool:
        return os.access(self.binary, os.X_OK)

    def __call__(self, path: str, shown: str) -> None:
        if not self.available():
            raise TunnelError(
                f"agent_venv: {self.binary} is missing or not executable (is the agent installed?)"
            )
        try:
            proc = subprocess.run(
                [self.binary, "--check", "--config", path],
                capture_output=True,
                text=True,
                timeout=self.timeout,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as e:
            raise TunnelError(f"cannot run {self.binary} --check: {e}")
        if proc.returncode != 0:
            text = (proc.stderr.strip() or proc.stdout.strip()).replace(path, shown)
            raise ValidationError(f"ikeagent --check rejected {shown}:\n{text}")


def validate_scratch(validator: Callable[[str, str], None], text: str, shown: str) -> None:
    """Validate ``text`` from a private scratch directory (check mode touches no config)."""
    directory = tempfile.mkdtemp(prefix="ikelab-check-")
    try:
        path = os.path.join(directory, "fragment.yaml")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        validator(path, shown)
    finally:
        for entry in os.listdir(directory):
            os.unlink(os.path.join(directory, entry))
        os.rmdir(directory)
