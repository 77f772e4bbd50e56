"""``ci-app plan``: build the shard matrix, or replay a plan against actual durations.

Plan::

    ci-app plan [--durations F] [--tests F | --collect PATH [--pytest-args ARGS] | --inventory F]
                [--runners F] [--shards K | --target-minutes M] [--mode static|queue]
                [--config F] [--format json|github|gitlab] --output F

``--shards``, ``--target-minutes``, ``--mode``, ``--setup-seconds``, ``--gpu-for-cpu`` and
``--config`` are CI options (docs/ci.md): each flag is the last layer of their cascade, over
``[ci]`` in ``ci-fanout.toml`` and ``CI_FANOUT_*``.

Simulate (prints ``{"makespan_s", "lower_bound_s", "ratio"}`` as its last line)::

    ci-app plan --durations HIST --shards K --simulate ACTUAL [--mode static|queue]
                [--pull-overhead S] [--noise SIGMA --seed N]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shlex
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ci_app.errors import ConfigError, InputError, PlanningError
from ci_app.matrix.durations import DurationHistory, durations_from_json
from ci_app.matrix.inventory import (
    Inventory,
    apply_rules,
    inventory_from_ids,
    rules_from_config,
)
from ci_app.matrix.planner import Matrix, PlanOptions, plan_matrix
from ci_app.matrix.policies import PlanContext, load_policies
from ci_app.matrix.pools import runners_from_json
from ci_app.matrix.render import render

if TYPE_CHECKING:
    from ci_app.options.ci import CiConfig

# Modules only some runs need (pytest collection, the config file, --simulate) are imported
# where they are used: `ci-app plan` is a CI step on every push, and its start-up counts.


def _read_json(path: str, what: str) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise InputError(f"{what} file {path} does not exist") from exc
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read {what} file {path}: {exc}") from exc


def load_history(paths: list[str]) -> DurationHistory:
    """Durations files; ResultSets are keyed by the runner labels they record."""
    hist = DurationHistory()
    for path in paths:
        if Path(path).suffix.lower() in (".xml", ".trx", ".zip"):
            # JUnit and the other report formats, through the artifacts parsers
            from ci_app.artifacts.ingest import ingest_paths

            rs = ingest_paths([path])
            if not rs.tests:
                raise InputError(f"no test cases with durations in {path}")
            hist.add(durations_from_json(rs.to_dict()))
            continue
        doc = _read_json(path, "durations")
        docs = doc if isinstance(doc, list) else [doc]
        for d in docs:
            labels: list[str] = []
            if isinstance(d, dict) and isinstance(d.get("run"), dict):
                labels = [str(x) for x in d["run"].get("runner_labels") or ()]
            hist.add(durations_from_json(d), labels)
    return hist


def collect_inventory(
    path: str,
    *,
    python: str | None = None,
    args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    plugins: Sequence[str] = (),
) -> Inventory:
    """Run ``pytest --collect-only`` with the ci-fanout plugin and read its inventory.

    ``python`` is the interpreter that has the tests' dependencies (default: this one), ``args``
    the pytest arguments the shards will run with (``--doctest-modules``, ``-p no:randomly``),
    ``plugins`` the plugin modules to load with ``-p`` when they are not installed there.
    """
    import subprocess
    import tempfile

    paths = shlex.split(path) or ["."]
    with tempfile.TemporaryDirectory(prefix="ci-fanout-") as tmp:
        out = Path(tmp) / "inventory.json"
        argv = [
            python or sys.executable,
            "-m",
            "pytest",
            *args,
            *(arg for name in plugins for arg in ("-p", name)),
            "--collect-only",
            "-q",
            "-p",
            "no:cacheprovider",
            f"--fanout-inventory={out}",  # option=value: kept out of pytest's ini search
            *paths,
        ]
        proc = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            check=False,
            env=dict(env) if env is not None else None,
        )
        if proc.returncode not in (0, 5) or not out.exists():
            tail = (proc.stdout + proc.stderr)[-2000:]
            raise InputError(
                f"pytest --collect-only {path} failed (exit {proc.returncode}):\n{tail}"
            )
        return Inventory.from_dict(json.loads(out.read_text()))


def _inventory(
    args: argparse.Namespace, config: Mapping[str, Any], hist: DurationHistory
) -> Inventory:
    if args.tests:
        try:
            inv = inventory_from_ids(Path(args.tests).read_text(encoding="utf-8").splitlines())
        except OSError as exc:
            raise InputError(f"cannot read --tests file {args.tests}: {exc}") from exc
    elif args.inventory:
        inv = Inventory.from_dict(_read_json(args.inventory, "inventory"))
    elif args.collect:
        inv = collect_inventory(args.collect, args=shlex.split(args.pytest_args or ""))
    else:
        # no inventory given: plan what the --durations files know (pytest-split's behaviour)
        inv = inventory_from_ids(hist.test_ids())
    return apply_rules(inv, rules_from_config(config))


def _resolve(args: argparse.Namespace) -> CiConfig:
    """The flags that name CI options are the last layer of their cascade: defaults → ``[ci]``
    of ``ci-fanout.toml`` (``--config F``, which must exist; else ``./ci-fanout.toml``) →
    ``CI_FANOUT_*`` → these flags. ``--target-minutes`` picks the shard count, so it also
    clears a count set by an earlier layer."""
    from ci_app.options.ci import resolve

    flags: dict[str, Any] = {
        "config": args.config,
        "shards": args.shards,
        "target-minutes": args.target_minutes,
        "mode": args.mode,
        "setup-seconds": args.setup_seconds,
        "gpu-for-cpu": args.gpu_for_cpu,
    }
    if args.target_minutes is not None:
        flags["shards"] = ""  # empty: unset
    return resolve(os.environ, flags=flags)


def _options(args: argparse.Namespace, cfg: CiConfig) -> PlanOptions:
    """Without a target from any layer the CLI plans the fewest shards within 10% of the best
    wall time (the CI steps' default target is the option's, 10 minutes)."""
    opts = cfg.options
    targeted = cfg.sources["target-minutes"] != "default"
    return PlanOptions(
        mode=opts.mode,
        shards=opts.shards,
        target_s=opts.target_minutes * 60.0 if targeted else None,
        setup_s=opts.setup_seconds,
        min_shard_s=args.min_shard_seconds,
        gpu_for_cpu=opts.gpu_for_cpu,
        on_unsatisfied=args.unsatisfied,
    )


def _simulate(args: argparse.Namespace, cfg: CiConfig) -> int:
    from ci_app.matrix.queue import QueueConfig
    from ci_app.matrix.simulate import add_noise, simulate_queue, simulate_static

    if not args.durations:
        raise ConfigError("--simulate needs --durations HIST (the history to plan with)")
    options = _options(args, cfg)
    if options.shards is None:
        raise ConfigError("--simulate needs --shards K")
    actual = durations_from_json(_read_json(args.simulate, "actual durations"))
    if not actual:
        raise InputError(f"{args.simulate} holds no durations")
    if args.noise:
        actual = add_noise(actual, args.noise, args.seed)
    hist = load_history(args.durations)
    inv = inventory_from_ids(sorted(actual))
    t0 = time.perf_counter()
    matrix = plan_matrix(inv, hist, None, options)
    plan_s = time.perf_counter() - t0
    if options.mode == "queue":
        items = [it for p in matrix.pools for it in p.queue]
        res = simulate_queue(
            items, actual, options.shards, QueueConfig(pull_overhead_s=args.pull_overhead)
        )
    else:
        res = simulate_static([s.tests for s in matrix.shards], actual)
    unknown = sum(s.unknown_tests for s in matrix.shards)
    print(
        f"planned {len(inv.tests)} tests ({unknown} without history) into {len(matrix.shards)} "
        f"shard(s) in {plan_s:.3f}s; mode {options.mode}",
        file=sys.stderr,
    )
    print(json.dumps(res.to_dict()))
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    # A plan builds a few objects per test (100 000 tests: some 300 000) and no reference
    # cycles; the cyclic collector's passes over them were a tenth of the run. Reference
    # counting still frees everything; the collector is back on when the command returns.
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _plan_or_simulate(args)
    finally:
        if was_enabled:
            gc.enable()


def _plan_or_simulate(args: argparse.Namespace) -> int:
    cfg = _resolve(args)
    if args.simulate:
        return _simulate(args, cfg)
    if not args.output:
        raise ConfigError("--output F is required (use - for stdout)")
    if not (args.tests or args.inventory or args.collect or args.durations):
        raise ConfigError(
            "give the tests: --tests F, --collect PATH, --inventory F or --durations F"
        )
    config = cfg.project
    hist = load_history(args.durations or [])  # read once: history and, alone, the inventory
    inv = _inventory(args, config, hist)
    if args.db:
        _add_store_history(hist, args.db, repo=args.repo, branch=args.history_branch)
    runners = runners_from_json(_read_json(args.runners, "runners")) if args.runners else None
    policy_cfg = config.get("policies") or {}
    names = args.policy if args.policy else None
    policies = load_policies(names, policy_cfg)
    ctx = PlanContext(
        repo=args.repo or "",
        ref=args.ref or "",
        default_branch=args.default_branch,
        labels=frozenset(args.pr_label or ()),
        now=time.time(),
        deadline=None
        if args.deadline_minutes is None
        else time.time() + args.deadline_minutes * 60,
    )
    matrix = plan_matrix(inv, hist, runners, _options(args, cfg), policies=policies, ctx=ctx)
    text = render(matrix, args.format)
    if args.output == "-":
        sys.stdout.write(text)
    else:
        Path(args.output).write_text(text, encoding="utf-8")
        if args.format != "json" and args.matrix_output:
            Path(args.matrix_output).write_text(render(matrix, "json"), encoding="utf-8")
    for w in matrix.warnings:
        print(f"warning: {w}", file=sys.stderr)
    _summary(matrix)
    return 0


def _add_store_history(
    hist: DurationHistory, db: str, *, repo: str | None, branch: str | None
) -> None:
    """Add the stored median durations (all runner classes pooled) to ``hist``."""
    from ci_app.store import open_store

    if not Path(db).exists():
        raise InputError(f"--db {db}: no such store (run ci-app ingest --db first)")
    with open_store(db, read_only=True) as store:
        durations = store.results.durations(repo=repo or None, branch=branch)
    if durations:
        hist.add(durations)


def _summary(matrix: Matrix) -> None:
    for u in matrix.unsatisfied:
        print(
            f"not run: {len(u.tests)} test(s) needing [{', '.join(u.requires)}]",
            file=sys.stderr,
        )
    for p in matrix.pools:
        print(
            f"pool {p.key} [{', '.join(p.runs_on)}]: {p.shards} shard(s), "
            f"{p.total_s:.0f}s of tests, expected wall {p.expected_wall_s:.0f}s",
            file=sys.stderr,
        )


def register(sub: Any) -> None:
    p = sub.add_parser(
        "plan",
        help="plan hardware-aware, duration-balanced shards (or --simulate a plan)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    src = p.add_mutually_exclusive_group()
    src.add_argument("--tests", metavar="F", help="file with one test id per line")
    src.add_argument("--collect", metavar="PATH", help="run pytest --collect-only on PATH")
    src.add_argument("--inventory", metavar="F", help="inventory JSON (pytest --fanout-inventory)")
    p.add_argument(
        "--pytest-args",
        metavar="ARGS",
        help="with --collect: the pytest arguments the shards run with (e.g. "
        "'--doctest-modules -p no:randomly'; write --pytest-args='...'), so that the plan "
        "collects the same tests",
    )
    p.add_argument(
        "--durations",
        metavar="F",
        action="append",
        help="durations: pytest-split .test_durations JSON or results.json (repeatable)",
    )
    p.add_argument("--runners", metavar="F", help="runners JSON [{name, labels}]")
    # these flags name CI options: the last layer over [ci] in ci-fanout.toml and CI_FANOUT_*
    k = p.add_mutually_exclusive_group()
    k.add_argument("--shards", type=int, metavar="K", help="shards per pool")
    k.add_argument(
        "--target-minutes",
        type=float,
        metavar="M",
        help="target wall time (default: none, the fewest shards within 10%% of the best wall)",
    )
    p.add_argument("--mode", choices=("static", "queue"), help="default: static")
    p.add_argument("--format", choices=("json", "github", "gitlab"), default="json")
    p.add_argument("--output", metavar="F", help="where to write the matrix (- for stdout)")
    p.add_argument(
        "--matrix-output", metavar="F", help="also write the JSON matrix (with github/gitlab)"
    )
    p.add_argument(
        "--config",
        metavar="F",
        help="ci-fanout.toml (default: ./ci-fanout.toml); its [ci] table sets the defaults of "
        "--shards, --target-minutes, --mode, --setup-seconds, --gpu-for-cpu",
    )
    p.add_argument("--setup-seconds", type=float, help="per-shard set-up cost (default: 30)")
    p.add_argument("--min-shard-seconds", type=float, default=0.0, help="smallest useful shard")
    p.add_argument(
        "--gpu-for-cpu",
        action=argparse.BooleanOptionalAction,
        help="let CPU tests use GPU runners (default: no)",
    )
    p.add_argument(
        "--unsatisfied",
        choices=("error", "report"),
        default="error",
        help="tests no online runner can take: fail the plan (error) or list them as not run",
    )
    p.add_argument("--db", help="also take duration history from this ci-fanout store")
    p.add_argument("--history-branch", help="with --db: only runs of this branch (default: all)")
    p.add_argument("--policy", action="append", metavar="NAME", help="policies to apply, in order")
    p.add_argument("--repo", help="repository (for policies)")
    p.add_argument("--ref", help="branch or ref (for policies)")
    p.add_argument("--default-branch", action="store_true", help="this is the default branch")
    p.add_argument("--pr-label", action="append", metavar="L", help="PR label (for priority)")
    p.add_argument("--deadline-minutes", type=float, metavar="M", help="finish within M minutes")
    sim = p.add_argument_group("simulation")
    sim.add_argument("--simulate", metavar="ACTUAL", help="replay the plan with these durations")
    sim.add_argument("--pull-overhead", type=float, default=0.05, metavar="S")
    sim.add_argument("--noise", type=float, default=0.0, metavar="SIGMA")
    sim.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_plan)


__all__ = ["PlanningError", "cmd_plan", "collect_inventory", "load_history", "register"]
