import os

import pytest


@pytest.fixture
def commit() -> int:
    """The simulated commit number (``CI_FANOUT_DEMO_COMMIT``), 0 when not set."""
    return int(os.environ.get("CI_FANOUT_DEMO_COMMIT", "0"))
