"""Label reconciliation: what to add to / remove from a runner so its labels match its profile.

Pure logic for the server. Rules:

- compare case-insensitively (GitHub labels are), answer in the provider's spelling;
- add every desired label that is missing, at once;
- remove only labels we own (:func:`ci_app.model.labels.is_owned_label` by default): an
  admin's hand-set labels are never touched;
- remove an owned label only after ``min_misses`` (default 3) consecutive probes lacked it, so
  one flaky probe does not unroute a runner;
- never count a miss while the label's source reported ``error`` (an erroring GPU check says
  nothing about the GPU; the runner is reported degraded and keeps its labels).

The per-runner miss counters are the only state; the caller stores :attr:`ReconcilePlan.misses`
and passes it back next time.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field

from ci_app.model.labels import (
    SOURCES,
    derive_labels,
    is_owned_label,
    label_source,
    source_status,
)
from ci_app.model.profile import HardwareProfile, Status

DEFAULT_MIN_MISSES = 3


@dataclass(frozen=True, kw_only=True)
class ReconcilePlan:
    add: tuple[str, ...]  # POST these (sorted)
    remove: tuple[str, ...]  # DELETE these, one by one (provider's spelling)
    pending: tuple[str, ...]  # owned labels missing from the profile, not yet removed
    frozen: tuple[str, ...]  # owned labels kept because their source is in error
    foreign: tuple[str, ...]  # labels we do not own: never touched
    misses: Mapping[str, int] = field(default_factory=dict)  # next state (lower-case keys)

    @property
    def changed(self) -> bool:
        return bool(self.add or self.remove)


def _owned_predicate(owned: Callable[[str], bool] | Collection[str]) -> Callable[[str], bool]:
    if callable(owned):
        return owned
    lowered = {o.lower() for o in owned}
    return lambda label: label.lower() in lowered


def reconcile(
    desired: Iterable[str],
    current: Iterable[str],
    *,
    owned: Callable[[str], bool] | Collection[str] = is_owned_label,
    misses: Mapping[str, int] | None = None,
    error_sources: Collection[str] = (),
    min_misses: int = DEFAULT_MIN_MISSES,
    source_of: Callable[[str], str | None] = label_source,
    read_only: Collection[str] = (),
) -> ReconcilePlan:
    """Compute adds/removes for one runner.

    ``desired``: labels the latest profile earns; ``current``: the runner's labels at the
    provider (any case, read-only ones included); ``owned``: a predicate or the set of labels
    the app owns; ``misses``: the previous plan's counters; ``error_sources``: profile sources
    (``nvidia``, ``browser``, …) whose status is ``error`` in the latest probe;
    ``read_only``: labels the provider will not let us delete (GitHub's ``self-hosted``,
    ``Linux``, ``X64`` from registration — ``X64`` equals our ``x64``), treated as foreign.
    """
    if min_misses < 1:
        raise ValueError("min_misses must be >= 1")
    is_owned = _owned_predicate(owned)
    want = {d.lower(): d for d in desired}
    have = {c.lower(): c for c in current}
    previous = {k.lower(): v for k, v in (misses or {}).items()}
    errors = set(error_sources)
    fixed = {r.lower() for r in read_only}

    add = sorted(want[k] for k in want.keys() - have.keys())
    remove: list[str] = []
    pending: list[str] = []
    frozen: list[str] = []
    foreign: list[str] = []
    next_misses: dict[str, int] = {}
    for key, spelled in sorted(have.items()):
        if key in want:
            continue
        if key in fixed or not is_owned(key):
            foreign.append(spelled)
            continue
        if source_of(key) in errors:
            frozen.append(spelled)
            if key in previous:
                next_misses[key] = previous[key]
            continue
        count = previous.get(key, 0) + 1
        if count >= min_misses:
            remove.append(spelled)
        else:
            pending.append(spelled)
            next_misses[key] = count
    return ReconcilePlan(
        add=tuple(add),
        remove=tuple(remove),
        pending=tuple(pending),
        frozen=tuple(frozen),
        foreign=tuple(foreign),
        misses=next_misses,
    )


def error_sources_of(profile: HardwareProfile) -> frozenset[str]:
    """Sources whose status is ``error`` in ``profile``."""
    return frozenset(s for s in SOURCES if source_status(profile, s) is Status.ERROR)


def reconcile_profile(
    profile: HardwareProfile,
    current: Iterable[str],
    *,
    misses: Mapping[str, int] | None = None,
    min_misses: int = DEFAULT_MIN_MISSES,
    owned: Callable[[str], bool] | Collection[str] = is_owned_label,
    read_only: Collection[str] = (),
) -> ReconcilePlan:
    """:func:`reconcile` with desired labels and error sources taken from ``profile``."""
    return reconcile(
        derive_labels(profile),
        current,
        owned=owned,
        misses=misses,
        error_sources=error_sources_of(profile),
        min_misses=min_misses,
        read_only=read_only,
    )
