"""Every contract module; importing this package fills the registry."""

from . import (  # noqa: F401
    clause_v1,
    foquale_v1,
    mlds_v1,
    partner_seats_v1,
    partner_v1,
    privacy_v1,
    psad_v1,
    reperage_v1,
)
