"""`make run`, after repérage's and PSAD's demos: two buyers' clauses, their companies' missions,
three youths in missions and one bilan croisé, all through clause_sociale's API; then how to use it.

The youths are three of the cases PSAD opened from repérage's demo campaign (so the vault knows
them). Until the MLDS service runs in the rig, the demo publishes their mlds.enrolment.accepted.v1
itself, as the MLDS would.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from rich.console import Console

console = Console(stderr=True)

BUYERS = (
    (
        "bordeaux-metropole",
        "Bordeaux Métropole",
        "33",
        "docks-logistique",
        "Logistique des entrepôts",
        250_000,
    ),
    (
        "cd-landes",
        "Conseil départemental des Landes",
        "40",
        "resto-landes",
        "Restauration des collèges",
        90_000,
    ),
)
MISSIONS = {
    "docks-logistique": [
        ("logistique", ["Réception des livraisons", "Préparation de commandes"], 150),
        ("logistique", ["Inventaire", "Rangement"], 150),
        ("accueil", ["Accueil des transporteurs"], 100),
    ],
    "resto-landes": [("restauration", ["Préparation des entrées", "Plonge"], 100)],
}
SITES = {
    "33": {"address": "5 quai de Brazza", "postcode": "33100", "city": "Bordeaux", "departement": "33"},
    "40": {
        "address": "2 rue Victor Hugo",
        "postcode": "40000",
        "city": "Mont-de-Marsan",
        "departement": "40",
    },
}
UAI = "0330012J"  # the MLDS structure signing the conventions (a valid UAI)


class DemoError(RuntimeError):
    pass


def _ok(answer: httpx.Response, what: str) -> dict[str, Any]:
    if answer.status_code >= 300:
        raise DemoError(f"{what}: {answer.status_code} {answer.text[:300]}")
    return answer.json()


async def demo_main_job() -> None:
    from nats.aio.client import Client
    from raccrochage_contracts import nats_subject, new_event
    from raccrochage_contracts.events.mlds_v1 import EnrolmentAccepted
    from raccrochage_platform.auth import mint
    from raccrochage_platform.settings import nats_servers
    from raccrochage_platform.topology import load_topology
    from raccrochage_rig.state import RigState, load_secrets, rig_dir

    folder = rig_dir()
    state = RigState.load(folder)
    http = state.services["clause_sociale"].http
    key = load_secrets(folder, load_topology())["token_key"]

    def bearer(role: str, sub: str, **binding: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {mint(key, role=role, sub=sub, **binding)}"}

    tokens = {
        "buyer-33": bearer("buyer", "acheteuse-bm", organisation="bordeaux-metropole"),
        "buyer-40": bearer("buyer", "acheteur-cd40", organisation="cd-landes"),
        "docks-logistique": bearer("company", "ref-204", organisation="docks-logistique"),
        "resto-landes": bearer("company", "ref-510", organisation="resto-landes"),
        "tutor-33": bearer("mlds_tutor", "tuteur-33", territory="33"),
        "tutor-40": bearer("mlds_tutor", "tuteur-40", territory="40"),
    }
    today = datetime.now(UTC).date()

    # Three youths of PSAD's cases in the Gironde: the vault knows them.
    psad = state.services.get("psad")
    youths: list[tuple[str, int]] = []
    if psad is not None and psad.http:
        async with httpx.AsyncClient(
            base_url=psad.http, headers=bearer("counsellor", "demo-clause", territory="33"), timeout=10
        ) as client:
            cases = (await client.get("/cases", params={"limit": 50})).json().get("cases", [])
        youths = [(c["youth_id"], c["age"]) for c in cases if 16 <= (c.get("age") or 0) <= 25][:3]
    if len(youths) < 3:
        console.print(
            "[yellow]clause_sociale[/] demo skipped: PSAD has no cases in the Gironde to take youths from"
        )
        return

    nc = Client()
    await nc.connect(nats_servers(state.nats_url))
    try:
        for youth_id, _ in youths:
            accepted = EnrolmentAccepted(
                request_id=uuid.uuid4(),
                case_id=uuid.uuid4(),
                youth_id=youth_id,
                decided_at=datetime.now(UTC),
                dispositif="clause_sociale",
                starts_on=today,
            )
            event = new_event(accepted, source="raccrochage/mlds", subject=str(accepted.case_id))
            await nc.jetstream().publish(
                nats_subject(event.type), event.to_json(), headers={"Nats-Msg-Id": str(event.id)}
            )
    finally:
        await nc.drain()

    clients = {
        name: httpx.AsyncClient(base_url=http, headers=headers, timeout=15)
        for name, headers in tokens.items()
    }
    try:
        summary = await _scenario(clients, youths, today)
    except DemoError as error:
        console.print(f"[red]clause_sociale[/] demo stopped: {error}")
        return
    finally:
        for client in clients.values():
            await client.aclose()
    _print(summary, http, tokens)


def clause_terms(
    organisation: str, departement: str, company: str, contract: str, amount: int, today
) -> dict:
    """A local authority's public contract with a clause sociale, notified today, for four years."""
    return {
        "organisation": organisation,
        "buyer_type": "collectivite_territoriale",
        "contact_role": "acheteur",
        "departement": departement,
        "company_id": company,
        "contract_object": contract,
        "notification_date": today.isoformat(),
        "firm_period_ends_on": (today + timedelta(days=730)).isoformat(),
        "firm_amount_eur": amount,
        "ends_on": (today + timedelta(days=1460)).isoformat(),
    }


async def _scenario(c: dict[str, httpx.AsyncClient], youths: list[tuple[str, int]], today) -> dict[str, Any]:
    clauses, missions = {}, {}
    for buyer_id, organisation, departement, company, contract, amount in BUYERS:
        clause = _ok(
            await c[f"buyer-{departement}"].post(
                "/clauses", json=clause_terms(organisation, departement, company, contract, amount, today)
            ),
            f"{buyer_id} publishes a clause",
        )
        clauses[buyer_id] = clause["clause_id"]
        missions[company] = []
        for domain, tasks, hours in MISSIONS[company]:
            mission = _ok(
                await c[company].post(
                    f"/clauses/{clause['clause_id']}/missions",
                    json={
                        "activity_domain": domain,
                        "tasks": tasks,
                        "site": SITES[departement],
                        "referent_id": "ref-204" if company == "docks-logistique" else "ref-510",
                        "second_referent_id": "ref-311" if company == "docks-logistique" else None,
                        "hours": hours,
                    },
                ),
                f"{company} declares a mission",
            )
            missions[company].append(mission["mission_id"])

    docks, tutor = c["docks-logistique"], c["tutor-33"]
    # Youth 1: the whole way, to the bilan croisé. Youth 2: in the company, hours recorded.
    for n, (mission_id, referent) in enumerate(
        zip(missions["docks-logistique"][:2], ("ref-204", "ref-311"), strict=True)
    ):
        youth_id, age = youths[n]
        await place(docks, tutor, mission_id, youth_id, age, referent, today)
        _ok(
            await docks.put(
                f"/missions/{mission_id}/hours", json={"week_of": today.isoformat(), "hours": 30 - 5 * n}
            ),
            "hours of the week",
        )
    first = missions["docks-logistique"][0]
    await deliver_bilan(docks, tutor, first)

    # Youth 3: proposed in the Landes, waiting for the company's answer (15 days).
    landes = missions["resto-landes"][0]
    _ok(await c["tutor-40"].post(f"/missions/{landes}/reservation"), "reservation")
    await propose(c["tutor-40"], landes, *youths[2], today)

    proofs = {
        buyer_id: _ok(await c[f"buyer-{dep}"].get(f"/clauses/{clauses[buyer_id]}"), "proof")
        for buyer_id, _, dep, *_ in BUYERS
    }
    return {"proofs": proofs, "bilan_mission": first, "missions": missions}


async def deliver_bilan(company: httpx.AsyncClient, tutor: httpx.AsyncClient, mission_id: str) -> dict:
    """The mission ends in an apprenticeship; the company writes the bilan croisé, the three
    parties sign it and the tutor delivers it (the vault is asked for the youth's name)."""
    _ok(
        await tutor.post(f"/missions/{mission_id}/completion", json={"outcome": "apprenticeship"}),
        "completion",
    )
    _ok(
        await company.put(
            f"/missions/{mission_id}/bilan",
            json={
                "skills": [
                    {"skill": "Réceptionner une livraison", "level": "acquired"},
                    {"skill": "Préparer une commande", "level": "acquired"},
                    {"skill": "Tenir un inventaire", "level": "in_progress"},
                ],
                "savoir_etre": "Ponctuel, s'intègre bien à l'équipe",
                "savoir_faire": "Utilise le lecteur de codes-barres et le transpalette",
                "next_steps": "Contrat d'apprentissage CAP opérateur logistique",
            },
        ),
        "bilan",
    )
    _ok(
        await company.post(f"/missions/{mission_id}/bilan/signatures", json={"role": "company_referent"}),
        "signature",
    )
    for role in ("mlds_tutor", "youth"):
        _ok(await tutor.post(f"/missions/{mission_id}/bilan/signatures", json={"role": role}), "signature")
    return _ok(await tutor.post(f"/missions/{mission_id}/bilan/delivery"), "bilan delivery")


async def propose(tutor: httpx.AsyncClient, mission_id: str, youth_id: str, age: int, today) -> dict:
    body = {
        "youth_id": youth_id,
        "profile": {
            "age": age,
            "level": "2nde",
            "wishes": ["logistique", "restauration"],
            "available_from": today.isoformat(),
            "hours_per_week": 30,
        },
    }
    deadline = time.monotonic() + 30
    while True:  # until clause_sociale has consumed the enrolment
        answer = await tutor.post(f"/missions/{mission_id}/proposals", json=body)
        if answer.status_code != 422 or "not enrolled" not in answer.text or time.monotonic() > deadline:
            return _ok(answer, "proposal")
        await asyncio.sleep(0.5)


async def place(company, tutor, mission_id: str, youth_id: str, age: int, referent: str, today) -> None:
    _ok(await tutor.post(f"/missions/{mission_id}/reservation"), "reservation")
    proposal = (await propose(tutor, mission_id, youth_id, age, today))["pending_proposal"]
    _ok(
        await company.post(
            f"/missions/{mission_id}/proposals/{proposal['proposal_id']}/answer", json={"accepted": True}
        ),
        "answer",
    )
    convention = {
        "starts_on": today.isoformat(),
        "ends_on": (today + timedelta(days=27)).isoformat(),
        "mlds_structure_uai": UAI,
        "company_tutor_id": referent,
    }
    drafted = await tutor.post(f"/missions/{mission_id}/convention", json=convention)
    if drafted.status_code == 422 and "legal guardian" in drafted.text:  # a minor on the start date
        drafted = await tutor.post(
            f"/missions/{mission_id}/convention",
            json={**convention, "legal_guardian_ref": f"rl-{youth_id[:8]}"},
        )
    roles = _ok(drafted, "convention")["convention"]["required_roles"]
    _ok(
        await company.post(f"/missions/{mission_id}/convention/signatures", json={"role": "company"}),
        "signature",
    )
    for role in roles:
        if role != "company":
            _ok(
                await tutor.post(f"/missions/{mission_id}/convention/signatures", json={"role": role}),
                "signature",
            )


def _print(summary: dict[str, Any], http: str, tokens: dict[str, dict[str, str]]) -> None:
    for buyer_id, proof in summary["proofs"].items():
        statuses = ", ".join(sorted(m["status"] for m in proof["missions"]))
        console.print(
            f"[cyan]clause_sociale[/] {buyer_id}: {proof['hours_required']} h required, "
            f"{proof['hours_planned']} planned, {proof['hours_done']} done; missions: {statuses}"
        )
    mission = summary["bilan_mission"]
    buyer = tokens["buyer-33"]["Authorization"].split()[1]
    tutor = tokens["tutor-33"]["Authorization"].split()[1]
    console.print(
        f"[cyan]clause_sociale[/] one bilan croisé delivered; the API (docs at {http}/docs), tokens valid 12 h:\n"
        f"  BUYER={buyer}\n"
        f'  curl -s -H "Authorization: Bearer $BUYER" {http}/clauses\n'
        f'  curl -s -H "Authorization: Bearer $BUYER" -o bilan.pdf {http}/missions/{mission}/bilan.pdf\n'
        f"  TUTOR={tutor}\n"
        f'  curl -s -H "Authorization: Bearer $TUTOR" {http}/missions   # the free missions of the Gironde\n'
        "  other tokens: raccrochage_platform.auth.mint(key, role='company', organisation='docks-logistique', "
        "sub='ref-204') with the rig's token_key",
        soft_wrap=True,  # the tokens and commands must stay whole to be copied
    )
