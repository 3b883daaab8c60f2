"""Ops' tables: one per read model of domain/projection.py (same names, same columns), and the
audit of dead-letter replays."""

from __future__ import annotations

from dataclasses import fields

from raccrochage_platform.tables import platform_metadata
from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Connection,
    Date,
    DateTime,
    Identity,
    Index,
    Integer,
    MetaData,
    Table,
    Text,
    UniqueConstraint,
    func,
)

from ..domain.projection import AGGREGATES, ROW_KINDS, YOUTH_TABLES, Row

metadata = MetaData()

_TYPES = {"str": Text, "bool": Boolean, "int": Integer, "datetime": DateTime(timezone=True), "date": Date}


def _table(kind: type[Row]) -> Table:
    """The table of a read model, its columns from the dataclass: one definition of a row."""
    columns = []
    for f in fields(kind):
        spelled = str(f.type)
        base = spelled.split("|")[0].strip()
        columns.append(
            Column(f.name, _TYPES[base], primary_key=f.name == kind.KEY, nullable="None" in spelled)
        )
    return Table(kind.TABLE, metadata, *columns)


READ_MODELS: dict[type[Row], Table] = {kind: _table(kind) for kind in ROW_KINDS}
youth = READ_MODELS[ROW_KINDS[0]]
Index("youth_by_campaign", youth.c.campaign_id)
Index("youth_by_departement", youth.c.departement)
# The dashboard's "still open after N days" counts the youths of one day from here.
Index("youth_by_case_opened_at", youth.c.case_opened_at)

_KEY_TYPES = {"opened_on": Date, "monday": Date, "opened": Boolean, "ends_on": Date, "unfinished": Boolean}


def _aggregate(name: str, key: tuple[str, ...], sums: tuple[str, ...]) -> Table:
    """A table of counts kept by the projection (domain/projection.py, `count_changes`): one row
    per key, NULL a value of its own (NULLS NOT DISTINCT, PostgreSQL 15+)."""
    return Table(
        name,
        metadata,
        *(Column(column, _KEY_TYPES.get(column, Text)) for column in key),
        *(Column(column, BigInteger, nullable=False, server_default="0") for column in sums),
        UniqueConstraint(*key, name=f"{name}_key", postgresql_nulls_not_distinct=True),
    )


# One per entry of AGGREGATES: youths per campaign, territory, case opened or not, status,
# solution kind, closing reason (youth_total); the same per day their case opened, for date
# filters (youth_count); cases opened, first contacts, solutions per ISO week (youth_week); cases
# still open per day they opened (youth_open); seats, candidacies, MLDS places, clauses per département.
COUNT_TABLES = {name: _aggregate(name, key, sums) for name, (key, sums) in AGGREGATES.items()}
youth_total, youth_count, youth_week, youth_open = (COUNT_TABLES[name] for name in YOUTH_TABLES)
Index("youth_open_by_opened_on", youth_open.c.opened_on)
seat_total, candidacy_total, dispositif_total, clause_total = (
    COUNT_TABLES[name] for name in ("seat_total", "candidacy_total", "dispositif_total", "clause_total")
)


def insert_counts(bind: Connection, totals: dict[str, dict[tuple, list[int]]]) -> None:
    """Write counts added up over rows already projected (`add_counts`) into their empty
    aggregate tables: the migrations that bring a table in fill it so."""
    for name, counts in totals.items():
        if counts:
            table = COUNT_TABLES[name]
            columns = [column.name for column in table.columns]
            bind.execute(
                table.insert(),
                [dict(zip(columns, (*key, *sums), strict=True)) for key, sums in counts.items()],
            )


# Who replayed which dead letter, when: replays re-run events in every consumer of a stream.
replay_audit = Table(
    "replay_audit",
    metadata,
    Column("id", BigInteger, Identity(always=True), primary_key=True),
    Column("replayed_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("replayed_by", Text, nullable=False),
    Column("role", Text, nullable=False),
    Column("deadletter_seq", BigInteger, nullable=False),
    Column("consumer", Text, nullable=False),
    Column("subject", Text, nullable=False),
    Column("stream", Text, nullable=False),
    Column("stream_seq", BigInteger, nullable=False),
    Column("reason", Text, nullable=False),
)

ALL_METADATA = [platform_metadata, metadata]
