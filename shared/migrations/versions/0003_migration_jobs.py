"""Migration jobs: jobs, items (per-item state), parts (per-part progress), link batches, and
the verified-copy record used to skip equal objects on providers without a usable checksum.

Revision ID: 0003_migration_jobs
"""

from alembic import op

revision = "0003_migration_jobs"
down_revision = "0001_core"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE migration_jobs (
            job_id       text PRIMARY KEY,
            state        text NOT NULL,
            source       text NOT NULL,
            destination  text NOT NULL,
            spec         jsonb NOT NULL,
            reason       text,
            planned      boolean NOT NULL DEFAULT false,
            chunks       integer NOT NULL DEFAULT 0,
            created_at   timestamptz NOT NULL DEFAULT now(),
            started_at   timestamptz,
            finished_at  timestamptz,
            updated_at   timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX migration_jobs_state ON migration_jobs (state, created_at);

        CREATE TABLE migration_items (
            job_id      text NOT NULL REFERENCES migration_jobs (job_id) ON DELETE CASCADE,
            seq         bigint NOT NULL,
            chunk       integer NOT NULL,
            entity_id   text NOT NULL,
            path        text COLLATE "C" NOT NULL,
            dest_key    text COLLATE "C",
            size        bigint,
            want_sha256 text,
            want_md5    text,
            state       text NOT NULL DEFAULT 'pending',
            attempts    integer NOT NULL DEFAULT 0,
            reason      text,
            upload_id   text,
            part_size   bigint,
            bytes_sent  bigint NOT NULL DEFAULT 0,
            checksum    text,
            etag        text,
            link        text,
            link_batch  integer,
            lease_until timestamptz,
            updated_at  timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (job_id, seq)
        );
        CREATE UNIQUE INDEX migration_items_dest ON migration_items (job_id, dest_key);
        CREATE UNIQUE INDEX migration_items_path ON migration_items (job_id, path);
        CREATE INDEX migration_items_chunk ON migration_items (job_id, chunk, state);
        CREATE INDEX migration_items_links ON migration_items (job_id, state)
            WHERE link_batch IS NULL;
        CREATE INDEX migration_items_uploads ON migration_items (job_id)
            WHERE upload_id IS NOT NULL;

        CREATE TABLE migration_parts (
            job_id     text NOT NULL,
            seq        bigint NOT NULL,
            number     integer NOT NULL,
            upload_id  text NOT NULL,
            size       bigint NOT NULL,
            fingerprint text NOT NULL,
            etag       text,
            done       boolean NOT NULL DEFAULT false,
            sends      integer NOT NULL DEFAULT 0,
            updated_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (job_id, seq, number),
            FOREIGN KEY (job_id, seq) REFERENCES migration_items (job_id, seq) ON DELETE CASCADE
        );

        CREATE TABLE migration_link_batches (
            job_id       text NOT NULL REFERENCES migration_jobs (job_id) ON DELETE CASCADE,
            batch        integer NOT NULL,
            state        text NOT NULL DEFAULT 'pending',
            links        integer NOT NULL,
            attempts     integer NOT NULL DEFAULT 0,
            reason       text,
            created_at   timestamptz NOT NULL DEFAULT now(),
            updated_at   timestamptz NOT NULL DEFAULT now(),
            delivered_at timestamptz,
            PRIMARY KEY (job_id, batch)
        );

        -- What a finished copy looked like at the destination (size, etag) and its content
        -- checksums, so a later job can skip an equal object even where the provider reports
        -- no content hash (Azure block blobs, local files).
        CREATE TABLE migration_verified (
            location   text COLLATE "C" NOT NULL,
            key        text COLLATE "C" NOT NULL,
            size       bigint NOT NULL,
            etag       text NOT NULL,
            sha256     text NOT NULL,
            md5        text NOT NULL,
            verified_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (location, key)
        );
        """
    )


def downgrade() -> None:
    op.execute(
        "DROP TABLE migration_verified, migration_link_batches, migration_parts, migration_items, migration_jobs"
    )
