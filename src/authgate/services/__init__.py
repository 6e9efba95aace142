"""Services: the rules of authgate, one use case per method, no HTTP and no framework types.

The REST API, the Settings UI and the CLI call the same methods, so a rule is enforced
once. By concern (``docs/architecture.md`` has the whole map):

* who is calling, on every request (the hot path): ``api_key_auth``, ``access_tokens``,
  ``user_states``; forward-auth's ``forward_auth`` (rules) and ``upstream_request``
  (which request is asked about);
* throttling: ``login_protection`` (passwords), ``address_block`` (bad API keys from one
  address), ``rate_limits`` (per key), all counting through ``throttle_store``
  (the protocol; the database and Redis stores are storage's);
* accounts and credentials: ``accounts`` (login, own password, log out everywhere),
  ``users`` (administration), ``api_keys`` (create, rotate, revoke), ``password_hashing``
  (Argon2 off the event loop), ``signing_keys`` (the key file, reloaded), ``text_rules``;
* the record: the ``audit`` package (events, the batch writer, the keyed hash chain),
  ``audit_checkpoints``, ``audit_verification``, ``audit_export``, ``usage`` (the key
  usage log), ``batch_writer`` (what both write through), ``metrics``;
* alerts and mail: the ``alerts`` package (kinds, rules, evaluation, queues per sink,
  the webhook, syslog, e-mail and log sinks), ``mail``;
* several workers and nodes: ``changes`` (cache invalidation), ``cluster``, ``redis_link``;
* small tools: ``expiring_cache``, ``single_flight``, ``sorting`` (the fields a page
  may be sorted by);
* ``ports``: what the services need from storage (the database, the repositories), as
  protocols; no service imports SQLAlchemy or a repository class.

``authgate.container`` (not part of this package) builds them all from the settings.
"""
