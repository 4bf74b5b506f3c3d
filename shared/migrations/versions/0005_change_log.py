"""Durable change log (cursor-ordered, written inside apply), API tokens; the feed outbox goes.

The Redis stream ``mountsync:feed`` is now fed from the change log (``change_log_state`` keeps
how far it was published), so the outbox table written beside every applied change is gone.

Revision ID: 0005_change_log
"""

from alembic import op

revision = "0005_change_log"
down_revision = "0002_alignment"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        -- One row per change that altered the catalog, appended in the apply transaction. Appends
        -- are serialized (a transaction-level advisory lock taken just before the insert, held to
        -- commit), so cursors become visible in cursor order: a reader never skips a lower cursor
        -- that commits after a higher one. CACHE 1: cached blocks would hand out cursors out of order.
        CREATE SEQUENCE change_log_cursor AS bigint CACHE 1;
        CREATE TABLE change_log (
            cursor      bigint PRIMARY KEY DEFAULT nextval('change_log_cursor'),
            mount       text NOT NULL,
            mount_id    integer NOT NULL,
            dest_folder text NOT NULL,
            folder      text COLLATE "C" NOT NULL,
            key         text COLLATE "C" NOT NULL,
            kind        text NOT NULL CHECK (kind IN ('created', 'updated', 'deleted', 'metadata')),
            size        bigint,
            etag        text,
            version     text,
            sequencer   text NOT NULL,
            event_time  timestamptz,
            applied_at  timestamptz NOT NULL DEFAULT now()
        );
        ALTER SEQUENCE change_log_cursor OWNED BY change_log.cursor;
        CREATE INDEX change_log_mount ON change_log (mount, cursor);
        -- Rows arrive in time order: a BRIN index finds the retention horizon for almost no upkeep.
        CREATE INDEX change_log_applied ON change_log USING brin (applied_at);

        -- One row: the highest cursor pruned (older cursors answer 410) and the highest cursor
        -- published to the Redis stream.
        CREATE TABLE change_log_state (
            id              boolean PRIMARY KEY DEFAULT true CHECK (id),
            pruned_through  bigint NOT NULL DEFAULT 0,
            stream_through  bigint NOT NULL DEFAULT 0
        );
        INSERT INTO change_log_state DEFAULT VALUES;

        -- API bearer tokens: only a salted SHA-256 of the token is kept.
        CREATE TABLE api_tokens (
            name         text PRIMARY KEY,
            scope        text NOT NULL CHECK (scope IN ('read', 'write')),
            token_id     text NOT NULL UNIQUE,
            salt         bytea NOT NULL,
            token_hash   bytea NOT NULL,
            created_at   timestamptz NOT NULL DEFAULT now(),
            last_used_at timestamptz
        );

        DROP TABLE feed_outbox;
        """
    )


def downgrade() -> None:
    op.execute(
        """
        DROP TABLE api_tokens, change_log_state, change_log;
        CREATE TABLE feed_outbox (id bigserial PRIMARY KEY, payload text NOT NULL);
        """
    )
