"""The identity vault's contact cards: given to an allowed service, for a stated purpose, audited."""

from __future__ import annotations

from dataclasses import dataclass

from .unit_of_work import AbstractReperageUnitOfWork, IdentityRead


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


@dataclass(frozen=True)
class OnBehalf:
    """The person a service asks for: their token's role, sub and territory, as the service says."""

    role: str | None = None
    sub: str | None = None
    territory: str | None = None


async def give_contact_card(
    uow: AbstractReperageUnitOfWork,
    *,
    caller: str,
    youth_id: str,
    purpose: str,
    allowed: set[str],
    on_behalf: OnBehalf | None = None,
) -> ContactCardAnswer:
    """Check the caller's right, answer, and audit the request (refusals too) in one transaction."""
    on_behalf = on_behalf or OnBehalf()
    async with uow:
        if caller not in allowed:
            answer = ContactCardAnswer("refused", reason=f"service {caller!r} may not read contact cards")
        elif not purpose.strip():
            answer = ContactCardAnswer("refused", reason="a purpose is required")
        else:
            identity = await uow.vault.get(youth_id)
            answer = (
                ContactCardAnswer("not_found", reason="no such youth in the vault")
                if identity is None
                else ContactCardAnswer(
                    "ok",
                    card=ContactCard(
                        youth_id=identity.youth_id,
                        nom=identity.nom,
                        prenom=identity.prenom,
                        date_naissance=identity.date_naissance.isoformat(),
                        telephone=identity.telephone,
                        courriel=identity.courriel,
                        adresse=identity.adresse,
                        code_postal=identity.code_postal,
                        commune=identity.commune,
                    ),
                )
            )
        await uow.vault.audit(
            IdentityRead(
                caller=caller,
                youth_id=youth_id[:64],
                what="contact_card",
                purpose=purpose[:200] or "-",
                granted=answer.status == "ok",
                role=on_behalf.role,
                sub=on_behalf.sub,
                territory=on_behalf.territory,
            )
        )
        await uow.commit()
    return answer
