"""The API against the running service: one token of each role against the others' resources,
the buyer's clear refusals, and the OpenAPI document."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from raccrochage_clause_sociale.domain.clause import Buyer, BuyerType
from raccrochage_clause_sociale.service_layer import commands, handlers
from raccrochage_clause_sociale.service_layer.unit_of_work import SqlClauseUnitOfWork
from sqlalchemy.ext.asyncio import AsyncEngine

from .helpers import api, token

BUYER = token("buyer", "acheteuse-1", organisation="gironde-cd")
OTHER_BUYER = token("buyer", "acheteur-2", organisation="landes-cd")
COMPANY = token("company", "ref-204", organisation="batisud-33")
OTHER_COMPANY = token("company", "ref-9", organisation="nettoie-40")
TUTOR = token("mlds_tutor", "tuteur-33", territory="33")
OTHER_TUTOR = token("mlds_tutor", "tuteur-40", territory="40")
COUNSELLOR = token("counsellor", "conseillere-1", territory="33")


def clause_body(**changes) -> dict:
    today = datetime.now(UTC).date()
    body = {
        "organisation": "Conseil départemental de la Gironde",
        "buyer_type": "collectivite_territoriale",
        "contact_role": "acheteur",
        "departement": "33",
        "company_id": "batisud-33",
        "contract_object": "Entretien des collèges, lot 3",
        "notification_date": today.isoformat(),
        "firm_period_ends_on": (today + timedelta(days=800)).isoformat(),
        "firm_amount_eur": 250_000,
        "ends_on": (today + timedelta(days=1500)).isoformat(),
    }
    return {**body, **changes}


MISSION = {
    "activity_domain": "logistique",
    "tasks": ["Réception des livraisons", "Inventaire"],
    "site": {"address": "12 rue des Docks", "postcode": "33300", "city": "Bordeaux", "departement": "33"},
    "referent_id": "ref-204",
    "second_referent_id": "ref-311",
    "hours": 150,
}


async def test_each_role_sees_only_its_own_and_refusals_say_why(start_clause, engine: AsyncEngine) -> None:
    service = start_clause()
    today = datetime.now(UTC).date()
    async with api(service.url, BUYER) as buyer:
        short = await buyer.post(
            "/clauses", json=clause_body(firm_period_ends_on=(today + timedelta(days=300)).isoformat())
        )
        assert short.status_code == 422
        assert "more than one firm year" in short.json()["detail"]
        late = await buyer.post(
            "/clauses",
            json=clause_body(
                notification_date=(today - timedelta(days=900)).isoformat(),
                firm_period_ends_on=(today + timedelta(days=30)).isoformat(),
                ends_on=(today + timedelta(days=90)).isoformat(),
            ),
        )
        assert late.status_code == 422
        assert "less than 6 months before the contract ends" in late.json()["detail"]
        invalid = await buyer.post("/clauses", json=clause_body(firm_amount_eur=-1))
        assert invalid.status_code == 422
        assert invalid.json()["detail"][0]["loc"] == ["body", "firm_amount_eur"]
        created = await buyer.post("/clauses", json=clause_body())
        assert created.status_code == 201, created.text
        clause = created.json()
        assert (clause["hours_required"], clause["hours_planned"], clause["hours_done"]) == (450, 0, 0)
        assert clause["buyer"]["buyer_id"] == "gironde-cd"
        # A clause published two months ago, ending within six months with no hours planned, is
        # "bientôt échue" (the API cannot publish it today: it is too close to its end).
        then = datetime.now(UTC) - timedelta(days=60)
        soon = await handlers.publish_clause(
            commands.PublishClause(
                str(uuid.uuid4()),
                Buyer(
                    "gironde-cd",
                    "Conseil départemental",
                    BuyerType.COLLECTIVITE_TERRITORIALE,
                    "acheteur",
                    "33",
                ),
                "batisud-33",
                "Restauration scolaire",
                today - timedelta(days=600),
                today - timedelta(days=200),
                90_000,
                today + timedelta(days=150),
                then,
            ),
            SqlClauseUnitOfWork(engine, source="raccrochage/clause_sociale", stream="CLAUSE"),
        )
        due = (await buyer.get("/clauses", params={"bientot_echues": True})).json()["clauses"]
        assert [c["clause_id"] for c in due] == [soon.clause_id]
        assert due[0]["bientot_echue"] is True
    clause_id = clause["clause_id"]

    async with api(service.url, COMPANY) as company:
        refused = await company.post(f"/clauses/{clause_id}/missions", json={**MISSION, "hours": 451})
        assert refused.status_code == 422 and "1 to 450 hours" in refused.json()["detail"]
        declared = await company.post(f"/clauses/{clause_id}/missions", json=MISSION)
        assert declared.status_code == 201, declared.text
        mission_id = declared.json()["mission_id"]
        assert mission_id in [m["mission_id"] for m in (await company.get("/missions")).json()["missions"]]
        assert (await company.post("/clauses", json=clause_body())).status_code == 403

    async with api(service.url, TUTOR) as tutor:
        free = (await tutor.get("/missions")).json()["missions"]
        assert mission_id in [m["mission_id"] for m in free]
        assert {m["site"]["departement"] for m in free} == {"33"}
        assert (await tutor.get(f"/clauses/{clause_id}")).status_code == 200
        assert (await tutor.post(f"/clauses/{clause_id}/missions", json=MISSION)).status_code == 403

    for headers, method, path in (
        (OTHER_BUYER, "GET", f"/clauses/{clause_id}"),
        (OTHER_BUYER, "GET", f"/missions/{mission_id}"),
        (OTHER_COMPANY, "GET", f"/clauses/{clause_id}"),
        (OTHER_COMPANY, "POST", f"/clauses/{clause_id}/missions"),
        (OTHER_COMPANY, "GET", f"/missions/{mission_id}"),
        (OTHER_TUTOR, "GET", f"/missions/{mission_id}"),
        (OTHER_TUTOR, "POST", f"/missions/{mission_id}/reservation"),
        (BUYER, "POST", f"/missions/{mission_id}/reservation"),
        (COMPANY, "POST", f"/missions/{mission_id}/reservation"),
        (TUTOR, "POST", f"/missions/{mission_id}/proposals/{mission_id}/answer"),
        (COUNSELLOR, "GET", "/clauses"),
    ):
        async with api(service.url, headers) as client:
            body = MISSION if path.endswith("/missions") else {"accepted": True}
            answer = await client.request(method, path, json=body if method == "POST" else None)
            assert answer.status_code == 403, (headers, method, path, answer.text)
            assert answer.json()["detail"]
    async with api(service.url, OTHER_TUTOR) as other:
        assert mission_id not in [m["mission_id"] for m in (await other.get("/missions")).json()["missions"]]
    async with api(service.url, OTHER_BUYER) as other:
        assert (await other.get("/clauses")).json()["clauses"] == []
    async with api(service.url, {}) as anonymous:
        assert (await anonymous.get("/clauses")).status_code == 401
    async with api(service.url, {"Authorization": "Bearer forged.token.value"}) as forged:
        assert (await forged.get("/clauses")).status_code == 401
    async with api(service.url, BUYER) as buyer:
        assert (await buyer.get(f"/missions/{mission_id}/bilan.pdf")).status_code == 404
        assert (await buyer.get(f"/clauses/{mission_id}")).status_code == 404

    openapi = (await api(service.url, {}).get("/openapi.json")).json()
    assert openapi["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    publish = openapi["paths"]["/clauses"]["post"]
    assert publish["security"] == [{"HTTPBearer": []}]
    assert {"201", "401", "403", "409", "422"} <= set(publish["responses"])
    assert {"401", "403", "404", "409", "422", "502", "503"} <= set(
        openapi["paths"]["/missions/{mission_id}/convention"]["post"]["responses"]
    )
    assert (
        "application/pdf"
        in openapi["paths"]["/missions/{mission_id}/bilan.pdf"]["get"]["responses"]["200"]["content"]
    )
