"""``runner-probe``: detect hardware, print labels, heartbeat to the app, install as a service.

runner-probe detect [--json] [--browser/--no-browser]
runner-probe labels [--format lines|csv|json|github-output]
runner-probe run --server URL --token-file F [--interval 60] [--once]
runner-probe install --server URL (--token-file F | env CI_FANOUT_RUNNER_TOKEN) [--print]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import socket
import sys
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

from ci_app.client import check_url
from ci_app.errors import CiFanoutError, ConfigError
from ci_app.model.labels import SCHEME, derive_labels
from ci_app.model.profile import HardwareProfile, Status
from runner_probe import __version__
from runner_probe.browser import DEFAULT_EXECUTABLE, DEFAULT_TIMEOUT_S
from runner_probe.detect import DetectOptions, detect

log = logging.getLogger("runner_probe")

TOKEN_ENV = "CI_FANOUT_RUNNER_TOKEN"  # noqa: S105 - the variable name, not a secret


def _browser_available(executable: str | None) -> bool:
    import importlib.util

    return (
        Path(executable or DEFAULT_EXECUTABLE).exists()
        and importlib.util.find_spec("playwright") is not None
    )


def _options(args: argparse.Namespace, env: Mapping[str, str], browser: bool) -> DetectOptions:
    return DetectOptions(
        env=env,
        browser=browser,
        browser_executable=args.browser_executable,
        browser_timeout_s=args.browser_timeout,
        disk_path=args.disk_path,
    )


def _want_browser(args: argparse.Namespace) -> bool:
    if args.browser is None:  # auto: probe when Chromium and Playwright are installed
        return _browser_available(args.browser_executable)
    return bool(args.browser)


def profile_json(profile: HardwareProfile) -> dict[str, Any]:
    """``detect --json`` output: the profile plus its labels (validates against the schema)."""
    return {**profile.to_dict(), "labels": list(derive_labels(profile)), "label_scheme": SCHEME}


def _gb(n: int | None) -> str:
    return "-" if n is None else f"{n / 1e9:.2f} GB"


def render_table(profile: HardwareProfile, labels: Sequence[str]) -> str:
    """Human summary of a profile, one source per line."""
    p = profile
    rows: list[tuple[str, str, str]] = []
    cg = " ".join(f"{k}:v{v}" for k, v in sorted(p.host.cgroup.items())) or "-"
    rows.append(
        (
            "host",
            p.host.status,
            f"{p.host.hostname}  {p.host.os_release or p.host.os}  kernel {p.host.kernel or '-'}"
            f"  container {p.host.container or '-'}  cgroup {cg}",
        )
    )
    c = p.cpu
    level = f"x86-64-v{c.x86_64_level}" if c.x86_64_level else "-"
    rows.append(
        (
            "cpu",
            c.status,
            f"{c.arch} {c.vendor or ''} {c.model or ''}  {level}  logical {c.logical}"
            f"  physical {c.physical if c.physical is not None else '-'}  affinity {c.affinity}"
            f"  quota {c.quota if c.quota is not None else '-'}  effective {c.effective}",
        )
    )
    m = p.memory
    rows.append(
        (
            "memory",
            m.status,
            f"total {_gb(m.total_bytes)}  cgroup limit {_gb(m.limit_bytes)}"
            f"  effective {_gb(m.effective_bytes)}",
        )
    )
    d = p.disk
    rows.append(("disk", d.status, f"{d.path}  free {_gb(d.free_bytes)} of {_gb(d.total_bytes)}"))
    n = p.nvidia
    nv = (
        f"driver {n.driver_version}  CUDA {n.cuda_driver_version}  {len(p.gpus)} GPU(s)"
        if n.status is Status.OK
        else (n.error or "")
    )
    rows.append(("nvidia", n.status, nv))
    for g in p.gpus:
        mig = ""
        if g.mig is not None and g.mig.current:
            mig = "  MIG " + ",".join(dev.profile or "?" for dev in g.mig.devices)
        rows.append(
            (
                f"gpu {g.index}",
                "",
                f"{g.name}  {_gb(g.memory_bytes)}  sm {g.compute_capability}  {g.arch}"
                f"  {g.pci_bus_id}{mig}",
            )
        )
    a = p.accelerators
    acc = ", ".join(f"{x.count}x {x.kind} {x.vendor or x.pci_vendor}" for x in a.devices)
    rows.append(("accel", a.status, acc or (a.error or "")))
    b = p.browser
    if b.status is Status.OK:
        adapter = b.webgpu.adapter if b.webgpu else None
        gpu_text = (
            f"{adapter.vendor}/{adapter.architecture} type {adapter.type}"
            f"{' (fallback)' if adapter.fallback else ''}"
            if adapter
            else "no adapter"
        )
        nn = b.webnn
        nn_ok = [x for x in ("cpu", "gpu", "npu") if nn is not None and getattr(nn, x)]
        nn_text = ",".join(nn_ok) if nn_ok else f"unsupported ({nn.error if nn else 'no API'})"
        btext = f"{b.engine} {b.version}  webgpu {gpu_text}  webnn {nn_text}"
    else:
        btext = b.error or ""
    rows.append(("browser", b.status, btext))
    width = max(len(r[0]) for r in rows)
    out = [f"{name:<{width}}  {status!s:<6}  {text}".rstrip() for name, status, text in rows]
    out.append(f"{'labels':<{width}}  {len(labels):<6}  {', '.join(labels)}")
    t = p.probe.timings_ms
    detail = ", ".join(f"{k} {v:g}" for k, v in t.items() if k != "total")
    out.append(f"{'timings':<{width}}  {'ms':<6}  total {t.get('total', 0):g} ({detail})")
    for e in p.probe.errors:
        out.append(f"{'error':<{width}}  {e.source:<6}  {e.error}")
    return "\n".join(out) + "\n"


def github_output_lines(labels: Sequence[str]) -> str:
    """``labels=a,b`` and ``labels-json=[...]`` lines for ``$GITHUB_OUTPUT``."""
    return f"labels={','.join(labels)}\nlabels-json={json.dumps(list(labels))}\n"


def _format_labels(labels: Sequence[str], fmt: str) -> str:
    if fmt == "json":
        return json.dumps(list(labels)) + "\n"
    if fmt == "csv":
        return ",".join(labels) + "\n"
    if fmt == "github-output":
        return github_output_lines(labels)
    return "".join(f"{label}\n" for label in labels)


def _cmd_detect(args: argparse.Namespace, env: Mapping[str, str], out: TextIO) -> int:
    profile = detect(_options(args, env, _want_browser(args)))
    if args.json:
        out.write(json.dumps(profile_json(profile), indent=2) + "\n")
    else:
        out.write(render_table(profile, derive_labels(profile)))
    return 0


def _cmd_labels(args: argparse.Namespace, env: Mapping[str, str], out: TextIO) -> int:
    profile = detect(_options(args, env, _want_browser(args)))
    out.write(_format_labels(derive_labels(profile), args.format))
    return 0


def read_token(token_file: str | None, env: Mapping[str, str]) -> str:
    if token_file:
        try:
            token = Path(token_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(
                f"cannot read the token file {token_file}: {exc.strerror or exc}; "
                f"create it with the runner token from the app (mode 0600)"
            ) from None
    else:
        token = env.get(TOKEN_ENV, "").strip()
    if not token:
        raise ConfigError(
            f"no runner token: pass --token-file FILE or set {TOKEN_ENV}; "
            f"the app issues one per runner"
        )
    return token


def _check_server(url: str) -> str:
    return check_url(url, what="--server")


def _cmd_run(args: argparse.Namespace, env: Mapping[str, str], out: TextIO) -> int:
    from runner_probe.heartbeat import (
        HeartbeatClient,
        HeartbeatConfig,
        ProfileCache,
        sample_load,
    )
    from runner_probe.nvidia import import_nvml

    browser = _want_browser(args)
    name = args.name or socket.gethostname()

    def detect_fn(with_browser: bool) -> HardwareProfile:
        return detect(_options(args, env, with_browser))

    if args.once:
        profile = detect_fn(browser)
        labels = derive_labels(profile)
        out.write(github_output_lines(labels))
        gh_output = env.get("GITHUB_OUTPUT")
        if gh_output and not args.no_github_output:
            with Path(gh_output).open("a", encoding="utf-8") as fh:
                fh.write(github_output_lines(labels))
        if args.server:
            config = HeartbeatConfig(
                server=_check_server(args.server),
                token=read_token(args.token_file, env),
                runner=name,
                timeout_s=args.timeout,
            )
            client = HeartbeatClient(config, profile_fn=lambda: profile, load_fn=sample_load)
            result = client.beat()
            if not result.ok:
                log.warning("heartbeat failed (ignored with --once): %s", result.error)
        return 0

    if not args.server:
        raise ConfigError("runner-probe run needs --server URL (or --once)")
    config = HeartbeatConfig(
        server=_check_server(args.server),
        token=read_token(args.token_file, env),
        runner=name,
        interval_s=args.interval,
        backoff_max_s=max(args.backoff_max, args.interval),
        timeout_s=args.timeout,
    )
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("signal %d: stopping", signum)
        stop.set()

    previous: dict[signal.Signals, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, on_signal)
    try:
        nvml = import_nvml()
        cache = ProfileCache(detect_fn, browser=browser, browser_every_s=args.browser_every)
        client = HeartbeatClient(
            config,
            profile_fn=cache,
            load_fn=lambda p: sample_load(p, nvml),
            wait=stop.wait,
        )
        log.info("heartbeating %s every %gs as %r", config.url, config.interval_s, name)
        return client.run(max_beats=args.max_beats)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _cmd_install(args: argparse.Namespace, env: Mapping[str, str], out: TextIO) -> int:
    from runner_probe.install import UNIT_NAME, InstallPlan, install, render_unit

    plan = InstallPlan(
        server=_check_server(args.server),
        token_file=Path(args.token_path),
        unit_path=Path(args.unit_dir) / UNIT_NAME,
        name=args.name,
        interval_s=args.interval,
        browser=args.browser,
        user=args.user,
        disk_path=args.disk_path,
    )
    if args.print:
        out.write(render_unit(plan))
        return 0
    token = read_token(args.token_file, env)
    for line in install(plan, token):
        out.write(line + "\n")
    return 0


def _add_probe_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--browser",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="probe WebGPU/WebNN with Chromium (default: when /usr/bin/chromium and "
        "Playwright are installed)",
    )
    p.add_argument("--browser-executable", default=None, help=f"default {DEFAULT_EXECUTABLE}")
    p.add_argument(
        "--browser-timeout",
        type=float,
        default=DEFAULT_TIMEOUT_S,
        help="seconds the browser probe may take (default %(default)s)",
    )
    p.add_argument(
        "--disk-path",
        default=None,
        help="folder whose free space is reported (default $CI_FANOUT_DISK_PATH or cwd)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="runner-probe",
        description="Detect this machine's hardware and keep its CI runner labels true.",
    )
    parser.add_argument("--version", action="version", version=f"runner-probe {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("detect", help="print the hardware profile")
    p.add_argument("--json", action="store_true", help="profile + labels as JSON")
    _add_probe_options(p)
    p.set_defaults(func=_cmd_detect)

    p = sub.add_parser("labels", help="print the labels this machine earns")
    p.add_argument("--format", choices=("lines", "csv", "json", "github-output"), default="lines")
    _add_probe_options(p)
    p.set_defaults(func=_cmd_labels)

    p = sub.add_parser("run", help="heartbeat the profile and load to the app")
    p.add_argument("--server", help="app base URL, e.g. https://ci.example.org")
    p.add_argument("--token-file", help=f"file holding the runner token (or ${TOKEN_ENV})")
    p.add_argument("--name", help="runner name (default: hostname)")
    p.add_argument("--interval", type=float, default=60.0, help="seconds between heartbeats")
    p.add_argument("--backoff-max", type=float, default=300.0, help="longest retry delay when down")
    p.add_argument("--timeout", type=float, default=10.0, help="HTTP timeout, seconds")
    p.add_argument(
        "--browser-every",
        type=float,
        default=900.0,
        help="seconds between browser re-probes (default %(default)s)",
    )
    p.add_argument("--max-beats", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument(
        "--once",
        action="store_true",
        help="probe once, print labels=... lines (and append them to $GITHUB_OUTPUT), "
        "send one heartbeat if --server is given, exit 0",
    )
    p.add_argument("--no-github-output", action="store_true", help="with --once: only print")
    _add_probe_options(p)
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser("install", help="install the systemd service (or --print the unit)")
    p.add_argument("--server", required=True)
    p.add_argument(
        "--token-file", help=f"read the token from this file (or ${TOKEN_ENV}); never argv"
    )
    p.add_argument(
        "--token-path",
        default="/etc/ci-fanout/runner-probe.token",
        help="where the service reads its token (written 0600)",
    )
    p.add_argument("--unit-dir", default="/etc/systemd/system")
    p.add_argument("--name")
    p.add_argument("--user", help="run the service as this user (token chowned to it)")
    p.add_argument("--interval", type=float, default=60.0)
    p.add_argument("--print", action="store_true", help="print the unit, write nothing")
    p.add_argument("--browser", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument("--disk-path", default=None)
    p.set_defaults(func=_cmd_install)
    return parser


def main(
    argv: Sequence[str] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    stdout: TextIO | None = None,
) -> int:
    """Entry point; returns the exit code (user errors: the CiFanoutError class's code)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    out = stdout or sys.stdout
    try:
        return int(args.func(args, dict(os.environ) if env is None else env, out))
    except CiFanoutError as exc:
        print(f"runner-probe: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
