"""Size and safety limits for reading untrusted report inputs."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, kw_only=True, slots=True)
class Limits:
    """Caps applied to every input; messages name the cap and how to raise it."""

    max_file_bytes: int = 2 * 1024**3  # a single report file
    max_zip_member_bytes: int = 2 * 1024**3
    max_zip_total_bytes: int = 8 * 1024**3
    max_zip_ratio: float = 200.0  # uncompressed / compressed
    max_zip_members: int = 100_000
    max_message_chars: int = 64 * 1024
    max_depth: int = 256


DEFAULT_LIMITS = Limits()
