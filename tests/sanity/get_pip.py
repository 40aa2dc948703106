"""Stand-in for the get-pip.py bootstrap script that ``ansible-test sanity`` downloads.

ansible-test creates empty virtual environments for its sanity tests and fetches get-pip.py
from a host that machines limited to the package registries cannot reach. This script does the
same job from what they have: pip from the interpreter's own ``ensurepip``, then the requested
pip version (and setuptools/wheel unless refused) from the package index. It is copied into
ansible-test's cache by ``tests/sanity/run``.
"""

from __future__ import annotations

import subprocess
import sys


def main(argv: list[str]) -> int:
    packages = [a for a in argv if not a.startswith("-")]
    options = [a for a in argv if a.startswith("-") and a not in ("--no-setuptools", "--no-wheel")]
    if "--no-setuptools" not in argv:
        packages.append("setuptools")
    if "--no-wheel" not in argv:
        packages.append("wheel")
    subprocess.check_call([sys.executable, "-m", "ensurepip", "--default-pip"])
    pip = [sys.executable, "-m", "pip", "install", "--quiet", *options]
    subprocess.check_call(pip + packages)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
