"""The test interpreter: how a shard (and the plan's collection) runs the project's pytest.

ci-fanout runs in its own environment; the tests run in the ``python`` option's interpreter, which
has the project's dependencies. Nothing is installed there: the pytest plugin is made importable
by a directory put first on ``PYTHONPATH`` (a link to this ci-fanout's package plus a
``ci_fanout`` module, the plugin's entry-point name, so an installed copy of the plugin is not
registered twice), and ``-p ci_fanout`` loads it. The environment is scrubbed of credentials.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Final

import ci_app
from ci_app.credentials import scrub

#: the pytest11 entry-point name of :mod:`ci_app.pytest_plugin`
PLUGIN_NAME: Final = "ci_fanout"
#: the pytest11 entry-point name of :mod:`ci_app.browser.plugin` (browser pool fixtures)
BROWSER_PLUGIN_NAME: Final = "ci_fanout_browser"
#: entry-point name -> module: the plugins a shard loads with ``-p`` (in this order)
PLUGINS: Final = {PLUGIN_NAME: "ci_app.pytest_plugin", BROWSER_PLUGIN_NAME: "ci_app.browser.plugin"}
_SHIM: Final = (
    "# made by ci-fanout: loads this ci-fanout's pytest plugin under its entry-point name\n"
    "import sys\n\nimport {module} as _plugin\n\nsys.modules[__name__] = _plugin\n"
)
_PYTHONS: Final = frozenset({"python", "python3"})


def plugin_dir(dest: Path) -> Path:
    """Fill ``dest`` so that ``PYTHONPATH=dest`` + :func:`plugin_args` loads the plugins."""
    dest.mkdir(parents=True, exist_ok=True)
    link = dest / "ci_app"
    if not link.exists():
        link.symlink_to(Path(ci_app.__file__).resolve().parent, target_is_directory=True)
    for name, module in PLUGINS.items():
        (dest / f"{name}.py").write_text(_SHIM.format(module=module), encoding="utf-8")
    return dest


def plugin_args() -> list[str]:
    """``-p`` arguments that load every plugin of :data:`PLUGINS`."""
    return [arg for name in PLUGINS for arg in ("-p", name)]


def is_pytest(cmd: Sequence[str]) -> bool:
    names = [Path(c).name for c in cmd[:3]]
    return any(n in ("pytest", "py.test") for n in names[:1]) or (
        len(cmd) >= 3 and cmd[1] == "-m" and cmd[2] == "pytest"
    )


def resolve_command(cmd: Sequence[str], python: str, python_name: str) -> list[str]:
    """Run ``cmd`` under the test interpreter: a leading ``python``/``python3`` (or the
    ``python`` option's own value) becomes ``python``; a bare ``pytest`` becomes
    ``python -m pytest``. Anything else (an explicit path, ``tox``, ``npm``) is kept."""
    out = list(cmd)
    if not out:
        return out
    head = out[0]
    if head in _PYTHONS or head == python_name:
        out[0] = python
    elif head in ("pytest", "py.test"):
        out = [python, "-m", "pytest", *out[1:]]
    return out


def pytest_args(cmd: Sequence[str]) -> list[str]:
    """The arguments a pytest ``cmd`` passes to pytest itself (after ``-m pytest`` or
    ``pytest``), so that the plan collects with exactly what the shards run with."""
    if len(cmd) >= 3 and cmd[1] == "-m" and cmd[2] == "pytest":
        return list(cmd[3:])
    if cmd and Path(cmd[0]).name in ("pytest", "py.test"):
        return list(cmd[1:])
    return []


def sandbox_env(
    env: Mapping[str, str], plugin: Path | None, extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The test command's environment: ``env`` without credentials, the plugin directory first
    on ``PYTHONPATH``."""
    out = scrub(env)
    if plugin is not None:
        old = out.get("PYTHONPATH", "")
        out["PYTHONPATH"] = str(plugin) + (os.pathsep + old if old else "")
    out.update(extra or {})
    return out


def show(argv: Sequence[str]) -> str:
    return shlex.join(argv)
