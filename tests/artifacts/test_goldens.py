"""Every stored report's results.json, annotations and comment section equal their goldens.

On a difference: ``make goldens`` rewrites them; review the diff (it is what users will
read differently) and commit it.
"""

from __future__ import annotations

import pytest

from .goldens import differences, stored_reports


def test_every_stored_report_has_goldens() -> None:
    assert len(stored_reports()) > 100


@pytest.mark.slow
def test_goldens_are_up_to_date() -> None:
    bad = differences()
    assert not bad, "outputs changed; run `make goldens` and review the diff:\n" + "\n".join(bad)
