"""``ci-app serve`` as a real process under gunicorn, for the serve and self-heal tests."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

import pytest

LISTENING = re.compile(r"listening at http://127\.0\.0\.1:(\d+)")


@dataclass
class Served:
    base: str
    proc: subprocess.Popen[str]
    db: Path
    lines: list[str] = field(default_factory=list)

    def worker_pids(self) -> list[int]:
        return [
            int(m.group(1))
            for line in list(self.lines)
            if (m := re.search(r"worker pid (\d+)", line))
        ]


@contextmanager
def serve(tmp_path: Path, env: Mapping[str, str], *, ready_s: float = 30) -> Iterator[Served]:
    """Start ``ci-app serve --port 0`` with ``env`` added; yield once gunicorn listens and its
    worker answers ``/healthz``. The test fails with the server's output when it exits or never
    gets there; SIGTERM (then SIGKILL) on the way out."""
    db = tmp_path / "app.duckdb"
    argv = [sys.executable, "-m", "ci_app", "serve", "--port", "0", "--db", str(db)]
    proc = subprocess.Popen(
        [*argv, "--log-level", "info"],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env={**os.environ, **env},
        cwd=tmp_path,
    )
    assert proc.stderr is not None
    served = Served("", proc, db)
    listening = threading.Event()

    def pump() -> None:  # reads all along: the server never blocks on a full pipe
        assert proc.stderr is not None
        for line in proc.stderr:
            served.lines.append(line)
            if LISTENING.search(line):
                listening.set()

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        served.base = _wait_ready(served, listening, ready_s)
        yield served
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            reader.join(timeout=5)
            proc.stderr.close()


def _wait_ready(served: Served, listening: threading.Event, seconds: float) -> str:
    proc = served.proc

    def fail(why: str) -> NoReturn:
        pytest.fail(f"ci-app serve {why}; its output:\n{''.join(served.lines)}")

    deadline = time.monotonic() + seconds
    while not listening.wait(0.1):
        if proc.poll() is not None:
            fail(f"exited with {proc.returncode} before listening")
        if time.monotonic() > deadline:
            fail(f"did not listen within {seconds:g} s")
    port = next(m.group(1) for line in served.lines if (m := LISTENING.search(line)))
    base = f"http://127.0.0.1:{port}"
    last = "no answer"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            fail(f"exited with {proc.returncode} before its worker was ready")
        try:
            with urllib.request.urlopen(base + "/healthz", timeout=2) as r:
                health = json.loads(r.read())
            if health["worker"]:
                return base
            last = f"/healthz said {health}"
        except OSError as exc:
            last = f"/healthz: {exc}"
        time.sleep(0.1)
    pytest.fail(
        f"ci-app serve's worker was not ready within {seconds:g} s ({last}); "
        f"its output:\n{''.join(served.lines)}"
    )
