"""Pure parts: markdown budgeting, markers, retry delays and hints, the registry."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ci_app.errors import ConfigError, ProviderError
from ci_app.providers import budget
from ci_app.providers.base import get_provider
from ci_app.providers.retry import Failure, RetryPolicy, call, delay_for


def test_marker_matching() -> None:
    assert budget.marker_matches("<!-- ci-fanout:report v1 run=42 -->\nbody")  # reporting's marker
    assert budget.marker_matches("<!-- ci-fanout:report v1 kind=flaky -->", "flaky")
    assert not budget.marker_matches("<!-- ci-fanout:report v1 kind=flaky -->", "tests")
    assert not budget.marker_matches("hello\n<!-- ci-fanout:report v1 -->")  # first line only
    assert not budget.marker_matches("<!-- ci-fanout:reporter v1 -->")
    assert budget.ensure_marker("x", "bench").startswith(
        "<!-- ci-fanout:report v1 kind=bench -->\n"
    )


def test_fit_markdown_closes_open_blocks_and_counts() -> None:
    body = (
        "<!-- m -->\n# Head\n<details>\n<summary>logs</summary>\n\n```\n"
        + "\n".join(f"line {i}" for i in range(5000))
        + "\n```\n</details>\n## After\nx"
    )
    fitted = budget.fit_markdown(body, 2000)
    assert fitted.truncated and len(fitted.body) <= 2000
    assert fitted.body.count("```") % 2 == 0
    assert fitted.body.count("<details") == fitted.body.count("</details>")
    assert f"{fitted.omitted_lines} more lines — see dashboard" in fitted.body
    assert "1 more section — see dashboard" in fitted.body


@settings(max_examples=60, deadline=None)
@given(st.text(min_size=0, max_size=3000), st.integers(min_value=200, max_value=2500))
def test_fit_markdown_never_exceeds_the_limit(body: str, limit: int) -> None:
    fitted = budget.fit_markdown(body, limit)
    assert len(fitted.body) <= limit
    if len(body) <= limit:
        assert fitted.body == body and not fitted.truncated


def test_clip_and_batches() -> None:
    assert budget.clip("x" * 200, 140) == "x" * 139 + "…"
    assert [len(b) for b in budget.batches(list(range(121)), 50)] == [50, 50, 21]


def test_delays() -> None:
    policy = RetryPolicy(clock=lambda: 1_000_000_000.0)
    assert (
        delay_for(Failure(status=429, message="", headers={"Retry-After": "7"}), 0, policy) == 7.0
    )
    assert (
        delay_for(
            Failure(
                status=403,
                message="API rate limit exceeded",
                headers={"X-RateLimit-Reset": "1000000010"},
            ),
            0,
            policy,
        )
        == 11.0
    )
    assert (
        delay_for(
            Failure(status=403, message="You have exceeded a secondary rate limit"), 0, policy
        )
        == 60.0
    )
    assert delay_for(Failure(status=503, message=""), 2, policy) == 4.0
    assert delay_for(Failure(status=404, message=""), 0, policy) is None
    assert (
        delay_for(Failure(status=403, message="Resource not accessible by integration"), 0, policy)
        is None
    )
    date = "Sun, 09 Sep 2001 01:46:50 GMT"  # 1_000_000_010
    assert (
        delay_for(Failure(status=429, message="", headers={"retry-after": date}), 0, policy) == 10.0
    )


def test_call_passes_through_unknown_errors_and_wraps_known() -> None:
    def boom() -> None:
        raise KeyError("not an SDK error")

    with pytest.raises(KeyError):
        call(boom, provider="p", operation="op", classify=lambda e: None)

    def forbidden() -> None:
        raise RuntimeError("403")

    with pytest.raises(ProviderError) as err:
        call(
            forbidden,
            provider="p",
            operation="op",
            classify=lambda e: Failure(status=403, message="nope"),
        )
    assert err.value.status == 403 and "permission" in err.value.hint
    assert str(err.value).startswith("p op: nope (HTTP 403)")


def test_registry_suggests_names() -> None:
    with pytest.raises(ConfigError, match="Perhaps you meant 'gitlab'"):
        get_provider("gitlba", {})
    with pytest.raises(ConfigError, match="repo"):
        get_provider("github", {})
