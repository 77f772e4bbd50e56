"""Webhook verification, bearer tokens and per-token rate limiting.

Every secret comparison is constant-time (:func:`hmac.compare_digest`) and done on the raw
request bytes before any JSON parsing. Tokens are stored as SHA-256 hashes only; a token is
shown once, when it is created.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TypeAlias

from werkzeug.datastructures import Headers

HeaderMap: TypeAlias = Mapping[str, str] | Headers

__all__ = [
    "RateLimiter",
    "basic_auth_password",
    "bearer_token",
    "hash_token",
    "new_token",
    "tokens_equal",
    "verify_github_signature",
    "verify_gitlab",
    "verify_shared_secret",
    "verify_standard_webhook",
]


def hash_token(token: str) -> str:
    """What the store keeps of a token: ``sha256:<hex>``."""
    return "sha256:" + hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_token(prefix: str) -> str:
    """A fresh random bearer token, e.g. ``cfr_…`` (runner) or ``cfq_…`` (queue run)."""
    return f"{prefix}_{secrets.token_urlsafe(32)}"


def tokens_equal(a: str, b: str) -> bool:
    """Constant-time string comparison (False when either side is empty)."""
    if not a or not b:
        return False
    return hmac.compare_digest(a.encode("utf-8"), b.encode("utf-8"))


def verify_github_signature(body: bytes, header: str | None, secrets_: Iterable[str]) -> bool:
    """``X-Hub-Signature-256: sha256=<hex HMAC-SHA256(secret, body)>`` against each secret.

    Several secrets allow rotation: configure the new one, keep the previous one until GitHub
    sends with the new one. Every configured secret is tried (no early exit on a match), so
    the time taken does not say which one matched.
    """
    if not header or not header.startswith("sha256="):
        return False
    given = header[len("sha256=") :].strip().lower().encode("ascii", "replace")
    ok = False
    for secret in secrets_:
        if not secret:
            continue
        want = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest().encode()
        ok |= hmac.compare_digest(want, given)
    return ok


def verify_standard_webhook(
    body: bytes,
    headers: HeaderMap,
    secret: str,
    *,
    now: float | None = None,
    tolerance_s: float = 300.0,
) -> bool:
    """Standard Webhooks signature (GitLab's optional signing token).

    ``webhook-signature: v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`` (several
    space-separated signatures allowed); the timestamp must be within ``tolerance_s``. A
    ``whsec_``-prefixed secret is base64; anything else is used as raw bytes.
    """
    msg_id = headers.get("webhook-id")
    stamp = headers.get("webhook-timestamp")
    sigs = headers.get("webhook-signature")
    if not (secret and msg_id and stamp and sigs):
        return False
    try:
        ts = int(stamp)
    except ValueError:
        return False
    if abs((time.time() if now is None else now) - ts) > tolerance_s:
        return False
    if secret.startswith("whsec_"):
        try:
            key = base64.b64decode(secret[len("whsec_") :])
        except (binascii.Error, ValueError):
            return False
    else:
        key = secret.encode("utf-8")
    signed = msg_id.encode() + b"." + stamp.encode() + b"." + body
    want = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest())
    ok = False
    for part in sigs.split():
        version, _, value = part.partition(",")
        if version == "v1":
            ok |= hmac.compare_digest(want, value.encode("ascii", "replace"))
    return ok


def verify_gitlab(body: bytes, headers: HeaderMap, token: str, signing_token: str = "") -> bool:
    """``X-Gitlab-Token`` equal to the configured token, or a valid Standard Webhooks
    signature when a signing token is configured (GitLab may send either or both)."""
    ok = False
    if token and "X-Gitlab-Token" in headers:
        ok |= tokens_equal(headers.get("X-Gitlab-Token", ""), token)
    if signing_token and "webhook-signature" in headers:
        ok |= verify_standard_webhook(body, headers, signing_token)
    return ok


def bearer_token(headers: HeaderMap) -> str | None:
    auth = headers.get("Authorization", "")
    scheme, _, value = auth.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


def basic_auth_password(headers: HeaderMap) -> str | None:
    auth = headers.get("Authorization", "")
    scheme, _, value = auth.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError, UnicodeDecodeError):
        return None
    _user, sep, password = decoded.partition(":")
    return password if sep else None


def verify_shared_secret(headers: HeaderMap, secret: str) -> bool:
    """Jenkins / Azure DevOps: ``X-CI-Fanout-Token: <secret>`` or HTTP basic auth whose
    password is the secret (Azure service hooks only offer basic auth or custom headers)."""
    if not secret:
        return False
    ok = False
    header = headers.get("X-CI-Fanout-Token")
    if header is not None:
        ok |= tokens_equal(header, secret)
    password = basic_auth_password(headers)
    if password is not None:
        ok |= tokens_equal(password, secret)
    return ok


@dataclass(slots=True)
class _Bucket:
    tokens: float
    stamp: float


class RateLimiter:
    """Token bucket per key (a token hash, or ``ip:ADDRESS`` for requests without a valid
    token): ``rate_per_minute`` sustained, ``burst`` at once.

    In memory, per process: the app runs one web worker process, so this is global.
    """

    def __init__(self, rate_per_minute: float, burst: int, *, max_keys: int = 100_000) -> None:
        self.rate = rate_per_minute / 60.0
        self.burst = float(max(1, burst))
        self.max_keys = max_keys
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()

    def allow(self, key: str, now: float) -> tuple[bool, float]:
        """(allowed, seconds to wait before the next request would be allowed)."""
        with self._lock:
            b = self._buckets.get(key)
            if b is None:
                if len(self._buckets) >= self.max_keys:
                    self._buckets.clear()  # bounded memory; only forgets, never blocks
                b = self._buckets[key] = _Bucket(self.burst, now)
            b.tokens = min(self.burst, b.tokens + (now - b.stamp) * self.rate)
            b.stamp = now
            if b.tokens >= 1.0:
                b.tokens -= 1.0
                return True, 0.0
            wait = (1.0 - b.tokens) / self.rate if self.rate > 0 else 60.0
            return False, wait

    def exhausted(self, key: str, now: float) -> bool:
        """Whether the next :meth:`allow` for ``key`` would be refused (nothing is spent)."""
        with self._lock:
            b = self._buckets.get(key)
            if b is None:
                return False
            return min(self.burst, b.tokens + (now - b.stamp) * self.rate) < 1.0
