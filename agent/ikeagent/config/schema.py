"""The agent's configuration file: YAML in strongSwan swanctl vocabulary.

``load_config(path)`` / ``parse_config(mapping, base_dir=None)`` return an ``AgentConfig`` or
raise ``ConfigError`` listing every problem as ``dotted.path: reason``. ``config_schema()``
describes the same keys as a JSON-schema-like dict; both come from the field tables below.

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

Derived values are filled in here, so the engine receives concrete numbers: a 0 that reaches
the engine means "disabled" (rekey_time, life limits) or "no jitter" (rand_time).
IKEv1 (version 1, aggressive) is accepted as configuration.
"""

from __future__ import annotations

import dataclasses
import glob
import ipaddress
import os
import stat
from collections.abc import Mapping
from typing import Any

import yaml

from ikeagent.config import ikev1, pki
from ikeagent.config.errors import INVALID, ConfigError, Context, Invalid, join
from ikeagent.config.model import (
    AgentConfig,
    AuthConfig,
    AuthMethod,
    ChildConfig,
    ConnectionConfig,
    PrivateKey,
    SharedSecret,
    StartAction,
)
from ikeagent.config.sections import DERIVED, REQUIRED, Field, MapOf, Raw, Section
from ikeagent.config.values import (
    Address,
    Bool,
    Choice,
    Count,
    Duration,
    IdentityValue,
    Int,
    ListOf,
    Number,
    Port,
    Proposals,
    SecretValue,
    Str,
    TrafficSelectorValue,
    Version,
)

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

AUTH_FIELDS = (
    Field(
        "auth",
        Choice("psk", "pubkey", names={"psk": AuthMethod.PSK, "pubkey": AuthMethod.PUBKEY}),
        AuthMethod.PUBKEY,
        "authentication method",
    ),
    Field("id", IdentityValue(), None, "IKE identity (default: IP address / %any)"),
    Field(
        "certs",
        ListOf(Str()),
        (),
        "certificate files (x509/): local, ours then intermediates; remote, the peer's (pinned)",
    ),
    Field("cacerts", ListOf(Str()), (), "CA certificate files (x509ca/) the peer must chain to"),
    Field("crls", ListOf(Str()), (), "CRL files (x509crl/, which is always read) for the peer"),
    Field(
        "revocation",
        Choice("strict", "ifuri", "relaxed"),
        "relaxed",
        "strict: a current CRL is required for every CA of the peer's chain",
    ),
)

CHILD_FIELDS = (
    Field(
        "local_ts",
        ListOf(TrafficSelectorValue(), min_items=1),
        REQUIRED,
        "local traffic selectors",
        required_reason="required (swanctl's default 'dynamic' is not supported)",
    ),
    Field(
        "remote_ts",
        ListOf(TrafficSelectorValue(), min_items=1),
        REQUIRED,
        "remote traffic selectors",
        required_reason="required (swanctl's default 'dynamic' is not supported)",
    ),
    Field("esp_proposals", Proposals("ESP"), Raw("default"), "ESP proposals"),
    Field(
        "start_action",
        Choice("none", "start", "trap", names={a.value: a for a in StartAction}),
        StartAction.NONE,
        "what to do after loading",
    ),
    Field("mode", Choice("tunnel"), "tunnel", "IPsec mode (tunnel only)"),
    Field("rekey_time", Duration(), 3600.0, "CHILD_SA rekey interval (0: off)"),
    Field("life_time", Duration(), DERIVED, "hard lifetime (default rekey_time + 10%)"),
    Field("rand_time", Duration(), DERIVED, "rekey jitter (default life_time - rekey_time)"),
    Field("rekey_bytes", Count(), 0, "bytes before rekeying (0: off)"),
    Field("life_bytes", Count(), DERIVED, "hard byte limit (default rekey_bytes + 10%)"),
    Field("rekey_packets", Count(), 0, "packets before rekeying (0: off)"),
    Field("life_packets", Count(), DERIVED, "hard packet limit (default rekey_packets + 10%)"),
    Field("replay_window", Int(0, 2**32 - 1), 32, "replay window in packets"),
    Field("inactivity", Duration(), 0.0, "close the CHILD_SA after this idle time (0: off)"),
    Field("dpd_action", Choice("clear", "trap", "restart"), "clear", "action on DPD timeout"),
    Field("close_action", Choice("none", "trap", "start"), "none", "action when peer closes"),
)


def _build_child(name: str, v: dict[str, Any], path: str, ctx: Context) -> Any:
    rekey = v["rekey_time"]
    life = v.get("life_time", rekey + rekey / 10)
    if "life_time" in v and rekey and life and life <= rekey:
        return ctx.error(join(path, "life_time"), "must be greater than rekey_time")
    rand = v.get("rand_time", max(life - rekey, 0.0) if rekey else 0.0)
    for unit in ("bytes", "packets"):
        soft = v[f"rekey_{unit}"]
        hard = v.get(f"life_{unit}", soft + soft // 10)
        if f"life_{unit}" in v and soft and hard and hard <= soft:
            return ctx.error(join(path, f"life_{unit}"), f"must be greater than rekey_{unit}")
        v[f"life_{unit}"] = hard
    return ChildConfig(
        name=name,
        local_ts=v["local_ts"],
        remote_ts=v["remote_ts"],
        esp_proposals=v["esp_proposals"],
        start_action=v["start_action"],
        mode=v["mode"],
        rekey_time=rekey,
        life_time=life,
        rand_time=rand,
        rekey_bytes=v["rekey_bytes"],
        life_bytes=v["life_bytes"],
        rekey_packets=v["rekey_packets"],
        life_packets=v["life_packets"],
        replay_window=v["replay_window"],
        inactivity=v["inactivity"],
        dpd_action=v["dpd_action"],
        close_action=v["close_action"],
    )


def _build_auth(name: str, v: dict[str, Any], path: str, ctx: Context) -> Any:
    local = path.rsplit(".", 1)[-1].startswith("local")
    files = {k: v[k] for k in ("certs", "cacerts", "crls") if v[k]}
    if v["auth"] is AuthMethod.PSK:
        if files:
            key = next(iter(files))
            return ctx.error(join(path, key), "certificates need auth: pubkey")
        return AuthConfig(auth=v["auth"], id=v["id"])
    bad = False
    if local:
        for key in ("cacerts", "crls"):
            if key in files:
                ctx.error(join(path, key), "only used in remote (what the peer is checked with)")
                bad = True
        if not v["certs"]:
            return ctx.error(join(path, "certs"), "required with auth: pubkey (our certificate)")
    elif not v["certs"] and not v["cacerts"]:
        return ctx.error(
            join(path, "cacerts"),
            "required with auth: pubkey (the CA certificates the peer's chain must end in)",
        )
    loaded: dict[str, tuple[Any, ...]] = {}
    for key in ("certs", "cacerts"):
        try:
            loaded[key] = pki.load_certs(v[key], key, ctx.base_dir)
        except Invalid as e:
            ctx.error(join(path, key), str(e))
            bad = True
    try:
        crls = pki.load_crls(v["crls"], ctx.base_dir) + (
            () if local else pki.folder_crls(ctx.base_dir)
        )
    except Invalid as e:
        ctx.error(join(path, "crls"), str(e))
        bad = True
    if bad:
        return INVALID
    ident = v["id"]
    if local:
        from ikeagent.crypto.pki.names import cert_matches_identity, describe, subject_identity

        cert = loaded["certs"][0]
        if ident is None:
            ident = subject_identity(cert)
        elif not cert_matches_identity(cert, ident):
            return ctx.error(
                join(path, "id"),
                f"'{ident}' is not in certificate {describe(cert)} "
                "(neither its subject nor a subjectAltName)",
            )
    return AuthConfig(
        auth=v["auth"],
        id=ident,
        certs=loaded["certs"],
        cacerts=loaded["cacerts"],
        crls=crls,
        revocation=v["revocation"],
    )


AUTH = Section(AUTH_FIELDS, _build_auth, "one authentication round")
CHILD = Section(CHILD_FIELDS, _build_child, "a CHILD_SA")

CONNECTION_FIELDS = (
    Field("version", Version(), 2, "IKE version: 1 or 2"),
    Field("local_addrs", ListOf(Address()), (), "local addresses (default %any)"),
    Field(
        "remote_addrs",
        ListOf(Address(ranges=True)),
        (),
        "remote addresses, names, subnets or ranges (default %any)",
    ),
    Field("local_port", Port(), DERIVED, "local IKE port (default: agent port)"),
    Field("remote_port", Port(), 500, "remote IKE port"),
    Field("proposals", Proposals("IKE"), Raw("default"), "IKE proposals"),
    Field("local", AUTH, Raw({}), "local authentication", aliases=("local-1",)),
    Field("remote", AUTH, Raw({}), "remote authentication", aliases=("remote-1",)),
    Field("dpd_delay", Duration(), 0.0, "liveness check interval (0: off)"),
    Field("dpd_timeout", Duration(), 0.0, "IKEv1 DPD timeout"),
    Field("rekey_time", Duration(), 14400.0, "IKE SA rekey interval (0: off)"),
    Field("over_time", Duration(), DERIVED, "hard limit after rekey_time (default 10%)"),
    Field("rand_time", Duration(), DERIVED, "rekey jitter (default over_time)"),
    Field("reauth_time", Duration(), 0.0, "reauthentication interval (0: off)"),
    Field("encap", Bool(), False, "force UDP encapsulation"),
    Field("mobike", Bool(), True, "MOBIKE (RFC 4555)"),
    Field("fragmentation", Bool(), True, "IKE fragmentation (RFC 7383)"),
    Field("aggressive", Bool(), False, "IKEv1 Aggressive Mode"),
    Field("allow_aggressive_psk", Bool(), False, "allow IKEv1 Aggressive Mode with PSK"),
    Field("keyingtries", Int(0), 1, "initiation attempts (0: forever)"),
    Field(
        "inactivity_close_ike",
        Bool(),
        False,
        "close the IKE SA too when its last CHILD_SA was closed for inactivity",
    ),
    Field("unique", Choice("no", "never", "keep", "replace"), "no", "uniqueness policy"),
    Field("children", MapOf(CHILD), {}, "CHILD_SAs"),
)


def _build_connection(name: str, v: dict[str, Any], path: str, ctx: Context) -> Any:
    bad = False
    if v["aggressive"] and v["version"] != 1:
        ctx.error(join(path, "aggressive"), "Aggressive Mode needs version: 1")
        bad = True
    elif (
        v["aggressive"]
        and not v["allow_aggressive_psk"]
        and AuthMethod.PSK
        in (getattr(v["local"], "auth", None), getattr(v["remote"], "auth", None))
    ):
        ctx.error(
            join(path, "allow_aggressive_psk"),
            "Aggressive Mode with a pre-shared key sends a hash of the key that can be guessed "
            "offline: set allow_aggressive_psk: true to accept that risk, or use Main Mode",
        )
        bad = True
    if v["version"] == 1 and not ikev1.check_connection(v, path, ctx):
        bad = True
    for action in (StartAction.START, StartAction.TRAP):
        starting = [c.name for c in v["children"].values() if c.start_action is action]
        if starting and not v["remote_addrs"]:
            ctx.error(
                join(path, "remote_addrs"),
                f"required when a child has start_action {action.value} ({', '.join(starting)})",
            )
            bad = True
            break
        if starting and action is StartAction.TRAP and not _initiable(v["remote_addrs"][0]):
            ctx.error(
                join(path, "remote_addrs"),
                f"start_action trap ({', '.join(starting)}) needs an address to initiate to "
                f"first, not {v['remote_addrs'][0]!r}",
            )
            bad = True
    # dpd_action/close_action trap and restart/start initiate later: they need a peer address
    later = [
        f"{c.name} ({key} {value})"
        for c in v["children"].values()
        for key, value in (("dpd_action", c.dpd_action), ("close_action", c.close_action))
        if value in ("trap", "restart", "start")
    ]
    if later and not bad and not (v["remote_addrs"] and _initiable(v["remote_addrs"][0])):
        first = repr(v["remote_addrs"][0]) if v["remote_addrs"] else "none"
        ctx.error(
            join(path, "remote_addrs"),
            f"{', '.join(later)} initiates to the peer: the first remote address must be an "
            f"IP address (it is {first})",
        )
        bad = True
    if bad:
        return INVALID
    rekey = v["rekey_time"]
    reauth = v["reauth_time"]
    if v["version"] == 1 and reauth > 0 and (rekey <= 0 or reauth < rekey):
        # IKEv1 replaces its ISAKMP SA with a new Phase 1, which authenticates again: the
        # shorter of the two intervals is when that happens
        rekey = reauth
    over = v.get("over_time", rekey / 10)
    rand = v.get("rand_time", over)
    return ConnectionConfig(
        name=name,
        version=v["version"],
        local_addrs=v["local_addrs"],
        remote_addrs=v["remote_addrs"],
        proposals=v["proposals"],
        local=v["local"],
        remote=v["remote"],
        children=v["children"],
        local_port=v.get("local_port", ctx.settings.get("port", 500)),
        remote_port=v["remote_port"],
        dpd_delay=v["dpd_delay"],
        dpd_timeout=v["dpd_timeout"],
        rekey_time=rekey,
        over_time=over,
        rand_time=rand,
        reauth_time=v["reauth_time"],
        encap=v["encap"],
        mobike=v["mobike"],
        fragmentation=v["fragmentation"],
        aggressive=v["aggressive"],
        allow_aggressive_psk=v["allow_aggressive_psk"],
        keyingtries=v["keyingtries"],
        unique=v["unique"],
        inactivity_close_ike=v["inactivity_close_ike"],
    )


def _initiable(addr: str) -> bool:
    """An IP address (not a subnet, range or name): what a trap can initiate to."""
    try:
        ipaddress.ip_address(addr)
    except ValueError:
        return False
    return True


SECRET_FIELDS = (
    Field("id", ListOf(IdentityValue()), (), "identities (id, id-1, id-2...)", pattern=r"id(-.+)?"),
    Field(
        "secret",
        SecretValue(),
        DERIVED,
        "ike*: the PSK, a string, 0x<hex> or 0s<base64>; private*: the key file's passphrase",
    ),
    Field(
        "file",
        Str(),
        DERIVED,
        "ike*: file holding the PSK; private*: the private key file (private/); mode 0600",
    ),
)
PRIVATE_KEY_SECRETS = ("private", "rsa", "ecdsa", "pkcs8")


def _read_secret_file(name: str, base_dir: str | None) -> bytes:
    path = name if os.path.isabs(name) or base_dir is None else os.path.join(base_dir, name)
    try:
        with open(path, "rb") as f:
            st = os.fstat(f.fileno())
            if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
                raise Invalid(
                    f"{path} is accessible by group or others "
                    f"(mode {stat.S_IMODE(st.st_mode):04o}); chmod 600 it"
                )
            data = f.read()
    except OSError as e:
        raise Invalid(f"cannot read {path}: {e.strerror}")
    data = data[:-2] if data.endswith(b"\r\n") else data[:-1] if data.endswith(b"\n") else data
    if not data:
        raise Invalid(f"{path} is empty")
    return data


def _build_private_key(name: str, v: dict[str, Any], path: str, ctx: Context) -> Any:
    if v["id"]:
        return ctx.error(join(path, "id"), "a private key is found by its certificate, not by id")
    if "file" not in v:
        return ctx.error(join(path, "file"), "required: the private key file")
    return pki.load_key(name, pki.resolve(v["file"], "key", ctx.base_dir), v.get("secret"))


def _build_secret(name: str, v: dict[str, Any], path: str, ctx: Context) -> Any:
    if name.startswith(PRIVATE_KEY_SECRETS):
        return _build_private_key(name, v, path, ctx)
    if ("secret" in v) == ("file" in v):
        return ctx.error(path, "give exactly one of secret or file")
    if "file" in v:
        try:
            secret = _read_secret_file(v["file"], ctx.base_dir)
        except Invalid as e:
            return ctx.error(join(path, "file"), str(e))
    else:
        secret = v["secret"]
    return SharedSecret(name=name, ids=tuple(v["id"]), secret=secret)


CONNECTION = Section(CONNECTION_FIELDS, _build_connection, "an IKE connection")
SECRET = Section(SECRET_FIELDS, _build_secret, "an IKE pre-shared key")
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
