"""chats.updated_at follows its newest message (trigger)

Revision ID: 0002_touch_chat
Revises: 0001_initial
Create Date: 2026-11-22 05:05:00

The database moves a chat's ``updated_at`` to the ``created_at`` of every message inserted
into it, so each message insert is one statement for the application, whoever inserts.
"""
from alembic import op

revision = '0002_touch_chat'
down_revision = '0001_initial'
branch_labels = None
depends_on = None

_SQLITE = """
CREATE TRIGGER chat_messages_touch_chat AFTER INSERT ON chat_messages
BEGIN
    UPDATE chats SET updated_at = NEW.created_at WHERE id = NEW.chat_id;
END
"""

_POSTGRESQL = ("""
CREATE FUNCTION chat_messages_touch_chat() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE chats SET updated_at = NEW.created_at WHERE id = NEW.chat_id;
    RETURN NULL;
END
$$
""", """
CREATE TRIGGER chat_messages_touch_chat AFTER INSERT ON chat_messages
FOR EACH ROW EXECUTE FUNCTION chat_messages_touch_chat()
""")


def upgrade():
    """Create the trigger (SQLite and PostgreSQL)."""
    if op.get_bind().dialect.name == 'sqlite':
        op.execute(_SQLITE)
    else:
        for statement in _POSTGRESQL:
            op.execute(statement)


def downgrade():
    """Drop the trigger."""
    op.execute('DROP TRIGGER chat_messages_touch_chat'
               + ('' if op.get_bind().dialect.name == 'sqlite' else ' ON chat_messages'))
    if op.get_bind().dialect.name != 'sqlite':
        op.execute('DROP FUNCTION chat_messages_touch_chat()')
