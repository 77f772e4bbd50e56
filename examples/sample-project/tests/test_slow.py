import time


def test_report_generation(commit: int) -> None:
    # From commit 4 on, this got about three times slower: a duration regression.
    time.sleep(0.6 if commit >= 4 else 0.2)
    assert True


def test_small_io() -> None:
    time.sleep(0.08)
    assert True
