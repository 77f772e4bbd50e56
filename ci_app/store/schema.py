"""Schema migrations: an ordered list of SQL scripts, applied on open.

``schema_version`` holds one row per applied migration. Never edit a shipped
migration; append a new one. Times in the queue tables (``jobs``,
``queue_*``, leases) are epoch seconds (DOUBLE) so callers can pass a fake
clock; run and runner times are naive-UTC ``TIMESTAMP``.
"""

from __future__ import annotations

from typing import Final

MIGRATIONS: Final[tuple[tuple[int, str, str], ...]] = (
    (
        1,
        "results history: runs, shards, test_results, metrics",
        """
        CREATE SEQUENCE IF NOT EXISTS run_seq START 1;
        CREATE TABLE runs (
            run_id       VARCHAR PRIMARY KEY,
            seq          BIGINT NOT NULL DEFAULT nextval('run_seq'),
            repo         VARCHAR,
            provider     VARCHAR,
            pipeline_id  VARCHAR,
            commit       VARCHAR,
            branch       VARCHAR,
            base_commit  VARCHAR,
            pr           INTEGER,
            started_at   TIMESTAMP,
            finished_at  TIMESTAMP,
            ingested_at  TIMESTAMP NOT NULL
        );
        CREATE TABLE shards (
            run_id        VARCHAR NOT NULL,
            shard_id      VARCHAR NOT NULL,
            runner_name   VARCHAR,
            runner_labels VARCHAR[],
            runner_class  VARCHAR NOT NULL,
            profile_hash  VARCHAR,
            job_url       VARCHAR,
            tool          VARCHAR,
            started_at    TIMESTAMP,
            finished_at   TIMESTAMP,
            duration_s    DOUBLE,
            tests         INTEGER,
            passed        INTEGER,
            failed        INTEGER,
            errors        INTEGER,
            skipped       INTEGER,
            flaky         INTEGER,
            unreadable_files INTEGER,
            ingested_at   TIMESTAMP NOT NULL,
            PRIMARY KEY (run_id, shard_id)
        );
        -- One row per test case per shard (final outcome; ``retries`` extra
        -- attempts, ``flaky`` = failed then passed within the shard).
        -- No index: 10M+ rows, appended in bulk, scanned by run or by history.
        CREATE TABLE test_results (
            run_id      VARCHAR NOT NULL,
            shard_id    VARCHAR NOT NULL,
            test_id     VARCHAR NOT NULL,
            suite       VARCHAR,
            classname   VARCHAR,
            name        VARCHAR,
            file        VARCHAR,
            line        INTEGER,
            outcome     VARCHAR NOT NULL,
            duration_s  DOUBLE,
            retries     INTEGER,
            flaky       BOOLEAN,
            message     VARCHAR
        );
        CREATE TABLE metrics (
            run_id     VARCHAR NOT NULL,
            shard_id   VARCHAR NOT NULL,
            name       VARCHAR NOT NULL,
            value      DOUBLE NOT NULL,
            unit       VARCHAR,
            direction  VARCHAR
        );
        """,
    ),
    (
        2,
        "app state: runners, tokens, heartbeats, deliveries, jobs, test_queue",
        """
        CREATE TABLE runners (
            name          VARCHAR PRIMARY KEY,
            provider      VARCHAR,
            labels        VARCHAR[],
            profile       JSON,
            profile_hash  VARCHAR,
            last_seen     DOUBLE,
            status        VARCHAR NOT NULL DEFAULT 'online'
        );
        CREATE TABLE runner_tokens (
            token_hash  VARCHAR PRIMARY KEY,
            name        VARCHAR NOT NULL,
            created     DOUBLE NOT NULL,
            revoked     DOUBLE
        );
        CREATE TABLE heartbeats (
            runner_name  VARCHAR NOT NULL,
            received_at  DOUBLE NOT NULL,
            load         DOUBLE,
            busy         BOOLEAN,
            payload      JSON
        );
        CREATE TABLE deliveries (
            provider     VARCHAR NOT NULL,
            delivery_id  VARCHAR NOT NULL,
            event        VARCHAR,
            received_at  DOUBLE NOT NULL,
            body         VARCHAR,
            UNIQUE (provider, delivery_id)
        );
        CREATE SEQUENCE IF NOT EXISTS job_seq START 1;
        CREATE TABLE jobs (
            id               BIGINT PRIMARY KEY DEFAULT nextval('job_seq'),
            kind             VARCHAR NOT NULL,
            payload          JSON,
            state            VARCHAR NOT NULL DEFAULT 'queued',
            attempts         INTEGER NOT NULL DEFAULT 0,
            lease_until      DOUBLE,
            last_error       VARCHAR,
            run_after        DOUBLE NOT NULL DEFAULT 0,
            idempotency_key  VARCHAR UNIQUE,
            created_at       DOUBLE NOT NULL,
            updated_at       DOUBLE NOT NULL
        );
        CREATE TABLE test_queue (
            run_id       VARCHAR NOT NULL,
            pool         VARCHAR NOT NULL,
            test_id      VARCHAR NOT NULL,
            state        VARCHAR NOT NULL DEFAULT 'queued',
            lease_id     VARCHAR,
            lease_until  DOUBLE,
            attempts     INTEGER NOT NULL DEFAULT 0,
            result       VARCHAR,
            PRIMARY KEY (run_id, pool, test_id)
        );
        """,
    ),
    (
        3,
        "app server: durable queue-mode state, runner sync state, installations",
        """
        -- ci_app/store/queue.py: the planner's QueueState in DuckDB (items in priority order).
        CREATE TABLE queue_runs (
            run          VARCHAR PRIMARY KEY,
            config       JSON NOT NULL,
            token_hash   VARCHAR,
            repo         VARCHAR,
            created_at   DOUBLE NOT NULL
        );
        CREATE TABLE queue_pools (
            run       VARCHAR NOT NULL,
            pool      VARCHAR NOT NULL,
            labels    VARCHAR[] NOT NULL,
            workers   INTEGER NOT NULL,
            runners   VARCHAR[] NOT NULL,
            n_leases  INTEGER NOT NULL DEFAULT 0,
            expired   INTEGER NOT NULL DEFAULT 0,
            requeued  INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (run, pool)
        );
        CREATE TABLE queue_items (
            run         VARCHAR NOT NULL,
            pool        VARCHAR NOT NULL,
            idx         INTEGER NOT NULL,
            item_id     VARCHAR NOT NULL,
            estimate_s  DOUBLE NOT NULL,
            unknown     BOOLEAN NOT NULL,
            tests       VARCHAR[] NOT NULL,
            queued      BOOLEAN NOT NULL,
            remaining   INTEGER NOT NULL,
            PRIMARY KEY (run, pool, idx)
        );
        CREATE TABLE queue_leases (
            run         VARCHAR NOT NULL,
            lease_id    VARCHAR NOT NULL,
            pool        VARCHAR NOT NULL,
            runner      VARCHAR,
            items       INTEGER[] NOT NULL,
            expires_at  DOUBLE NOT NULL,
            estimate_s  DOUBLE NOT NULL,
            open        BOOLEAN NOT NULL,
            PRIMARY KEY (run, lease_id)
        );
        CREATE TABLE queue_results (
            run         VARCHAR NOT NULL,
            test_id     VARCHAR NOT NULL,
            pool        VARCHAR NOT NULL,
            item_idx    INTEGER NOT NULL,
            outcome     VARCHAR NOT NULL,
            duration_s  DOUBLE,
            PRIMARY KEY (run, test_id)
        );
        -- ci_app/store/runners.py: what the app knows about a runner beyond its profile.
        CREATE TABLE runner_state (
            name           VARCHAR PRIMARY KEY,
            provider       VARCHAR,
            busy           BOOLEAN NOT NULL DEFAULT false,
            busy_job       VARCHAR,
            load           JSON,
            label_misses   JSON,
            synced_labels  VARCHAR[],
            synced_at      DOUBLE,
            sync_error     VARCHAR,
            updated_at     DOUBLE
        );
        CREATE TABLE installations (
            provider         VARCHAR NOT NULL,
            account          VARCHAR NOT NULL,
            installation_id  VARCHAR NOT NULL,
            active           BOOLEAN NOT NULL,
            updated_at       DOUBLE NOT NULL,
            PRIMARY KEY (provider, account)
        );
        """,
    ),
    (
        4,
        "least privilege: run identities and run tokens, runner label allow-lists",
        """
        -- ci_app/store/identities.py: a run token is bound to one run identity (repo, provider,
        -- PR, commit); results naming anything else are refused. Tokens are stored hashed.
        CREATE TABLE run_identities (
            run         VARCHAR PRIMARY KEY,
            repo        VARCHAR,
            provider    VARCHAR,
            pr          INTEGER,
            commit      VARCHAR,
            created_at  DOUBLE NOT NULL
        );
        CREATE TABLE run_tokens (
            token_hash  VARCHAR PRIMARY KEY,
            run         VARCHAR NOT NULL,
            created_at  DOUBLE NOT NULL,
            expires_at  DOUBLE NOT NULL,
            revoked_at  DOUBLE
        );
        -- queue tokens issued before this migration keep their queue, bound to the repo the
        -- queue was created for, and expire a day after they were made
        INSERT INTO run_identities
            SELECT run, repo, NULL, NULL, NULL, created_at FROM queue_runs;
        INSERT INTO run_tokens
            SELECT token_hash, run, created_at, created_at + 86400, NULL FROM queue_runs
            WHERE token_hash IS NOT NULL;
        -- labels a runner may be granted: patterns per token (NULL: the pool rules apply)
        ALTER TABLE runner_tokens ADD COLUMN allow_labels VARCHAR[];
        CREATE TABLE label_allow_pools (
            pattern     VARCHAR PRIMARY KEY,
            labels      VARCHAR[] NOT NULL,
            created_at  DOUBLE NOT NULL
        );
        ALTER TABLE runner_state ADD COLUMN refused_labels VARCHAR[];
        """,
    ),
    (
        5,
        "queue record: who reported each result and why a lease closed; interrupted shards",
        """
        -- The queue's accepted results are the record of a queue-mode run: the runner that
        -- reported each one and the failure's message, so a report can recover them.
        ALTER TABLE queue_results ADD COLUMN runner VARCHAR;
        ALTER TABLE queue_results ADD COLUMN message VARCHAR;
        -- completed | cancelled | expired (NULL while open); tests re-queued when it closed
        ALTER TABLE queue_leases ADD COLUMN closed VARCHAR;
        ALTER TABLE queue_leases ADD COLUMN requeued INTEGER;
        -- the CI job (matrix shard) the runner pulled for, when it said so
        ALTER TABLE queue_leases ADD COLUMN shard VARCHAR;
        -- why a shard's test process ended abnormally (killed, lease expired, reported
        -- nothing): an infrastructure error even when every test of it was recovered
        ALTER TABLE shards ADD COLUMN interrupted VARCHAR;
        """,
    ),
    (
        6,
        "drop test_queue: the per-test queue of schema 2 was never used (queue mode: queue_*)",
        """
        DROP TABLE test_queue;
        """,
    ),
)

LATEST_VERSION: Final[int] = MIGRATIONS[-1][0]
