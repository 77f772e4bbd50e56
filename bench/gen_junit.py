"""Generate a large JUnit XML file (default ~200 MB, 1M testcases) for throughput benchmarks."""

from __future__ import annotations

import argparse
import random
from pathlib import Path


def generate(
    path: Path, cases: int = 1_000_000, suites: int = 1000, seed: int = 7
) -> dict[str, int]:
    rng = random.Random(seed)
    counts = {"passed": 0, "failed": 0, "error": 0, "skipped": 0}
    per_suite = cases // suites
    names = ["alpha", "beta", "gamma", "δέλτα", "ünïcode", "数据", "epsilon"]
    with path.open("w", encoding="utf-8") as f:
        f.write('<?xml version="1.0" encoding="utf-8"?>\n<testsuites name="bench">\n')
        for s in range(suites):
            f.write(
                f'  <testsuite name="pkg.module{s}" tests="{per_suite}" time="12.5" '
                f'timestamp="2026-01-01T00:00:00" hostname="bench">\n'
            )
            for c in range(per_suite):
                r = rng.random()
                name = (
                    f"test_{names[c % len(names)]}_behaviour_{c}"
                    f"[param-{rng.randrange(1000)}-case-{rng.randrange(100)}]"
                )
                head = (
                    f'    <testcase classname="tests.integration.pkg.module{s}.TestClass{c % 17}" '
                    f'name="{name}" '
                    f'file="pkg/module{s}.py" line="{c + 10}" time="{rng.random():.4f}"'
                )
                if r < 0.02:
                    counts["failed"] += 1
                    f.write(
                        head
                        + '><failure message="assert 1 == 2">def test():\n&gt;   assert 1 == 2\n'
                        "E   AssertionError: values differ\n</failure>"
                        "<system-out>captured output line\nsecond line</system-out></testcase>\n"
                    )
                elif r < 0.025:
                    counts["error"] += 1
                    f.write(
                        head + '><error message="fixture failed">Traceback ...</error></testcase>\n'
                    )
                elif r < 0.045:
                    counts["skipped"] += 1
                    f.write(
                        head + '><skipped message="needs gpu" type="pytest.skip"/></testcase>\n'
                    )
                else:
                    counts["passed"] += 1
                    if r > 0.96:
                        f.write(
                            head
                            + "><system-out>some output for this case</system-out></testcase>\n"
                        )
                    else:
                        f.write(head + "/>\n")
            f.write("  </testsuite>\n")
        f.write("</testsuites>\n")
    return counts


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("path", type=Path)
    ap.add_argument("--cases", type=int, default=1_000_000)
    args = ap.parse_args()
    print(generate(args.path, args.cases))


if __name__ == "__main__":
    main()
