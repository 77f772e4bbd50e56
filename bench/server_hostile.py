"""What hostile requests cost a real ``ci-app serve`` (gunicorn), side by side with anchors.

1. A 62 MB ``POST /api/v1/results`` with a bogus bearer token, against the anchor: the same
   body with the admin token but an unknown schema version, which the server must read and
   parse before it can refuse (what every unauthenticated upload cost before the token was
   checked first). Time to the answer and growth of the worker's peak RSS.
2. ``GET /charts/*.png``: the first (rendered) request of each chart against the anchor of the
   same requests served from the cache.
3. 60 requests, each with a fresh bogus bearer token, from one address: how many are refused
   with 429 (a per-token limit alone refuses none).

One process run, loopback only, about 20 s on 2 cores.

    python bench/server_hostile.py [--mb 62]
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

ADMIN = "bench-admin-token"
REPO = "bench/app"


class Server:
    def __init__(self, work: Path) -> None:
        env = {
            **os.environ,
            "CI_FANOUT_API_TOKEN": ADMIN,
            "CI_FANOUT_LOG_LEVEL": "warning",
            "CI_FANOUT_MAX_API_BYTES": str(80 * 1024 * 1024),
            "CI_FANOUT_CHART_RENDERS_PER_MINUTE": "100",
        }
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "ci_app",
                "serve",
                "--port",
                "0",
                "--db",
                str(work / "bench.duckdb"),
                "--log-level",
                "info",
            ],
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            text=True,
            env=env,
            cwd=work,
        )
        self.port = 0
        self.worker = 0
        assert self.proc.stderr is not None
        deadline = time.monotonic() + 60
        while (not self.port or not self.worker) and time.monotonic() < deadline:
            line = self.proc.stderr.readline()
            if m := re.search(r"listening at http://127\.0\.0\.1:(\d+)", line):
                self.port = int(m.group(1))
            if m := re.search(r"worker pid (\d+)", line):
                self.worker = int(m.group(1))
        threading.Thread(target=self._drain, daemon=True).start()
        while self.request("GET", "/healthz")[0] != 200:
            time.sleep(0.1)

    def _drain(self) -> None:
        assert self.proc.stderr is not None
        for _ in self.proc.stderr:
            pass

    def request(
        self, method: str, path: str, body: bytes | None = None, token: str | None = None
    ) -> tuple[int, bytes, float]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        started = time.perf_counter()
        try:
            conn.request(method, path, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            return resp.status, data, time.perf_counter() - started
        except OSError:
            return 0, b"", time.perf_counter() - started
        finally:
            conn.close()

    def upload(self, body: bytes, token: str) -> tuple[int, float]:
        """POST ``body`` while reading the answer: a server may answer (and close) before the
        body is sent; returns (status, seconds until the status line arrived)."""
        import socket

        sock = socket.create_connection(("127.0.0.1", self.port), timeout=120)
        head = (
            f"POST /api/v1/results HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode()

        def send() -> None:
            with contextlib.suppress(OSError):  # answered and closed early: fine
                sock.sendall(head + body)

        started = time.perf_counter()
        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        reply = b""
        try:
            while b"\r\n" not in reply:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                reply += chunk
        except OSError:
            pass
        elapsed = time.perf_counter() - started
        sender.join(timeout=120)
        sock.close()
        m = re.match(rb"HTTP/1\.[01] (\d{3})", reply)
        return (int(m.group(1)) if m else 0), elapsed

    def peak_rss_mb(self) -> float:
        for line in Path(f"/proc/{self.worker}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def big_results(target_bytes: int, version: Any) -> bytes:
    from ci_app.model.results import SCHEMA_VERSION

    case = {"id": "", "name": "t", "outcome": "passed", "duration_s": 0.01, "message": "m" * 200}
    per = len(json.dumps({**case, "id": "tests/test_big.py::test_00000000"})) + 2
    tests = [{**case, "id": f"tests/test_big.py::test_{i:08d}"} for i in range(target_bytes // per)]
    doc = {
        "version": SCHEMA_VERSION if version is None else version,
        "run": {"run_id": "bench-big", "shard_id": "s1", "repo": REPO, "provider": "github"},
        "tests": tests,
    }
    return json.dumps(doc).encode()


def seed_history(server: Server) -> None:
    from ci_app.model.results import SCHEMA_VERSION

    for i in range(12):
        doc = {
            "version": SCHEMA_VERSION,
            "run": {
                "run_id": f"main-{i}",
                "shard_id": "s1",
                "repo": REPO,
                "provider": "github",
                "branch": "main",
                "commit": f"{i:040x}",
            },
            "tests": [
                {
                    "id": f"tests/test_m.py::t{k}",
                    "name": f"t{k}",
                    "duration_s": 0.1 * k,
                    "outcome": "failed" if (k + i) % 17 == 0 else "passed",
                }
                for k in range(400)
            ],
        }
        status, body, _ = server.request("POST", "/api/v1/results", json.dumps(doc).encode(), ADMIN)
        assert status == 201, body[:200]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mb", type=float, default=62.0, help="size of the hostile upload")
    args = ap.parse_args()
    size = int(args.mb * 1024 * 1024)
    with tempfile.TemporaryDirectory(prefix="ci-fanout-bench-") as tmp:
        server = Server(Path(tmp))
        try:
            print(
                f"ci-app serve on 127.0.0.1:{server.port}, worker pid {server.worker}; "
                f"{os.cpu_count()} CPUs"
            )
            # 1. unauthenticated upload vs the anchor (read + parse, then refused)
            bogus_body = big_results(size, None)
            anchor_body = big_results(size, "no-such-version")
            print(f"\n1. {len(bogus_body) / 2**20:.0f} MiB POST /api/v1/results")
            base = server.peak_rss_mb()
            code, bogus_s = server.upload(bogus_body, "cfq_bogus")
            bogus_rss = server.peak_rss_mb() - base
            base = server.peak_rss_mb()
            acode, anchor_s = server.upload(anchor_body, ADMIN)
            anchor_rss = server.peak_rss_mb() - base
            print(f"   {'request':<44}{'answer':>8}{'time':>10}{'peak RSS +':>13}")
            print(
                f"   {'bogus token (checked before reading)':<44}{code:>8}{bogus_s:>9.2f}s"
                f"{bogus_rss:>10.0f} MB"
            )
            print(
                f"   {'anchor: read + parse, then refused':<44}{acode:>8}{anchor_s:>9.2f}s"
                f"{anchor_rss:>10.0f} MB"
            )
            print(f"   ratio anchor/bogus: time {anchor_s / max(bogus_s, 1e-6):.0f}x")
            # 2. charts: rendered vs cached
            seed_history(server)
            kinds = ("trend", "slowest", "runner-classes")
            first = []
            for kind in kinds:
                c, png, t = server.request("GET", f"/charts/{kind}.png?repo={REPO}")
                assert c == 200 and png[:4] == b"\x89PNG", c
                first.append(t)
            cached = []
            for _ in range(20):
                for kind in kinds:
                    c, _, t = server.request("GET", f"/charts/{kind}.png?repo={REPO}")
                    assert c == 200
                    cached.append(t)
            render_ms = 1000 * sum(first) / len(first)
            cached_ms = 1000 * sum(cached) / len(cached)
            print("\n2. GET /charts/*.png (mean per request)")
            print(
                f"   anchor: rendered {render_ms:8.1f} ms   cached {cached_ms:6.1f} ms   "
                f"ratio {render_ms / cached_ms:.0f}x"
            )
            # 3. fresh bogus token per request
            codes = [
                server.request("GET", "/api/v1/runners", token=f"bogus-{i}")[0] for i in range(60)
            ]
            print("\n3. 60 requests, a fresh bogus bearer each, one address")
            print(
                f"   answered 401: {codes.count(401)}, refused 429: {codes.count(429)} "
                "(anchor, a per-token limit only: 0 refused)"
            )
            ok = code == 401 and codes.count(429) > 0 and bogus_s < anchor_s
        finally:
            server.stop()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
