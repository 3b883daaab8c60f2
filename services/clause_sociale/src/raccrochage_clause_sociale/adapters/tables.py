"""clause_sociale's own tables: companies, clauses, missions (one row each, the placement's
history as JSON beside the columns that queries filter on), MLDS enrolments, delivered bilans.

Personal data lives here and nowhere else: the sites' street addresses, the youth's birth date and
the convention's party references (in the mission's history), the bilan's remarks and its PDF.
"""

from __future__ import annotations

from raccrochage_platform.tables import platform_metadata
from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Table,
    Text,
    Uuid,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB

metadata = MetaData()

MISSION_STATUSES = ("disponible", "reservee", "en_preparation", "en_realisation", "realisee")

company = Table(
    "company",
    metadata,
    Column("company_id", Text, primary_key=True),
    # The proposal waiting for this company's answer: one youth per company at a time. Taken and
    # freed by conditional updates (repository.SqlCompanyRepository).
    Column("pending_proposal_id", Uuid(as_uuid=False)),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

clause = Table(
    "clause",
    metadata,
    Column("clause_id", Uuid(as_uuid=False), primary_key=True),
    Column("buyer_id", Text, nullable=False),
    Column("buyer_organisation", Text, nullable=False),
    Column("buyer_type", Text, nullable=False),
    Column("buyer_contact_role", Text, nullable=False),
    Column("departement", Text, nullable=False),
    Column("company_id", Text, ForeignKey("company.company_id"), nullable=False),
    Column("contract_object", Text, nullable=False),
    Column("notification_date", Date, nullable=False),
    Column("firm_period_ends_on", Date, nullable=False),
    Column("firm_amount_eur", BigInteger, nullable=False),
    Column("ends_on", Date, nullable=False),
    Column("hours_required", Integer, nullable=False),
    Column("published_at", DateTime(timezone=True), nullable=False),
    # "Bientôt échues": the clauses ending within six months.
    Index("clause_by_end", "ends_on"),
    Index("clause_by_buyer", "buyer_id"),
)

mission = Table(
    "mission",
    metadata,
    Column("mission_id", Uuid(as_uuid=False), primary_key=True),
    Column("clause_id", Uuid(as_uuid=False), ForeignKey("clause.clause_id"), nullable=False),
    Column("buyer_id", Text, nullable=False),
    Column("company_id", Text, ForeignKey("company.company_id"), nullable=False),
    Column("activity_domain", Text, nullable=False),
    Column("activity_comment", Text),
    Column("tasks", JSONB, nullable=False),
    Column("site_address", Text, nullable=False),
    Column("site_postcode", Text, nullable=False),
    Column("site_city", Text, nullable=False),
    Column("departement", Text, nullable=False),
    Column("site_key", Text, nullable=False),
    Column("referent_id", Text, nullable=False),
    Column("second_referent_id", Text),
    Column("hours", Integer, nullable=False),
    Column("declared_at", DateTime(timezone=True), nullable=False),
    Column("status", Text, nullable=False),
    Column("status_since", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("reserved_by", Text),  # the MLDS tutor
    # proposals, convention, attendance, outcome, bilan: loaded and saved with the row
    Column("history", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    # Derived from the aggregate at each save, for the timers and the queries:
    Column("pending_proposal_made_at", DateTime(timezone=True)),
    Column("company_tutor_id", Text),  # the convention's
    Column("hours_done", Integer, nullable=False, server_default="0"),
    Column("version", Integer, nullable=False, server_default="1"),
    CheckConstraint(f"status IN {MISSION_STATUSES!r}", name="mission_status_known"),
    # A free mission is held by nobody, any other is held by its tutor: the reservation's
    # conditional update keeps it so, this says it again.
    CheckConstraint("(status = 'disponible') = (reserved_by IS NULL)", name="mission_reserved_iff_not_free"),
    Index("mission_by_clause", "clause_id"),
    # What an MLDS tutor looks for: the free missions of a département.
    Index("mission_by_territory", "departement", "status"),
    Index(
        "mission_awaiting_answer",
        "pending_proposal_made_at",
        postgresql_where=text("pending_proposal_made_at IS NOT NULL"),
    ),
    Index(
        "mission_by_company_tutor",
        "company_id",
        "company_tutor_id",
        "site_key",
        postgresql_where=text("company_tutor_id IS NOT NULL"),
    ),
)

enrolment = Table(
    "enrolment",
    metadata,
    Column("youth_id", Text, primary_key=True),
    Column("dispositif", Text, nullable=False),
    Column("starts_on", Date, nullable=False),
    Column("case_id", Uuid(as_uuid=False), nullable=False),
    Column("request_id", Uuid(as_uuid=False), nullable=False),
    Column("enrolled_at", DateTime(timezone=True), nullable=False),
)

bilan_document = Table(
    "bilan_document",
    metadata,
    Column("mission_id", Uuid(as_uuid=False), ForeignKey("mission.mission_id"), primary_key=True),
    Column("document_sha256", Text, nullable=False),
    Column("pdf", LargeBinary, nullable=False),
    Column("delivered_at", DateTime(timezone=True), nullable=False),
)

ALL_METADATA = [platform_metadata, metadata]
