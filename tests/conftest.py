"""Shared fixtures. Every test runs with network access limited to loopback."""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

DATA = Path(__file__).parent / "data"

_real_connect = socket.socket.connect


def _is_loopback(address: Any) -> bool:
    if isinstance(address, tuple) and address:
        host = str(address[0])
        if host in ("localhost", ""):
            return True
        try:
            return ipaddress.ip_address(host).is_loopback
        except ValueError:
            return False
    return True  # AF_UNIX paths and the like


def _guarded_connect(self: socket.socket, address: Any) -> None:
    if not _is_loopback(address):
        raise RuntimeError(f"test tried to reach {address!r}: only loopback is allowed in tests")
    _real_connect(self, address)


@pytest.fixture(autouse=True)
def _loopback_only(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(socket.socket, "connect", _guarded_connect)
    yield


#: ``CI_FANOUT_*`` variables a developer may set for the test run itself (where ``../shared``
#: is; the pure-Python readers); every other one is a setting the code under test would read
_RUN_SETTINGS = frozenset({"CI_FANOUT_SHARED", "CI_FANOUT_PURE_PYTHON"})


@pytest.fixture(autouse=True)
def _no_ambient_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests see only the ``CI_FANOUT_*`` settings they set themselves: a developer's (or a
    CI job's) ``CI_FANOUT_SHARDS=2`` must not change what ``ci-app plan`` gives in a test."""
    for name in [n for n in os.environ if n.startswith("CI_FANOUT_")]:
        if name not in _RUN_SETTINGS:
            monkeypatch.delenv(name)


@pytest.fixture
def data_dir() -> Path:
    return DATA
