"""Every ``CI_FANOUT_*`` variable the code names is in the table, and every row is used."""

from __future__ import annotations

import re
from pathlib import Path

from ci_app.docs import GENERATED
from ci_app.options.engine import ENV_PREFIX
from ci_app.options.env import PREFIXES, VARIABLES, known_names, render_env_docs

ROOT = Path(__file__).resolve().parents[2]
_NAME = re.compile(r"CI_FANOUT_[A-Z0-9_]*")
#: where variables are read or handed to jobs (the table itself excepted)
_SOURCES = ("ci_app", "runner_probe")


def _code() -> dict[Path, str]:
    files = [p for d in _SOURCES for p in sorted((ROOT / d).rglob("*.py"))]
    files.append(ROOT / "setup.py")
    table = ROOT / "ci_app" / "options" / "env.py"
    return {p: p.read_text(encoding="utf-8") for p in files if p != table}


def test_every_variable_in_the_code_is_declared() -> None:
    known = known_names()
    missing: dict[str, str] = {}
    for path, text in _code().items():
        for name in _NAME.findall(text):
            if name.endswith("_"):  # a prefix: CI_FANOUT_<NAME>, CI_FANOUT_INPUT_{…}
                assert name == ENV_PREFIX or name in PREFIXES, f"{path}: {name}"
            elif name not in known and not name.startswith(tuple(PREFIXES)):
                missing.setdefault(name, str(path.relative_to(ROOT)))
    assert not missing, f"add these to ci_app/options/env.py: {missing}"


def test_every_row_is_used() -> None:
    text = "\n".join(_code().values())
    sample = (ROOT / "examples" / "sample-project").rglob("*.py")
    text += "\n".join(p.read_text(encoding="utf-8") for p in sample)
    unused = [v.name for v in VARIABLES if v.name not in text]
    assert not unused, f"rows for variables nothing reads or sets: {unused}"


def test_rows_are_unique_and_documented() -> None:
    names = [v.name for v in VARIABLES]
    assert len(names) == len(set(names))
    for v in VARIABLES:
        assert v.name.startswith(ENV_PREFIX) and v.meaning and v.readers, v.name
    doc = render_env_docs()
    for name in known_names():
        assert f"`{name}`" in doc, name
    assert "docs/environment.md" in GENERATED


def test_the_shard_count_variable_is_gone() -> None:
    """It was written and never read."""
    assert "CI_FANOUT_SHARD_COUNT" not in known_names()
    assert all("CI_FANOUT_SHARD_COUNT" not in t for t in _code().values())
