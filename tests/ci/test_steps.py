"""``ci-app ci plan|shard|report`` as the action and the template run them: options from
``CI_FANOUT_*``, context from ``GITHUB_*`` / ``CI_*``, outputs into the files GitHub reads."""

from __future__ import annotations

import http.server
import io
import json
import sys
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from ci_app.ci import run_step
from ci_app.ci.report import extract_results, load_shard_results, update_durations
from ci_app.ciout import CiOutput
from ci_app.errors import ConfigError
from ci_app.model.results import Outcome, ResultSet, RunInfo, TestCase
from ci_app.options.ci import resolve
from tests.ci.test_meta import check_schema

RUNNERS = [
    {"name": "cpu-a", "labels": ["self-hosted", "linux", "x64"]},
    {"name": "cpu-b", "labels": ["self-hosted", "linux", "x64"]},
    {
        "name": "h100",
        "labels": [
            "self-hosted",
            "linux",
            "x64",
            "gpu",
            "gpu-nvidia",
            "gpu-mem-ge-24g",
            "gpu-mem-ge-80g",
        ],
    },
    {"name": "browser", "labels": ["self-hosted", "linux", "x64", "webgpu"]},
]


def _github_env(tmp: Path, **extra: str) -> dict[str, str]:
    event = tmp / "event.json"
    event.write_text(
        json.dumps(
            {
                "pull_request": {"number": 7, "head": {"sha": "a" * 40}, "base": {"sha": "b" * 40}},
                "repository": {"default_branch": "main"},
            }
        )
    )
    env = {
        "GITHUB_ACTIONS": "true",
        "GITHUB_OUTPUT": str(tmp / "github_output"),
        "GITHUB_STEP_SUMMARY": str(tmp / "summary.md"),
        "GITHUB_EVENT_PATH": str(event),
        "GITHUB_RUN_ID": "4242",
        "GITHUB_RUN_ATTEMPT": "1",
        "GITHUB_REPOSITORY": "octo/widgets",
        "GITHUB_WORKSPACE": str(tmp),
        "GITHUB_HEAD_REF": "feature",
        "GITHUB_BASE_REF": "main",
        "GITHUB_SERVER_URL": "https://github.example",
    }
    env.update(extra)
    return env


def _outputs(path: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    lines = path.read_text().split("\n")
    i = 0
    while i < len(lines):
        line = lines[i]
        if "<<" in line and "=" not in line.split("<<", 1)[0]:
            name, delim = line.split("<<", 1)
            j = lines.index(delim, i + 1)
            out[name] = "\n".join(lines[i + 1 : j])
            i = j + 1
        elif "=" in line:
            name, value = line.split("=", 1)
            out[name] = value
            i += 1
        else:
            i += 1
    return out


def _inventory(tmp: Path, n_cpu: int = 40) -> dict[str, str]:
    """A generated test list + durations: CPU tests, GPU tests (by a ci-fanout.toml rule) and
    WebGPU tests; returns the CI_FANOUT_* options that point at them."""
    ids = [f"tests/unit/test_m{i % 7}.py::test_{i}" for i in range(n_cpu)]
    ids += [f"tests/gpu/test_kernels.py::test_k{i}" for i in range(6)]
    ids += [f"tests/browser/test_webgpu.py::test_w{i}" for i in range(3)]
    (tmp / "tests.txt").write_text("\n".join(ids) + "\n")
    durations = {t: 5.0 + (i % 13) * 3.0 for i, t in enumerate(ids)}
    (tmp / ".test_durations").write_text(json.dumps(durations))
    (tmp / "runners.json").write_text(json.dumps(RUNNERS))
    (tmp / "ci-fanout.toml").write_text(
        "[ci]\ntarget-minutes = 1\n\n"
        '[[planner.rules]]\npath = "tests/gpu/*"\nrequires = ["gpu-nvidia", "gpu-mem>=24g"]\n\n'
        '[[planner.rules]]\npath = "tests/browser/*"\nrequires = ["webgpu"]\n'
    )
    return {
        "CI_FANOUT_TESTS_FILE": "tests.txt",
        "CI_FANOUT_DURATIONS": ".test_durations",
        "CI_FANOUT_RUNNERS": "runners.json",
    }


def test_plan_writes_a_valid_matrix_to_github_output(tmp_path: Path) -> None:
    env = _github_env(tmp_path, **_inventory(tmp_path))
    log = io.StringIO()
    assert run_step("plan", env, io=CiOutput(env, stream=log)) == 0
    outputs = _outputs(tmp_path / "github_output")
    matrix = json.loads(outputs["matrix"])
    include = matrix["include"]
    assert include, "no shards"
    full = json.loads((tmp_path / "ci-fanout" / "matrix.json").read_text())
    by_id = {s["id"]: s for s in full["shards"]}
    assert {e["shard"] for e in include} == set(by_id)
    for entry in include:
        # what `runs-on: ${{ matrix.runs_on }}` needs: a list of labels some runner holds
        assert isinstance(entry["runs_on"], list) and entry["runs_on"]
        assert any(set(entry["runs_on"]) <= set(r["labels"]) for r in RUNNERS), entry
        assert "tests" in entry and isinstance(entry["tests"], int)
    planned = [t for s in full["shards"] for t in s["tests"]]
    assert len(planned) == len(set(planned)) == 49
    gpu = [s for s in full["shards"] if any("tests/gpu/" in t for t in s["tests"])]
    assert gpu and all("gpu-mem-ge-24g" in s["runs_on"] for s in gpu)
    assert all(all("tests/gpu/" in t for t in s["tests"]) for s in gpu)
    web = [s for s in full["shards"] if any("test_webgpu" in t for t in s["tests"])]
    assert web and all("webgpu" in s["runs_on"] for s in web)
    special = {g["pool"] for g in gpu + web}
    # target-minutes = 1 from ci-fanout.toml: the CPU tests (~900 s) take both CPU runners
    assert sum(1 for s in full["shards"] if s["pool"] not in special) == 2
    assert outputs["report-json"].endswith("matrix.json")
    summary = (tmp_path / "summary.md").read_text()
    assert "### ci-fanout plan" in summary and "49 test(s)" in summary
    assert "::group::ci-fanout: plan" in log.getvalue()
    # an input (env) beats ci-fanout.toml: 30 minutes fit in one CPU shard
    env["CI_FANOUT_TARGET_MINUTES"] = "30"
    assert run_step("plan", env, io=CiOutput(env, stream=log)) == 0
    full = json.loads((tmp_path / "ci-fanout" / "matrix.json").read_text())
    assert sum(1 for s in full["shards"] if s["pool"] not in special) == 1


def test_generated_child_pipeline_matches_gitlab_schema(tmp_path: Path) -> None:
    env = {
        "GITLAB_CI": "true",
        "CI_PIPELINE_ID": "991",
        "CI_PROJECT_DIR": str(tmp_path),
        "CI_PROJECT_ID": "12",
        "CI_COMMIT_SHA": "c" * 40,
        "CI_COMMIT_REF_NAME": "feature",
        "CI_FANOUT_IMAGE": "python:3.12",
        **_inventory(tmp_path),
    }
    assert run_step("plan", env, io=CiOutput(env, stream=io.StringIO())) == 0
    out = tmp_path / "ci-fanout"
    child = yaml.safe_load((out / "child-pipeline.yml").read_text())
    matrix = json.loads((out / "matrix.json").read_text())
    jobs = {k: v for k, v in child.items() if isinstance(v, dict) and "script" in v}
    assert len(jobs) == len(matrix["shards"])
    for shard in matrix["shards"]:
        job = jobs[f"shard {shard['id']}"]
        assert job["tags"] == shard["runs_on"]
        assert job["variables"]["CI_FANOUT_SHARD"] == shard["id"]
        assert job["artifacts"]["reports"]["junit"] == f"ci-fanout/shard-{shard['id']}/junit.xml"
        assert job["needs"] == [{"pipeline": "$PARENT_PIPELINE_ID", "job": "ci-fanout-plan"}]
        assert not any("$[[" in line for line in job["script"])
    assert child["variables"]["CI_FANOUT_RUN_ID"] == "991"
    assert child["variables"]["CI_FANOUT_RUNNERS"] == "runners.json"
    assert child["default"]["image"] == "python:3.12"
    dotenv = (out / "plan.env").read_text().splitlines()
    assert "CI_FANOUT_RUN_ID=991" in dotenv
    check_schema("vendor.gitlab-ci", [("child", child)], tmp_path)


def test_options_cascade_toml_then_env(tmp_path: Path) -> None:
    (tmp_path / "ci-fanout.toml").write_text('[ci]\ntarget-minutes = 4\nmode = "queue"\n')
    config = resolve({}, base_dir=tmp_path)
    assert config.options.target_minutes == 4.0
    assert config.options.mode == "queue"
    assert config.options.setup_seconds == 30.0  # default
    assert config.project == {"ci": {"target-minutes": 4, "mode": "queue"}}
    env = {"CI_FANOUT_TARGET_MINUTES": "7.5", "CI_FANOUT_MODE": ""}  # '' = unset
    config = resolve(env, base_dir=tmp_path)
    assert config.options.target_minutes == 7.5
    assert config.options.mode == "queue"
    assert config.sources["target-minutes"] == "CI_FANOUT_TARGET_MINUTES"
    assert config.sources["mode"] == f"{tmp_path / 'ci-fanout.toml'} [ci]"
    with pytest.raises(ConfigError, match="choose one of static, queue"):
        resolve({"CI_FANOUT_MODE": "queu"}, base_dir=tmp_path)
    with pytest.raises(ConfigError, match="not a valid boolean"):
        resolve({"CI_FANOUT_GPU_FOR_CPU": "maybe"}, base_dir=tmp_path)
    (tmp_path / "ci-fanout.toml").write_text("[ci]\ntarget-minuts = 4\n")
    with pytest.raises(ConfigError, match="Perhaps you meant 'target-minutes'"):
        resolve({}, base_dir=tmp_path)
    (tmp_path / "ci-fanout.toml").write_text('[ci]\noutput-dir = "x"\n')
    with pytest.raises(ConfigError, match="unknown option 'output-dir'"):
        resolve({}, base_dir=tmp_path)  # CI files need it literally: not a [ci] key


SAMPLE_TESTS = """
import pytest

def test_ok():
    assert True

def test_fails():
    assert 1 == 2, "one is not two"

@pytest.mark.skip(reason="not here")
def test_skipped():
    pass

@pytest.mark.hw("gpu-nvidia")
def test_gpu():
    pass
"""


@pytest.fixture
def sample(tmp_path: Path) -> Path:
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_sample.py").write_text(SAMPLE_TESTS)
    (tmp_path / "pytest.ini").write_text("[pytest]\naddopts = -p no:cacheprovider\n")
    (tmp_path / "runners.json").write_text(
        json.dumps(
            [
                {"name": "cpu", "labels": ["self-hosted", "x64"]},
                {"name": "gpu", "labels": ["self-hosted", "x64", "gpu-nvidia"]},
            ]
        )
    )
    return tmp_path


def _flow_env(tmp: Path, **extra: str) -> dict[str, str]:
    return _github_env(
        tmp,
        CI_FANOUT_COLLECT="tests",
        CI_FANOUT_RUNNERS="runners.json",
        CI_FANOUT_TEST_COMMAND=f"{sys.executable} -m pytest -q",
        **extra,
    )


def test_plan_shard_report_flow(sample: Path) -> None:
    """The three steps on a real pytest project: collect with markers, run each shard, report.
    (The action downloads the artifacts between the jobs; here they are copied.)"""
    env = _flow_env(sample, CI_FANOUT_PUBLISH="none")
    log = io.StringIO()
    ci = CiOutput(env, stream=log)
    assert run_step("plan", env, io=ci) == 0
    include = json.loads(_outputs(sample / "github_output")["matrix"])["include"]
    assert sorted(tuple(e["runs_on"]) for e in include) == [
        ("gpu-nvidia", "self-hosted", "x64"),
        ("self-hosted", "x64"),
    ]
    codes = {}
    for entry in include:
        shard_env = {**env, "CI_FANOUT_SHARD": entry["shard"]}
        (sample / "github_output").write_text("")
        codes[entry["shard"]] = run_step("shard", shard_env, io=CiOutput(shard_env, stream=log))
        out = _outputs(sample / "github_output")
        results = json.loads(Path(out["report-json"]).read_text())
        assert results["run"]["shard_id"] == entry["shard"]
        assert results["run"]["runner"]["labels"] == entry["runs_on"]
        assert results["run"]["commit"] == "a" * 40 and results["run"]["pr"] == 7
        junit = Path(out["report-json"]).with_name("junit.xml")
        assert junit.read_text().startswith("<?xml")
        dest = sample / "ci-fanout" / "results" / f"ci-fanout-results-{entry['shard']}"
        dest.mkdir(parents=True)
        (dest / "results.json").write_text(Path(out["report-json"]).read_text())
    cpu = next(e["shard"] for e in include if "gpu-nvidia" not in e["runs_on"])
    gpu = next(e["shard"] for e in include if "gpu-nvidia" in e["runs_on"])
    assert codes == {cpu: 1, gpu: 0}  # fail-on: failures
    text = log.getvalue()
    # the failing test is annotated on its file, with the title escaped
    assert "::error file=tests/test_sample.py,line=" in text
    assert "title=tests/test_sample.py%3A%3Atest_fails (" in text
    (sample / "github_output").write_text("")
    assert run_step("report", env, io=CiOutput(env, stream=log)) == 1
    out = _outputs(sample / "github_output")
    assert out["conclusion"] == "failure"
    assert out["comment-id"] == ""
    report = json.loads(Path(out["report-json"]).read_text())
    assert report  # the report's JSON
    comment = (sample / "ci-fanout" / "report" / "comment.md").read_text()
    assert comment.startswith("<!-- ci-fanout:report")
    assert "tests/test_sample.py::test_fails" in comment
    summary = (sample / "summary.md").read_text()
    assert "tests/test_sample.py::test_fails" in summary
    history = sample / ".ci-fanout-history"
    assert (history / "ci-fanout.duckdb").exists()
    durations = json.loads((history / "durations.json").read_text())
    assert "tests/test_sample.py::test_ok" in durations
    # fail-on never: the same report exits 0
    env_never = {**env, "CI_FANOUT_FAIL_ON": "never", "GITHUB_RUN_ATTEMPT": "2"}
    assert run_step("report", env_never, io=CiOutput(env_never, stream=log)) == 0


def test_report_posts_the_sticky_comment_to_github(sample: Path) -> None:
    from tests.contracts.validate import GitHubContract
    from tests.fakes.github import FakeGitHub

    rs = ResultSet(
        run=RunInfo(shard_id="cpu-1", runner_labels=("self-hosted",)),
        tests=(
            TestCase(id="t::a", name="a", outcome=Outcome.PASSED, duration_s=1.0),
            TestCase(
                id="t::b", name="b", outcome=Outcome.FAILED, message="boom", file="t.py", line=3
            ),
        ),
    )
    dest = sample / "ci-fanout" / "results" / "ci-fanout-results-cpu-1"
    dest.mkdir(parents=True)
    (dest / "results.json").write_text(json.dumps(rs.to_dict()))
    with FakeGitHub(GitHubContract(), token="ghp_ci") as github:
        assert isinstance(github, FakeGitHub)
        env = _flow_env(
            sample,
            GITHUB_TOKEN="ghp_ci",
            CI_FANOUT_GITHUB_API_URL=github.api,
            CI_FANOUT_GITHUB_THROTTLE="0",
            CI_FANOUT_FAIL_ON="never",
        )
        assert run_step("report", env, io=CiOutput(env, stream=io.StringIO())) == 0
        comments = github.comments[7]
        assert len(comments) == 1
        assert comments[0]["body"].startswith("<!-- ci-fanout:report")
        assert "t::b" in comments[0]["body"]
        (check,) = github.check_runs.values()
        assert check["head_sha"] == "a" * 40 and check["conclusion"] == "failure"
        out = _outputs(sample / "github_output")
        assert out["comment-id"] == str(comments[0]["id"])
        # a second report run edits the same comment
        env2 = {**env, "GITHUB_RUN_ATTEMPT": "2"}
        assert run_step("report", env2, io=CiOutput(env2, stream=io.StringIO())) == 0
        assert len(github.comments[7]) == 1
        assert github.violations == []


def test_gitlab_results_from_artifact_zips(tmp_path: Path) -> None:
    rs = ResultSet(
        run=RunInfo(run_id="child-77", shard_id="gpu-1"),
        tests=(TestCase(id="x::y", name="y", outcome=Outcome.PASSED, duration_s=2.0),),
    )
    z = tmp_path / "zips" / "shard_gpu-1-55.zip"
    z.parent.mkdir()
    with zipfile.ZipFile(z, "w") as archive:
        archive.writestr("ci-fanout/shard-gpu-1/results.json", json.dumps(rs.to_dict()))
        archive.writestr("ci-fanout/shard-gpu-1/junit.xml", "<testsuites/>")
    (tmp_path / "zips" / "broken.zip").write_bytes(b"not a zip")
    paths = extract_results(sorted((tmp_path / "zips").glob("*.zip")), tmp_path / "out")
    assert len(paths) == 1
    from ci_app.ci.context import CiContext

    ctx = CiContext(provider="gitlab", run_id="991", root=tmp_path, commit="c" * 40, pr=5)
    (loaded,) = load_shard_results(paths, ctx)
    assert loaded.run.run_id == "991"  # the parent pipeline, not the child
    assert loaded.run.shard_id == "gpu-1"
    assert loaded.run.pr == 5 and loaded.run.commit == "c" * 40
    n = update_durations(tmp_path / "h" / "durations.json", [loaded])
    assert n == 1
    assert json.loads((tmp_path / "h" / "durations.json").read_text()) == {"x::y": 2.0}


class _AppStub(http.server.BaseHTTPRequestHandler):
    requests: list[tuple[str, str, str, Any]] = []  # noqa: RUF012

    def _body(self) -> Any:
        n = int(self.headers.get("Content-Length") or 0)
        return json.loads(self.rfile.read(n)) if n else None

    def _reply(self, doc: Any) -> None:
        data = json.dumps(doc).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self.requests.append(("GET", self.path, self.headers.get("Authorization", ""), None))
        self._reply({"runners": RUNNERS})

    def do_POST(self) -> None:
        body = self._body()
        self.requests.append(("POST", self.path, self.headers.get("Authorization", ""), body))
        self._reply({"run": "4242", "pools": []})

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def app_stub() -> Iterator[str]:
    _AppStub.requests = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _AppStub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_plan_with_the_app_server_uses_its_runners_and_creates_the_queue(
    tmp_path: Path, app_stub: str
) -> None:
    inv = _inventory(tmp_path)
    del inv["CI_FANOUT_RUNNERS"]
    env = _github_env(
        tmp_path,
        **inv,
        CI_FANOUT_SERVER_URL=app_stub,
        CI_FANOUT_SERVER_TOKEN="s3cret",
        CI_FANOUT_MODE="queue",
    )
    log = io.StringIO()
    assert run_step("plan", env, io=CiOutput(env, stream=log)) == 0
    calls = _AppStub.requests
    assert ("GET", "/api/v1/runners", "Bearer s3cret", None) in calls
    (post,) = [c for c in calls if c[0] == "POST"]
    assert post[1] == "/api/v1/queue" and post[2] == "Bearer s3cret"
    assert post[3]["run"] == "4242" and post[3]["repo"] == "octo/widgets"
    assert post[3]["matrix"]["mode"] == "queue" and post[3]["matrix"]["pools"]
    matrix = json.loads((tmp_path / "ci-fanout" / "matrix.json").read_text())
    assert matrix["mode"] == "queue"
    assert "::add-mask::s3cret" in log.getvalue()


def test_queue_mode_without_server_falls_back_to_static(tmp_path: Path) -> None:
    env = _github_env(tmp_path, **_inventory(tmp_path), CI_FANOUT_MODE="queue")
    log = io.StringIO()
    assert run_step("plan", env, io=CiOutput(env, stream=log)) == 0
    matrix = json.loads((tmp_path / "ci-fanout" / "matrix.json").read_text())
    assert matrix["mode"] == "static"
    assert "mode queue needs server-url" in log.getvalue()


def test_shard_needs_an_id_and_report_needs_results(tmp_path: Path) -> None:
    env = _github_env(tmp_path)
    with pytest.raises(ConfigError, match="shard id"):
        run_step("shard", env, io=CiOutput(env, stream=io.StringIO()))
    from ci_app.errors import InputError

    with pytest.raises(InputError, match="no shard results"):
        run_step("report", env, io=CiOutput(env, stream=io.StringIO()))


def test_cli_entry_point_registers_ci(tmp_path: Path) -> None:
    from ci_app.cli import build_parser

    args = build_parser().parse_args(["ci", "plan"])
    assert args.step == "plan"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["ci", "deploy"])


def test_gitlab_report_reads_the_child_pipeline_and_posts_the_mr_note(tmp_path: Path) -> None:
    from tests.fakes.gitlab import FakeGitLab

    def shard(shard_id: str, outcome: Outcome) -> bytes:
        rs = ResultSet(
            run=RunInfo(run_id="child", shard_id=shard_id, runner_labels=("x64",)),
            tests=(TestCase(id=f"t::{shard_id}", name=shard_id, outcome=outcome, duration_s=1.5),),
        )
        return json.dumps(rs.to_dict()).encode()

    with FakeGitLab(token="glpat-ci") as gitlab:
        assert isinstance(gitlab, FakeGitLab)
        parent = gitlab.new_pipeline("feature", {})
        gitlab.add_job(parent, "ci-fanout-plan", files={"ci-fanout/matrix.json": b"{}"})
        child = gitlab.add_child(parent, "ci-fanout-shards")
        gitlab.add_job(
            child,
            "shard cpu-1",
            files={
                "ci-fanout/shard-cpu-1/results.json": shard("cpu-1", Outcome.PASSED),
                "ci-fanout/shard-cpu-1/junit.xml": b"<testsuites/>",
            },
        )
        gitlab.add_job(
            child,
            "shard gpu-1",
            files={"ci-fanout/shard-gpu-1/results.json": shard("gpu-1", Outcome.FAILED)},
        )
        env = {
            "GITLAB_CI": "true",
            "CI_PIPELINE_ID": str(parent["id"]),
            "CI_PROJECT_ID": "42",
            "CI_PROJECT_PATH": "grp/sub/proj",
            "CI_PROJECT_DIR": str(tmp_path),
            "CI_COMMIT_SHA": "d" * 40,
            "CI_MERGE_REQUEST_IID": "3",
            "CI_MERGE_REQUEST_TARGET_BRANCH_NAME": "main",
            "CI_FANOUT_GITLAB_URL": gitlab.url,
            "GITLAB_TOKEN": "glpat-ci",
        }
        log = io.StringIO()
        assert run_step("report", env, io=CiOutput(env, stream=log)) == 1  # a test failed
        (note,) = gitlab.notes[3]
        assert note["body"].startswith("<!-- ci-fanout:report")
        assert "t::gpu-1" in note["body"]
        assert gitlab.uploads, "charts are uploaded to GitLab"
        assert "/uploads/" in note["body"]
        assert any(s.get("state") == "failed" for s in gitlab.statuses)
        assert "section_start" in log.getvalue()
        assert gitlab.violations == []
    stored = sorted((tmp_path / "ci-fanout" / "results").rglob("results.json"))
    assert len(stored) == 2


def test_queue_mode_against_the_real_app(sample: Path, real_app: tuple[str, Any]) -> None:
    """plan creates the run's queue on the app, the shards pull their tests from it with the
    pytest plugin and send their results.json to the app."""
    url, store = real_app
    env = _flow_env(
        sample,
        CI_FANOUT_SERVER_URL=url,
        CI_FANOUT_SERVER_TOKEN="admin-t0ken",
        CI_FANOUT_MODE="queue",
        CI_FANOUT_PUBLISH="none",
        CI_FANOUT_FAIL_ON="never",
    )
    log = io.StringIO()
    assert run_step("plan", env, io=CiOutput(env, stream=log)) == 0
    assert "no online runner yet" in log.getvalue()  # empty registry: the runners input
    include = json.loads(_outputs(sample / "github_output")["matrix"])["include"]
    assert {e["mode"] for e in include} == {"queue"}
    ran: list[str] = []
    for entry in include:
        shard_env = {**env, "CI_FANOUT_SHARD": entry["shard"], "RUNNER_NAME": entry["shard"]}
        (sample / "github_output").write_text("")
        assert run_step("shard", shard_env, io=CiOutput(shard_env, stream=log)) == 0
        results = json.loads(Path(_outputs(sample / "github_output")["report-json"]).read_text())
        ran += [t["id"] for t in results["tests"]]
    # every collected test ran exactly once across the shards, pulled from the queue
    assert sorted(ran) == sorted(
        f"tests/test_sample.py::{n}" for n in ("test_ok", "test_fails", "test_skipped", "test_gpu")
    )
    assert "falling back" not in log.getvalue()
    run = store.results.run("4242")
    assert run is not None  # the app stored the shards' results


def test_shard_keeps_the_projects_pytest_config_in_a_monorepo(tmp_path: Path) -> None:
    """The matrix lives in the workspace's output folder, outside a project in a subfolder:
    passed as a bare path argument, pytest took it into its ini-file search and ran the project
    under the workspace root's config (its own markers unknown, its options lost)."""
    (tmp_path / "pyproject.toml").write_text(
        '[tool.pytest.ini_options]\naddopts = "--strict-markers"\n'
    )
    project = tmp_path / "sub"
    (project / "tests").mkdir(parents=True)
    (project / "pytest.ini").write_text(
        "[pytest]\naddopts = -p no:cacheprovider --strict-markers\n"
        "markers =\n    big_data: reads the big fixture set\n"
    )
    (project / "tests" / "test_sub.py").write_text(
        "import pytest\n\n@pytest.mark.big_data\ndef test_marked():\n    pass\n"
    )
    env = _github_env(
        tmp_path,
        CI_FANOUT_WORKING_DIRECTORY="sub",
        CI_FANOUT_COLLECT="tests",
        CI_FANOUT_TEST_COMMAND=f"{sys.executable} -m pytest -q",
        CI_FANOUT_PUBLISH="none",
    )
    log = io.StringIO()
    assert run_step("plan", env, io=CiOutput(env, stream=log)) == 0, log.getvalue()
    include = json.loads(_outputs(tmp_path / "github_output")["matrix"])["include"]
    assert len(include) == 1
    shard_env = {**env, "CI_FANOUT_SHARD": include[0]["shard"]}
    (tmp_path / "github_output").write_text("")
    assert run_step("shard", shard_env, io=CiOutput(shard_env, stream=log)) == 0, log.getvalue()
    out = _outputs(tmp_path / "github_output")
    results = json.loads(Path(out["report-json"]).read_text())
    assert [(t["id"], t["outcome"]) for t in results["tests"]] == [
        ("tests/test_sub.py::test_marked", "passed")
    ]
