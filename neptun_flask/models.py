"""Typed SQLAlchemy models: users, sessions, chats, chat messages and their generations."""
from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship
from sqlalchemy.types import DateTime, TypeDecorator

from .extensions import db


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(timezone.utc)


class UTCDateTime(TypeDecorator):
    """A timestamp stored as UTC and always read back timezone-aware (SQLite drops tzinfo)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        """Store aware datetimes converted to UTC."""
        if value is not None and value.tzinfo is not None:
            value = value.astimezone(timezone.utc)
        return value

    def process_result_value(self, value, dialect):
        """Attach UTC to naive values read from SQLite; convert PostgreSQL's session time zone."""
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


class User(db.Model):
    """An account, identified by its email."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    sessions: Mapped[list["Session"]] = relationship(
        back_populates="user", cascade="all, delete-orphan", passive_deletes=True)
    chats: Mapped[list["Chat"]] = relationship(
        back_populates="user", cascade="all, delete-orphan", passive_deletes=True)


class Session(db.Model):
    """A login session; only the SHA-256 of its cookie token is stored."""

    __tablename__ = "sessions"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)

    user: Mapped[User] = relationship(back_populates="sessions")


class Chat(db.Model):
    """A conversation owned by a user, bound to one catalog model id."""

    __tablename__ = "chats"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(255))
    model: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    user: Mapped[User] = relationship(back_populates="chats")
    messages: Mapped[list["ChatMessage"]] = relationship(
        back_populates="chat", cascade="all, delete-orphan", passive_deletes=True,
        order_by="ChatMessage.id")

    __table_args__ = (Index("ix_chats_user_id_updated_at", "user_id", "updated_at"),)


class ChatMessage(db.Model):
    """One message of a chat; assistant replies also record model, finish reason and usage."""

    __tablename__ = "chat_messages"

    id: Mapped[int] = mapped_column(primary_key=True)
    chat_id: Mapped[int] = mapped_column(ForeignKey("chats.id", ondelete="CASCADE"))
    actor: Mapped[str] = mapped_column(String(16))
    message: Mapped[str] = mapped_column(Text)
    model: Mapped[str | None] = mapped_column(String(255))
    finish_reason: Mapped[str | None] = mapped_column(String(32))
    prompt_tokens: Mapped[int | None]
    completion_tokens: Mapped[int | None]
    # The counts are this service's estimates (the upstream reported none); null before 0005.
    usage_estimated: Mapped[bool | None]
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    chat: Mapped[Chat] = relationship(back_populates="messages")

    __table_args__ = (
        CheckConstraint("actor IN ('user', 'assistant')", name="ck_chat_messages_actor"),
        Index("ix_chat_messages_chat_id_id", "chat_id", "id"),
    )


class Generation(db.Model):
    """The run that generates an assistant message (same id): its state while it streams, the
    heartbeat of the process that owns it, a stop request, and the retry key of its turn."""

    __tablename__ = "generations"

    id: Mapped[int] = mapped_column(ForeignKey("chat_messages.id", ondelete="CASCADE"),
                                    primary_key=True, autoincrement=False)
    chat_id: Mapped[int] = mapped_column(ForeignKey("chats.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(16))
    stop_requested: Mapped[bool] = mapped_column(default=False)
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    request_hash: Mapped[str | None] = mapped_column(String(64))
    protocol: Mapped[str] = mapped_column(String(8))   # what a resume answers in by default
    heartbeat_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    reader_seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (
        CheckConstraint("status IN ('running', 'done')", name="ck_generations_status"),
        UniqueConstraint("chat_id", "idempotency_key", name="uq_generations_chat_id_key"),
        Index("ix_generations_status_heartbeat_at", "status", "heartbeat_at"),
    )


class GenerationEvent(db.Model):
    """One batch of a generation's parts (a JSON array), in the SQL log readers tail."""

    __tablename__ = "generation_events"

    generation_id: Mapped[int] = mapped_column(
        ForeignKey("generations.id", ondelete="CASCADE"), primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    parts: Mapped[str] = mapped_column(Text)


class ApiKey(db.Model):
    """A user's key for the OpenAI-compatible API: only its SHA-256 is stored, with a
    recognisable prefix to tell keys apart, and the tokens its requests used."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(255))
    prefix: Mapped[str] = mapped_column(String(16))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    prompt_tokens: Mapped[int] = mapped_column(default=0)
    completion_tokens: Mapped[int] = mapped_column(default=0)
