"""Dashboard addresses shared by the comment and the dashboard: URL-safe test keys, and the
dashboard's base from the run link the comment already carries.

A test id can hold anything (``/``, ``..``, ``?``, ``#``, ``%``, spaces, any Unicode): as a
URL path it would be normalised or cut by browsers and forges. So a test page is addressed by
its id in unpadded base64url (``[A-Za-z0-9_-]`` only), decoded strictly on the way back.
"""

from __future__ import annotations

import base64
import binascii
import re
from urllib.parse import urlsplit

from ci_app.reporting.markdown import safe_url

__all__ = ["MAX_KEY", "dashboard_base", "page_key", "page_test_id", "page_url"]

#: longest key accepted (a 6,000-byte test id); longer ids are no test we stored a page for
MAX_KEY = 8000
_KEY = re.compile(r"^[A-Za-z0-9_-]+$")
_RUNS = "/runs/"


def page_key(test_id: str) -> str:
    """``test_id`` as a URL path segment: unpadded base64url of its UTF-8 bytes."""
    return base64.urlsafe_b64encode(test_id.encode("utf-8")).rstrip(b"=").decode("ascii")


def page_test_id(key: str) -> str | None:
    """The test id a key names, or ``None`` for anything :func:`page_key` cannot have made."""
    if not key or len(key) > MAX_KEY or not _KEY.match(key) or len(key) % 4 == 1:
        return None
    try:
        raw = base64.urlsafe_b64decode(key + "=" * (-len(key) % 4))
        text = raw.decode("utf-8")
    except (binascii.Error, ValueError):
        return None
    return text if page_key(text) == key else None  # canonical form only


def dashboard_base(url: str | None) -> str | None:
    """The dashboard's root when ``url`` is a ci-fanout run page (``…/runs/<run>``), else
    ``None``: a dashboard link set to anything else gets no per-test links."""
    safe = safe_url(url)
    if safe is None:
        return None
    parts = urlsplit(safe)
    at = parts.path.rfind(_RUNS)
    if at < 0 or parts.query or parts.fragment:
        return None
    return f"{parts.scheme}://{parts.netloc}{parts.path[:at]}"


def page_url(base: str, test_id: str) -> str:
    return f"{base.rstrip('/')}/tests/{page_key(test_id)}"
