"""The catalogue of MLDS sites and their capacities."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from ..domain.catalogue import CapacityError, Dispositif
from .messages import publish_site
from .unit_of_work import MldsUnitOfWork


async def load_catalogue(uow: MldsUnitOfWork, sites: Iterable[Dispositif]) -> list[str]:
    """Store the sites not stored yet (a site already there keeps its capacity and places), and
    tell FOQUALE and ops about each new one. Returns the new sites' ids."""
    added = []
    async with uow:
        for site in sites:
            if await uow.dispositifs.add(site):
                publish_site(uow, site, "catalogued")
                added.append(site.dispositif_id)
        await uow.commit()
    return added


async def set_capacity(uow: MldsUnitOfWork, dispositif_id: str, capacity: int, now: datetime) -> Dispositif:
    """A coordinator sets a site's places. Fewer than the youths admitted is refused."""
    if capacity < 0:
        raise CapacityError(f"{dispositif_id}: capacity {capacity} is negative")
    async with uow:
        site = await uow.dispositifs.set_capacity(dispositif_id, capacity, now)
        if site is None:
            taken = (await uow.dispositifs.get(dispositif_id)).places_taken
            raise CapacityError(f"{dispositif_id}: capacity {capacity} is below the {taken} places taken")
        publish_site(uow, site, "capacity_set")
        await uow.commit()
        return site
