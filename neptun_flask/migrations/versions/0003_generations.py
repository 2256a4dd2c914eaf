"""generations and their event log

Revision ID: 0003_generations
Revises: 0002_touch_chat
Create Date: 2026-12-03 15:40:00

A generation ("run") shares its id with the assistant message it writes; its events are the
SQL log that readers on other processes tail when Redis is not configured.
"""
from alembic import op
import sqlalchemy as sa

revision = '0003_generations'
down_revision = '0002_touch_chat'
branch_labels = None
depends_on = None


def upgrade():
    """Create generations and generation_events."""
    op.create_table(
        'generations',
        sa.Column('id', sa.Integer(), autoincrement=False, nullable=False),
        sa.Column('chat_id', sa.Integer(), nullable=False),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('stop_requested', sa.Boolean(), nullable=False),
        sa.Column('idempotency_key', sa.String(length=255), nullable=True),
        sa.Column('request_hash', sa.String(length=64), nullable=True),
        sa.Column('protocol', sa.String(length=8), nullable=False),
        sa.Column('heartbeat_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('reader_seen_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("status IN ('running', 'done')", name='ck_generations_status'),
        sa.ForeignKeyConstraint(['chat_id'], ['chats.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['id'], ['chat_messages.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('chat_id', 'idempotency_key', name='uq_generations_chat_id_key'),
    )
    op.create_index('ix_generations_status_heartbeat_at', 'generations',
                    ['status', 'heartbeat_at'], unique=False)
    op.create_table(
        'generation_events',
        sa.Column('generation_id', sa.Integer(), autoincrement=False, nullable=False),
        sa.Column('seq', sa.Integer(), autoincrement=False, nullable=False),
        sa.Column('parts', sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(['generation_id'], ['generations.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('generation_id', 'seq'),
    )


def downgrade():
    """Drop them."""
    op.drop_table('generation_events')
    op.drop_index('ix_generations_status_heartbeat_at', table_name='generations')
    op.drop_table('generations')
