"""Where SQLite and PostgreSQL differ for the hub's store, and nothing else: connecting, the write
transaction, the schema version, column types, placeholders, data_version and errors.

hubdb.py holds the store's logic and one set of SQL, written in SQLite's dialect where the two
disagree on spelling (``?`` placeholders, REAL, INTEGER, BLOB); `Postgres` translates it. Both
engines give the store the same guarantee: a write transaction runs alone, so its check-then-act
(is the invite unused? then use it) needs no retry. SQLite gets that from ``BEGIN IMMEDIATE``;
PostgreSQL from every write transaction first bumping the one row of ``ladder_meta``, whose row lock
queues writers the way SQLite's file lock does, under READ COMMITTED, where each statement after the
lock sees everything committed before it.
"""

from __future__ import annotations

import functools
import os
import re
import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ladder.errors import LadderError

if TYPE_CHECKING:
    import psycopg

DEVICE_KEY_LEN = 32  # as config.py's device.key
WAIT_S = 10.0  # how long a writer waits for another's transaction before it gives up
URL_SCHEMES = ("postgresql://", "postgres://")
# PostgreSQL's cap on one statement, lock waits included, so it stays above WAIT_S: a writer queues its
# full wait, and a statement stuck on anything else is cancelled instead of holding the store's lock.
STATEMENT_S = WAIT_S + 5.0
# TCP keepalives (libpq's parameters): a server that vanished without a word (a cut path, a powered-off
# host) is noticed in about a minute, not after the kernel's two hours.
_PG_KEEPALIVES: dict[str, Any] = {"keepalives": 1, "keepalives_idle": 30, "keepalives_interval": 10,
                                  "keepalives_count": 3}


class EngineError(LadderError):
    """A database error, in one line, that the store turns into a StoreError (a UserError)."""


class Cursor(Protocol):
    @property
    def rowcount(self) -> int: ...
    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...


class Engine(Protocol):
    """One connection to a hub database; the store holds a lock around it."""

    where: str  # the database, for messages: a path, or a URL without its password

    def execute(self, sql: str, args: Sequence[Any] = ()) -> Cursor: ...
    def begin_write(self) -> None: ...
    def commit(self) -> None: ...
    def rollback(self) -> None: ...
    def schema_version(self) -> int: ...
    def set_schema_version(self, version: int) -> None: ...
    def ddl(self, statement: str) -> str: ...
    def data_version(self) -> int: ...
    def device_key(self, fallback: Callable[[], bytes]) -> bytes: ...
    def copy_aside(self, suffix: str) -> str | None: ...
    def close(self) -> None: ...


def is_url(target: str | os.PathLike[str]) -> bool:
    return isinstance(target, str) and target.startswith(URL_SCHEMES)


def connect(target: str | os.PathLike[str], db_filename: str) -> Engine:
    """The engine for `target`: a postgresql:// URL, a database file, or a folder (its `db_filename`)."""
    if is_url(target):
        return Postgres(str(target))
    path = Path(target)
    return SQLite(path / db_filename if path.is_dir() else path)


def _one_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0].strip() if lines else type(exc).__name__


def redacted(url: str) -> str:
    """`url` without its password (in the authority or as a parameter), for messages and listings."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if parts.password is not None:
        netloc = f"{parts.username or ''}:***@{netloc.rpartition('@')[2]}"
    query = urlencode([(k, "***" if k == "password" else v) for k, v in parse_qsl(parts.query)], safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


class SQLite:
    """One file per hub, in WAL mode so that the hub and the CLI read while one writes; writers queue
    on SQLite's lock for up to WAIT_S. The file is made 0600 from its first byte."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.where = str(path)
        try:
            # SQLite gives the -wal and -shm files the mode of the database file.
            os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
        except OSError as exc:
            raise EngineError(f"cannot open {path}: {exc.strerror}") from None
        self._db = sqlite3.connect(path, timeout=WAIT_S, isolation_level=None, check_same_thread=False)
        try:
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.execute("PRAGMA synchronous = NORMAL")
            self._db.execute("PRAGMA foreign_keys = ON")
        except sqlite3.Error as exc:
            self._db.close()
            raise EngineError(f"cannot use {path} as a hub database: {_one_line(exc)}") from None

    def execute(self, sql: str, args: Sequence[Any] = ()) -> Cursor:
        try:
            return self._db.execute(sql, args)
        except sqlite3.Error as exc:
            raise EngineError(_one_line(exc)) from None

    def begin_write(self) -> None:
        self.execute("BEGIN IMMEDIATE")

    def commit(self) -> None:
        self.execute("COMMIT")

    def rollback(self) -> None:
        self.execute("ROLLBACK")

    def schema_version(self) -> int:
        return int(self.execute("PRAGMA user_version").fetchone()[0])

    def set_schema_version(self, version: int) -> None:
        self.execute(f"PRAGMA user_version = {int(version)}")

    def ddl(self, statement: str) -> str:
        return statement

    def data_version(self) -> int:
        """Changes when another connection commits (PRAGMA data_version)."""
        return int(self.execute("PRAGMA data_version").fetchone()[0])

    def device_key(self, fallback: Callable[[], bytes]) -> bytes:
        """`fallback()`: the key file beside hub.db, so that a copy of hub.db alone cannot check a
        guessed device password."""
        return fallback()

    def copy_aside(self, suffix: str) -> str:
        """A consistent copy of the database (WAL included) beside it, named `hub.db.<suffix>`, 0600; an
        earlier copy of that name is kept as it is (the first upgrade's copy is the one worth having)."""
        copy = self.path.with_name(f"{self.path.name}.{suffix}")
        if copy.exists():
            return str(copy)
        part = copy.with_name(copy.name + ".part")
        try:
            os.close(os.open(part, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600))
            target = sqlite3.connect(part)
            try:
                self._db.backup(target)
            finally:
                target.close()
            os.replace(part, copy)
        except (OSError, sqlite3.Error) as exc:
            part.unlink(missing_ok=True)
            raise EngineError(getattr(exc, "strerror", None) or _one_line(exc)) from None
        return str(copy)

    def close(self) -> None:
        self._db.close()


# PostgreSQL's names for SQLite's column types: 64-bit integers (byte counts pass 2**31), double
# precision times (PostgreSQL's REAL is 32 bits: today's times to the nearest 128 s), bytea.
_PG_TYPES = {"INTEGER": "BIGINT", "REAL": "DOUBLE PRECISION", "BLOB": "BYTEA"}
_PG_TYPE_RE = re.compile(r"\b(INTEGER|REAL|BLOB)\b")

# The engine's own row: the schema version (SQLite's user_version), the count of committed write
# transactions (data_version), and the device key that every hub process on the database shares.
_PG_META = """
CREATE TABLE IF NOT EXISTS ladder_meta (
    one            BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (one),
    schema_version BIGINT NOT NULL DEFAULT 0,
    writes         BIGINT NOT NULL DEFAULT 0,
    device_key     BYTEA CHECK (length(device_key) = 32)
)"""
_PG_SETUP_LOCK = 0x6C6164646572  # pg_advisory_xact_lock key: two processes creating ladder_meta at once


@functools.lru_cache(maxsize=512)
def _pg_sql(sql: str) -> str:
    """SQLite's `?` placeholders as psycopg's `%s`, a `%` as `%%` (the store's SQL has no other `?`)."""
    return sql.replace("%", "%%").replace("?", "%s")


class Postgres:
    """One connection (autocommit; the store opens its write transactions itself) to a database that
    several hub processes and CLIs share.

    data_version is a counter: every write transaction bumps ``ladder_meta.writes`` (the same
    statement that queues it behind other writers), and this connection subtracts its own commits,
    so, as on SQLite, the value changes exactly when another connection commits. Chosen over
    LISTEN/NOTIFY because it needs no second connection kept listening, and cannot miss a change
    made while the connection was down: the hub's 1 s poll reads one row.
    """

    def __init__(self, url: str) -> None:
        import psycopg

        self._url = url
        self._errors: type[Exception] = psycopg.Error
        self.where = redacted(url)
        self._own_writes = 0
        self._in_transaction = False
        self._db = self._connect()
        try:
            self.execute("BEGIN")
            self._in_transaction = True
            try:
                self.execute("SELECT pg_advisory_xact_lock(?)", (_PG_SETUP_LOCK,))
                self.execute(_PG_META)
                self.execute("INSERT INTO ladder_meta DEFAULT VALUES ON CONFLICT DO NOTHING")
                self.execute("COMMIT")
            except BaseException:
                self.execute("ROLLBACK")
                raise
            finally:
                self._in_transaction = False
        except EngineError as exc:
            self._db.close()
            raise EngineError(f"cannot use {self.where} as a hub database: {exc}") from None

    def _connect(self) -> psycopg.Connection[tuple[Any, ...]]:
        import psycopg
        from psycopg.conninfo import conninfo_to_dict

        try:
            given = conninfo_to_dict(self._url)  # the URL's own keepalive settings win
            keepalives = {k: v for k, v in _PG_KEEPALIVES.items() if k not in given}
            db = psycopg.connect(self._url, autocommit=True, connect_timeout=int(WAIT_S), **keepalives)
        except psycopg.Error as exc:
            raise EngineError(f"cannot connect to {self.where}: {_one_line(exc)}") from None
        try:
            db.execute(f"SET lock_timeout = '{int(WAIT_S * 1000)}ms'")
            db.execute(f"SET statement_timeout = '{int(STATEMENT_S * 1000)}ms'")
            db.execute("SET client_min_messages = WARNING")  # no NOTICEs for IF NOT EXISTS
        except psycopg.Error as exc:
            db.close()
            raise EngineError(f"cannot use {self.where} as a hub database: {_one_line(exc)}") from None
        return db

    def execute(self, sql: str, args: Sequence[Any] = ()) -> Cursor:
        try:
            return self._db.execute(_pg_sql(sql), args)
        except self._errors as exc:
            if self._in_transaction or not self._db.broken:
                raise EngineError(_one_line(exc)) from None
        # The connection was lost between transactions (the server restarted, something on the way
        # cut it): this statement is a read or a BEGIN, so nothing is lost by running it once more on
        # a new connection, and a hub that runs for months outlives a database restart.
        self._db.close()
        self._db = self._connect()
        try:
            return self._db.execute(_pg_sql(sql), args)
        except self._errors as exc:
            raise EngineError(_one_line(exc)) from None

    def begin_write(self) -> None:
        self.execute("BEGIN")
        self._in_transaction = True
        try:
            self.execute("UPDATE ladder_meta SET writes = writes + 1")
        except BaseException:
            # A lock or statement timeout here aborts the transaction: left open, it would fail every
            # later statement on this connection.
            self.rollback()
            raise

    def commit(self) -> None:
        try:
            self.execute("COMMIT")
        finally:
            self._in_transaction = False
        self._own_writes += 1

    def rollback(self) -> None:
        try:
            self.execute("ROLLBACK")
        finally:
            self._in_transaction = False

    def schema_version(self) -> int:
        return int(self.execute("SELECT schema_version FROM ladder_meta").fetchone()[0])

    def set_schema_version(self, version: int) -> None:
        self.execute("UPDATE ladder_meta SET schema_version = ?", (version,))

    def ddl(self, statement: str) -> str:
        return _PG_TYPE_RE.sub(lambda m: _PG_TYPES[m[1]], statement)

    def data_version(self) -> int:
        return int(self.execute("SELECT writes FROM ladder_meta").fetchone()[0]) - self._own_writes

    def device_key(self, fallback: Callable[[], bytes]) -> bytes:
        """The database's device key (not `fallback`'s: every hub process on the database must admit
        the same devices), made by the first process to ask, inside a write transaction, so that two
        asking at once agree on one."""
        (key,) = self.execute("SELECT device_key FROM ladder_meta").fetchone()
        if key is None:
            self.begin_write()
            try:
                (key,) = self.execute("SELECT device_key FROM ladder_meta").fetchone()
                if key is None:
                    key = os.urandom(DEVICE_KEY_LEN)
                    self.execute("UPDATE ladder_meta SET device_key = ?", (key,))
            except BaseException:
                self.rollback()
                raise
            self.commit()
        return bytes(key)

    def copy_aside(self, suffix: str) -> None:
        """Nothing: a server's database is the operator's to dump before an upgrade (docs/DEPLOY.md)."""
        return None

    def close(self) -> None:
        self._db.close()
