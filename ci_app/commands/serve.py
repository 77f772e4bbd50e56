"""``ci-app serve``: the webhook app + API + dashboard under gunicorn, with the job worker.

One gunicorn worker process (``gthread``, ``--threads`` request threads) owns the DuckDB
file; the job-worker threads run inside it (DuckDB allows one writer process). If that
process dies — even ``kill -9`` — the gunicorn master starts a new one, which reopens the
database and redoes the jobs whose lease ran out.

A fatal store error (DuckDB's ``FatalException``: the database must be reopened, e.g. after a
checkpoint failed on a full disk) makes the worker exit with :data:`EXIT_STORE_FATAL`, so
that the master starts a fresh one; until then every request answers 503.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
import time
from typing import Any

from ci_app.options.server import Settings, load_settings

#: exit status of a worker whose store failed for good (EX_SOFTWARE; gunicorn halts the whole
#: server only on 3 and 4, and restarts a worker on any other status)
EXIT_STORE_FATAL = 70
#: time for in-flight 503 answers to go out before the worker exits
FATAL_EXIT_DELAY_S = 0.5


def exit_worker(exc: BaseException) -> None:
    """``on_fatal`` of the served app: leave the worker process soon, non-zero.

    ``os._exit``: the connection cannot be closed cleanly (DuckDB refuses every call now) and
    atexit handlers would only try; what was acknowledged is in the WAL, which the next worker
    replays.
    """

    def leave() -> None:
        time.sleep(FATAL_EXIT_DELAY_S)
        sys.stderr.write(
            f"ci-app serve: the store failed ({type(exc).__name__}); worker exits "
            f"{EXIT_STORE_FATAL} for a fresh one\n"
        )
        sys.stderr.flush()
        os._exit(EXIT_STORE_FATAL)

    threading.Thread(target=leave, name="ci-fanout-fatal-exit", daemon=True).start()


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "serve",
        help="run the webhook app, APIs, dashboard and job worker (gunicorn)",
        description=(
            "Serve /webhooks/*, /api/v1/*, the dashboard, /healthz and /metrics. Options come "
            "from defaults, a TOML file (--config or CI_FANOUT_SERVE_CONFIG), CI_FANOUT_* "
            "environment variables and these flags (later wins); docs/options.md lists them."
        ),
    )
    p.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, help="TCP port (default 8080; 0 picks a free one)")
    p.add_argument("--workers", type=int, help="gunicorn worker processes (must be 1: DuckDB)")
    p.add_argument("--threads", type=int, help="request threads (default 8)")
    p.add_argument("--job-workers", type=int, help="job-worker threads (default 2)")
    p.add_argument("--db", help="DuckDB file (default ./ci-fanout.duckdb)")
    p.add_argument("--config", metavar="FILE", help="TOML settings file")
    p.add_argument("--log-level", help="debug, info, warning or error")
    p.set_defaults(func=run)


def settings_from_args(args: argparse.Namespace, env: Any = None) -> Settings:
    flags = {
        "host": args.host,
        "port": args.port,
        "workers": args.workers,
        "threads": args.threads,
        "job-workers": args.job_workers,
        "db": args.db,
        "log-level": args.log_level,
    }
    return load_settings(
        env=os.environ if env is None else env, config_file=args.config, overrides=flags
    )


def gunicorn_options(settings: Settings) -> dict[str, Any]:
    return {
        "bind": f"{settings.host}:{settings.port}",
        "workers": 1,
        "worker_class": "gthread",
        "threads": settings.threads,
        "timeout": 60,
        "graceful_timeout": 20,
        "keepalive": 5,
        "preload_app": False,  # the DB is opened (and the worker started) after the fork
        "accesslog": None,
        "errorlog": "-",
        "loglevel": settings.log_level.lower(),
        # the default 8 KiB header limit suffices; bodies are capped by the app
        "limit_request_line": 8190,
        "proc_name": "ci-fanout",
        "control_socket_disable": True,  # no ~/.gunicorn/gunicorn.ctl admin socket
        "when_ready": _when_ready,
        "post_fork": _post_fork,
    }


def _when_ready(server: Any) -> None:
    """Print the bound address whatever the log level (``--port 0`` picks a free port)."""
    for listener in server.LISTENERS:
        host, port = listener.sock.getsockname()[:2]
        sys.stderr.write(f"ci-app serve: listening at http://{host}:{port}\n")
    sys.stderr.flush()


def _post_fork(server: Any, worker: Any) -> None:
    sys.stderr.write(f"ci-app serve: worker pid {worker.pid}\n")
    sys.stderr.flush()


def run(args: argparse.Namespace) -> int:
    from gunicorn.app.base import BaseApplication

    settings = settings_from_args(args)
    logging.getLogger().setLevel(settings.log_level.upper())

    class App(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            for key, value in gunicorn_options(settings).items():
                if key in self.cfg.settings:  # older gunicorns lack some settings
                    self.cfg.set(key, value)

        def load(self) -> Any:
            from ci_app.web.app import create_app

            logging.getLogger().setLevel(settings.log_level.upper())
            return create_app(settings, on_fatal=exit_worker)

    logging.getLogger(__name__).info("ci-app serve settings: %s", settings.public_dict())
    App().run()
    return 0
