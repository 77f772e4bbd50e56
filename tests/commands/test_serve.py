"""``ci-app serve`` under real gunicorn, and ``ci-app runners`` against the file and the API."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from ci_app.commands.serve import gunicorn_options
from ci_app.options.server import Settings
from tests.commands.conftest import Served, serve
from tests.web.conftest import GH_SECRET, sign

ADMIN = "serve-admin-token"


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ci_app", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
        check=False,
    )


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    env = {
        "CI_FANOUT_GITHUB_WEBHOOK_SECRET": GH_SECRET,
        "CI_FANOUT_API_TOKEN": ADMIN,
        "CI_FANOUT_LOG_LEVEL": "warning",
    }
    with serve(tmp_path, env) as served:
        yield served


def _post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, object]]:
    req = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def test_gunicorn_options_single_worker_threads() -> None:
    opts = gunicorn_options(Settings(threads=12, port=0))
    assert opts["workers"] == 1 and opts["worker_class"] == "gthread" and opts["threads"] == 12
    assert opts["bind"] == "127.0.0.1:0" and opts["preload_app"] is False


def test_serve_end_to_end_and_runner_tokens(
    served: Served,
) -> None:
    base = served.base
    body = json.dumps({"action": "created", "installation": {"id": 5, "account": {"login": "o"}}})
    hdrs = {
        "X-GitHub-Event": "installation",
        "X-GitHub-Delivery": "e2e-1",
        "X-Hub-Signature-256": sign(body.encode()),
        "Content-Type": "application/json",
    }
    assert _post(base + "/webhooks/github", body.encode(), hdrs)[0] == 202
    assert _post(base + "/webhooks/github", body.encode(), hdrs)[1]["status"] == "duplicate"
    bad = {**hdrs, "X-Hub-Signature-256": "sha256=00", "X-GitHub-Delivery": "e2e-2"}
    assert _post(base + "/webhooks/github", body.encode(), bad)[0] == 401
    # the job worker threads run inside the served process
    for _ in range(100):
        with urllib.request.urlopen(base + "/healthz", timeout=5) as r:
            if json.loads(r.read())["jobs"].get("done") == 1:
                break
        time.sleep(0.1)
    else:
        pytest.fail("installation job did not run")
    # while the app holds the DB, the CLI goes through the admin API
    env = {"CI_FANOUT_API_TOKEN": ADMIN}
    made = _cli("runners", "--server", base, "token", "create", "lab-1", env=env)
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    assert token.startswith("cfr_")
    beat = _post(
        base + "/api/v1/runners/heartbeat",
        json.dumps({"runner": "lab-1", "profile_hash": "h", "load": {}}).encode(),
        {"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    assert beat == (200, {"need_profile": True, "ok": False})
    listed = _cli("runners", "--server", base, "list", "--json", env=env)
    assert json.loads(listed.stdout)["runners"][0]["name"] == "lab-1"
    with urllib.request.urlopen(base + "/runners", timeout=5) as r:
        assert "lab-1" in r.read().decode()
    revoked = _cli("runners", "--server", base, "token", "revoke", "lab-1", env=env)
    assert revoked.returncode == 0 and "revoked 1" in revoked.stdout
    no_admin = _cli("runners", "--server", base, "list", env={"CI_FANOUT_API_TOKEN": "wrong"})
    assert no_admin.returncode == 6 and "401" in no_admin.stderr


def test_runners_cli_offline(tmp_path: Path) -> None:
    db = str(tmp_path / "o.duckdb")
    made = _cli("runners", "--db", db, "token", "create", "box-2", "--provider", "gitlab")
    assert made.returncode == 0 and made.stdout.startswith("cfr_")
    listed = _cli("runners", "--db", db, "list")
    assert "box-2" in listed.stdout and "registered" in listed.stdout
    assert _cli("runners", "--db", db, "token", "revoke", "nobody").returncode == 1
    bad = _cli("serve", "--workers", "3", "--db", db)
    assert bad.returncode == 2 and "one writer" in bad.stderr
