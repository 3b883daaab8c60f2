"""Other services' events as their producers publish them, for the tests of their consumers."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from raccrochage_contracts import CloudEvent, new_event
from raccrochage_contracts.events.clause_v1 import MissionCompleted


def mission_completed(
    youth_id: str, outcome: str = "apprenticeship", *, completed_at: datetime | None = None
) -> tuple[CloudEvent, MissionCompleted]:
    """A clause sociale mission of the Gironde ended with `outcome`: the envelope clause_sociale
    publishes, and its payload."""
    payload = MissionCompleted(
        mission_id=uuid.uuid4(),
        clause_id=uuid.uuid4(),
        company_id="docks-logistique",
        youth_id=youth_id,
        tutor_id="tuteur-33",
        departement="33",
        outcome=outcome,
        hours_done=150,
        completed_at=completed_at or datetime.now(UTC),
    )
    return new_event(payload, source="raccrochage/clause_sociale", subject=str(payload.mission_id)), payload
