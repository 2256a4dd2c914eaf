"""estimated token counts are marked

Revision ID: 0005_usage_estimated
Revises: 0004_api_keys
Create Date: 2026-12-03 16:15:00

A reply whose upstream reported no usage stores this service's estimates: they are marked as
such instead of passing for real counts.
"""
from alembic import op
import sqlalchemy as sa

revision = '0005_usage_estimated'
down_revision = '0004_api_keys'
branch_labels = None
depends_on = None


# Plain ALTER TABLE on both databases (SQLite >= 3.35 drops a column in place): batch mode
# would rebuild chat_messages on SQLite and lose its trigger (migration 0002).


def upgrade():
    """Add chat_messages.usage_estimated."""
    op.add_column('chat_messages', sa.Column('usage_estimated', sa.Boolean(), nullable=True))


def downgrade():
    """Drop it."""
    op.drop_column('chat_messages', 'usage_estimated')
