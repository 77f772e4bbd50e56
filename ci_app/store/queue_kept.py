"""What never changes in a queue run, read once and kept by :class:`~ci_app.store.queue.DuckQueue`.

A run's config and its items' tests are fixed when the run is created, and runs are never
deleted or re-created; so a lease or a completion need not read them again, only the rows that
change (leases, counters, results). Callers hold the database lock, and read through the
connection of their transaction: what is kept was committed before.
"""

from __future__ import annotations

from collections import OrderedDict

import duckdb

from ci_app.matrix.queue import QueueConfig
from ci_app.store.queue_tables import pool_tests, run_config

__all__ = ["CACHED_TESTS", "KeptRuns", "PoolTests"]

#: test ids kept over the pools of the runs being served (about 100 bytes each; the least
#: recently used pools go first, the one in use stays)
CACHED_TESTS = 500_000
CACHED_RUNS = 1024


class PoolTests:
    """A pool's items as created: each item's tests by ``idx``, each test's item."""

    __slots__ = ("owner", "tests")

    def __init__(self, tests: dict[int, tuple[str, ...]]) -> None:
        self.tests = tests
        self.owner = {t: idx for idx, ids in tests.items() for t in ids}

    def __len__(self) -> int:
        return len(self.owner)


class KeptRuns:
    """Runs' configs and pools' tests, least recently used out first."""

    def __init__(self) -> None:
        self._configs: OrderedDict[str, QueueConfig] = OrderedDict()
        self._tests: OrderedDict[tuple[str, str], PoolTests] = OrderedDict()
        self._n_tests = 0

    def __len__(self) -> int:
        """Pools kept."""
        return len(self._tests)

    def config(self, con: duckdb.DuckDBPyConnection, run: str) -> QueueConfig:
        """The run's config; :class:`~ci_app.matrix.queue.LeaseError` for an unknown run."""
        config = self._configs.get(run)
        if config is None:
            config = run_config(con, run)  # raises for an unknown run: nothing is kept
            self._configs[run] = config
            if len(self._configs) > CACHED_RUNS:
                self._configs.popitem(last=False)
        return config

    def pool(self, con: duckdb.DuckDBPyConnection, run: str, pool: str) -> PoolTests:
        """The tests of a pool the caller knows exists."""
        key = (run, pool)
        got = self._tests.get(key)
        if got is None:
            got = PoolTests(pool_tests(con, run, pool))
            self._tests[key] = got
            self._n_tests += len(got)
            while self._n_tests > CACHED_TESTS and len(self._tests) > 1:
                self._n_tests -= len(self._tests.popitem(last=False)[1])
        else:
            self._tests.move_to_end(key)
        return got
