"""Fixtures shared by the CI-step tests."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture
def real_app() -> Iterator[tuple[str, Any]]:
    """The real ``ci-app serve`` Flask app on a loopback port (no job worker)."""
    from werkzeug.serving import make_server

    from ci_app.options.server import Settings
    from ci_app.store import open_store
    from ci_app.web.app import create_app

    with open_store(":memory:") as store:
        app = create_app(
            Settings(api_token="admin-t0ken", report_on_results=False),
            store=store,
            start_worker=False,
        )
        server = make_server("127.0.0.1", 0, app, threaded=True)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{server.server_port}", store
        finally:
            server.shutdown()
            thread.join(5)
