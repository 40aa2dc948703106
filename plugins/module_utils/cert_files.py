# Copyright: contributors to the ikelab.ipsec collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The keygen module's certificates: a CA, a certificate issued by it, or one made elsewhere.

``CertFile(CertParams(...))`` reads the certificate file (``path``) and its private key file
(``private_key_path``), decides what has to change and why, and has ``needs_change()``,
``apply()``, ``dump()`` and ``diff()``, like ``keys.KeyFile``:

- ``type=ca``: a self-signed CA certificate (basicConstraints cA, pathlen 0) and its key.
- ``type=certificate``: a key and a certificate signed by ``ca_cert``/``ca_key`` with the
  given subjectAltNames (the host's IKE identities).
- ``provided=True`` (with ``type=certificate``): nothing is written; the certificate, key and
  CA the user brings are checked (key matches, chain to ``ca_cert``, dates, identities) and a
  problem fails naming its field.

An existing key of the wanted type is kept; an existing certificate is kept while it is for
that key, has the wanted subject and subjectAltNames, is signed by the given CA (or is a
self-signed CA) and does not expire within ``renew_days``; otherwise it is reissued and the
result says why. Keys are written 0600, certificates 0644, atomically. Outputs carry
fingerprints (``SHA256:`` of the certificate's DER, of the key's SubjectPublicKeyInfo), never
key material.
"""

from __future__ import annotations

import datetime as dt
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ansible_collections.ikelab.ipsec.plugins.module_utils import certs, keys
from ansible_collections.ikelab.ipsec.plugins.module_utils.certs import CertError

CA = "ca"
CERTIFICATE = "certificate"
CERT_TYPES = (CA, CERTIFICATE)
DEFAULT_KEY_TYPE = "ecdsa-p256"  # IKEv1 (RFC 4754) and IKEv2 both sign with it
KEY_MODE = 0o600
CERT_MODE = 0o644
_MAX_READ = 1 << 20
SHOWN_FIELDS = (
    "fingerprint",
    "subject",
    "issuer",
    "subject_alt_names",
    "serial",
    "not_before",
    "not_after",
    "public_key_fingerprint",
)
DIFF_FIELDS = ("fingerprint", "subject", "issuer", "subject_alt_names", "not_after")


@dataclass(frozen=True, slots=True)
class CertParams:
    type: str
    path: str
    private_key_path: str | None = None
    key_type: str = DEFAULT_KEY_TYPE
    bits: int = keys.DEFAULT_RSA_BITS
    common_name: str | None = None
    subject: str | None = None
    subject_alt_names: tuple[str, ...] = ()
    ca_cert: str | None = None
    ca_key: str | None = None
    validity_days: int | None = None
    renew_days: int = certs.RENEW_DAYS
    provided: bool = False
    force: bool = False
    owner: str | None = None
    group: str | None = None

    def validate(self) -> None:
        if self.type not in CERT_TYPES:
            raise CertError("type", f"must be one of {', '.join(CERT_TYPES)}")
        if not self.path:
            raise CertError("path", "must not be empty")
        if not self.private_key_path:
            raise CertError("private_key_path", f"is required with type {self.type}")
        if os.path.realpath(self.path) == os.path.realpath(self.private_key_path):
            raise CertError("private_key_path", "must not be the certificate's path")
        if self.provided:
            if self.type != CERTIFICATE:
                raise CertError("provided", "only applies to type certificate")
            if not self.ca_cert:
                raise CertError("ca_cert", "is required: the CA the certificate must chain to")
            for name in ("ca_key", "common_name", "subject", "validity_days"):
                if getattr(self, name) is not None:
                    raise CertError(name, "does not apply to a provided certificate")
            if self.force:
                raise CertError("force", "does not apply to a provided certificate")
            return
        if self.key_type not in keys.KEY_TYPES:
            raise CertError("key_type", f"must be one of {', '.join(keys.KEY_TYPES)}")
        if self.key_type == "rsa" and self.bits < keys.MIN_RSA_BITS:
            raise CertError("bits", f"RSA keys need at least {keys.MIN_RSA_BITS} bits")
        if self.subject is not None and self.common_name is not None:
            raise CertError("subject", "give subject or common_name, not both")
        if self.validity_days is not None and self.validity_days < 1:
            raise CertError("validity_days", "must be at least 1")
        if self.renew_days < 0:
            raise CertError("renew_days", "cannot be negative")
        if self.validity_days is not None and self.renew_days >= self.validity_days:
            raise CertError("renew_days", "must be less than validity_days")
        if self.type == CA:
            if self.subject is None and self.common_name is None:
                raise CertError("common_name", "is required for a CA (or give subject)")
            if self.subject_alt_names:
                raise CertError("subject_alt_names", "a CA certificate carries none")
            for name in ("ca_cert", "ca_key"):
                if getattr(self, name):
                    raise CertError(name, "does not apply to type ca (it is self-signed)")
        else:
            for name in ("ca_cert", "ca_key"):
                if not getattr(self, name):
                    raise CertError(name, "is required to issue a certificate")
            if not self.subject_alt_names and self.subject is None:
                raise CertError(
                    "subject_alt_names", "is required (the IKE identities), or give subject"
                )


@dataclass(frozen=True, slots=True)
class FileState:
    exists: bool
    content: bytes = b""
    mode: int | None = None
    uid: int | None = None
    gid: int | None = None


def read_file(path: str, field_name: str) -> FileState:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        return FileState(False)
    except OSError as e:
        raise CertError(field_name, f"cannot read {path}: {e.strerror}")
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise CertError(field_name, f"{path} is not a regular file")
        content = os.read(fd, _MAX_READ + 1)
    finally:
        os.close(fd)
    return FileState(True, content, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid)


def _need(path: str, field_name: str) -> bytes:
    state = read_file(path, field_name)
    if not state.exists:
        raise CertError(field_name, f"{path} does not exist")
    return state.content


def _cert_of(path: str, field_name: str) -> list[Any]:
    try:
        return certs.load_certs(_need(path, field_name))
    except ValueError as e:
        raise CertError(field_name, f"{path} holds no readable certificate ({e})")


def _key_of(path: str, field_name: str) -> Any:
    try:
        return certs.load_key(_need(path, field_name))
    except ValueError as e:
        raise CertError(field_name, f"{path}: {e}")


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class CertFile:
    """A certificate and its key file: what they are, what has to change, and doing it."""

    def __init__(self, params: CertParams, clock: Callable[[], dt.datetime] = _utcnow) -> None:
        params.validate()
        self.params = params
        self.now = clock()
        self.path = os.path.realpath(params.path)
        self.key_path = os.path.realpath(params.private_key_path or "")
        self.uid = keys._uid(params.owner)
        self.gid = keys._gid(params.group)
        self.sans = () if params.provided else tuple(map(certs.san_text, params.subject_alt_names))
        self.after_cert: Any = None
        self.after_key: FileState | None = None
        self.after_state: FileState | None = None
        self.key_reason: str | None = None  # why an existing key is replaced
        self.cert_reason: str | None = None  # why an existing certificate is replaced
        if params.provided:
            self._check_provided()
            return
        for path, name in ((self.path, "path"), (self.key_path, "private_key_path")):
            directory = os.path.dirname(path) or "."
            if not os.path.isdir(directory):
                raise CertError(name, f"directory {directory} does not exist")
        self.subject = self._subject()
        self.issuer = self._issuer()
        self.key_state = read_file(self.key_path, "private_key_path")
        self.cert_state = read_file(self.path, "path")
        self.old_cert: Any = None  # the existing certificate, readable (kept or not)
        self.key = self.old_key = self._existing_key()
        self.cert = self._existing_cert()
        self.new_key, self.new_cert = self.key is None, self.cert is None
        self.plan = self._changes()

    # --- reading ----------------------------------------------------------------------------

    def _subject(self) -> Any:
        p = self.params
        if p.subject is not None:
            return certs.parse_dn(p.subject, "subject")
        cn = p.common_name
        if cn is None:  # a certificate without a name: its first identity
            cn = self.sans[0].partition(":")[2]
        return certs.parse_dn("CN=" + cn.replace(",", "\\,"), "common_name")

    def _issuer(self) -> tuple[Any, Any] | None:
        p = self.params
        if p.type == CA:
            return None
        ca = _cert_of(os.path.realpath(p.ca_cert or ""), "ca_cert")[0]
        ca_key = _key_of(os.path.realpath(p.ca_key or ""), "ca_key")
        if certs.spki(ca_key) != certs.spki(ca.public_key()):
            raise CertError("ca_key", "does not match the certificate in ca_cert")
        if not certs.is_ca(ca):
            raise CertError("ca_cert", f"'{certs.dn_text(ca.subject)}' is not a CA certificate")
        return ca, ca_key

    def _existing_key(self) -> Any:
        p = self.params
        if not self.key_state.exists:
            return None
        if p.force:
            self.key_reason = "forced"
            return None
        try:
            key = certs.load_key(self.key_state.content)
            found = keys.key_type_of(key)
            if found != p.key_type:
                raise ValueError(f"wrong key type: {found}, want {p.key_type}")
            if found == "rsa" and key.key_size < p.bits:
                raise ValueError(f"too short: RSA {key.key_size} bits, want at least {p.bits}")
        except ValueError as e:
            self.key_reason = f"invalid private key: {e}"
            return None
        return key

    def _existing_cert(self) -> Any:
        if not self.cert_state.exists:
            return None
        if self.key is None:
            try:
                self.old_cert = certs.load_certs(self.cert_state.content)[0]
            except ValueError:
                pass
            self.cert_reason = "a new private key" + (
                f" ({self.key_reason})" if self.key_reason else ""
            )
            return None
        try:
            cert = self.old_cert = certs.load_certs(self.cert_state.content)[0]
        except ValueError as e:
            self.cert_reason = f"invalid certificate: {e}"
            return None
        self.cert_reason = certs.reissue_reason(
            cert,
            self.key,
            self.subject,
            self.sans,
            self.now,
            self.params.renew_days,
            None if self.issuer is None else self.issuer[0],
        )
        return None if self.cert_reason else cert

    def _check_provided(self) -> None:
        p = self.params
        chain = _cert_of(self.path, "path")
        key = _key_of(self.key_path, "private_key_path")
        ca = _cert_of(os.path.realpath(p.ca_cert or ""), "ca_cert")[0]
        certs.check_provided(chain, key, ca, p.subject_alt_names, self.now)
        self.cert = self.old_cert = chain[0]
        self.key = self.old_key = key
        self.key_state = read_file(self.key_path, "private_key_path")
        self.cert_state = read_file(self.path, "path")
        self.new_key = self.new_cert = False
        self.plan = []

    # --- planning ---------------------------------------------------------------------------

    def generates_key(self) -> bool:
        return self.new_key

    def issues(self) -> bool:
        return self.new_cert

    def _owner_differs(self, state: FileState) -> bool:
        return (self.uid is not None and state.uid != self.uid) or (
            self.gid is not None and state.gid != self.gid
        )

    def changes(self) -> list[str]:
        """``generate_key``, ``issue``, ``key_mode``, ``cert_mode``, ``owner`` (empty:
        nothing). A provided certificate is only checked: never a change."""
        return list(self.plan)

    def _changes(self) -> list[str]:
        out = []
        if self.generates_key():
            out.append("generate_key")
        elif self.key_state.mode is not None and self.key_state.mode & 0o077:
            out.append("key_mode")
        if self.issues():
            out.append("issue")
        elif self.cert_state.mode != CERT_MODE:
            out.append("cert_mode")
        kept = [
            s
            for s, new in ((self.key_state, self.generates_key()), (self.cert_state, self.issues()))
            if not new
        ]
        if any(self._owner_differs(s) for s in kept):
            out.append("owner")
        return out

    def needs_change(self) -> bool:
        return bool(self.changes())

    # --- changing ---------------------------------------------------------------------------

    def apply(self) -> None:
        changes = self.changes()
        p = self.params
        try:
            if "generate_key" in changes:
                material = keys.new_private_key(p.key_type, p.bits)
                self.key = certs.load_key(material.data)
                keys.write_atomic(self.key_path, material.data, self.uid, self.gid, KEY_MODE)
            if "issue" in changes:
                default = certs.CA_DAYS if p.type == CA else certs.CERT_DAYS
                self.cert = certs.build(
                    self.subject,
                    self.key,
                    p.validity_days or default,
                    self.now,
                    self.sans,
                    self.issuer,
                )
                keys.write_atomic(
                    self.path, certs.cert_pem(self.cert), self.uid, self.gid, CERT_MODE
                )
            if "key_mode" in changes:
                os.chmod(self.key_path, KEY_MODE)
            if "cert_mode" in changes:
                os.chmod(self.path, CERT_MODE)
            if "owner" in changes:
                for path in (self.key_path, self.path):
                    os.chown(
                        path,
                        -1 if self.uid is None else self.uid,
                        -1 if self.gid is None else self.gid,
                    )
        except OSError as e:
            raise CertError("path", f"cannot write {e.filename or self.path}: {e.strerror}")
        self.after_key = read_file(self.key_path, "private_key_path")
        self.after_state = read_file(self.path, "path")
        self.after_cert = self.cert

    # --- output -----------------------------------------------------------------------------

    def _modes(self) -> tuple[int | None, int | None]:
        if self.after_key is not None and self.after_state is not None:
            return self.after_key.mode, self.after_state.mode
        changes = self.changes()
        key_mode = KEY_MODE if {"generate_key", "key_mode"} & set(changes) else self.key_state.mode
        cert_mode = CERT_MODE if {"issue", "cert_mode"} & set(changes) else self.cert_state.mode
        return key_mode, cert_mode

    def dump(self) -> dict[str, Any]:
        """The module result (no ``changed``); before ``apply()`` (check mode) what ``apply()``
        would leave, with null fingerprints for what would be new."""
        p = self.params
        cert = self.cert
        shown = certs.describe(cert) if cert is not None else dict.fromkeys(SHOWN_FIELDS)
        if cert is None and self.key is not None:
            shown["public_key_fingerprint"] = keys.fingerprint(certs.spki(self.key))
        key_mode, cert_mode = self._modes()
        return {
            "path": self.path,
            "private_key_path": self.key_path,
            "type": p.type,
            "key_type": keys.key_type_of(self.key) if self.key is not None else p.key_type,
            "provided": p.provided,
            **shown,
            "mode": None if cert_mode is None else f"{cert_mode:04o}",
            "key_mode": None if key_mode is None else f"{key_mode:04o}",
            "generated": self.issues(),
            "key_generated": self.generates_key(),
            "regenerated_reason": self.key_reason,
            "reissued_reason": self.cert_reason,
            "changes": self.changes(),
        }

    def _view(self, key_state: FileState, cert_state: FileState, cert: Any, key: Any) -> dict:
        if not cert_state.exists and not key_state.exists:
            return {"state": "absent"}
        view: dict[str, Any] = {"state": "present"}
        if cert is not None:
            d = certs.describe(cert)
            view |= {k: d[k] for k in DIFF_FIELDS}
        elif cert_state.exists:
            view["fingerprint"] = "(invalid)"
        view["public_key_fingerprint"] = (
            keys.fingerprint(certs.spki(key)) if key is not None else "(none)"
        )
        view["mode"] = None if cert_state.mode is None else f"{cert_state.mode:04o}"
        view["key_mode"] = None if key_state.mode is None else f"{key_state.mode:04o}"
        return view

    def diff(self) -> dict[str, Any]:
        """Fingerprints, names, dates and modes before and after (never key material)."""
        before = self._view(self.key_state, self.cert_state, self.old_cert, self.old_key)
        if self.after_state is not None and self.after_key is not None:
            after = self._view(self.after_key, self.after_state, self.after_cert, self.key)
        else:
            after = dict(before, state="present")
            if self.issues():
                after |= {
                    "fingerprint": "(new certificate)",
                    "subject": certs.dn_text(self.subject),
                    "subject_alt_names": sorted(self.sans),
                }
            if self.generates_key():
                after["public_key_fingerprint"] = "(new key)"
            key_mode, cert_mode = self._modes()
            after["mode"] = None if cert_mode is None else f"{cert_mode:04o}"
            after["key_mode"] = None if key_mode is None else f"{key_mode:04o}"
        return {
            "before": before,
            "after": after,
            "before_header": self.path,
            "after_header": self.path,
        }
