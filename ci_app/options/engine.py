"""The options engine shared by every option set (CI steps, ``ci-app serve``).

An option set is a frozen keyword-only dataclass whose fields are declared with :func:`opt`:
the attribute is the typed value use sites read (``opts.target_minutes``: mypy catches a
typo), the field metadata is the table row docs and CI files are generated from. The external
name is the attribute in kebab-case (``target-minutes``), its environment variable
``CI_FANOUT_`` + the name upper-cased (``CI_FANOUT_TARGET_MINUTES``); an option set whose
variables form a family of their own declares its prefix as the class variable ``env_prefix``
(``CI_FANOUT_BROWSER_`` + ``POOL_SIZE``).

One cascade, later wins: defaults → TOML (:func:`table_layer`) → ``CI_FANOUT_*``
(:func:`env_layer`) → flags (:func:`flag_layer`), resolved by :func:`build`. Each layer is a
plain mapping of external names to raw values; the environment is always passed in, never read
at import time. Unknown keys fail with "Perhaps you meant …". Booleans and choices are matched
case-insensitively. TOML files are read by :func:`read_toml` only.
"""

from __future__ import annotations

import dataclasses
import difflib
import tomllib
import types
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal, TypeVar, get_args, get_origin, get_type_hints

from ci_app.errors import ConfigError

__all__ = [
    "ENV_PREFIX",
    "Layer",
    "OptType",
    "OptionSpec",
    "build",
    "convert",
    "env_layer",
    "env_name",
    "flag_layer",
    "opt",
    "read_toml",
    "specs",
    "suggest",
    "table_layer",
]

ENV_PREFIX: Final = "CI_FANOUT_"
_META: Final = "ci_fanout_option"

OptType = Literal["string", "boolean", "integer", "number"]
Scalar = str | bool | int | float | None
T = TypeVar("T")


@dataclass(frozen=True, kw_only=True, slots=True)
class _Meta:
    description: str
    choices: tuple[str, ...]
    secret: bool
    commands: tuple[str, ...]
    surfaces: frozenset[str]
    action_default: str | None


def opt(
    default: Any,
    description: str,
    *,
    choices: tuple[str, ...] = (),
    secret: bool = False,
    commands: tuple[str, ...] = (),
    surfaces: frozenset[str] = frozenset(),
    action_default: str | None = None,
) -> Any:
    """Declare one option: a dataclass field whose metadata is its table row.

    ``commands`` and ``surfaces`` are for the CI options (which steps read it; where it is
    declared); ``action_default`` is the literal default of a GitHub input that cannot be ''.
    Secrets are left out of ``repr``."""
    meta = _Meta(
        description=description,
        choices=choices,
        secret=secret,
        commands=commands,
        surfaces=surfaces,
        action_default=action_default,
    )
    return field(default=default, repr=not secret, metadata={_META: meta})


def env_name(name: str, prefix: str = ENV_PREFIX) -> str:
    """``target-minutes`` → ``CI_FANOUT_TARGET_MINUTES``."""
    return prefix + name.replace("-", "_").upper()


@dataclass(frozen=True, kw_only=True, slots=True)
class OptionSpec:
    """One row of an option table, read from a field declared with :func:`opt`."""

    name: str
    attr: str
    type: OptType
    nullable: bool
    default: Scalar
    description: str
    choices: tuple[str, ...] = ()
    secret: bool = False
    commands: tuple[str, ...] = ()
    surfaces: frozenset[str] = frozenset()
    action_default: str | None = None
    env_prefix: str = ENV_PREFIX

    @property
    def env(self) -> str:
        return env_name(self.name, self.env_prefix)

    @property
    def default_text(self) -> str:
        """The default as users write it (``''`` for an empty or missing default)."""
        if self.default is None or self.default == "":
            return ""
        if isinstance(self.default, bool):
            return "true" if self.default else "false"
        return str(self.default)


_TYPES: Final[dict[Any, OptType]] = {
    str: "string",
    bool: "boolean",
    int: "integer",
    float: "number",
}


def _spec_type(hint: Any, attr: str) -> tuple[OptType, bool]:
    if get_origin(hint) is Literal and all(isinstance(a, str) for a in get_args(hint)):
        return "string", False
    if isinstance(hint, types.UnionType):
        args = [a for a in hint.__args__ if a is not type(None)]
        if len(args) == 1 and len(hint.__args__) == 2 and args[0] in _TYPES:
            return _TYPES[args[0]], True
    if hint in _TYPES:
        return _TYPES[hint], False
    raise TypeError(f"option {attr}: unsupported type {hint!r}")


_SPECS: dict[type, tuple[OptionSpec, ...]] = {}


def specs(cls: type) -> tuple[OptionSpec, ...]:
    """The option table of an option-set dataclass, in declaration order."""
    cached = _SPECS.get(cls)
    if cached is not None:
        return cached
    hints = get_type_hints(cls)
    prefix = getattr(cls, "env_prefix", ENV_PREFIX)
    rows: list[OptionSpec] = []
    for f in dataclasses.fields(cls):
        meta = f.metadata.get(_META)
        if not isinstance(meta, _Meta):
            raise TypeError(f"{cls.__name__}.{f.name} is not declared with opt()")
        kind, nullable = _spec_type(hints[f.name], f.name)
        # a Literal type is the list of choices (mypy then checks comparisons with it too)
        choices = get_args(hints[f.name]) if get_origin(hints[f.name]) is Literal else ()
        if choices and meta.choices:
            raise TypeError(f"{cls.__name__}.{f.name}: choices come from its Literal type")
        rows.append(
            OptionSpec(
                name=f.name.replace("_", "-"),
                attr=f.name,
                type=kind,
                nullable=nullable,
                default=f.default,  # type: ignore[arg-type]
                description=meta.description,
                choices=choices or meta.choices,
                secret=meta.secret,
                commands=meta.commands,
                surfaces=meta.surfaces,
                action_default=meta.action_default,
                env_prefix=prefix,
            )
        )
    _SPECS[cls] = tuple(rows)
    return _SPECS[cls]


def suggest(key: str, known: Iterable[str]) -> str:
    """`` Perhaps you meant 'x'?`` for the closest known name, else ''."""
    close = difflib.get_close_matches(key, list(known), n=1)
    return f" Perhaps you meant {close[0]!r}?" if close else ""


_TRUE: Final = ("1", "true", "yes", "on")
_FALSE: Final = ("0", "false", "no", "off")


def convert(spec: OptionSpec, raw: Any, source: str) -> Scalar:
    """``raw`` (TOML value, environment text or flag value) as the option's type."""
    if raw is None or (spec.nullable and raw == ""):
        if spec.nullable:
            return None
        raise ConfigError(f"{source}: {spec.name} must be set")
    try:
        if spec.type == "boolean":
            if isinstance(raw, bool):
                return raw
            text = str(raw).strip().lower()
            if text in _TRUE:
                return True
            if text in (*_FALSE, ""):
                return False
            raise ValueError(raw)
        if spec.type in ("integer", "number") and isinstance(raw, bool):
            raise ValueError(raw)
        if spec.type == "integer":
            return int(str(raw).strip())
        if spec.type == "number":
            return float(str(raw).strip())
    except (TypeError, ValueError):
        raise ConfigError(
            f"{source}: {spec.name} = {raw!r} is not a valid {spec.type}"
            + (" (true or false)" if spec.type == "boolean" else "")
        ) from None
    value = str(raw)
    if spec.choices and value not in spec.choices:
        folded = value.strip().lower()
        match = [c for c in spec.choices if c.lower() == folded]
        if match:
            return match[0]
        hint = suggest(value, spec.choices)
        raise ConfigError(
            f"{source}: {spec.name} = {value!r}; choose one of {', '.join(spec.choices)}.{hint}"
        )
    return value


@dataclass(frozen=True, slots=True)
class Layer:
    """One step of the cascade: where the values come from and the raw values by name.

    ``per_key`` names the source of each key when it differs from ``source`` (the
    environment: each value from its own variable)."""

    source: str
    values: Mapping[str, Any]
    per_key: Mapping[str, str] = field(default_factory=dict)


def env_layer(
    table: Iterable[OptionSpec],
    env: Mapping[str, str],
    *,
    empty_is_unset: bool,
    owns: str | None = None,
) -> Layer:
    """The ``CI_FANOUT_<NAME>`` variables of ``table`` found in ``env``.

    With ``empty_is_unset`` an empty value leaves the option to earlier layers (the CI inputs
    default to '' so that ``ci-fanout.toml`` can still decide). ``owns``: a prefix whose every
    variable must be an option of ``table`` (a family of its own, such as the browser pool's);
    any other fails with a suggestion."""
    table = tuple(table)
    if owns is not None:
        known = [spec.env for spec in table]
        for name in env:
            if name.startswith(owns) and name not in known:
                raise ConfigError(f"environment: unknown variable {name}.{suggest(name, known)}")
    values: dict[str, Any] = {}
    per_key: dict[str, str] = {}
    for spec in table:
        if spec.env not in env:
            continue
        raw = env[spec.env]
        if raw == "" and empty_is_unset:
            continue
        values[spec.name] = raw
        per_key[spec.name] = spec.env
    return Layer("environment", values, per_key)


def table_layer(
    path: Path,
    doc: Mapping[str, Any],
    table: str,
    options: Iterable[OptionSpec],
    *,
    surface: str,
    elsewhere: str,
) -> Layer:
    """The ``[table]`` of a TOML document ``doc`` read from ``path``; keys of options not
    declared on ``surface`` fail, with ``elsewhere`` saying where they are set instead."""
    source = f"{path} [{table}]"
    values = doc.get(table, {})
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: [{table}] must be a table")
    outside = {o.name for o in options if surface not in o.surfaces}
    for key in values:
        if key in outside:
            raise ConfigError(f"{source}: unknown option {key!r} ({elsewhere})")
    return Layer(source, dict(values))


def flag_layer(given: Mapping[str, Any]) -> Layer:
    """The command line: flag values by option name (``_`` or ``-``); ``None`` is a flag not
    given. Each value's source is its flag, ``--name``."""
    values = {k.replace("_", "-"): v for k, v in given.items() if v is not None}
    return Layer("command line", values, {k: f"--{k}" for k in values})


def build(cls: type[T], layers: Iterable[Layer]) -> tuple[T, dict[str, str]]:
    """Defaults → each layer in turn (later wins): the option set and each option's source.

    A key not in the table fails with a suggestion."""
    table = {s.name: s for s in specs(cls)}
    values: dict[str, Scalar] = {name: s.default for name, s in table.items()}
    sources = dict.fromkeys(table, "default")
    for layer in layers:
        for key, raw in layer.values.items():
            spec = table.get(key)
            if spec is None:
                raise ConfigError(f"{layer.source}: unknown option {key!r}.{suggest(key, table)}")
            source = layer.per_key.get(key, layer.source)
            values[key] = convert(spec, raw, source)
            sources[key] = source
    obj = cls(**{table[k].attr: v for k, v in values.items()})
    return obj, sources


def read_toml(path: Path) -> dict[str, Any]:
    """A TOML document; the one place ci-fanout reads TOML files."""
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc
