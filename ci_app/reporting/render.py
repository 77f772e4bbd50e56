"""Markdown for the PR/MR comment, the check run and the job summary, within budgets.

Order: hidden marker, headline with signed deltas, new failures (shard,
runner, link), regressions, flaky (with evidence), hardware-specific, trend
(Mermaid ``xychart-beta`` + text sparkline), folded details, footer naming
the commits compared. Over budget, the longest sections lose items first,
each ending with "N more — see dashboard"; the result never exceeds the budget.

Every string that came from a test run is hostile: it goes through
:mod:`ci_app.reporting.markdown` (code spans for identifiers, escaped prose for
messages, checked links), each with its own length cap, so it cannot mention,
link, embed, break a table, close a fence or crowd out the other rows.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ci_app.model.browser import TIMINGS, parse_metric_name
from ci_app.reporting import markdown as md
from ci_app.reporting.classes import class_names
from ci_app.reporting.data import ShardMeta
from ci_app.reporting.flaky import Evidence
from ci_app.reporting.links import dashboard_base, page_url
from ci_app.reporting.marker import MARKER_PREFIX, MARKER_VERSION
from ci_app.reporting.report import Counts, MetricTrend, Regression, Report

COMMENT_BUDGET = 65_536
CHECK_SUMMARY_BUDGET = 65_535
JOB_SUMMARY_BUDGET = 1_048_576
MAX_ANNOTATIONS = 50
_SPARK = "▁▂▃▄▅▆▇█"
_INITIAL_CAP = 200  # items per section before budgeting (100k failures must stay cheap)
# Per-cell caps (characters shown) for strings from the run; longer ones are cut in the middle.
ID_MAX = 200  # test ids, metric names
NAME_MAX = 60  # shards, runners, runner classes, run ids, branches
MESSAGE_MAX = 160  # first line of a failure message in a table
FENCE_MAX = 2000  # a whole failure message, folded
UNIT_MAX = 16


def marker(run_id: str) -> str:
    """First line of every comment: lets the publisher find and edit its own comment."""
    safe = "".join(ch for ch in run_id if ch.isascii() and (ch.isalnum() or ch in "-_.:/"))
    return f"{MARKER_PREFIX} {MARKER_VERSION} run={safe[:100]} -->"


def sparkline(values: Sequence[float]) -> str:
    """``▁▂▅█`` for email and API readers, who do not get the Mermaid chart."""
    vals = [v for v in values if math.isfinite(v)]
    if not vals:
        return ""
    lo, hi = min(vals), max(vals)
    if hi - lo <= 1e-12 * max(1.0, abs(hi)):
        return _SPARK[3] * len(vals)
    return "".join(_SPARK[min(7, int((v - lo) / (hi - lo) * 8))] for v in vals)


def _first_line(text: str | None) -> str:
    stripped = (text or "").strip()
    return stripped.splitlines()[0] if stripped else ""


def _id(value: str, *, table: bool = False) -> str:
    """A test id or metric name: an inert code span, cut to :data:`ID_MAX`."""
    return md.code(value, limit=ID_MAX, table=table)


def _name(value: str, *, table: bool = False) -> str:
    """A shard, runner, label set, run id or branch: an inert code span."""
    return md.code(value, limit=NAME_MAX, table=table)


@dataclass(frozen=True)
class _Names:
    """A report's readable runner-class names (each told apart from the report's other
    classes) and, when the dashboard link is a ci-fanout run page, each test's page."""

    classes: dict[str, str]
    base: str | None

    def cls(self, runner_class: str, *, table: bool = False) -> str:
        return _name(self.classes.get(runner_class, runner_class), table=table)

    def test(self, test_id: str, *, table: bool = False) -> str:
        """A test id as an inert code span, linked to its dashboard page when there is one."""
        label = _id(test_id, table=table)
        if self.base is None or not test_id:
            return label
        url = md.safe_url(page_url(self.base, test_id))
        return f"[{label}]({url})" if url else label


def _report_classes(report: Report) -> set[str]:
    c = report.comparison
    found = {k for k, _ in report.runner_classes}
    found |= {f.runner_class for f in (*c.new_failures, *c.still_failing)}
    for h in c.hardware_specific:
        found |= {*h.failing, *h.passing}
    for fl in c.flaky:
        found |= {e.runner_class for e in fl.evidence}
        if fl.verdict is not None:
            found |= {s.runner_class for s in fl.verdict.stats}
    found |= {r.runner_class for r in report.regressions if r.runner_class}
    return found


def report_names(report: Report) -> _Names:
    return _Names(class_names(_report_classes(report)), dashboard_base(report.dashboard_url))


def _short(sha: str | None) -> str:
    return (sha or "?")[:10]


def _sha(sha: str | None, *, table: bool = False) -> str:
    """A commit, shortened, as a code span (a commit string from a run is hostile too)."""
    return md.code(_short(sha), limit=10, table=table)


def _signed(n: float, fmt: str = "{:+,}") -> str:
    if n == 0:
        return "±0"
    return fmt.format(n)


def _dur(s: float) -> str:
    if s >= 3600:
        return f"{s / 3600:.1f} h"
    if s >= 60:
        return f"{s / 60:.1f} min"
    if s >= 1:
        return f"{s:.1f} s"
    return f"{s * 1000:.0f} ms"


def _value(v: float, unit: str) -> str:
    if unit == "s":
        return _dur(v)
    txt = f"{v:,.4g}"
    return f"{txt} {md.text(unit, limit=UNIT_MAX)}".strip()


def mermaid_trend(report: Report, *, max_points: int = 30) -> str:
    """Suite wall time over the last runs as a Mermaid ``xychart-beta`` block."""
    trend = report.trend[-max_points:]
    if len(trend) < 2:
        return ""
    labels = ", ".join(f'"{md.mermaid_text(_short(t.commit), limit=7) or "?"}"' for t in trend)
    vals = [t.wall_s for t in trend]
    unit, scale = ("min", 60.0) if max(vals) >= 120 else ("s", 1.0)
    data = ", ".join(f"{v / scale:.2f}" for v in vals)
    top = max(vals) / scale * 1.1 or 1.0
    branch = md.mermaid_text(report.base_branch or "base") or "base"
    return "\n".join(
        [
            "```mermaid",
            "xychart-beta",
            f'    title "Suite wall time ({unit}) on {branch}; last point: this run"',
            f"    x-axis [{labels}]",
            f'    y-axis "{unit}" 0 --> {top:.2f}',
            f"    line [{data}]",
            "```",
        ]
    )


@dataclass
class _Section:
    """A heading plus items; ``limit`` items are shown, the rest summarised."""

    key: str
    title: str
    items: list[str]
    head: str = ""  # table header or intro, shown once
    folded: bool = False
    limit: int = _INITIAL_CAP
    total: int = 0

    def render(self, dashboard: str | None) -> str:
        if not self.items and not self.total:
            return ""
        shown = self.items[: self.limit]
        more = max(self.total, len(self.items)) - len(shown)
        lines = [self.head] if self.head else []
        lines.extend(shown)
        if more > 0:
            where = md.link(dashboard, "dashboard") or "dashboard"
            lines.append(f"\n_… {more:,} more — see {where}_")
        body = "\n".join(lines)
        if self.folded:
            return f"<details><summary>{self.title}</summary>\n\n{body}\n\n</details>"
        return f"### {self.title}\n\n{body}"


def _headline(report: Report) -> list[str]:
    c = report.comparison
    h = report.head
    if report.empty:
        icon, word = (
            "🛑",
            (f"no test ran: {h.lost:,} planned test(s) lost" if h.lost else "no test ran"),
        )
    elif c.lost:
        icon, word = "🛑", f"{len(c.lost):,} test(s) lost: their shard died"
    elif c.new_failures:
        icon, word = (
            "❌",
            f"{len(c.new_failures):,} new failure" + ("s" if len(c.new_failures) > 1 else ""),
        )
    elif c.infra_shards:
        icon, word = "🛑", _infra_headline(c.infra_shards, h)
    elif c.infra_errors:
        icon, word = "🛑", f"{len(c.infra_errors):,} infrastructure error(s)"
    elif c.still_failing:
        icon, word = "⚠️", f"{len(c.still_failing):,} still failing (also on base)"
    elif report.regressions:
        icon, word = "🐢", f"{len(report.regressions)} regression(s)"
    else:
        icon, word = "✅", "all tests passed" if not (h.failed or h.errors) else "no new failures"
    parts = [word, f"{h.passed:,} passed"]
    if h.not_run:
        parts.append(f"{h.not_run:,} not run")
    if c.infra_errors and "infrastructure error" not in word:
        parts.append(f"{len(c.infra_errors):,} infrastructure error(s)")
    if c.flaky:
        parts.append(f"{len(c.flaky)} flaky")
    if c.hardware_specific:
        parts.append(f"{len(c.hardware_specific)} hardware-specific")
    if c.fixed:
        parts.append(f"{len(c.fixed)} fixed")
    lines = [f"## {icon} ci-fanout: " + " · ".join(parts)]
    b = report.base_counts
    if b is not None:
        table = [
            "| | tests | passed | failed | skipped | flaky | wall time | machine time |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
            f"| this run | {h.tests:,} | {h.passed:,} | {h.failed + h.errors:,} | {h.skipped:,} "
            f"| {h.flaky:,} | {_dur(h.wall_s)} | {_dur(h.duration_s)} |",
            f"| vs base | {_signed(h.tests - b.tests)} | {_signed(h.passed - b.passed)} "
            f"| {_signed(h.failed + h.errors - b.failed - b.errors)} "
            f"| {_signed(h.skipped - b.skipped)} | | {_pct(h.wall_s, b.wall_s)} "
            f"| {_pct(h.duration_s, b.duration_s)} |",
        ]
        lines.append("\n".join(table))
    else:
        lines.append(
            f"{h.tests:,} tests: {h.passed:,} passed, {h.failed + h.errors:,} failed, "
            f"{h.skipped:,} skipped in {_dur(h.wall_s)} (no base run to compare with yet)."
        )
    if h.lost or h.not_run:
        lines.append(
            f"Planned: {h.tests + h.not_run + h.lost:,} — ran {h.tests:,}, "
            f"not run for want of hardware {h.not_run:,}, lost {h.lost:,}."
        )
    return lines


def _infra_headline(shards: Sequence[ShardMeta], h: Counts) -> str:
    died = sum(1 for s in shards if s.interrupted)
    if died < len(shards):
        return f"{len(shards)} shard(s) failed as a whole"
    tests = "; no test failed" if not (h.failed or h.errors) else ""
    return f"{died} shard(s) died (infrastructure error){tests}"


def _pct(now: float, before: float) -> str:
    if before <= 0:
        return ""
    return f"{(now - before) / before * 100:+.1f} %"


def _link(url: str | None, text: str = "job") -> str:
    """A link with our own text, only to an ``http(s)`` URL (``javascript:`` renders nothing)."""
    return md.link(url, text)


def _sections(report: Report) -> list[_Section]:
    c = report.comparison
    n = report_names(report)
    secs: list[_Section] = []
    if c.lost:  # infrastructure errors first: these tests have no result at all
        secs.append(
            _Section(
                "lost",
                f"🛑 Lost: planned, no result ({len(c.lost):,}) — infrastructure error",
                [
                    f"- {n.test(t)} — {md.text(why.removeprefix('lost: '))}"
                    for t, why in c.lost[:_INITIAL_CAP]
                ],
                total=len(c.lost),
            )
        )
    if c.infra_errors:  # the runner failed these tests, not their code
        secs.append(
            _Section(
                "infra-errors",
                f"🛑 Infrastructure errors ({len(c.infra_errors):,}) — not counted against the "
                "tests",
                [
                    f"- {n.test(t)} — {md.text(why.removeprefix('infra:').strip(), limit=300)}"
                    for t, why in c.infra_errors[:_INITIAL_CAP]
                ],
                total=len(c.infra_errors),
            )
        )
    nf = [
        f"| {n.test(f.test_id, table=True)}{' 🆕' if f.new_test else ''} "
        f"| {_name(f.shard_id, table=True)} "
        f"| {_runner(f.runner_name, f.runner_class, n, table=True)} "
        f"| {_link(f.job_url)} "
        f"| {_message(f.message)} |"
        for f in c.new_failures[:_INITIAL_CAP]
    ]
    secs.append(
        _Section(
            "new",
            f"❌ New failures ({len(c.new_failures):,})",
            nf,
            head="| test | shard | runner | | message |\n|---|---|---|---|---|",
            total=len(c.new_failures),
        )
    )
    secs.append(
        _Section(
            "reg",
            f"🐢 Regressions ({len(report.regressions)})",
            [_regression_row(r, n) for r in report.regressions[:_INITIAL_CAP]],
            head="| what | before | after | change | confidence | since |\n"
            "|---|---:|---:|---:|---:|---|",
            total=len(report.regressions),
        )
    )
    fl = []
    for f in c.flaky[:_INITIAL_CAP]:
        where = "failed here" if f.failed_here else "passed on retry here"
        ev = "; ".join(_evidence(e, n) for e in f.evidence[:3])
        stats = ""
        if f.verdict is not None and any(s.failures for s in f.verdict.stats):
            stats = "; " + ", ".join(
                f"{s.failures}/{s.runs} runs failed on {n.cls(s.runner_class)} "
                f"({s.failure_rate * 100:.1f} %, flip rate {s.flip_rate * 100:.1f} %)"
                for s in f.verdict.stats
                if s.failures
            )
        fl.append(f"- {n.test(f.test_id)} — {where}. Evidence: {ev or 'retry'}{stats}")
    secs.append(
        _Section(
            "flaky",
            f"🔁 Flaky ({len(c.flaky):,}) — not caused by this change",
            fl,
            total=len(c.flaky),
        )
    )
    hw = [
        f"- {n.test(h.test_id)} fails on {', '.join(n.cls(x) for x in h.failing[:10])}"
        + (f", passes on {', '.join(n.cls(x) for x in h.passing[:10])}" if h.passing else "")
        + (
            " (known from history"
            + (f", since {_sha(h.since_commit)}" if h.since_commit else "")
            + ")"
            if h.source == "history"
            else ""
        )
        for h in c.hardware_specific[:_INITIAL_CAP]
    ]
    secs.append(
        _Section(
            "hw",
            f"🖥️ Hardware-specific ({len(c.hardware_specific):,})",
            hw,
            total=len(c.hardware_specific),
        )
    )
    secs.extend(_browser_sections(report, n))
    if c.not_run:
        secs.append(
            _Section(
                "notrun",
                f"🚫 Not run: no online runner has the hardware ({len(c.not_run):,})",
                [f"- {n.test(t)} — {_why_not_run(why)}" for t, why in c.not_run[:_INITIAL_CAP]],
                total=len(c.not_run),
            )
        )
    if c.infra_shards:
        secs.append(
            _Section(
                "infra",
                f"🛑 Infrastructure failures ({len(c.infra_shards)})",
                [
                    f"- shard {_name(s.shard_id)} on {_name(s.runner_name or s.runner_class)}: "
                    + (
                        f"{md.text(s.interrupted)} — the {s.tests:,} test(s) it finished are "
                        "counted, the rest ran elsewhere or are listed as lost "
                        if s.interrupted
                        else f"all {s.errors:,} tests errored — not counted against any test "
                    )
                    + _link(s.job_url)
                    for s in c.infra_shards
                ],
            )
        )
    trend = mermaid_trend(report)
    if trend:
        walls = [t.wall_s for t in report.trend]
        rates = [t.pass_rate for t in report.trend]
        spark = (
            f"wall time {sparkline(walls)} ({_dur(walls[0])} → {_dur(walls[-1])}) · "
            f"pass rate {sparkline(rates)} ({rates[-1] * 100:.1f} %)"
        )
        secs.append(_Section("trend", "📊 Trend", [trend, "", spark], limit=10**6))
    details: list[_Section] = [
        _Section(
            "still",
            f"Still failing, also on base ({len(c.still_failing):,})",
            [
                f"- {n.test(f.test_id)} ({n.cls(f.runner_class)})"
                for f in c.still_failing[:_INITIAL_CAP]
            ],
            folded=True,
            total=len(c.still_failing),
        ),
        _Section(
            "fixed",
            f"Fixed ({len(c.fixed):,})",
            [f"- {n.test(t)}" for t in c.fixed[:_INITIAL_CAP]],
            folded=True,
            total=len(c.fixed),
        ),
        _Section(
            "added",
            f"Added tests ({len(c.added):,})",
            [f"- {n.test(t)}" for t in c.added[:_INITIAL_CAP]],
            folded=True,
            total=len(c.added),
        ),
        _Section(
            "removed",
            f"Removed tests ({len(c.removed):,})",
            [f"- {n.test(t)}" for t in c.removed[:_INITIAL_CAP]],
            folded=True,
            total=len(c.removed),
        ),
        _Section(
            "skipped",
            f"Newly skipped ({len(c.newly_skipped):,})",
            [f"- {n.test(t)}" for t in c.newly_skipped[:_INITIAL_CAP]],
            folded=True,
            total=len(c.newly_skipped),
        ),
        _Section(
            "slow",
            "Slowest tests",
            [
                f"| {n.test(t, table=True)} | {_dur(d)} | "
                + (f"{_dur(b)} ({_pct(d, b)})" if b else "new")
                + " |"
                for t, d, b in report.slowest
            ],
            head="| test | duration | base |\n|---|---:|---|",
            folded=True,
        ),
        _Section(
            "classes",
            "Per runner class",
            [
                f"| {n.cls(k, table=True)} | {v.tests:,} | {v.failed + v.errors:,} "
                f"| {_dur(v.wall_s)} | {_id(k.replace(',', ', '), table=True)} |"
                for k, v in report.runner_classes
            ],
            head="| runner class | tests | failed | wall time | labels |\n|---|---:|---:|---:|---|",
            folded=True,
        ),
    ]
    secs.extend(details)
    fails_with_msg = [f for f in c.new_failures if f.message][:_INITIAL_CAP]
    secs.append(
        _Section(
            "messages",
            f"Failure messages ({len(fails_with_msg)})",
            [
                f"**{n.test(f.test_id)}**\n\n{md.fenced(f.message or '', limit=FENCE_MAX)}"
                for f in fails_with_msg
            ],
            folded=True,
        )
    )
    return secs


def _runner(name: str | None, runner_class: str, n: _Names, *, table: bool = False) -> str:
    """The runner's name, else its class's readable name."""
    return _name(name, table=table) if name else n.cls(runner_class, table=table)


@dataclass
class _AdapterClass:
    """What the comment shows for one WebGPU adapter class."""

    tests: set[str]
    timings: dict[str, list[tuple[float, float | None]]]  # metric -> (this run, base)
    retries: dict[str, list[str]]  # test -> infrastructure kinds it was retried for
    launch: tuple[float, float | None] | None = None
    chromium: tuple[float, float | None] | None = None  # major version (this run, base)


def _base_value(trend: MetricTrend, report: Report) -> float | None:
    """The trend's value at the base run (else its latest history point)."""
    history = trend.points[:-1]
    if report.base is not None:
        for p in history:
            if p.run_id == report.base.run_id:
                return p.value
    return history[-1].value if history else None


def _mean(pairs: Sequence[tuple[float, float | None]]) -> tuple[float, float | None]:
    now = sum(p[0] for p in pairs) / len(pairs)
    bases = [p[1] for p in pairs if p[1] is not None]
    return now, (sum(bases) / len(bases) if len(bases) == len(pairs) else None)


def _vs(now: float, base: float | None, unit: str) -> str:
    text = _value(now, unit)
    return f"{text} ({_pct(now, base)})" if base else text


def _browser_sections(report: Report, n: _Names) -> list[_Section]:
    """Per WebGPU adapter class: pass/fail, infrastructure retries and the pool's timings;
    then the metrics tests reported, against base (names from :mod:`ci_app.model.browser`)."""
    c = report.comparison
    classes: dict[str, _AdapterClass] = {}
    reported: list[tuple[str, str, str, MetricTrend, float | None]] = []
    for trend in report.metric_trends:
        b = parse_metric_name(trend.name)
        if b is None or not trend.points:
            continue
        ac = classes.setdefault(b.adapter, _AdapterClass(set(), {}, {}))
        base = _base_value(trend, report)
        now = trend.points[-1].value
        if b.is_pool:
            if b.metric == "launch_ms":
                ac.launch = (now, base)
            elif b.metric == "chromium":
                ac.chromium = (now, base)
            continue
        ac.tests.add(b.scope)
        if b.infra_kind is not None:
            ac.retries.setdefault(b.scope, []).append(b.infra_kind)
        elif b.is_timing:
            ac.timings.setdefault(b.metric, []).append((now, base))
        else:
            reported.append((b.adapter, b.scope, b.metric, trend, base))
    if not classes:
        return []
    failing = (
        {f.test_id for f in (*c.new_failures, *c.still_failing)}
        | {h.test_id for h in c.hardware_specific}
        | {f.test_id for f in c.flaky if f.failed_here}
    )
    infra = {t for t, _ in c.infra_errors}
    rows = []
    retried: list[str] = []
    for name in sorted(classes):
        ac = classes[name]
        failed = len(ac.tests & failing)
        errors = len(ac.tests & infra)
        retries = [t for t in sorted(ac.retries) if t not in infra]
        infra_cell = ", ".join(
            x
            for x in (
                f"{len(retries)} retried" if retries else "",
                f"{errors} error(s)" * bool(errors),
            )
            if x
        )
        cells = []
        for metric in TIMINGS:
            pairs = ac.timings.get(metric)
            if metric == "launch_ms":
                cells.append(_vs(*ac.launch, "ms") if ac.launch else "")
            else:
                cells.append(_vs(*_mean(pairs), "ms") if pairs else "")
        browser = ""
        if ac.chromium is not None:
            major, was = ac.chromium
            browser = f"Chromium {major:.0f}" + (
                f" (base {was:.0f})" if was is not None and was != major else ""
            )
        rows.append(
            f"| {_name(name, table=True)} | {browser} | {len(ac.tests):,} "
            f"| {len(ac.tests) - failed - errors:,} | {failed:,} | {infra_cell or '—'} | "
            + " | ".join(cells)
            + " |"
        )
        retried.extend(
            f"- {n.test(t)} on {_name(name)}: "
            + ", ".join(md.text(k.replace("-", " ")) for k in ac.retries[t][:5])
            + " — passed on a fresh browser" * (t not in failing)
            for t in retries
        )
    out = [
        _Section(
            "browser",
            "🌐 Browser tests per WebGPU adapter",
            rows,
            head="| adapter | browser | tests | passed | failed | infrastructure | launch | "
            "context | shader compile |\n|---|---|---:|---:|---:|---|---:|---:|---:|",
        )
    ]
    if reported:
        items = []
        for adapter, test, metric, trend, base in sorted(
            reported, key=lambda r: (r[1], r[2], r[0])
        )[:_INITIAL_CAP]:
            now = trend.points[-1].value
            arrow = "higher is better" if trend.direction == "higher" else "lower is better"
            items.append(
                f"| {n.test(test, table=True)} | {_id(metric, table=True)} ({arrow}) "
                f"| {_name(adapter, table=True)} | {_value(now, trend.unit)} "
                f"| {_value(base, trend.unit) if base is not None else 'new'} "
                f"| {_pct(now, base) if base else ''} |"
            )
        out.append(
            _Section(
                "browser-metrics",
                "🌐 Browser metrics vs base",
                items,
                head="| test | metric | adapter | this run | base | change |\n"
                "|---|---|---|---:|---:|---:|",
                total=len(reported),
            )
        )
    if retried:
        out.append(
            _Section(
                "browser-retries",
                f"🔧 Infrastructure retries ({len(retried):,}) — the browser failed, not the "
                "test; not counted as flaky",
                retried[:_INITIAL_CAP],
                total=len(retried),
            )
        )
    return out


def _message(message: str | None) -> str:
    """First line of a failure message for a table cell: escaped prose, capped."""
    return md.text(_first_line(message), limit=MESSAGE_MAX)


def _why_not_run(why: str) -> str:
    """``no runner with [a, b]`` with each label as a code span; any other reason as prose."""
    why = why.removeprefix("not run: ")
    head, sep, rest = why.partition("[")
    if head == "no runner with " and sep and rest.endswith("]"):
        labels = [x.strip() for x in rest[:-1].split(",") if x.strip()]
        return head + ", ".join(_name(x) for x in labels[:20])
    return md.text(why)


def _evidence(e: Evidence, n: _Names) -> str:
    """:meth:`Evidence.describe` with every string from a run made inert."""
    where = f"on {n.cls(e.runner_class)}"
    if e.kind == "retry":
        run = "this run" if e.run_id == "this run" else f"run {_name(e.run_id)}"
        return f"failed then passed on retry in {run} {where}"
    at = f" at {_sha(e.commit)}"
    if e.kind == "same_commit":
        return f"passed and failed{at} {where}"
    return f"failed once between passes{at} {where} (other runners passed)"


def _regression_row(r: Regression, n: _Names) -> str:
    where = (
        f" on {n.cls(r.runner_class, table=True)}" if r.runner_class and r.kind == "metric" else ""
    )
    arrow = "higher is better" if r.direction == "higher" else "lower is better"
    since = (
        "this change"
        if r.scope == "this change"
        else f"{_sha(r.since_commit, table=True)} (on base)"
    )
    return (
        f"| {n.test(r.what, table=True) if r.kind == 'test_duration' else _id(r.what, table=True)}"
        f"{where} ({arrow}) | {_value(r.before, r.unit)} "
        f"| {_value(r.after, r.unit)} | {r.change * 100:+.1f} % | {r.confidence * 100:.1f} % "
        f"| {since} |"
    )


def _footer(report: Report) -> str:
    run = report.run
    head = f"{_sha(run.commit)} (run {_name(run.run_id)}"
    head += f", PR #{int(run.pr)})" if run.pr is not None else ")"
    if report.base is not None:
        base = (
            f"{_sha(report.base.commit)} (run {_name(report.base.run_id)}, "
            f"{md.text(report.base_reason, limit=NAME_MAX)})"
        )
    else:
        base = "nothing (no base run yet)"
    hist = (
        f" · flaky/regression history: {report.history_runs} runs on "
        f"{_name(report.base_branch or '?')}"
    )
    link = md.link(report.dashboard_url, "dashboard")
    dash = f" · {link}" if link else ""
    return f"---\n<sub>Compared {head} with {base}{hist}{dash} · ci-fanout</sub>"


def _assemble(parts: Sequence[str]) -> str:
    return "\n\n".join(p for p in parts if p) + "\n"


def _budgeted(
    report: Report, budget: int, top: Sequence[str], render_extra: Callable[[], list[str]]
) -> str:
    sections = _sections(report)
    footer = _footer(report)
    dashboard = report.dashboard_url

    def build() -> str:
        return _assemble([*top, *(s.render(dashboard) for s in sections), *render_extra(), footer])

    text = build()
    while len(text) > budget:
        sizes = [
            (len(s.render(dashboard)), i)
            for i, s in enumerate(sections)
            if s.limit > 0 and (s.items or s.total)
        ]
        if not sizes:
            break
        _, i = max(sizes)
        s = sections[i]
        over = len(text) - budget
        shown = min(s.limit, len(s.items))
        per_item = max(1, len(s.render(dashboard)) // max(1, shown))
        drop = max(1, min(shown, math.ceil(over / per_item)))
        s.limit = max(0, shown - drop)
        text = build()
    if len(text) > budget:  # only the fixed parts are left: cut hard, keep the marker line
        # Cut between lines: a cut inside a line could open a code span and leave the rest of
        # a hostile string live.
        note = "\n\n_… truncated — see dashboard_\n"
        cut = text.rfind("\n", 0, max(0, budget - len(note)))
        text = (text[:cut] if cut > 0 else "") + note
        text = text[:budget]
    return text


def render_comment(report: Report, budget: int = COMMENT_BUDGET) -> str:
    """The sticky PR/MR comment; its first line is the hidden versioned marker."""
    return _budgeted(report, budget, [marker(report.run.run_id), *_headline(report)], list)


def render_job_summary(report: Report, budget: int = JOB_SUMMARY_BUDGET) -> str:
    """``$GITHUB_STEP_SUMMARY`` / GitLab job log variant (no marker, 1 MiB budget)."""
    return _budgeted(report, budget, _headline(report), list)


def render_check_run(
    report: Report, *, max_annotations: int = MAX_ANNOTATIONS, name: str = "ci-fanout"
) -> dict[str, Any]:
    """Check-run payload: ``title``, ``summary`` (≤ 65,535), ``conclusion``, ``annotations``."""
    c = report.comparison
    bits = []
    if c.new_failures:
        bits.append(f"{len(c.new_failures)} new failure" + ("s" if len(c.new_failures) > 1 else ""))
    if c.still_failing:
        bits.append(f"{len(c.still_failing)} still failing")
    if report.regressions:
        bits.append(f"{len(report.regressions)} regression(s)")
    if c.flaky:
        bits.append(f"{len(c.flaky)} flaky")
    if c.hardware_specific:
        bits.append(f"{len(c.hardware_specific)} hardware-specific")
    if c.infra_errors:
        bits.insert(0, f"{len(c.infra_errors)} infrastructure error(s)")
    if c.lost:
        bits.insert(0, f"{len(c.lost)} test(s) lost (shard died)")
    if report.empty:
        bits.insert(0, "no test ran")
    title = ", ".join(bits) or f"{report.head.passed:,} tests passed"
    annotations: list[dict[str, Any]] = []

    def add(path: str | None, line: int | None, level: str, title_: str, message: str) -> None:
        if path and len(annotations) < max_annotations:
            ln = line if line and line > 0 else 1
            annotations.append(
                {
                    "path": path,
                    "start_line": ln,
                    "end_line": ln,
                    "annotation_level": level,
                    "title": title_[:255],
                    "message": (message or title_)[:64_000],
                }
            )

    for f in c.new_failures:
        add(
            f.file,
            f.line,
            "failure",
            f"New failure: {f.test_id}",
            f"{f.message or ''}\n(shard {f.shard_id}, runner {f.runner_name or f.runner_class})",
        )
    for h in c.hardware_specific:
        add(
            h.file,
            h.line,
            "warning",
            f"Hardware-specific: {h.test_id}",
            f"fails on {', '.join(h.failing)}"
            + (f"; passes on {', '.join(h.passing)}" if h.passing else ""),
        )
    for fl in c.flaky:
        add(
            fl.file,
            fl.line,
            "notice",
            f"Flaky: {fl.test_id}",
            "; ".join(e.describe() for e in fl.evidence[:3]) or "passed on retry",
        )
    conclusion = (
        "failure"
        if (
            c.new_failures
            or c.still_failing
            or c.infra_shards
            or c.lost
            or c.infra_errors
            or report.empty
        )
        else ("neutral" if report.regressions else "success")
    )
    return {
        "name": name,
        "title": title[:255],
        "summary": render_job_summary(report, budget=CHECK_SUMMARY_BUDGET),
        "conclusion": conclusion,
        "annotations": annotations,
    }


def headline(report: Report) -> str:
    """The comment's headline as plain text (icon, verdict, counts: no string from the run)."""
    return _headline(report)[0].removeprefix("## ")
