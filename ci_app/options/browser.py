"""The browser pool's options (the pytest plugin's :class:`~ci_app.browser.config.PoolConfig`).

Each option has one external name, kebab-case (``pool-size``); its environment variable is
``CI_FANOUT_BROWSER_`` + the name upper-cased (``CI_FANOUT_BROWSER_POOL_SIZE``), its key in
the ``[browser]`` table of ``ci-fanout.toml`` the name itself. Cascade, later wins: the defaults
below → ``[browser]`` in ``ci-fanout.toml`` → ``CI_FANOUT_BROWSER_*`` (empty values are unset)
→ the plugin's ``--browser-record`` flag. The file is the one the CI steps read (``config``,
``CI_FANOUT_CONFIG``), found in the directory pytest runs in: the shard step runs the tests in
``working-directory``.

``health`` and ``record`` are paths another process reads too (``runner-probe``'s heartbeat;
the shard step, beside ``--junitxml``), so they are not ``[browser]`` keys. Every
``CI_FANOUT_BROWSER_*`` variable must be an option: an unknown one fails with "Perhaps you
meant …". ``docs/browser.md``'s configuration table is generated from this class.
"""

from __future__ import annotations

import math
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Final, Literal

from ci_app.errors import ConfigError
from ci_app.options.ci import DEFAULT_CONFIG, TOML, CiOptions, read_project_config
from ci_app.options.ci import OPTIONS as CI_OPTIONS
from ci_app.options.engine import (
    ENV_PREFIX,
    OptionSpec,
    build,
    env_layer,
    flag_layer,
    opt,
    specs,
    table_layer,
)

__all__ = [
    "BROWSER_PREFIX",
    "OPTIONS",
    "TABLE",
    "BrowserOptions",
    "Mode",
    "render_docs",
    "resolve",
]

BROWSER_PREFIX: Final = ENV_PREFIX + "BROWSER_"
#: the table of ``ci-fanout.toml`` these options may be set in
TABLE: Final = "browser"
_TOML: Final = frozenset({TOML})
Mode = Literal["auto", "hardware", "software"]


@dataclass(frozen=True, kw_only=True, slots=True)
class BrowserOptions:
    """The pool's options as users set them; :func:`ci_app.browser.config.config_from_env`
    turns them into a ``PoolConfig`` (with the runner's resources and labels)."""

    env_prefix: ClassVar[str] = BROWSER_PREFIX

    executable: str = opt("/usr/bin/chromium", "the browser the pool launches", surfaces=_TOML)
    pool_size: int | None = opt(
        None,
        "warm browsers at most (1–16); empty: from the runner's effective CPUs and memory",
        surfaces=_TOML,
    )
    mode: Mode = opt(  # noqa: RUF009 (a Literal alias: immutable like the others)
        "auto",
        "`auto`: the hardware flag set first when a GPU device node exists, else software",
        surfaces=_TOML,
    )
    flags: str = opt("", "extra `--switches` for every launch (shell words)", surfaces=_TOML)
    timeout: float = opt(
        30.0,
        "seconds for one page call (navigation, a bounded evaluate, a compute job)",
        surfaces=_TOML,
    )
    recycle: int = opt(50, "tests one browser context serves before a fresh one", surfaces=_TOML)
    health: str = opt(
        "",
        "the crash log shared with runner-probe's heartbeat; empty: "
        "`$XDG_STATE_HOME/ci-fanout/browser-health.jsonl` (environment only)",
    )
    record: str = opt(
        "",
        "where the per-test record goes (`--browser-record`); empty: beside `--junitxml` as "
        "`<name>.browser.json` (environment or flag only)",
    )

    @property
    def launch_flags(self) -> tuple[str, ...]:
        """``flags`` as arguments (checked by :func:`resolve`)."""
        return tuple(shlex.split(self.flags))


OPTIONS: Final[tuple[OptionSpec, ...]] = specs(BrowserOptions)
_CONFIG: Final = tuple(o for o in CI_OPTIONS if o.attr == "config")


def resolve(
    env: Mapping[str, str],
    *,
    project_dir: Path | None = None,
    flags: Mapping[str, Any] | None = None,
) -> BrowserOptions:
    """Defaults → ``[browser]`` of ``project_dir``'s ``ci-fanout.toml`` (none without a
    ``project_dir``) → ``CI_FANOUT_BROWSER_*`` → ``flags`` (``None``: not given)."""
    environment = env_layer(OPTIONS, env, empty_is_unset=True, owns=BROWSER_PREFIX)
    layers = [environment, flag_layer(flags or {})]
    if project_dir is not None:
        located, _ = build(CiOptions, [env_layer(_CONFIG, env, empty_is_unset=True)])
        path = project_dir / located.config
        doc = read_project_config(path, required=False)
        where = "set it in the environment"
        layers.insert(0, table_layer(path, doc, TABLE, OPTIONS, surface=TOML, elsewhere=where))
    options, sources = build(BrowserOptions, layers)
    _validate(options, sources)
    return options


def _validate(options: BrowserOptions, sources: Mapping[str, str]) -> None:
    """Bounds and the launch flags: what a type conversion cannot express."""
    at_least_one = {
        "pool-size": options.pool_size,
        "timeout": options.timeout,
        "recycle": options.recycle,
    }
    for name, value in at_least_one.items():
        if value is not None and (not math.isfinite(value) or value < 1):
            raise ConfigError(f"{sources[name]}: {name} = {value!r} must be at least 1")
    try:
        flags = options.launch_flags
    except ValueError as exc:
        raise ConfigError(f"{sources['flags']}: flags: {exc}") from None
    bad = [f for f in flags if not f.startswith("--")]
    if bad:
        raise ConfigError(f"{sources['flags']}: flags: {bad[0]!r} is not a --switch")


def render_docs() -> str:
    """``docs/browser.md``'s configuration table (between the generated markers)."""
    lines = [
        "| variable | `[browser]` key | default | meaning |",
        "|---|---|---|---|",
    ]
    for o in OPTIONS:
        key = f"`{o.name}`" if TOML in o.surfaces else ""
        default = f"`{o.default_text}`" if o.default_text else "*empty*"
        lines.append(f"| `{o.env}` | {key} | {default} | {o.description} |")
    lines += [
        "",
        f"Cascade, later wins: default → `[{TABLE}]` in `{DEFAULT_CONFIG}` (the file the CI steps"
        " read, `config`, in the directory pytest runs in) → environment → `--browser-record`."
        " An unknown `[browser]` key or `CI_FANOUT_BROWSER_*` variable fails with"
        ' "Perhaps you meant …".',
    ]
    return "\n".join(lines) + "\n"
