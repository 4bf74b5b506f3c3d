"""Core catalog: mounts, objects (with tombstones), folders, change-feed outbox, dead letters, reindex runs.

Revision ID: 0001_core
"""

from alembic import op

revision = "0001_core"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE mounts (
            id          serial PRIMARY KEY,
            name        text NOT NULL UNIQUE,
            url         text NOT NULL,
            provider    text NOT NULL,
            bucket      text NOT NULL,
            prefix      text COLLATE "C" NOT NULL DEFAULT '',
            dest_folder text NOT NULL DEFAULT '',
            writable    boolean NOT NULL DEFAULT false,
            options     jsonb NOT NULL DEFAULT '{}'::jsonb,
            reindex_interval_s integer,
            created_at  timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX mounts_route ON mounts (provider, bucket);

        -- One row per (mount, key), kept after deletion as a tombstone so a late, older event
        -- cannot resurrect the object. seq/event_ns are the ordering guard (see apply.py).
        CREATE TABLE objects (
            mount_id   integer NOT NULL REFERENCES mounts (id) ON DELETE CASCADE,
            key        text COLLATE "C" NOT NULL,
            folder     text COLLATE "C" NOT NULL,
            size       bigint,
            etag       text,
            version    text,
            seq        text COLLATE "C" NOT NULL DEFAULT '',
            event_ns   bigint NOT NULL,
            deleted    boolean NOT NULL,
            source     text NOT NULL,
            source_id  text,
            updated_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (mount_id, key)
        );
        -- Leading with folder: a mount_id-only prefix must never look usable for key lookups.
        CREATE INDEX objects_folder ON objects (folder, mount_id) INCLUDE (deleted);

        -- Direct-children bookkeeping per folder, maintained incrementally by apply. The
        -- fingerprint is the XOR of a 64-bit hash of (key, size, etag) over live objects, so a
        -- reconcile can skip every folder whose listing hashes to the same value.
        CREATE TABLE folders (
            mount_id     integer NOT NULL REFERENCES mounts (id) ON DELETE CASCADE,
            path         text COLLATE "C" NOT NULL,
            live_objects bigint NOT NULL DEFAULT 0,
            live_bytes   bigint NOT NULL DEFAULT 0,
            fingerprint  bigint NOT NULL DEFAULT 0,
            updated_at   timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (mount_id, path)
        );

        -- Transactional outbox for the Redis change feed: written in the same transaction as the
        -- objects it describes, drained to the stream after commit (at least once).
        CREATE TABLE feed_outbox (
            id      bigserial PRIMARY KEY,
            payload text NOT NULL
        );

        CREATE TABLE dead_letters (
            id          bigserial PRIMARY KEY,
            source      text NOT NULL,
            message_id  text,
            reason      text NOT NULL,
            payload     bytea NOT NULL,
            attributes  jsonb NOT NULL DEFAULT '{}'::jsonb,
            created_at  timestamptz NOT NULL DEFAULT now(),
            replayed_at timestamptz
        );
        CREATE INDEX dead_letters_open ON dead_letters (created_at) WHERE replayed_at IS NULL;

        CREATE TABLE reindex_runs (
            id          bigserial PRIMARY KEY,
            mount_id    integer NOT NULL REFERENCES mounts (id) ON DELETE CASCADE,
            prefix      text NOT NULL DEFAULT '',
            trigger     text NOT NULL DEFAULT 'manual',
            state       text NOT NULL DEFAULT 'queued',
            listed      bigint NOT NULL DEFAULT 0,
            created     bigint NOT NULL DEFAULT 0,
            updated     bigint NOT NULL DEFAULT 0,
            deleted     bigint NOT NULL DEFAULT 0,
            unchanged   bigint NOT NULL DEFAULT 0,
            folders_checked bigint NOT NULL DEFAULT 0,
            folders_skipped bigint NOT NULL DEFAULT 0,
            error       text,
            queued_at   timestamptz NOT NULL DEFAULT now(),
            started_at  timestamptz,
            finished_at timestamptz
        );
        CREATE INDEX reindex_runs_mount ON reindex_runs (mount_id, id DESC);

        -- Counters of things dropped on purpose (unmounted bucket, ...) so nothing is silent.
        CREATE TABLE drops (
            reason   text NOT NULL,
            provider text NOT NULL,
            bucket   text NOT NULL,
            count    bigint NOT NULL DEFAULT 0,
            last_key text,
            last_at  timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (reason, provider, bucket)
        );
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE drops, reindex_runs, dead_letters, feed_outbox, folders, objects, mounts")
