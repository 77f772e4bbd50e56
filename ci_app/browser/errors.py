"""Infrastructure faults of browser tests: what the runner broke, never what the test did."""

from __future__ import annotations

from ci_app.model.browser import INFRA_KINDS
from ci_app.model.results import INFRA_PREFIX

#: kinds worth one retry on a fresh browser (a lying label is a fact about the runner)
RETRYABLE = frozenset({"renderer-crash", "browser-exit", "gpu-lost", "hung", "launch"})


class InfraError(Exception):
    """The browser infrastructure failed a test: a crash, a hang, a lost GPU device, or a runner
    whose label promised a capability its browser lacks. ``str()`` starts with ``infra:``."""

    def __init__(self, kind: str, detail: str) -> None:
        if kind not in INFRA_KINDS:
            raise ValueError(f"unknown infrastructure kind {kind!r}")
        self.kind = kind
        self.detail = " ".join(detail.split())[:500]
        super().__init__(infra_message(kind, self.detail))

    @property
    def retryable(self) -> bool:
        return self.kind in RETRYABLE


class BrowserHungError(InfraError):
    """A bounded call into the page did not answer in time."""

    def __init__(self, detail: str) -> None:
        super().__init__("hung", detail)


def infra_message(kind: str, detail: str) -> str:
    """``infra: renderer-crash: …`` — the message of an infrastructure error."""
    return f"{INFRA_PREFIX} {kind}: {detail}"


__all__ = ["RETRYABLE", "BrowserHungError", "InfraError", "infra_message"]
