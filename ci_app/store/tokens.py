"""Scoped credentials: run identities and run tokens, runner tokens' label allow-lists.

A **run token** is bound to one run identity ``(run, repo, provider, pr, commit)``. It may
use that run's test queue and post results naming exactly that identity; it expires, and is
revoked when the run's final report is done or by an admin. The identity is fixed by whoever
binds the run first (the plan step, through the admin token) and never by the first results
that happen to arrive: :func:`ingest_checked` refuses results that differ from it, and from
a run already stored under another identity.

Tokens are stored as hashes only (``ci_app.web.security.hash_token``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ci_app.errors import StoreError
from ci_app.model.results import ResultSet
from ci_app.store.db import Store, _one

__all__ = [
    "RunGrant",
    "RunIdentity",
    "RunIdentityError",
    "add_runner_token",
    "bind_run",
    "forget_run_token",
    "identity_problems",
    "ingest_checked",
    "label_pools",
    "remove_label_pool",
    "revoke_run_tokens",
    "run_grant",
    "run_identity",
    "runner_allow_list",
    "set_label_pool",
    "set_runner_labels",
]


class RunIdentityError(StoreError):
    """Results or a token request whose run identity differs from the run's own."""

    exit_code = 3


@dataclass(frozen=True, slots=True)
class RunIdentity:
    run: str
    repo: str | None
    provider: str | None
    pr: int | None
    commit: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "run": self.run,
            "repo": self.repo,
            "provider": self.provider,
            "pr": self.pr,
            "commit": self.commit,
        }


@dataclass(frozen=True, slots=True)
class RunGrant:
    """What a valid run token allows: this identity, until ``expires_at``."""

    identity: RunIdentity
    expires_at: float


def identity_problems(want: RunIdentity, have: RunIdentity, *, strict: bool) -> list[str]:
    """How ``have`` differs from ``want`` (empty: it matches).

    ``strict``: run, repo, provider and pr must be equal, a missing value differing from a
    present one (a run token's results). Otherwise only the fields ``want`` names are
    compared (a run bound without a PR accepts results of any PR of its repository). The
    commit is compared only when both name one.
    """
    out: list[str] = []
    for field, need, got in (
        ("run_id", want.run, have.run),
        ("repo", want.repo, have.repo),
        ("provider", want.provider, have.provider),
        ("pr", want.pr, have.pr),
    ):
        if got != need and (strict or need is not None):
            out.append(f"{field} {got!r} (the run's is {need!r})")
    if have.commit and want.commit and have.commit != want.commit:
        out.append(f"commit {have.commit!r} (the run's is {want.commit!r})")
    return out


def _identity_row(con: Any, run: str) -> RunIdentity | None:
    row = _one(
        con, "SELECT run, repo, provider, pr, commit FROM run_identities WHERE run = ?", [run]
    )
    return None if row is None else RunIdentity(row[0], row[1], row[2], row[3], row[4])


def _stored_run(con: Any, run: str) -> RunIdentity | None:
    """The identity a run was stored with by earlier results, if any."""
    row = _one(con, "SELECT repo, provider, pr, commit FROM runs WHERE run_id = ?", [run])
    return None if row is None else RunIdentity(run, row[0], row[1], row[2], row[3])


def bind_run(
    store: Store, identity: RunIdentity, *, token_hash: str, now: float, expires_at: float
) -> RunGrant:
    """Bind ``identity`` to its run and add a token for it, in one transaction.

    A run bound before must agree with ``identity`` on every field it names (fields it left
    empty are filled in from ``identity``); a run already holding results must agree with
    what they named. Otherwise :class:`RunIdentityError` and nothing is written. Several
    tokens may serve one run (a retried plan step, a queue created after the run); they
    share its identity.
    """
    with store._tx() as con:
        bound = _identity_row(con, identity.run)
        stored = _stored_run(con, identity.run)
        for what, have in (("is bound to", bound), ("already holds results of", stored)):
            if have is None:
                continue
            problems = identity_problems(have, identity, strict=False)
            if problems:
                raise RunIdentityError(
                    f"run {identity.run!r} {what} another identity: " + "; ".join(problems)
                )
        if bound is not None:
            identity = RunIdentity(
                identity.run,
                bound.repo if bound.repo is not None else identity.repo,
                bound.provider if bound.provider is not None else identity.provider,
                bound.pr if bound.pr is not None else identity.pr,
                bound.commit or identity.commit,
            )
            con.execute(
                "UPDATE run_identities SET repo = ?, provider = ?, pr = ?, commit = ? "
                "WHERE run = ?",
                [identity.repo, identity.provider, identity.pr, identity.commit, identity.run],
            )
        else:
            con.execute(
                "INSERT INTO run_identities VALUES (?, ?, ?, ?, ?, ?)",
                [
                    identity.run,
                    identity.repo,
                    identity.provider,
                    identity.pr,
                    identity.commit,
                    now,
                ],
            )
        con.execute(
            "INSERT INTO run_tokens VALUES (?, ?, ?, ?, NULL)",
            [token_hash, identity.run, now, expires_at],
        )
    return RunGrant(identity, expires_at)


def run_identity(store: Store, run: str, *, stored: bool = False) -> RunIdentity | None:
    """The identity ``run`` is bound to; with ``stored``, else the one its results were
    stored with."""
    with store._lock:
        found = _identity_row(store._con, run)
        if found is None and stored:
            found = _stored_run(store._con, run)
        return found


def run_grant(store: Store, token_hash: str, *, now: float) -> RunGrant | None:
    """The grant of a run token: ``None`` when unknown, revoked or expired."""
    with store._lock:
        row = _one(
            store._con,
            "SELECT i.run, i.repo, i.provider, i.pr, i.commit, t.expires_at FROM run_tokens t "
            "JOIN run_identities i ON i.run = t.run "
            "WHERE t.token_hash = ? AND t.revoked_at IS NULL AND t.expires_at > ?",
            [token_hash, now],
        )
    if row is None:
        return None
    return RunGrant(RunIdentity(row[0], row[1], row[2], row[3], row[4]), float(row[5]))


def revoke_run_tokens(store: Store, run: str, *, now: float) -> int:
    """Revoke every live token of ``run``; returns how many."""
    with store._lock:
        rows = store._con.execute(
            "UPDATE run_tokens SET revoked_at = ? WHERE run = ? AND revoked_at IS NULL "
            "RETURNING token_hash",
            [now, run],
        ).fetchall()
    return len(rows)


def forget_run_token(store: Store, token_hash: str) -> None:
    """Delete one token (its request failed after it was made; it was never handed out)."""
    with store._lock:
        store._con.execute("DELETE FROM run_tokens WHERE token_hash = ?", [token_hash])


def ingest_checked(store: Store, rs: ResultSet, grant: RunGrant | None = None) -> int:
    """:meth:`Store.ingest` after checking the results' run identity; returns rows inserted.

    With a ``grant`` (a run token's) the results must name exactly its identity. Whoever
    posts them, results of a bound run must agree with what its identity names, and results
    of a run already stored with what it was stored with. Otherwise :class:`RunIdentityError`
    and nothing is stored. Check and insert run under the store's lock: no other writer can
    slip in between.
    """
    with store._lock:
        _check_identity_locked(store, rs, grant)
        return store.ingest(rs)


def check_identity(store: Store, rs: ResultSet, grant: RunGrant | None = None) -> None:
    """The identity check of :func:`ingest_checked` alone (for streamed ingests, which take
    the store's lock per batch): :class:`RunIdentityError` when ``rs`` names another run."""
    with store._lock:
        _check_identity_locked(store, rs, grant)


def _check_identity_locked(store: Store, rs: ResultSet, grant: RunGrant | None) -> None:
    r = rs.run
    have = RunIdentity(r.run_id or "", r.repo, r.provider, r.pr, r.commit)
    con = store._con
    problems: list[str] = []
    if grant is not None:
        problems += identity_problems(grant.identity, have, strict=True)
    for want in (_identity_row(con, have.run), _stored_run(con, have.run)):
        if not problems and want is not None:
            problems += identity_problems(want, have, strict=False)
    if problems:
        raise RunIdentityError(
            f"results of run {r.run_id!r} name another identity: " + "; ".join(problems)
        )


# ---------------------------------------------------------------------------------- runners
def add_runner_token(
    store: Store, name: str, token_hash: str, *, now: float, allow: Sequence[str] | None
) -> None:
    """A runner token; ``allow`` is the runner's label allow-list (None: pool rules apply)."""
    with store._lock:
        store._con.execute(
            "INSERT INTO runner_tokens (token_hash, name, created, revoked, allow_labels) "
            "VALUES (?, ?, ?, NULL, ?)",
            [token_hash, name, now, None if allow is None else list(allow)],
        )


def runner_allow_list(store: Store, name: str) -> tuple[str, ...] | None:
    """The label patterns the live tokens of runner ``name`` were created with (their union),
    or ``None`` when none was given one (then pool allow-lists or the default apply)."""
    with store._lock:
        rows = store._con.execute(
            "SELECT allow_labels FROM runner_tokens WHERE name = ? AND revoked IS NULL "
            "AND allow_labels IS NOT NULL ORDER BY created",
            [name],
        ).fetchall()
    if not rows:
        return None
    merged: list[str] = []
    for (labels,) in rows:
        merged.extend(p for p in labels if p not in merged)
    return tuple(merged)


def set_label_pool(store: Store, pattern: str, labels: Sequence[str], *, now: float) -> None:
    """Allow ``labels`` (patterns) to every runner whose name matches the glob ``pattern``."""
    with store._lock:
        store._con.execute(
            "INSERT INTO label_allow_pools VALUES (?, ?, ?) ON CONFLICT (pattern) "
            "DO UPDATE SET labels = excluded.labels, created_at = excluded.created_at",
            [pattern, list(labels), now],
        )


def remove_label_pool(store: Store, pattern: str) -> int:
    with store._lock:
        rows = store._con.execute(
            "DELETE FROM label_allow_pools WHERE pattern = ? RETURNING pattern", [pattern]
        ).fetchall()
    return len(rows)


def label_pools(store: Store) -> list[tuple[str, tuple[str, ...]]]:
    with store._lock:
        rows = store._con.execute(
            "SELECT pattern, labels FROM label_allow_pools ORDER BY pattern"
        ).fetchall()
    return [(str(p), tuple(labels or ())) for p, labels in rows]


def set_runner_labels(
    store: Store, name: str, granted: Sequence[str], refused: Sequence[str], *, now: float
) -> None:
    """The labels a runner holds (granted by its allow-list) and those refused (shown on the
    dashboard and in ``GET /runners``)."""
    with store._tx() as con:
        con.execute("UPDATE runners SET labels = ? WHERE name = ?", [list(granted), name])
        con.execute(
            "INSERT INTO runner_state (name, updated_at) VALUES (?, ?) ON CONFLICT DO NOTHING",
            [name, now],
        )
        con.execute(
            "UPDATE runner_state SET refused_labels = ?, updated_at = ? WHERE name = ?",
            [list(refused), now, name],
        )
