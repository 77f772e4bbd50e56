"""Screenshots of dashboard pages in Debian's Chromium (Playwright, no browser download):
``make demo`` saves one per page under ``out/`` for the README, and records what went wrong
on each page (console errors, failed requests, HTTP errors) so a broken page is not silent."""

from __future__ import annotations

import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["CHROMIUM", "CHROMIUM_ARGS", "Shot", "chromium_path", "save_screenshots"]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
)


@dataclass
class Shot:
    name: str
    path: str
    file: Path | None = None
    status: int | None = None
    problems: list[str] = field(default_factory=list)


def chromium_path() -> Path | None:
    """Debian's Chromium, if installed (browsers are never downloaded)."""
    if CHROMIUM.exists():
        return CHROMIUM
    found = shutil.which("chromium")
    return Path(found) if found else None


def _safe(name: str) -> str:
    return re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-") or "page"


def save_screenshots(
    base_url: str,
    pages: Sequence[tuple[str, str]],
    out_dir: Path,
    *,
    auth: tuple[str, str] | None = None,
    width: int = 1280,
) -> list[Shot]:
    """Open each ``(name, path)`` under ``base_url`` and save ``dashboard-<name>.png`` (full
    page) in ``out_dir``. Raises ``RuntimeError`` when Playwright or Chromium is missing."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        raise RuntimeError(
            "Playwright is not installed (pip install 'ci-fanout[browser]')"
        ) from exc
    chromium = chromium_path()
    if chromium is None:
        raise RuntimeError("Chromium is not installed (apt-get install chromium)")
    out_dir.mkdir(parents=True, exist_ok=True)
    shots: list[Shot] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(chromium), args=list(CHROMIUM_ARGS))
        try:
            context = browser.new_context(
                viewport={"width": width, "height": 900},
                http_credentials=(
                    {"username": auth[0], "password": auth[1]} if auth is not None else None
                ),
            )
            page = context.new_page()
            current: list[str] = []

            def on_console(msg: Any) -> None:
                if msg.type in ("error", "warning"):
                    current.append(f"console {msg.type}: {msg.text}")

            page.on("console", on_console)
            page.on("pageerror", lambda exc: current.append(f"page error: {exc}"))
            page.on("requestfailed", lambda req: current.append(f"failed: {req.url}"))
            page.on(
                "response",
                lambda r: current.append(f"HTTP {r.status}: {r.url}") if r.status >= 400 else None,
            )
            for name, path in pages:
                current.clear()
                resp = page.goto(base_url.rstrip("/") + path, wait_until="load")
                file = out_dir / f"dashboard-{_safe(name)}.png"
                page.screenshot(path=str(file), full_page=True)
                shots.append(
                    Shot(
                        name=name,
                        path=path,
                        file=file,
                        status=resp.status if resp is not None else None,
                        problems=list(current),
                    )
                )
        finally:
            browser.close()
    return shots
