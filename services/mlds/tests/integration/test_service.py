"""The MLDS service as its own process on real NATS and PostgreSQL: the catalogue stored at
start-up, a PSAD request decided from the PSAD stream and answered on the MLDS stream."""

from __future__ import annotations

from nats.aio.client import Client

from .helpers import eventually, fetch, publish, solution_requested, stream_events


async def test_the_catalogue_is_stored_and_announced_at_start_up(
    nc: Client, mlds_db: str, mlds_service
) -> None:
    rows = await fetch(mlds_db, "SELECT kind, count(*) FROM dispositif GROUP BY kind")
    assert dict(rows) == {"paps": 47, "dipa": 1, "micro_lycee": 3}

    async def announced() -> list[dict]:
        events = await stream_events(nc, "mlds.dispositif.updated.v1")
        return events if len(events) == 51 else []

    events = await eventually(announced, what="51 dispositif.updated events")
    assert {e["data"]["change"] for e in events} == {"catalogued"}


async def test_an_ineligible_request_is_refused_on_the_mlds_stream_with_its_failing_rules(
    nc: Client, mlds_db: str, mlds_service
) -> None:
    too_old = solution_requested("mlds_paps", age=22)
    request = await publish(nc, too_old)

    async def refused() -> list[dict]:
        events = await stream_events(nc, "mlds.enrolment.refused.v1")
        return [e for e in events if e["data"]["request_id"] == str(too_old.request_id)]

    [answer] = await eventually(refused, what="the refusal")
    assert answer["data"]["reason"] == "not_eligible"
    assert answer["data"]["failed_rules"] == ["paps.age_16_to_18"]
    assert answer["data"]["case_id"] == str(too_old.case_id)
    assert answer["causationid"] == str(request.id) and answer["correlationid"] == str(request.correlationid)
    [row] = await fetch(
        mlds_db, "SELECT status, answered, youth_id FROM candidacy WHERE request_id = $1", too_old.request_id
    )
    assert (row["status"], row["answered"], row["youth_id"]) == ("refused", True, too_old.youth_id)


async def test_an_eligible_request_becomes_an_admissible_candidacy_and_foquale_requests_are_skipped(
    nc: Client, mlds_db: str, mlds_service
) -> None:
    eligible = solution_requested("mlds_paps", age=17, wishes=["mlds:paps-33-02"])
    seat = solution_requested("foquale_seat", provider="foquale")
    await publish(nc, seat)
    await publish(nc, eligible)

    async def decided() -> list[dict]:
        events = await stream_events(nc, "mlds.candidacy.decided.v1")
        return [e for e in events if e["data"]["youth_id"] == eligible.youth_id]

    [decision] = await eventually(decided, what="the decision")
    assert decision["data"]["outcome"] == "eligible"
    assert {r["outcome"] for r in decision["data"]["rules"]} == {"pass"}
    rows = await fetch(mlds_db, "SELECT request_id, status, dispositif_id FROM candidacy")
    assert [(r["request_id"], r["status"], r["dispositif_id"]) for r in rows] == [
        (eligible.request_id, "admissible", "paps-33-02")
    ]
    # Admissible is not an answer yet: the PSAD waits for the admission.
    answers = await stream_events(nc, "mlds.enrolment.*")
    assert [a for a in answers if a["data"].get("request_id") == str(eligible.request_id)] == []
