"""Storage: SQLAlchemy models, repositories, migrations, key files.

Modules: ``db`` (engine, sessions), ``models``, ``repositories``, ``paging``,
``migrate`` (Alembic from inside authgate), ``keystore`` (signing-key files),
``throttle_store`` and ``redis_throttle_store`` (brute-force counters and blocks).
"""
