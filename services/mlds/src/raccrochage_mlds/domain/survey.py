"""The yearly enquête MLDS, from the service's own enrolment starts and exits.

"Une enquête est réalisée annuellement sur l'activité de la MLDS [...] elle permet de connaître le
nombre de jeunes qui ont pu bénéficier d'un accompagnement de la MLDS et leur devenir après cet
accompagnement." For one school year: entries and exits per dispositif and département, exits by
destination and by duration, the share back in training, the share under the obligation de
formation. Every cell of fewer than `threshold` youths is withheld, and enough others with it that
none can be worked out (domain/disclosure.py).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date

from .catalogue import DispositifKind
from .dates import SchoolYear, whole_months
from .disclosure import Cell, Relation, withheld_cells
from .states import IN_TRAINING, ExitDestination

ALL = "all"
WITHHELD = "s"  # secret statistique: the same mark for every withheld cell
DURATIONS = ("under_3_months", "3_to_6_months", "6_to_12_months", "12_months_or_more")
SECTIONS = (
    "entries",
    "exits",
    "exits_by_destination",
    "exits_by_duration",
    "back_in_training_share",
    "obligation_de_formation_share",
)


@dataclass(frozen=True)
class Start:
    candidacy_id: uuid.UUID
    youth_id: str
    kind: DispositifKind
    departement: str  # the site's
    started_on: date
    under_obligation_de_formation: bool | None


@dataclass(frozen=True)
class Leave:
    candidacy_id: uuid.UUID
    youth_id: str
    kind: DispositifKind
    departement: str
    started_on: date
    exited_on: date
    destination: ExitDestination


@dataclass(frozen=True)
class SurveyRow:
    section: str
    dispositif: str  # a kind, or "all"
    departement: str  # a département, or "all"
    category: str  # count, a destination, a duration band, share_percent
    value: str  # a number, or "s" when withheld

    def as_tuple(self) -> tuple[str, str, str, str, str]:
        return (self.section, self.dispositif, self.departement, self.category, self.value)


@dataclass(frozen=True)
class Survey:
    year: SchoolYear
    threshold: int
    rows: tuple[SurveyRow, ...]

    COLUMNS = ("section", "dispositif", "departement", "category", "value")

    def value(self, section: str, dispositif: str, departement: str, category: str) -> str:
        for row in self.rows:
            if row.as_tuple()[:4] == (section, dispositif, departement, category):
                return row.value
        raise KeyError((section, dispositif, departement, category))


def duration_band(started_on: date, exited_on: date) -> str:
    months = whole_months(started_on, exited_on)
    if months < 3:
        return DURATIONS[0]
    if months < 6:
        return DURATIONS[1]
    if months < 12:
        return DURATIONS[2]
    return DURATIONS[3]


class _Counter:
    """Cells: a count of enrolments and the distinct youths behind it."""

    def __init__(self) -> None:
        self.members: dict[tuple, set[tuple[uuid.UUID, str]]] = {}
        self.hidden: set[tuple] = set()

    def declare(self, key: tuple, *, hidden: bool = False) -> None:
        self.members.setdefault(key, set())
        if hidden:
            self.hidden.add(key)

    def add(self, key: tuple, candidacy_id: uuid.UUID, youth_id: str) -> None:
        self.members.setdefault(key, set()).add((candidacy_id, youth_id))

    def cells(self) -> dict[tuple, Cell]:
        return {
            key: Cell(len(m), len({youth for _, youth in m}), published=key not in self.hidden)
            for key, m in self.members.items()
        }


def survey_cells(
    year: SchoolYear, starts: Iterable[Start], leaves: Iterable[Leave]
) -> tuple[dict[tuple, Cell], list[Relation]]:
    """Every cell of the survey (published or hidden) and the sums that tie them."""
    entered = {s.candidacy_id: s for s in starts if s.started_on in year}
    left = {x.candidacy_id: x for x in leaves if x.exited_on in year}
    kinds = list(DispositifKind)
    departements = {
        kind: sorted(
            {s.departement for s in entered.values() if s.kind is kind}
            | {x.departement for x in left.values() if x.kind is kind}
        )
        for kind in kinds
    }
    counter = _Counter()
    relations: list[Relation] = []

    def group(parts: Iterable[tuple], total: tuple) -> None:
        parts = tuple(parts)
        for key in (*parts, total):
            counter.declare(key)
        if parts:  # a kind with no site in the year's events has a total and nothing to add up
            relations.append(Relation(total, parts))

    for section in ("entries", "exits"):
        for kind in kinds:
            group(
                ((section, kind.value, d, "count") for d in departements[kind]),
                (section, kind.value, ALL, "count"),
            )
        group(((section, k.value, ALL, "count") for k in kinds), (section, ALL, ALL, "count"))
    for section, categories in (
        ("exits_by_destination", [d.value for d in ExitDestination]),
        ("exits_by_duration", list(DURATIONS)),
    ):
        for kind in [*(k.value for k in kinds), ALL]:
            group(((section, kind, ALL, c) for c in categories), ("exits", kind, ALL, "count"))
        for c in categories:
            group(((section, k.value, ALL, c) for k in kinds), (section, ALL, ALL, c))
    for kind in [*(k.value for k in kinds), ALL]:
        training = tuple(
            ("exits_by_destination", kind, ALL, d.value) for d in ExitDestination if d in IN_TRAINING
        )
        others = tuple(
            ("exits_by_destination", kind, ALL, d.value) for d in ExitDestination if d not in IN_TRAINING
        )
        counter.declare(("in_training", kind), hidden=True)
        counter.declare(("not_in_training", kind), hidden=True)
        relations.append(Relation(("in_training", kind), training))
        relations.append(Relation(("not_in_training", kind), others))
        counter.declare(("under_of", kind), hidden=True)
        counter.declare(("not_under_of", kind), hidden=True)
        relations.append(
            Relation(("entries", kind, ALL, "count"), (("under_of", kind), ("not_under_of", kind)))
        )

    for s in entered.values():
        for kind, dept in ((s.kind.value, s.departement), (s.kind.value, ALL), (ALL, ALL)):
            counter.add(("entries", kind, dept, "count"), s.candidacy_id, s.youth_id)
        for kind in (s.kind.value, ALL):
            of = "under_of" if s.under_obligation_de_formation is True else "not_under_of"
            counter.add((of, kind), s.candidacy_id, s.youth_id)
    for x in left.values():
        band = duration_band(x.started_on, x.exited_on)
        training = "in_training" if x.destination in IN_TRAINING else "not_in_training"
        for kind, dept in ((x.kind.value, x.departement), (x.kind.value, ALL), (ALL, ALL)):
            counter.add(("exits", kind, dept, "count"), x.candidacy_id, x.youth_id)
        for kind in (x.kind.value, ALL):
            counter.add(("exits_by_destination", kind, ALL, x.destination.value), x.candidacy_id, x.youth_id)
            counter.add(("exits_by_duration", kind, ALL, band), x.candidacy_id, x.youth_id)
            counter.add((training, kind), x.candidacy_id, x.youth_id)

    cells = counter.cells()
    # The shares publish their numerators: in training, under the obligation de formation.
    for kind in [*(k.value for k in kinds), ALL]:
        for key in (("in_training", kind), ("under_of", kind)):
            cells[key] = Cell(cells[key].value, cells[key].youths, published=True, cost=0)
    return cells, relations


def build_survey(
    year: SchoolYear, starts: Iterable[Start], leaves: Iterable[Leave], threshold: int = 5
) -> Survey:
    """The survey of `year`: entries started in it, exits that happened in it. A start or exit
    seen twice (a replayed event) counts once."""
    if threshold < 1:
        raise ValueError("threshold must be at least 1")
    cells, relations = survey_cells(year, starts, leaves)
    kinds = list(DispositifKind)
    withheld = withheld_cells(cells, relations, threshold)

    def shown(key: tuple) -> str:
        return WITHHELD if key in withheld else str(cells[key].value)

    def share(numerator: tuple, denominator: tuple) -> str:
        if numerator in withheld or denominator in withheld or cells[denominator].value == 0:
            return WITHHELD
        return f"{100 * cells[numerator].value / cells[denominator].value:.1f}"

    rows = [SurveyRow(*key, shown(key)) for key in cells if key[0] in SECTIONS]
    for kind in [*(k.value for k in kinds), ALL]:
        rows.append(
            SurveyRow(
                "back_in_training_share",
                kind,
                ALL,
                "share_percent",
                share(("in_training", kind), ("exits", kind, ALL, "count")),
            )
        )
        rows.append(
            SurveyRow(
                "obligation_de_formation_share",
                kind,
                ALL,
                "share_percent",
                share(("under_of", kind), ("entries", kind, ALL, "count")),
            )
        )
    rank = {name: i for i, name in enumerate(SECTIONS)}
    kind_rank = {k.value: i for i, k in enumerate(kinds)} | {ALL: len(kinds)}
    category_rank = {c: i for i, c in enumerate(["count", *(d.value for d in ExitDestination), *DURATIONS])}
    rows.sort(
        key=lambda r: (
            rank[r.section],
            kind_rank[r.dispositif],
            r.departement == ALL,
            r.departement,
            category_rank.get(r.category, 99),
        )
    )
    return Survey(year, threshold, tuple(rows))
