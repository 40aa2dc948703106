"""Certificates, CRLs and private keys named in the configuration (``auth: pubkey``).

Relative file names are looked up as swanctl does, in the folder for their kind beside the
configuration file (``x509/`` for our and the peer's end-entity certificates, ``x509ca/`` for
CA certificates, ``x509crl/`` for CRLs, ``private/`` for private keys), then beside the file
itself. Every key file in ``private/`` and every CRL in ``x509crl/`` is loaded as well, as
``swanctl --load-creds`` does.

A private key file that group or others may access is not loaded: its ``PrivateKey`` keeps the
reason, the agent logs it at load, and an authentication that needs the key fails with it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from typing import Any

from ikeagent.config.errors import Invalid
from ikeagent.config.model import PrivateKey

FOLDERS = {"certs": "x509", "cacerts": "x509ca", "crls": "x509crl", "key": "private"}
KEY_FOLDERS = ("private", "rsa", "ecdsa", "pkcs8")


def resolve(name: str, kind: str, base_dir: str | None) -> str:
    """The path a configured file name stands for (see the module docstring)."""
    name = os.path.expanduser(name)
    if os.path.isabs(name) or base_dir is None:
        return name
    folder = os.path.join(base_dir, FOLDERS[kind], name)
    if os.path.exists(folder):
        return folder
    return os.path.join(base_dir, name)


def load_certs(names: Sequence[str], kind: str, base_dir: str | None) -> tuple[Any, ...]:
    """Every certificate in the named files, in order; ``Invalid`` names the file and reason."""
    from ikeagent.crypto.pki import PkiError, load_certificates

    out: list[Any] = []
    for name in names:
        try:
            out.extend(load_certificates(resolve(name, kind, base_dir)))
        except PkiError as e:
            raise Invalid(str(e)) from None
    return tuple(out)


def load_crls(names: Sequence[str], base_dir: str | None) -> tuple[Any, ...]:
    from ikeagent.crypto.pki import PkiError, load_crl

    out: list[Any] = []
    for name in names:
        try:
            out.append(load_crl(resolve(name, "crls", base_dir)))
        except PkiError as e:
            raise Invalid(str(e)) from None
    return tuple(out)


def folder_crls(base_dir: str | None) -> tuple[Any, ...]:
    """The CRLs in ``x509crl/`` beside the config; unreadable ones are configuration errors."""
    if base_dir is None:
        return ()
    folder = os.path.join(base_dir, FOLDERS["crls"])
    if not os.path.isdir(folder):
        return ()
    names = sorted(os.path.join(folder, n) for n in os.listdir(folder))
    return load_crls([n for n in names if os.path.isfile(n)], None)


def load_key(name: str, path: str, passphrase: bytes | None) -> PrivateKey:
    """A private key, or one that keeps why it was refused (exposed, unreadable, bad)."""
    from ikeagent.crypto.pki import KeyFileExposed, PkiError, load_private_key, spki_der

    try:
        key = load_private_key(path, passphrase)
    except KeyFileExposed as e:
        # refused; its public half still tells which certificate it belongs to
        return PrivateKey(
            name=name, path=path, key=None, spki=_exposed_spki(path, passphrase), problem=str(e)
        )
    except PkiError as e:
        return PrivateKey(name=name, path=path, key=None, problem=str(e))
    return PrivateKey(name=name, path=path, key=key, spki=spki_der(key.public_key()))


def _exposed_spki(path: str, passphrase: bytes | None) -> bytes:
    """The SubjectPublicKeyInfo of a key file that is refused for its permissions, to match it
    to its certificate in the error message; the private key itself is dropped at once."""
    from cryptography.hazmat.primitives import serialization

    from ikeagent.crypto.pki import spki_der

    try:
        with open(path, "rb") as f:
            data = f.read(1 << 20)
        pem = b"-----BEGIN" in data
        loader = serialization.load_pem_private_key if pem else serialization.load_der_private_key
        return spki_der(loader(data, password=passphrase or None).public_key())
    except Exception:  # noqa: BLE001 - only a hint for the error message
        return b""


def folder_keys(base_dir: str | None) -> list[PrivateKey]:
    if base_dir is None:
        return []
    out = []
    for folder in KEY_FOLDERS:
        full = os.path.join(base_dir, folder)
        if not os.path.isdir(full):
            continue
        for n in sorted(os.listdir(full)):
            path = os.path.join(full, n)
            if os.path.isfile(path):
                out.append(load_key(f"{folder}/{n}", path, None))
    return out


def key_for(cert: Any, keys: Iterable[PrivateKey]) -> PrivateKey | None:
    """The private key whose public key is the certificate's: a loaded one, else a refused one
    (its file accessible by others) so the problem can be reported. When none matches, a
    single key that could not be read at all (e.g. wrong passphrase) is returned with its
    problem, as the likely one."""
    from ikeagent.crypto.pki import spki_der

    want = spki_der(cert.public_key())
    keys = list(keys)
    usable = [k for k in keys if k.spki == want]
    for k in usable:
        if k.key is not None:
            return k
    if usable:
        return usable[0]  # refused, with its problem
    refused = [k for k in keys if k.problem is not None and not k.spki]
    return refused[0] if len(refused) == 1 else None


def key_type_name(cert: Any) -> str:
    from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

    pub = cert.public_key()
    if isinstance(pub, rsa.RSAPublicKey):
        return f"RSA {pub.key_size}"
    if isinstance(pub, ec.EllipticCurvePublicKey):
        return f"ECDSA {pub.curve.name}"
    if isinstance(pub, ed25519.Ed25519PublicKey):
        return "Ed25519"
    if isinstance(pub, ed448.Ed448PublicKey):
        return "Ed448"
    return type(pub).__name__
