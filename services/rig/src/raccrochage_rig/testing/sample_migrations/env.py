"""Alembic environment of the sample service."""

from raccrochage_platform.migrations import run_env
from raccrochage_rig.testing.sample_service import metadata

run_env(metadata)
