"""``ci-app runners``: per-runner heartbeat tokens, label allow-lists and the runner list.

``ci-app runners token create NAME [--allow-labels L ...]`` prints a new token once (only its
hash is stored); the runner is granted only the labels (or label globs) listed, whatever its
profile claims (default: the server's ``runner-allow-labels``, CPU/memory/disk labels only).
``pool allow GLOB L ...`` sets the allow-list of every runner whose name matches GLOB and has
no list of its own; ``pool list``, ``pool remove GLOB``. ``token revoke NAME`` revokes every
token of NAME; ``list`` shows the registry. With
``--server URL`` (or ``CI_FANOUT_SERVER``) the commands go through the running app's admin
API (``CI_FANOUT_API_TOKEN``), because DuckDB lets only one process — the app — write the
file; without it they open ``--db`` directly (the app must be stopped).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.parse
from typing import Any

from ci_app.client import AppClient, check_url
from ci_app.errors import ConfigError

TOKEN_ENV = "CI_FANOUT_API_TOKEN"  # noqa: S105 - the variable name


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "runners", help="runner tokens and registry", description=__doc__
    )
    p.add_argument(
        "--db", default=None, help="DuckDB file (default: CI_FANOUT_DB or ./ci-fanout.duckdb)"
    )
    p.add_argument("--server", default=None, help="app base URL (use its admin API)")
    rs = p.add_subparsers(dest="runners_command", metavar="ACTION", required=True)
    tok = rs.add_parser("token", help="create or revoke a runner's heartbeat token")
    ts = tok.add_subparsers(dest="token_command", metavar="ACTION", required=True)
    c = ts.add_parser("create", help="create a token for runner NAME (printed once)")
    c.add_argument("name")
    c.add_argument("--provider", help="provider the runner is registered with (github, gitlab)")
    c.add_argument(
        "--allow-labels",
        nargs="+",
        metavar="LABEL",
        help="labels or globs (gpu-mem-ge-*) this runner may be granted; its profile's other "
        "labels are refused (default: a pool's list, else the server's runner-allow-labels)",
    )
    c.set_defaults(func=create)
    r = ts.add_parser("revoke", help="revoke every token of runner NAME")
    r.add_argument("name")
    r.set_defaults(func=revoke)
    pool = rs.add_parser("pool", help="label allow-lists for runners by name glob")
    ps = pool.add_subparsers(dest="pool_command", metavar="ACTION", required=True)
    pa = ps.add_parser("allow", help="runners matching GLOB may be granted these labels")
    pa.add_argument("glob", help="runner-name glob, e.g. 'lab-gpu-*'")
    pa.add_argument("labels", nargs="+", metavar="LABEL", help="labels or label globs")
    pa.set_defaults(func=pool_allow)
    pr = ps.add_parser("remove", help="remove the allow-list of GLOB")
    pr.add_argument("glob")
    pr.set_defaults(func=pool_remove)
    pl = ps.add_parser("list", help="list pool allow-lists")
    pl.add_argument("--json", action="store_true", help="JSON output")
    pl.set_defaults(func=pool_list)
    ls = rs.add_parser("list", help="list runners")
    ls.add_argument("--json", action="store_true", help="JSON output")
    ls.set_defaults(func=list_runners)


def _server(args: argparse.Namespace) -> str | None:
    url: str | None = args.server or os.environ.get("CI_FANOUT_SERVER") or None
    return None if url is None else check_url(url, what="--server")


def _db(args: argparse.Namespace) -> str:
    return str(args.db or os.environ.get("CI_FANOUT_DB") or "ci-fanout.duckdb")


def _call(base: str, method: str, path: str, body: Any = None) -> Any:
    """One admin API call with the token in ``CI_FANOUT_API_TOKEN``."""
    token = os.environ.get(TOKEN_ENV, "")
    if not token:
        raise ConfigError(f"--server needs the admin token in {TOKEN_ENV}")
    return AppClient(base, token, timeout_s=30, what="--server").request(method, path, body)


def _patterns(raw: list[str] | None) -> tuple[str, ...] | None:
    from ci_app.model.allow import parse_patterns

    if raw is None:
        return None
    try:
        return parse_patterns(raw)
    except ValueError as exc:
        raise ConfigError(f"--allow-labels: {exc}") from None


def create(args: argparse.Namespace) -> int:
    base = _server(args)
    allow = _patterns(args.allow_labels)
    quoted = urllib.parse.quote(args.name, safe="")
    if base:
        body: dict[str, Any] = {"provider": args.provider}
        if allow is not None:
            body["allow_labels"] = list(allow)
        doc = _call(base, "POST", f"/api/v1/admin/runners/{quoted}/tokens", body)
        token = doc["token"]
        granted = " ".join(doc.get("allow_labels") or ())
    else:
        from ci_app.store import open_store
        from ci_app.web.security import hash_token, new_token

        token = new_token("cfr")
        with open_store(_db(args)) as store:
            store.runners.add_runner_token(
                args.name, hash_token(token), now=time.time(), allow=allow
            )
            if args.provider:
                store.runners.set_runner_provider(args.name, args.provider, now=time.time())
        granted = " ".join(allow) if allow is not None else "(a pool's list or the default)"
    print(token)
    print(
        f"token for runner {args.name!r} (shown once); labels it may be granted: {granted}\n"
        f"on the machine run:\n  runner-probe install --server <URL> --name {args.name} "
        "--token-file <file holding the token>",
        file=sys.stderr,
    )
    return 0


def pool_allow(args: argparse.Namespace) -> int:
    allow = _patterns(args.labels) or ()
    base = _server(args)
    if base:
        quoted = urllib.parse.quote(args.glob, safe="")
        _call(base, "PUT", f"/api/v1/admin/pools/{quoted}", {"allow_labels": list(allow)})
    else:
        from ci_app.store import open_store

        with open_store(_db(args)) as store:
            store.runners.set_label_pool(args.glob, allow, now=time.time())
    print(f"runners matching {args.glob!r} may be granted: {' '.join(allow)}")
    return 0


def pool_remove(args: argparse.Namespace) -> int:
    base = _server(args)
    if base:
        quoted = urllib.parse.quote(args.glob, safe="")
        n = int(_call(base, "DELETE", f"/api/v1/admin/pools/{quoted}")["removed"])
    else:
        from ci_app.store import open_store

        with open_store(_db(args)) as store:
            n = store.runners.remove_label_pool(args.glob)
    print(f"removed {n} allow-list(s) for {args.glob!r}")
    return 0 if n else 1


def pool_list(args: argparse.Namespace) -> int:
    base = _server(args)
    if base:
        pools = _call(base, "GET", "/api/v1/admin/pools")["pools"]
    else:
        from ci_app.store import open_store

        with open_store(_db(args)) as store:
            pools = [
                {"pattern": p, "allow_labels": list(a)} for p, a in store.runners.label_pools()
            ]
    if args.json:
        print(json.dumps({"pools": pools}, indent=2))
        return 0
    if not pools:
        print("no pool allow-lists")
    for p in pools:
        print(f"{p['pattern']:<30} {' '.join(p['allow_labels'])}")
    return 0


def revoke(args: argparse.Namespace) -> int:
    base = _server(args)
    if base:
        quoted = urllib.parse.quote(args.name, safe="")
        n = int(_call(base, "DELETE", f"/api/v1/admin/runners/{quoted}/tokens")["revoked"])
    else:
        from ci_app.store import open_store

        with open_store(_db(args)) as store:
            n = store.runners.revoke_runner_tokens(args.name, now=time.time())
    print(f"revoked {n} token(s) of runner {args.name!r}")
    return 0 if n else 1


def list_runners(args: argparse.Namespace) -> int:
    base = _server(args)
    if base:
        rows = _call(base, "GET", "/api/v1/runners")["runners"]
    else:
        from ci_app.store import open_store

        with open_store(_db(args)) as store:
            rows = [
                {
                    "name": r.name,
                    "status": r.status,
                    "busy": r.busy,
                    "last_seen": r.last_seen,
                    "labels": list(r.labels),
                    "refused_labels": list(r.refused_labels),
                    "provider": r.provider,
                }
                for r in store.runners.runner_rows()
            ]
    if args.json:
        print(json.dumps({"runners": rows}, indent=2))
        return 0
    if not rows:
        print("no runners")
    for r in rows:
        seen = (
            "never"
            if r.get("last_seen") is None
            else time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(float(r["last_seen"])))
        )
        print(
            f"{r['name']:<30} {r['status']:<10} {'busy' if r.get('busy') else 'idle':<5} "
            f"last seen {seen}  {' '.join(r.get('labels') or [])}"
            + (f"  (refused: {' '.join(r['refused_labels'])})" if r.get("refused_labels") else "")
        )
    return 0
