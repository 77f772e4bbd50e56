"""``ci-app`` command line: subcommands are discovered from ``ci_app.commands``.

Each module in ``ci_app/commands/`` defines ``register(subparsers)`` which adds
its subcommand(s) and sets ``func`` (``(args) -> int``) as the parser default.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import logging
import sys
from collections.abc import Sequence
from typing import Any

from ci_app import __version__, commands
from ci_app.errors import CiFanoutError, ConfigError


def _command_modules(argv: Sequence[str]) -> list[str]:
    """The command modules to import: only the named one when argv names one.

    Each module registers the subcommand of its own name; importing just that one
    keeps ``ci-app ingest`` from loading numpy, DuckDB and the web stack, and
    ``ci-app plan`` from even listing the others.
    """
    first = next((w for w in argv if not w.startswith("-")), None)
    if first is None and "--version" in argv:
        return []
    if first is not None and first.isidentifier() and not first.startswith("_"):
        spec = importlib.util.find_spec(f"{commands.__name__}.{first}")
        if spec is not None:
            return [first]
    import pkgutil  # no command named: list them all (help, or a typo argparse reports)

    return sorted(
        m.name for m in pkgutil.iter_modules(commands.__path__) if not m.name.startswith("_")
    )


def _needs_extra(sub: Any, name: str, exc: ImportError) -> None:
    """``name`` cannot load here (an optional dependency is missing): the subcommand exists
    and says what to install instead of a traceback."""
    missing = exc.name or str(exc)

    def run(args: argparse.Namespace) -> int:
        raise ConfigError(
            f"this command needs {missing!r}, which is not installed: install ci-fanout with "
            "the [app] extra (pip install 'ci-fanout[app]', or '.[app]' in a checkout)"
        )

    p = sub.add_parser(name, help=f"(needs the [app] extra: {missing} is missing)")
    p.add_argument("rest", nargs=argparse.REMAINDER)
    p.set_defaults(func=run)


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The ``ci-app`` parser; with ``argv``, only the subcommand it names is loaded."""
    parser = argparse.ArgumentParser(
        prog="ci-app",
        description="ci-fanout: plan hardware-aware shards, ingest and report test results.",
    )
    parser.add_argument("--version", action="version", version=f"ci-fanout {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in _command_modules(argv or []):
        try:
            module = importlib.import_module(f"{commands.__name__}.{name}")
        except ImportError as exc:  # an optional dependency of this command is missing
            _needs_extra(sub, name, exc)
            continue
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        code: int = args.func(args)
    except CiFanoutError as exc:
        print(f"ci-app {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
