# Copyright: contributors to the ikelab.ipsec collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Files of the lab: written atomically and only when their content differs; ssh keys made by
``ssh-keygen`` once; removal limited to what the lab generated."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile

from ansible_collections.ikelab.ipsec.plugins.module_utils.lab.network import Changes, LabError


def read_text(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except FileNotFoundError:
        return None


def ensure_dir(path: str, changes: Changes, mode: int = 0o700) -> None:
    if os.path.isdir(path):
        return
    changes.note(f"create directory {path}")
    if not changes.dry:
        os.makedirs(path, mode=mode, exist_ok=True)


def ensure_file(path: str, text: str, changes: Changes, mode: int = 0o600) -> bool:
    """Write ``text`` to ``path`` atomically (temporary file, fsync, rename) when it differs
    or the mode is not ``mode``; True if it changed (or would)."""
    current = read_text(path)
    if current == text:
        if os.stat(path).st_mode & 0o7777 == mode:
            return False
        changes.note(f"set mode {mode:04o} on {path}")
        if not changes.dry:
            os.chmod(path, mode)
        return True
    changes.note(f"{'write' if current is None else 'update'} {path}")
    if changes.dry:
        return True
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".ikelab-", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return True


def ensure_ssh_key(path: str, comment: str, changes: Changes) -> None:
    """An ed25519 key pair ``path`` / ``path.pub`` (no passphrase), generated once."""
    if os.path.exists(path) and os.path.exists(path + ".pub"):
        return
    changes.note(f"generate ssh key {path}")
    if changes.dry:
        return
    for p in (path, path + ".pub"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(p)
    proc = subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", path],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise LabError(f"ssh-keygen failed for {path}: {proc.stderr.strip()}")


def public_key(path: str) -> str:
    text = read_text(path + ".pub")
    if text is None:
        raise LabError(f"missing public key {path}.pub")
    return text.strip()


def remove_file(path: str, changes: Changes, marker: str | None = None) -> None:
    """Remove ``path``; with ``marker``, only a file that starts with it (one the lab wrote)."""
    if not os.path.lexists(path):
        return
    if marker is not None:
        text = read_text(path) or ""
        if not text.startswith(marker):
            return
    changes.note(f"remove {path}")
    if not changes.dry:
        os.unlink(path)


def remove_tree(path: str, names: list[str], changes: Changes) -> None:
    """Remove the entries ``names`` of directory ``path`` (all written by the lab), then the
    directory itself if that left it empty."""
    if not os.path.isdir(path):
        return
    for name in names:
        entry = os.path.join(path, name)
        if not os.path.lexists(entry):
            continue
        changes.note(f"remove {entry}")
        if changes.dry:
            continue
        if os.path.isdir(entry) and not os.path.islink(entry):
            shutil.rmtree(entry)
        else:
            os.unlink(entry)
    left = set(os.listdir(path)) - (set(names) if changes.dry else set())
    if not left:
        changes.note(f"remove directory {path}")
        if not changes.dry:
            os.rmdir(path)
