"""Alembic environment of the MLDS."""

from raccrochage_mlds.adapters.tables import ALL_METADATA
from raccrochage_platform.migrations import run_env

run_env(ALL_METADATA)
