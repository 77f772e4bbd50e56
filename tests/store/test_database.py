"""The database every aggregate shares, and the store package's own house rules."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from ci_app.errors import StoreError
from ci_app.store import open_store
from ci_app.store.database import open_database

STORE_DIR = Path(__file__).resolve().parents[2] / "ci_app" / "store"


def test_transaction_rolls_back_on_error() -> None:
    db = open_database(":memory:")
    try:
        with pytest.raises(RuntimeError), db.transaction() as con:
            con.execute("INSERT INTO label_allow_pools VALUES ('a*', ['x'], 1.0)")
            raise RuntimeError("boom")
        assert db.one("SELECT count(*) FROM label_allow_pools") == (0,)
        with db.transaction() as con:
            con.execute("INSERT INTO label_allow_pools VALUES ('a*', ['x'], 1.0)")
        assert db.one("SELECT count(*) FROM label_allow_pools") == (1,)
    finally:
        db.close()


def test_count_rows_only_for_known_tables() -> None:
    with open_store(":memory:") as store:
        assert store.db.count_rows("jobs") == 0
        with pytest.raises(StoreError, match="unknown table"):
            store.db.count_rows("runs; DROP TABLE runs")


def test_read_only_open_of_an_unmigrated_file_is_refused(tmp_path: Path) -> None:
    import duckdb

    path = tmp_path / "empty.duckdb"
    duckdb.connect(str(path)).close()
    with pytest.raises(StoreError, match="needs migrating"):
        open_database(path, read_only=True)


def _foreign_privates(path: Path) -> list[str]:
    """``x._name`` where ``x`` is not ``self``: one module reaching into another's state."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if (
            isinstance(node, ast.Attribute)
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
            and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))
        ):
            out.append(f"{path.name}:{node.lineno}: .{node.attr}")
    return out


def test_store_modules_stay_small_and_keep_to_their_own_privates() -> None:
    modules = sorted(STORE_DIR.glob("*.py"))
    assert len(modules) > 5
    found = [hit for m in modules for hit in _foreign_privates(m)]
    assert found == []
    sizes = {m.name: len(m.read_text(encoding="utf-8").splitlines()) for m in modules}
    assert {name: n for name, n in sizes.items() if n > 420} == {}
