"""Parser throughput and peak memory on a ~200 MB, 1M-testcase JUnit file.

Side by side in one run (each method in its own child process, so each peak RSS
is its own): our streaming parser, the full ``ci-app ingest`` (results.json
written), both with the native speedups (the default where the C extension is
built) and on the pure-Python reference code (``CI_FANOUT_PURE_PYTHON=1``), raw
``lxml.etree.iterparse`` (classify + clear: the anchor), and ``junitparser``.
Prints MB/s, peak RSS and the ratios the issue names.

    python bench/parse_throughput.py [--cases 1000000] [--repeats 2] [--skip-junitparser]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from gen_junit import generate  # noqa: E402

CHILD = r"""
import json, sys, time
method, path = sys.argv[1], sys.argv[2]
start = time.perf_counter()
pure = method.endswith("-pure")  # the parent set CI_FANOUT_PURE_PYTHON=1 for these
method = method.removesuffix("-pure")
if method in ("ours", "ingest") and not pure:
    from ci_app.artifacts import native
    if not native.available():
        raise SystemExit("native speedups not built: pip install -e . with a C compiler")
counts = {}
if method == "lxml":
    from lxml import etree
    for _, el in etree.iterparse(path, tag="testcase"):
        outcome = "passed"
        for child in el:
            if child.tag in ("failure", "error", "skipped"):
                outcome = child.tag
        counts[outcome] = counts.get(outcome, 0) + 1
        el.clear(keep_tail=True)
        while el.getprevious() is not None:
            del el.getparent()[0]
elif method == "ours":
    from ci_app.artifacts.base import ParseContext
    from ci_app.artifacts.ingest import relaxed_gc
    from ci_app.artifacts.junit import parse_junit
    with open(path, "rb") as fh, relaxed_gc():
        for case in parse_junit(fh, ParseContext(path=path)):
            counts[case.outcome.value] = counts.get(case.outcome.value, 0) + 1
elif method == "ingest":
    from ci_app.cli import main
    out = sys.argv[3]
    main(["ingest", path, "--output", out, "--quiet"])
    with open(out, "rb") as fh:
        # Count from the written file's summary, reading only its tail.
        fh.seek(max(0, fh.seek(0, 2) - 4096))
        tail = fh.read().decode("utf-8", "replace")
    summary = json.loads(tail[tail.rindex('"summary":') + 10 : tail.rindex("}")])
    counts = {k: summary[k] for k in ("passed", "failed", "errors", "skipped")}
elif method == "junitparser":
    from junitparser import JUnitXml, Failure, Error, Skipped
    xml = JUnitXml.fromfile(path)
    for suite in xml:
        for case in suite:
            outcome = "passed"
            for r in case.result:
                if isinstance(r, Error):
                    outcome = "error"
                elif isinstance(r, Failure) and outcome != "error":
                    outcome = "failure"
                elif isinstance(r, Skipped) and outcome == "passed":
                    outcome = "skipped"
            counts[outcome] = counts.get(outcome, 0) + 1
elapsed = time.perf_counter() - start
print(json.dumps({"seconds": elapsed, "counts": counts}))
"""


def run_child(method: str, path: Path, out: Path) -> tuple[float, float, dict[str, int]]:
    """(seconds, peak RSS MiB, counts) for one method in a fresh interpreter."""
    env = dict(os.environ)
    env.pop("CI_FANOUT_PURE_PYTHON", None)
    if method.endswith("-pure"):
        env["CI_FANOUT_PURE_PYTHON"] = "1"
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, method, str(path), str(out)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    output = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{method} failed with exit code {proc.returncode}")
    result = json.loads(output.strip().splitlines()[-1])
    return float(result["seconds"]), usage.ru_maxrss / 1024, result["counts"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", type=int, default=1_000_000)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--skip-junitparser", action="store_true", help="it needs ~2 GB and ~20 s")
    ap.add_argument("--skip-pure", action="store_true", help="skip the pure-Python runs")
    ap.add_argument("--keep", type=Path, help="reuse/keep the generated file at this path")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="ci-fanout-bench-"))
    path = args.keep or tmp / "junit.xml"
    if not path.exists():
        t = time.perf_counter()
        truth = generate(path, args.cases)
        print(f"generated {path} in {time.perf_counter() - t:.1f}s: {truth}")
    size_mb = path.stat().st_size / 1e6
    print(f"input: {size_mb:.1f} MB, {args.cases:,} testcases")

    methods = ["lxml", "ours", "ingest"]
    if not args.skip_pure:
        methods += ["ours-pure", "ingest-pure"]
    if not args.skip_junitparser:
        methods.append("junitparser")
    best: dict[str, tuple[float, float]] = {}
    for rep in range(args.repeats):
        for method in methods:  # interleaved, so load changes hit every method alike
            seconds, rss, counts = run_child(method, path, tmp / "results.json")
            total = sum(counts.values())
            print(f"  run {rep + 1} {method:12s} {seconds:7.2f}s {rss:8.1f} MiB  {total:,} cases")
            if total != args.cases:
                raise SystemExit(f"{method} counted {total} cases, expected {args.cases}")
            prev = best.get(method)
            if prev is None or seconds < prev[0]:
                best[method] = (seconds, max(rss, prev[1]) if prev else rss)
            elif prev:
                best[method] = (prev[0], max(prev[1], rss))

    raw = best["lxml"][0]
    print()
    print(f"{'method':14s} {'MB/s':>8s} {'peak RSS':>10s} {'vs raw lxml':>12s}")
    for method in methods:
        seconds, rss = best[method]
        print(f"{method:14s} {size_mb / seconds:8.1f} {rss:8.1f}MB {raw / seconds:11.2f}x")
    print()
    ours, ingest = best["ours"], best["ingest"]
    print(f"parser throughput vs raw lxml iterparse: {raw / ours[0]:.2f}x (target >= 0.8x)")
    print(
        f"ci-app ingest (results.json written) vs raw lxml: {raw / ingest[0]:.2f}x (target >= 0.5x)"
    )
    print(f"peak RSS: parser {ours[1]:.0f} MB, ingest {ingest[1]:.0f} MB (target < 100 MB)")
    if "ours-pure" in best:
        pure, pure_ingest = best["ours-pure"][0], best["ingest-pure"][0]
        print(
            f"pure-Python reference (no C extension): parser {raw / pure:.2f}x, "
            f"ingest {raw / pure_ingest:.2f}x"
        )
    if "junitparser" in best:
        jp = best["junitparser"]
        print(f"junitparser: {size_mb / jp[0]:.1f} MB/s at {jp[1]:.0f} MB peak RSS")


if __name__ == "__main__":
    main()
