"""The PR/MR comment is inert (issue 14): no string from a test run can mention, link, embed,
add HTML, break a table, close a code span/fence or the Mermaid block, or crowd out the other
rows. Checked on the HTML that GitHub's own cmark-gfm (``cmarkgfm``) makes of the comment, and
on the text nodes where GitHub and GitLab find mentions, references and bare links."""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ci_app.reporting import markdown as md
from ci_app.reporting.compare import Comparison, FailureItem, FlakyItem, HardwareItem
from ci_app.reporting.data import RunMeta, RunTotals, ShardMeta
from ci_app.reporting.flaky import ClassStats, Evidence, Verdict
from ci_app.reporting.render import (
    ID_MAX,
    MESSAGE_MAX,
    NAME_MAX,
    marker,
    mermaid_trend,
    render_comment,
    render_job_summary,
    report_names,
)
from ci_app.reporting.report import Counts, Regression, Report
from tests.reporting.gfm import Html, parse

JOB = "https://ci.example/job/1"
DASH = "https://dash.example/run/1"
NEW_FAILURE_COLUMNS = 5


def hostile_report(
    s: dict[str, str], *, n_failures: int = 3, job_url: str | None = JOB, pr: int | None = None
) -> Report:
    """A report with every user-controlled field taken from ``s`` (keys below)."""
    commit, branch, label, run_id = s["commit"], s["branch"], s["label"], s["run_id"]
    rclass = f"{label},x64"
    failures = tuple(
        FailureItem(
            test_id=f"{s['test_id']}{i}",
            shard_id=s["shard"],
            runner_class=rclass,
            runner_name=s["runner"],
            job_url=job_url,
            message=s["message"],
        )
        for i in range(n_failures)
    )
    evidence = (
        Evidence(kind="retry", runner_class=rclass, run_id=run_id, commit=commit),
        Evidence(kind="same_commit", runner_class=rclass, run_id=run_id, commit=commit),
        Evidence(kind="isolated", runner_class=rclass, run_id=run_id, commit=commit),
    )
    verdict = Verdict(
        test_id=s["test_id"],
        verdict="flaky",
        confidence="high",
        stats=(ClassStats(runner_class=rclass, runs=10, failures=2, flips=3),),
    )
    comparison = Comparison(
        new_failures=failures,
        still_failing=failures[:1],
        fixed=(s["test_id"],),
        flaky=(
            FlakyItem(
                test_id=s["test_id"],
                failed_here=True,
                retried_here=True,
                evidence=evidence,
                verdict=verdict,
            ),
        ),
        hardware_specific=(
            HardwareItem(
                test_id=s["test_id"],
                failing=(rclass,),
                passing=(label,),
                source="history",
                since_commit=commit,
            ),
        ),
        added=(s["test_id"],),
        removed=(s["test_id"],),
        newly_skipped=(s["test_id"],),
        not_run=((s["test_id"], f"not run: x {s['reason']}"),),
        lost=((s["test_id"], f"lost: {s['reason']}"),),
        infra_shards=(
            ShardMeta(
                run_id=run_id,
                shard_id=s["shard"],
                runner_class=rclass,
                runner_name=s["runner"],
                job_url=job_url,
                tests=3,
                errors=3,
            ),
        ),
    )
    run = RunMeta(run_id=run_id, seq=2, commit=commit, branch=branch, pr=pr)
    base = RunMeta(run_id=run_id, seq=1, commit=commit, branch=branch)
    totals = tuple(
        RunTotals(
            run_id=run_id,
            commit=commit,
            tests=3,
            passed=2,
            failed=1,
            errors=0,
            skipped=0,
            duration_s=10.0 + i,
            wall_s=5.0 + i,
        )
        for i in range(3)
    )
    regressions = (
        Regression(
            what=s["metric"],
            kind="metric",
            before=1.0,
            after=2.0,
            change=1.0,
            confidence=0.99,
            since_commit=commit,
            scope="base branch",
            unit=s["unit"],
            runner_class=rclass,
        ),
    )
    counts = Counts(tests=3, passed=2, failed=1, wall_s=5.0, duration_s=10.0)
    return Report(
        run=run,
        base=base,
        base_reason=s["reason"],
        base_branch=branch,
        head=counts,
        base_counts=counts,
        comparison=comparison,
        regressions=regressions,
        trend=totals,
        metric_trends=(),
        runner_classes=((rclass, counts),),
        slowest=((s["test_id"], 2.0, 1.0),),
        history_runs=5,
        dashboard_url=DASH,
    )


FIELDS = (
    "test_id",
    "message",
    "shard",
    "runner",
    "label",
    "commit",
    "branch",
    "run_id",
    "metric",
    "unit",
    "reason",
)


def benign(s: dict[str, str]) -> dict[str, str]:
    """The same report with harmless strings: its HTML has the structure ours must keep."""
    return {k: ("x" if v.strip() else v) for k, v in s.items()}


def check_inert(report: Report, *, links: int) -> Html:
    """The invariants: nothing but our own structure, links and text."""
    text = render_comment(report)
    assert len(text) <= 65_536
    # No line starts with "/": GitLab would run it as a quick action (/merge, /assign @x).
    assert not re.search(r"(?m)^[ \t]*/", text)
    html = parse(text)
    assert html.unknown_tags == set(), html.unknown_tags
    assert html.images == []
    assert html.mentions() == [], html.mentions()
    assert html.gitlab_references() == [], html.gitlab_references()
    assert html.bare_links() == [], html.bare_links()
    assert html.ragged_tables() == []
    assert len(html.links) == links, html.links
    assert all(
        (href, label) in ((JOB, "job"), (DASH, "dashboard")) for href, label in html.links
    ), html.links
    # The new-failures table: each cell shows exactly its own value (nothing shifted over).
    rows = next(t for t in html.tables if t[0][:3] == ["test", "shard", "runner"])
    assert len(rows) == 1 + len(report.new_failures)
    for row, f in zip(rows[1:], report.new_failures, strict=True):
        assert row[0] == shown_code(f.test_id, ID_MAX), row
        assert row[1] == shown_code(f.shard_id, NAME_MAX), row
        names = report_names(report).classes
        runner = f.runner_name or names.get(f.runner_class, f.runner_class)
        assert row[2] == shown_code(runner, NAME_MAX), row
        assert row[3] == ("job" if md.safe_url(f.job_url) else ""), row
        message = shown_text(first_line(f.message)).replace(md.WORD_JOINER, "")
        assert row[4].replace(md.WORD_JOINER, "") == message, row
    return html


def first_line(message: str | None) -> str:
    stripped = (message or "").strip()
    return stripped.splitlines()[0] if stripped else ""


def shown_code(value: str, limit: int) -> str:
    """What a reader sees of ``value`` in a code span."""
    content = md.clip(md.clean(value), limit)
    return content if content.strip() else " "


def shown_text(value: str) -> str:
    """What a reader sees of ``value`` rendered as prose (word joiners aside)."""
    return md.clip(re.sub(r"\s+", " ", md.clean(value)).strip(), MESSAGE_MAX)


def structure(report: Report) -> dict[str, int]:
    return dict(parse(render_comment(report)).tags)


# -- each finding of issue 14, one by one ---------------------------------------------------
def _s(**over: str) -> dict[str, str]:
    base = dict.fromkeys(FIELDS, "x")
    base |= {"commit": "0123abc", "branch": "main", "label": "gpu", "unit": "req/s"}
    return base | over


ATTACKS = {
    "user mention": "ping @octocat please",
    "team mention": "cc @acme/security-team now",
    "markdown link": "see [docs](https://evil.example/phish)",
    "image": "![x](https://evil.example/track.png)",
    "www autolink": "visit www.evil.example today",
    "url autolink": "visit https://evil.example/a?b=c today",
    "email autolink": "mail root@evil.example now",
    "angle autolink": "<https://evil.example>",
    "html img": '<img src="https://evil.example/t.png">',
    "details": "</details><details open><summary>fake</summary>",
    "entity mention": "&#64;octocat and &commat;octocat",
    "gitlab refs": "closes #12 and !34 ~bug %v1.0 $5 &6 *iteration:7",
    "github ref": "GH-12 and deadbeefcafe1234",
    "script": "<script>alert(1)</script><iframe src=x>",
    "quick action": "boom\n```\n/merge\n  /assign @octocat\n/approve",
}


@pytest.mark.parametrize("attack", ATTACKS.values(), ids=list(ATTACKS))
def test_message_cannot_mention_link_or_embed(attack: str) -> None:
    report = hostile_report(_s(message=attack, test_id=attack, runner=attack, reason=attack))
    html = check_inert(report, links=5)  # 3 job links + infra job link + footer dashboard
    assert structure(report) == structure(hostile_report(benign(_s())))
    assert html.tags["details"] == structure(hostile_report(_s()))["details"]


def test_pipe_in_a_test_id_does_not_split_the_row() -> None:
    report = hostile_report(_s(test_id="tests/a.py::test[a|b]|", message="x | y", shard="s|1"))
    html = check_inert(report, links=5)
    new_failures = html.tables[1]  # [0] is the headline table
    assert [len(r) for r in new_failures] == [NEW_FAILURE_COLUMNS] * 4  # header + 3 rows
    assert new_failures[1][:2] == ["tests/a.py::test[a|b]|0", "s|1"]
    assert new_failures[1][4] == "x | y"


def test_huge_test_id_does_not_push_the_other_rows_out() -> None:
    report = hostile_report(_s(test_id="t" * 100_000), n_failures=5)
    text = render_comment(report)
    assert len(text) <= 65_536
    new = text.split("### ❌ New failures")[1].split("###")[0]
    rows = [line for line in new.splitlines() if line.startswith("| `t")]
    assert len(rows) == 5 and "more — see" not in new
    assert all(len(r) < 1000 for r in rows) and "…" in rows[0]
    check_inert(report, links=7)


def test_backticks_in_labels_and_commits_keep_code_spans_mermaid_and_footer() -> None:
    nasty = "a`b``c```\n```mermaid\n%%{init: {}}%%"
    report = hostile_report(_s(label=nasty, commit=nasty, branch=nasty, run_id=nasty))
    text = render_comment(report)
    html = check_inert(report, links=5)
    assert structure(report) == structure(hostile_report(benign(_s())))
    chart = mermaid_trend(report)
    assert chart.startswith("```mermaid\nxychart-beta\n") and chart.endswith("\n```")
    assert chart.count("```") == 2 and "%%" not in chart and "`b" not in chart
    assert text.rstrip().endswith("· ci-fanout</sub>")  # the footer is still the footer
    # the runner class's labels, shown verbatim (line breaks as spaces) in one code span
    assert "a`b``c``` ```mermaid %%{init: {}}%%, x64" in html.code_text


def test_job_url_must_be_http() -> None:
    for bad in ("javascript:alert(1)", "data:text/html,x", "//evil.example", "https://"):
        check_inert(hostile_report(_s(), job_url=bad), links=1)  # only the dashboard
    text = render_comment(hostile_report(_s(), job_url='https://ci.example/a(b)<c>[d]"e'))
    assert "[job](https://ci.example/a%28b%29%3Cc%3E%5Bd%5D%22e)" in text
    assert "job](" not in render_comment(hostile_report(_s(), job_url="https://ci.example/a b"))


def test_control_and_bidi_characters_are_dropped() -> None:
    report = hostile_report(_s(test_id="evil\u202etxt.exe\x00\x1b[31m", message="a\rb\u2028c"))
    text = render_comment(report)
    assert "\u202e" not in text and "\x00" not in text and "\x1b" not in text
    assert "\u2028" not in text and "\r" not in text


def test_marker_cannot_be_closed_by_the_run_id() -> None:
    assert marker("x --> @all <b>") == "<!-- ci-fanout:report v1 run=x--allb -->"
    assert len(marker("r" * 10_000)) < 150


def test_failure_message_fence_cannot_be_closed() -> None:
    message = "boom\n```\n@octocat [x](https://e.example)\n````\n</details>"
    html = check_inert(hostile_report(_s(message=message)), links=5)
    assert any("@octocat [x](https://e.example)" in c for c in html.code_text)


def test_tiny_budget_cut_never_opens_a_code_span() -> None:
    report = hostile_report(_s(test_id="@octocat " * 20, message="@octocat"))
    for budget in (300, 700, 1_500, 4_000):
        text = render_comment(report, budget=budget)
        assert len(text) <= budget
        html = parse(text)
        assert html.mentions() == [] and html.images == []


def test_job_summary_is_inert_too() -> None:
    html = parse(render_job_summary(hostile_report(_s(message=ATTACKS["user mention"]))))
    assert html.mentions() == [] and html.unknown_tags == set()


# -- the primitives ---------------------------------------------------------------------------
def test_code_span_round_trips_and_is_cut_in_the_middle() -> None:
    for value in ("`", "``a``", " a ", "a|b", "\\|", "x\\", "  ", "", "a\nb"):
        cell = md.code(value, table=True)
        html = parse(f"| h |\n|---|\n| {cell} |\n")
        expected = md.clean(value) if value.strip() else " "
        assert html.tables == [[["h"], [expected]]], (value, cell)
        assert html.code_text == [expected], (value, cell, html.code_text)
    long = md.code("head-" + "x" * 500 + "-tail", limit=50)
    assert long.startswith("`head-") and long.endswith("-tail`") and "…" in long
    assert len(md.clip("y" * 1000, ID_MAX)) == ID_MAX


def test_text_keeps_what_it_shows() -> None:
    shown = "".join(parse(md.text("a*b_c [d](e) <f> @g #1 www.h.i")).live_text)
    assert shown.replace(md.WORD_JOINER, "").strip() == "a*b_c [d](e) <f> @g #1 www.h.i"


# -- property test: no input string can do any of it --------------------------------------
FRAGMENTS = (
    "@",
    "@octocat",
    "@acme/team",
    "www.",
    "www.x.io",
    "http://",
    "https://e.io/p",
    "mailto:",
    "a@b.io",
    "[",
    "]",
    "(",
    ")",
    "](http://e.io)",
    "![",
    "<",
    ">",
    "<img src=x>",
    "<details>",
    "</details>",
    "<summary>",
    "<!--",
    "-->",
    "<http://e.io>",
    "`",
    "``",
    "```",
    "~~~",
    "|",
    "\\|",
    "\\",
    "\n",
    "\r\n",
    "\t",
    "    ",
    "#1",
    "!2",
    "~bug",
    '~"a b"',
    "%v1",
    "$3",
    "&4",
    "&#64;",
    "&commat;",
    "&amp;",
    "*iteration:1",
    "GH-5",
    "deadbeef1",
    ":smile:",
    "javascript:",
    "%%{init}%%",
    '"',
    "'",
    "-->",
    "---",
    "===",
    "* ",
    "1. ",
    "> ",
    "\u202e",
    "\u2060",
    "\x00",
    "\u2028",
    "_",
    "*",
    "\n/merge",
    "/approve",
)
TOKENS = (*FRAGMENTS, *"ab1@#!~%$&*_`|[]()<>:/.\\-= \n\"'", "é", "😀", "\u0301", "\ufeff")
SEPARATOR = 240  # bytes from here on start the next field


def fields_from(data: bytes) -> dict[str, str]:
    """Hostile strings for every field from one byte string: each byte picks a token, bytes
    >= SEPARATOR move on to the next field. One ``binary`` draw is ~10x cheaper for hypothesis
    than eleven lists of tokens, which keeps 10,000 examples fast; it shrinks just as well."""
    parts: list[list[str]] = [[]]
    for byte in data:
        if byte >= SEPARATOR and len(parts) < len(FIELDS):
            parts.append([])
        else:
            parts[-1].append(TOKENS[byte % len(TOKENS)])
    values = ["".join(p) for p in parts] + [""] * (len(FIELDS) - len(parts))
    return dict(zip(FIELDS, values, strict=True))


_TWINS: dict[tuple[bool, ...], dict[str, int]] = {}


def twin_structure(s: dict[str, str]) -> dict[str, int]:
    """The benign twin's tags. Only an empty message (no folded message block) or commit (no
    "since" commit) changes the structure; were any other field to matter, the cached twin
    would differ and the test fail, never pass wrongly."""
    key = (bool(s["message"]), bool(s["commit"]))
    if key not in _TWINS:
        _TWINS[key] = structure(hostile_report(benign(s), n_failures=2))
    return _TWINS[key]


@pytest.mark.slow
@settings(
    max_examples=10_000,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(st.binary(max_size=200).map(fields_from))
def test_no_string_makes_a_mention_link_image_or_cell(s: dict[str, str]) -> None:
    report = hostile_report(s, n_failures=2)
    html = check_inert(report, links=4)  # 2 job links, the infra shard's, the dashboard
    # Same tags, as many of each, as with harmless strings: no table cell, <details>, heading,
    # list item, code block or link was added or swallowed.
    assert dict(html.tags) == twin_structure(s)


def test_the_checks_catch_raw_strings() -> None:
    """The checks above are not vacuous: raw strings trip every one of them."""
    raw = parse(
        "| a | b |\n|---|---|\n| x | y |\n| @octocat www.e.io ![i](http://e.io/i.png) "
        "[l](http://e.io) #1 GH-5 deadbeef1 | z | extra |\n\n<details><b>\n"
    )
    assert raw.mentions() and raw.images and raw.gitlab_references()
    assert raw.bare_links() == ["GH-5", "deadbeef1"]
    assert len(raw.links) == 2 and raw.unknown_tags == {"img", "b"}
    assert raw.tables[0][2][1] == "z"  # the cell after the "|" shifted in, "extra" dropped
