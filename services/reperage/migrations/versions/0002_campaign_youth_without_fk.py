"""campaign_youth without its foreign key to campaign: the ingest writes a million outcome rows
per campaign, and checking each against campaign cost a third of every chunk's write. The
ingest creates the campaign row before any outcome, and nothing deletes campaigns.

0001 builds its tables from the live metadata, which no longer declares the key: on a new
database there is nothing to drop, hence IF EXISTS.
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE campaign_youth DROP CONSTRAINT IF EXISTS campaign_youth_campaign_id_fkey")


def downgrade() -> None:
    op.execute(
        "ALTER TABLE campaign_youth ADD CONSTRAINT campaign_youth_campaign_id_fkey FOREIGN KEY (campaign_id) "
        "REFERENCES campaign (campaign_id) ON DELETE CASCADE"
    )
