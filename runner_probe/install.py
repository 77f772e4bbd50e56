"""``runner-probe install``: a systemd unit that runs the heartbeat agent, token kept 0600."""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

UNIT_NAME = "runner-probe.service"


@dataclass(frozen=True, kw_only=True)
class InstallPlan:
    server: str
    token_file: Path
    unit_path: Path
    name: str | None = None
    interval_s: float = 60.0
    browser: bool | None = None
    user: str | None = None
    executable: tuple[str, ...] = ()
    disk_path: str | None = None


def agent_command() -> tuple[str, ...]:
    """How to start the agent: the installed console script, else ``python -m runner_probe``."""
    script = shutil.which("runner-probe")
    if script:
        return (str(Path(script).resolve()),)
    return (sys.executable, "-m", "runner_probe")


def render_unit(plan: InstallPlan) -> str:
    args = [
        *(plan.executable or agent_command()),
        "run",
        "--server",
        plan.server,
        "--token-file",
        str(plan.token_file),
        "--interval",
        f"{plan.interval_s:g}",
    ]
    if plan.name:
        args += ["--name", plan.name]
    if plan.browser is True:
        args.append("--browser")
    elif plan.browser is False:
        args.append("--no-browser")
    if plan.disk_path:
        args += ["--disk-path", plan.disk_path]
    # systemd splits ExecStart like a shell for quoting purposes; '%' must be doubled
    exec_start = " ".join(shlex.quote(a) for a in args).replace("%", "%%")
    lines = [
        "[Unit]",
        "Description=ci-fanout runner probe (hardware labels and heartbeat)",
        "Documentation=https://github.com/ci-fanout/ci-fanout/blob/main/docs/probe.md",
        "After=network-online.target",
        "Wants=network-online.target",
        "",
        "[Service]",
        "Type=simple",
        f"ExecStart={exec_start}",
        "Restart=always",
        "RestartSec=10",
        "Environment=PYTHONUNBUFFERED=1",
        "NoNewPrivileges=yes",
        "PrivateTmp=yes",
    ]
    if plan.user:
        lines.append(f"User={plan.user}")
    lines += ["", "[Install]", "WantedBy=multi-user.target", ""]
    return "\n".join(lines)


def write_token(path: Path, token: str) -> None:
    """Write ``token`` to ``path`` readable by its owner only (0600), atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # umask cannot widen it, an existing file is narrowed
        os.write(fd, token.strip().encode() + b"\n")
    finally:
        os.close(fd)
    tmp.replace(path)


def install(plan: InstallPlan, token: str) -> list[str]:
    """Write the token file and the unit; returns the next steps to print."""
    write_token(plan.token_file, token)
    if plan.user and hasattr(os, "geteuid") and os.geteuid() == 0:
        shutil.chown(plan.token_file, user=plan.user)  # the service user must read it
    plan.unit_path.parent.mkdir(parents=True, exist_ok=True)
    plan.unit_path.write_text(render_unit(plan), encoding="utf-8")
    return [
        f"wrote {plan.unit_path}",
        f"wrote {plan.token_file} (mode 0600)",
        "next: systemctl daemon-reload && systemctl enable --now " + plan.unit_path.name,
    ]
