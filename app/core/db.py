"""Engines and sessions. One engine per database URL per process, created on first use.

SQLite (embedded default) is shared by the API and worker processes, so it runs in WAL mode with
a busy timeout: readers never block the writer and a briefly locked database waits, not fails.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

from app.core.config import get_settings


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


@lru_cache(maxsize=8)
def engine_for(url: str, pool_size: int = 10) -> Engine:
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    # No pre-ping (a round trip per checkout on the hot path); stale connections are recycled
    # instead, and a request that hits a dead one fails once and the pool replaces it.
    return create_engine(url, pool_size=pool_size, max_overflow=pool_size, pool_recycle=1800)


def get_engine() -> Engine:
    s = get_settings()
    return engine_for(s.resolved_database_url, s.db_pool_size)


@lru_cache(maxsize=8)
def _factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@lru_cache(maxsize=8)
def _autocommit(engine: Engine) -> Engine:
    return engine.execution_options(isolation_level="AUTOCOMMIT")


def new_session(*, read_only: bool = False) -> Session:
    """`read_only`: each statement commits on its own (no BEGIN/ROLLBACK round trips), for
    requests that only read (GET): every read sees committed data, nothing else changes."""
    engine = get_engine()
    return _factory(_autocommit(engine) if read_only else engine)()


@contextmanager
def read_connection() -> Iterator[Connection]:
    """A pooled autocommit connection for Core reads on hot paths, where an ORM Session (and its
    identity map) would cost more CPU than the query itself."""
    with _autocommit(get_engine()).connect() as conn:
        yield conn


@contextmanager
def session_scope() -> Iterator[Session]:
    """A unit of work outside a request (workers, CLI): commit on success, roll back on error."""
    session = new_session()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
