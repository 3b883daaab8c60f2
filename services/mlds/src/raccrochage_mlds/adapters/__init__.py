"""PostgreSQL tables and repositories (SQLAlchemy Core on an AsyncConnection)."""
