"""Repérage's retention (adapters/retention.py) on real PostgreSQL with a frozen clock: an
identity leaves the vault the day after its period (handover closed + 2 years, or the 25th
birthday + 2 years), not the day before; an open handover keeps it; rejected SIEI lines go 90
days after their campaign started; the identity audit keeps its rows, linked to no youth."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from raccrochage_platform.retention import RetentionSettings, apply_retention
from raccrochage_reperage.adapters import audit
from raccrochage_reperage.adapters.retention import rules
from raccrochage_reperage.service_layer.unit_of_work import IdentityRead

from .test_live_enrolments import hand_over

pytestmark = pytest.mark.asyncio(loop_scope="session")

CLOSED = datetime(2019, 1, 10, 12, tzinfo=UTC)  # + 730 days: 2021-01-09
DAY_BEFORE, DAY_AFTER = datetime(2021, 1, 8, 12, tzinfo=UTC), datetime(2021, 1, 10, 13, tzinfo=UTC)
TURNS_27 = date(1994, 1, 9)  # on 2021-01-09
CAMPAIGN_STARTED = datetime(2020, 10, 11, tzinfo=UTC)  # + 90 days: 2021-01-09


async def test_identities_and_rejections_leave_the_vault_after_their_period(conn, engine) -> None:
    settings = RetentionSettings()
    closed = await hand_over(conn, "2019000001R", nom="Ferme")
    open_ = await hand_over(conn, "2019000002R", nom="Ouvert")
    too_old = await hand_over(conn, "2019000003R", nom="Age")
    await conn.execute(
        "UPDATE youth SET updated_at = $1 WHERE youth_id = ANY($2)", CLOSED, [closed, open_, too_old]
    )
    await conn.execute("UPDATE youth SET date_naissance = $1 WHERE youth_id = $2", TURNS_27, too_old)
    await conn.execute(
        "UPDATE handover SET open = false, closed_at = $1, close_reason = 'refuses_support' WHERE youth_id = $2",
        CLOSED,
        closed,
    )
    async with engine.begin() as connection:
        seq = await audit.append(
            connection,
            IdentityRead(caller="psad", youth_id=closed, what="contact_card", purpose="case", granted=True),
        )
    await conn.execute(
        "INSERT INTO campaign (campaign_id, as_of, file_sha256, status, started_at) "
        "VALUES ('2020-10-retention', '2020-10-01', 'x', 'done', $1)",
        CAMPAIGN_STARTED,
    )
    await conn.execute(
        "INSERT INTO rejection (campaign_id, line, field, reason) VALUES "
        "('2020-10-retention', 2, 'ine', 'invalid'), ('2020-10-retention', 3, 'date_naissance', 'missing')"
    )

    async def held() -> tuple:
        youths = await conn.fetch(
            "SELECT youth_id FROM youth WHERE youth_id = ANY($1)", [closed, open_, too_old]
        )
        handovers = await conn.fetchval(
            "SELECT count(*) FROM handover WHERE youth_id = ANY($1)", [closed, too_old]
        )
        audited = await conn.fetch(
            "SELECT a.seq, l.youth_id FROM identity_audit a "
            "LEFT JOIN identity_audit_youth l USING (seq) WHERE a.seq = $1",
            seq,
        )
        rejected = await conn.fetchval(
            "SELECT count(*) FROM rejection WHERE campaign_id = '2020-10-retention'"
        )
        return {r["youth_id"] for r in youths}, handovers, [r["youth_id"] for r in audited], rejected

    before = await held()
    assert before == ({closed, open_, too_old}, 2, [closed], 2)
    counts = await apply_retention(engine, "reperage", rules(settings), DAY_BEFORE)
    assert counts == {"identity": 0, "rejection": 0} and await held() == before

    counts = await apply_retention(engine, "reperage", rules(settings), DAY_AFTER)
    assert counts == {"identity": 2, "rejection": 2}
    assert await held() == ({open_}, 0, [None], 0)
