"""Repérage's database tables, repositories and clients."""
