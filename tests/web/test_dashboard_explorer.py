"""The test explorer through the Flask client: the run page holds what the comment holds, each
test named in the comment is one click from its page, the test page shows its history on every
runner class, filters work server-side and refuse bad input, hostile strings stay inert."""

from __future__ import annotations

import re
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from ci_app.reporting import links
from ci_app.reporting.classes import class_names
from ci_app.reporting.render import render_comment
from ci_app.reporting.report import build_report
from ci_app.store import explorer as ex

from .conftest import Server, build_server
from .explorer_data import (
    CPU,
    EVIL,
    FLAKY,
    GPU,
    GPU_ONLY,
    LOST,
    NEW_FAIL,
    NOT_RUN,
    OOM,
    PR_RUN,
    SLOW,
    main_commit,
    populate_explorer,
)

BASE = "https://dash.example/ci"


class Page(HTMLParser):
    """Links to test pages per ``<section id>``, every href, and the page's text."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.sections: dict[str, list[str]] = {}
        self.hrefs: list[str] = []
        self.imgs: list[str] = []
        self.text: list[str] = []
        self.scripts = 0
        self._section: list[str] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "script":
            self.scripts += 1
        if tag == "section":
            self._section.append(a.get("id") or "")
            self.sections.setdefault(self._section[-1], [])
        if tag == "img" and a.get("src"):
            self.imgs.append(str(a["src"]))
        if tag == "a" and a.get("href"):
            href = str(a["href"])
            self.hrefs.append(href)
            path = urlsplit(href).path
            if path.startswith("/tests/") and self._section:
                test_id = links.page_test_id(path.removeprefix("/tests/"))
                assert test_id is not None, href
                self.sections[self._section[-1]].append(test_id)

    def handle_endtag(self, tag: str) -> None:
        if tag == "section" and self._section:
            self._section.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    @property
    def all_text(self) -> str:
        flat = " ".join(" ".join(self.text).split())
        return re.sub(r"\(\s+", "(", re.sub(r"\s+\)", ")", flat))


def comment_sections(markdown: str) -> dict[str, list[str]]:
    """Test ids linked from each ``###`` section of the comment (decoded from their links)."""
    out: dict[str, list[str]] = {}
    title = ""
    for line in markdown.splitlines():
        if line.startswith("### "):
            title = line
            out[title] = []
        elif line.startswith("<details>"):
            title = ""
        for url in re.findall(r"\]\((https://dash\.example/ci/tests/[A-Za-z0-9_-]+)\)", line):
            test_id = links.page_test_id(url.rsplit("/", 1)[-1])
            assert test_id is not None
            if title:
                out[title].append(test_id)
    return out


@pytest.fixture
def srv() -> Iterator[Server]:
    for s in build_server(public_url=BASE):
        populate_explorer(s.store)
        yield s


def page(srv: Server, path: str, status: int = 200) -> Page:
    resp = srv.client.get(path)
    assert resp.status_code == status, (path, resp.status_code, resp.get_data(as_text=True)[:500])
    return Page(resp.get_data(as_text=True))


def test_run_page_shows_what_the_comment_shows(srv: Server) -> None:
    report = build_report(srv.store.results, PR_RUN, dashboard_url=f"{BASE}/runs/{PR_RUN}")
    comment = comment_sections(render_comment(report))
    run = page(srv, f"/runs/{PR_RUN}")
    pairs = {
        "Lost": "lost",
        "New failures": "new-failures",
        "Regressions": "regressions",
        "Flaky": "flaky",
        "Hardware-specific": "hardware",
        "Not run": "not-run",
    }
    compared = 0
    for title, tests in comment.items():
        key = next((k for k in pairs if k in title), None)
        if key is None:
            continue
        assert sorted(set(run.sections[pairs[key]])) == sorted(set(tests)), title
        compared += 1
    assert compared == len(pairs)
    # the comment's items are the ones this scenario was built to have
    assert set(run.sections["new-failures"]) == {NEW_FAIL, EVIL}
    assert run.sections["flaky"][0] == FLAKY and run.sections["hardware"] == [GPU_ONLY]
    assert run.sections["not-run"] == [NOT_RUN] and run.sections["lost"] == [LOST]
    assert SLOW in run.sections["regressions"]
    text = run.all_text
    # lost (infrastructure errors) come first, like in the comment
    assert text.index("Lost: planned, no result") < text.index("New failures (2)")
    # failure messages, file:line of annotations, the missing labels of a not-run test
    assert "AssertionError: assert 2 == 3" in text and "tests/test_m.py:17" in text
    assert "gpu-mem-ge-80g" in text and "gpu-nvidia" in text
    # flaky evidence and per-class statistics, runner classes by their readable names
    names = class_names([",".join(sorted(CPU)), ",".join(sorted(GPU))])
    cpu_name = names[",".join(sorted(CPU))]
    assert "failed then passed on retry in this run on " + cpu_name in text
    assert "runs failed on " + cpu_name in text
    assert "fails on " + names[",".join(sorted(GPU))] in text
    # each regression with the series it was found in
    charts = [u for u in run.imgs if "run-charts" in u or "duration.png" in u]
    assert len(charts) == 2  # the suite's series (two regressions in it) and the test's
    assert {r.kind for r in report.regressions} == {"suite_duration", "test_duration"}
    for src in charts:
        resp = srv.client.get(src)
        assert resp.status_code == 200 and resp.data[:4] == b"\x89PNG", src


def test_each_test_in_the_comment_is_one_click_from_its_page(srv: Server) -> None:
    report = build_report(srv.store.results, PR_RUN, dashboard_url=f"{BASE}/runs/{PR_RUN}")
    markdown = render_comment(report)
    urls = set(re.findall(r"\]\((https://dash\.example/ci/tests/[A-Za-z0-9_-]+)\)", markdown))
    named = {t for tests in comment_sections(markdown).values() for t in tests}
    assert {NEW_FAIL, EVIL, FLAKY, GPU_ONLY, SLOW, NOT_RUN, LOST} <= named
    names = class_names([",".join(sorted(CPU)), ",".join(sorted(GPU))])
    for url in urls:
        test_id = links.page_test_id(url.rsplit("/", 1)[-1])
        assert test_id is not None
        p = page(srv, url.removeprefix(BASE))
        assert test_id in p.all_text
        if test_id in (NOT_RUN, LOST):
            continue  # only ever planned in this run: no runner class ran it
        # its history on every runner class that ran it
        rows = ex.rows_of_test(srv.store.db, test_id)
        ran_on = {
            c for c, s in zip(rows.runner_class, rows.shard_id, strict=True) if s in ("cpu", "gpu")
        }
        assert ran_on, test_id
        for c in ran_on:
            assert names[c] in p.all_text, (test_id, names[c])
    # and the dashboard link of the footer is the run page
    assert f"[dashboard]({BASE}/runs/{PR_RUN})" in markdown


def test_test_page_history_rates_verdicts_durations_messages(srv: Server) -> None:
    key = links.page_key(GPU_ONLY)
    p = page(srv, f"/tests/{key}")
    text = p.all_text
    names = class_names([",".join(sorted(CPU)), ",".join(sorted(GPU))])
    gpu, cpu = names[",".join(sorted(GPU))], names[",".join(sorted(CPU))]
    # a strip per branch and runner class; the PR branch is marked
    assert "main" in text and "feature/x pull request" in text
    assert text.count(gpu) >= 2 and text.count(cpu) >= 2
    # fails on the GPU class from run 8 on, passes on the CPU class: hardware-specific on main
    assert "hardware-specific on main" in text
    assert f"since {main_commit(8)[:10]}" in text
    # on main (12 runs each): GPU passed 8, then failed 4 (one flip); CPU always passed
    assert re.search(re.escape(gpu) + r" 12 66\.7 % 8\.3 %", text), text
    assert re.search(re.escape(cpu) + r" 12 100\.0 % 0\.0 %", text), text
    # the failure message, seen 5 times (4 on main, 1 in the PR), with the commit it started at
    assert OOM.splitlines()[0] in text and "5×" in text
    assert f"{main_commit(8)[:10]} (main-8)" in text
    # every strip cell links to its run
    runs = [h for h in p.hrefs if h.startswith("/runs/")]
    assert "/runs/main-8" in runs and f"/runs/{PR_RUN}" in runs

    flaky = page(srv, f"/tests/{links.page_key(FLAKY)}").all_text
    assert "flaky on main high confidence" in flaky
    assert "failed then passed on retry in main-9" in flaky
    assert "flip rate" in flaky

    slow = page(srv, f"/tests/{links.page_key(SLOW)}")
    assert "+100.0 %" in slow.all_text  # the change point at run 6: 1.0 s -> 2.0 s
    assert "slower on main" in slow.all_text and "No verdict" not in slow.all_text
    assert f"{main_commit(6)[:10]} (main-6)" in slow.all_text
    chart = srv.client.get(f"/tests/{links.page_key(SLOW)}/duration.png?branch=main&run={PR_RUN}")
    assert chart.status_code == 200 and chart.data[:4] == b"\x89PNG"


def test_hostile_test_id_round_trips_and_stays_inert(srv: Server) -> None:
    key = links.page_key(EVIL)
    assert re.fullmatch(r"[A-Za-z0-9_-]+", key)
    resp = srv.client.get(f"/tests/{key}")
    assert resp.status_code == 200
    html = resp.get_data(as_text=True)
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert Page(html).scripts == 0
    run = srv.client.get(f"/runs/{PR_RUN}").get_data(as_text=True)
    assert "<script>" not in run and "<b>bold</b>" not in run
    assert "javascript:" not in "".join(Page(run).hrefs)  # the shard's job link is not a link
    for bad in ("!!!", "a", "_" * 9000, links.page_key("x") + "=", "QR"):  # not our keys
        assert srv.client.get(f"/tests/{bad}").status_code == 404, bad
    assert srv.client.get(f"/tests/{links.page_key('never/ran::t')}").status_code == 404


def test_run_page_filters_are_server_side(srv: Server) -> None:
    def shown(query: str) -> list[str]:
        p = page(srv, f"/runs/{PR_RUN}?{query}")
        return p.sections["tests"]

    assert set(shown("status=failing")) == {NEW_FAIL, EVIL, GPU_ONLY}
    assert shown("status=not-run") == [NOT_RUN] and shown("status=lost") == [LOST]
    assert shown("status=retried") == [FLAKY]
    gpu_class = ",".join(sorted(GPU))
    assert set(shown(f"class={gpu_class}")) == {"tests/test_m.py::t0", GPU_ONLY}
    assert set(shown("shard=gpu&status=failing")) == {GPU_ONLY}
    assert shown("q=SLOW") == [SLOW]  # case-insensitive
    assert shown("q=%25") == [EVIL]  # '%' is a literal, not a wildcard
    assert shown("q=_") == shown("")  # every id has an underscore
    assert shown("q=t_x") == [EVIL] and shown("q=tXx") == []
    # failing first (lost, then failures), then by id
    everything = shown("")
    assert everything[0] == LOST and set(everything[1:4]) == {NEW_FAIL, EVIL, GPU_ONLY}
    for bad, why in (
        ("status=bogus", "unknown status"),
        ("page=0", "'page'"),
        ("page=x", "'page'"),
        ("q=" + "x" * 400, "longer than"),
        ("q=%00", "control characters"),
    ):
        assert why in page(srv, f"/runs/{PR_RUN}?{bad}", status=400).all_text, bad


def test_run_page_paginates(srv: Server) -> None:
    from ci_app.web import explorer

    old = explorer.PAGE_SIZE
    everything = page(srv, f"/runs/{PR_RUN}").sections["tests"]
    explorer.PAGE_SIZE = 4
    try:
        pages = [page(srv, f"/runs/{PR_RUN}?page={n}") for n in (1, 2, 3, 4, 99)]
    finally:
        explorer.PAGE_SIZE = old
    assert len(everything) == 14  # one row per test and shard
    assert [len(p.sections["tests"]) for p in pages] == [4, 4, 4, 2, 0]
    assert [t for p in pages for t in p.sections["tests"]] == everything
    nxt = next(h for h in pages[0].hrefs if "page=2" in h)
    assert parse_qs(urlsplit(nxt).query)["page"] == ["2"]


def test_search_across_runs_and_tests(srv: Server) -> None:
    assert set(page(srv, "/tests?q=TEST_G").sections["results"]) == {GPU_ONLY, NOT_RUN}
    text = page(srv, "/tests?status=failed&branch=main").all_text
    assert FLAKY in text and GPU_ONLY in text and NEW_FAIL not in text
    failing_now = page(srv, "/tests?status=failing").all_text
    assert GPU_ONLY in failing_now and FLAKY not in failing_now
    assert "No test matches" in page(srv, "/tests?q=no-such-test").all_text
    assert srv.client.get("/tests?status=nope").status_code == 400
    runs = page(srv, "/runs?branch=feature/x").all_text
    assert PR_RUN in runs and "main-3" not in runs
    assert "main-10" in page(srv, "/runs?q=10aa").all_text  # a commit prefix
    assert PR_RUN in page(srv, "/runs?pr=9").all_text
    assert srv.client.get("/runs?pr=nine").status_code == 400


def test_runner_statuses_and_pages(srv: Server) -> None:
    from tests.web.test_dashboard import PROFILE

    now = srv.clock.now
    store = srv.store
    broken = {**PROFILE, "nvidia": {**PROFILE["nvidia"], "status": "error", "error": "NVML gone"}}
    store.runners.upsert_runner(
        "fresh", provider="github", labels=list(CPU), profile=PROFILE, profile_hash="a", now=now - 5
    )
    store.runners.upsert_runner(
        "quiet",
        provider="github",
        labels=list(CPU),
        profile=PROFILE,
        profile_hash="b",
        now=now - 200,
    )
    store.runners.upsert_runner(
        "gone",
        provider="github",
        labels=["x64"],
        profile=None,
        profile_hash=None,
        now=now - 9000,
        status="offline",
    )
    store.runners.upsert_runner(
        "sick", provider="github", labels=list(GPU), profile=broken, profile_hash="c", now=now - 5
    )
    store.runners.set_runner_busy("fresh", True, "job-1", now=now)
    rows = page(srv, "/runners").all_text
    for name, status in (("fresh", "online"), ("quiet", "stale"), ("gone", "offline"),
                         ("sick", "degraded")):  # fmt: skip
        assert re.search(rf"{name} \(github\) {status}\b", rows), (name, status, rows)
    overview = page(srv, "/").all_text
    # online counts degraded runners too (they run jobs); the others are listed by status
    assert re.search(r"\b2 runners online \(1 busy, 4 known, 1 stale, 1 degraded, 1 offline\)",
                     overview), overview  # fmt: skip
    sick = page(srv, "/runners/sick").all_text
    assert "degraded" in sick and "nvidia: NVML gone" in sick
    fresh = page(srv, "/runners/fresh").all_text
    assert "AMD EPYC" in fresh and "cpu-avx512" in fresh and "busy" in fresh
    assert srv.client.get("/runners/nobody").status_code == 404


def test_runner_page_lists_what_it_ran(srv: Server) -> None:
    now = srv.clock.now
    srv.store.runners.upsert_runner(
        "cpu-box", provider="github", labels=list(CPU), profile=None, profile_hash=None, now=now - 1
    )
    p = page(srv, "/runners/cpu-box")
    runs = {h for h in p.hrefs if h.startswith("/runs/")}
    assert {f"/runs/{PR_RUN}", "/runs/main-0", "/runs/main-11"} <= runs
    assert "No profile yet" in p.all_text


def test_pool_depth_and_queue_timeline(srv: Server) -> None:
    from tests.web.test_api import queue_matrix

    resp = srv.client.post(
        "/api/v1/queue",
        json={"run": "q-1", "matrix": queue_matrix("q-1"), "repo": "octo/app"},
        headers=srv.admin(),
    )
    assert resp.status_code in (200, 201), resp.get_data(as_text=True)
    pools = page(srv, "/runners").all_text
    assert re.search(r"\b6\b", pools) and "none online" in pools
    pool = next(iter(srv.ctx.queue.pools("q-1")))
    lease = srv.ctx.queue.lease("q-1", pool, "runner-a", srv.clock.now)
    srv.clock.now += 3
    lease2 = srv.ctx.queue.lease("q-1", pool, "runner-b", srv.clock.now)
    from ci_app.matrix.queue import TestResult

    srv.ctx.queue.complete(
        "q-1", lease.lease_id, [TestResult(t, "passed", 0.1) for t in lease.tests], srv.clock.now
    )
    p = page(srv, "/runs/q-1")
    text = p.all_text
    assert "Timeline: which tests each runner pulled, when" in text
    assert "runner-a #1 +0.0 s" in text and "runner-b #2 +3.0 s" in text
    assert set(lease.tests) <= set(p.sections["queue"]) and set(lease2.tests) <= set(
        p.sections["queue"]
    )
    assert "passed" in text and "no result" in text


def test_pages_carry_a_csp_that_lets_the_filters_submit(srv: Server) -> None:
    for path in ("/", f"/runs/{PR_RUN}", "/tests", f"/tests/{links.page_key(FLAKY)}", "/runs"):
        csp = srv.client.get(path).headers["Content-Security-Policy"]
        assert csp.startswith("default-src 'none'") and "form-action 'self'" in csp
        assert "script-src" not in csp  # no script anywhere
    assert "form-action 'none'" in srv.client.get("/healthz").headers["Content-Security-Policy"]


def test_dashboard_password_covers_the_explorer() -> None:
    for s in build_server(dashboard_password="pw-123"):
        populate_explorer(s.store)
        for path in (f"/runs/{PR_RUN}", "/tests", f"/tests/{links.page_key(FLAKY)}",
                     "/runners/cpu-box", f"/run-charts/trend.png?run={PR_RUN}"):  # fmt: skip
            assert s.client.get(path).status_code == 401, path


def test_local_runners_register_and_sync_like_any_other(tmp_path: Path) -> None:
    """make demo's local runners: a runner token each, heartbeats with the probe's profile;
    the app's local provider (``local-runners``) keeps their labels: online, synced."""
    from ci_app.store import open_store
    from ci_app.web.app import create_app
    from tests.web.conftest import ADMIN, Clock, make_settings
    from tests.web.test_dashboard import PROFILE

    clock = Clock()
    settings = make_settings(local_out_dir=str(tmp_path), local_runners="local-1 local-2")
    with open_store(":memory:") as store:
        app = create_app(settings, store=store, clock=clock, start_worker=False)
        client = app.test_client()
        admin = {"Authorization": f"Bearer {ADMIN}"}
        for name in ("local-1", "local-2"):
            made = client.post(
                f"/api/v1/admin/runners/{name}/tokens", json={"provider": "local"}, headers=admin
            )
            token = made.get_json()["token"]
            beat = client.post(
                "/api/v1/runners/heartbeat",
                json={"runner": name, "profile_hash": "h1", "profile": PROFILE, "load": {}},
                headers={"Authorization": f"Bearer {token}"},
            )
            assert beat.status_code == 200 and beat.get_json()["ok"], beat.get_json()
        app.extensions["ci_fanout"].worker.drain()
        text = Page(client.get("/runners").get_data(as_text=True)).all_text
        assert re.search(r"local-1 \(local\) online", text), text
        assert re.search(r"local-2 \(local\) online", text), text
        assert "no runner named" not in text
        overview = Page(client.get("/").get_data(as_text=True)).all_text
        assert "2 runners online (0 busy, 2 known)" in overview
