"""What a coordinator may read: the sites and candidacies of their territory (département).

A candidacy belongs to a territory by the youth's département or by its site's: a coordinator of
the Gironde follows the Gironde's youths, and the youths of any département who apply to a
Gironde site.
"""

from __future__ import annotations

import uuid

from ..domain.candidacy import Candidacy
from ..domain.catalogue import Dispositif, DispositifKind
from ..domain.states import CandidacyStatus
from .unit_of_work import MldsUnitOfWork


class NotYourTerritory(PermissionError):
    """A coordinator asked for another territory's site or candidacy."""


async def territory_of(uow: MldsUnitOfWork, candidacy: Candidacy) -> set[str]:
    territories = {candidacy.departement}
    if candidacy.dispositif_id is not None:
        territories.add((await uow.dispositifs.get(candidacy.dispositif_id)).departement)
    return territories


async def candidacy_for(uow: MldsUnitOfWork, candidacy_id: uuid.UUID, territory: str) -> Candidacy:
    """The candidacy, if it belongs to `territory`: CandidacyNotFound, NotYourTerritory."""
    async with uow:
        candidacy = await uow.candidacies.get(candidacy_id)
        if territory not in await territory_of(uow, candidacy):
            raise NotYourTerritory(
                f"candidacy {candidacy_id} belongs to département {candidacy.departement}"
                + (f" and site {candidacy.dispositif_id}" if candidacy.dispositif_id else "")
                + f", not to the token's territory {territory}"
            )
        return candidacy


async def site_for(uow: MldsUnitOfWork, dispositif_id: str, territory: str | None) -> Dispositif:
    """The site, if it is in `territory` (None: any): DispositifNotFound, NotYourTerritory."""
    async with uow:
        site = await uow.dispositifs.get(dispositif_id)
    if territory is not None and site.departement != territory:
        raise NotYourTerritory(
            f"site {dispositif_id} is in département {site.departement}, "
            f"not in the token's territory {territory}"
        )
    return site


async def sites(
    uow: MldsUnitOfWork, *, kind: DispositifKind | None = None, departement: str | None = None
) -> list[Dispositif]:
    async with uow:
        return await uow.dispositifs.find(kind=kind, departement=departement)


async def candidacies_of(
    uow: MldsUnitOfWork,
    territory: str,
    *,
    dispositif_id: str | None = None,
    status: CandidacyStatus | None = None,
    kind: DispositifKind | None = None,
    limit: int = 100,
    offset: int = 0,
) -> tuple[int, list[Candidacy]]:
    async with uow:
        return await uow.candidacies.find(
            territory=territory,
            dispositif_id=dispositif_id,
            status=status,
            kind=kind,
            limit=limit,
            offset=offset,
        )
