"""The browser crash log: shards append to it, ``runner-probe``'s heartbeat reads it.

Shard jobs and the probe agent run on the same machine as the same user but never talk to
each other, so the pool appends one JSON line per infrastructure event to a small file
(``CI_FANOUT_BROWSER_HEALTH``, default ``$XDG_STATE_HOME/ci-fanout/browser-health.jsonl``).
The heartbeat calls :func:`assess`: ``threshold`` or more crashes within ``window_s`` make the
runner **degraded** (with the reasons), so the app can stop routing browser work to it; once
the window passes without crashes it is ``ok`` again.

Stdlib only (the probe agent imports it). The file is bounded: past :data:`MAX_BYTES` it is
rewritten with its newest :data:`KEEP_LINES` lines. Unreadable lines are skipped.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

MAX_BYTES: Final = 64 * 1024
KEEP_LINES: Final = 200
DEFAULT_WINDOW_S: Final = 1800.0
DEFAULT_THRESHOLD: Final = 3
#: event kinds that say something about the machine (a lying label is about its labels)
CRASH_KINDS: Final = frozenset({"renderer-crash", "browser-exit", "gpu-lost", "hung", "launch"})


def record_event(path: Path, kind: str, detail: str = "", *, now: float | None = None) -> None:
    """Append one event; never raises (a full disk must not fail the test run)."""
    line = json.dumps(
        {"t": round(time.time() if now is None else now, 3), "kind": kind, "detail": detail[:300]},
        separators=(",", ":"),
    )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")
        if path.stat().st_size > MAX_BYTES:
            _compact(path)
    except OSError:
        return


def _compact(path: Path) -> None:
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()[-KEEP_LINES:]
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(x + "\n" for x in lines), encoding="utf-8")
    tmp.replace(path)


def read_events(path: Path) -> list[dict[str, Any]]:
    """The well-formed events in the log (none when it does not exist)."""
    try:
        with path.open("rb") as fh:
            fh.seek(max(0, path.stat().st_size - 4 * MAX_BYTES))
            text = fh.read().decode("utf-8", "replace")
    except OSError:
        return []
    out: list[dict[str, Any]] = []
    for raw in text.splitlines():
        try:
            ev = json.loads(raw)
        except ValueError:
            continue
        if (
            isinstance(ev, dict)
            and isinstance(ev.get("t"), int | float)
            and isinstance(ev.get("kind"), str)
        ):
            out.append(ev)
    return out


@dataclass(frozen=True, slots=True)
class Health:
    status: str  # "ok" | "degraded"
    crashes: int = 0
    reasons: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "browser_crashes": self.crashes,
            "reasons": list(self.reasons),
        }


def assess(
    path: Path,
    *,
    now: float | None = None,
    window_s: float = DEFAULT_WINDOW_S,
    threshold: int = DEFAULT_THRESHOLD,
) -> Health:
    """``degraded`` when ``threshold`` or more crashes happened in the last ``window_s``."""
    now = time.time() if now is None else now
    recent = [
        e for e in read_events(path) if e["kind"] in CRASH_KINDS and now - window_s <= e["t"] <= now
    ]
    if len(recent) < threshold:
        return Health("ok", len(recent))
    kinds = Counter(e["kind"] for e in recent)
    detail = ", ".join(f"{k} ×{n}" for k, n in sorted(kinds.items()))
    return Health(
        "degraded",
        len(recent),
        (f"browser: {len(recent)} crashes in the last {window_s / 60:.0f} min ({detail})",),
    )


__all__ = ["CRASH_KINDS", "Health", "assess", "read_events", "record_event"]
