"""Services: the rules of authgate, one use case per method, no HTTP and no framework types.

``accounts`` (login, own password, log out everywhere), ``users`` (administration),
``access_tokens`` (issue/verify/revoke JWTs), ``changes`` (cross-process invalidation),
``password_hashing`` (Argon2 off the event loop), ``container`` (wiring for app and CLI).
"""
