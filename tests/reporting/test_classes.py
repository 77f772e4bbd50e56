"""Readable runner-class names, URL-safe test keys, and the comment's per-test links (still
inert with any string a run can send)."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ci_app.model.labels import LADDERS
from ci_app.reporting import links
from ci_app.reporting.classes import class_facts, class_names, readable_class
from ci_app.reporting.render import ID_MAX, render_comment
from tests.reporting.gfm import parse
from tests.reporting.test_markdown import (
    JOB,
    _s,
    fields_from,
    hostile_report,
    shown_code,
    structure,
)

H100 = (
    "x64,gpu,gpu-nvidia,gpus-ge-1,gpus-ge-2,gpu-mem-ge-8g,gpu-mem-ge-80g,gpu-model-h100,"
    "gpu-model-h100-80gb-hbm3,cuda-ge-12.4,sm_90,sm-ge-90,cpu-avx512,mem-ge-64g,mem-ge-128g,"
    "cpus-ge-32"
)
RTX = "x64,gpu,gpu-nvidia,gpus-ge-1,gpu-mem-ge-24g,gpu-model-rtx-4090,cpu-avx2,mem-ge-24g"
AVX512 = "x64,cpu-avx2,cpu-avx512,cpu-x86-64-v4,cpus-ge-2,mem-ge-4g,mem-ge-16g,disk-free-ge-10g"


def test_the_issue_example() -> None:
    names = class_names(["x64,gpu-nvidia,mem-ge-24g", "x64,cpu-avx512"])
    assert names == {
        "x64,gpu-nvidia,mem-ge-24g": "gpu-nvidia · mem ≥ 24 GB",
        "x64,cpu-avx512": "cpu · avx512",
    }


def test_a_class_alone_gets_its_most_telling_facts() -> None:
    assert readable_class(H100) == "gpu-nvidia · h100 · gpu-mem ≥ 80 GB"
    assert readable_class(RTX) == "gpu-nvidia · rtx-4090 · gpu-mem ≥ 24 GB"
    assert readable_class(AVX512) == "cpu · avx512 · mem ≥ 16 GB"
    assert readable_class("arm64,cpu-neon,mem-ge-8g") == "cpu · neon · mem ≥ 8 GB"
    assert readable_class("self-hosted,linux") == "linux self-hosted"  # no taxonomy label
    assert readable_class("runner-7") == "runner-7"  # a class keyed by its runner's name
    assert readable_class("") == "default"


def test_among_others_the_differing_facts_are_chosen() -> None:
    small, big = "x64,cpu-avx512,mem-ge-16g", "x64,cpu-avx512,mem-ge-16g,mem-ge-64g"
    assert class_names([small, big]) == {small: "cpu · mem ≥ 16 GB", big: "cpu · mem ≥ 64 GB"}
    web = "x64,cpu-avx512,webgpu,webnn,webnn-gpu"
    assert class_names([small, web])[web] == "cpu · webgpu · webnn-gpu"
    # a label outside the taxonomy is a fact like any other
    a, b = "x64,cpu-avx2,team-a", "x64,cpu-avx2,team-b"
    assert class_names([a, b]) == {a: "cpu · team-a", b: "cpu · team-b"}


def test_facts_read_ladders_at_their_top_step() -> None:
    f = class_facts(H100)
    assert f.kind == "gpu-nvidia" and f.facts["gpu-mem"] == "gpu-mem ≥ 80 GB"
    assert f.facts["gpus"] == "≥ 2 GPUs" and f.facts["cuda"] == "cuda ≥ 12.4"
    assert f.facts["mem"] == "mem ≥ 128 GB" and f.facts["cpus"] == "≥ 32 CPUs"
    assert f.facts["gpu-model"] == "h100" and f.facts["isa"] == "avx512"
    assert class_facts("x64,cuda-ge-12.10,cuda-ge-12.4").facts["cuda"] == "cuda ≥ 12.10"


VOCAB = [
    "x64",
    "arm64",
    "gpu",
    "gpu-nvidia",
    "gpu-amd",
    "cpu-avx2",
    "cpu-avx512",
    "cpu-amx",
    "cpu-neon",
    "webgpu",
    "webgpu-sw",
    "webnn-gpu",
    "gpu-model-h100",
    "gpu-model-a100",
    "accel-npu",
    "self-hosted",
    "lab-7",
    *(LADDERS["mem"].label(s) for s in LADDERS["mem"].steps[:6]),
    *(LADDERS["gpu-mem"].label(s) for s in LADDERS["gpu-mem"].steps[:6]),
    *(LADDERS["cpus"].label(s) for s in LADDERS["cpus"].steps[:5]),
]


@settings(max_examples=400, deadline=None, derandomize=True, database=None)
@given(st.lists(st.sets(st.sampled_from(VOCAB), min_size=1, max_size=8), min_size=1, max_size=8))
def test_names_are_distinct_short_and_stable(label_sets: list[set[str]]) -> None:
    classes = sorted({",".join(sorted(s)) for s in label_sets})
    names = class_names(classes)
    assert set(names) == set(classes)
    assert len(set(names.values())) == len(classes)  # never two classes with one name
    assert class_names(reversed(classes)) == names  # independent of order
    for name in names.values():
        assert 0 < len(name) <= 90 and "," not in name


# -- test page keys --------------------------------------------------------------------------
@given(st.text(min_size=1, max_size=300))
def test_page_key_round_trips_any_test_id(test_id: str) -> None:
    key = links.page_key(test_id)
    assert key.isascii() and all(c.isalnum() or c in "-_" for c in key)
    assert links.page_test_id(key) == test_id


@pytest.mark.parametrize(
    "key", ["", "a", "ab=", "a b", "../x", "%41", "QR", "_" * 9000, "dGVzdA==", "dGVzdB"]
)
def test_only_canonical_keys_name_a_test(key: str) -> None:
    assert links.page_test_id(key) is None


def test_dashboard_base_comes_only_from_a_run_page_link() -> None:
    assert links.dashboard_base("https://ci.example/dash/runs/42") == "https://ci.example/dash"
    assert links.dashboard_base("http://127.0.0.1:8080/runs/demo-6") == "http://127.0.0.1:8080"
    for other in ("https://ci.example/run/1", "https://ci.example/runs/1?x=1", "javascript:x",
                  "https://ci.example/runs/1#frag", None, ""):  # fmt: skip
        assert links.dashboard_base(other) is None, other
    base = links.dashboard_base("https://ci.example/dash/runs/1")
    assert base is not None
    assert links.page_url(base, "a b") == "https://ci.example/dash/tests/YSBi"


# -- the comment's test links ----------------------------------------------------------------
RUN_PAGE = "https://dash.example/ci/runs/1"


def check_links(s: dict[str, str]) -> None:
    report = dataclasses.replace(hostile_report(s, n_failures=2), dashboard_url=RUN_PAGE)
    html = parse(render_comment(report))
    assert html.unknown_tags == set() and html.images == []
    assert html.mentions() == [] and html.gitlab_references() == []
    assert html.bare_links() == [] and html.ragged_tables() == []
    ids = {f.test_id for f in report.comparison.new_failures} | {s["test_id"]}
    expected = 12 if s["test_id"] else 2  # an empty id gets no link
    tests = 0
    for href, text in html.links:
        if href.startswith("https://dash.example/ci/tests/"):
            test_id = links.page_test_id(href.rsplit("/", 1)[-1])
            assert test_id in ids, href
            assert text == shown_code(test_id, ID_MAX), (text, test_id)
            tests += 1
        else:
            assert (href, text) in ((JOB, "job"), (RUN_PAGE, "dashboard")), (href, text)
    assert tests >= expected  # every section that names a test links it


def test_comment_links_each_test_to_its_page() -> None:
    check_links(_s())
    report = dataclasses.replace(hostile_report(_s()), dashboard_url=RUN_PAGE)
    plain = hostile_report(_s())  # a dashboard link that is no run page: no test links
    assert "/tests/" in render_comment(report) and "/tests/" not in render_comment(plain)
    # the links add no structure but the links themselves
    linked = dict(parse(render_comment(report)).tags)
    bare = structure(plain)
    assert {k: v for k, v in linked.items() if k != "a"} == {
        k: v for k, v in bare.items() if k != "a"
    }


@pytest.mark.parametrize(
    "attack", ["](https://evil.example)", "`` ]( `", "a|b]|(c)", "<a href=x>", "@octocat [x]"]
)
def test_test_links_survive_hostile_ids(attack: str) -> None:
    check_links(_s(test_id=attack, message=attack, runner=attack))


@pytest.mark.slow
@settings(
    max_examples=1_000,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(st.binary(max_size=200).map(fields_from))
def test_no_string_breaks_a_test_link(s: dict[str, str]) -> None:
    check_links(s)
