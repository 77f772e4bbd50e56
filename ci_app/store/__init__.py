"""DuckDB store: results history and the app's durable state. All SQL lives here."""

from ci_app.store.db import Job, Runner, Store, is_fatal_error, open_store
from ci_app.store.schema import LATEST_VERSION

__all__ = ["LATEST_VERSION", "Job", "Runner", "Store", "is_fatal_error", "open_store"]
