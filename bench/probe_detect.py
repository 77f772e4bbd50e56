"""``runner-probe detect --json --no-browser`` in a fresh process, beside issue 3's target (< 1 s).

The probe runs at every runner start, so its cold start is what users wait for. Anchor, in the
same run: a bare ``python -c pass`` (the interpreter's own start on this machine), so the
figure that matters is printed both as seconds and as the probe's cost above the interpreter.

    python bench/probe_detect.py [--runs 7]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TARGET_S = 1.0


def wall(command: list[str]) -> tuple[float, str]:
    t0 = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True, check=True, cwd=REPO)
    return time.perf_counter() - t0, proc.stdout


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=7)
    args = ap.parse_args()
    probe = [sys.executable, "-m", "runner_probe", "detect", "--json", "--no-browser"]
    bare = [sys.executable, "-c", "pass"]
    probes: list[float] = []
    bares: list[float] = []
    for _ in range(args.runs):  # alternated, so load drifts hit both alike
        seconds, out = wall(probe)
        json.loads(out)  # a real profile came back
        probes.append(seconds)
        bares.append(wall(bare)[0])
    best, median = min(probes), statistics.median(probes)
    print(f"{'':34} {'best':>8} {'median':>8}   target")
    print(f"{'runner-probe detect --no-browser':34} {best:8.3f} {median:8.3f}   < {TARGET_S:.1f} s")
    print(f"{'python -c pass (anchor)':34} {min(bares):8.3f} {statistics.median(bares):8.3f}")
    print(f"probe above the interpreter: {best - min(bares):.3f} s (best)")
    print(f"target met: {'yes' if best < TARGET_S else 'NO'}")


if __name__ == "__main__":
    main()
