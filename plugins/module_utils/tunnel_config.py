# Copyright: ikelab.ipsec developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""One tunnel as an agent config fragment (standard library only: runs on managed hosts).

A fragment ``tunnels.d/<name>.yaml`` holds one connection named like the file and its PSK,
in strongSwan swanctl vocabulary as the agent reads it::

    connections:
      site-b:
        local_addrs:
          - "192.0.2.11"
        ...
        children:
          net:
            local_ts:
              - "10.1.0.0/24"
            ...
    secrets:
      ike-site-b:
        id:
          - "gw-a.example"
          - "gw-b.example"
        secret: "0s..."

With ``auth: pubkey`` the connection authenticates with certificates instead (the agent's
format, swanctl vocabulary)::

    connections:
      site-b:
        local:  {auth: pubkey, id: gw-a.example, certs: [/etc/ikelab/pki/gw-a.crt]}
        remote: {auth: pubkey, id: gw-b.example, cacerts: [/etc/ikelab/pki/ca.crt]}
    secrets:
      private-site-b:
        file: /etc/ikelab/pki/gw-a.key

The paths are on the managed host and absolute (the agent's ``--check`` runs the fragment from
a scratch directory). The fragment names no secret then; its header carries the SHA-256
fingerprints of the certificate files (``certificate_stamps``), so a reissued certificate
changes the fragment and the agent reloads it.

``TunnelSpec.from_params`` checks what the module can check without the agent (names, types,
options that would clash with the managed keys) and raises ``SpecError`` naming the field; the
agent's own schema (``ikeagent --check``) validates the rest, among it the rules that tie
``version``, ``aggressive`` and ``allow_aggressive_psk`` together (Aggressive Mode is IKEv1's,
and with a PSK it needs the explicit opt-in). ``render`` is deterministic;
``redact`` replaces every secret with its fingerprint for diffs and output.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass, field
from typing import Any

from ansible_collections.ikelab.ipsec.plugins.module_utils import yaml_text
from ansible_collections.ikelab.ipsec.plugins.module_utils.tunnel_settings import (
    Context,
    SpecError,
    settings,
)
from ansible_collections.ikelab.ipsec.plugins.module_utils.tunnel_settings import (
    duration as _duration,
)

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")
START_ACTIONS = ("none", "start", "trap")
# connection keys the module writes itself (and the agent's aliases of them)
MANAGED_CONNECTION_KEYS = frozenset(
    {
        "version",
        "aggressive",
        "allow_aggressive_psk",
        "local_addrs",
        "remote_addrs",
        "proposals",
        "local",
        "remote",
        "local-1",
        "remote-1",
        "dpd_delay",
        "rekey_time",
        "children",
    }
)
MANAGED_CHILD_KEYS = frozenset(
    {"local_ts", "remote_ts", "esp_proposals", "start_action", "rekey_time"}
)
IKE_VERSIONS = (1, 2)
AUTH_METHODS = ("psk", "pubkey")
PUBKEY_PARAMS = ("certs", "private_key", "cacerts")
_OPTION_KEY = re.compile(r"[a-z][a-z0-9_]*\Z")


# --- the PSK ---------------------------------------------------------------------------------


def decode_psk(text: str, field_name: str = "psk") -> bytes:
    """A PSK as swanctl writes secrets: ``0x<hex>``, ``0s<base64>`` or the string itself
    (UTF-8). The reason of an error never contains the value."""
    if not isinstance(text, str):
        raise SpecError(field_name, "must be a string")
    if text.startswith("0x"):
        try:
            data = binascii.unhexlify(text[2:])
        except (binascii.Error, ValueError):
            raise SpecError(field_name, "a PSK starting with 0x must be hex")
    elif text.startswith("0s"):
        try:
            data = base64.b64decode(text[2:], validate=True)
        except (binascii.Error, ValueError):
            raise SpecError(field_name, "a PSK starting with 0s must be base64")
    else:
        data = text.encode("utf-8")
    if not data:
        raise SpecError(field_name, "cannot be empty")
    return data


def encode_psk(secret: bytes) -> str:
    return "0s" + base64.b64encode(secret).decode("ascii")


def psk_fingerprint(secret: bytes) -> str:
    """``SHA256:<base64 without padding>`` of the PSK bytes: the keygen module's format, so an
    operator can compare both ends and the key file without seeing the key."""
    digest = hashlib.sha256(secret).digest()
    return "SHA256:" + base64.b64encode(digest).decode("ascii").rstrip("=")


def fingerprint_text(secret_text: str) -> str:
    """What diffs and output show instead of a ``secret:`` value."""
    try:
        secret = decode_psk(secret_text)
    except SpecError:
        return "<secret: not readable>"
    return f"<psk {psk_fingerprint(secret)}>"


# --- parameters -------------------------------------------------------------------------------


def check_name(value: Any, field_name: str) -> str:
    if not isinstance(value, str) or not NAME.match(value) or ".." in value:
        raise SpecError(
            field_name,
            "must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit",
        )
    return value


def _str_list(value: Any, field_name: str, required: bool = False) -> tuple[str, ...]:
    if value is None:
        if required:
            raise SpecError(field_name, "is required")
        return ()
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",")]
    if not isinstance(value, (list, tuple)):
        raise SpecError(field_name, "must be a list of strings")
    out = []
    for i, item in enumerate(value):
        if not isinstance(item, str) or not item.strip():
            raise SpecError(f"{field_name}[{i}]", "must be a non-empty string")
        out.append(item.strip())
    if required and not out:
        raise SpecError(field_name, "must not be empty")
    return tuple(out)


def _abs_paths(value: Any, field_name: str) -> tuple[str, ...]:
    paths = _str_list(value, field_name, required=True)
    for i, path in enumerate(paths):
        if not path.startswith("/"):
            raise SpecError(f"{field_name}[{i}]", "must be an absolute path on the host")
    return paths


def _version(value: Any, field_name: str) -> int | None:
    """1 or 2 (a digit string too, as Ansible's ``int`` type takes it); None: the agent's
    default (2)."""
    if value is None:
        return None
    if isinstance(value, str) and value.strip() in ("1", "2"):
        value = int(value.strip())
    if isinstance(value, bool) or value not in IKE_VERSIONS:
        raise SpecError(field_name, "must be 1 (IKEv1) or 2 (IKEv2)")
    return int(value)


def _flag(value: Any, field_name: str) -> bool | None:
    """true or false; None leaves the agent's default (false)."""
    if value is None or isinstance(value, bool):
        return value
    raise SpecError(field_name, "must be true or false")


def _check_value(value: Any, field_name: str) -> Any:
    """Option values must be something the emitter writes (scalars, lists, mappings)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        try:
            yaml_text.scalar_text(value, field_name)
        except yaml_text.EmitError as e:
            raise SpecError(e.path, e.reason)
        return value
    if isinstance(value, (list, tuple)):
        return [_check_value(v, f"{field_name}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dict):
        out = {}
        for k in sorted(value, key=str):
            if not isinstance(k, str):
                raise SpecError(field_name, "keys must be strings")
            out[k] = _check_value(value[k], f"{field_name}.{k}")
        return out
    raise SpecError(field_name, f"unsupported value of type {type(value).__name__}")


def _options(value: Any, field_name: str, managed: frozenset[str]) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise SpecError(field_name, "must be a mapping of swanctl keys to values")
    out: dict[str, Any] = {}
    for key in sorted(value, key=str):
        here = f"{field_name}.{key}"
        if not isinstance(key, str) or not _OPTION_KEY.match(key):
            raise SpecError(here, "is not a swanctl key (lower case, digits, '_')")
        if key in managed:
            raise SpecError(here, "is set by a parameter of its own; use that parameter")
        out[key] = _check_value(value[key], here)
    return out


@dataclass(frozen=True, slots=True)
class TunnelSpec:
    """The desired fragment of one connection (no secret: the PSK is passed separately)."""

    name: str
    local_ts: tuple[str, ...]
    remote_ts: tuple[str, ...]
    local_id: str
    remote_id: str
    child: str = "net"
    version: int | None = None  # None: the agent's default (2)
    aggressive: bool | None = None  # IKEv1 Aggressive Mode
    allow_aggressive_psk: bool | None = None  # the opt-in Aggressive Mode with a PSK needs
    local_addrs: tuple[str, ...] = ()
    remote_addrs: tuple[str, ...] = ()
    ike_proposals: tuple[str, ...] = ()
    esp_proposals: tuple[str, ...] = ()
    start_action: str = "none"
    dpd_delay: Any = None
    rekey_time: Any = None
    child_rekey_time: Any = None
    options: dict[str, Any] = field(default_factory=dict)
    child_options: dict[str, Any] = field(default_factory=dict)
    # lifetimes, liveness and on-demand keys (tunnel_settings), agent key -> value
    connection_settings: dict[str, Any] = field(default_factory=dict)
    child_settings: dict[str, Any] = field(default_factory=dict)
    auth: str = "psk"
    certs: tuple[str, ...] = ()  # pubkey: our certificate first, then intermediates
    private_key: str | None = None  # pubkey: the key of certs[0]
    cacerts: tuple[str, ...] = ()  # pubkey: the CAs the peer's certificate must chain to

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> TunnelSpec:
        """Build from module parameters; every problem names its parameter."""
        name = check_name(params.get("name"), "name")
        child = check_name(params.get("child") or "net", "child")
        start_action = params.get("start_action") or "none"
        if start_action not in START_ACTIONS:
            raise SpecError("start_action", f"must be one of {', '.join(START_ACTIONS)}")
        ids = {}
        for key in ("local_id", "remote_id"):
            value = params.get(key)
            if not isinstance(value, str) or not value.strip():
                raise SpecError(key, "is required (the PSK is bound to both identities)")
            ids[key] = value.strip()
        auth = params.get("auth") or "psk"
        if auth not in AUTH_METHODS:
            raise SpecError("auth", f"must be one of {', '.join(AUTH_METHODS)}")
        pubkey: dict[str, Any] = {}
        if auth == "pubkey":
            pubkey["certs"] = _abs_paths(params.get("certs"), "certs")
            pubkey["cacerts"] = _abs_paths(params.get("cacerts"), "cacerts")
            pubkey["private_key"] = _abs_paths(
                [params.get("private_key")] if params.get("private_key") else None,
                "private_key",
            )[0]
            if params.get("psk") is not None:
                raise SpecError("psk", "does not apply to auth pubkey")
        else:
            given = [k for k in PUBKEY_PARAMS if params.get(k)]
            if given:
                raise SpecError(given[0], "only applies to auth pubkey")
        version = _version(params.get("version"), "version")
        local_addrs = _str_list(params.get("local_addrs"), "local_addrs")
        remote_addrs = _str_list(params.get("remote_addrs"), "remote_addrs")
        dpd_delay = _duration(params.get("dpd_delay"), "dpd_delay")
        rekey_time = _duration(params.get("rekey_time"), "rekey_time")
        child_rekey_time = _duration(params.get("child_rekey_time"), "child_rekey_time")
        extra = settings(
            params,
            _options(params.get("options"), "options", MANAGED_CONNECTION_KEYS),
            _options(params.get("child_options"), "child_options", MANAGED_CHILD_KEYS),
            Context(
                version=version,
                start_action=start_action,
                local_addrs=local_addrs,
                remote_addrs=remote_addrs,
                dpd_delay=dpd_delay,
                rekey_time=rekey_time,
                child_rekey_time=child_rekey_time,
            ),
        )
        return cls(
            name=name,
            child=child,
            local_ts=_str_list(params.get("local_ts"), "local_ts", required=True),
            remote_ts=_str_list(params.get("remote_ts"), "remote_ts", required=True),
            local_id=ids["local_id"],
            remote_id=ids["remote_id"],
            version=version,
            aggressive=_flag(params.get("aggressive"), "aggressive"),
            allow_aggressive_psk=_flag(params.get("allow_aggressive_psk"), "allow_aggressive_psk"),
            local_addrs=local_addrs,
            remote_addrs=remote_addrs,
            ike_proposals=_str_list(params.get("ike_proposals"), "ike_proposals"),
            esp_proposals=_str_list(params.get("esp_proposals"), "esp_proposals"),
            start_action=start_action,
            dpd_delay=dpd_delay,
            rekey_time=rekey_time,
            child_rekey_time=child_rekey_time,
            options=extra.options,
            child_options=extra.child_options,
            connection_settings=extra.connection,
            child_settings=extra.child,
            auth=auth,
            **pubkey,
        )

    @property
    def secret_name(self) -> str:
        return f"ike-{self.name}" if self.auth == "psk" else f"private-{self.name}"

    def document(self, secret_text: str | None) -> dict[str, Any]:
        """The fragment as a mapping, keys in their fixed order (``secret_text`` is what goes
        into ``secret:``, the encoded PSK or a redaction; None with ``auth: pubkey``)."""
        child: dict[str, Any] = {
            "local_ts": list(self.local_ts),
            "remote_ts": list(self.remote_ts),
        }
        if self.esp_proposals:
            child["esp_proposals"] = list(self.esp_proposals)
        child["start_action"] = self.start_action
        if self.child_rekey_time is not None:
            child["rekey_time"] = self.child_rekey_time
        # the keys of tunnel_settings and the free-form ones, sorted together: moving a key
        # from child_options to its own parameter writes the same file
        child.update(_sorted(self.child_settings, self.child_options))
        conn: dict[str, Any] = {}
        if self.version is not None:
            conn["version"] = self.version
        if self.aggressive is not None:
            conn["aggressive"] = self.aggressive
        if self.allow_aggressive_psk is not None:
            conn["allow_aggressive_psk"] = self.allow_aggressive_psk
        if self.local_addrs:
            conn["local_addrs"] = list(self.local_addrs)
        if self.remote_addrs:
            conn["remote_addrs"] = list(self.remote_addrs)
        if self.ike_proposals:
            conn["proposals"] = list(self.ike_proposals)
        if self.auth == "pubkey":
            conn["local"] = {"auth": "pubkey", "id": self.local_id, "certs": list(self.certs)}
            conn["remote"] = {
                "auth": "pubkey",
                "id": self.remote_id,
                "cacerts": list(self.cacerts),
            }
        else:
            conn["local"] = {"auth": "psk", "id": self.local_id}
            conn["remote"] = {"auth": "psk", "id": self.remote_id}
        if self.dpd_delay is not None:
            conn["dpd_delay"] = self.dpd_delay
        if self.rekey_time is not None:
            conn["rekey_time"] = self.rekey_time
        conn.update(_sorted(self.connection_settings, self.options))
        conn["children"] = {self.child: child}
        if self.auth == "pubkey":
            return {
                "connections": {self.name: conn},
                "secrets": {self.secret_name: {"file": self.private_key}},
            }
        return {
            "connections": {self.name: conn},
            "secrets": {
                self.secret_name: {
                    "id": [self.local_id, self.remote_id],
                    "secret": secret_text,
                }
            },
        }


def _sorted(*mappings: dict[str, Any]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for m in mappings:
        merged.update(m)
    return {k: merged[k] for k in sorted(merged)}


HEADER = "# Managed by ikelab.ipsec.tunnel: edits are overwritten.\n"


def _header(stamps: tuple[str, ...]) -> str:
    return HEADER + "".join(f"# {stamp}\n" for stamp in stamps)


def render(spec: TunnelSpec, psk: bytes | None, stamps: tuple[str, ...] = ()) -> str:
    """The fragment's text: the same spec, PSK and stamps always give the same bytes.
    ``stamps`` are header comment lines (``certificate_stamps``)."""
    try:
        secret = None if psk is None else encode_psk(psk)
        return _header(stamps) + yaml_text.emit(spec.document(secret))
    except yaml_text.EmitError as e:  # options were checked; this is a safety net
        raise SpecError(e.path, e.reason)


def render_redacted(spec: TunnelSpec, psk: bytes | None, stamps: tuple[str, ...] = ()) -> str:
    """The fragment with the PSK replaced by its fingerprint (for diffs)."""
    secret = None if psk is None else fingerprint_text(encode_psk(psk))
    return _header(stamps) + yaml_text.emit(spec.document(secret))


# --- certificate files (auth pubkey) -----------------------------------------------------------

_PEM_CERT = re.compile(
    rb"-----BEGIN CERTIFICATE-----\s*([A-Za-z0-9+/=\s]+?)-----END CERTIFICATE-----"
)


def certificate_fingerprint(path: str) -> str:
    """``SHA256:<base64>`` of the DER of the first certificate in a PEM (or DER) file, as
    ``ikelab.ipsec.keygen`` gives it; ``(missing)``/``(unreadable)`` otherwise. Standard
    library only (this runs on managed hosts)."""
    try:
        with open(path, "rb") as f:
            data = f.read(1 << 20)
    except FileNotFoundError:
        return "(missing)"
    except OSError:
        return "(unreadable)"
    m = _PEM_CERT.search(data)
    if m:
        try:
            data = base64.b64decode(b"".join(m.group(1).split()), validate=True)
        except (binascii.Error, ValueError):
            return "(unreadable)"
    elif data.startswith(b"-----"):
        return "(unreadable)"
    digest = hashlib.sha256(data).digest()
    return "SHA256:" + base64.b64encode(digest).decode("ascii").rstrip("=")


def certificate_stamps(spec: TunnelSpec) -> tuple[str, ...]:
    """Header lines naming each certificate file with its fingerprint (none for a PSK): a
    certificate or CA replaced on disk changes the fragment, which makes the agent reload."""
    if spec.auth != "pubkey":
        return ()
    lines = [f"local.certs[{i}] {p} {certificate_fingerprint(p)}" for i, p in enumerate(spec.certs)]
    lines += [
        f"remote.cacerts[{i}] {p} {certificate_fingerprint(p)}" for i, p in enumerate(spec.cacerts)
    ]
    return tuple(lines)


# --- existing fragments -----------------------------------------------------------------------

_SECRET_LINE = re.compile(r"^(\s*-?\s*\"?secret\"?\s*:\s*).*$", re.MULTILINE)


def redact(text: str) -> str:
    """A fragment's text with every ``secret:`` value replaced by its fingerprint. Text in this
    module's format is re-emitted; anything else has its secret lines masked."""
    try:
        doc = yaml_text.load(text)
    except ValueError:
        return _SECRET_LINE.sub(lambda m: m.group(1) + '"<redacted>"', text)
    if not isinstance(doc, dict):
        return text
    header = ""
    if text.startswith(HEADER):  # the header and the stamps that follow it
        for line in text.splitlines(keepends=True):
            if not line.startswith("#"):
                break
            header += line
    secrets = doc.get("secrets")
    if isinstance(secrets, dict):
        for body in secrets.values():
            if isinstance(body, dict) and isinstance(body.get("secret"), str):
                body["secret"] = fingerprint_text(body["secret"])
    return header + yaml_text.emit(doc)


def existing_psk(text: str, name: str) -> bytes | None:
    """The PSK of connection ``name`` in a fragment written by this module, else None."""
    try:
        doc = yaml_text.load(text)
    except ValueError:
        return None
    if not isinstance(doc, dict) or not isinstance(doc.get("secrets"), dict):
        return None
    body = doc["secrets"].get(f"ike-{name}")
    if not isinstance(body, dict) or not isinstance(body.get("secret"), str):
        return None
    try:
        return decode_psk(body["secret"])
    except SpecError:
        return None
