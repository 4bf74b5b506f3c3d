"""Alignment guard: datasets, pinned frame manifests, alignment alerts, per-folder check marks.

Revision ID: 0002_alignment
"""

from alembic import op

revision = "0002_alignment"
down_revision = "0001_core"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        -- One row per dataset: an image-sequence folder (path = folder) or a video (path = key).
        CREATE TABLE datasets (
            id             bigserial PRIMARY KEY,
            mount_id       integer NOT NULL REFERENCES mounts (id) ON DELETE CASCADE,
            type           text NOT NULL,
            path           text COLLATE "C" NOT NULL,
            folder         text COLLATE "C" NOT NULL,
            name           text NOT NULL,
            order_policy   text NOT NULL DEFAULT 'dive',
            frame_count    integer NOT NULL DEFAULT 0,
            -- folders.live_objects when this folder was last checked (append fast path guard)
            folder_objects bigint NOT NULL DEFAULT -1,
            present        boolean NOT NULL DEFAULT true,
            annotations    jsonb NOT NULL DEFAULT '[]'::jsonb,
            sidecars       jsonb NOT NULL DEFAULT '[]'::jsonb,
            pinned_at      timestamptz,
            pinned_by      text,
            pinned_frames  integer NOT NULL DEFAULT 0,
            last_annotated integer,
            quarantined    boolean NOT NULL DEFAULT false,
            quarantined_at timestamptz,
            checked_at     timestamptz,
            created_at     timestamptz NOT NULL DEFAULT now(),
            updated_at     timestamptz NOT NULL DEFAULT now(),
            UNIQUE (mount_id, type, path)
        );
        CREATE INDEX datasets_folder ON datasets (mount_id, folder);

        -- The pinned frame manifest: index -> key, etag, version, size.
        CREATE TABLE dataset_frames (
            dataset_id bigint NOT NULL REFERENCES datasets (id) ON DELETE CASCADE,
            idx        integer NOT NULL,
            key        text COLLATE "C" NOT NULL,
            etag       text,
            version    text,
            size       bigint,
            PRIMARY KEY (dataset_id, idx)
        );
        CREATE INDEX dataset_frames_key ON dataset_frames (dataset_id, key);

        CREATE TABLE alignment_alerts (
            id                     bigserial PRIMARY KEY,
            dataset_id             bigint NOT NULL REFERENCES datasets (id) ON DELETE CASCADE,
            mount_id               integer NOT NULL REFERENCES mounts (id) ON DELETE CASCADE,
            path                   text COLLATE "C" NOT NULL,
            kind                   text NOT NULL,
            kinds                  text[] NOT NULL,
            breaking               boolean NOT NULL,
            status                 text NOT NULL DEFAULT 'open',
            first_shifted_index    integer,
            frames_moved           integer NOT NULL DEFAULT 0,
            annotated_frames_moved integer,
            last_annotated         integer,
            quarantined            boolean NOT NULL DEFAULT false,
            details                jsonb NOT NULL DEFAULT '{}'::jsonb,
            checks                 integer NOT NULL DEFAULT 1,
            created_at             timestamptz NOT NULL DEFAULT now(),
            updated_at             timestamptz NOT NULL DEFAULT now(),
            closed_at              timestamptz,
            closed_by              text,
            CHECK (status IN ('open', 'acked', 'resolved'))
        );
        -- At most one open alert per dataset: later checks update it (a rename split across
        -- windows turns the open 'remove' alert into a 'rename').
        CREATE UNIQUE INDEX alignment_alerts_open ON alignment_alerts (dataset_id)
            WHERE status = 'open';
        CREATE INDEX alignment_alerts_mount ON alignment_alerts (mount_id, id DESC);

        -- When each folder was last checked; the sweep re-checks folders changed since.
        CREATE TABLE alignment_folders (
            mount_id   integer NOT NULL REFERENCES mounts (id) ON DELETE CASCADE,
            folder     text COLLATE "C" NOT NULL,
            checked_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (mount_id, folder)
        );
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE alignment_folders, alignment_alerts, dataset_frames, datasets")
