"""PNG charts (matplotlib, Agg canvas, no pyplot global state): data in, bytes out.

For the dashboard, GitLab uploads and CI artifacts; GitHub comments use the
Mermaid block from :mod:`ci_app.reporting.render` instead (GitHub strips
``data:`` images and has no image upload API).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ci_app.model.browser import parse_metric_name
from ci_app.reporting.classes import class_names, readable_class
from ci_app.reporting.explorer import DurationSeries
from ci_app.reporting.report import MetricTrend, Report

if TYPE_CHECKING:
    from matplotlib.figure import Figure

_DPI = 80


def _figure(w: float = 8.0, h: float = 3.2, *, wide_labels: bool = False) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    # fixed margins: the constrained-layout solver costs more than drawing the chart
    fig = Figure(figsize=(w, h), dpi=_DPI)
    fig.subplots_adjust(left=0.3 if wide_labels else 0.09, right=0.9, top=0.88, bottom=0.2)
    FigureCanvasAgg(fig)
    return fig


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=_DPI, metadata={"Software": None})
    return buf.getvalue()


def trend_chart(report: Report) -> bytes:
    """Suite wall time (line) and pass rate (dashed, right axis) over commits."""
    fig = _figure()
    ax = fig.add_subplot()
    trend = report.trend
    xs = list(range(len(trend)))
    ax.plot(xs, [t.wall_s for t in trend], marker="o", ms=3, color="tab:blue", label="wall time")
    ax.set_ylabel("wall time (s)")
    ax.set_ylim(bottom=0)
    ax2 = ax.twinx()
    ax2.plot(xs, [t.pass_rate * 100 for t in trend], ls="--", color="tab:green", label="pass %")
    ax2.set_ylabel("pass rate (%)")
    ax2.set_ylim(0, 101)
    step = max(1, len(trend) // 10)
    ax.set_xticks(
        xs[::step], [(t.commit or "?")[:7] for t in trend][::step], rotation=30, fontsize=7
    )
    ax.set_title(f"Suite on {report.base_branch or 'base'} (last point: this run)")
    return _png(fig)


def slowest_chart(report: Report) -> bytes:
    """Top slowest tests of this run, with the base duration when known."""
    fig = _figure(8.0, 3.6, wide_labels=True)
    ax = fig.add_subplot()
    rows = list(reversed(report.slowest))
    ys = list(range(len(rows)))
    ax.barh(ys, [d for _, d, _ in rows], color="tab:orange", label="this run")
    ax.barh(ys, [b or 0.0 for _, _, b in rows], height=0.3, color="tab:gray", label="base")
    ax.set_yticks(ys, [_trim(t, 45) for t, _, _ in rows], fontsize=7)
    ax.set_xlabel("seconds")
    ax.legend(fontsize=7, loc="lower right")
    ax.set_title("Slowest tests")
    return _png(fig)


def metric_chart(trend: MetricTrend) -> bytes:
    """A metric's history with detected change points marked; the last point is this run."""
    fig = _figure()
    ax = fig.add_subplot()
    vals = [p.value for p in trend.points]
    xs = list(range(len(vals)))
    ax.plot(xs, vals, marker=".", ms=4, color="tab:blue")
    ax.plot([xs[-1]], [vals[-1]], marker="o", ms=7, color="tab:red", label="this run")
    for cp in trend.change_points:
        ax.axvline(cp - 0.5, color="tab:purple", ls=":", lw=1.5)
    better = "higher" if trend.direction == "higher" else "lower"
    ax.set_title(
        f"{_trim(trend.name, 50)} on {readable_class(trend.runner_class)} "
        f"({better} is better; dotted: change points)",
        fontsize=9,
    )
    ax.set_ylabel(trend.unit or "value")
    ax.legend(fontsize=7)
    return _png(fig)


def runner_class_chart(report: Report) -> bytes:
    """Wall time and failures per runner class in this run."""
    fig = _figure(8.0, 3.0, wide_labels=True)
    ax = fig.add_subplot()
    readable = class_names(k for k, _ in report.runner_classes)
    names = [readable[k] for k, _ in report.runner_classes]
    ys = list(range(len(names)))
    ax.barh(ys, [c.wall_s for _, c in report.runner_classes], color="tab:blue")
    for y, (_, c) in zip(ys, report.runner_classes, strict=True):
        if c.failed + c.errors:
            ax.annotate(
                f"{c.failed + c.errors} failed",
                (c.wall_s, y),
                fontsize=7,
                xytext=(3, 0),
                textcoords="offset points",
                va="center",
                color="tab:red",
            )
    ax.set_yticks(ys, [_trim(n, 40) for n in names], fontsize=7)
    ax.set_xlabel("wall time (s)")
    ax.set_title("Per runner class")
    return _png(fig)


_PALETTE = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown")


def test_duration_chart(series: Sequence[DurationSeries], *, title: str = "") -> bytes:
    """A test's duration over runs, one line per runner class (readable names), each change
    point a dotted line in the class's colour with its relative size."""
    fig = _figure(8.0, 3.4)
    ax = fig.add_subplot()
    names = class_names(s.runner_class for s in series)
    longest = max((len(s.values) for s in series), default=0)
    for k, s in enumerate(series[: len(_PALETTE)]):
        color = _PALETTE[k]
        # align series on their latest run: x = runs before the newest
        offset = longest - len(s.values)
        xs = [offset + i for i in range(len(s.values))]
        ax.plot(
            xs,
            list(s.values),
            marker=".",
            ms=4,
            color=color,
            label=_trim(names[s.runner_class], 45),
        )
        if s.highlight is not None:
            x = offset + s.highlight
            ax.plot([x], [s.values[s.highlight]], marker="o", ms=7, color="tab:red")
            ax.annotate(
                "this run",
                (x, s.values[s.highlight]),
                fontsize=7,
                color="tab:red",
                xytext=(-10, 6),
                textcoords="offset points",
                ha="right",
            )
        for cp in s.change_points:
            ax.axvline(offset + cp.index - 0.5, color=color, ls=":", lw=1.5)
            ax.annotate(
                f"{cp.change * 100:+.0f} %",
                (offset + cp.index - 0.5, cp.after),
                fontsize=7,
                color=color,
                xytext=(3, 3),
                textcoords="offset points",
            )
    if series:
        ref = max(series, key=lambda s: len(s.values))
        xs = list(range(len(ref.values)))
        step = max(1, len(xs) // 10)
        ax.set_xticks(
            xs[::step], [(c or "?")[:7] for c in ref.commits][::step], rotation=30, fontsize=7
        )
        top = max((max(s.values) for s in series if s.values), default=1.0)
        ax.set_ylim(0, top * 1.3 or 1.0)
        ax.legend(fontsize=7, loc="upper left", framealpha=0.9)
    else:
        ax.text(0.5, 0.5, "no duration recorded", ha="center", va="center", transform=ax.transAxes)
    ax.set_ylabel("seconds")
    ax.set_title(title or "Duration per run (dotted: change points)", fontsize=9)
    return _png(fig)


def render_charts(report: Report, *, max_metrics: int = 3) -> dict[str, bytes]:
    """All charts for a report, keyed by file name."""
    out: dict[str, bytes] = {}
    if len(report.trend) >= 2:
        out["trend.png"] = trend_chart(report)
    if report.slowest:
        out["slowest.png"] = slowest_chart(report)
    if report.runner_classes:
        out["runner-classes.png"] = runner_class_chart(report)
    regressed = {r.what for r in report.regressions if r.kind == "metric"}

    def runner_figure(name: str) -> bool:  # browser pool timings come after the tests' own
        b = parse_metric_name(name)
        return b is not None and b.describes_runner

    metrics = sorted(
        report.metric_trends,
        key=lambda m: (m.name not in regressed, runner_figure(m.name), m.name),
    )
    for m in metrics[:max_metrics]:
        if len(m.points) >= 2:
            safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in m.name)[:60]
            out[f"metric-{safe}.png"] = metric_chart(m)
    return out


def _trim(text: str, n: int = 60) -> str:
    return text if len(text) <= n else "…" + text[-(n - 1) :]
