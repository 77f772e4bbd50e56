"""The server heals itself (issue 14), under real gunicorn: a fatal DuckDB error (a checkpoint
that cannot grow the database file, as on a full disk) makes the worker process exit non-zero,
``/healthz`` fails meanwhile, gunicorn starts a fresh worker, and no acknowledged delivery is
lost. Also: an unauthenticated 62 MB upload is answered before it is sent, without growing
the worker."""

from __future__ import annotations

import json
import os
import resource
import signal
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from ci_app.commands.serve import EXIT_STORE_FATAL
from tests.commands.conftest import Served, serve
from tests.web.conftest import GH_SECRET, WEBHOOKS, sign

ADMIN = "heal-admin-token"
pytestmark = pytest.mark.skipif(not hasattr(resource, "prlimit"), reason="needs Linux prlimit")


@pytest.fixture
def served(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Served]:
    """``ci-app serve`` under gunicorn; ``indirect`` parameters add environment variables."""
    env = {
        "CI_FANOUT_GITHUB_WEBHOOK_SECRET": GH_SECRET,
        "CI_FANOUT_API_TOKEN": ADMIN,
        "CI_FANOUT_JOB_WORKERS": "1",
        **getattr(request, "param", {}),
    }
    with serve(tmp_path, env) as served:
        yield served


def _health(base: str) -> int | None:
    try:
        with urllib.request.urlopen(base + "/healthz", timeout=2) as r:
            return int(r.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return None


def _wait_healthy(base: str, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if _health(base) == 200:
            return True
        time.sleep(0.1)
    return False


def _deliver(base: str, body: bytes, delivery: str) -> int | None:
    req = urllib.request.Request(
        base + "/webhooks/github",
        data=body,
        method="POST",
        headers={
            "X-GitHub-Event": "push",
            "X-GitHub-Delivery": delivery,
            "X-Hub-Signature-256": sign(body),
            "Content-Type": "application/json",
        },
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return int(r.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return None  # the worker went away mid-request: not acknowledged


# checkpoints often, so that the fault comes soon
@pytest.mark.parametrize("served", [{"CI_FANOUT_DB_WAL_AUTOCHECKPOINT": "64KB"}], indirect=True)
def test_fatal_store_error_restarts_the_worker_and_loses_no_acknowledged_delivery(
    served: Served,
) -> None:
    template = json.loads((WEBHOOKS / "github" / "push.none.1.json").read_text())
    acked: set[str] = set()
    unacked: list[str] = []

    def body(i: int) -> bytes:
        template["after"] = f"{i:040x}"
        template["padding"] = os.urandom(6000).hex()  # WAL bytes that do not compress
        return json.dumps(template).encode()

    for i in range(10):
        assert _deliver(served.base, body(i), f"before-{i}") == 202
        acked.add(f"before-{i}")
    (first_worker,) = served.worker_pids()
    size = served.db.stat().st_size
    # "the disk is full" for this worker only: no file of its may grow past the database's size
    # now (its WAL stays far below that; a checkpoint needs more). The master, and so the next
    # worker, keep the normal limit: "space was freed".
    hard = resource.getrlimit(resource.RLIMIT_FSIZE)[1]
    resource.prlimit(first_worker, resource.RLIMIT_FSIZE, (size, hard))
    saw_unhealthy = False
    for i in range(400):
        delivery = f"during-{i}"
        code = _deliver(served.base, body(1000 + i), delivery)
        if code == 202:
            acked.add(delivery)
        else:
            assert code in (503, None), code
            unacked.append(delivery)
            saw_unhealthy |= _health(served.base) in (503, None)
            break
    assert unacked, "the store never failed"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and len(served.worker_pids()) < 2:
        saw_unhealthy |= _health(served.base) in (503, None)
        time.sleep(0.05)
    assert saw_unhealthy, "/healthz never failed while the store was broken"
    assert len(served.worker_pids()) == 2, "gunicorn did not start a fresh worker"
    assert _wait_healthy(served.base, 30)
    log = "".join(served.lines)
    assert f"exited with code {EXIT_STORE_FATAL}" in log, log[-3000:]
    # the sender retries what was not acknowledged; the fresh worker takes it
    for delivery in unacked:
        assert _deliver(served.base, body(5000), delivery) == 202
    for i in range(5):
        assert _deliver(served.base, body(9000 + i), f"after-{i}") == 202
        acked.add(f"after-{i}")
    served.proc.send_signal(signal.SIGTERM)
    served.proc.wait(timeout=20)
    import duckdb

    with duckdb.connect(str(served.db), read_only=True) as con:
        rows = con.execute("SELECT delivery_id FROM deliveries").fetchall()
    stored = [r[0] for r in rows]
    assert acked <= set(stored), sorted(acked - set(stored))
    assert len(stored) == len(set(stored))
    assert set(unacked) <= set(stored)


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_unauthenticated_upload_is_answered_before_it_is_sent(served: Served) -> None:
    """The 401 arrives while the client is still at its first megabyte of 62, and the worker
    does not grow: nothing is buffered or parsed."""
    (worker,) = served.worker_pids()
    host, port = served.base.removeprefix("http://").split(":")
    size = 62 * 1024 * 1024
    before = _rss_kib(worker)
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(
            b"POST /api/v1/results HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Authorization: Bearer cfq_bogus\r\nContent-Length: %d\r\n\r\n" % size
        )
        sock.sendall(b"[" * (1024 * 1024))
        # the reply arrives with 61 of the 62 MiB unsent: the server answered without reading
        # the body (a server waiting for it would time the recv out: the socket's 10 s)
        reply = sock.recv(4096)
        assert reply.startswith(b"HTTP/1.1 401"), reply[:200]
        chunk = b"[" * (1024 * 1024)
        try:
            for _ in range(61):
                sock.sendall(chunk)
        except OSError:
            pass  # the server may close the connection instead of draining the rest
    time.sleep(0.5)
    assert _rss_kib(worker) - before < 20 * 1024  # KiB
    assert _health(served.base) == 200


@pytest.mark.slow
def test_kill_9_under_load_loses_no_acknowledged_delivery(served: Served) -> None:
    """Senders retry what was not acknowledged (as GitHub's redelivery does); every delivery
    ends up stored exactly once, with exactly one job, across a SIGKILL of the worker."""
    template = json.loads((WEBHOOKS / "github" / "push.none.2.json").read_text())
    lock = threading.Lock()
    acked: list[str] = []
    retries = [0]
    (worker,) = served.worker_pids()

    def send(ids: list[str]) -> None:
        for delivery in ids:
            template_copy = {**template, "after": delivery.rjust(40, "0")}
            data = json.dumps(template_copy).encode()
            for _ in range(300):
                if _deliver(served.base, data, delivery) == 202:
                    with lock:
                        acked.append(delivery)
                    break
                with lock:
                    retries[0] += 1
                time.sleep(0.05)

    ids = [f"load-{i:04d}" for i in range(600)]
    threads = [threading.Thread(target=send, args=(ids[k::4],)) for k in range(4)]
    for t in threads:
        t.start()
    while len(acked) < 200:
        time.sleep(0.01)
    os.kill(worker, signal.SIGKILL)
    for t in threads:
        t.join(timeout=120)
    assert sorted(acked) == ids
    assert len(served.worker_pids()) == 2
    served.proc.send_signal(signal.SIGTERM)
    served.proc.wait(timeout=20)
    import duckdb

    with duckdb.connect(str(served.db), read_only=True) as con:
        stored = [r[0] for r in con.execute("SELECT delivery_id FROM deliveries").fetchall()]
        keys = [r[0] for r in con.execute("SELECT idempotency_key FROM jobs").fetchall()]
    assert sorted(stored) == ids  # every one, once
    assert sorted(k.split(":")[1] for k in keys) == ids  # one job each, none twice
