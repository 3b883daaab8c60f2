"""The MLDS's retention (raccrochage_platform.retention): an ended candidacy (refused, withdrawn,
or an enrolment exited) is anonymised once its period is over, as an erasure does
(adapters/privacy.py): it stays for the sites' places and the lists, its youth_id `erased`
also in its history. The yearly survey reads the stream's enrolment events, not this table: an
anonymised enrolment still counts there."""

from __future__ import annotations

from datetime import datetime

from raccrochage_platform.privacy import ERASED, scrubbed
from raccrochage_platform.retention import RetentionRule, RetentionSettings, before
from sqlalchemy import and_, update

from ..domain.states import CandidacyStatus
from .tables import candidacy

ENDED = (CandidacyStatus.EXITED, CandidacyStatus.REFUSED, CandidacyStatus.WITHDRAWN)


def rules(settings: RetentionSettings) -> list[RetentionRule]:
    def due(now: datetime):
        return and_(
            candidacy.c.status.in_([status.value for status in ENDED]),
            candidacy.c.updated_at < before(now, settings.mlds_candidacy_days),
            candidacy.c.youth_id != ERASED,
        )

    async def anonymise(connection, candidacy_ids) -> None:
        # Both values from the row as it was: the history loses the row's own youth_id.
        await connection.execute(
            update(candidacy)
            .where(candidacy.c.candidacy_id.in_(candidacy_ids))
            .values(youth_id=ERASED, history=scrubbed(candidacy.c.history, candidacy.c.youth_id))
        )

    return [RetentionRule("candidacy", "anonymised", candidacy, ("candidacy_id",), due, anonymise)]
