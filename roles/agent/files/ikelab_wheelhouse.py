"""Build the wheelhouse the agent role ships to hosts (run on the controller).

Managed hosts may have no internet: everything the agent needs is gathered here once per
build of the agent and per host platform, and copied to the hosts. A build is named by a hash of
the agent's source and the dependency pins, so a changed agent makes a new wheelhouse and an
unchanged one is reused (``changed: false``).

Usage: ikelab_wheelhouse.py --agent DIR --constraints FILE --out DIR --target cp311-x86_64 ...
Prints one JSON object: {"changed", "build_id", "targets": {target: {"dir", "wheels", "pip"}}}.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tarfile
import tempfile
import tomllib

BUNDLE = "wheels.tar"

# glibc 2.28 or later (Debian 10+, RHEL 8+, Ubuntu 20.04+); override with --platform
DEFAULT_PLATFORMS = ("manylinux_2_28_{arch}", "manylinux_2_17_{arch}", "manylinux2014_{arch}")


def source_hash(agent: pathlib.Path, constraints: pathlib.Path) -> str:
    h = hashlib.sha256()
    files = [agent / "pyproject.toml", constraints]
    files += sorted(p for p in (agent / "ikeagent").rglob("*.py"))
    for path in files:
        h.update(
            str(
                path.relative_to(agent.parent) if path.is_relative_to(agent.parent) else path.name
            ).encode()
        )
        h.update(b"\0")
        h.update(path.read_bytes())
        h.update(b"\0")
    return h.hexdigest()[:16]


def pip(*args: str) -> None:
    cmd = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q", *args]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode:
        raise SystemExit(f"pip {args[0]} failed:\n{done.stdout}{done.stderr}")


def build_target(
    agent: pathlib.Path,
    constraints: pathlib.Path,
    out: pathlib.Path,
    target: str,
    platforms: list[str],
) -> dict[str, object]:
    pyver, _sep, arch = target.partition("-")
    if not pyver.startswith("cp") or not pyver[2:].isdigit() or not arch:
        raise SystemExit(f"target {target!r}: expected cpXY-ARCH, e.g. cp311-x86_64")
    deps = tomllib.loads((agent / "pyproject.toml").read_text())["project"]["dependencies"]
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        stage = pathlib.Path(tmp)
        # the agent itself: pure Python, one wheel for every target, built from a copy (the
        # build writes next to its sources; the collection may be read-only)
        src = stage / "src"
        shutil.copytree(
            agent, src, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__")
        )
        wheels = stage / "wheels"
        try:
            pip("wheel", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(src))
        except SystemExit:
            pip("wheel", "--no-deps", "-w", str(wheels), str(src))
        plat_args: list[str] = []
        for p in platforms:
            plat_args += ["--platform", p.format(arch=arch)]
        pip(
            "download",
            "--only-binary=:all:",
            "--dest",
            str(wheels),
            "-c",
            str(constraints),
            "--python-version",
            pyver[2:],
            "--implementation",
            "cp",
            *plat_args,
            *deps,
        )
        # pip itself, run from its wheel on the host: no ensurepip needed there
        pip(
            "download",
            "--only-binary=:all:",
            "--no-deps",
            "--dest",
            str(wheels),
            f"pip=={_pip_version()}",
        )
        # one file to ship: a plain tar of the wheels (they are compressed already)
        with tarfile.open(wheels / BUNDLE, "w", format=tarfile.PAX_FORMAT) as tar:
            for wheel in sorted(wheels.glob("*.whl")):
                tar.add(wheel, arcname=wheel.name)
        if out.exists():
            shutil.rmtree(out)
        os.replace(wheels, out)
    return describe(out)


def _pip_version() -> str:
    import importlib.metadata

    return importlib.metadata.version("pip")


def describe(out: pathlib.Path) -> dict[str, object]:
    wheels = sorted(p.name for p in out.glob("*.whl"))
    pip_wheel = next((w for w in wheels if w.startswith("pip-")), None)
    agent_wheel = next((w for w in wheels if w.startswith("ikeagent-")), None)
    bundle = out / BUNDLE
    return {
        "dir": str(out),
        "bundle": str(bundle) if bundle.is_file() else None,
        "wheels": wheels,
        "pip": pip_wheel,
        "agent": agent_wheel,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--agent", required=True, type=pathlib.Path)
    ap.add_argument("--constraints", required=True, type=pathlib.Path)
    ap.add_argument("--out", required=True, type=pathlib.Path)
    ap.add_argument("--target", action="append", required=True)
    ap.add_argument("--platform", action="append", default=None)
    args = ap.parse_args()
    agent, constraints = args.agent.resolve(), args.constraints.resolve()
    build_id = source_hash(agent, constraints)
    root = args.out / build_id
    root.mkdir(parents=True, exist_ok=True)
    changed = False
    targets = {}
    for target in sorted(set(args.target)):
        out = root / target
        info = describe(out) if out.is_dir() else None
        if not info or not info["pip"] or not info["agent"] or not info["bundle"]:
            info = build_target(
                agent, constraints, out, target, args.platform or list(DEFAULT_PLATFORMS)
            )
            changed = True
        targets[target] = info
    print(json.dumps({"changed": changed, "build_id": build_id, "targets": targets}))


if __name__ == "__main__":
    main()
