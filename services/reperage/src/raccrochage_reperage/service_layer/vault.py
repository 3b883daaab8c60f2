"""The identity vault's contact cards: given to an allowed service, for a stated purpose, audited."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from ..adapters.tables import contact_card_audit, youth


@dataclass(frozen=True)
class ContactCard:
    youth_id: str
    nom: str
    prenom: str
    date_naissance: str
    telephone: str | None
    courriel: str | None
    adresse: str | None
    code_postal: str
    commune: str | None


@dataclass(frozen=True)
class ContactCardAnswer:
    status: str  # ok | refused | not_found
    card: ContactCard | None = None
    reason: str = ""


async def give_contact_card(
    session: AsyncSession, *, caller: str, youth_id: str, purpose: str, allowed: set[str]
) -> ContactCardAnswer:
    """Check the caller's right, write the audit row (refusals too: the caller commits it), answer."""
    if caller not in allowed:
        answer = ContactCardAnswer("refused", reason=f"service {caller!r} may not read contact cards")
    elif not purpose.strip():
        answer = ContactCardAnswer("refused", reason="a purpose is required")
    else:
        row = (await session.execute(select(youth).where(youth.c.youth_id == youth_id))).first()
        answer = (
            ContactCardAnswer("not_found", reason=f"no youth {youth_id} in the vault")
            if row is None
            else ContactCardAnswer(
                "ok",
                card=ContactCard(
                    youth_id=row.youth_id,
                    nom=row.nom,
                    prenom=row.prenom,
                    date_naissance=row.date_naissance.isoformat(),
                    telephone=row.telephone,
                    courriel=row.courriel,
                    adresse=row.adresse,
                    code_postal=row.code_postal,
                    commune=row.commune,
                ),
            )
        )
    await session.execute(
        insert(contact_card_audit).values(
            caller=caller, youth_id=youth_id[:64], purpose=purpose[:200] or "-", granted=answer.status == "ok"
        )
    )
    return answer
