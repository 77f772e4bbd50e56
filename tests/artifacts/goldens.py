"""Golden outputs for every stored report (issue 15), like publish-unit-test-result-action's
``test/files``: for each report under ``tests/data``, what users get from it — the
``results.json``, the check-run annotations and the rendered PR-comment section —
committed under ``tests/data/goldens/<report path>/``.

``make goldens`` (``python -m tests.artifacts.goldens --write``) rewrites them; review the
diff. ``test_goldens.py`` regenerates them and fails on any difference. The comment is
rendered by ``ci_app.reporting.render`` as it is, so after a change to the renderer (or a
merge of one) run ``make goldens`` and review what users will read differently.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ci_app.artifacts.ingest import ingest_paths
from ci_app.model.results import ResultSet, RunInfo

DATA = Path(__file__).resolve().parent.parent / "data"
GOLDENS = DATA / "goldens"
REPORT_DIRS = ("reports", "junit", "runners", "formats", "real-runners")
_SUFFIXES = {".xml", ".json", ".trx", ".tap", ".jsonl", ".ndjson", ".log", ".txt"}
_NOT_REPORTS = ("expected.json", "MANIFEST.json", "schema.json", "corpus_differences.json")
OUTPUTS = ("results.json", "annotations.json", "comment.md")

#: The run every golden is rendered for (fixed, so the outputs are deterministic).
RUN = RunInfo(
    run_id="golden-run",
    shard_id="shard-1",
    repo="octo/golden",
    provider="github",
    commit="c" * 40,
    branch="feature",
    pr=1,
    runner_name="runner-1",
    runner_labels=("x64", "linux"),
    started_at="2026-01-01T00:00:00+00:00",
    finished_at="2026-01-01T00:10:00+00:00",
)


def stored_reports() -> list[Path]:
    """Every stored test report under ``tests/data`` (inputs, not expectations)."""
    found: list[Path] = []
    for folder in REPORT_DIRS:
        for path in sorted((DATA / folder).rglob("*")):
            name = path.name
            if (
                not path.is_file()
                or path.suffix.lower() not in _SUFFIXES
                or name.endswith(_NOT_REPORTS)
                or name.endswith((".py.txt", ".rb.txt", ".expected.json"))
                or name.startswith(("summary", "README", "NOTICE"))
            ):
                continue
            found.append(path)
    return found


def golden_dir(report: Path) -> Path:
    return GOLDENS / report.relative_to(DATA)


def _relative(text: str) -> str:
    return text.replace(str(DATA) + "/", "")


def render(report: Path) -> dict[str, str]:
    """The three outputs of one report, as text."""
    from ci_app.reporting.render import render_check_run, render_comment
    from ci_app.reporting.report import build_report
    from ci_app.store import open_store

    rs: ResultSet = ingest_paths([report], run=RUN)
    results = json.dumps(rs.to_dict(), indent=1, ensure_ascii=False) + "\n"
    with open_store(":memory:") as store:
        store.results.ingest(rs)
        built = build_report(store.results, RUN.run_id or "")
        comment = render_comment(built)
        annotations = render_check_run(built)["annotations"]
    return {
        "results.json": _relative(results),
        "annotations.json": _relative(json.dumps(annotations, indent=1, ensure_ascii=False)) + "\n",
        "comment.md": _relative(comment) + ("" if comment.endswith("\n") else "\n"),
    }


def differences() -> list[str]:
    """Paths of goldens that are missing or differ from a fresh rendering."""
    bad: list[str] = []
    for report in stored_reports():
        for name, text in render(report).items():
            path = golden_dir(report) / name
            if not path.exists() or path.read_bytes() != text.encode():
                bad.append(str(path.relative_to(DATA)))
    expected = {golden_dir(r) for r in stored_reports()}
    for stale in sorted(p.parent for p in GOLDENS.rglob("results.json")):
        if stale not in expected:
            bad.append(f"{stale.relative_to(DATA)} (no such report any more)")
    return bad


def write() -> int:
    count = 0
    for report in stored_reports():
        target = golden_dir(report)
        target.mkdir(parents=True, exist_ok=True)
        for name, text in render(report).items():
            (target / name).write_bytes(text.encode())  # bytes: keep "\r" as rendered
            count += 1
    return count


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--write", action="store_true", help="rewrite the goldens")
    args = ap.parse_args(argv)
    if args.write:
        print(f"wrote {write()} golden files under {GOLDENS.relative_to(DATA.parent.parent)}")
        return 0
    bad = differences()
    for line in bad:
        print(f"differs: {line}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
