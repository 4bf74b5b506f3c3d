"""The Girder connector (issue 19): a sink kind ``girder`` and its key -> item map.

Girder ids are 24-hex ObjectIds, so they are kept as text. One row per mirrored object: the
item, its folder, and the object's etag/version the item reflects (an overwrite with another
etag or version refreshes the item's file; the same one is a redelivery, a no-op). It is not
``connector_items``: that map keeps integer task ids and an ``importing`` state Girder does not
need (its import reuses an item of the same name, so a repeated import finds the same item).

Revision ID: 0008_girder_items
"""

from alembic import op

revision = "0008_girder_items"
down_revision = "0007_sinks"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        ALTER TABLE sinks DROP CONSTRAINT sinks_kind_check;
        ALTER TABLE sinks ADD CONSTRAINT sinks_kind_check CHECK (kind IN ('webhook', 'label-studio', 'girder'));
        CREATE TABLE girder_items (
            connector text NOT NULL REFERENCES sinks (name) ON DELETE CASCADE ON UPDATE CASCADE,
            mount     text NOT NULL,
            key       text COLLATE "C" NOT NULL,
            item_id   text NOT NULL,
            folder_id text NOT NULL,
            etag      text,
            version   text,
            cursor    bigint NOT NULL,
            PRIMARY KEY (connector, mount, key)
        );
        """
    )


def downgrade() -> None:
    op.execute(
        """
        DROP TABLE girder_items;
        DELETE FROM sinks WHERE kind = 'girder';
        ALTER TABLE sinks DROP CONSTRAINT sinks_kind_check;
        ALTER TABLE sinks ADD CONSTRAINT sinks_kind_check CHECK (kind IN ('webhook', 'label-studio'));
        """
    )
