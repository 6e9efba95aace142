"""The audit trail: append-only, a keyed hash chain of security events, written in batches.

* ``events``: what is recorded (event types, actors, the current request) and read back;
* ``writer``: ``AuditLog``, recording on the request path (O(1), no I/O) and writing in
  batches (``services.batch_writer``, shared with the usage log);
* ``chain``: the keyed hash chain, the audit key's introduction, retention.

Verification and checkpoints are ``services.audit_verification`` and
``services.audit_checkpoints``.
"""
