"""Heartbeat client: ``POST /api/v1/runners/heartbeat`` every interval, stdlib only.

Contract (docs/probe.md has the full text; the server implements the other side):

- request: ``Authorization: Bearer <token>``, JSON body ``{"runner", "probe_version",
  "profile_hash", "load": {...}}`` plus ``"profile"`` and ``"labels"`` only when the profile
  hash changed since the server last acknowledged one;
- reply 200/202 with a JSON object; ``{"need_profile": true}`` or HTTP 409/412 make the next
  heartbeat (sent at once) carry the full profile; ``"refused": [labels]`` names labels the
  profile earns that the runner's allow-list does not grant (logged; ask the lab admin);
- anything else (connection refused, timeouts, 5xx, 401) is logged and retried with
  exponential backoff: the client never exits because the server is down (the HTTP side is
  :class:`ci_app.client.AppClient`, one try per beat);
- ``"health": {"status": "ok" | "degraded", "browser_crashes": n, "reasons": [...]}`` rides on
  every beat: ``degraded`` after repeated browser crashes in this machine's shards (the crash
  log of :mod:`ci_app.browser.health`), so the app can stop routing browser work here.

Clock, sleep, HTTP opener, profile and load sources are injectable so tests run in
milliseconds against a loopback server.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import random
import time
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ci_app.client import HEARTBEAT_PATH, NO_RETRY, AppClient
from ci_app.errors import ConfigError, ProviderError
from ci_app.model.labels import derive_labels
from ci_app.model.profile import Browser, HardwareProfile
from runner_probe import __version__

log = logging.getLogger(__name__)


def profile_hash(profile: HardwareProfile, labels: tuple[str, ...] | None = None) -> str:
    """Stable hash of the facts and labels (not timings, clock or exact free disk)."""
    labels = derive_labels(profile) if labels is None else labels
    blob = profile.fingerprint() + "\n" + "\n".join(labels)
    return "sha256:" + hashlib.sha256(blob.encode()).hexdigest()


def heartbeat_body(
    runner: str,
    profile: HardwareProfile,
    load: Mapping[str, Any],
    *,
    include_profile: bool,
    health: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    labels = derive_labels(profile)
    body: dict[str, Any] = {
        "runner": runner,
        "probe_version": __version__,
        "profile_hash": profile_hash(profile, labels),
        "load": dict(load),
    }
    if health is not None:
        body["health"] = dict(health)
    if include_profile:
        body["profile"] = profile.to_dict()
        body["labels"] = list(labels)
    return body


def browser_health(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """``ok``, or ``degraded`` after repeated browser crashes (the shards' crash log)."""
    from ci_app.browser.config import default_health_path
    from ci_app.browser.health import assess

    return assess(default_health_path(os.environ if env is None else env)).to_dict()


def sample_load(profile: HardwareProfile, nvml: Any | None = None) -> dict[str, Any]:
    """CPU %, memory in use and per-GPU utilisation/memory, cheap enough for every beat."""
    import psutil

    from runner_probe.cgroup import memory_usage_bytes, read_cgroup_limits
    from runner_probe.nvidia import sample_gpu_load

    vm = psutil.virtual_memory()
    total = profile.memory.effective_bytes or int(vm.total)
    used: int | None = None
    if profile.memory.limit_bytes is not None:  # in a limited cgroup, report its usage
        used = memory_usage_bytes(read_cgroup_limits())
    if used is None:
        used = int(vm.total - vm.available)
    return {
        "cpu_percent": float(psutil.cpu_percent(interval=None)),
        "memory_used_bytes": used,
        "memory_total_bytes": int(total),
        "disk_free_bytes": profile.disk.free_bytes,
        "gpus": sample_gpu_load(nvml, profile.gpus),
    }


@dataclass(frozen=True, kw_only=True)
class HeartbeatConfig:
    server: str  # base URL, e.g. https://ci.example.org
    token: str
    runner: str
    interval_s: float = 60.0
    backoff_initial_s: float = 5.0
    backoff_max_s: float = 300.0
    timeout_s: float = 10.0
    jitter: float = 0.1  # +-10 % on every delay, so a lab does not beat in lockstep

    @property
    def url(self) -> str:
        return self.server.rstrip("/") + HEARTBEAT_PATH


@dataclass(frozen=True)
class BeatResult:
    ok: bool
    status: int | None  # HTTP status, None when no response
    sent_profile: bool
    need_profile: bool
    error: str | None = None
    reply: Mapping[str, Any] | None = None


class HeartbeatClient:
    """Sends heartbeats; :meth:`run` loops forever (or ``max_beats``) and never raises on I/O."""

    def __init__(
        self,
        config: HeartbeatConfig,
        *,
        profile_fn: Callable[[], HardwareProfile],
        load_fn: Callable[[HardwareProfile], Mapping[str, Any]],
        opener: Callable[..., Any] = urllib.request.urlopen,
        wait: Callable[[float], bool] | None = None,
        rng: random.Random | None = None,
        health_fn: Callable[[], Mapping[str, Any]] | None = browser_health,
    ) -> None:
        self.config = config
        self.profile_fn = profile_fn
        self.load_fn = load_fn
        self.opener = opener
        # wait(seconds) -> True when asked to stop; default: plain sleep, never stops
        self.wait = wait or _sleep
        self.rng = rng or random.Random()  # noqa: S311 - jitter, not crypto
        self.health_fn = health_fn
        self.health_status = "ok"
        self.acked_hash: str | None = None
        self.force_profile = True
        self.failures = 0
        self.beats = 0

    def beat(self) -> BeatResult:
        """One heartbeat attempt. Network and server errors become a failed result."""
        try:
            profile = self.profile_fn()
            load = self.load_fn(profile)
        except Exception as exc:  # a probe bug must not kill the agent either
            log.exception("probe failed")
            return BeatResult(False, None, False, False, error=f"probe: {exc}")
        current = profile_hash(profile)
        send_profile = self.force_profile or current != self.acked_hash
        body = heartbeat_body(
            self.config.runner,
            profile,
            load,
            include_profile=send_profile,
            health=self._health(),
        )
        try:
            answer = self._app().runner_heartbeat(body)
        except ProviderError as exc:
            if exc.status in (409, 412):
                self.force_profile = True
                return BeatResult(False, exc.status, send_profile, True, error=f"HTTP {exc.status}")
            return BeatResult(False, exc.status, send_profile, False, error=str(exc)[:300])
        except (ConfigError, ValueError) as exc:  # a URL urllib cannot use
            return BeatResult(False, None, send_profile, False, error=str(exc))
        status, raw = answer.status, answer.body
        reply = _parse_reply(raw)
        need = bool(reply.get("need_profile"))
        if 200 <= status < 300:
            refused = reply.get("refused")
            if send_profile and isinstance(refused, list) and refused:
                log.warning(
                    "the server does not grant these labels (not in this runner's allow-list; "
                    "ask the lab admin): %s",
                    " ".join(str(x)[:64] for x in refused[:50]),
                )
            if send_profile and not need:
                self.acked_hash = current
            self.force_profile = need
            return BeatResult(True, status, send_profile, need, reply=reply)
        return BeatResult(False, status, send_profile, need, error=f"HTTP {status}")

    def _app(self) -> AppClient:
        """The app client; one try per beat (:meth:`run` backs off between beats)."""
        return AppClient(
            self.config.server,
            self.config.token,
            timeout_s=self.config.timeout_s,
            retry=NO_RETRY,
            what="--server",
            user_agent=f"runner-probe/{__version__}",
            opener=self.opener,
        )

    def _health(self) -> Mapping[str, Any] | None:
        if self.health_fn is None:
            return None
        try:
            health = self.health_fn()
        except Exception:  # a broken crash log must not stop the heartbeat
            log.exception("browser health check failed")
            return None
        status = str(health.get("status", "ok"))
        if status != self.health_status:
            if status == "degraded":
                log.warning("runner degraded: %s", "; ".join(map(str, health.get("reasons", []))))
            else:
                log.info("runner healthy again (%s)", status)
            self.health_status = status
        return health

    def next_delay(self, result: BeatResult) -> float:
        """Interval after success, at once when the server asks for the profile, else backoff."""
        if result.ok or result.need_profile:
            self.failures = 0
            if result.need_profile:
                return 0.0
            base = self.config.interval_s
        else:
            self.failures += 1
            base = min(
                self.config.backoff_max_s,
                self.config.backoff_initial_s * 2 ** (self.failures - 1),
            )
        if self.config.jitter:
            base *= 1 + self.rng.uniform(-self.config.jitter, self.config.jitter)
        return max(0.0, base)

    def run(self, max_beats: int | None = None) -> int:
        """Heartbeat until ``wait`` says stop (or ``max_beats``); returns 0."""
        need_in_a_row = 0
        while max_beats is None or self.beats < max_beats:
            result = self.beat()
            self.beats += 1
            if result.ok:
                log.debug("heartbeat ok (%s)%s", result.status, " +profile" * result.sent_profile)
            else:
                log.warning("heartbeat failed: %s", result.error)
            delay = self.next_delay(result)
            # a server that keeps asking for the profile must not make us spin
            need_in_a_row = need_in_a_row + 1 if result.need_profile else 0
            if need_in_a_row > 1:
                delay = max(delay, self.config.backoff_initial_s)
            if max_beats is not None and self.beats >= max_beats:
                break
            if self.wait(delay):
                break
        return 0


def _sleep(seconds: float) -> bool:
    time.sleep(seconds)
    return False


def _parse_reply(raw: bytes) -> dict[str, Any]:
    if not raw.strip():
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


class ProfileCache:
    """Re-detect cheaply each beat; re-run the slow browser probe only every ``browser_every_s``."""

    def __init__(
        self,
        detect_fn: Callable[[bool], HardwareProfile],
        *,
        browser: bool,
        browser_every_s: float = 900.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.detect_fn = detect_fn
        self.browser = browser
        self.browser_every_s = browser_every_s
        self.clock = clock
        self._browser: Browser | None = None
        self._browser_at: float | None = None

    def __call__(self) -> HardwareProfile:
        now = self.clock()
        due = self.browser and (
            self._browser_at is None or now - self._browser_at >= self.browser_every_s
        )
        profile = self.detect_fn(due)
        if due:
            self._browser = profile.browser
            self._browser_at = now
            return profile
        if self._browser is not None:
            return dataclasses.replace(profile, browser=self._browser)
        return profile


__all__ = [
    "HEARTBEAT_PATH",
    "BeatResult",
    "HeartbeatClient",
    "HeartbeatConfig",
    "ProfileCache",
    "browser_health",
    "heartbeat_body",
    "profile_hash",
    "sample_load",
]
