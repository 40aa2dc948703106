# Copyright: contributors to the ikelab.ipsec collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Key files for the keygen module: PSKs (``0s<base64>``) and PKCS#8 PEM private keys.

The backend (``KeyFile``) has ``needs_change()``, ``apply()``, ``dump()`` and ``diff()`` and is
unit-tested without AnsibleModule. Secrets come from ``secrets`` (os.urandom); they are never
returned, logged or put in a repr: results carry fingerprints (``SHA256:<base64>`` of the PSK
bytes or of the DER SubjectPublicKeyInfo) and, for private keys, the public key.

PSKs need only the standard library; private keys import ``cryptography`` when needed.
Files are written atomically (a 0600 temporary file in the same directory, fsync, rename,
fsync of the directory) and always end with mode 0600.
"""

from __future__ import annotations

import base64
import binascii
import grp
import hashlib
import os
import pwd
import re
import secrets
import stat
import tempfile
from dataclasses import dataclass, field
from typing import Any

PSK = "psk"
PRIVATE_KEY = "private_key"
TYPES = (PSK, PRIVATE_KEY)
KEY_TYPES = ("ed25519", "ecdsa-p256", "ecdsa-p384", "rsa")
MIN_PSK_BYTES = 16
DEFAULT_PSK_BYTES = 32
MIN_RSA_BITS = 2048
DEFAULT_RSA_BITS = 3072
MODE = 0o600
_MAX_READ = 1 << 20  # a key file is small; do not read a huge file into memory

# Group orders of the NIST curves (FIPS 186-4 appendix D.1.2.3 and D.1.2.4; SEC 2 2.4.2, 2.5.1)
_CURVE_ORDERS = {
    "ecdsa-p256": 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551,
    "ecdsa-p384": int(
        "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFC7634D81F4372DDF581A0DB248B0A77AECEC196ACCC52973",
        16,
    ),
}
_CURVE_NAMES = {"ecdsa-p256": "secp256r1", "ecdsa-p384": "secp384r1"}

_PSK_RE = re.compile(r"\A(0s[A-Za-z0-9+/=]+|0x[0-9A-Fa-f]+)\r?\n?\Z")


class KeyFileError(Exception):
    """Bad parameters or an I/O failure; the message names the field or the path."""


class MissingLibrary(KeyFileError):
    """``cryptography`` is needed for private keys and is not installed."""


@dataclass(frozen=True, slots=True)
class KeyParams:
    type: str
    path: str
    size: int = DEFAULT_PSK_BYTES
    key_type: str = "ed25519"
    bits: int = DEFAULT_RSA_BITS
    force: bool = False
    owner: str | None = None
    group: str | None = None

    def validate(self) -> None:
        if self.type not in TYPES:
            raise KeyFileError(f"type: must be one of {', '.join(TYPES)}, got {self.type!r}")
        if not self.path:
            raise KeyFileError("path: must not be empty")
        if self.type == PSK and self.size < MIN_PSK_BYTES:
            raise KeyFileError(f"size: a PSK needs at least {MIN_PSK_BYTES} bytes, got {self.size}")
        if self.type == PRIVATE_KEY:
            if self.key_type not in KEY_TYPES:
                raise KeyFileError(
                    f"key_type: must be one of {', '.join(KEY_TYPES)}, got {self.key_type!r}"
                )
            if self.key_type == "rsa" and self.bits < MIN_RSA_BITS:
                raise KeyFileError(
                    f"bits: RSA keys need at least {MIN_RSA_BITS} bits, got {self.bits}"
                )


@dataclass(frozen=True, slots=True)
class Material:
    """Key file content with what may be shown of it. ``data`` is secret: kept out of repr."""

    data: bytes = field(repr=False)
    fingerprint: str
    public_key: str | None = None


@dataclass(frozen=True, slots=True)
class Existing:
    exists: bool
    material: Material | None = None  # None: absent or invalid
    invalid_reason: str | None = None
    mode: int | None = None
    uid: int | None = None
    gid: int | None = None


def fingerprint(data: bytes) -> str:
    """``SHA256:<base64 without padding>`` (the OpenSSH fingerprint style)."""
    return "SHA256:" + base64.b64encode(hashlib.sha256(data).digest()).decode().rstrip("=")


# --- PSKs ---------------------------------------------------------------------------------------


def encode_psk(secret: bytes) -> bytes:
    """The file content: ``0s<base64>`` and a newline (swanctl's and the agent's form)."""
    return b"0s" + base64.b64encode(secret) + b"\n"


def decode_psk(content: bytes) -> bytes:
    """The secret bytes of a ``0s<base64>`` or ``0x<hex>`` file; ValueError says why not."""
    try:
        text = content.decode("ascii")
    except UnicodeDecodeError:
        raise ValueError("not a 0s<base64> or 0x<hex> secret (not ASCII)")
    if not _PSK_RE.match(text):
        raise ValueError("not a 0s<base64> or 0x<hex> secret")
    text = text.strip()
    try:
        if text.startswith("0x"):
            return bytes.fromhex(text[2:])
        return base64.b64decode(text[2:], validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("not a 0s<base64> or 0x<hex> secret (bad encoding)")


def new_psk(size: int) -> Material:
    secret = secrets.token_bytes(size)
    return Material(encode_psk(secret), fingerprint(secret))


def check_psk(content: bytes, size: int) -> Material:
    secret = decode_psk(content)
    if len(secret) < size:
        raise ValueError(f"too short: {len(secret)} bytes, want at least {size}")
    return Material(content, fingerprint(secret))


# --- private keys -------------------------------------------------------------------------------


def _crypto() -> Any:
    try:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
    except ImportError:
        raise MissingLibrary("cryptography is needed for private keys and is not installed")
    return serialization, ec, ed25519, rsa


def _material_of(key: Any) -> Material:
    serialization = _crypto()[0]
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return _public_material(key, pem)


def _public_material(key: Any, content: bytes) -> Material:
    serialization = _crypto()[0]
    pub = key.public_key()
    der = pub.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    pem = pub.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return Material(content, fingerprint(der), pem.decode())


def new_private_key(key_type: str, bits: int = DEFAULT_RSA_BITS) -> Material:
    """A new key. Ed25519 and ECDSA scalars come from ``secrets``; RSA primes come from
    OpenSSL's CSPRNG (seeded by the OS) through ``cryptography``, which has no other way."""
    ec, ed25519, rsa = _crypto()[1:]
    if key_type == "ed25519":
        key = ed25519.Ed25519PrivateKey.from_private_bytes(secrets.token_bytes(32))
    elif key_type in _CURVE_ORDERS:
        curve = ec.SECP256R1() if key_type == "ecdsa-p256" else ec.SECP384R1()
        scalar = 1 + secrets.randbelow(_CURVE_ORDERS[key_type] - 1)  # 1 .. n-1
        key = ec.derive_private_key(scalar, curve)
    elif key_type == "rsa":
        key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    else:
        raise KeyFileError(f"key_type: unsupported {key_type!r}")
    return _material_of(key)


def key_type_of(key: Any) -> str:
    """``ed25519``, ``ecdsa-p256``, ``ecdsa-p384``, ``rsa`` or a description of another type."""
    ec, ed25519, rsa = _crypto()[1:]
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return "ed25519"
    if isinstance(key, ec.EllipticCurvePrivateKey):
        for name, curve in _CURVE_NAMES.items():
            if key.curve.name == curve:
                return name
        return f"ecdsa ({key.curve.name})"
    if isinstance(key, rsa.RSAPrivateKey):
        return "rsa"
    return type(key).__name__


def check_private_key(content: bytes, key_type: str, bits: int) -> Material:
    """The material of a PEM private key of the wanted type; ValueError says why not."""
    serialization = _crypto()[0]
    try:
        key = serialization.load_pem_private_key(content, password=None)
    except TypeError:
        raise ValueError("the private key is encrypted")
    except Exception as e:  # cryptography raises ValueError, UnsupportedAlgorithm, ...
        raise ValueError(f"not a PEM private key ({type(e).__name__})")
    found = key_type_of(key)
    if found != key_type:
        raise ValueError(f"wrong key type: {found}, want {key_type}")
    if key_type == "rsa" and key.key_size < bits:
        raise ValueError(f"too short: RSA {key.key_size} bits, want at least {bits}")
    return _public_material(key, content)


# --- ownership ------------------------------------------------------------------------------------


def _uid(owner: str | None) -> int | None:
    if owner is None:
        return None
    try:
        return pwd.getpwnam(owner).pw_uid
    except KeyError:
        if owner.isdigit():
            return int(owner)
        raise KeyFileError(f"owner: no such user {owner!r}")


def _gid(group: str | None) -> int | None:
    if group is None:
        return None
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        if group.isdigit():
            return int(group)
        raise KeyFileError(f"group: no such group {group!r}")


# --- the backend ----------------------------------------------------------------------------------


def write_atomic(
    path: str, data: bytes, uid: int | None = None, gid: int | None = None, mode: int = MODE
) -> None:
    """Replace ``path`` with ``data``: a temporary file (created 0600, then given ``mode``) in
    the same directory, fsync, rename over ``path``, fsync of the directory. Readers see the
    old or the new file."""
    directory = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory)
    try:
        os.fchmod(fd, mode)
        if uid is not None or gid is not None:
            os.fchown(fd, -1 if uid is None else uid, -1 if gid is None else gid)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
        os.close(fd)
        fd = -1
        os.replace(tmp, path)
        tmp = ""
        dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    finally:
        if fd >= 0:
            os.close(fd)
        if tmp:
            try:
                os.unlink(tmp)
            except OSError:
                pass


class KeyFile:
    """One key file: what it is, what has to change, and doing it."""

    def __init__(self, params: KeyParams) -> None:
        params.validate()
        self.params = params
        self.path = os.path.realpath(params.path)
        self.uid = _uid(params.owner)
        self.gid = _gid(params.group)
        self.before = self._inspect()
        self.after: Existing | None = None
        self.regenerated_reason = self._regenerate_reason()

    def _inspect(self) -> Existing:
        directory = os.path.dirname(self.path) or "."
        if not os.path.isdir(directory):
            raise KeyFileError(f"path: directory {directory} does not exist")
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except FileNotFoundError:
            return Existing(exists=False)
        except OSError as e:
            raise KeyFileError(f"path: cannot read {self.path}: {e.strerror}")
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise KeyFileError(f"path: {self.path} is not a regular file")
            content = os.read(fd, _MAX_READ + 1)
        finally:
            os.close(fd)
        mode, uid, gid = stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid
        try:
            material = self._check(content)
        except ValueError as e:
            return Existing(True, None, str(e), mode, uid, gid)
        return Existing(True, material, None, mode, uid, gid)

    def _check(self, content: bytes) -> Material:
        if not content.strip():
            raise ValueError("empty file")
        if len(content) > _MAX_READ:
            raise ValueError("too large for a key file")
        p = self.params
        if p.type == PSK:
            return check_psk(content, p.size)
        return check_private_key(content, p.key_type, p.bits)

    def _regenerate_reason(self) -> str | None:
        """Why an existing file is replaced by a new key (None: kept, or there was none)."""
        if not self.before.exists:
            return None
        if self.params.force:
            return "forced"
        if self.before.material is None:
            return f"invalid {self.params.type.replace('_', ' ')}: {self.before.invalid_reason}"
        return None

    def generates(self) -> bool:
        return not self.before.exists or self.regenerated_reason is not None

    def _mode_loose(self) -> bool:
        return self.before.mode is not None and bool(self.before.mode & 0o077)

    def _owner_differs(self) -> bool:
        b = self.before
        return (self.uid is not None and b.uid != self.uid) or (
            self.gid is not None and b.gid != self.gid
        )

    def changes(self) -> list[str]:
        """What ``apply()`` does: ``generate``, ``mode``, ``owner`` (empty: nothing)."""
        if self.generates():
            return ["generate"]
        return [
            c for c, due in (("mode", self._mode_loose()), ("owner", self._owner_differs())) if due
        ]

    def needs_change(self) -> bool:
        return bool(self.changes())

    def apply(self) -> None:
        changes = self.changes()
        if "generate" in changes:
            p = self.params
            material = new_psk(p.size) if p.type == PSK else new_private_key(p.key_type, p.bits)
            try:
                write_atomic(self.path, material.data, self.uid, self.gid)
            except OSError as e:
                raise KeyFileError(f"path: cannot write {self.path}: {e.strerror}")
            self.after = self._stat_after(material)
            return
        try:
            if "mode" in changes:
                os.chmod(self.path, MODE, follow_symlinks=False)
            if "owner" in changes:
                os.chown(
                    self.path,
                    -1 if self.uid is None else self.uid,
                    -1 if self.gid is None else self.gid,
                    follow_symlinks=False,
                )
        except OSError as e:
            raise KeyFileError(f"path: cannot set mode/owner of {self.path}: {e.strerror}")
        self.after = self._stat_after(self.before.material)

    def _stat_after(self, material: Material | None) -> Existing:
        st = os.stat(self.path, follow_symlinks=False)
        return Existing(True, material, None, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid)

    def _planned_mode(self) -> int | None:
        if self.generates() or self._mode_loose():
            return MODE
        return self.before.mode

    def dump(self) -> dict[str, Any]:
        """The module result (no ``changed``): fingerprints and public key, never the secret.

        Before ``apply()`` (check mode) this describes what ``apply()`` would leave, with a null
        fingerprint and public key when a new key would be generated."""
        if self.after is not None:
            material, mode = self.after.material, self.after.mode
        else:
            material = None if self.generates() else self.before.material
            mode = self._planned_mode()
        return {
            "path": self.path,
            "type": self.params.type,
            "key_type": self.params.key_type if self.params.type == PRIVATE_KEY else None,
            "fingerprint": material.fingerprint if material else None,
            "public_key": material.public_key if material else None,
            "mode": None if mode is None else f"{mode:04o}",
            "generated": self.generates(),
            "regenerated_reason": self.regenerated_reason,
            "changes": self.changes(),
        }

    @staticmethod
    def _view(e: Existing) -> dict[str, Any]:
        if not e.exists:
            return {"state": "absent"}
        return {
            "state": "present",
            "fingerprint": e.material.fingerprint if e.material else "(invalid)",
            "mode": None if e.mode is None else f"{e.mode:04o}",
            "uid": e.uid,
            "gid": e.gid,
        }

    def diff(self) -> dict[str, Any]:
        """Ansible diff: fingerprint, mode and owner before and after (never key material)."""
        before = self._view(self.before)
        if self.after is not None:
            after = self._view(self.after)
        else:  # check mode: what apply() would leave
            after = dict(before, state="present")
            if self.generates():
                after["fingerprint"] = "(new key)"
            after["mode"] = f"{self._planned_mode():04o}"
            if self.uid is not None:
                after["uid"] = self.uid
            if self.gid is not None:
                after["gid"] = self.gid
        return {
            "before": before,
            "after": after,
            "before_header": self.path,
            "after_header": self.path,
        }
