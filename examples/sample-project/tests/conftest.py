import os

import pytest


@pytest.fixture
def commit() -> int:
    """The simulated commit number (``CI_FANOUT_DEMO_COMMIT``), 0 when not set."""
    return int(os.environ.get("CI_FANOUT_DEMO_COMMIT", "0"))


# The browser tests need Chromium and a runner labelled webgpu-sw: `make demo` probes the
# browser for that label and sets CI_FANOUT_DEMO_BROWSER=1; elsewhere they are not collected.
collect_ignore = [] if os.environ.get("CI_FANOUT_DEMO_BROWSER") == "1" else ["test_webgpu.py"]
