"""Alembic environment of clause_sociale."""

from raccrochage_clause_sociale.adapters.tables import ALL_METADATA
from raccrochage_platform.migrations import run_env

run_env(ALL_METADATA)
