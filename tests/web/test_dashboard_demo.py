"""``make demo`` end to end, then its dashboard: from the PR comment it wrote, each test named
in it is one click from its test page, which shows its history on every runner class; the run
page shows what the comment shows; the demo's local runners are online; a screenshot of each
page was saved under ``out/`` (Chromium missing: fails in CI, skipped elsewhere)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from ci_app import demo
from ci_app.reporting import links
from ci_app.store import open_store
from ci_app.web.app import create_app
from ci_app.web.screenshots import chromium_path

from .conftest import make_settings
from .test_dashboard_explorer import Page, comment_sections

pytestmark = pytest.mark.slow


def test_demo_comment_links_and_dashboard(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for leaked in ("CI_FANOUT_QUEUE_TOKEN", "CI_FANOUT_DEMO_COMMIT", "CI_FANOUT_DEMO_STATE"):
        monkeypatch.setenv(leaked, "")  # the demo sets these for its runners: restored after
    out = tmp_path / "out"
    env = {"CI_FANOUT_OUT": str(out), "CI_FANOUT_DEMO_SERVE": "0"}
    assert demo.main(env) == 0
    comment = (out / "comment.md").read_text()
    base = re.search(r"\[dashboard\]\((http://127\.0\.0\.1:\d+)/runs/(demo-\d+)\)", comment)
    assert base is not None, comment[-600:]
    # every shard ran its tests (a shard that errors at collection loses its share, said here)
    planned = re.search(
        r"Planned: (\d+) — ran (\d+), not run for want of hardware (\d+), lost (\d+)\.", comment
    )
    assert planned is not None, comment[:800]
    total, ran, not_run, lost = map(int, planned.groups())
    assert total >= 30 and lost == 0 and ran == total - not_run, planned.group(0)
    assert "Infrastructure failures" not in comment, comment[:1500]
    root, run_id = base.group(1), base.group(2)
    named = comment_sections(comment.replace(root, "https://dash.example/ci"))
    with open_store(out / "ci-fanout.duckdb") as store:
        app = create_app(make_settings(), store=store, start_worker=False)
        client = app.test_client()
        run = Page(client.get(f"/runs/{run_id}").get_data(as_text=True))
        pairs = {"New failures": "new-failures", "Flaky": "flaky", "Not run": "not-run",
                 "Regressions": "regressions"}  # fmt: skip
        for title, tests in named.items():
            key = next((k for k in pairs if k in title), None)
            if key is not None:
                assert sorted(set(run.sections[pairs[key]])) == sorted(set(tests)), title
        assert run.sections["new-failures"] and run.sections["flaky"] and run.sections["not-run"]
        urls = set(re.findall(rf"\]\(({re.escape(root)}/tests/[A-Za-z0-9_-]+)\)", comment))
        assert len(urls) >= 5
        classes = {s.runner_class for s in store.results.shards([run_id]) if s.runner_name}
        for url in urls:
            test_id = links.page_test_id(url.rsplit("/", 1)[-1])
            resp = client.get(url.removeprefix(root))
            assert resp.status_code == 200 and test_id, url
            page = Page(resp.get_data(as_text=True))
            assert test_id in page.all_text
            if test_id in run.sections["not-run"]:
                continue  # no runner has its hardware: no class ran it
            strips = re.findall(r'class="rclass" title="([^"]+)"', resp.get_data(as_text=True))
            assert {s.replace(", ", ",") for s in strips} >= classes, test_id
        overview = Page(client.get("/").get_data(as_text=True)).all_text
        assert "2 runners online" in overview, overview
    shots = {p.name for p in out.glob("dashboard-*.png")}
    if chromium_path() is not None:
        assert {"dashboard-run.png", "dashboard-test-1.png", "dashboard-runners.png"} <= shots
    elif os.environ.get("CI"):
        pytest.fail("Debian's /usr/bin/chromium is missing: the demo saved no screenshot")
