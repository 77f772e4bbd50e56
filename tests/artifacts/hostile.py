"""Damaged and hostile inputs, built byte by byte (shared by the hostile-input tests)."""

from __future__ import annotations

import io
import json
import struct
import zipfile
from collections.abc import Callable

GOOD_XML = (
    b'<testsuite name="s" tests="2"><testcase classname="c" name="ok"/>'
    b'<testcase classname="c" name="bad"><failure message="m"/></testcase></testsuite>'
)
OTHER_XML = b'<testsuite name="t" tests="1"><testcase classname="d" name="x"/></testsuite>'


def zip_bytes(members: list[tuple[str, bytes]], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", method) as zf:
        for name, data in members:
            zf.writestr(name, data)
    return buf.getvalue()


def _local(b: bytearray, n: int) -> int:
    """Offset of the n-th (0-based) local file header."""
    pos = -1
    for _ in range(n + 1):
        pos = b.index(b"PK\x03\x04", pos + 1)
    return pos


def _central(b: bytearray, n: int) -> int:
    pos = -1
    for _ in range(n + 1):
        pos = b.index(b"PK\x01\x02", pos + 1)
    return pos


def _bad_crc(b: bytearray) -> None:
    for off in (_local(b, 1) + 14, _central(b, 1) + 16):
        b[off : off + 4] = b"\x01\x02\x03\x04"


def _lying_size(b: bytearray) -> None:
    # the directory says 10 bytes: zipfile stops there and the CRC cannot match
    b[_central(b, 1) + 24 : _central(b, 1) + 28] = struct.pack("<I", 10)


def _encrypted(b: bytearray) -> None:
    b[_local(b, 1) + 6] |= 1
    b[_central(b, 1) + 8] |= 1


def _method_9(b: bytearray) -> None:
    b[_local(b, 1) + 8 : _local(b, 1) + 10] = struct.pack("<H", 9)
    b[_central(b, 1) + 10 : _central(b, 1) + 12] = struct.pack("<H", 9)


def _name_mismatch(b: bytearray) -> None:
    start = _local(b, 1) + 30
    b[start : start + 3] = b"EVL"


DAMAGE: dict[str, tuple[Callable[[bytearray], None], str]] = {
    "bad-crc": (_bad_crc, "CRC"),
    "lying-size": (_lying_size, "damaged zip member"),
    "encrypted": (_encrypted, "encrypted"),
    "method-9": (_method_9, "compression method 9"),
    "name-mismatch": (_name_mismatch, "differ"),
}


def damaged_zip(kind: str, first: tuple[str, bytes], second: tuple[str, bytes]) -> bytes:
    """A zip of two members whose second is damaged in the way ``kind`` names."""
    data = bytearray(zip_bytes([first, second]))
    DAMAGE[kind][0](data)
    return bytes(data)


def deep_json(depth: int = 100_000, key: str = "passes") -> bytes:
    """A Mocha-shaped JSON document with one value nested ``depth`` levels deep."""
    return (
        b'{"stats": {"tests": 1, "passes": 1}, "tests": [], "'
        + key.encode()
        + b'": '
        + b"[" * depth
        + b"]" * depth
        + b"}"
    )


def results_json(run_id: str, shard: str, ids: list[str]) -> bytes:
    doc = {
        "$schema": "https://ci-fanout.dev/schemas/results.v1.json",
        "version": "ci-fanout/results/v1",
        "tool": "pytest",
        "run": {"run_id": run_id, "shard_id": shard, "runner": {"name": "r", "labels": ["x64"]}},
        "tests": [{"id": i, "name": i, "outcome": "passed", "duration_s": 0.5} for i in ids],
        "metrics": [],
        "attachments": [],
        "files": [],
    }
    return json.dumps(doc).encode()
