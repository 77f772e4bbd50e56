"""What every CI step shares: the resolved options, the context, the output channel, file names."""

from __future__ import annotations

import glob
import re
import shlex
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from ci_app.ci.context import CiContext
from ci_app.ciout import CiOutput
from ci_app.client import AppClient
from ci_app.errors import ConfigError
from ci_app.options.ci import CiOptions

STEPS: Final = ("plan", "shard", "report")
MATRIX_FILE: Final = "matrix.json"
#: the run-scoped token the plan step obtained from the app (travels with the matrix artifact)
RUN_TOKEN_FILE: Final = "run-token"  # noqa: S105 - a file name
CHILD_PIPELINE_FILE: Final = "child-pipeline.yml"
PLAN_ENV_FILE: Final = "plan.env"
RESULTS_FILE: Final = "results.json"
DURATIONS_FILE: Final = "durations.json"
DB_FILE: Final = "ci-fanout.duckdb"
GITLAB_PLAN_JOB: Final = "ci-fanout-plan"
_SAFE: Final = re.compile(r"[^A-Za-z0-9._-]+")


def safe_id(text: str) -> str:
    """A shard id usable in file and artifact names."""
    return _SAFE.sub("_", text).strip("._") or "shard"


def globs(text: str, base: Path) -> list[str]:
    """Space-separated (shell-quoted) globs relative to ``base``; a pattern matching nothing
    is kept as written, so that the reader reports it missing."""
    out: list[str] = []
    for pattern in shlex.split(text):
        full = pattern if Path(pattern).is_absolute() else str(base / pattern)
        matches = sorted(glob.glob(full, recursive=True))  # noqa: PTH207
        out.extend(matches or [full])
    return out


@dataclass(frozen=True, slots=True)
class Step:
    """Everything a step needs; built once by :func:`ci_app.ci.run_step`."""

    vals: CiOptions
    ctx: CiContext
    io: CiOutput
    env: Mapping[str, str]
    #: the whole ``ci-fanout.toml`` (planner rules, policies); ``{}`` when there is none
    project: Mapping[str, Any] = field(default_factory=dict)

    @property
    def workdir(self) -> Path:
        return self.ctx.root / self.vals.working_directory

    @property
    def output_dir(self) -> Path:
        return self.ctx.root / self.vals.output_dir

    @property
    def history_dir(self) -> Path:
        if not self.vals.cache:  # the CI may still restore it; do not read it
            return self.output_dir / "history"
        return self.ctx.root / self.vals.history_dir

    @property
    def server(self) -> str:
        return self.vals.server_url.rstrip("/")

    @property
    def server_token(self) -> str:
        """The admin/server token: only the plan step needs it (to obtain a run token)."""
        return self.vals.server_token

    @property
    def run_token(self) -> str:
        """The run-scoped token the plan step wrote next to the matrix ('' when none)."""
        path = self.output_dir / RUN_TOKEN_FILE
        try:
            return path.read_text(encoding="utf-8").strip()
        except OSError:
            return ""

    def app(self, token: str | None = None) -> AppClient:
        """A client of the app server with ``token`` (default: the run token, else the
        server token)."""
        return AppClient(self.server, token if token is not None else self.run_token)

    def queue_url(self) -> str | None:
        """The run's queue on the app (``POST /api/v1/queue`` creates it under this URL)."""
        if self.vals.mode != "queue" or not self.server:
            return None
        return self.app("").queue_url(self.ctx.run_id)

    def test_python(self) -> str:
        """The interpreter that has the tests' dependencies (the ``python`` option), resolved
        on PATH: it collects the tests and runs them; ci-fanout itself may run elsewhere."""
        name = self.vals.python or "python3"
        found = shutil.which(name, path=self.env.get("PATH"))
        if found is None and Path(name).is_file():
            found = name
        if found is None:
            raise ConfigError(
                f"python = {name!r} is not an interpreter on PATH (set the "
                "python input to the Python that has your test dependencies)"
            )
        return found
