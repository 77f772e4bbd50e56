import os
import time
from pathlib import Path


def test_retrying_client(commit: int, tmp_path_factory) -> None:  # type: ignore[no-untyped-def]
    """Flaky: at even commits the first attempt times out; the rerun passes."""
    time.sleep(0.1)
    marker = Path(os.environ.get("CI_FANOUT_DEMO_STATE", str(tmp_path_factory.getbasetemp())))
    marker = marker / f"network-attempt-{commit}"
    first_attempt = not marker.exists()
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text("1")
    if commit % 2 == 0 and first_attempt:
        raise TimeoutError("upstream did not answer within 0.1 s")


def test_parse_url() -> None:
    from urllib.parse import urlsplit

    time.sleep(0.04)
    assert urlsplit("https://example.com/a").netloc == "example.com"
