"""Alembic migrations of the library's tables (run by ``broker-oauth db upgrade``)."""
