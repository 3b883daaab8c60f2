"""The MLDS unit of work and the repositories it opens: what the handlers may read and write.

`SqlMldsUnitOfWork` in the service (the platform's SqlAlchemyUnitOfWork with the repositories of
`adapters/repository.py` on the transaction's connection); unit tests use fakes
(tests/unit/fakes.py).
"""

from __future__ import annotations

import abc
import uuid
from datetime import datetime

from raccrochage_platform.uow import AbstractUnitOfWork, SqlAlchemyUnitOfWork
from sqlalchemy.ext.asyncio import AsyncConnection

from ..domain.candidacy import Candidacy
from ..domain.catalogue import Dispositif, DispositifKind
from ..domain.states import CandidacyStatus


class DispositifNotFound(LookupError):
    pass


class CandidacyNotFound(LookupError):
    pass


class DispositifRepository(abc.ABC):
    """The MLDS sites. Places are taken and released by the repository in one step each, so that
    several replicas of the service never admit more youths than a site has places."""

    @abc.abstractmethod
    async def add(self, dispositif: Dispositif) -> bool:
        """Store a new site; False (and nothing changed) when its id is there already."""

    @abc.abstractmethod
    async def get(self, dispositif_id: str) -> Dispositif:
        """The site; DispositifNotFound otherwise."""

    @abc.abstractmethod
    async def find(
        self, *, kind: DispositifKind | None = None, departement: str | None = None
    ) -> list[Dispositif]:
        """The sites of a kind and/or a département, by id."""

    @abc.abstractmethod
    async def take_place(self, dispositif_id: str, now: datetime) -> Dispositif | None:
        """One more place taken, if one is left: the site after the change, or None when full."""

    @abc.abstractmethod
    async def release_place(self, dispositif_id: str, now: datetime) -> Dispositif:
        """One place freed (a youth withdrew or left); CapacityError when none is taken."""

    @abc.abstractmethod
    async def set_capacity(self, dispositif_id: str, capacity: int, now: datetime) -> Dispositif | None:
        """The new capacity: the site after the change, or None when it is below the places taken."""


class CandidacyRepository(abc.ABC):
    @abc.abstractmethod
    async def add(self, candidacy: Candidacy) -> bool:
        """Store a new candidacy; False (and nothing stored) when one answers the same PSAD
        request already (another consumer got there first)."""

    @abc.abstractmethod
    async def get(self, candidacy_id: uuid.UUID) -> Candidacy:
        """The candidacy, held for this transaction (commands on it queue); CandidacyNotFound
        otherwise."""

    @abc.abstractmethod
    async def for_request(self, request_id: uuid.UUID) -> Candidacy | None:
        """The candidacy that answers a PSAD request, if any."""

    @abc.abstractmethod
    async def for_requests(self, request_ids: list[uuid.UUID]) -> dict[uuid.UUID, uuid.UUID]:
        """Of these PSAD requests, those that have a candidacy already: request id -> candidacy id."""

    @abc.abstractmethod
    async def add_many(self, candidacies: list[Candidacy]) -> set[uuid.UUID]:
        """Store new candidacies at once; returns the ids stored (one answering the same request
        as a stored one is not)."""

    @abc.abstractmethod
    async def holding_place_of(self, youth_id: str) -> list[Candidacy]:
        """The youth's candidacies that hold a place (admitted or enrolled), held for this
        transaction as `get`'s."""

    @abc.abstractmethod
    async def save(self, candidacy: Candidacy) -> None:
        """Store the changes of a candidacy got from `get`."""

    @abc.abstractmethod
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
        """A territory's candidacies (the youth's département, or the site's), newest first, not
        held: how many match, and the page."""


class MldsUnitOfWork(AbstractUnitOfWork):
    """One MLDS transaction: its repositories, its inbox claims, the events it publishes."""

    source = "raccrochage/mlds"
    dispositifs: DispositifRepository
    candidacies: CandidacyRepository


class SqlMldsUnitOfWork(SqlAlchemyUnitOfWork, MldsUnitOfWork):
    """One PostgreSQL transaction of the MLDS (`ServiceContext.unit_of_work(SqlMldsUnitOfWork)`)."""

    def open_repositories(self, connection: AsyncConnection) -> None:
        # Imported here: the adapters implement this module's abstract repositories.
        from ..adapters.repository import SqlCandidacyRepository, SqlDispositifRepository

        self.dispositifs = SqlDispositifRepository(connection)
        self.candidacies = SqlCandidacyRepository(connection)
