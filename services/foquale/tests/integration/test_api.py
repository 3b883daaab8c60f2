"""The establishment API and its keys, on the running service."""

from __future__ import annotations

from collections.abc import Callable

import httpx
from nats.aio.client import Client
from raccrochage_platform.auth import mint
from raccrochage_rig.testing.processes import ServiceProcess
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from .conftest import TOKEN_KEY
from .helpers import eventually, publish, seat_record, seat_requested, stream_events

UAI = "0640012R"  # Pyrénées-Atlantiques: no other test publishes there


def bearer(role: str = "ops", territory: str | None = None) -> dict[str, str]:
    return {"Authorization": f"Bearer {mint(TOKEN_KEY, role=role, territory=territory, sub=f'{role}-1')}"}


async def test_a_school_publishes_and_confirms_a_placement_with_its_key(
    start_foquale: Callable[..., ServiceProcess], nc: Client, engine: AsyncEngine
) -> None:
    service = start_foquale()
    async with httpx.AsyncClient(base_url=service.url, timeout=10) as http:
        # Keys are handed out by ops only.
        assert (await http.post("/foquale/api-keys", json={"uais": [UAI], "label": "x"})).status_code == 401
        counsellor = bearer("counsellor", "64")
        assert (
            await http.post("/foquale/api-keys", json={"uais": [UAI], "label": "x"}, headers=counsellor)
        ).status_code == 403
        wrong = await http.post(
            "/foquale/api-keys", json={"uais": ["0640012A"], "label": "x"}, headers=bearer()
        )
        assert wrong.status_code == 422 and "uais[0]" in wrong.json()["detail"]
        created = await http.post(
            "/foquale/api-keys", json={"uais": [UAI], "label": "Lycée de Pau"}, headers=bearer()
        )
        assert created.status_code == 201
        key = created.json()
        school = {"X-Api-Key": key["api_key"]}

        offer = seat_record("pau-cap-1", uai=UAI, departement="64", capacity=1, zap=None)
        assert (await http.post("/foquale/offers", json=offer)).status_code == 401
        published = await http.post("/foquale/offers", json=offer, headers=school)
        assert published.status_code == 200 and published.json()["outcome"] == "accepted"
        again = await http.post("/foquale/offers", json=offer, headers=school)
        assert again.json() == {**published.json(), "outcome": "unchanged"}
        other_school = await http.post(
            "/foquale/offers", json={**offer, "uai": "0331012W", "departement": "33"}, headers=school
        )
        assert other_school.status_code == 403
        bad_letter = await http.post("/foquale/offers", json={**offer, "uai": "0640012A"}, headers=school)
        assert bad_letter.status_code == 422 and "uai" in bad_letter.json()["detail"]
        # a body that fails its model: FastAPI's list of fields, which the document allows
        unreadable = await http.post("/foquale/offers", json={**offer, "capacity": "many"}, headers=school)
        assert unreadable.status_code == 422 and unreadable.json()["detail"][0]["loc"][-1] == "capacity"

        request = seat_requested("api-1", departement="64")
        await publish(nc, request, subject=str(request.case_id))

        async def made() -> list[dict]:
            return [
                e
                for e in await stream_events(nc, "FOQUALE", "foquale.reservation.made.v1")
                if e["data"]["request_id"] == str(request.request_id)
            ]

        [reservation] = await eventually(made, what="reservation.made")
        reservation_id = reservation["data"]["reservation_id"]
        refused = await http.post(
            f"/foquale/reservations/{reservation_id}/refuse", json={"reason": "other"}, headers=school
        )
        assert refused.status_code == 422  # `other` needs a comment
        confirmed = await http.post(
            f"/foquale/reservations/{reservation_id}/confirm",
            json={"starts_on": "2027-01-04"},
            headers=school,
        )
        assert confirmed.status_code == 200 and confirmed.json()["state"] == "confirmed"
        twice = await http.post(f"/foquale/reservations/{reservation_id}/confirm", json={}, headers=school)
        assert twice.status_code == 409

        async def placement() -> list[dict]:
            return [
                e
                for e in await stream_events(nc, "FOQUALE", "foquale.placement.confirmed.v1")
                if e["data"]["request_id"] == str(request.request_id)
            ]

        await eventually(placement, what="placement.confirmed")

        # Revoked: the key stops working at once; its last use is recorded.
        revoked = await http.delete(f"/foquale/api-keys/{key['key_id']}", headers=bearer())
        assert revoked.status_code == 200 and revoked.json()["last_used_at"] is not None
        assert (await http.post("/foquale/offers", json=offer, headers=school)).status_code == 401
        assert (await http.delete("/foquale/api-keys/nope", headers=bearer())).status_code == 404

        spec = (await http.get("/openapi.json")).json()
        schemes = spec["components"]["securitySchemes"]
        assert {s["type"] for s in schemes.values()} == {"apiKey", "http"}
        assert {"401", "403", "404", "409", "422"} <= set(
            spec["paths"]["/foquale/reservations/{reservation_id}/confirm"]["post"]["responses"]
        )
        refusal = spec["paths"]["/foquale/offers"]["post"]["responses"]["422"]["content"]["application/json"]
        assert refusal["schema"] == {"$ref": "#/components/schemas/ErrorBody"}
    async with engine.connect() as conn:
        stored = (
            await conn.execute(
                text("SELECT secret_sha256 FROM api_key WHERE key_id = :k"), {"k": key["key_id"]}
            )
        ).scalar_one()
    assert key["api_key"].split(".", 1)[1] not in stored  # only the hash is kept
