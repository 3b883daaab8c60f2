"""FOQUALE's tables and repositories on PostgreSQL (SQLAlchemy Core)."""
