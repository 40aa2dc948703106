"""Pure crypto functions of the agent (no I/O, no clock; randomness only through arguments).

Modules: ``suites`` (the algorithm/keyword table, stdlib only), ``prf`` (prf, prf+), ``dh``
(KeyExchange), ``keymat`` (SKEYSEED, IKE and Child SA keys), ``sk`` (SK payload protection),
``auth`` (AUTH octets and PSK MACs), ``nat`` (NAT detection hashes), ``esp`` (ESP packets).
Nothing is imported here, so ``ikeagent.crypto.suites`` stays usable without ``cryptography``.
"""
