"""The identity audit: append-only, hash-chained, the youth linked apart (docs/privacy.md "Audit").

The contact-card audit's rows move into the chain in their order (an erased youth's row,
`erased`, without a link) and the old table goes. The role that migrates, the service's own,
keeps no UPDATE, DELETE or TRUNCATE on the chain, and a trigger refuses them to any role,
the owner included. 0001 builds its tables from the live metadata, which declares the new
tables: hence checkfirst.
"""

import sqlalchemy as sa
from alembic import op
from raccrochage_reperage.adapters.audit import GENESIS, row_hash
from raccrochage_reperage.adapters.tables import identity_audit, identity_audit_youth

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

GUARD = [
    """CREATE OR REPLACE FUNCTION identity_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION 'identity_audit is append-only: % refused', TG_OP
            USING ERRCODE = 'insufficient_privilege';
    END
    $$""",
    "DROP TRIGGER IF EXISTS identity_audit_no_change ON identity_audit",
    """CREATE TRIGGER identity_audit_no_change BEFORE UPDATE OR DELETE ON identity_audit
    FOR EACH ROW EXECUTE FUNCTION identity_audit_append_only()""",
    "DROP TRIGGER IF EXISTS identity_audit_no_truncate ON identity_audit",
    """CREATE TRIGGER identity_audit_no_truncate BEFORE TRUNCATE ON identity_audit
    FOR EACH STATEMENT EXECUTE FUNCTION identity_audit_append_only()""",
    "REVOKE UPDATE, DELETE, TRUNCATE ON identity_audit FROM PUBLIC, CURRENT_USER",
]


def upgrade() -> None:
    bind = op.get_bind()
    identity_audit.create(bind, checkfirst=True)
    identity_audit_youth.create(bind, checkfirst=True)
    if sa.inspect(bind).has_table("contact_card_audit"):
        old = bind.execute(
            sa.text("SELECT caller, youth_id, purpose, granted, at FROM contact_card_audit ORDER BY id")
        )
        prev_hash = GENESIS
        for seq, (caller, youth_id, purpose, granted, at) in enumerate(old.all(), start=1):
            row = {
                "seq": seq,
                "at": at,
                "caller": caller,
                "role": None,
                "sub": None,
                "territory": None,
                "what": "export" if caller.startswith("dpo:") else "contact_card",
                "purpose": purpose,
                "granted": granted,
                "prev_hash": prev_hash,
            }
            prev_hash = row_hash(row)
            bind.execute(identity_audit.insert().values(**row, hash=prev_hash))
            if youth_id != "erased":
                bind.execute(identity_audit_youth.insert().values(seq=seq, youth_id=youth_id))
        op.drop_table("contact_card_audit")
    for statement in GUARD:
        op.execute(statement)


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS identity_audit_no_truncate ON identity_audit")
    op.execute("DROP TRIGGER IF EXISTS identity_audit_no_change ON identity_audit")
    op.execute("DROP FUNCTION IF EXISTS identity_audit_append_only()")
    op.create_table(
        "contact_card_audit",
        sa.Column("id", sa.BigInteger, sa.Identity(always=True), primary_key=True),
        sa.Column("caller", sa.Text, nullable=False),
        sa.Column("youth_id", sa.Text, nullable=False),
        sa.Column("purpose", sa.Text, nullable=False),
        sa.Column("granted", sa.Boolean, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    )
    identity_audit_youth.drop(op.get_bind(), checkfirst=True)
    identity_audit.drop(op.get_bind(), checkfirst=True)
