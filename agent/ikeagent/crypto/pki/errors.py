"""Errors of the PKI primitives. Messages are human reasons naming the file or certificate;
they never carry key material or passphrases."""

from __future__ import annotations


class PkiError(Exception):
    """A certificate, CRL, key or signature problem; ``str(e)`` is the reason."""

    @property
    def reason(self) -> str:
        return str(self)


class CertificateInvalid(PkiError):
    """A certificate chain, date, revocation or identity problem."""


class SignatureInvalid(PkiError):
    """A signature that cannot be made or does not verify."""


class KeyFileExposed(PkiError):
    """A private key file readable or writable by group or others (not loaded)."""
