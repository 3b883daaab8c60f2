"""What buyers and the MLDS read: a clause's proof of execution, the clauses "bientôt échues"."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from ..domain.clause import MONTHS_BEFORE_END, Clause, ExecutionProof
from ..domain.dates import add_months
from .unit_of_work import ClauseUnitOfWork


@dataclass(frozen=True)
class ClauseDue:
    clause: Clause
    proof: ExecutionProof

    @property
    def hours_to_plan(self) -> int:
        return max(0, self.proof.hours_required - self.proof.hours_planned)


async def proof_of_execution(clause_id: str, uow: ClauseUnitOfWork) -> ExecutionProof:
    """Hours required, declared, planned and done for one clause, and the hours of each youth."""
    async with uow:
        clause = await uow.clauses.get(clause_id)
        return clause.proof(await uow.missions.of_clause(clause_id))


async def bientot_echues(today: date, uow: ClauseUnitOfWork) -> list[ClauseDue]:
    """Clauses whose contract ends within six months and whose hours are not all planned,
    soonest end first: listed for the buyer and the MLDS."""
    async with uow:
        due = []
        for clause in await uow.clauses.ending_between(today, add_months(today, MONTHS_BEFORE_END)):
            missions = await uow.missions.of_clause(clause.clause_id)
            if clause.is_bientot_echue(missions, today):
                due.append(ClauseDue(clause, clause.proof(missions)))
        return due
