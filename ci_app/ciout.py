"""CI output: the ONE module through which ci-fanout talks to the CI's log and files.

GitHub Actions reads *workflow commands* from stdout (``::group::``, ``::error file=,line=::``,
``::add-mask::``) and files named by environment variables (``$GITHUB_OUTPUT`` for step outputs,
``$GITHUB_STEP_SUMMARY`` for the job summary). GitLab reads collapsible log sections
(``section_start``/``section_end`` ANSI markers) and ``artifacts: reports: dotenv:`` files.
Everything written here is escaped so that test names, messages and paths cannot inject a
command, break a property list or end a heredoc early.

Escaping follows the runner's own ``toCommandValue``/``escapeData``/``escapeProperty``: data
escapes ``%``, ``\\r``, ``\\n``; property values additionally ``:`` and ``,``.

The environment is passed in (``Mapping``), never read at import time.
"""

from __future__ import annotations

import re
import secrets
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Final, Literal

__all__ = [
    "JOB_SUMMARY_LIMIT",
    "CiOutput",
    "Level",
    "annotation",
    "detect_ci",
    "dotenv_line",
    "escape_data",
    "escape_property",
    "gitlab_section_end",
    "gitlab_section_start",
    "output_entry",
    "workflow_command",
]

#: GitHub rejects a step summary over 1 MiB (the step then shows an error instead of it).
JOB_SUMMARY_LIMIT: Final = 1024 * 1024
#: GitHub shows at most 10 error and 10 warning annotations per step; more are dropped.
MAX_ANNOTATIONS_PER_LEVEL: Final = 10

Level = Literal["error", "warning", "notice"]
CiName = Literal["github", "gitlab", "plain"]

_SECTION_NAME: Final = re.compile(r"[^A-Za-z0-9_.-]+")
_DOTENV_KEY: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def escape_data(value: str) -> str:
    """Escape a workflow-command message (the text after ``::``)."""
    return value.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(value: str) -> str:
    """Escape a workflow-command property value (``file=``, ``title=`` …)."""
    return escape_data(value).replace(":", "%3A").replace(",", "%2C")


def workflow_command(
    command: str, message: str = "", properties: Mapping[str, str | int | None] | None = None
) -> str:
    """``::command k=v,k=v::message`` with every part escaped; ``None`` properties are left out."""
    if not re.fullmatch(r"[a-z][a-z-]*", command):
        raise ValueError(f"not a workflow command name: {command!r}")
    props = ",".join(
        f"{k}={escape_property(str(v))}" for k, v in (properties or {}).items() if v is not None
    )
    return f"::{command}{' ' + props if props else ''}::{escape_data(message)}"


def annotation(
    level: Level,
    message: str,
    *,
    file: str | None = None,
    line: int | None = None,
    end_line: int | None = None,
    col: int | None = None,
    title: str | None = None,
) -> str:
    """``::error file=…,line=…,title=…::message`` (or ``warning``/``notice``)."""
    props: dict[str, str | int | None] = {
        "file": file,
        "line": line if line and line > 0 else (1 if file else None),
        "endLine": end_line,
        "col": col,
        "title": title,
    }
    return workflow_command(level, message, props)


def output_entry(name: str, value: str) -> str:
    """One ``$GITHUB_OUTPUT`` entry. Single-line values are ``name=value``; multi-line values use
    a random heredoc delimiter that does not occur in the value."""
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]*", name):
        raise ValueError(f"not a valid output name: {name!r}")
    if "\n" not in value and "\r" not in value:
        return f"{name}={value}\n"
    while True:
        delimiter = f"ghadelimiter_{secrets.token_hex(16)}"
        if delimiter not in value:
            break
    return f"{name}<<{delimiter}\n{value}\n{delimiter}\n"


def dotenv_line(name: str, value: str) -> str:
    """One line of a GitLab ``artifacts: reports: dotenv:`` file (single-line values only)."""
    if not _DOTENV_KEY.match(name):
        raise ValueError(f"not a valid dotenv variable name: {name!r}")
    if "\n" in value or "\r" in value:
        raise ValueError(f"dotenv value of {name} must be one line")
    return f"{name}={value}\n"


def gitlab_section_start(name: str, header: str, *, collapsed: bool = True, now: int = 0) -> str:
    """GitLab collapsible section start marker (``\\e[0Ksection_start:TS:NAME[collapsed=true]``)."""
    safe = _SECTION_NAME.sub("_", name) or "section"
    opts = "[collapsed=true]" if collapsed else ""
    text = header.replace("\r", " ").replace("\n", " ").replace("\x1b", "")
    return f"\x1b[0Ksection_start:{now}:{safe}{opts}\r\x1b[0K{text}"


def gitlab_section_end(name: str, *, now: int = 0) -> str:
    safe = _SECTION_NAME.sub("_", name) or "section"
    return f"\x1b[0Ksection_end:{now}:{safe}\r\x1b[0K"


def detect_ci(env: Mapping[str, str]) -> CiName:
    if env.get("GITHUB_ACTIONS") == "true":
        return "github"
    if env.get("GITLAB_CI") == "true":
        return "gitlab"
    return "plain"


@dataclass
class CiOutput:
    """Writes to the CI's log and files; one instance per command run.

    ``stream`` is the log (stdout: GitHub only reads workflow commands there). Annotations
    are capped per level at what GitHub shows; :attr:`dropped` counts the rest.
    """

    env: Mapping[str, str]
    stream: IO[str] = field(default_factory=lambda: sys.stdout)
    ci: CiName | None = None
    dropped: int = 0
    _counts: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.ci is None:
            self.ci = detect_ci(self.env)

    def _print(self, text: str) -> None:
        self.stream.write(text + "\n")
        self.stream.flush()

    # -- log -----------------------------------------------------------------------------------
    def info(self, text: str) -> None:
        """A plain log line; on GitHub a line starting with ``::`` is defused."""
        if self.ci == "github" and text.lstrip().startswith("::"):
            text = " " + text
        self._print(text)

    @contextmanager
    def group(self, title: str, *, name: str | None = None) -> Iterator[None]:
        """A collapsible log group (GitHub ``::group::``, GitLab ``section_start``)."""
        if self.ci == "github":
            self._print(workflow_command("group", title))
        elif self.ci == "gitlab":
            self._print(gitlab_section_start(name or title, title, now=int(time.time())))
        else:
            self._print(f"== {title}")
        try:
            yield
        finally:
            if self.ci == "github":
                self._print(workflow_command("endgroup"))
            elif self.ci == "gitlab":
                self._print(gitlab_section_end(name or title, now=int(time.time())))

    def annotate(
        self,
        level: Level,
        message: str,
        *,
        file: str | None = None,
        line: int | None = None,
        title: str | None = None,
    ) -> bool:
        """Annotation on GitHub (capped per level), a plain line elsewhere; True if written."""
        if self.ci != "github":
            where = f"{file}:{line or 1}: " if file else ""
            self._print(f"{level}: {where}{title + ': ' if title else ''}{message}")
            return True
        n = self._counts.get(level, 0)
        if n >= MAX_ANNOTATIONS_PER_LEVEL:
            self.dropped += 1
            return False
        self._counts[level] = n + 1
        self._print(annotation(level, message, file=file, line=line, title=title))
        return True

    def mask(self, value: str) -> None:
        """Ask GitHub to mask ``value`` in the rest of the log."""
        if self.ci == "github" and value:
            for part in value.splitlines():
                if part.strip():
                    self._print(workflow_command("add-mask", part))

    # -- files ---------------------------------------------------------------------------------
    def set_output(self, name: str, value: str) -> bool:
        """Append a step output to ``$GITHUB_OUTPUT``; False when not in GitHub Actions."""
        path = self.env.get("GITHUB_OUTPUT")
        if not path:
            return False
        with Path(path).open("a", encoding="utf-8") as fh:
            fh.write(output_entry(name, value))
        return True

    def append_summary(self, markdown: str, *, limit: int = JOB_SUMMARY_LIMIT) -> bool:
        """Append to ``$GITHUB_STEP_SUMMARY``, keeping the file within ``limit`` bytes (cut at a
        line boundary with a note). False when there is no summary file."""
        path_s = self.env.get("GITHUB_STEP_SUMMARY")
        if not path_s:
            return False
        path = Path(path_s)
        used = path.stat().st_size if path.exists() else 0
        text = markdown if markdown.endswith("\n") else markdown + "\n"
        room = limit - used
        data = text.encode("utf-8")
        if len(data) > room:
            note = "\n_… job summary truncated at GitHub's 1 MiB limit._\n".encode()
            keep = max(0, room - len(note))
            cut = data[:keep]
            nl = cut.rfind(b"\n")
            cut = cut[: nl + 1] if nl >= 0 else b""
            data = cut + note if room >= len(note) else b""
            if not data:
                return False
        with path.open("ab") as fh:
            fh.write(data)
        return True
