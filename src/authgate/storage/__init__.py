"""Storage: SQLAlchemy models, repositories, migrations, key files.

Modules: ``db`` (engine, sessions, and the repository classes services reach through
it), ``models``, ``repositories`` and ``*_repository``, ``errors`` (what storage raises:
``Conflict``), ``paging``, ``text``, ``row_locks`` (write locks on both databases),
``migrate`` (Alembic from inside authgate), ``keystore`` (signing-key files),
``throttle_store`` and ``redis_throttle_store`` (brute-force counters and blocks).
Services see all this through the protocols of ``authgate.services.ports``.
"""
