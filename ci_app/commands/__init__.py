"""Subcommands of ``ci-app``: one module each, discovered by ``ci_app.cli``.

A module defines ``register(sub: argparse._SubParsersAction) -> None``.
"""
