"""The hidden first line of every ci-fanout comment, by which a publisher finds its own.

``<!-- ci-fanout:report v1 run=<id> -->`` (the report, :func:`ci_app.reporting.render.marker`)
or ``<!-- ci-fanout:report v1 kind=<kind> -->`` (a sticky comment of one kind,
:func:`ci_app.providers.budget.marker_line`): one prefix, so that either finds the other.
"""

from __future__ import annotations

from typing import Final

MARKER_PREFIX: Final = "<!-- ci-fanout:report"
MARKER_VERSION: Final = "v1"
