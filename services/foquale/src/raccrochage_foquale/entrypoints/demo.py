"""`make run`, after PSAD's demo: seats published for the five départements by a synthetic
partner (over NATS, with its own user) and by a school (through the API with its key), then a
few of each territory's PSAD cases worked up to a seat request and reserved. Each reservation is
answered by whoever owns its seat: the school through the API (confirmed), the partner through
its feed (it asks which reservations wait for it, confirms them and refuses every third with a
coded reason), so that a newcomer sees placements confirmed and refused, from both, and the
cases move to "in solution"."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import Counter
from datetime import UTC, date, datetime, timedelta

import httpx
from rich.console import Console

from ..adapters.partners import inbox_prefix

console = Console(stderr=True)

PARTNER = "en-rectorat"  # deploy/partners.toml: the rectorat's system, one lycée per département
RECTORAT_SEATS = {"24": "0240012H", "33": "0332012H", "40": "0400012W", "47": "0470012H", "64": "0640012R"}
SCHOOL_UAI = "0332745E"  # a Gironde lycée without a system: it uses the API
CASES_PER_TERRITORY = 2
REFUSE_EVERY = 3  # the partner refuses every third reservation it answers
PARTNER_REFUSAL = "youth_declined"  # a code of the fixed list (partner_seats_v1.PartnerRefusalCode)
ANSWERS_TIMEOUT = 60.0


def seat_record(key: str, uai: str, departement: str, capacity: int, label: str) -> dict:
    return {
        "partner_key": key,
        "uai": uai,
        "formation": {"code_kind": "cfd", "code": "50031213", "label": label, "level": "niveau_3"},
        "statut": "scolaire",
        "departement": departement,
        "zap": None,
        "capacity": capacity,
        "opens_on": date.today().isoformat(),
        "closes_on": (date.today() + timedelta(days=240)).isoformat(),
        "contact_role": "directeur_delegue_formations",
        "keywords": ["commerce"],
    }


async def partner_connection(nats_url: str, password: str):
    """The rectorat's system: its own NATS user, its own inbox for the replies."""
    import nats
    from raccrochage_platform.settings import nats_servers

    return await nats.connect(
        nats_servers(nats_url),
        user=f"partner_{PARTNER}",
        password=password,
        inbox_prefix=inbox_prefix(PARTNER),
    )


async def publish_partner_record(nc, record, key: str) -> None:
    """One record on the partner's own subject, into the PARTNER stream."""
    from raccrochage_contracts import nats_subject, new_event

    event = new_event(record, source=f"partner/{PARTNER}", subject=key)
    await nc.jetstream().publish(
        nats_subject(event.type, PARTNER), event.to_json(), headers={"Nats-Msg-Id": str(event.id)}
    )


async def publish_partner_seats(nc) -> int:
    """The rectorat's records, on its own subjects with its own user."""
    from raccrochage_contracts.events.partner_seats_v1 import SeatsPublished

    for departement, uai in RECTORAT_SEATS.items():
        record = SeatsPublished(
            **seat_record(f"demo-{departement}-cap-commerce", uai, departement, 12, "CAP commerce")
        )
        await publish_partner_record(nc, record, record.partner_key)
    return len(RECTORAT_SEATS)


def _done(answered: Counter, wanted: int, deadline: float) -> bool:
    return answered.total() >= wanted or time.monotonic() > deadline


async def partner_answers(nc, answered: Counter, wanted: int, deadline: float) -> None:
    """The rectorat's system answers the reservations at its lycées through its feed: it asks
    which wait for it (`partner.<id>.reservations.pending.v1`), confirms them and refuses every
    third with a coded reason."""
    from raccrochage_contracts.events.partner_seats_v1 import PlacementConfirmed, PlacementRefused

    sent: set[str] = set()
    while not _done(answered, wanted, deadline):
        reply = await nc.request(f"partner.{PARTNER}.reservations.pending.v1", b'{"limit": 100}', timeout=5)
        for waiting in json.loads(reply.data)["pending"]["data"]["reservations"]:
            reservation_id = waiting["reservation_id"]
            if reservation_id in sent:  # answered, not yet applied
                continue
            sent.add(reservation_id)
            if len(sent) % REFUSE_EVERY == 0:
                record = PlacementRefused(reservation_id=reservation_id, reason=PARTNER_REFUSAL)
                answered["partner_refused"] += 1
            else:
                record = PlacementConfirmed(reservation_id=reservation_id)
                answered["partner_confirmed"] += 1
            await publish_partner_record(nc, record, reservation_id)
        await asyncio.sleep(0.5)


async def request_seats(psad: httpx.AsyncClient, token_for, per_territory: int) -> list[str]:
    """A counsellor of each territory reaches a youth, holds the interview and asks FOQUALE for a
    seat: the first cases of the priority work list."""
    requested = []
    for departement in RECTORAT_SEATS:
        headers = token_for(departement)
        page = (
            await psad.get(
                "/cases", params={"work_list": "priority", "limit": per_territory}, headers=headers
            )
        ).json()
        for case in page.get("cases", []):
            case_id = case["case_id"]
            when = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
            steps = [
                ("attempts", {"channel": "phone", "outcome": "reached"}),
                ("interviews", {"scheduled_for": when, "with_role": "psy_en"}),
                ("interviews/outcome", {"outcome": "seen"}),
                ("solutions", {"kind": "foquale_seat", "wishes": ["commerce"]}),
            ]
            for path, body in steps:
                answer = await psad.post(f"/cases/{case_id}/{path}", json=body, headers=headers)
                if answer.status_code >= 400:
                    break
            else:
                requested.append(case_id)
    return requested


async def confirm_reservations(
    foquale: httpx.AsyncClient, api_key: str, answered: Counter, wanted: int, deadline: float
) -> None:
    """The school's answers: every reservation waiting at the key's UAI, confirmed."""
    headers = {"X-Api-Key": api_key}
    while not _done(answered, wanted, deadline):
        for pending in (await foquale.get("/foquale/reservations", headers=headers)).json():
            answer = await foquale.post(
                f"/foquale/reservations/{pending['reservation_id']}/confirm", json={}, headers=headers
            )
            answered["school_confirmed"] += answer.status_code == 200
        await asyncio.sleep(0.5)


@contextlib.asynccontextmanager
async def _closing(nc):
    try:
        yield nc
    finally:
        await nc.close()


async def demo_main_job() -> None:
    from raccrochage_platform.auth import mint
    from raccrochage_platform.topology import load_topology
    from raccrochage_rig.nats import CREDENTIALS
    from raccrochage_rig.state import RigState, load_secrets, rig_dir

    folder = rig_dir()
    state = RigState.load(folder)
    key = load_secrets(folder, load_topology())["token_key"]
    passwords = json.loads((folder / "nats" / CREDENTIALS).read_text(encoding="utf-8"))
    ops = {"Authorization": f"Bearer {mint(key, role='ops', sub='make-run')}"}

    def counsellor(departement: str) -> dict[str, str]:
        token = mint(key, role="counsellor", territory=departement, sub=f"demo-{departement}")
        return {"Authorization": f"Bearer {token}"}

    foquale_http = state.services["foquale"].http
    answered: Counter = Counter()
    nc = await partner_connection(state.nats_url, passwords[PARTNER])
    async with (
        _closing(nc),
        httpx.AsyncClient(base_url=foquale_http, timeout=10) as foquale,
        httpx.AsyncClient(base_url=state.services["psad"].http, timeout=10) as psad,
    ):
        created = await foquale.post(
            "/foquale/api-keys",
            json={"uais": [SCHOOL_UAI], "label": "demo school"},
            headers=ops,
        )
        created.raise_for_status()
        api_key = created.json()["api_key"]
        school = seat_record("demo-bac-pro-accueil", SCHOOL_UAI, "33", 8, "Bac pro accueil")
        (
            await foquale.post("/foquale/offers", json=school, headers={"X-Api-Key": api_key})
        ).raise_for_status()
        published = await publish_partner_seats(nc)
        await asyncio.sleep(2)  # the partner's records are applied by the consumer meanwhile
        requested = await request_seats(psad, counsellor, CASES_PER_TERRITORY)
        deadline = time.monotonic() + ANSWERS_TIMEOUT
        await asyncio.gather(
            confirm_reservations(foquale, api_key, answered, len(requested), deadline),
            partner_answers(nc, answered, len(requested), deadline),
        )
    confirmed = answered["school_confirmed"] + answered["partner_confirmed"]
    console.print(
        f"[cyan]foquale[/] {published} offers from partner {PARTNER} (NATS) and 1 from a school (API); "
        f"{len(requested)} PSAD cases asked for a seat, {confirmed} placements confirmed "
        f"({answered['partner_confirmed']} by the partner through its feed, "
        f"{answered['school_confirmed']} by the school through the API), "
        f"{answered['partner_refused']} refused by the partner ({PARTNER_REFUSAL})"
    )
    console.print(
        f"[cyan]foquale[/] a school's pending reservations (API docs at {foquale_http}/docs):\n"
        f"  curl -s -H 'X-Api-Key: {api_key}' {foquale_http}/foquale/reservations"
    )
