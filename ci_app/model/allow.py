"""Runner label allow-lists: which of the labels a runner's own profile earns it is granted.

A runner's probe reports its hardware, but the runner could lie (or be misconfigured): a box
claiming a GPU would attract GPU jobs from every repository. So the lab admin decides, when
creating the runner's token (or for a pool of runners by a name glob), which labels the runner
may hold; the server grants the intersection and reports the rest as refused.

Patterns are labels or ``fnmatch`` globs over labels (``gpu-mem-ge-*``). Pure functions.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Sequence

__all__ = [
    "DEFAULT_ALLOW",
    "grant_labels",
    "is_valid_pattern",
    "parse_patterns",
    "patterns_for_runner",
]

#: What a runner may hold when its admin set nothing: the CPU, memory and disk facts of the
#: taxonomy, and WebGPU's software fallback. GPU, accelerator, hardware WebGPU and WebNN
#: labels (the ones that attract scarce hardware jobs) must be allowed explicitly.
DEFAULT_ALLOW: tuple[str, ...] = (
    "x64",
    "arm64",
    "ppc64le",
    "s390x",
    "riscv64",
    "cpu-*",
    "cpus-ge-*",
    "mem-ge-*",
    "disk-free-ge-*",
    "webgpu-sw",
)

_PATTERN_RE = re.compile(r"^[a-z0-9*?][a-z0-9._*?-]{0,62}$")


def is_valid_pattern(pattern: str) -> bool:
    """A label, or a glob of label characters plus ``*`` and ``?``."""
    return bool(_PATTERN_RE.match(pattern))


def parse_patterns(raw: Iterable[str] | str) -> tuple[str, ...]:
    """Patterns from a list, or from one string separated by spaces or commas.

    Raises :class:`ValueError` naming the first invalid pattern.
    """
    items = raw.replace(",", " ").split() if isinstance(raw, str) else list(raw)
    out: list[str] = []
    for item in items:
        if not isinstance(item, str):
            raise ValueError(f"allow-list entries must be strings, got {item!r}")
        p = item.strip().lower()
        if not is_valid_pattern(p):
            raise ValueError(
                f"{item!r} is not a label or label glob (lower-case letters, digits, '.', "
                "'_', '-', '*', '?'; at most 63 characters)"
            )
        if p not in out:
            out.append(p)
    return tuple(out)


def grant_labels(
    labels: Iterable[str], patterns: Sequence[str]
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``(granted, refused)``: each label in its input order, split by the allow-list."""
    granted: list[str] = []
    refused: list[str] = []
    for label in labels:
        low = label.lower()
        if any(fnmatch.fnmatchcase(low, p) for p in patterns):
            granted.append(label)
        else:
            refused.append(label)
    return tuple(granted), tuple(refused)


def patterns_for_runner(
    name: str,
    token_patterns: Sequence[str] | None,
    pools: Iterable[tuple[str, Sequence[str]]],
    default: Sequence[str],
) -> tuple[str, ...]:
    """The allow-list in force for runner ``name``.

    The token's own list if it has one; else the union of every pool whose name glob matches
    the runner's name; else ``default``.
    """
    if token_patterns is not None:
        return tuple(token_patterns)
    merged: list[str] = []
    matched = False
    for glob, pats in pools:
        if fnmatch.fnmatchcase(name, glob):
            matched = True
            merged.extend(p for p in pats if p not in merged)
    return tuple(merged) if matched else tuple(default)
