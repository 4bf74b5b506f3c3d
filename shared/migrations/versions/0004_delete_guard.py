"""Mass-delete guard: per-mount thresholds, the deletes applied per window, held deletes, and
mount-level alerts (a ``mass-delete`` alert has no dataset); reindex runs count held deletes and
keep a dry run's plan.

Revision ID: 0004_delete_guard
"""

from alembic import op

revision = "0004_delete_guard"
down_revision = ("0002_alignment", "0003_migration_jobs")  # alerts (0002), mounts (0001)
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        -- Per-mount thresholds; no row = the defaults (30 %, 50 objects). percent = 0 disables.
        CREATE TABLE delete_guards (
            mount_id  integer PRIMARY KEY REFERENCES mounts (id) ON DELETE CASCADE,
            percent   real NOT NULL CHECK (percent >= 0 AND percent <= 100),
            minimum   integer NOT NULL CHECK (minimum >= 0)
        );
        -- Deletes applied per mount and batch, for the sliding window (pruned as it slides).
        CREATE TABLE delete_window (
            mount_id  integer NOT NULL REFERENCES mounts (id) ON DELETE CASCADE,
            at        timestamptz NOT NULL DEFAULT now(),
            deletes   integer NOT NULL
        );
        CREATE INDEX delete_window_mount ON delete_window (mount_id, at);
        -- Deletes held back by the guard: the object stays live until approved or superseded.
        CREATE TABLE held_deletes (
            mount_id   integer NOT NULL REFERENCES mounts (id) ON DELETE CASCADE,
            key        text COLLATE "C" NOT NULL,
            folder     text COLLATE "C" NOT NULL,
            kind       text NOT NULL,
            version    text,
            seq        text COLLATE "C" NOT NULL DEFAULT '',
            event_ns   bigint NOT NULL,
            source     text NOT NULL,
            source_id  text,
            held_at    timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (mount_id, key)
        );
        ALTER TABLE alignment_alerts ALTER COLUMN dataset_id DROP NOT NULL;
        -- A reconcile reports the deletes it found but the guard held; a dry run keeps its plan.
        ALTER TABLE reindex_runs ADD COLUMN held bigint NOT NULL DEFAULT 0, ADD COLUMN plan jsonb;
        CREATE UNIQUE INDEX alignment_alerts_open_mass_delete ON alignment_alerts (mount_id)
            WHERE status = 'open' AND kind = 'mass-delete';
        """
    )


def downgrade() -> None:
    op.execute(
        """
        DROP INDEX IF EXISTS alignment_alerts_open_mass_delete;
        DELETE FROM alignment_alerts WHERE dataset_id IS NULL;
        ALTER TABLE alignment_alerts ALTER COLUMN dataset_id SET NOT NULL;
        DROP TABLE IF EXISTS held_deletes, delete_window, delete_guards;
        ALTER TABLE reindex_runs DROP COLUMN IF EXISTS held, DROP COLUMN IF EXISTS plan;
        """
    )
