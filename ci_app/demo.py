"""``make demo``: the main job on the embedded default, on one machine.

Ingests the example reports in ``examples/reports`` into the DuckDB file
(``CI_FANOUT_DB``, default ``./ci-fanout.duckdb``), writes ``out/results.json``
and a markdown summary to ``out/summary.md``, and prints the summary.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path

from ci_app.artifacts.ingest import ingest_paths
from ci_app.model.results import Outcome, ResultSet, RunInfo

ROOT = Path(__file__).resolve().parent.parent


def summary_markdown(results: ResultSet) -> str:
    s = results.summary
    lines = [
        "## ci-fanout demo: test results",
        "",
        f"**{s.tests} tests**: {s.passed} passed, {s.failed} failed, {s.errors} errors, "
        f"{s.skipped} skipped, {s.flaky} flaky, {s.duration_s:.1f}s",
        "",
        "| report | format | tests | failed | errors | skipped | note |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for f in results.files:
        note = f.error or "; ".join(f.warnings)
        lines.append(
            f"| `{Path(f.path).name}` | {f.format} | {f.summary.tests} | {f.summary.failed} "
            f"| {f.summary.errors} | {f.summary.skipped} | {note} |"
        )
    failing = [t for t in results.tests if t.outcome in (Outcome.FAILED, Outcome.ERROR)]
    if failing:
        lines += ["", "### Failures", ""]
        for t in failing[:20]:
            msg = (t.message or "").splitlines()[0][:120] if t.message else ""
            lines.append(f"- `{t.id}` ({t.outcome.value}) {msg}")
    flaky = [t for t in results.tests if t.flaky]
    if flaky:
        lines += ["", "### Flaky (failed, then passed on retry)", ""]
        lines += [
            f"- `{t.id}` after {t.retries} retr{'y' if t.retries == 1 else 'ies'}" for t in flaky
        ]
    return "\n".join(lines) + "\n"


def main(env: Mapping[str, str] | None = None) -> int:
    env = os.environ if env is None else env
    db = env.get("CI_FANOUT_DB", "ci-fanout.duckdb")
    out = Path(env.get("CI_FANOUT_OUT", "out"))
    out.mkdir(parents=True, exist_ok=True)
    print("ci-fanout demo: ingesting examples/reports ...", flush=True)
    run = RunInfo(run_id="demo-1", shard_id="local", repo="example/sample", provider="local",
                  commit="demo", branch="main")  # fmt: skip
    results = ingest_paths([ROOT / "examples" / "reports"], run=run)
    (out / "results.json").write_text(
        __import__("json").dumps(results.to_dict(), indent=1, ensure_ascii=False) + "\n",
        encoding="utf-8",
    )
    from ci_app.store import open_store

    with open_store(db) as store:
        rows = store.ingest(results)
    text = summary_markdown(results)
    (out / "summary.md").write_text(text, encoding="utf-8")
    print(text)
    print(f"stored {rows} result rows in {db}; wrote {out}/results.json and {out}/summary.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
