"""Security primitives: pure, synchronous, no I/O and no framework types.

Other layers import from the modules directly:
``passwords`` (Argon2id, policy), ``tokens`` (JWT issue/verify), ``signing_keys``
(key ring, JWKS), ``credentials`` (header parsing), ``principal`` (the caller).
"""
