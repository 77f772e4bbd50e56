"""Run identities and run tokens (runner tokens are in :mod:`ci_app.store.runners`).

A **run token** is bound to one run identity ``(run, repo, provider, pr, commit)``. It may
use that run's test queue and post results naming exactly that identity; it expires, and is
revoked when the run's final report is done or by an admin. The identity is fixed by whoever
binds the run first (the plan step, through the admin token) and never by the first results
that happen to arrive: :meth:`Identities.ingest_checked` refuses results that differ from it,
and from a run already stored under another identity.

Tokens are stored as hashes only (``ci_app.web.security.hash_token``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import duckdb

from ci_app.errors import StoreError
from ci_app.model.results import ResultSet
from ci_app.store.database import Database, first_row
from ci_app.store.results import Results

__all__ = ["Identities", "RunGrant", "RunIdentity", "RunIdentityError", "identity_problems"]


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


def _identity_row(con: duckdb.DuckDBPyConnection, run: str) -> RunIdentity | None:
    row = first_row(
        con, "SELECT run, repo, provider, pr, commit FROM run_identities WHERE run = ?", [run]
    )
    return None if row is None else RunIdentity(row[0], row[1], row[2], row[3], row[4])


def _stored_run(con: duckdb.DuckDBPyConnection, run: str) -> RunIdentity | None:
    """The identity a run was stored with by earlier results, if any."""
    row = first_row(con, "SELECT repo, provider, pr, commit FROM runs WHERE run_id = ?", [run])
    return None if row is None else RunIdentity(run, row[0], row[1], row[2], row[3])


class Identities:
    """Run identities, run tokens and the identity check of posted results."""

    def __init__(self, db: Database, results: Results) -> None:
        self._db = db
        self._results = results

    def bind_run(
        self, identity: RunIdentity, *, token_hash: str, now: float, expires_at: float
    ) -> RunGrant:
        """Bind ``identity`` to its run and add a token for it, in one transaction.

        A run bound before must agree with ``identity`` on every field it names (fields it
        left empty are filled in from ``identity``); a run already holding results must agree
        with what they named. Otherwise :class:`RunIdentityError` and nothing is written.
        Several tokens may serve one run (a retried plan step, a queue created after the
        run); they share its identity.
        """
        with self._db.transaction() as con:
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

    def run_identity(self, run: str, *, stored: bool = False) -> RunIdentity | None:
        """The identity ``run`` is bound to; with ``stored``, else the one its results were
        stored with."""
        with self._db.locked() as con:
            found = _identity_row(con, run)
            if found is None and stored:
                found = _stored_run(con, run)
            return found

    def run_grant(self, token_hash: str, *, now: float) -> RunGrant | None:
        """The grant of a run token: ``None`` when unknown, revoked or expired."""
        row = self._db.one(
            "SELECT i.run, i.repo, i.provider, i.pr, i.commit, t.expires_at FROM run_tokens t "
            "JOIN run_identities i ON i.run = t.run "
            "WHERE t.token_hash = ? AND t.revoked_at IS NULL AND t.expires_at > ?",
            [token_hash, now],
        )
        if row is None:
            return None
        return RunGrant(RunIdentity(row[0], row[1], row[2], row[3], row[4]), float(row[5]))

    def revoke_run_tokens(self, run: str, *, now: float) -> int:
        """Revoke every live token of ``run``; returns how many."""
        rows = self._db.all(
            "UPDATE run_tokens SET revoked_at = ? WHERE run = ? AND revoked_at IS NULL "
            "RETURNING token_hash",
            [now, run],
        )
        return len(rows)

    def forget_run_token(self, token_hash: str) -> None:
        """Delete one token (its request failed after it was made; it was never handed out)."""
        self._db.execute("DELETE FROM run_tokens WHERE token_hash = ?", [token_hash])

    def ingest_checked(self, rs: ResultSet, grant: RunGrant | None = None) -> int:
        """:meth:`Results.ingest` after checking the results' run identity; returns rows.

        With a ``grant`` (a run token's) the results must name exactly its identity. Whoever
        posts them, results of a bound run must agree with what its identity names, and
        results of a run already stored with what it was stored with. Otherwise
        :class:`RunIdentityError` and nothing is stored. Check and insert run under the
        database's lock: no other writer can slip in between.
        """
        with self._db.locked() as con:
            _check_identity(con, rs, grant)
            return self._results.ingest(rs)

    def check_identity(self, rs: ResultSet, grant: RunGrant | None = None) -> None:
        """The identity check of :meth:`ingest_checked` alone (for streamed ingests, which
        take the lock per batch): :class:`RunIdentityError` when ``rs`` names another run."""
        with self._db.locked() as con:
            _check_identity(con, rs, grant)


def _check_identity(con: duckdb.DuckDBPyConnection, rs: ResultSet, grant: RunGrant | None) -> None:
    r = rs.run
    have = RunIdentity(r.run_id or "", r.repo, r.provider, r.pr, r.commit)
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
