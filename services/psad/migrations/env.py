"""Alembic environment of PSAD."""

from raccrochage_platform.migrations import run_env
from raccrochage_psad.adapters.tables import ALL_METADATA

run_env(ALL_METADATA)
