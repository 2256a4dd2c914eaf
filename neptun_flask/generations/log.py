"""The shared log of generations and their stop signal: Redis when ``REDIS_URL`` is set, else
the SQL database (SQLite serves every worker of one machine, PostgreSQL every instance).

Writers append batches (a JSON array of parts each) for many generations at once; readers on
other processes tail one generation's batches from a cursor. Both stores keep the same order
of batches per generation as they were appended.
"""
from __future__ import annotations

import time
from datetime import timedelta

from sqlalchemy import insert, select, update

from ..models import Generation, GenerationEvent, utcnow

_generations = Generation.__table__
_events = GenerationEvent.__table__
_INSERT_EVENTS = insert(_events)

#: Seconds a process polls the SQL log between reads (Redis blocks instead).
POLL_SECONDS = 0.25
#: A reader tailing from another process marks itself present this often (seconds); a detached
#: generation counts a mark younger than twice this as a reader.
PRESENCE_SECONDS = 2.0


class SqlLog:
    """The log in the ``generation_events`` table; the stop signal in ``generations``."""

    start = 0    # the cursor before the first batch: batches are numbered from 1

    def __init__(self, engine):
        self._engine = engine

    def append(self, batches: list[tuple[int, int, bytes]]) -> None:
        """Store (generation id, batch number, JSON parts) batches in one transaction."""
        if not batches:
            return
        with self._engine.begin() as connection:
            connection.execute(_INSERT_EVENTS, [
                {"generation_id": gid, "seq": seq, "parts": data.decode()}
                for gid, seq, data in batches])

    def read(self, generation_id: int, cursor: int) -> list[tuple[int, bytes]]:
        """The batches after ``cursor``, in order, up to the first one not yet committed;
        waits a poll interval when there is none."""
        query = (select(_events.c.seq, _events.c.parts)
                 .where(_events.c.generation_id == generation_id, _events.c.seq > cursor)
                 .order_by(_events.c.seq))
        with self._engine.connect() as connection:
            rows = connection.execute(query).all()
        found = []
        for seq, data in rows:
            if seq != cursor + 1:
                break   # a gap: an earlier batch's transaction has not committed yet
            found.append((seq, data.encode()))
            cursor = seq
        if not found:
            time.sleep(POLL_SECONDS)
        return found

    def ended(self, generation_ids: list[int]) -> None:
        """Nothing to do: the reaper drops finished generations' batches after a while."""

    def request_stop(self, generation_id: int) -> None:
        """Ask the owner of a generation, wherever it runs, to stop it."""
        with self._engine.begin() as connection:
            connection.execute(update(_generations).where(_generations.c.id == generation_id)
                               .values(stop_requested=True))

    def stop_requested(self, generation_ids: list[int]) -> set[int]:
        """Which of these generations someone asked to stop."""
        if not generation_ids:
            return set()
        with self._engine.connect() as connection:
            return set(connection.scalars(select(_generations.c.id).where(
                _generations.c.id.in_(generation_ids), _generations.c.stop_requested)))

    def mark_reader(self, generation_id: int) -> None:
        """A reader on this process follows the generation."""
        with self._engine.begin() as connection:
            connection.execute(update(_generations).where(_generations.c.id == generation_id)
                               .values(reader_seen_at=utcnow()))

    def has_reader(self, generation_id: int) -> bool:
        """Whether a reader on another process marked itself present lately."""
        with self._engine.connect() as connection:
            seen = connection.scalar(select(_generations.c.reader_seen_at)
                                     .where(_generations.c.id == generation_id))
        return seen is not None and utcnow() - seen < timedelta(seconds=2 * PRESENCE_SECONDS)


class RedisLog:
    """A Redis stream per generation (trimmed, expiring once it ends); a key per stop signal
    and per remote reader's presence."""

    start = "0"
    #: Most batches one stream keeps (a batch is at least ~0.1 s of a reply).
    MAX_BATCHES = 20_000
    #: Seconds an ended generation's stream is kept for readers still catching up.
    KEPT_SECONDS = 60
    #: Seconds a stop signal lives.
    STOP_SECONDS = 3600

    def __init__(self, client, prefix: str):
        self._redis = client
        self._prefix = prefix

    def _key(self, generation_id: int, what: str) -> str:
        return f"{self._prefix}gen:{generation_id}:{what}"

    def append(self, batches: list[tuple[int, int, bytes]]) -> None:
        """Add each batch to its generation's stream, in one round trip."""
        if not batches:
            return
        pipe = self._redis.pipeline(transaction=False)
        for gid, seq, data in batches:
            if seq == 1:   # a row id can be used again (SQLite): never continue an old stream
                pipe.delete(self._key(gid, "log"))
            pipe.xadd(self._key(gid, "log"), {"p": data}, maxlen=self.MAX_BATCHES,
                      approximate=True)
        pipe.execute()

    def read(self, generation_id: int, cursor: str) -> list[tuple[str, bytes]]:
        """The batches after ``cursor``, blocking up to a poll interval for the next one."""
        key = self._key(generation_id, "log")
        found = self._redis.xread({key: cursor}, block=int(POLL_SECONDS * 1000), count=500)
        if not found:
            return []
        return [(entry_id if isinstance(entry_id, str) else entry_id.decode(), fields[b"p"])
                for entry_id, fields in found[0][1]]

    def ended(self, generation_ids: list[int]) -> None:
        """Let the streams of ended generations expire."""
        pipe = self._redis.pipeline(transaction=False)
        for gid in generation_ids:
            pipe.expire(self._key(gid, "log"), self.KEPT_SECONDS)
        pipe.execute()

    def request_stop(self, generation_id: int) -> None:
        """Ask the owner of a generation, wherever it runs, to stop it."""
        self._redis.set(self._key(generation_id, "stop"), b"1", ex=self.STOP_SECONDS)

    def stop_requested(self, generation_ids: list[int]) -> set[int]:
        """Which of these generations someone asked to stop (one round trip)."""
        if not generation_ids:
            return set()
        flags = self._redis.mget([self._key(gid, "stop") for gid in generation_ids])
        return {gid for gid, flag in zip(generation_ids, flags) if flag}

    def mark_reader(self, generation_id: int) -> None:
        """A reader on this process follows the generation."""
        self._redis.set(self._key(generation_id, "reader"), b"1",
                        ex=int(2 * PRESENCE_SECONDS) + 1)

    def has_reader(self, generation_id: int) -> bool:
        """Whether a reader on another process marked itself present lately."""
        return bool(self._redis.exists(self._key(generation_id, "reader")))


def make_log(config, engine):
    """The configured log: Redis at ``REDIS_URL``, or the SQL database."""
    url = config.get("REDIS_URL")
    if not url:
        return SqlLog(engine)
    import redis  # only when configured

    return RedisLog(redis.Redis.from_url(url, socket_timeout=10, socket_connect_timeout=5,
                                         health_check_interval=30),
                    config.get("REDIS_KEY_PREFIX", "neptun:"))
