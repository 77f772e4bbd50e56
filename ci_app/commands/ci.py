"""``ci-app ci plan|shard|report``: the entry point of the GitHub Action and the GitLab template.

The steps live in :mod:`ci_app.ci` (one module each); options come from ``CI_FANOUT_*``
environment variables and the CI context from the provider's own variables.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

STEPS = ("plan", "shard", "report")


def cmd_ci(args: argparse.Namespace) -> int:
    from ci_app.ci import run_step

    return run_step(args.step, os.environ)


def register(sub: Any) -> None:
    from ci_app import ci

    p = sub.add_parser(
        "ci",
        help="the GitHub Action / GitLab template steps: plan, shard, report",
        description=ci.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("step", choices=STEPS, help="plan | shard | report")
    p.set_defaults(func=cmd_ci)
