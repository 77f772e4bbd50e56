"""Saving downloaded artifacts under the artifact limits (no extraction: ingest reads zips)."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

from ci_app.artifacts.ingest import open_zip
from ci_app.artifacts.limits import DEFAULT_LIMITS, Limits
from ci_app.artifacts.resultset import ResultsMember, iter_result_members
from ci_app.errors import ProviderError

log = logging.getLogger(__name__)

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_name(name: str, default: str = "artifact") -> str:
    """A file name that cannot escape ``dest`` (no separators, no leading dots)."""
    cleaned = _UNSAFE.sub("_", name).lstrip(".")
    return cleaned[:200] or default


def write_capped(
    chunks: Iterable[bytes], path: Path, cap: int, *, provider: str, operation: str
) -> int:
    """Stream ``chunks`` into ``path``; stop and delete the file once it exceeds ``cap`` bytes."""
    total = 0
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as out:
        for chunk in chunks:
            if not chunk:
                continue
            total += len(chunk)
            if total > cap:
                out.close()
                path.unlink(missing_ok=True)
                raise ProviderError(
                    f"artifact {path.name} is larger than {cap:,} bytes",
                    provider=provider,
                    operation=operation,
                    hint="raise the artifact limits (Limits) if this size is expected",
                )
            out.write(chunk)
    return total


def zip_problem(path: Path, limits: Limits) -> str | None:
    """Why the zip at ``path`` cannot be used at all (unreadable, too many members, too
    large in total), or ``None``. A member that breaks a per-member limit (size, ratio,
    encryption, method) does not drop the archive: the reader refuses that member alone
    (``read_results``), so the good results beside it are kept."""
    archive, why = open_zip(path)
    if archive is None:
        return why
    with archive:
        infos = archive.infolist()
    if len(infos) > limits.max_zip_members:
        return f"{len(infos):,} members, over the cap of {limits.max_zip_members:,}"
    total = sum(i.file_size for i in infos)
    if total > limits.max_zip_total_bytes:
        return f"{total:,} bytes uncompressed, over the cap of {limits.max_zip_total_bytes:,}"
    return None


def keep_if_valid_zip(path: Path, limits: Limits) -> bool:
    problem = zip_problem(path, limits)
    if problem is None:
        return True
    log.warning("artifact %s dropped: %s", path.name, problem)
    path.unlink(missing_ok=True)
    return False


def read_results(paths: Iterable[Path], limits: Limits = DEFAULT_LIMITS) -> Iterator[ResultsMember]:
    """The usable ``results.json`` members of downloaded artifacts, streamed; each bad
    member is logged with its reason and skipped (the others are still read)."""
    for member in iter_result_members(paths, limits):
        if member.error is not None:
            log.warning("%s is not a usable results.json: %s", member.path, member.error)
            continue
        yield member
