"""The SQL of generations: starting a turn, keeping its row up to date, ending and reaping it.

A generation shares its id with the assistant message it writes. The message row exists from
the moment the generation starts (empty, ``finish_reason`` null), so the stream's message id
names it and a process that dies leaves its text behind.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import bindparam, delete, func, insert, select, tuple_, update

from ..chats.store import message_row
from ..models import Chat, ChatMessage, Generation, GenerationEvent, utcnow

_messages = ChatMessage.__table__
_generations = Generation.__table__
_events = GenerationEvent.__table__

RUNNING = "running"
DONE = "done"
#: How long a finished generation's SQL log is kept for readers still catching up.
EVENTS_KEPT = timedelta(seconds=60)

_chats = Chat.__table__
_newer = _messages.alias("newer")
_NEWEST_ID = (select(func.max(_newer.c.id)).where(_newer.c.chat_id == _chats.c.id)
              .correlate(_chats).scalar_subquery())
#: A chat's newest message (id, actor, text), as ``with_newest_message`` joins it.
HEAD_COLUMNS = (_messages.c.id.label("head_id"), _messages.c.actor.label("head_actor"),
                _messages.c.message.label("head_text"))


def with_newest_message(joined):
    """``joined`` (a join holding the chats table) outer-joined to each chat's newest message
    (``HEAD_COLUMNS``): the repeated-turn check of a chat request reads it."""
    return joined.outerjoin(_messages, _messages.c.id == _NEWEST_ID)


# One multi-row INSERT: rows are told apart by (chat, actor) and their ids' order (a turn's
# rows, and a chat's turns, are inserted in order).
_INSERT_MESSAGES = insert(_messages).returning(_messages.c.id, _messages.c.chat_id,
                                               _messages.c.actor)
_INSERT_GENERATIONS = insert(_generations)
_FINISH_MESSAGE = (update(_messages).where(_messages.c.id == bindparam("row_id"))
                   .values(message=bindparam("text"), finish_reason=bindparam("reason"),
                           prompt_tokens=bindparam("prompt"),
                           completion_tokens=bindparam("completion"),
                           usage_estimated=bindparam("estimated"),
                           model=bindparam("model"), updated_at=bindparam("now")))
_FINISH_GENERATION = (update(_generations).where(_generations.c.id == bindparam("row_id"))
                      .values(status=DONE, updated_at=bindparam("now")))
_SYNC_TEXT = (update(_messages).where(_messages.c.id == bindparam("row_id"),
                                      _messages.c.finish_reason.is_(None))
              .values(message=bindparam("text"), updated_at=bindparam("now")))


@dataclass(frozen=True, slots=True)
class Turn:
    """What a chat request asks to store and run."""

    text: str | None            # the last user message, unless it repeats the chat's last one
    model_id: str
    key: str | None = None      # the user message's id or the Idempotency-Key header
    request_hash: str | None = None
    regenerate: bool = False    # replace the chat's last reply instead of adding a turn
    protocol: str = "data"      # the client protocol it was asked in


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of a turn: ``new`` (a generation to run, its id), ``attach`` (the same turn
    is running: read it), ``replay`` (it finished: ``reply`` is its stored row), ``conflict``."""

    kind: str
    generation_id: int | None = None
    reply: dict | None = None


def clean_text(text: str) -> str:
    """Text a database stores: PostgreSQL refuses NUL in text columns."""
    return text.replace("\x00", "") if "\x00" in text else text


def start_turns(connection, turns: list[tuple[int, Turn]],
                heads: dict[int, tuple]) -> list[Outcome]:
    """For (chat id, turn) pairs of owned chats, in the caller's transaction (``heads``: chat
    id -> its owner's user id and its newest message as (id, actor, text) or None): a repeated
    key attaches, replays or conflicts; otherwise the user message (unless it repeats the
    chat's last message with no reply after it) and an empty assistant message with its
    running generation are inserted."""
    existing = _keyed(connection, [(chat_id, turn.key) for chat_id, turn in turns if turn.key])
    outcomes: list[Outcome | None] = [None] * len(turns)
    rows, owners, replaced = [], [], []
    for index, (chat_id, turn) in enumerate(turns):
        found = existing.get((chat_id, turn.key)) if turn.key else None
        if found is not None:
            outcomes[index] = _repeat(found, turn)
            continue
        head = heads[chat_id][1]
        if turn.regenerate:
            if head is not None and head[1] == "assistant":
                replaced.append(head[0])
        elif turn.text is not None and not (head and head[1:] == ("user", turn.text)):
            rows.append(message_row(chat_id, "user", turn.text))
            owners.append(None)
        reply = message_row(chat_id, "assistant", "", model=turn.model_id)
        if owners and owners[-1] is None:   # one turn, one time (the chat's updated_at)
            reply["created_at"] = reply["updated_at"] = rows[-1]["created_at"]
        rows.append(reply)
        owners.append(index)
    if replaced:
        connection.execute(delete(_messages).where(_messages.c.id.in_(replaced)))
    if not rows:
        return outcomes
    inserted: dict[tuple, list[int]] = {}
    for row_id, chat_id, actor in sorted(connection.execute(_INSERT_MESSAGES, rows)):
        inserted.setdefault((chat_id, actor), []).append(row_id)
    now = utcnow()
    generations = []
    for row, index in zip(rows, owners):
        if index is None:
            continue
        row_id = inserted[row["chat_id"], "assistant"].pop(0)
        chat_id, turn = turns[index]
        generations.append({"id": row_id, "chat_id": chat_id, "status": RUNNING,
                            "stop_requested": False, "idempotency_key": turn.key,
                            "request_hash": turn.request_hash, "protocol": turn.protocol,
                            "heartbeat_at": now,
                            "reader_seen_at": None, "created_at": now, "updated_at": now})
        outcomes[index] = Outcome("new", row_id)
    connection.execute(_INSERT_GENERATIONS, generations)
    return outcomes


def _keyed(connection, pairs: list[tuple[int, str]]) -> dict[tuple, dict]:
    """Generations by (chat id, key), with their message's stored reply."""
    if not pairs:
        return {}
    query = (select(_generations.c.id, _generations.c.chat_id, _generations.c.idempotency_key,
                    _generations.c.request_hash, _generations.c.status, _messages.c.message,
                    _messages.c.finish_reason, _messages.c.prompt_tokens,
                    _messages.c.completion_tokens)
             .join(_messages, _messages.c.id == _generations.c.id)
             .where(tuple_(_generations.c.chat_id, _generations.c.idempotency_key).in_(pairs)))
    return {(row.chat_id, row.idempotency_key): row._asdict()
            for row in connection.execute(query)}


def _repeat(found: dict, turn: Turn) -> Outcome:
    """The outcome of a turn whose key is already stored."""
    if found["request_hash"] != turn.request_hash:
        return Outcome("conflict", found["id"])
    if found["status"] == RUNNING:
        return Outcome("attach", found["id"])
    return Outcome("replay", found["id"], found)


def finish(engine, items: list[dict]) -> list[None]:
    """Store finished replies (row_id, text, reason, prompt, completion, estimated, and the
    model that answered: a fallback's id when one did) and end their generations, in one
    transaction (a batched step)."""
    now = utcnow()
    rows = sorted(({**item, "text": clean_text(item["text"]), "now": now} for item in items),
                  key=lambda row: row["row_id"])
    with engine.begin() as connection:
        connection.execute(_FINISH_MESSAGE, rows)
        connection.execute(_FINISH_GENERATION, rows)
    return [None] * len(items)


def discard(engine, generation_id: int) -> None:
    """Forget a generation that never streamed (its upstream failed first): its message goes,
    the user's message stays, so a retry of the turn is not stored twice."""
    with engine.begin() as connection:
        connection.execute(delete(_messages).where(_messages.c.id == generation_id))


def sync(engine, texts: dict[int, str], running: list[int]) -> None:
    """Bring running replies' stored text up to date and mark their owner alive."""
    now = utcnow()
    with engine.begin() as connection:
        if texts:
            connection.execute(_SYNC_TEXT, [
                {"row_id": row_id, "text": clean_text(text), "now": now}
                for row_id, text in sorted(texts.items())])
        if running:
            connection.execute(update(_generations).where(_generations.c.id.in_(running))
                               .values(heartbeat_at=now))


def running(engine, chat_id: int) -> list[tuple[int, str]]:
    """The chat's running generations (id, protocol), newest first."""
    with engine.connect() as connection:
        return [tuple(row) for row in connection.execute(
            select(_generations.c.id, _generations.c.protocol)
            .where(_generations.c.chat_id == chat_id, _generations.c.status == RUNNING)
            .order_by(_generations.c.id.desc()))]


def state(engine, generation_id: int) -> dict | None:
    """A generation's status and heartbeat, and its message's stored reply; None once
    deleted."""
    query = (select(_generations.c.status, _generations.c.heartbeat_at, _messages.c.message,
                    _messages.c.finish_reason, _messages.c.prompt_tokens,
                    _messages.c.completion_tokens)
             .join(_messages, _messages.c.id == _generations.c.id)
             .where(_generations.c.id == generation_id))
    with engine.connect() as connection:
        row = connection.execute(query).first()
    return row._asdict() if row is not None else None


def reap(engine, stale_after: float) -> list[int]:
    """End the running generations whose owner stopped beating for ``stale_after`` seconds
    (its process died): their messages keep their text and finish ``interrupted``. Also drops
    the SQL log of generations finished a while ago."""
    now = utcnow()
    with engine.begin() as connection:
        ids = list(connection.scalars(
            update(_generations)
            .where(_generations.c.status == RUNNING,
                   _generations.c.heartbeat_at < now - timedelta(seconds=stale_after))
            .values(status=DONE, updated_at=now).returning(_generations.c.id)))
        if ids:
            connection.execute(update(_messages).where(_messages.c.id.in_(ids),
                                                       _messages.c.finish_reason.is_(None))
                               .values(finish_reason="interrupted", updated_at=now))
        connection.execute(delete(_events).where(_events.c.generation_id.in_(
            select(_generations.c.id).where(_generations.c.status == DONE,
                                            _generations.c.updated_at < now - EVENTS_KEPT))))
    return ids
