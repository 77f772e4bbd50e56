from __future__ import annotations

import json

import pytest

from ci_app.errors import InputError
from ci_app.matrix.durations import DurationHistory, durations_from_json, ema_merge, id_parents

from .conftest import DURATIONS, load_durations


def test_loaders_accept_every_supported_shape() -> None:
    assert durations_from_json({"t::a": 1.5}) == {"t::a": 1.5}
    assert durations_from_json({"source": "x", "durations": {"t::a": 2}}) == {"t::a": 2.0}
    hist = json.loads((DURATIONS / "conda-linux-pair.json").read_text())
    newest = durations_from_json(hist)
    assert newest == {k: float(v) for k, v in hist["versions"][-1]["durations"].items()}
    rs = {
        "version": "ci-fanout/results/v1",
        "tests": [
            {"id": "a", "outcome": "passed", "duration_s": 1.0},
            {"id": "b", "outcome": "skipped", "duration_s": 9.0},
        ],
    }
    assert durations_from_json(rs) == {"a": 1.0}
    assert durations_from_json([rs, rs]) == {"a": 2.0}


@pytest.mark.parametrize("bad", [{"t": "slow"}, {"t": -1}, {"t": float("nan")}, [1], "x"])
def test_loader_rejects_garbage(bad: object) -> None:
    with pytest.raises(InputError):
        durations_from_json(bad)


def test_id_parents() -> None:
    assert id_parents("tests/a/test_x.py::TestC::test_y[1]") == (
        "tests/a/test_x.py::TestC",
        "tests/a/test_x.py",
        "tests/a/",
    )
    assert id_parents("spec/m/x_spec.rb") == ("spec/m/",)


def test_unknown_tests_estimated_from_siblings_and_flagged() -> None:
    h = DurationHistory.single(
        {"t/a.py::C::x": 10.0, "t/a.py::C::y": 12.0, "t/a.py::z": 1.0, "t/b.py::q": 3.0}
    )
    est = h.estimate(["t/a.py::C::new", "t/a.py::other", "t/c.py::n", "u/d.py::n", "t/b.py::q"])
    assert est.unknown == {"t/a.py::C::new", "t/a.py::other", "t/c.py::n", "u/d.py::n"}
    assert est.seconds["t/a.py::C::new"] == 11.0  # class median
    assert est.seconds["t/a.py::other"] == 10.0  # file median
    assert est.seconds["t/c.py::n"] == pytest.approx(6.5)  # directory t/ median (1,3,10,12)
    assert est.seconds["u/d.py::n"] == pytest.approx(6.5)  # global median
    assert est.seconds["t/b.py::q"] == 3.0


def test_fallback_across_runner_classes_uses_learnt_ratio() -> None:
    linux = load_durations("conda-linux.json")
    windows = load_durations("conda-windows.json")
    ids = sorted(linux)
    held_out = ids[::10]
    win_known = {t: v for t, v in windows.items() if t not in set(held_out)}
    h = DurationHistory({frozenset({"linux"}): linux, frozenset({"windows"}): win_known})
    ratio = h.ratio(frozenset({"linux"}), frozenset({"windows"}))
    assert ratio is not None and 1.2 < ratio < 3.0  # Windows runs conda's tests slower
    est = h.estimate(ids, {"windows"})
    assert not est.unknown
    assert set(held_out) <= est.scaled
    t = held_out[0]
    assert est.seconds[t] == pytest.approx(linux[t] * ratio)
    assert any("runner class [linux]" in n for n in est.notes)


def test_ema_merge() -> None:
    assert ema_merge({"a": 10.0, "b": 1.0}, {"a": 20.0, "c": 5.0}, alpha=0.5) == {
        "a": 15.0,
        "b": 1.0,
        "c": 5.0,
    }
    h = DurationHistory()
    h.add({"a": 10.0})
    h.add({"a": 20.0}, alpha=0.5)
    assert h.by_class[frozenset()]["a"] == 15.0


def test_estimate_of_exactly_the_history_is_a_copy_in_the_tests_order() -> None:
    hist = DurationHistory.single({"b": 2.0, "a": 1.0})
    est = hist.estimate(["b", "a"])
    assert list(est.seconds.items()) == [("b", 2.0), ("a", 1.0)] and not est.unknown
    est.seconds["a"] = 9.0
    assert hist.by_class[frozenset()]["a"] == 1.0  # a copy, not the history's own table
    assert list(hist.estimate(["a", "b"]).seconds) == ["a", "b"]


def test_test_ids_are_every_class_measured_sorted() -> None:
    hist = DurationHistory({frozenset(): {"b": 1.0, "a": 1.0}})
    assert hist.test_ids() == ["a", "b"]
    hist.add({"c": 1.0, "a": 2.0}, ["gpu"])
    assert hist.test_ids() == ["a", "b", "c"]


def test_clean_durations_are_copied_and_ints_made_floats() -> None:
    doc = {"t::a": 1.5, "t::b": 0.0}
    out = durations_from_json(doc)
    assert out == doc and out is not doc
    ints = durations_from_json({"t::a": 2})
    assert ints == {"t::a": 2.0} and type(ints["t::a"]) is float
