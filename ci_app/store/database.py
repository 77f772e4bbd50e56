"""The DuckDB database every store aggregate shares: one connection, one lock, migrations.

One writer, many readers: a process opens the file read-write (the app, or a CI step),
others may open it ``read_only=True``. Every call takes the lock (re-entrant), so one
:class:`Database` may be shared by threads and an aggregate may hold it across several
calls (``with db.locked():``) to make a check and a write one step.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb

from ci_app.errors import StoreError
from ci_app.store.schema import LATEST_VERSION, MIGRATIONS

if TYPE_CHECKING:
    # imported by the callers that build Arrow tables, not here: ``ingest --db`` never
    # loads pyarrow (~40 MB of RSS, see docs/artifacts.md)
    import pyarrow as pa  # type: ignore[import-untyped]

__all__ = [
    "Database",
    "first_row",
    "insert_arrow",
    "insert_csv",
    "is_fatal_error",
    "now_utc",
    "open_database",
]

_SIZE_RE = re.compile(r"^[0-9]+(\.[0-9]+)?\s*([KMGT]i?B|B)?$", re.IGNORECASE)
#: tables whose size ``count_rows`` reports (tests, benchmarks, ``/metrics``)
_COUNTED = frozenset({"runs", "shards", "test_results", "metrics", "jobs", "deliveries"})


def now_utc() -> datetime:
    """Now as a naive UTC datetime (DuckDB ``TIMESTAMP``)."""
    return datetime.now(UTC).replace(tzinfo=None)


def first_row(con: duckdb.DuckDBPyConnection, sql: str, params: Any = None) -> Any:
    """First row or None, consuming the whole result (a half-read result blocks ``con.sql``)."""
    rows = con.execute(sql, params).fetchall()
    return rows[0] if rows else None


def insert_arrow(con: duckdb.DuckDBPyConnection, table: str, data: pa.Table) -> None:
    """Append an Arrow table whose columns are named like ``table``'s (one statement)."""
    name = f"_bulk_{table}"
    con.register(name, data)
    try:
        cols = ", ".join(data.schema.names)
        con.execute(f"INSERT INTO {table} ({cols}) SELECT {cols} FROM {name}")  # noqa: S608
    finally:
        con.unregister(name)


def insert_csv(
    con: duckdb.DuckDBPyConnection,
    table: str,
    path: str | Path,
    columns: Mapping[str, str],
    constants: Mapping[str, Any] | None = None,
    *,
    max_line_bytes: int = 0,
) -> None:
    """Append the rows of a CSV file (one statement), without pyarrow or numpy.

    The file has no header and one field per ``columns`` entry (name -> SQL type, in
    order), every string quoted with ``""`` doubled, NULL an empty field; a quoted
    empty field is ''. ``constants`` are columns with the same value in every row (bound
    parameters). ``max_line_bytes`` raises DuckDB's line limit (2 MB) for longer rows.
    """
    fixed = dict(constants or {})
    names = ", ".join([*fixed, *columns])
    values = ", ".join(["?"] * len(fixed) + list(columns))
    spec = ", ".join(f"'{name}': '{sql_type}'" for name, sql_type in columns.items())
    limit = max(max_line_bytes + 1024, 2_097_152)
    con.execute(
        f"INSERT INTO {table} ({names}) SELECT {values} FROM read_csv(?, "  # noqa: S608
        f"columns = {{{spec}}}, header = false, auto_detect = false, delim = ',', "
        f"quote = '\"', escape = '\"', allow_quoted_nulls = false, new_line = '\\n', "
        f"max_line_size = {limit})",
        [*fixed.values(), str(path)],
    )


class Database:
    """The connection and its lock. Create with :func:`open_database`."""

    def __init__(self, con: duckdb.DuckDBPyConnection, *, read_only: bool = False) -> None:
        self._con = con
        self._lock = threading.RLock()
        self.read_only = read_only

    # ------------------------------------------------------------------ access
    @contextmanager
    def locked(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """The connection under the lock, each statement committed on its own."""
        with self._lock:
            yield self._con

    @contextmanager
    def transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """The connection under the lock inside one transaction (rolled back on error)."""
        with self._lock:
            self._con.execute("BEGIN TRANSACTION")
            try:
                yield self._con
            except BaseException:
                self._con.execute("ROLLBACK")
                raise
            self._con.execute("COMMIT")

    def execute(self, sql: str, params: Any = None) -> None:
        """Run one statement (its own transaction)."""
        with self._lock:
            self._con.execute(sql, params)

    def one(self, sql: str, params: Any = None) -> Any:
        """First row of a query, or None."""
        with self._lock:
            return first_row(self._con, sql, params)

    def all(self, sql: str, params: Any = None) -> list[Any]:
        """All rows of a query."""
        with self._lock:
            return self._con.execute(sql, params).fetchall()

    def arrow(self, sql: str, params: Any = None) -> pa.Table:
        """A query's result as an Arrow table (columnar; for the large history reads)."""
        with self._lock:
            return self._con.sql(sql, params=params).to_arrow_table()

    def count_rows(self, table: str) -> int:
        if table not in _COUNTED:
            raise StoreError(f"unknown table {table!r}")
        row = self.one(f"SELECT count(*) FROM {table}")  # noqa: S608 - checked name
        return int(row[0]) if row else 0

    # ------------------------------------------------------------------ settings
    def set_wal_autocheckpoint(self, size: str) -> None:
        """Checkpoint when the write-ahead log reaches ``size`` (e.g. ``16MB``)."""
        if not _SIZE_RE.match(size.strip()):
            raise StoreError(f"not a size: {size!r} (use e.g. 16MB)")
        with self._lock:
            self._con.execute(f"SET wal_autocheckpoint = '{size.strip()}'")

    def limit_memory(self, memory_limit_mb: int) -> None:
        """Cap DuckDB's own buffers for a process that only ingests (like the CLI): DuckDB
        otherwise keeps up to 80 % of RAM. Such a process also checkpoints every 64 MB of
        write-ahead log, not 16: appending 1M rows in small commits otherwise takes 40
        checkpoints, +35 % time (``bench/ingest_memory.py``), for no less memory."""
        with self._lock:
            self._con.execute(f"SET memory_limit = '{int(memory_limit_mb)}MB'")
            self._con.execute("SET threads = 1")
            self._con.execute("SET preserve_insertion_order = false")
            self._con.execute("SET checkpoint_threshold = '64MB'")

    # ------------------------------------------------------------------ lifecycle
    def close(self) -> None:
        with self._lock:
            self._con.close()

    def migrate(self) -> int:
        """Apply pending migrations in order; returns the schema version."""
        with self._lock:
            self._con.execute(
                "CREATE TABLE IF NOT EXISTS schema_version ("
                "version INTEGER PRIMARY KEY, description VARCHAR, applied_at TIMESTAMP)"
            )
            current = self.schema_version()
            if current > LATEST_VERSION:
                raise StoreError(
                    f"database schema version {current} is newer than this ci-fanout "
                    f"({LATEST_VERSION}); upgrade ci-fanout or use another --db"
                )
            for version, description, sql in MIGRATIONS:
                if version <= current:
                    continue
                with self.transaction() as tx:
                    tx.execute(sql)
                    tx.execute(
                        "INSERT INTO schema_version VALUES (?, ?, ?)",
                        [version, description, now_utc()],
                    )
            return LATEST_VERSION

    def schema_version(self) -> int:
        """Applied schema version; 0 for an empty database."""
        try:
            row = self.one("SELECT coalesce(max(version), 0) FROM schema_version")
        except duckdb.CatalogException:
            return 0
        return int(row[0]) if row else 0


def is_fatal_error(exc: BaseException) -> bool:
    """True when DuckDB says the database must be restarted (e.g. a checkpoint failed on a
    full disk): every later call on this connection fails, so the process must start over."""
    if isinstance(exc, duckdb.FatalException):
        return True
    return isinstance(exc, duckdb.Error) and "database has been invalidated" in str(exc)


def open_database(path: str | Path, *, read_only: bool = False) -> Database:
    """Open (creating and migrating) a database; ``":memory:"`` gives a throwaway one."""
    target = str(path)
    if target != ":memory:":
        parent = Path(target).parent
        if not read_only:
            parent.mkdir(parents=True, exist_ok=True)
        elif not Path(target).exists():
            raise StoreError(f"no database at {target}; run `ci-app ingest --db {target}` first")
    try:
        con = duckdb.connect(target, read_only=read_only)
    except duckdb.Error as exc:
        raise StoreError(
            f"cannot open {target}: {exc} (another process may hold it for writing; "
            "DuckDB allows one writer)"
        ) from exc
    db = Database(con, read_only=read_only)
    if read_only:
        if db.schema_version() < LATEST_VERSION:
            db.close()
            raise StoreError(f"{target} needs migrating; open it once read-write")
    else:
        db.migrate()
    return db
