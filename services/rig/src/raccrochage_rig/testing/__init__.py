"""Test support: real NATS and PostgreSQL servers for every test suite of the repository."""
