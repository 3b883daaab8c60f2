"""Alembic environment of ops."""

from raccrochage_ops.adapters.tables import ALL_METADATA
from raccrochage_platform.migrations import run_env

run_env(ALL_METADATA)
