"""Cases opened from repérage's events, against real NATS and PostgreSQL and PSAD as a process."""

from __future__ import annotations

import asyncio

from nats.aio.client import Client

from .helpers import eventually, fetch, found, identified, publish, stream_events, youth_id


async def _open_cases(db: str) -> list:
    return await fetch(
        db, "SELECT youth_id, psad_id, departement, status FROM case_file WHERE status <> 'closed'"
    )


async def test_identified_opens_one_case_and_publishes_case_opened(
    nc: Client, psad_db: str, psad_service
) -> None:
    await publish(nc, identified(1))
    rows = await eventually(lambda: _open_cases(psad_db), what="a case")
    assert [(r["youth_id"], r["departement"], r["status"]) for r in rows] == [
        (youth_id(1), "33", "to_contact")
    ]
    opened = await eventually(
        lambda: stream_events(nc, "PSAD", "psad.case.opened.v1"), what="psad.case.opened.v1"
    )
    assert opened[0]["data"]["youth_id"] == youth_id(1)
    assert opened[0]["data"]["age"] == 17


async def test_a_redelivered_or_repeated_identified_opens_one_case(
    nc: Client, psad_db: str, psad_service
) -> None:
    first = await publish(nc, identified(2))
    # The same event again after JetStream's duplicate window would drop it: a new message id,
    # same envelope id (what a replay from the dead-letter stream does) ...
    js = nc.jetstream()
    await js.publish("reperage.youth.identified.v1", first.to_json(), headers={"Nats-Msg-Id": "replay-1"})
    # ... and another campaign handing the same youth over again (another event id).
    await publish(nc, identified(2))
    await eventually(lambda: _open_cases(psad_db), what="a case")
    await asyncio.sleep(1.5)  # let the two later messages be handled too
    rows = await fetch(psad_db, "SELECT count(*) AS n FROM case_file WHERE youth_id = $1", youth_id(2))
    assert rows[0]["n"] == 1
    inbox = await fetch(psad_db, "SELECT count(*) AS n FROM inbox WHERE consumer = 'psad_reperage'")
    assert inbox[0]["n"] == 2  # the replay was recognised by the inbox, the second campaign by the case


async def test_two_processes_open_one_case_per_youth(nc: Client, psad_db: str, start_psad) -> None:
    start_psad(tag="a")
    start_psad(tag="b")
    youths = range(100, 400)
    for n in youths:
        await publish(nc, identified(n, departement="40" if n % 2 else "33"))
    for n in youths:  # every youth handed over twice (two campaigns), at once
        await publish(nc, identified(n, departement="40" if n % 2 else "33"))

    async def all_opened() -> bool:
        return len(await _open_cases(psad_db)) >= len(youths)

    await eventually(all_opened, timeout=60, what="300 open cases")
    await asyncio.sleep(1.5)
    rows = await fetch(
        psad_db, "SELECT youth_id, count(*) AS n FROM case_file GROUP BY youth_id HAVING count(*) > 1"
    )
    assert rows == []
    per_territory = await fetch(
        psad_db, "SELECT departement, count(*) AS n FROM case_file GROUP BY 1 ORDER BY 1"
    )
    assert [(r["departement"], r["n"]) for r in per_territory] == [("33", 150), ("40", 150)]


async def test_found_closes_the_open_case_as_found_in_partner_base(
    nc: Client, psad_db: str, psad_service
) -> None:
    await publish(nc, identified(3))
    await eventually(lambda: _open_cases(psad_db), what="a case")
    await publish(nc, found(3))

    async def closed() -> list:
        return await fetch(psad_db, "SELECT close_reason, found_base FROM case_file WHERE status = 'closed'")

    rows = await eventually(closed, what="the case closed")
    assert [(r["close_reason"], r["found_base"]) for r in rows] == [("found_in_partner_base", "cfa")]
    events = await eventually(
        lambda: stream_events(nc, "PSAD", "psad.case.closed.v1"), what="psad.case.closed.v1"
    )
    assert events[0]["data"]["reason"] == "found_in_partner_base"
    # Found again (another partner): the case is closed already, nothing to do, nothing dead-lettered.
    await publish(nc, found(3))
    await asyncio.sleep(1)
    assert len(await stream_events(nc, "PSAD", "psad.case.closed.v1")) == 1
