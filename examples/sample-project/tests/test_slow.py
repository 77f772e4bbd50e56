import time


def test_report_generation(commit: int) -> None:
    # The pull request (commit 6) makes this twice as slow: a duration regression.
    time.sleep(2.0 if commit >= 6 else 1.0)
    assert True


def test_small_io() -> None:
    time.sleep(0.08)
    assert True
