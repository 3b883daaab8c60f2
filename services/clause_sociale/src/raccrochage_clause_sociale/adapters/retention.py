"""The clause sociale's retention (raccrochage_platform.retention): an MLDS enrolment it was told
of is deleted once its period is over; a completed mission is anonymised as an erasure does
(adapters/privacy.py): its signed bilan's PDF goes, the youth_ids and the convention's party
references of its proposals and convention become `erased`, the birth date keeps its year only.
The mission stays for the clause's hours and its counts."""

from __future__ import annotations

from datetime import datetime

from raccrochage_platform.privacy import ERASED
from raccrochage_platform.retention import RetentionRule, RetentionSettings, before
from sqlalchemy import Text, and_, bindparam, cast, delete, func, text, update
from sqlalchemy.dialects.postgresql import ARRAY, JSONB

from ..domain.states import MissionStatus
from .tables import bilan_document, enrolment, mission

# A youth_id (64 hex digits) or a convention's party reference (`youth/` and 16 of them), as the
# JSON text of a history spells them.
_NAMING = r'"youth_id": "[0-9a-f]{64}"|youth/[0-9a-f]{16}'

_BIRTH_YEAR_ONLY = text(
    """
    UPDATE mission SET history = jsonb_set(history, '{convention,youth_birth_date}', to_jsonb(
        to_char(date_trunc('year', CAST(history #>> '{convention,youth_birth_date}' AS date)), 'YYYY-MM-DD')))
    WHERE mission_id = ANY(CAST(:mission_ids AS uuid[])) AND history #>> '{convention,youth_birth_date}' IS NOT NULL
    """
).bindparams(bindparam("mission_ids", type_=ARRAY(Text)))


def _without_youths(history):
    as_text = cast(history, Text)
    named = func.regexp_replace(as_text, r'"youth_id": "[0-9a-f]{64}"', f'"youth_id": "{ERASED}"', "g")
    return cast(func.regexp_replace(named, r"youth/[0-9a-f]{16}", ERASED, "g"), JSONB)


def rules(settings: RetentionSettings) -> list[RetentionRule]:
    def enrolment_due(now: datetime):
        return enrolment.c.enrolled_at < before(now, settings.clause_enrolment_days)

    async def delete_enrolments(connection, youth_ids) -> None:
        await connection.execute(delete(enrolment).where(enrolment.c.youth_id.in_(youth_ids)))

    def mission_due(now: datetime):
        return and_(
            mission.c.status == MissionStatus.REALISEE.value,
            mission.c.status_since < before(now, settings.clause_mission_days),
            cast(mission.c.history, Text).regexp_match(_NAMING),
        )

    async def anonymise_missions(connection, mission_ids) -> None:
        await connection.execute(delete(bilan_document).where(bilan_document.c.mission_id.in_(mission_ids)))
        await connection.execute(_BIRTH_YEAR_ONLY, {"mission_ids": list(mission_ids)})
        await connection.execute(
            update(mission)
            .where(mission.c.mission_id.in_(mission_ids))
            .values(history=_without_youths(mission.c.history))
        )

    return [
        RetentionRule("enrolment", "deleted", enrolment, ("youth_id",), enrolment_due, delete_enrolments),
        RetentionRule("mission", "anonymised", mission, ("mission_id",), mission_due, anonymise_missions),
    ]
