"""Alembic migrations of the engine's database, run in code by :func:`callcenter.db.migrate`."""
