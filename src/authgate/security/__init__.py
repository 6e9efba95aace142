"""Security primitives: pure, synchronous, no I/O and no framework types.

Other layers import from the modules directly:

* credentials and callers: ``credentials`` (header parsing), ``keys`` (the API key
  format, keyed hashing), ``tokens`` (JWT issue/verify), ``jwt_claims`` (the claim
  checks tokens and the guard share), ``signing_keys`` (key ring, JWKS), ``principal``
  (the caller);
* passwords: ``passwords`` (Argon2id, policy), ``common_passwords`` (the deny list);
* requests: ``clientip`` (the real client behind trusted proxies), ``networks`` (addresses
  and allow lists), ``paths`` (forward-auth's canonical path), ``log_lines`` (one record,
  one line);
* the audit trail: ``audit_chain`` (its hashes), ``audit_checkpoints`` (signed checkpoints).

``keys``, ``credentials``, ``jwt_claims``, ``permissions`` and ``principal`` also ship
in the SDK (authgate-sdk), so they import nothing of the server.
"""
