"""DuckDB store: results history and the app's durable state, one module per aggregate.

:mod:`~ci_app.store.database` owns the connection, its lock and the migrations;
:mod:`~ci_app.store.results` (with :mod:`~ci_app.store.ingest`), :mod:`~ci_app.store.jobs`,
:mod:`~ci_app.store.runners`, :mod:`~ci_app.store.identities` and :mod:`~ci_app.store.queue`
hold the SQL of their tables; :mod:`~ci_app.store.explorer` the dashboard's read-only queries.
"""

from ci_app.store.database import Database, is_fatal_error
from ci_app.store.facade import Store, open_store
from ci_app.store.jobs import Job
from ci_app.store.runners import Runner
from ci_app.store.schema import LATEST_VERSION

__all__ = [
    "LATEST_VERSION",
    "Database",
    "Job",
    "Runner",
    "Store",
    "is_fatal_error",
    "open_store",
]
