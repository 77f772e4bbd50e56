"""``ci-app plan``'s flags that name CI options are the last layer of the CI options' cascade:
defaults → ``[ci]`` in ci-fanout.toml → ``CI_FANOUT_*`` → flags."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ci_app.cli import main


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in (
        "CI_FANOUT_SHARDS",
        "CI_FANOUT_MODE",
        "CI_FANOUT_CONFIG",
        "CI_FANOUT_WORKING_DIRECTORY",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    ids = [f"t.py::test_{i}" for i in range(8)]
    (tmp_path / "tests.txt").write_text("\n".join(ids) + "\n")
    (tmp_path / "d.json").write_text(json.dumps(dict.fromkeys(ids, 10.0)))
    (tmp_path / "ci-fanout.toml").write_text('[ci]\nshards = 3\nmode = "queue"\n')
    return tmp_path


def _plan(*flags: str) -> tuple[int, str]:
    argv = ["plan", "--tests", "tests.txt", "--durations", "d.json", "--output", "m.json"]
    assert main([*argv, *flags]) == 0
    doc = json.loads(Path("m.json").read_text())
    return len(doc["shards"]), doc["mode"]


def test_flags_are_the_last_layer(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert _plan() == (3, "queue")  # [ci] of ./ci-fanout.toml
    monkeypatch.setenv("CI_FANOUT_SHARDS", "2")
    assert _plan() == (2, "queue")  # the environment over the file
    assert _plan("--shards", "4", "--mode", "static") == (4, "static")  # the flags over both
    # a target picks the count: it clears the count of the layers below
    assert _plan("--target-minutes", "60")[0] == 1
    (project / "other.toml").write_text("[ci]\nsetup-seconds = 0\n")
    monkeypatch.delenv("CI_FANOUT_SHARDS")
    # --config names the file; without a count or a target: the fewest within 10% of the best
    assert _plan("--config", "other.toml") == (8, "static")


def test_a_named_file_must_exist_and_its_ci_keys_be_options(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["plan", "--tests", "tests.txt", "--output", "m.json"]
    assert main([*argv, "--config", "missing.toml"]) == 2
    assert "missing.toml does not exist" in capsys.readouterr().err
    (project / "ci-fanout.toml").write_text("[ci]\ntarget-minute = 3\n")
    assert main(argv) == 2
    assert "Perhaps you meant 'target-minutes'" in capsys.readouterr().err
