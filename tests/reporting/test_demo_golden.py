"""The demo's full PR comment equals its golden (``make goldens`` rewrites it)."""

from __future__ import annotations

from .demo_golden import GOLDEN, render


def test_demo_comment_is_the_golden() -> None:
    text = render()
    assert "ci-fanout:report" in text.splitlines()[0]
    assert text == GOLDEN.read_text(encoding="utf-8"), (
        "the demo's PR comment changed; run `make goldens` and review the diff"
    )
