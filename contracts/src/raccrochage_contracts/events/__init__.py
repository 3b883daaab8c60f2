"""Every contract module; importing this package fills the registry."""

from . import partner_v1, reperage_v1  # noqa: F401
