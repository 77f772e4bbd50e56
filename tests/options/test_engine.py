"""The options engine: typed fields from one table, one cascade, helpful errors."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

import pytest

from ci_app.errors import ConfigError
from ci_app.options.engine import (
    Layer,
    build,
    convert,
    env_layer,
    flag_layer,
    opt,
    read_toml,
    specs,
    table_layer,
)


@dataclass(frozen=True, kw_only=True, slots=True)
class Sample:
    name: str = opt("x", "a string option")
    size: int | None = opt(None, "an optional integer")
    ratio: float = opt(0.5, "a number")
    enabled: bool = opt(False, "a flag")
    colour: str = opt("red", "a choice", choices=("red", "blue"))
    token: str = opt("", "a secret", secret=True)
    mode: Literal["fast", "slow"] = opt("fast", "choices from the type")


def test_table_from_fields() -> None:
    rows = {s.name: s for s in specs(Sample)}
    assert list(rows) == ["name", "size", "ratio", "enabled", "colour", "token", "mode"]
    assert (rows["mode"].type, rows["mode"].choices) == ("string", ("fast", "slow"))
    assert (rows["size"].type, rows["size"].nullable) == ("integer", True)
    assert (rows["ratio"].type, rows["enabled"].type) == ("number", "boolean")
    assert rows["colour"].choices == ("red", "blue")
    assert rows["token"].secret and rows["token"].env == "CI_FANOUT_TOKEN"
    assert rows["enabled"].default_text == "false" and rows["size"].default_text == ""


def test_a_field_outside_the_table_is_refused() -> None:
    @dataclass(frozen=True)
    class Bad:
        plain: str = "x"

    with pytest.raises(TypeError, match="opt"):
        specs(Bad)


def test_cascade_later_wins_and_names_its_sources() -> None:
    env = {"CI_FANOUT_SIZE": "7", "CI_FANOUT_NAME": "", "CI_FANOUT_OTHER": "ignored"}
    layers = [
        Layer("file.toml", {"size": 3, "enabled": True, "name": "toml"}),
        env_layer(specs(Sample), env, empty_is_unset=True),
        Layer("command line", {"colour": "blue"}, {"colour": "--colour"}),
    ]
    value, sources = build(Sample, layers)
    assert value == Sample(name="toml", size=7, enabled=True, colour="blue")
    assert sources == {
        "name": "file.toml",
        "size": "CI_FANOUT_SIZE",
        "ratio": "default",
        "enabled": "file.toml",
        "colour": "--colour",
        "token": "default",
        "mode": "default",
    }
    assert "token" not in repr(Sample(token="hunter2")) and "hunter2" not in repr(
        Sample(token="hunter2")
    )
    # without empty_is_unset an empty value is a value
    value, _ = build(
        Sample, [env_layer(specs(Sample), {"CI_FANOUT_NAME": ""}, empty_is_unset=False)]
    )
    assert value.name == ""
    with pytest.raises(dataclasses.FrozenInstanceError):
        value.name = "y"  # type: ignore[misc]


def test_conversion_errors() -> None:
    rows = {s.name: s for s in specs(Sample)}
    assert convert(rows["enabled"], "Yes", "env") is True
    assert convert(rows["size"], "", "env") is None
    with pytest.raises(ConfigError, match="env: size = 'many' is not a valid integer"):
        convert(rows["size"], "many", "env")
    with pytest.raises(ConfigError, match=r"not a valid boolean \(true or false\)"):
        convert(rows["enabled"], "maybe", "env")
    with pytest.raises(ConfigError, match="not a valid number"):
        convert(rows["ratio"], True, "f.toml")
    with pytest.raises(ConfigError, match=r"choose one of red, blue\. Perhaps you meant .red."):
        convert(rows["colour"], "rad", "env")
    with pytest.raises(ConfigError, match="choose one of fast, slow"):
        convert(rows["mode"], "medium", "env")
    with pytest.raises(ConfigError, match=r"unknown option .colur.\. Perhaps you meant .colour."):
        build(Sample, [Layer("f.toml", {"colur": "red"})])


def test_choices_ignore_case_like_booleans() -> None:
    rows = {s.name: s for s in specs(Sample)}
    assert convert(rows["mode"], " Slow", "env") == "slow"
    assert convert(rows["colour"], "BLUE", "env") == "blue"


@dataclass(frozen=True, kw_only=True, slots=True)
class Family:
    env_prefix: ClassVar[str] = "CI_FANOUT_FAM_"

    size: int = opt(1, "in the file too", surfaces=frozenset({"toml"}))
    path: str = opt("", "environment only")


def test_a_family_owns_its_prefix() -> None:
    rows = specs(Family)
    assert [r.env for r in rows] == ["CI_FANOUT_FAM_SIZE", "CI_FANOUT_FAM_PATH"]
    env = {"CI_FANOUT_FAM_SIZE": "4", "CI_FANOUT_SIZE": "9"}
    assert build(Family, [env_layer(rows, env, empty_is_unset=True, owns="CI_FANOUT_FAM_")])[
        0
    ] == Family(size=4)
    bad = {"CI_FANOUT_FAM_SIZ": "4"}
    with pytest.raises(ConfigError, match=r"unknown variable CI_FANOUT_FAM_SIZ\. Perhaps"):
        env_layer(rows, bad, empty_is_unset=True, owns="CI_FANOUT_FAM_")
    assert env_layer(rows, bad, empty_is_unset=True).values == {}  # not owned: ignored


def test_table_and_flag_layers() -> None:
    doc = {"fam": {"size": 2}, "other": 1}
    layer = table_layer(Path("f.toml"), doc, "fam", specs(Family), surface="toml", elsewhere="no")
    assert (layer.source, dict(layer.values)) == ("f.toml [fam]", {"size": 2})
    assert (
        table_layer(Path("f.toml"), {}, "fam", specs(Family), surface="toml", elsewhere="").values
        == {}
    )
    with pytest.raises(ConfigError, match=r"unknown option 'path' \(set it elsewhere\)"):
        table_layer(
            Path("f.toml"),
            {"fam": {"path": "x"}},
            "fam",
            specs(Family),
            surface="toml",
            elsewhere="set it elsewhere",
        )
    flags = flag_layer({"size": 3, "path": None})
    value, sources = build(Family, [layer, flags])
    assert value == Family(size=3) and sources == {"size": "--size", "path": "default"}


def test_read_toml(tmp_path: Path) -> None:
    good = tmp_path / "a.toml"
    good.write_text("[t]\nx = 1\n")
    assert read_toml(good) == {"t": {"x": 1}}
    bad = tmp_path / "b.toml"
    bad.write_text("x = [")
    with pytest.raises(ConfigError, match="not valid TOML"):
        read_toml(bad)
    with pytest.raises(ConfigError, match="cannot read"):
        read_toml(tmp_path / "missing.toml")
