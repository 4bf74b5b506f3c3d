"""``objects`` loses its foreign key to ``mounts``; mount removal deletes the rows itself.

The key's referential check ran once per inserted row (an SPI lookup of the mount, locking it
FOR KEY SHARE): 3.3-3.9 us of the ~30 us a change costs in ``apply_changes``, about an eighth of
the apply path (issue 15's ">= 30,000 changes/s with the change log"). Integrity now rests on the
mount's apply lock instead: apply routes rows to a mount only by joining ``mounts`` after taking
that mount's transaction lock, and ``Mounts.remove`` takes the same lock, deletes the mount's
objects and then the mount. So an apply in flight finishes before the removal deletes what it
wrote, and an apply that waited routes nothing to the removed mount. Mount ids are never reused.

Revision ID: 0009_objects_mount_lock
"""

from alembic import op

revision = "0009_objects_mount_lock"
down_revision = "0008_girder_items"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        DELETE FROM objects o WHERE NOT EXISTS (SELECT 1 FROM mounts m WHERE m.id = o.mount_id);
        ALTER TABLE objects DROP CONSTRAINT objects_mount_id_fkey;
        """
    )


def downgrade() -> None:
    op.execute(
        """
        DELETE FROM objects o WHERE NOT EXISTS (SELECT 1 FROM mounts m WHERE m.id = o.mount_id);
        ALTER TABLE objects ADD CONSTRAINT objects_mount_id_fkey
            FOREIGN KEY (mount_id) REFERENCES mounts (id) ON DELETE CASCADE;
        """
    )
