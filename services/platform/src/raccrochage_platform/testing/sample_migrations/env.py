"""Alembic environment of the sample service."""

from raccrochage_platform.migrations import run_env
from raccrochage_platform.testing.sample_service import metadata

run_env(metadata)
