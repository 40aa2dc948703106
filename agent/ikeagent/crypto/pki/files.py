"""Loading certificates, CRLs and private keys from files (the only I/O of the package).

PEM (one or more blocks) and DER are both accepted. A private key file whose mode has any
group or other permission bit is refused with :class:`KeyFileExposed` before its content is
read; the mode is checked with ``fstat`` on the opened file, so it is the file actually read.
"""

from __future__ import annotations

import os
import stat
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from ikeagent.crypto.pki.errors import KeyFileExposed, PkiError

_PEM_MARK = b"-----BEGIN "
_MAX_FILE = 4 * 1024 * 1024  # certificates, CRLs and keys are far smaller than this


def _read(path: str | os.PathLike[str], what: str) -> bytes:
    try:
        with open(path, "rb") as f:
            data = f.read(_MAX_FILE + 1)
    except OSError as e:
        raise PkiError(f"cannot read {what} {os.fspath(path)}: {e.strerror or e}")
    if len(data) > _MAX_FILE:
        raise PkiError(f"{what} {os.fspath(path)} is too large")
    return data


def _is_pem(data: bytes) -> bool:
    return _PEM_MARK in data[:4096] or data.lstrip().startswith(b"-----")


def load_certificates(path: str | os.PathLike[str]) -> list[x509.Certificate]:
    """All certificates in a PEM file (one or more CERTIFICATE blocks, in order) or the
    single certificate of a DER file. Raises PkiError naming the file."""
    name = os.fspath(path)
    data = _read(path, "certificate file")
    try:
        if _is_pem(data):
            certs = x509.load_pem_x509_certificates(data)
        else:
            certs = [x509.load_der_x509_certificate(data)]
    except ValueError as e:
        raise PkiError(f"{name} does not hold a valid X.509 certificate (PEM or DER): {e}")
    if not certs:
        raise PkiError(f"{name} holds no certificate")
    return certs


def load_crl(path: str | os.PathLike[str]) -> x509.CertificateRevocationList:
    """The CRL of a PEM (X509 CRL block) or DER file. Raises PkiError naming the file."""
    name = os.fspath(path)
    data = _read(path, "CRL file")
    try:
        if _is_pem(data):
            return x509.load_pem_x509_crl(data)
        return x509.load_der_x509_crl(data)
    except ValueError as e:
        raise PkiError(f"{name} does not hold a valid X.509 CRL (PEM or DER): {e}")


def _read_private(path: str | os.PathLike[str]) -> bytes:
    name = os.fspath(path)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except OSError as e:
        raise PkiError(f"cannot read private key file {name}: {e.strerror or e}")
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise PkiError(f"private key file {name} is not a regular file")
        mode = stat.S_IMODE(st.st_mode)
        if mode & 0o077:
            raise KeyFileExposed(
                f"{name} is readable by others (mode {mode:04o}); chmod 600 it"
                if mode & 0o044
                else f"{name} is accessible by group or others (mode {mode:04o}); chmod 600 it"
            )
        data = f.read(_MAX_FILE + 1)
    if len(data) > _MAX_FILE:
        raise PkiError(f"private key file {name} is too large")
    return data


def load_private_key(path: str | os.PathLike[str], passphrase: bytes | None = None) -> Any:
    """The private key (RSA, EC, Ed25519, ...) of a PEM or DER file, PKCS#8 or traditional
    (PKCS#1 / SEC 1), optionally encrypted with ``passphrase``.

    Raises KeyFileExposed when the file has any group/other permission bit, PkiError for an
    unreadable file, a wrong or missing passphrase, or content that is not a private key."""
    name = os.fspath(path)
    data = _read_private(path)
    if isinstance(passphrase, str):
        passphrase = passphrase.encode()
    pw = passphrase or None
    loader = (
        serialization.load_pem_private_key if _is_pem(data) else serialization.load_der_private_key
    )
    try:
        return loader(data, password=pw)
    except TypeError as e:
        # encrypted without a passphrase, or a passphrase for an unencrypted key
        if pw is None:
            raise PkiError(f"private key {name} is encrypted and no passphrase is configured")
        if "not encrypted" in str(e):
            return loader(data, password=None)
        raise PkiError(f"private key {name} cannot be loaded: {type(e).__name__}")
    except ValueError:
        reason = "wrong passphrase or not a private key" if pw else "not a private key (PEM or DER)"
        raise PkiError(f"private key {name} cannot be loaded: {reason}")
    except Exception as e:  # UnsupportedAlgorithm and the like
        raise PkiError(f"private key {name} cannot be loaded: {type(e).__name__}")


def spki_der(public_key: Any) -> bytes:
    """DER SubjectPublicKeyInfo of a public key (or of a private key's public key)."""
    if hasattr(public_key, "private_bytes") and hasattr(public_key, "public_key"):
        public_key = public_key.public_key()
    return public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
