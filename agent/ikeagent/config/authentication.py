"""The ``local``/``remote`` sections of a connection: one authentication round (a PSK, or
certificates with ``auth: pubkey``). Certificate and CRL files are loaded here (``pki``), so a
missing or unreadable file is reported with the key that names it."""

from __future__ import annotations

from typing import Any

from ikeagent.config import pki
from ikeagent.config.errors import INVALID, Context, Invalid, join
from ikeagent.config.model import AuthConfig, AuthMethod
from ikeagent.config.sections import Field, Section
from ikeagent.config.values import Choice, IdentityValue, ListOf, Str

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
