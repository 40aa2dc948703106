"""strongSwan's charon as a real peer inside a lab namespace.

Each daemon gets a directory of its own holding its ``strongswan.conf`` (``STRONGSWAN_CONF``),
its VICI socket, its log and its ``swanctl/swanctl.conf``.  Because charon writes its pid file to
the hard-coded ``/var/run/charon.pid``, it runs in a private mount namespace with a private
directory bind-mounted on ``/run``.  Its data plane is the kernel-libipsec plugin (a TUN device,
routes in table 220, ESP in UDP on port 4500 only), since the lab's kernel has no ESP.

Usage::

    c = Charon(site.gw, lab).start()
    c.load([Connection(...)], [Secret(...)])
    c.initiate("net")
    c.wait_child_installed("net")
    c.list_sas()
    c.stop()
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from ikelab_testing import vici
from ikelab_testing.netns import Lab, Namespace

CHARON = "/usr/lib/ipsec/charon"
PLUGIN_DIR = "/usr/lib/ipsec/plugins"

# Order is priority.  kernel-libipsec must come before kernel-netlink (it provides the IPsec
# backend, netlink the networking one).  openssl comes first among the crypto plugins: it is the
# fast AES-GCM (AES-NI) implementation, while the plain aes+gcm plugins run in software at a
# fraction of the speed.  Debian 12 ships no curve25519/chapoly/gmac plugins: openssl provides
# X25519, ChaCha20-Poly1305 and GMAC.  Certificates need x509 (parsing and chain building),
# pem/pkcs1/pkcs8 (files), pubkey, openssl (ECDSA and Ed25519 keys and signatures, RSA-PSS),
# revocation (CRLs from swanctl/x509crl) and constraints (name/policy/path-length constraints).
DEFAULT_PLUGINS = tuple(
    [
        "random",
        "nonce",
        "openssl",
        "aesni",
        "aes",
        "sha1",
        "sha2",
        "md5",
        "hmac",
        "gcm",
        "xcbc",
        "kdf",
        "drbg",
        "pem",
        "pkcs1",
        "pkcs8",
        "x509",
        "revocation",
        "constraints",
        "pubkey",
        "socket-default",
        "vici",
        "updown",
        "kernel-libipsec",
        "kernel-netlink",
        "resolve",
    ]
)

# charon.filelog levels per subsystem (-1 silent .. 4 private; 4 logs keys)
DEFAULT_LOG_LEVELS: Mapping[str, int] = {
    "default": 1,
    "ike": 2,
    "cfg": 2,
    "chd": 2,
    "knl": 2,
    "net": 1,
    "enc": 1,
    "esp": 1,
}

T = TypeVar("T")

# swanctl 5.9.8 loads these folders below SWANCTL_DIR (load_creds.c): certificates from x509
# (end entity), x509ca (CAs), x509ocsp, x509aa, x509ac, x509crl, pubkey; private keys from
# private (any type swanctl can decode), rsa (PKCS#1 RSA), ecdsa (SEC1 ECDSA), pkcs8 (any
# PKCS#8 key) and pkcs12
CREDENTIAL_FOLDERS = ("x509", "x509ca", "x509crl", "private", "rsa", "ecdsa", "pkcs8")
KEY_FOLDERS = ("private", "rsa", "ecdsa", "pkcs8")


def available() -> bool:
    return Path(CHARON).exists() and shutil.which("swanctl") is not None


def plugins_available(names: Iterable[str]) -> list[str]:
    """The subset of ``names`` that Debian actually ships as plugin files."""
    return [n for n in names if Path(PLUGIN_DIR, f"libstrongswan-{n}.so").exists()]


# --- swanctl.conf ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Child:
    name: str
    local_ts: Sequence[str]
    remote_ts: Sequence[str]
    esp_proposals: Sequence[str] = ("aes256gcm16",)
    start_action: str = "none"  # none | start | trap
    mode: str = "tunnel"
    rekey_time: str | None = None  # swanctl durations: "10s", "1h", "0" (disabled)
    life_time: str | None = None
    rand_time: str | None = None
    dpd_action: str | None = None
    close_action: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_conf(self) -> dict[str, Any]:
        conf: dict[str, Any] = {
            "local_ts": list(self.local_ts),
            "remote_ts": list(self.remote_ts),
            "esp_proposals": list(self.esp_proposals),
            "start_action": self.start_action,
            "mode": self.mode,
        }
        for key in ("rekey_time", "life_time", "rand_time", "dpd_action", "close_action"):
            value = getattr(self, key)
            if value is not None:
                conf[key] = value
        conf.update(self.extra)
        return conf


@dataclass(frozen=True, slots=True)
class Connection:
    name: str
    local_addrs: Sequence[str]
    remote_addrs: Sequence[str]
    local_id: str
    remote_id: str
    children: Sequence[Child]
    proposals: Sequence[str] = ("aes256gcm16-prfsha256-x25519",)
    version: int = 2
    auth: str = "psk"
    rekey_time: str | None = None
    reauth_time: str | None = None
    over_time: str | None = None
    rand_time: str | None = None
    dpd_delay: str | None = None
    mobike: bool | None = None
    fragmentation: str | None = None
    encap: bool | None = None
    aggressive: bool | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    # auth = "pubkey": our certificate (a path, absolute or in swanctl/x509) and the CAs the
    # peer's chain must end in (absolute or in swanctl/x509ca); intermediates we send are found
    # in swanctl/x509ca, CRLs in swanctl/x509crl (Charon.install)
    local_certs: Sequence[str] = ()
    remote_cacerts: Sequence[str] = ()
    remote_certs: Sequence[str] = ()
    revocation: str | None = None  # remote: strict | ifuri | relaxed
    send_cert: str | None = None  # local: always | ifasked (default) | never
    send_certreq: bool | None = None
    remote_auth: str | None = None  # defaults to auth

    def to_conf(self) -> dict[str, Any]:
        conf: dict[str, Any] = {
            "version": self.version,
            "local_addrs": list(self.local_addrs),
            "remote_addrs": list(self.remote_addrs),
            "proposals": list(self.proposals),
        }
        for key in (
            "rekey_time",
            "reauth_time",
            "over_time",
            "rand_time",
            "dpd_delay",
            "fragmentation",
        ):
            value = getattr(self, key)
            if value is not None:
                conf[key] = value
        for key in ("mobike", "encap", "aggressive", "send_certreq"):
            value = getattr(self, key)
            if value is not None:
                conf[key] = "yes" if value else "no"
        local: dict[str, Any] = {"auth": self.auth, "id": self.local_id}
        remote: dict[str, Any] = {"auth": self.remote_auth or self.auth, "id": self.remote_id}
        if self.local_certs:
            local["certs"] = list(self.local_certs)
        if self.send_cert is not None:
            local["send_cert"] = self.send_cert
        if self.remote_cacerts:
            remote["cacerts"] = list(self.remote_cacerts)
        if self.remote_certs:
            remote["certs"] = list(self.remote_certs)
        if self.revocation is not None:
            remote["revocation"] = self.revocation
        conf["local"] = local
        conf["remote"] = remote
        conf["children"] = {c.name: c.to_conf() for c in self.children}
        conf.update(self.extra)
        return conf


@dataclass(frozen=True, slots=True)
class Secret:
    name: str
    ids: Sequence[str]
    secret: bytes | str = field(repr=False)
    kind: str = "ike"  # ike | eap | xauth

    def to_conf(self) -> dict[str, Any]:
        raw = self.secret.encode() if isinstance(self.secret, str) else self.secret
        conf: dict[str, Any] = {f"id-{i}": ident for i, ident in enumerate(self.ids)}
        conf["secret"] = "0x" + raw.hex()  # hex avoids any quoting question
        return conf

    def __repr__(self) -> str:
        return f"Secret({self.name!r}, ids={list(self.ids)}, secret=<hidden>)"


@dataclass(frozen=True, slots=True)
class KeyFile:
    """A ``private<name>`` secret: a private key file (any type; absolute or in
    swanctl/private), optionally with the passphrase that decrypts it."""

    name: str
    file: str
    passphrase: bytes | str | None = field(default=None, repr=False)
    kind: str = "private"

    def to_conf(self) -> dict[str, Any]:
        conf: dict[str, Any] = {"file": self.file}
        if self.passphrase is not None:
            raw = self.passphrase.encode() if isinstance(self.passphrase, str) else self.passphrase
            conf["secret"] = "0x" + raw.hex()
        return conf


def render(conf: Mapping[str, Any], indent: int = 0) -> str:
    """strongswan.conf/swanctl.conf syntax from nested dicts (lists become comma lists)."""
    pad = "  " * indent
    lines = []
    for key, value in conf.items():
        if isinstance(value, Mapping):
            lines.append(f"{pad}{key} {{")
            lines.append(render(value, indent + 1))
            lines.append(f"{pad}}}")
        else:
            lines.append(f"{pad}{key} = {_scalar(value)}")
    return "\n".join(line for line in lines if line)


def _scalar(value: object) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value)
    return str(value)


def swanctl_conf(
    connections: Iterable[Connection], secrets: Iterable[Secret | KeyFile] = ()
) -> str:
    conf: dict[str, Any] = {"connections": {c.name: c.to_conf() for c in connections}}
    conf["secrets"] = {f"{s.kind}-{s.name}": s.to_conf() for s in secrets}
    return render(conf) + "\n"


def strongswan_conf(
    *,
    plugins: Sequence[str],
    log_path: str,
    log_levels: Mapping[str, int],
    vici_path: str,
    resolv_path: str,
    options: Mapping[str, Any],
) -> str:
    """A strongswan.conf of one lab daemon: its plugins, a file log, its own VICI socket (for
    charon and swanctl), no syslog; ``options`` are merged into the ``charon`` section."""
    socket = f"unix://{vici_path}"
    charon: dict[str, Any] = {
        "load_modular": "no",
        "load": " ".join(plugins),
        "install_virtual_ip": "no",
        "filelog": {
            "lab": {
                "path": log_path,
                "time_format": "%H:%M:%S",
                "ike_name": "yes",
                "append": "no",
                "flush_line": "yes",
                **{k: str(v) for k, v in log_levels.items()},
            }
        },
        "syslog": {"daemon": {"default": "-1"}, "auth": {"default": "-1"}},
        "plugins": {"vici": {"socket": socket}, "resolve": {"file": resolv_path}},
    }
    _merge(charon, options)
    return render({"charon": charon, "swanctl": {"socket": socket}}) + "\n"


# --- the daemon --------------------------------------------------------------------------------


class CharonError(RuntimeError):
    pass


class Charon:
    """One charon daemon in ``ns``; ``lab`` provides its directory and reaps it on close."""

    def __init__(
        self,
        ns: Namespace,
        lab: Lab | None = None,
        *,
        name: str = "charon",
        plugins: Sequence[str] = DEFAULT_PLUGINS,
        log_levels: Mapping[str, int] | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> None:
        self.ns = ns
        self.lab = lab or ns.lab
        self.name = name
        self.plugins = plugins_available(plugins)
        self.log_levels = {**DEFAULT_LOG_LEVELS, **(log_levels or {})}
        self.options = dict(options or {})
        self.dir = self.lab.workdir(f"{name}-{ns.role}")
        self.conf_path = self.dir / "strongswan.conf"
        self.swanctl_dir = self.dir / "swanctl"
        self.swanctl_path = self.swanctl_dir / "swanctl.conf"
        self.vici_path = self.dir / "charon.vici"
        self.log_path = self.dir / "charon.log"
        self.out_path = self.dir / "charon.out"
        self.run_dir = self.dir / "run"
        self.proc: subprocess.Popen[bytes] | None = None

    def __repr__(self) -> str:
        return f"Charon({self.name!r} in {self.ns.name})"

    # configuration

    def strongswan_conf(self) -> str:
        return strongswan_conf(
            plugins=self.plugins,
            log_path=str(self.log_path),
            log_levels=self.log_levels,
            vici_path=str(self.vici_path),
            resolv_path=str(self.dir / "resolv.conf"),
            options=self.options,
        )

    @property
    def env(self) -> dict[str, str]:
        # SWANCTL_DIR: swanctl loads credentials from its x509*/private folders
        return {
            **os.environ,
            "STRONGSWAN_CONF": str(self.conf_path),
            "SWANCTL_DIR": str(self.swanctl_dir),
        }

    # lifecycle

    def start(self, timeout: float = 10.0) -> Charon:
        self.run_dir.mkdir(mode=0o700, exist_ok=True)
        self.swanctl_path.parent.mkdir(mode=0o700, exist_ok=True)
        for folder in CREDENTIAL_FOLDERS:
            (self.swanctl_dir / folder).mkdir(mode=0o700, exist_ok=True)
        self.conf_path.write_text(self.strongswan_conf())
        script = f'mount --bind "$1" /run && exec "{CHARON}"'
        with self.out_path.open("wb") as out:
            self.proc = self.ns.spawn(
                [
                    "unshare",
                    "-m",
                    "--propagation",
                    "private",
                    "sh",
                    "-c",
                    script,
                    "charon",
                    str(self.run_dir),
                ],
                stdout=out,
                env=self.env,
            )
        try:
            self.wait_for(self._ready, timeout, what="charon's VICI socket")
        except TimeoutError:
            raise CharonError(f"{self} did not start:\n{self.log_tail()}") from None
        return self

    def _ready(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise CharonError(f"{self} exited with {self.proc.returncode}:\n{self.log_tail()}")
        if not self.vici_path.exists():
            return False
        try:
            with vici.Session(str(self.vici_path), timeout=2) as s:
                s.request("version")
        except OSError:
            return False
        return True

    def stop(self, timeout: float = 5.0) -> int | None:
        """SIGTERM, then SIGKILL; returns the exit code (None if never started)."""
        if self.proc is None:
            return None
        code = self.lab.stop(self.proc, timeout)
        return code

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    # swanctl

    def swanctl(
        self, *args: str, check: bool = True, timeout: float = 30.0
    ) -> subprocess.CompletedProcess[str]:
        """Run swanctl against this daemon (the VICI socket is a file: no namespace needed)."""
        proc = subprocess.run(
            ["swanctl", *args],
            capture_output=True,
            text=True,
            env=self.env,
            timeout=timeout,
            check=False,
        )
        if check and proc.returncode != 0:
            raise CharonError(
                f"swanctl {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}"
                f"\n--- charon log tail ---\n{self.log_tail()}"
            )
        return proc

    def install(self, source: Path | str, folder: str, name: str | None = None) -> Path:
        """Copy a credential file into ``swanctl/<folder>`` (one of CREDENTIAL_FOLDERS: x509,
        x509ca, x509crl, private, rsa, ecdsa, pkcs8); private keys get mode 0600.  The next
        ``load``/``load_creds`` loads it.  Returns the installed path."""
        if folder not in CREDENTIAL_FOLDERS:
            raise ValueError(f"unknown swanctl folder {folder!r}")
        source = Path(source)
        target = self.swanctl_dir / folder / (name or source.name)
        target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        data = source.read_bytes()
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        if folder not in KEY_FOLDERS:
            target.chmod(0o644)
        return target

    def load_creds(self) -> subprocess.CompletedProcess[str]:
        """(Re)load certificates, CRLs and keys from the swanctl folders and swanctl.conf."""
        return self.swanctl("--load-creds", "--noprompt", "--file", str(self.swanctl_path))

    def list_certs(self) -> str:
        return self.swanctl("--list-certs").stdout

    def load(
        self, connections: Iterable[Connection], secrets: Iterable[Secret | KeyFile] = ()
    ) -> None:
        """Write swanctl.conf (mode 0600) and load everything in it (and the credential
        folders)."""
        text = swanctl_conf(connections, secrets)
        fd = os.open(self.swanctl_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(text)
        self.swanctl("--load-all", "--noprompt", "--file", str(self.swanctl_path))

    def initiate(
        self, child: str | None = None, *, ike: str | None = None, timeout: int = 10
    ) -> subprocess.CompletedProcess[str]:
        args = ["--initiate", "--timeout", str(timeout)]
        if child is not None:
            args += ["--child", child]
        if ike is not None:
            args += ["--ike", ike]
        return self.swanctl(*args, timeout=timeout + 10)

    def terminate(
        self, *, ike: str | None = None, child: str | None = None, timeout: int = 10
    ) -> subprocess.CompletedProcess[str]:
        args = ["--terminate", "--timeout", str(timeout)]
        if ike is not None:
            args += ["--ike", ike]
        if child is not None:
            args += ["--child", child]
        return self.swanctl(*args, timeout=timeout + 10)

    def rekey(
        self, *, child: str | None = None, ike: str | None = None, reauth: bool = False
    ) -> subprocess.CompletedProcess[str]:
        args = ["--rekey"]
        if child is not None:
            args += ["--child", child]
        if ike is not None:
            args += ["--ike", ike]
        if reauth:
            args.append("--reauth")
        return self.swanctl(*args)

    # state

    def list_sas(self) -> dict[str, Any]:
        """``{ike_name: {"state": "ESTABLISHED", "encr-alg": ..., "child-sas": {...}}}``.

        Keys are VICI's (``state``, ``version``, ``local-host``, ``encr-alg``, ``encr-keysize``,
        ``prf-alg``, ``dh-group``, ``child-sas`` -> ``{"net-1": {"name": "net", "state":
        "INSTALLED", "protocol": "ESP", "encap": "yes", "spi-in": ..., "bytes-in": ...}}``)."""
        return vici.list_sas(str(self.vici_path))

    def children(self, name: str | None = None) -> list[dict[str, Any]]:
        """All CHILD_SAs (optionally only those whose config name is ``name``)."""
        found = []
        for ike in self.list_sas().values():
            for child in ike.get("child-sas", {}).values():
                if name is None or child.get("name") == name:
                    found.append({**child, "ike": ike})
        return found

    def wait_for(
        self,
        predicate: Callable[[], T],
        timeout: float = 10.0,
        interval: float = 0.05,
        what: str = "condition",
    ) -> T:
        return wait_for(predicate, timeout, interval, what)

    def wait_child_installed(self, name: str, timeout: float = 10.0) -> dict[str, Any]:
        def installed() -> dict[str, Any] | None:
            for child in self.children(name):
                if child.get("state") == "INSTALLED":
                    return child
            return None

        try:
            return self.wait_for(installed, timeout, what=f"CHILD_SA {name} INSTALLED")
        except TimeoutError:
            raise CharonError(
                f"{self}: CHILD_SA {name!r} not INSTALLED after {timeout}s\n{self.log_tail()}"
            ) from None

    def log_text(self) -> str:
        parts = []
        for path in (self.log_path, self.out_path):
            with contextlib.suppress(OSError):
                parts.append(path.read_text(errors="replace"))
        return "\n".join(parts)

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])


def wait_for(
    predicate: Callable[[], T],
    timeout: float = 10.0,
    interval: float = 0.05,
    what: str = "condition",
) -> T:
    """Poll ``predicate`` until it returns something truthy; raise TimeoutError otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def _merge(base: dict[str, Any], extra: Mapping[str, Any]) -> None:
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value
