"""Sharding benchmark: ci-fanout's planner side by side with pytest-split, on real duration files.

Prints, measured in this one run:

1. static split (history = next run), every dataset and every K in 2..64: ratio makespan /
   lower bound for our plan, pytest-split ``least_duration`` and ``duration_based_chunks``;
2. lognormal noise sigma=0.3 (10 seeds): static vs queue mode (0.05 s pull overhead);
3. real drift (plan on committed version i, run version i+1): static vs queue mode with a
   0.05 s (in-session HTTP pull) and a 2 s (process per batch) pull overhead;
4. time to plan 100 000 tests into 64 shards, ours vs pytest-split;
5. ``ci-app plan`` for 100 000 tests x 64 shards as a whole process, side by side with a bare
   Python LPT script over the same ``.test_durations`` writing the same matrix shape.

Usage: ``python bench/sharding.py [--corpora ../shared/corpora] [--seeds 10] [--quick]``.
Ratios: ``lower bound = max(sum / K, longest test)``; 1.000 is provably optimal.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ci_app.matrix.durations import DurationHistory
from ci_app.matrix.queue import QueueConfig, QueueItem
from ci_app.matrix.sharding import (
    SEARCH_SKIP_MIN_ITEMS,
    SEARCH_SKIP_REL,
    lower_bound,
    partition,
)
from ci_app.matrix.simulate import add_noise, simulate_queue, simulate_static

try:
    from pytest_split.algorithms import Algorithms

    HAVE_PYTEST_SPLIT = True
except ImportError:  # pragma: no cover - pytest-split is a dev dependency
    HAVE_PYTEST_SPLIT = False

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CORPORA = ROOT.parent / "shared" / "corpora"
KS_TABLE = (2, 4, 8, 16, 32, 64)


class _Item:
    """Stand-in for a pytest item: pytest-split only reads ``nodeid`` and sorts by ``str``."""

    __slots__ = ("nodeid",)

    def __init__(self, nodeid: str) -> None:
        self.nodeid = nodeid

    def __str__(self) -> str:
        return self.nodeid


def geo(xs: Iterable[float]) -> float:
    vals = list(xs)
    return math.exp(sum(math.log(x) for x in vals) / len(vals)) if vals else float("nan")


def ours(tests: Sequence[str], est: Mapping[str, float], k: int) -> list[list[str]]:
    members, _ = partition(tests, [est[t] for t in tests], k)
    return [[tests[i] for i in m] for m in members]


def pytest_split(
    name: str, tests: Sequence[str], durations: Mapping[str, float], k: int
) -> list[list[str]]:
    """pytest-split's own algorithm; unknown tests get its own fill (mean of known)."""
    algo = Algorithms[name].value
    groups = algo(k, [_Item(t) for t in tests], dict(durations))
    return [[it.nodeid for it in g.selected] for g in groups]


def queue_items(
    tests: Sequence[str], hist: Mapping[str, float]
) -> tuple[list[QueueItem], dict[str, float]]:
    est = DurationHistory.single(hist).estimate(tests)
    items = [QueueItem(t, est.seconds[t], unknown=t in est.unknown) for t in tests]
    return items, est.seconds


def load(path: Path) -> Any:
    with path.open() as f:
        return json.load(f)


# ---------------------------------------------------------------------------------------------


def bench_static(datasets: Mapping[str, dict[str, float]], ks: Sequence[int]) -> dict[str, Any]:
    print("\n## 1. Static split, history = next run (ratio to lower bound)\n")
    rows: list[tuple[str, int, float, float, float]] = []
    for name, d in datasets.items():
        tests = sorted(d)
        for k in ks:
            lb = lower_bound(d.values(), k)
            r_ours = simulate_static(ours(tests, d, k), d).makespan_s / lb
            r_lsd = simulate_static(pytest_split("least_duration", tests, d, k), d).makespan_s / lb
            r_chk = (
                simulate_static(pytest_split("duration_based_chunks", tests, d, k), d).makespan_s
                / lb
            )
            rows.append((name, k, r_ours, r_lsd, r_chk))
    print(
        "| dataset | K | ours | pytest-split least_duration | pytest-split duration_based_chunks |"
    )
    print("|---|---|---|---|---|")
    for name, k, a, b, c in rows:
        if k in KS_TABLE:
            print(f"| {name} | {k} | {a:.5f} | {b:.5f} | {c:.4f} |")
    worse = [(n, k, a, b) for n, k, a, b, _ in rows if a > b + 1e-12]
    summary = {
        "cases": len(rows),
        "ours_geo": geo(r[2] for r in rows),
        "ours_max": max(r[2] for r in rows),
        "lsd_geo": geo(r[3] for r in rows),
        "lsd_max": max(r[3] for r in rows),
        "chunks_geo": geo(r[4] for r in rows),
        "chunks_max": max(r[4] for r in rows),
        "worse_than_lsd": len(worse),
        "better_than_lsd": sum(1 for r in rows if r[2] < r[3] - 1e-12),
    }
    print(
        f"\nall {len(rows)} cases (K = {ks[0]}..{ks[-1]}): ours geo {summary['ours_geo']:.5f} "
        f"(max {summary['ours_max']:.5f}) | least_duration geo {summary['lsd_geo']:.5f} "
        f"(max {summary['lsd_max']:.5f}) | duration_based_chunks geo {summary['chunks_geo']:.4f} "
        f"(max {summary['chunks_max']:.4f})"
    )
    print(
        f"ours worse than least_duration in {len(worse)} cases, strictly better in "
        f"{summary['better_than_lsd']}"
    )
    for n, k, a, b in worse[:10]:
        print(f"  WORSE {n} K={k}: {a:.6f} > {b:.6f}")
    return summary


def bench_noise(
    datasets: Mapping[str, dict[str, float]], seeds: int, overhead: float
) -> dict[str, Any]:
    print(f"\n## 2. Lognormal noise sigma=0.3, {seeds} seeds (queue pull overhead {overhead} s)\n")
    print("| dataset | K | static ours | least_duration | queue |")
    print("|---|---|---|---|---|")
    all_s: list[float] = []
    all_l: list[float] = []
    all_q: list[float] = []
    cfg = QueueConfig(pull_overhead_s=overhead)
    for name, d in datasets.items():
        tests = sorted(d)
        items, _ = queue_items(tests, d)
        for k in KS_TABLE:
            plan = ours(tests, d, k)
            lsd = pytest_split("least_duration", tests, d, k)
            s_r, l_r, q_r = [], [], []
            for seed in range(seeds):
                actual = add_noise(d, 0.3, seed)
                s_r.append(simulate_static(plan, actual).ratio)
                l_r.append(simulate_static(lsd, actual).ratio)
                q_r.append(simulate_queue(items, actual, k, cfg).ratio)
            all_s += s_r
            all_l += l_r
            all_q += q_r
            print(f"| {name} | {k} | {geo(s_r):.3f} | {geo(l_r):.3f} | {geo(q_r):.3f} |")
    out = {
        "static_geo": geo(all_s),
        "static_max": max(all_s),
        "lsd_geo": geo(all_l),
        "queue_geo": geo(all_q),
        "queue_max": max(all_q),
    }
    print(
        f"\nnoise: static geo {out['static_geo']:.4f} (max {out['static_max']:.3f}), "
        f"least_duration {out['lsd_geo']:.4f}, queue geo {out['queue_geo']:.4f} "
        f"(max {out['queue_max']:.3f})"
    )
    return out


def bench_drift(histories: Mapping[str, list[dict[str, float]]], pairs: int) -> dict[str, Any]:
    print("\n## 3. Real drift: plan on committed version i, run version i+1\n")
    print(
        "| dataset | K | pairs | static ours | least_duration | duration_based_chunks "
        "| queue 0.05 s | queue 2 s | queue 2 s, 1 test/pull |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    cols: dict[str, list[float]] = {
        "ours": [],
        "lsd": [],
        "chunks": [],
        "q005": [],
        "q2": [],
        "q2_single": [],
    }
    pulls: dict[str, list[float]] = {"q2": [], "q2_single": []}
    for name, versions in histories.items():
        cases = list(itertools.pairwise(versions))[-pairs:]
        prepared = []
        for hist, actual in cases:
            tests = sorted(actual)
            items, est = queue_items(tests, hist)
            prepared.append((hist, actual, tests, items, est))
        for k in KS_TABLE:
            per: dict[str, list[float]] = {c: [] for c in cols}
            for hist, actual, tests, items, est in prepared:
                per["ours"].append(simulate_static(ours(tests, est, k), actual).ratio)
                per["lsd"].append(
                    simulate_static(pytest_split("least_duration", tests, hist, k), actual).ratio
                )
                per["chunks"].append(
                    simulate_static(
                        pytest_split("duration_based_chunks", tests, hist, k), actual
                    ).ratio
                )
                for key, cfg in (
                    ("q005", QueueConfig(pull_overhead_s=0.05)),
                    ("q2", QueueConfig(pull_overhead_s=2.0)),
                    ("q2_single", QueueConfig(pull_overhead_s=2.0, max_batch_tests=1)),
                ):
                    res = simulate_queue(items, actual, k, cfg)
                    per[key].append(res.ratio)
                    if key in pulls:
                        pulls[key].append(res.pulls / k)
            for c in cols:
                cols[c] += per[c]
            print(
                f"| {name} | {k} | {len(prepared)} | {geo(per['ours']):.3f} | "
                f"{geo(per['lsd']):.3f} | {geo(per['chunks']):.3f} | {geo(per['q005']):.3f} | "
                f"{geo(per['q2']):.3f} | {geo(per['q2_single']):.3f} |"
            )
    out = {f"{c}_geo": geo(v) for c, v in cols.items()} | {
        f"{c}_max": max(v) for c, v in cols.items()
    }
    for key, vals in pulls.items():
        out[f"{key}_pulls"] = sum(vals) / len(vals)
    print(
        f"pulls per runner with a 2 s overhead: batched {out['q2_pulls']:.1f}, "
        f"one test per pull {out['q2_single_pulls']:.1f}"
    )
    print(
        "\ndrift geo-mean (max): "
        + ", ".join(f"{c} {out[c + '_geo']:.4f} ({out[c + '_max']:.3f})" for c in cols)
    )
    return out


def bench_speed(pool: Sequence[float], n: int = 100_000, k: int = 64) -> dict[str, float]:
    print(f"\n## 4. Planning time, {n:,} tests x {k} shards\n")
    rng = random.Random(7)
    names = [f"tests/pkg{i // 5000}/test_m{i // 50}.py::test_{i}" for i in range(n)]
    weights = [rng.choice(pool) * math.exp(rng.gauss(0.0, 0.1)) for _ in names]
    d = dict(zip(names, weights, strict=True))

    def best_of(fn: Callable[[], object], reps: int = 3) -> float:
        times = []
        for _ in range(reps):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return min(times)

    out = {
        "ours_s": best_of(lambda: partition(names, weights, k)),
        "lsd_s": best_of(lambda: pytest_split("least_duration", names, d, k)),
        "chunks_s": best_of(lambda: pytest_split("duration_based_chunks", names, d, k)),
    }
    lb = lower_bound(weights, k)
    _, loads = partition(names, weights, k)
    print("| algorithm | seconds (best of 3) |")
    print("|---|---|")
    print(
        f"| ours (LPT; local search unless LPT is within {SEARCH_SKIP_REL:g}) | "
        f"{out['ours_s']:.3f} (ratio {max(loads) / lb:.6f}) |"
    )
    print(f"| pytest-split least_duration | {out['lsd_s']:.3f} |")
    print(f"| pytest-split duration_based_chunks | {out['chunks_s']:.3f} |")
    return out


#: The anchor of section 5: what a plain script does with the same file and the same output
#: shape (sorted names, LPT with a heap, tests back in name order, the matrix JSON, indent 2).
BARE_LPT = """\
import heapq, json, sys
src, k, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
with open(src) as f:
    d = json.load(f)
names = sorted(d)
order = sorted(names, key=d.__getitem__, reverse=True)
heap = [(0.0, i) for i in range(k)]
members = [[] for _ in range(k)]
loads = [0.0] * k
for t in order:
    load, s = heap[0]
    load += d[t]
    members[s].append(t)
    loads[s] = load
    heapq.heapreplace(heap, (load, s))
pos = {t: i for i, t in enumerate(names)}
shards = [
    {"id": f"cpu-{i + 1}", "pool": "cpu", "runs_on": ["self-hosted"],
     "tests": sorted(m, key=pos.__getitem__), "expected_seconds": round(load, 3),
     "unknown_tests": 0}
    for i, (m, load) in enumerate(zip(members, loads))
]
pool = {"key": "cpu", "runs_on": ["self-hosted"], "runners": 0, "shards": k,
        "total_s": round(sum(loads), 3), "expected_wall_s": round(max(loads), 3), "priority": 0}
doc = {"version": "ci-fanout/matrix/v1", "mode": "static", "shards": shards, "pools": [pool],
       "warnings": [], "notes": [], "unsatisfied": []}
with open(out, "w") as f:
    f.write(json.dumps(doc, indent=2) + "\\n")
"""


def bench_process(
    pool: Sequence[float], reps: int, n: int = 100_000, k: int = 64
) -> dict[str, Any]:
    """Whole processes, interpreter start-up included, alternated so that load on the machine
    hits both alike; the minimum of each is compared (the least disturbed run)."""
    print(f"\n## 5. `ci-app plan` as a process, {n:,} tests x {k} shards, {reps} runs each\n")
    rng = random.Random(11)
    names = [f"tests/pkg{i // 5000}/test_m{i // 50}.py::test_{i}" for i in range(n)]
    durations = {t: round(rng.choice(pool) * math.exp(rng.gauss(0.0, 0.1)), 4) for t in names}
    with tempfile.TemporaryDirectory(prefix="ci-fanout-bench-") as tmp:
        src = Path(tmp) / ".test_durations"
        src.write_text(json.dumps(dict(sorted(durations.items())), indent=1))
        script = Path(tmp) / "bare_lpt.py"
        script.write_text(BARE_LPT)
        ours_out, bare_out = Path(tmp) / "ours.json", Path(tmp) / "bare.json"
        commands = {
            "ours": [
                *(sys.executable, "-m", "ci_app.cli", "plan", "--durations", str(src)),
                *("--shards", str(k), "--output", str(ours_out)),
            ],
            "bare": [sys.executable, str(script), str(src), str(k), str(bare_out)],
        }
        times: dict[str, list[float]] = {name: [] for name in commands}
        cpu: dict[str, list[float]] = {name: [] for name in commands}  # user + system
        for _ in range(reps):
            for name, cmd in commands.items():
                r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
                t0 = time.perf_counter()
                subprocess.run(cmd, check=True, capture_output=True)
                times[name].append(time.perf_counter() - t0)
                r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
                cpu[name].append(r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime)
        ours, bare = json.loads(ours_out.read_text()), json.loads(bare_out.read_text())
    same_shape = (
        list(ours) == list(bare)
        and [list(s) for s in ours["shards"]] == [list(s) for s in bare["shards"]]
        and sorted(t for s in ours["shards"] for t in s["tests"]) == sorted(durations)
        and sorted(t for s in bare["shards"] for t in s["tests"]) == sorted(durations)
    )
    lb = lower_bound(list(durations.values()), k)
    out: dict[str, Any] = {
        "ours_s": min(times["ours"]),
        "bare_s": min(times["bare"]),
        "ours_median_s": statistics.median(times["ours"]),
        "bare_median_s": statistics.median(times["bare"]),
        "same_shape": same_shape,
        "ours_balance": max(s["expected_seconds"] for s in ours["shards"]) / lb,
        "bare_balance": max(s["expected_seconds"] for s in bare["shards"]) / lb,
        "notes": [n for n in ours["notes"] if "local search" in n],
    }
    out["ratio"] = out["ours_s"] / out["bare_s"]
    out["cpu_ratio"] = min(cpu["ours"]) / min(cpu["bare"])
    print("| process | best wall s | median wall s | best CPU s | makespan / lower bound |")
    print("|---|---|---|---|---|")
    for name, label in (("ours", "ci-app plan"), ("bare", "bare Python LPT script")):
        print(
            f"| {label} | {out[name + '_s']:.3f} | {out[name + '_median_s']:.3f} | "
            f"{min(cpu[name]):.3f} | {out[name + '_balance']:.9f} |"
        )
    print(
        f"\nratio ci-app plan / bare script: {out['ratio']:.2f}x best wall, "
        f"{out['ours_median_s'] / out['bare_median_s']:.2f}x median wall, "
        f"{out['cpu_ratio']:.2f}x best CPU (anchor: 1.5x); "
        f"same matrix shape and tests: {'yes' if same_shape else 'NO'}"
    )
    print(
        f"local search is skipped on {SEARCH_SKIP_MIN_ITEMS:,}+ tests when LPT is within "
        f"{SEARCH_SKIP_REL:g} of the lower bound; this plan: "
        + ("; ".join(out["notes"]) or "no note")
    )
    return out


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--corpora", type=Path, default=DEFAULT_CORPORA)
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--pairs", type=int, default=12)
    ap.add_argument("--quick", action="store_true", help="K in {2,4,...,64} only, 3 seeds")
    ap.add_argument("--reps", type=int, default=11, help="runs of each process in section 5")
    ap.add_argument(
        "--only-process", action="store_true", help="section 5 only (the planner's weight)"
    )
    args = ap.parse_args(argv)
    if not HAVE_PYTEST_SPLIT:
        print("pytest-split is not installed: pip install pytest-split", file=sys.stderr)
        return 2
    t_start = time.perf_counter()
    ddir = args.corpora / "durations"
    datasets = {
        p.stem: {k: float(v) for k, v in load(p)["durations"].items()}
        for p in sorted(ddir.glob("*.json"))
    }
    histories = {
        p.stem: [v["durations"] for v in load(p)["versions"]]
        for p in sorted((args.corpora / "durations-history").glob("*.json"))
    }
    ks = list(KS_TABLE) if args.quick else list(range(2, 65))
    seeds = 3 if args.quick else args.seeds
    pool = [v for d in datasets.values() for v in d.values()]
    if args.only_process:
        pr = bench_process(pool, args.reps)
        ok = pr["same_shape"] and pr["ratio"] <= 1.5
        print(f"\nci-app plan within 1.5x of the bare script: {'yes' if ok else 'NO'}")
        return 0 if ok else 1
    print(f"# Sharding benchmark: {len(datasets)} datasets, {len(histories)} histories")
    st = bench_static(datasets, ks)
    nz = bench_noise(datasets, seeds, 0.05)
    dr = bench_drift(histories, args.pairs)
    sp = bench_speed(pool)
    pr = bench_process(pool, args.reps)

    print("\n## Targets (issues 4 and 16) side by side with the anchors\n")
    checks = [
        (
            "static: ours <= least_duration on every dataset and K",
            f"{st['worse_than_lsd']} worse of {st['cases']}",
            st["worse_than_lsd"] == 0,
        ),
        (
            "static geo-mean <= 1.001",
            f"{st['ours_geo']:.5f} (least_duration {st['lsd_geo']:.5f}, "
            f"chunks {st['chunks_geo']:.4f})",
            st["ours_geo"] <= 1.001,
        ),
        (
            "drift, queue 0.05 s pull geo-mean <= 1.03",
            f"{dr['q005_geo']:.4f} (static ours {dr['ours_geo']:.4f}, least_duration "
            f"{dr['lsd_geo']:.4f}, chunks {dr['chunks_geo']:.4f})",
            dr["q005_geo"] <= 1.03,
        ),
        (
            "noise sigma 0.3, queue geo-mean <= 1.01",
            f"{nz['queue_geo']:.4f} (static ours {nz['static_geo']:.4f}, "
            f"least_duration {nz['lsd_geo']:.4f})",
            nz["queue_geo"] <= 1.01,
        ),
        (
            "drift, queue 2 s pull (report)",
            f"{dr['q2_geo']:.4f} (max {dr['q2_max']:.3f}; {dr['q2_pulls']:.1f} pulls/runner) vs "
            f"{dr['q2_single_geo']:.3f} unbatched ({dr['q2_single_pulls']:.0f} pulls/runner)",
            True,
        ),
        (
            "plan 100k x 64 < 0.5 s",
            f"{sp['ours_s']:.3f} s (least_duration {sp['lsd_s']:.3f} s, "
            f"chunks {sp['chunks_s']:.3f} s)",
            sp["ours_s"] < 0.5,
        ),
        (
            "ci-app plan 100k x 64 as a process <= 1.5x a bare LPT script (issue 16)",
            f"{pr['ratio']:.2f}x ({pr['ours_s']:.3f} s vs {pr['bare_s']:.3f} s, best of "
            f"{args.reps}; same shape: {'yes' if pr['same_shape'] else 'NO'}; balance "
            f"{pr['ours_balance']:.9f} vs {pr['bare_balance']:.9f})",
            pr["same_shape"] and pr["ratio"] <= 1.5,
        ),
    ]
    print("| target | measured | ok |")
    print("|---|---|---|")
    for what, got, ok in checks:
        print(f"| {what} | {got} | {'yes' if ok else 'NO'} |")
    print(f"\ntotal benchmark time {time.perf_counter() - t_start:.0f} s")
    return 0 if all(ok for _, _, ok in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
