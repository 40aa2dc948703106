# Copyright: contributors to the ikelab.ipsec collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""PID 1 of an ikelab lab site (standard library only; run by the host's /usr/bin/python3).

Started by the ``ikelab.ipsec.lab`` module as ``unshare --mount --uts --ipc --pid --fork
--kill-child --mount-proc --propagation private python3 -I -B ikelab_site_init.py SITE.json``
inside the site's network namespace (``ikelab_supervisor.py`` beside it), it:

1. gives the site its own file system views: copy-on-write overlays over /etc, /var, /opt,
   /usr/local and /root (upper layers on the site's own tmpfs on /run), tmpfs on /run, /tmp and
   /dev/shm, a sysfs of the site's network namespace; it drops its copies of the machine's
   other mounts under /run and of namespace handles (nsfs), so it never keeps them alive;
2. sets the hostname, root's shell (/bin/sh, so ssh commands do not pay for start-up files)
   and a machine id, announces its addresses with gratuitous ARP (a re-created site must not
   make the first ssh wait for a stale neighbour entry), installs ``ikelab-service``;
3. runs sshd on the management address with the lab's host key and authorized key, and
   supervises it and the services defined in /etc/ikelab/services/NAME.json, reaping every
   orphan, until SIGTERM (then it stops everything and exits; the kernel kills the rest).

With ``--guest`` it is PID 1 of a User-mode Linux guest (the lab's ``uml`` engine), exec'ed by
``ikelab_guest_init.sh``, which has already given the guest a private writable root, clean
/run and /tmp, and its network: step 1 is skipped.
"""

from __future__ import annotations

import ctypes
import json
import os
import socket
import struct
import sys
import uuid
from collections.abc import Callable

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from ikelab_supervisor import RUN_DIR, Service, Supervisor, log  # noqa: E402

OVERLAYS = ("/etc", "/var", "/opt", "/usr/local", "/root")
CLI_PATH = "/usr/local/sbin/ikelab-service"
SERVICES_DIR = "/etc/ikelab/services"
LOG_DIR = "/var/log/ikelab"
PROCESS_NAME = b"ikelab-init"

MS_NOSUID, MS_NODEV, MS_NOEXEC = 0x2, 0x4, 0x8
MS_REC, MS_PRIVATE = 0x4000, 0x40000
MNT_DETACH = 2
PR_SET_NAME = 15

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_ulong,
    ctypes.c_char_p,
]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
_libc.sethostname.argtypes = [ctypes.c_char_p, ctypes.c_size_t]


def _b(text: str | None) -> bytes | None:
    return text.encode() if text is not None else None


def mount(
    source: str | None, target: str, fstype: str | None, flags: int = 0, data: str | None = None
) -> None:
    if _libc.mount(_b(source), _b(target), _b(fstype), flags, _b(data)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {fstype or source} on {target}: {os.strerror(err)}")


def umount(target: str) -> None:
    if _libc.umount2(_b(target), MNT_DETACH) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"umount {target}: {os.strerror(err)}")


def mounts() -> list[tuple[str, str]]:
    """(mount point, file system type) from /proc/self/mountinfo, parents first."""
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, right = line.split(" - ", 1)
            point = left.split()[4]
            point = point.encode().decode("unicode_escape")  # \040 and friends
            found.append((point, right.split()[0]))
    return found


def private_filesystem() -> None:
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    for point, fstype in reversed(mounts()):
        if fstype == "nsfs" or point == "/run" or point.startswith("/run/"):
            try:
                umount(point)
            except OSError as exc:  # already gone with its parent
                log(f"note: {exc}")
    mount("tmpfs", "/run", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755")
    os.makedirs(RUN_DIR, mode=0o700)
    layers = os.path.join(RUN_DIR, "layers")
    for path in OVERLAYS:
        if not os.path.isdir(path):
            log(f"no {path} on this machine: no overlay for it")
            continue
        key = path.strip("/").replace("/", "_")
        upper, work = f"{layers}/{key}/upper", f"{layers}/{key}/work"
        os.makedirs(upper)
        os.makedirs(work)
        st = os.stat(path)
        os.chown(upper, st.st_uid, st.st_gid)
        os.chmod(upper, st.st_mode & 0o7777)
        mount("overlay", path, "overlay", 0, f"lowerdir={path},upperdir={upper},workdir={work}")
    mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777")
    if os.path.isdir("/dev/shm"):
        mount("tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777")
    umount("/sys")
    mount("sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC)


def write(path: str, text: str, mode: int = 0o644) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, mode)


def identity(hostname: str) -> None:
    name = hostname.encode()
    if _libc.sethostname(name, len(name)) != 0:
        raise OSError(ctypes.get_errno(), "sethostname")
    write("/etc/hostname", hostname + "\n")
    write(
        "/etc/hosts",
        f"127.0.0.1\tlocalhost\n127.0.1.1\t{hostname}\n::1\tlocalhost ip6-localhost ip6-loopback\n",
    )
    write("/etc/machine-id", uuid.uuid4().hex + "\n", 0o444)
    _edit_user_db("/etc/passwd", 7, lambda f: [*f[:6], "/bin/sh"])
    # a locked root ("!...") cannot log in with a key when sshd runs without PAM
    _edit_user_db("/etc/shadow", 2, lambda f: [f[0], "*", *f[2:]] if f[1].startswith("!") else f)


def _edit_user_db(path: str, min_fields: int, change: Callable[[list[str]], list[str]]) -> None:
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        return
    out = []
    for line in lines:
        fields = line.split(":")
        if fields[0] == "root" and len(fields) >= min_fields:
            fields = change(fields)
        out.append(":".join(fields))
    with open(path, "w") as f:  # in place: the overlay copies it up with owner and mode
        f.write("\n".join(out) + "\n")


def announce(ifname: str, address: str) -> None:
    """Gratuitous ARP (a request for our own address) on ``ifname``, twice."""
    try:
        with open(f"/sys/class/net/{ifname}/address") as f:
            mac = bytes.fromhex(f.read().strip().replace(":", ""))
        ip = socket.inet_aton(address)
        frame = b"\xff" * 6 + mac + b"\x08\x06"
        frame += struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1) + mac + ip + b"\x00" * 6 + ip
        with socket.socket(socket.AF_PACKET, socket.SOCK_RAW) as s:
            s.bind((ifname, 0))
            for _attempt in range(2):
                s.send(frame.ljust(60, b"\x00"))
    except OSError as exc:
        log(f"gratuitous ARP on {ifname} failed: {exc}")


def sshd_config(address: str) -> str:
    return f"""# sshd of an ikelab lab site (written by the site init at boot)
ListenAddress {address}:22
HostKey {RUN_DIR}/ssh_host_ed25519_key
PidFile /run/sshd.pid
AllowUsers root
PermitRootLogin prohibit-password
PubkeyAuthentication yes
AuthorizedKeysFile {RUN_DIR}/authorized_keys
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
UseDNS no
PrintMotd no
PrintLastLog no
X11Forwarding no
MaxStartups 100:30:200
MaxSessions 100
AcceptEnv LANG LC_*
Subsystem sftp internal-sftp
"""


def main(argv: list[str]) -> int:
    guest = len(argv) == 3 and argv[1] == "--guest"
    if guest:
        argv = [argv[0], argv[2]]
    if os.getpid() != 1 or len(argv) != 2:
        print(
            "usage: run as PID 1 of a new PID namespace: ikelab_site_init.py SITE.json\n"
            "       or of a lab guest (set up by ikelab_guest_init.sh): "
            "ikelab_site_init.py --guest SITE.json",
            file=sys.stderr,
        )
        return 2
    _libc.prctl(PR_SET_NAME, PROCESS_NAME, 0, 0, 0)
    here = os.path.dirname(os.path.abspath(__file__))
    # everything from the machine's file system is read before the overlays hide changes
    with open(argv[1]) as f:
        config = json.load(f)
    with open(config["host_key"]) as f:
        host_key = f.read()
    with open(config["authorized_keys"]) as f:
        authorized = f.read()
    with open(os.path.join(here, "ikelab_service.py")) as f:
        cli = f.read()
    site = config["site"]
    log(f"site {site} of lab {config['lab']} booting")

    if guest:  # a kernel of its own: the guest init gave it a private root and clean /run
        os.makedirs(RUN_DIR, mode=0o700)
    else:
        private_filesystem()
    identity(config["hostname"])
    write(CLI_PATH, "#!/usr/bin/python3\n" + cli, 0o755)
    os.makedirs(SERVICES_DIR, mode=0o755, exist_ok=True)
    os.makedirs(LOG_DIR, mode=0o755, exist_ok=True)
    for ifname, address in config.get("announce", []):
        announce(ifname, address)

    write(os.path.join(RUN_DIR, "ssh_host_ed25519_key"), host_key, 0o600)
    write(os.path.join(RUN_DIR, "authorized_keys"), authorized, 0o600)
    write(os.path.join(RUN_DIR, "sshd_config"), sshd_config(config["management_address"]), 0o600)
    os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
    sshd = Service.builtin(  # its log goes to the site's init log, readable on the controller
        "sshd", ["/usr/sbin/sshd", "-D", "-e", "-f", os.path.join(RUN_DIR, "sshd_config")]
    )
    log(f"site {site} up: sshd on {config['management_address']}")
    return Supervisor(SERVICES_DIR, LOG_DIR).run([sshd])


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv))
    except Exception as exc:  # the site cannot boot: say why in the init log, then exit
        log(f"site init failed: {exc!r}")
        raise
