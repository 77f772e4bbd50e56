"""runner-probe CLI: detect/labels/run/install, end to end on this machine."""

from __future__ import annotations

import io
import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from runner_probe.cli import main
from tests.runner_probe.test_heartbeat import FakeApp, app  # noqa: F401 - fixture
from tests.runner_probe.test_profile import validate

REPO = Path(__file__).resolve().parents[2]


def run_cli(*argv: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    out = io.StringIO()
    code = main(list(argv), env=env if env is not None else {}, stdout=out)
    return code, out.getvalue()


def test_detect_json_validates_and_has_effective_figures() -> None:
    code, text = run_cli("detect", "--json", "--no-browser")
    assert code == 0
    doc = json.loads(text)
    validate(doc)
    effective = doc["cpu"]["effective"]
    assert 1 <= effective <= len(os.sched_getaffinity(0))
    assert doc["memory"]["effective_bytes"] <= doc["memory"]["total_bytes"]
    assert doc["labels"] and doc["label_scheme"] == "hwlabels-v1"
    steps = [int(x.removeprefix("cpus-ge-")) for x in doc["labels"] if x.startswith("cpus-ge-")]
    assert max(steps) <= effective < max(steps) * 2
    assert doc["browser"]["status"] == "absent"


#: What would make ``detect --no-browser`` slow in a fresh process: the browser driver, or the
#: app's heavy dependencies (the probe runs on every runner start).
HEAVY_IMPORTS = frozenset({"playwright", "numpy", "duckdb", "flask", "gunicorn", "matplotlib"})


def test_detect_json_in_a_fresh_process_loads_nothing_heavy() -> None:
    """Issue 3 wanted ``detect --json`` without the browser in < 1 s. What is asserted is
    what that rests on: the fresh process imports no browser driver and none of the app's
    heavy dependencies (the wall time is printed, not asserted: this is not a benchmark)."""
    t0 = time.perf_counter()
    command = ["-X", "importtime", "-m", "runner_probe", "detect", "--json", "--no-browser"]
    proc = subprocess.run(
        [sys.executable, *command],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
        timeout=30,
    )
    print(f"runner-probe detect --json --no-browser: {time.perf_counter() - t0:.3f} s")
    json.loads(proc.stdout)
    imported = {
        line.rsplit("|", 1)[1].strip().split(".")[0]
        for line in proc.stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    }
    assert "runner_probe" in imported  # the parse read the import log
    assert not imported & HEAVY_IMPORTS, sorted(imported & HEAVY_IMPORTS)


def test_detect_table() -> None:
    code, text = run_cli("detect", "--no-browser")
    assert code == 0
    assert text.splitlines()[0].startswith("host")
    assert "effective" in text and "labels" in text


@pytest.mark.parametrize(
    ("fmt", "check"),
    [
        ("json", lambda t: isinstance(json.loads(t), list)),
        ("csv", lambda t: "," in t and "\n" not in t.strip()),
        ("github-output", lambda t: t.startswith("labels=") and "labels-json=[" in t),
        ("lines", lambda t: len(t.splitlines()) > 3),
    ],
)
def test_labels_formats(fmt: str, check: object) -> None:
    code, text = run_cli("labels", "--no-browser", "--format", fmt)
    assert code == 0
    assert callable(check) and check(text)
    assert "x64" in text or "arm64" in text


def test_once_appends_to_github_output(tmp_path: Path) -> None:
    gh = tmp_path / "gh_output"
    gh.write_text("before=1\n")
    code, text = run_cli("run", "--once", "--no-browser", env={"GITHUB_OUTPUT": str(gh)})
    assert code == 0
    lines = gh.read_text().splitlines()
    assert lines[0] == "before=1"
    assert lines[1].startswith("labels=") and lines[1] == text.splitlines()[0]
    assert json.loads(lines[2].removeprefix("labels-json=")) == lines[1][7:].split(",")


def test_once_sends_one_heartbeat(app: FakeApp, tmp_path: Path) -> None:  # noqa: F811
    token = tmp_path / "token"
    token.write_text("tok\n")
    code, _ = run_cli(
        "run", "--once", "--no-browser", "--server", app.url, "--token-file", str(token)
    )
    assert code == 0
    assert len(app.requests) == 1 and "profile" in app.requests[0]


def test_once_with_server_down_still_succeeds(app: FakeApp, tmp_path: Path) -> None:  # noqa: F811
    token = tmp_path / "token"
    token.write_text("tok")
    app.stop()
    code, text = run_cli(
        "run", "--once", "--no-browser", "--server", app.url, "--token-file", str(token)
    )
    assert code == 0 and text.startswith("labels=")


def test_run_heartbeats(app: FakeApp, tmp_path: Path) -> None:  # noqa: F811
    code, _ = run_cli(
        "run",
        "--no-browser",
        "--server",
        app.url,
        "--interval",
        "0.01",
        "--max-beats",
        "2",
        env={"CI_FANOUT_RUNNER_TOKEN": "envtok"},
    )
    assert code == 0
    assert len(app.requests) == 2
    assert "profile" in app.requests[0] and "profile" not in app.requests[1]
    assert app.headers[0]["Authorization"] == "Bearer envtok"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["run", "--no-browser"], "needs --server"),
        (["run", "--server", "http://127.0.0.1:9", "--token-file", "/nonexistent/t"], "token"),
        (["run", "--server", "http://127.0.0.1:9"], "no runner token"),
        (["run", "--server", "ftp://x", "--token-file", "/x"], "http(s) URL"),
    ],
)
def test_run_user_errors(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, _ = run_cli(*argv)
    assert code == 2
    assert message in capsys.readouterr().err


def test_install_print_writes_nothing(tmp_path: Path) -> None:
    code, unit = run_cli(
        "install",
        "--print",
        "--server",
        "https://ci.example.org",
        "--unit-dir",
        str(tmp_path),
        "--name",
        "gpu-01",
        "--user",
        "runner",
    )
    assert code == 0
    assert "[Service]" in unit and "WantedBy=multi-user.target" in unit
    exec_start = next(x for x in unit.splitlines() if x.startswith("ExecStart="))
    assert " run --server https://ci.example.org --token-file " in exec_start
    assert "/etc/ci-fanout/runner-probe.token" in exec_start
    assert "--name gpu-01" in exec_start
    assert "User=runner" in unit
    assert list(tmp_path.iterdir()) == []


def test_install_writes_unit_and_0600_token(tmp_path: Path) -> None:
    src = tmp_path / "given-token"
    src.write_text("runner-token-123\n")
    token_path = tmp_path / "etc" / "runner-probe.token"
    old_umask = os.umask(0)  # even a permissive umask must not widen the token file
    try:
        code, text = run_cli(
            "install",
            "--server",
            "http://127.0.0.1:8080",
            "--token-file",
            str(src),
            "--token-path",
            str(token_path),
            "--unit-dir",
            str(tmp_path / "units"),
        )
    finally:
        os.umask(old_umask)
    assert code == 0, text
    assert stat.S_IMODE(token_path.stat().st_mode) == 0o600
    assert token_path.read_text() == "runner-token-123\n"
    unit = (tmp_path / "units" / "runner-probe.service").read_text()
    assert str(token_path) in unit
    assert "runner-token-123" not in unit
    assert "systemctl" in text


def test_version() -> None:
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
