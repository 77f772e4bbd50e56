"""One place to open the database and reach its aggregates.

A caller takes the aggregate it uses (``store.results`` for a report, ``store.jobs`` for the
worker); :class:`Store` only composes them over one :class:`~ci_app.store.database.Database`.
"""

from __future__ import annotations

from pathlib import Path

from ci_app.store.database import Database, open_database
from ci_app.store.identities import Identities
from ci_app.store.jobs import Jobs
from ci_app.store.queue import DuckQueue
from ci_app.store.results import Results
from ci_app.store.runners import Runners

__all__ = ["Store", "open_store"]


class Store:
    """The aggregates of one database. Create with :func:`open_store`."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.results = Results(db)
        self.jobs = Jobs(db)
        self.runners = Runners(db)
        self.identities = Identities(db, self.results)
        self.queue = DuckQueue(db)

    @property
    def read_only(self) -> bool:
        return self.db.read_only

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_store(path: str | Path = "ci-fanout.duckdb", *, read_only: bool = False) -> Store:
    """Open (creating and migrating) a store; use as ``with open_store(p) as store:``.

    ``":memory:"`` gives a throwaway in-memory store (tests, demos).
    """
    return Store(open_database(path, read_only=read_only))
