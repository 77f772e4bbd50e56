import time

import pytest


def slugify(text: str, commit: int) -> str:
    # Commit 3 introduces a bug (stops lower-casing); commit 5 fixes it.
    out = text.strip().replace(" ", "-")
    return out if 3 <= commit < 5 else out.lower()


def test_slugify(commit: int) -> None:
    time.sleep(0.05)
    assert slugify(" Hello World ", commit) == "hello-world"


@pytest.mark.parametrize("word", ["alpha", "beta", "gamma", "delta"])
def test_upper(word: str) -> None:
    time.sleep(0.03)
    assert word.upper().lower() == word


def title(text: str, commit: int) -> str:
    # The pull request (commit 6) "simplifies" this and breaks words with apostrophes.
    if commit >= 6:
        return text.title()
    return " ".join(w[:1].upper() + w[1:] for w in text.split(" "))


def test_title_case(commit: int) -> None:
    time.sleep(0.02)
    assert title("don't panic", commit) == "Don't Panic"


@pytest.mark.skip(reason="unicode normalisation not implemented yet")
def test_normalise() -> None:
    raise AssertionError("never runs")
