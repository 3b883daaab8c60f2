"""The vault's `ine` loses its unique index: youth_id is the keyed hash of the normalised INE
(domain/identity.py), so the primary key already keeps each INE once, and the live enrolment
path finds a youth by the youth_id of its INE. The index was maintained for every youth a
campaign hands over, for no lookup.

0001 builds its tables from the live metadata, which no longer declares it: hence IF EXISTS.
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE youth DROP CONSTRAINT IF EXISTS youth_ine_key")


def downgrade() -> None:
    op.execute("ALTER TABLE youth ADD CONSTRAINT youth_ine_key UNIQUE (ine)")
