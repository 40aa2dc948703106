"""The agent's configuration file: YAML in strongSwan swanctl vocabulary.

``load_config(path)`` / ``parse_config(mapping, base_dir=None)`` return an ``AgentConfig`` or
raise ``ConfigError`` listing every problem as ``dotted.path: reason``. ``config_schema()``
describes the same keys as a JSON-schema-like dict; both come from the field tables: the agent
section and the top level below, the others in ``connections``, ``children``, ``authentication``
and ``credentials``.

Example::

    agent: {log_level: info, dataplane: auto}
    connections:
      site-b:
        version: 2
        local_addrs: [192.0.2.1]
        remote_addrs: [192.0.2.2]
        proposals: aes256gcm16-prfsha256-x25519, aes256-sha256-modp2048
        local: {auth: psk, id: gw-a.example}      # or local-1 {...} as swanctl writes it
        remote: {auth: psk, id: gw-b.example}
        children:
          net:
            local_ts: [10.1.0.0/24]
            remote_ts: 10.2.0.0/24[tcp/443]
            esp_proposals: [aes256gcm16, aes256-sha256]
            start_action: start
    secrets:
      ike-b: {id: [gw-a.example, gw-b.example], secret: "..."}   # or file: /path (mode 0600)

Defaults follow swanctl.conf(5) of strongSwan 5.9:

- agent: log_level info, dataplane auto (install_routes yes, routing_table 220 and
  routing_priority 220 for xfrm, as charon's), port 500, natt_port 4500 (strongSwan's charon.port and
  charon.port_nat_t), cookie_threshold 30, fragment_size 1280, keep_alive 20s, retransmit_timeout 1s,
  retransmit_tries 5, retransmit_base 1.8 (charon.retransmit_*).
- connection: version 2 (swanctl's 0 = "any" is not supported), local_addrs/remote_addrs %any,
  local_port = agent port, remote_port 500, proposals "default", local/remote auth pubkey and
  id = the IP address (local) / %any (remote), dpd_delay 0 (off), dpd_timeout 0, rekey_time 4h,
  over_time 10% of rekey_time, rand_time = over_time, reauth_time 0 (off; IKEv2: a new IKE SA
  takes over make-before-break; IKEv1: the ISAKMP SA is replaced by a new Phase 1 after the
  shorter of rekey_time and reauth_time), encap no, mobike yes,
  fragmentation yes, aggressive no, keyingtries 1, unique no, inactivity_close_ike no (our
  extension; strongSwan's charon.inactivity_close_ike, per connection).
- child: esp_proposals "default", start_action none, mode tunnel (only), rekey_time 1h,
  life_time = rekey_time + 10%, rand_time = life_time - rekey_time, rekey_bytes/rekey_packets 0,
  life_bytes/life_packets = rekey_* + 10%, replay_window 32, inactivity 0, dpd_action clear,
  close_action none. ``local_ts``/``remote_ts`` are required: swanctl's ``dynamic`` is not
  supported.
- secrets: only ``ike<suffix>`` sections (PSKs); ``id``, ``id-1``, ``id-2``... list the identities
  (none: any); ``secret`` is a string, ``0x<hex>`` or ``0s<base64>``; ``file`` (our extension)
  names a file holding the secret bytes (one trailing newline removed) that must not be
  accessible by group or others.

``include:`` (our extension, like swanctl.conf's ``include``) lists files or glob patterns,
relative to the including file, whose ``connections`` and ``secrets`` are merged in; each is
validated on its own first, so a problem names its file, and a name defined twice is an error.
This is how one file per tunnel is managed (``include: [tunnels.d/*.yaml]``).

Derived values are filled in while parsing, so the engine receives concrete numbers: a 0 that
reaches the engine means "disabled" (rekey_time, life limits) or "no jitter" (rand_time).
IKEv1 (version 1, aggressive) is accepted as configuration.
"""

from __future__ import annotations

import dataclasses
import glob
import os
from collections.abc import Mapping
from typing import Any

import yaml

from ikeagent.config import pki
from ikeagent.config.connections import CONNECTION
from ikeagent.config.credentials import SECRET
from ikeagent.config.errors import INVALID, ConfigError, Context
from ikeagent.config.model import (
    AgentConfig,
    AuthMethod,
    ConnectionConfig,
    PrivateKey,
    SharedSecret,
)
from ikeagent.config.sections import Field, MapOf, Raw, Section
from ikeagent.config.values import Bool, Choice, Duration, Int, ListOf, Number, Port, Str

__all__ = ["ConfigError", "config_schema", "load_config", "parse_config"]

LOG_LEVELS = ("debug", "info", "warning", "error")
DATAPLANES = ("auto", "userspace", "xfrm", "memory")

AGENT_FIELDS = (
    Field("log_level", Choice(*LOG_LEVELS), "info", "logging threshold"),
    Field("dataplane", Choice(*DATAPLANES), "auto", "ESP data plane"),
    Field(
        "install_routes",
        Bool(),
        True,
        "xfrm: route the remote traffic selectors through routing_table (charon.install_routes)",
    ),
    Field("routing_table", Int(1, 252), 220, "xfrm: the agent's routing table (not 253-255)"),
    Field("routing_priority", Int(1, 32765), 220, "xfrm: priority of the rule for that table"),
    Field("port", Port(), 500, "UDP port for IKE"),
    Field("natt_port", Port(), 4500, "UDP port for NAT-T (IKE with non-ESP marker and ESP)"),
    Field("cookie_threshold", Int(0), 30, "half-open IKE SAs before COOKIEs are demanded"),
    Field("fragment_size", Int(576, 65535), 1280, "IKE message size before fragmenting"),
    Field("keep_alive", Duration(), 20.0, "NAT-T keepalive interval while behind a NAT (0: off)"),
    Field("retransmit_timeout", Duration(), 1.0, "first retransmission timeout"),
    Field("retransmit_tries", Int(0), 5, "retransmissions before giving up"),
    Field("retransmit_base", Number(1.0), 1.8, "exponential backoff base"),
)

AGENT = Section(AGENT_FIELDS, lambda name, v, path, ctx: v, "agent-wide settings")

TOP_FIELDS = (
    Field("agent", AGENT, Raw({}), "agent-wide settings"),
    Field(
        "include",
        ListOf(Str()),
        (),
        "files (glob patterns, relative to this file) adding connections and secrets",
    ),
    Field("connections", MapOf(CONNECTION), {}, "IKE connections"),
    Field(
        "secrets",
        MapOf(
            SECRET,
            r"(ike|private|rsa|ecdsa|pkcs8)[^.\s\[\]]*",
            "only ike<suffix> (PSK) and private/rsa/ecdsa/pkcs8<suffix> (key file) secrets "
            "are supported",
        ),
        {},
        "secrets",
    ),
)
TOP = Section(TOP_FIELDS, lambda name, v, path, ctx: v, "ikeagent configuration")
_BODY = Section(TOP_FIELDS[1:], lambda name, v, path, ctx: v)  # parsed after the agent section


def parse_config(
    mapping: Mapping[str, Any] | None,
    base_dir: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    *,
    fragment: bool = False,
) -> AgentConfig:
    """Validate a parsed YAML document. ``base_dir`` resolves relative secret, certificate and
    key files; ``overrides`` replace keys of the ``agent:`` section (command-line options).
    ``fragment``: an included file, checked on its own, whose certificates' private keys may
    be in another file."""
    ctx = Context(base_dir=base_dir)
    if mapping is None:
        mapping = {}
    if not isinstance(mapping, Mapping):
        raise ConfigError(
            [("", f"expected a mapping at the top level, got {type(mapping).__name__}")]
        )
    agent_raw = mapping.get("agent")
    if overrides:
        agent_raw = dict(agent_raw if isinstance(agent_raw, Mapping) else {}) | dict(overrides)
    # the agent section first: connection defaults (local_port) depend on it
    agent = AGENT.parse(agent_raw, "agent", ctx)
    ctx.settings = {} if agent is INVALID else dict(agent)
    rest = {k: v for k, v in mapping.items() if k != "agent"}
    top = _BODY.values(rest, "", ctx)
    ctx.raise_if_any()
    secrets = top["secrets"].values()
    keys = [s for s in secrets if isinstance(s, PrivateKey)] + pki.folder_keys(base_dir)
    connections = top["connections"]
    if not fragment:
        connections = {n: _with_key(c, keys, ctx) for n, c in connections.items()}
        ctx.raise_if_any()
    return AgentConfig(
        connections=connections,
        secrets=tuple(s for s in secrets if isinstance(s, SharedSecret)),
        private_keys=tuple(keys),
        **agent,
    )


def _with_key(conn: ConnectionConfig, keys: list[PrivateKey], ctx: Context) -> ConnectionConfig:
    """The connection with the private key of its certificate, found among the keys."""
    if conn.local.auth is not AuthMethod.PUBKEY:
        return conn
    from ikeagent.crypto.pki.names import describe

    cert = conn.local.certs[0]
    key = pki.key_for(cert, keys)
    if key is None:
        ctx.error(
            f"connections.{conn.name}.local.certs",
            f"no private key matches certificate {describe(cert)} ({pki.key_type_name(cert)}); "
            "name its file in secrets (private-<name>: {file: ...}) or put it in private/",
        )
        return conn
    return dataclasses.replace(conn, local=dataclasses.replace(conn.local, key=key))


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate mapping keys instead of keeping the last one."""


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    out: dict[Any, Any] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in out:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        out[key] = loader.construct_object(value_node, deep=True)
    return out


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_yaml(path: str) -> Any:
    try:
        with open(path, encoding="utf-8") as f:
            return yaml.load(f, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except OSError as e:
        raise ConfigError([("", f"cannot read {path}: {e.strerror}")])
    except yaml.YAMLError as e:
        raise ConfigError([("", f"{path}: invalid YAML: {e}")])


def load_config(path: str, overrides: Mapping[str, Any] | None = None) -> AgentConfig:
    """Read and validate a YAML configuration file and the files it includes."""
    data = load_yaml(path)
    base_dir = os.path.dirname(os.path.abspath(path))
    if isinstance(data, Mapping) and data.get("include"):
        data = _with_includes(data, base_dir)
    return parse_config(data, base_dir, overrides)


_INCLUDABLE = ("connections", "secrets")


def _with_includes(data: Mapping[str, Any], base_dir: str) -> dict[str, Any]:
    """The main document with the connections and secrets of its included files merged in.

    Each included file is first validated on its own, so a problem is reported with the file
    it is in; a connection or secret defined in two files is an error naming both. Relative
    secret ``file:`` paths are relative to the file that names them."""
    patterns = data["include"]
    if isinstance(patterns, str):
        patterns = [patterns]
    if not isinstance(patterns, list) or not all(isinstance(p, str) for p in patterns):
        raise ConfigError([("include", "expected a list of file names or glob patterns")])
    problems: list[tuple[str, str]] = []
    merged: dict[str, Any] = dict(data)
    origin: dict[tuple[str, str], str] = {}
    for section in _INCLUDABLE:
        value = merged.get(section) or {}
        if not isinstance(value, Mapping):
            continue  # reported by parse_config
        merged[section] = dict(value)
        for name in value:
            origin[(section, str(name))] = "the main file"
    for i, pattern in enumerate(patterns):
        full = os.path.join(base_dir, os.path.expanduser(pattern))
        for file in sorted(glob.glob(full)):
            shown = os.path.relpath(file, base_dir)
            try:
                fragment = load_yaml(file)
                if fragment is None:
                    continue
                if not isinstance(fragment, Mapping):
                    raise ConfigError([("", "expected a mapping at the top level")])
                extra = sorted(str(k) for k in fragment if k not in _INCLUDABLE)
                if extra:
                    raise ConfigError(
                        [
                            (k, "not allowed in an included file (only connections, secrets)")
                            for k in extra
                        ]
                    )
                parse_config(fragment, os.path.dirname(file), fragment=True)
            except ConfigError as e:
                problems += [(f"{shown}: {p}" if p else shown, r) for p, r in e.problems]
                continue
            for section in _INCLUDABLE:
                for name, body in (fragment.get(section) or {}).items():
                    key = (section, str(name))
                    if key in origin:
                        problems.append(
                            (
                                f"{shown}: {section}.{name}",
                                f"already defined in {origin[key]}",
                            )
                        )
                        continue
                    origin[key] = shown
                    merged[section][name] = _anchored(section, body, os.path.dirname(file))
        if not glob.has_magic(full) and not os.path.exists(full):
            problems.append((f"include[{i}]", f"{pattern}: no such file"))
    if problems:
        raise ConfigError(problems)
    return merged


def _anchored(section: str, body: Any, file_dir: str) -> Any:
    """Relative file names of an included file (a secret's ``file:``, certificates, CRLs)
    resolve against that file's directory and its x509/, x509ca/, x509crl/, private/."""
    if section == "secrets" and isinstance(body, Mapping):
        secret_file = body.get("file")
        if isinstance(secret_file, str) and not os.path.isabs(secret_file):
            return dict(body) | {"file": pki.resolve(secret_file, "key", file_dir)}
    if section == "connections" and isinstance(body, Mapping):
        body = dict(body)
        for side in ("local", "local-1", "remote", "remote-1"):
            auth = body.get(side)
            if not isinstance(auth, Mapping):
                continue
            auth = dict(auth)
            for kind in ("certs", "cacerts", "crls"):
                names = ListOf.items(auth.get(kind))
                if names and all(isinstance(n, str) for n in names):
                    auth[kind] = [pki.resolve(n, kind, file_dir) for n in names]
            body[side] = auth
    return body


def config_schema() -> dict[str, Any]:
    """A JSON-schema-like description of the configuration (from the same field tables)."""
    out = TOP.schema() | {"$schema": "https://json-schema.org/draft/2020-12/schema"}
    out["title"] = "ikeagent configuration"
    return out
