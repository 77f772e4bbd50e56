"""Peak RSS of ``ci-app ingest`` on a ~1 GiB JUnit file of 3M distinct test ids (issue 14).

Side by side in one run, each in its own child process (so each peak RSS is its own):
the streamed ingest (``results.json`` written) and ``ingest --db`` (DuckDB, in batches),
printed beside the target (< 150 MB each) and the raw lxml iterparse anchor. The
``open store`` row is what ``--db`` costs before any row: the imports of the CLI and
DuckDB, a new database file and its migrations.

    python bench/ingest_memory.py [--cases 3000000] [--keep PATH]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_MB = 150

CHILD = r"""
import sys, time
method, path, out = sys.argv[1], sys.argv[2], sys.argv[3]
t = time.perf_counter()
if method == "lxml":
    from lxml import etree
    n = 0
    for _, el in etree.iterparse(path, tag="testcase"):
        n += 1
        el.clear(keep_tail=True)
        while el.getprevious() is not None:
            del el.getparent()[0]
elif method == "open":
    import ci_app.cli
    from ci_app.store import open_store
    with open_store(out + ".duckdb"):
        pass
else:
    from ci_app.cli import main
    args = ["ingest", path, "--quiet", "--output", out]
    if method == "db":
        args += ["--db", out + ".duckdb", "--run-id", "bench", "--shard-id", "s1"]
    code = main(args)
    assert code == 0, code
heavy = sorted(m for m in ("pyarrow", "numpy", "pandas") if m in sys.modules)
print(",".join(heavy) or "-")
print(time.perf_counter() - t)
"""


def generate(path: Path, cases: int) -> None:
    """One suite per 100k cases; every id distinct; ~360 bytes a case (~1 GiB at 3M)."""
    pad = "x" * 240
    with path.open("w", encoding="utf-8") as f:
        f.write('<?xml version="1.0" encoding="utf-8"?>\n<testsuites name="bench">\n')
        per_suite = 100_000
        for s in range(0, cases, per_suite):
            n = min(per_suite, cases - s)
            f.write(f'<testsuite name="pkg.suite{s // per_suite}" tests="{n}">\n')
            for c in range(s, s + n):
                f.write(
                    f'  <testcase classname="tests.integration.pkg.module{c % 997}.TestClass" '
                    f'name="test_case_{c}_{pad}" file="pkg/module{c % 997}.py" '
                    f'time="0.{c % 1000:03d}"/>\n'
                )
            f.write("</testsuite>\n")
        f.write("</testsuites>\n")


def run_child(method: str, path: Path, out: Path) -> tuple[float, float, str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, method, str(path), str(out)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    output = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{method} failed")
    lines = output.strip().splitlines()
    return float(lines[-1]), usage.ru_maxrss / 1024, lines[-2]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", type=int, default=3_000_000)
    ap.add_argument("--keep", type=Path, help="reuse/keep the generated file at this path")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="ci-fanout-mem-"))
    path = args.keep or tmp / "junit.xml"
    if not path.exists():
        t = time.perf_counter()
        generate(path, args.cases)
        print(f"generated {path} in {time.perf_counter() - t:.0f}s")
    size = path.stat().st_size
    print(f"input: {size / 2**30:.2f} GiB, {args.cases:,} distinct test ids")
    rows = []
    for method in ("lxml", "stream", "open", "db"):
        seconds, rss, heavy = run_child(method, path, tmp / f"results-{method}.json")
        rows.append((method, seconds, rss, heavy))
    print()
    print(f"{'method':10s} {'seconds':>8s} {'peak RSS':>10s} {'target':>8s}       loaded")
    for method, seconds, rss, heavy in rows:
        if method in ("lxml", "open"):
            target, ok = ("anchor" if method == "lxml" else "floor"), "    "
        else:
            target, ok = f"<{TARGET_MB} MB", ("  ok" if rss < TARGET_MB else "OVER")
        name = "open store" if method == "open" else method
        print(f"{name:10s} {seconds:8.1f} {rss:8.1f}MB {target:>8s} {ok}  {heavy}")


if __name__ == "__main__":
    main()
