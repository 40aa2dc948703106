"""The ``secrets:`` section: ``ike*`` pre-shared keys (given inline or read from a file that
group and others cannot access) and ``private*`` private key files for ``auth: pubkey``."""

from __future__ import annotations

import os
import stat
from typing import Any

from ikeagent.config import pki
from ikeagent.config.errors import Context, Invalid, join
from ikeagent.config.model import SharedSecret
from ikeagent.config.sections import DERIVED, Field, Section
from ikeagent.config.values import IdentityValue, ListOf, SecretValue, Str

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


SECRET = Section(SECRET_FIELDS, _build_secret, "an IKE pre-shared key")
