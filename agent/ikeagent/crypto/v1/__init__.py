"""IKEv1 crypto (RFC 2409 IKE, RFC 2407 IPsec DOI, RFC 3947 NAT-T): pure functions, no state.

Modules: ``keymat`` (SKEYID and its derivatives, IVs, HASH_I/HASH_R, Quick Mode hashes, KEYMAT,
NAT-D), ``cipher`` (CBC encryption of ISAKMP message bodies with RFC 2409 padding),
``attributes`` (IKE and IPsec DOI SA attributes and their mapping to the suite table; it
re-exports the IANA enums of ``iana``).
Hash algorithms are named by their IKEv1 HASH_ALGORITHM values (RFC 2409 appendix A).
"""
