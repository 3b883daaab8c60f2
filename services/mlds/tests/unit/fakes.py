"""In-memory repositories and unit of work for the service layer's unit tests.

Each transaction works on copies of what was committed; `commit` keeps them, leaving without
commit drops them, as a database transaction would.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Iterable
from datetime import datetime

from raccrochage_mlds.domain.candidacy import Candidacy
from raccrochage_mlds.domain.catalogue import Dispositif, DispositifKind, NoPlaceLeft
from raccrochage_mlds.domain.states import CandidacyStatus
from raccrochage_mlds.service_layer.unit_of_work import (
    CandidacyNotFound,
    CandidacyRepository,
    DispositifNotFound,
    DispositifRepository,
    MldsUnitOfWork,
)
from raccrochage_platform.fakes import FakeUnitOfWork


class FakeDispositifRepository(DispositifRepository):
    def __init__(self, sites: dict[str, Dispositif]) -> None:
        self.sites = sites

    async def add(self, dispositif: Dispositif) -> bool:
        if dispositif.dispositif_id in self.sites:
            return False
        self.sites[dispositif.dispositif_id] = copy.deepcopy(dispositif)
        return True

    async def get(self, dispositif_id: str) -> Dispositif:
        try:
            return copy.deepcopy(self.sites[dispositif_id])
        except KeyError:
            raise DispositifNotFound(dispositif_id) from None

    async def find(
        self, *, kind: DispositifKind | None = None, departement: str | None = None
    ) -> list[Dispositif]:
        return [
            copy.deepcopy(s)
            for _, s in sorted(self.sites.items())
            if (kind is None or s.kind is kind) and (departement is None or s.departement == departement)
        ]

    async def take_place(self, dispositif_id: str, now: datetime) -> Dispositif | None:
        site = self._site(dispositif_id)
        try:
            site.take_place(now)
        except NoPlaceLeft:
            return None
        return copy.deepcopy(site)

    async def release_place(self, dispositif_id: str, now: datetime) -> Dispositif:
        site = self._site(dispositif_id)
        site.release_place(now)
        return copy.deepcopy(site)

    async def set_capacity(self, dispositif_id: str, capacity: int, now: datetime) -> Dispositif | None:
        site = self._site(dispositif_id)
        if capacity < site.places_taken:
            return None
        site.set_capacity(capacity, now)
        return copy.deepcopy(site)

    def _site(self, dispositif_id: str) -> Dispositif:
        try:
            return self.sites[dispositif_id]
        except KeyError:
            raise DispositifNotFound(dispositif_id) from None


class FakeCandidacyRepository(CandidacyRepository):
    def __init__(self, rows: dict[uuid.UUID, Candidacy]) -> None:
        self.rows = rows

    async def add(self, candidacy: Candidacy) -> bool:
        assert candidacy.candidacy_id not in self.rows
        if candidacy.request and await self.for_request(candidacy.request.request_id):
            return False
        await self.save(candidacy)
        return True

    async def add_many(self, candidacies: list[Candidacy]) -> set[uuid.UUID]:
        return {c.candidacy_id for c in candidacies if await self.add(c)}

    async def for_requests(self, request_ids: list[uuid.UUID]) -> dict[uuid.UUID, uuid.UUID]:
        wanted = set(request_ids)
        return {
            c.request.request_id: c.candidacy_id
            for c in self.rows.values()
            if c.request and c.request.request_id in wanted
        }

    async def get(self, candidacy_id: uuid.UUID) -> Candidacy:
        try:
            return copy.deepcopy(self.rows[candidacy_id])
        except KeyError:
            raise CandidacyNotFound(candidacy_id) from None

    async def for_request(self, request_id: uuid.UUID) -> Candidacy | None:
        found = [c for c in self.rows.values() if c.request and c.request.request_id == request_id]
        return copy.deepcopy(found[0]) if found else None

    async def holding_place_of(self, youth_id: str) -> list[Candidacy]:
        return [
            copy.deepcopy(c)
            for c in sorted(self.rows.values(), key=lambda c: (c.received_at, str(c.candidacy_id)))
            if c.youth_id == youth_id and c.holds_place
        ]

    async def save(self, candidacy: Candidacy) -> None:
        candidacy.version += 1
        stored = copy.deepcopy(candidacy)
        stored.events = []  # a stored candidacy records nothing; its events go to the outbox
        self.rows[candidacy.candidacy_id] = stored

    async def find(
        self,
        *,
        territory: str,
        dispositif_id: str | None = None,
        status: CandidacyStatus | None = None,
        kind: DispositifKind | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> tuple[int, list[Candidacy]]:
        found = [
            c
            for c in self.rows.values()
            if (c.departement == territory or (c.dispositif_id or "").split("-")[1:2] == [territory])
            and (dispositif_id is None or c.dispositif_id == dispositif_id)
            and (status is None or c.status is status)
            and (kind is None or c.kind is kind)
        ]
        found.sort(key=lambda c: (-c.received_at.timestamp(), str(c.candidacy_id)))
        return len(found), copy.deepcopy(found[offset : offset + limit])


class FakeMldsUnitOfWork(FakeUnitOfWork, MldsUnitOfWork):
    def __init__(self, sites: Iterable[Dispositif] = ()) -> None:
        super().__init__("raccrochage/mlds")
        self.committed_sites = {s.dispositif_id: copy.deepcopy(s) for s in sites}
        self.committed_candidacies: dict[uuid.UUID, Candidacy] = {}

    async def _begin(self) -> None:
        await super()._begin()
        self.dispositifs = FakeDispositifRepository(copy.deepcopy(self.committed_sites))
        self.candidacies = FakeCandidacyRepository(copy.deepcopy(self.committed_candidacies))

    async def _commit(self, events) -> None:
        await super()._commit(events)
        self.committed_sites = copy.deepcopy(self.dispositifs.sites)
        self.committed_candidacies = copy.deepcopy(self.candidacies.rows)

    def published_data(self, event_type: str) -> list[dict]:
        return [e.data for e in self.published if e.type == event_type]
