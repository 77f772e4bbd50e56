"""Saving downloaded artifacts under the artifact limits (no extraction: ingest reads zips)."""

from __future__ import annotations

import logging
import re
import zipfile
from collections.abc import Iterable
from pathlib import Path

from ci_app.artifacts.limits import Limits
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
    """Why the zip at ``path`` breaks the limits (count, sizes, ratio), or ``None``."""
    try:
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
    except (zipfile.BadZipFile, OSError) as exc:
        return f"not a readable zip: {exc}"
    if len(infos) > limits.max_zip_members:
        return f"{len(infos):,} members, over the cap of {limits.max_zip_members:,}"
    total = 0
    for info in infos:
        if info.file_size > limits.max_zip_member_bytes:
            return f"member {info.filename!r} is {info.file_size:,} bytes, over the cap"
        total += info.file_size
    if total > limits.max_zip_total_bytes:
        return f"{total:,} bytes uncompressed, over the cap of {limits.max_zip_total_bytes:,}"
    compressed = max(1, sum(i.compress_size for i in infos))
    if total > 1024 * 1024 and total / compressed > limits.max_zip_ratio:
        return f"compression ratio {total / compressed:.0f}:1 (possible zip bomb)"
    return None


def keep_if_valid_zip(path: Path, limits: Limits) -> bool:
    problem = zip_problem(path, limits)
    if problem is None:
        return True
    log.warning("artifact %s dropped: %s", path.name, problem)
    path.unlink(missing_ok=True)
    return False
