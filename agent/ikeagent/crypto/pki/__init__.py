"""PKI primitives for certificate authentication: loading files, names and identities,
chain validation, IKE signatures and CERTREQ key IDs. Pure functions except ``files``."""

from ikeagent.crypto.pki.certreq import ca_keyid, certreq_data, requested
from ikeagent.crypto.pki.errors import (
    CertificateInvalid,
    KeyFileExposed,
    PkiError,
    SignatureInvalid,
)
from ikeagent.crypto.pki.files import load_certificates, load_crl, load_private_key, spki_der
from ikeagent.crypto.pki.names import cert_matches_identity, describe, dn_text, subject_identity
from ikeagent.crypto.pki.signatures import (
    HASH_IDENTITY,
    HASH_SHA1,
    HASH_SHA256,
    HASH_SHA384,
    HASH_SHA512,
    SUPPORTED_HASHES,
    sign_v1,
    sign_v2,
    v1_auth_method,
    verify_v1,
    verify_v2,
)
from ikeagent.crypto.pki.validate import TrustPolicy, validate_chain

__all__ = [
    "HASH_IDENTITY",
    "HASH_SHA1",
    "HASH_SHA256",
    "HASH_SHA384",
    "HASH_SHA512",
    "SUPPORTED_HASHES",
    "CertificateInvalid",
    "KeyFileExposed",
    "PkiError",
    "SignatureInvalid",
    "TrustPolicy",
    "ca_keyid",
    "cert_matches_identity",
    "certreq_data",
    "describe",
    "dn_text",
    "load_certificates",
    "load_crl",
    "load_private_key",
    "requested",
    "sign_v1",
    "sign_v2",
    "spki_der",
    "subject_identity",
    "v1_auth_method",
    "validate_chain",
    "verify_v1",
    "verify_v2",
]
