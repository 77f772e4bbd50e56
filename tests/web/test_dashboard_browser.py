"""The dashboard in Debian's Chromium (Playwright): every page loads without a console error,
a failed request or an HTTP error; the comment's links land on pages that hold what the comment
promised; the filter forms submit under the page's CSP; screenshots of each page are written.

Chromium missing: these tests fail in CI (``CI`` set) and skip elsewhere."""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from werkzeug.serving import make_server

from ci_app.reporting import links
from ci_app.reporting.classes import class_names
from ci_app.reporting.render import render_comment
from ci_app.reporting.report import build_report
from ci_app.web.screenshots import CHROMIUM_ARGS, chromium_path, save_screenshots

from .conftest import Server, build_server
from .explorer_data import CPU, FLAKY, GPU, GPU_ONLY, PR_RUN, REPO, populate_explorer

pytestmark = [pytest.mark.slow, pytest.mark.browser]


def needs_chromium() -> Path:
    """Debian's Chromium: in CI its absence is a failure (CI must install it), else a skip."""
    found = chromium_path()
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("Debian's /usr/bin/chromium is missing (CI must install it: .ci/run)")
        pytest.skip("needs Debian's /usr/bin/chromium (apt-get install chromium)")
    return found


@pytest.fixture
def live() -> Iterator[tuple[Server, str]]:
    for srv in build_server():
        populate_explorer(srv.store)
        now = srv.clock.now
        from tests.web.test_dashboard import PROFILE

        srv.store.runners.upsert_runner(
            "cpu-box",
            provider="github",
            labels=list(CPU),
            profile=PROFILE,
            profile_hash="h",
            now=now - 10,
        )
        http = make_server("127.0.0.1", 0, srv.app, threaded=True)
        thread = threading.Thread(target=http.serve_forever, daemon=True)
        thread.start()
        base = f"http://127.0.0.1:{http.server_port}"
        try:
            yield srv, base
        finally:
            http.shutdown()


class Watch:
    """Collects everything that went wrong on a page."""

    def __init__(self, page: Any) -> None:
        self.problems: list[str] = []
        page.on("console", self._console)
        page.on("pageerror", lambda exc: self.problems.append(f"page error: {exc}"))
        page.on("requestfailed", lambda req: self.problems.append(f"failed: {req.url}"))
        page.on(
            "response",
            lambda r: (
                self.problems.append(f"HTTP {r.status}: {r.url}") if r.status >= 400 else None
            ),
        )

    def _console(self, msg: Any) -> None:
        if msg.type in ("error", "warning"):
            self.problems.append(f"console {msg.type}: {msg.text}")


def test_every_page_and_the_comment_links_in_chromium(live: tuple[Server, str]) -> None:
    from playwright.sync_api import sync_playwright

    chromium = needs_chromium()
    srv, base = live
    report = build_report(srv.store.results, PR_RUN, dashboard_url=f"{base}/runs/{PR_RUN}")
    comment = render_comment(report)
    test_urls = sorted(set(re.findall(r"\]\((http://127\.0\.0\.1:\d+/tests/[A-Za-z0-9_-]+)\)",
                                      comment)))  # fmt: skip
    assert len(test_urls) >= 7
    names = class_names([",".join(sorted(CPU)), ",".join(sorted(GPU))])
    pages = ["/", "/runners", "/runners/cpu-box", "/runs", "/runs?branch=main",
             f"/runs/{PR_RUN}", f"/runs/{PR_RUN}?status=failing", "/tests",
             "/tests?status=failed", f"/repo?name={REPO}", "/jobs"]  # fmt: skip
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(chromium), args=list(CHROMIUM_ARGS))
        try:
            page = browser.new_page()
            watch = Watch(page)
            for path in pages:
                resp = page.goto(base + path, wait_until="load")
                assert resp is not None and resp.status == 200, path
                assert page.locator("h1").count() == 1, path  # one heading per page
                # accessibility basics: every image has a text alternative, every table
                # its header cells, every form control a label
                assert page.locator("img:not([alt])").count() == 0, path
                assert page.locator("table:not(:has(th))").count() == 0, path
                assert page.locator("select:not(label select), input:not(label input)").count() == 0
                sizes = page.eval_on_selector_all(
                    "img", "imgs => imgs.map(i => [i.src, i.complete && i.naturalWidth > 0])"
                )
                assert all(ok for _, ok in sizes), (path, sizes)
            # the comment's links: each lands on its test's page, with its history
            for url in test_urls:
                resp = page.goto(url, wait_until="load")
                assert resp is not None and resp.status == 200, url
                test_id = links.page_test_id(url.rsplit("/", 1)[-1])
                assert page.locator("h1 code").inner_text() == test_id
            page.goto(f"{base}/tests/{links.page_key(GPU_ONLY)}", wait_until="load")
            strips = page.locator("table.strips th[scope=row]").all_inner_texts()
            assert names[",".join(sorted(GPU))] in strips and names[",".join(sorted(CPU))] in strips
            img = page.eval_on_selector("#chart-duration", "i => i.naturalWidth")
            assert img > 300
            # a strip cell is a link to its run, whose page shows the comment's headline
            page.locator("table.strips a.cell").last.click()
            page.wait_for_load_state("load")
            assert page.url.endswith(f"/runs/{PR_RUN}")
            assert "1 test(s) lost" in page.locator("#headline").inner_text()
            # the filter form submits (CSP form-action 'self') and filters server-side
            page.select_option("#tests select[name=status]", "retried")
            page.locator("#tests button[type=submit]").click()
            page.wait_for_load_state("load")
            assert "status=retried" in page.url
            rows = page.locator("#test-table tbody tr").all_inner_texts()
            assert len(rows) == 1 and FLAKY in rows[0]
            # full labels on hover (title) and on expand (details)
            title = page.locator(".rclass").first.get_attribute("title") or ""
            assert "x64" in title and "," in title
            page.locator("#shard-table details.labels summary").first.click()
            assert page.locator("#shard-table details.labels[open] .label").count() >= 5
            assert watch.problems == []
        finally:
            browser.close()


def test_screenshots_of_each_page(live: tuple[Server, str], tmp_path: Path) -> None:
    needs_chromium()
    _srv, base = live
    pages = [("run", f"/runs/{PR_RUN}"), ("test", f"/tests/{links.page_key(FLAKY)}"),
             ("runners", "/runners")]  # fmt: skip
    shots = save_screenshots(base, pages, tmp_path)
    assert [s.name for s in shots] == ["run", "test", "runners"]
    for shot in shots:
        assert shot.status == 200 and shot.problems == [], shot
        assert shot.file is not None and shot.file.name == f"dashboard-{shot.name}.png"
        data = shot.file.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000
