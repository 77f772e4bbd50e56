"""Typed errors, one exit code per class; caught in exactly one place (``cli.main``)."""

from __future__ import annotations


class CiFanoutError(Exception):
    """Base class: message says what happened, why, and what to do."""

    exit_code = 1


class ConfigError(CiFanoutError):
    """Bad option, config key or environment value."""

    exit_code = 2


class InputError(CiFanoutError):
    """Unusable input: nothing parseable, missing file, bad schema."""

    exit_code = 3


class PlanningError(CiFanoutError):
    """A plan cannot be made (e.g. no runner satisfies a requirement class)."""

    exit_code = 4


class StoreError(CiFanoutError):
    """The results store failed or holds no such run."""

    exit_code = 5


class ProviderError(CiFanoutError):
    """A CI provider call failed (after bounded retries)."""

    exit_code = 6

    def __init__(
        self,
        message: str,
        *,
        provider: str = "",
        operation: str = "",
        status: int | None = None,
        hint: str = "",
    ) -> None:
        self.provider = provider
        self.operation = operation
        self.status = status
        self.hint = hint
        parts = [f"{provider} {operation}".strip() + ":" if provider or operation else "", message]
        if status is not None:
            parts.append(f"(HTTP {status})")
        if hint:
            parts.append(f"— {hint}")
        super().__init__(" ".join(p for p in parts if p))
