"""The Girder connector's key -> item map (issue 19).

Girder ids are 24-hex ObjectIds, so they are kept as text. One row per mirrored object: the
item, its folder, and the object's etag/version the item reflects (an overwrite with another
etag or version refreshes the item's file; the same one is a redelivery, a no-op).

Revision ID: 0008_girder_items
"""

from alembic import op

revision = "0008_girder_items"
down_revision = "0005_change_log"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE girder_items (
            connector text NOT NULL,
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
    op.execute("DROP TABLE girder_items")
