"""Alembic environment of repérage."""

from raccrochage_platform.migrations import run_env
from raccrochage_reperage.adapters.tables import ALL_METADATA

run_env(ALL_METADATA)
