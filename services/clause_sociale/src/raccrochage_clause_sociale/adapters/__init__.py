"""PostgreSQL tables and repositories, the bilan PDF."""
