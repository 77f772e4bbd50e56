# ruff: noqa: E501 - shell text, one command per line
"""How ci-fanout installs itself on a runner: its own virtual environment, never the tests'.

:data:`INSTALL_SH` (POSIX sh) is the one install snippet; ``action.yml``, the GitLab template and
component, and the generated GitLab shard jobs all run exactly this text (a test keeps them
equal). It makes a virtual environment from the ``python`` option's interpreter in the runner's
tool cache, keyed by what is installed (the package spec, its files when it is a local checkout,
the extra, the Python version), installs ci-fanout there once (in a temporary directory renamed
into place, so concurrent jobs on one machine never see half an install), and exports
``CI_FANOUT_TOOL_PYTHON``. The project's own interpreter, pinned packages and a PEP 668 system
Python are never touched; the tests run there with the plugin put on ``PYTHONPATH``
(:mod:`ci_app.ci.testenv`).

``python -m ci_app.ci.install EXTRA`` installs the dependencies of an extra (``app`` for the
report step: DuckDB, matplotlib, the forge SDKs) into the running interpreter, whatever the spec
was (a path, a wheel, a ``name @ git+URL`` requirement).
"""

from __future__ import annotations

import re
import subprocess
import sys
from importlib import metadata
from typing import Final

DISTRIBUTION: Final = "ci-fanout"

#: the install snippet; needs CI_FANOUT_PYTHON, CI_FANOUT_PACKAGE or CI_FANOUT_SOURCE,
#: optional CI_FANOUT_EXTRA and CI_FANOUT_TOOL_CACHE
INSTALL_SH: Final = r"""py="${CI_FANOUT_PYTHON:-python3}"
command -v "$py" >/dev/null 2>&1 || { echo "ci-fanout: python = '$py' is not an interpreter on PATH (set the python input)" >&2; exit 1; }
spec="${CI_FANOUT_PACKAGE:-${CI_FANOUT_SOURCE:-}}"
[ -n "$spec" ] || { echo "ci-fanout: set the package input (or the CI/CD variable CI_FANOUT_PACKAGE): where ci-fanout installs from, e.g. 'ci-fanout @ git+https://gitlab.example.com/ci-fanout/ci-fanout.git@v1.0.0' or a wheel (docs/ci.md)" >&2; exit 1; }
extra="${CI_FANOUT_EXTRA:-}"
key=$( { printf '%s|%s\n' "$spec" "$extra"; "$py" -c 'import sys; print(sys.version)'; if [ -d "$spec" ]; then (cd "$spec" && find pyproject.toml setup.py ci_app runner_probe -type f ! -name '*.pyc' ! -name '*.so' -exec cksum {} + 2>/dev/null | LC_ALL=C sort); elif [ -f "$spec" ]; then cksum < "$spec"; fi; } | cksum | cut -d ' ' -f 1)
root="${CI_FANOUT_TOOL_CACHE:-${RUNNER_TOOL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}}}/ci-fanout"
venv="$root/venv-$key"
if [ ! -f "$venv/.ci-fanout-ready" ]; then
  mkdir -p "$root"
  tmp="$venv.tmp.$$"
  rm -rf "$tmp"
  "$py" -m venv "$tmp" || { echo "ci-fanout: '$py -m venv' failed: install the venv module (Debian/Ubuntu: python3-venv) or set the python input" >&2; exit 1; }
  "$tmp/bin/python" -m pip install --quiet --disable-pip-version-check "$spec" || exit 1
  if [ -n "$extra" ]; then "$tmp/bin/python" -m ci_app.ci.install "$extra" || exit 1; fi
  touch "$tmp/.ci-fanout-ready"
  "$tmp/bin/python" -c 'import os, sys; os.rename(sys.argv[1], sys.argv[2])' "$tmp" "$venv" 2>/dev/null || rm -rf "$tmp"
fi
CI_FANOUT_TOOL_PYTHON="$venv/bin/python"
export CI_FANOUT_TOOL_PYTHON
if [ -n "${GITHUB_ENV:-}" ]; then echo "CI_FANOUT_TOOL_PYTHON=$CI_FANOUT_TOOL_PYTHON" >> "$GITHUB_ENV"; fi
echo "ci-fanout $("$CI_FANOUT_TOOL_PYTHON" -c 'import ci_app; print(ci_app.__version__)') in $venv"
"""

_EXTRA_MARKER: Final = re.compile(r"""extra\s*==\s*["']([^"']+)["']""")


def extra_requirements(extra: str) -> list[str]:
    """The requirements ci-fanout's metadata lists for ``extra`` (markers stripped)."""
    out: list[str] = []
    for req in metadata.requires(DISTRIBUTION) or []:
        spec, _, marker = req.partition(";")
        extras = _EXTRA_MARKER.findall(marker)
        if extra in extras:
            out.append(spec.strip())
    return out


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        sys.stderr.write("usage: python -m ci_app.ci.install EXTRA\n")
        return 2
    reqs = extra_requirements(args[0])
    if not reqs:
        sys.stderr.write(f"ci-fanout: no extra {args[0]!r} in {DISTRIBUTION}'s metadata\n")
        return 2
    cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    return subprocess.run([*cmd, *reqs], check=False).returncode


if __name__ == "__main__":  # pragma: no cover - run by INSTALL_SH
    raise SystemExit(main())
