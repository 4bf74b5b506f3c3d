"""Sinks: durable consumers of the change log (webhooks, connectors), their events and maps.

Revision ID: 0007_sinks
"""

from alembic import op

revision = "0007_sinks"
down_revision = "0005_change_log"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        -- One row per sink. ``cursor`` is the last change-log cursor the receiver accepted (it
        -- moves only after a delivery succeeded: at least once); ``events_cursor`` the same for
        -- sink_events (alerts, migrations). ``secret`` is the webhook secret encrypted with
        -- MOUNTSYNC_SECRETS_KEY (never the plain secret); ``options`` holds no secret either
        -- (a connector names the environment variable of its token).
        CREATE TABLE sinks (
            id              serial PRIMARY KEY,
            name            text NOT NULL UNIQUE,
            kind            text NOT NULL CHECK (kind IN ('webhook', 'label-studio')),
            target          text NOT NULL,
            mounts          text[] NOT NULL DEFAULT '{}',
            events          text[] NOT NULL DEFAULT '{changes}',
            options         jsonb NOT NULL DEFAULT '{}'::jsonb,
            secret          bytea,
            cursor          bigint NOT NULL DEFAULT 0,
            events_cursor   bigint NOT NULL DEFAULT 0,
            state           text NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'paused', 'disabled')),
            state_reason    text,
            attempts        integer NOT NULL DEFAULT 0,
            failing_since   timestamptz,
            next_attempt_at timestamptz,
            last_error      text,
            delivered       bigint NOT NULL DEFAULT 0,
            delivered_at    timestamptz,
            created_at      timestamptz NOT NULL DEFAULT now()
        );

        -- Events that are not catalog changes but reach sinks the same way: alerts (alignment,
        -- sinks, connectors) and migration job endings. Read in id order after a sink's
        -- events_cursor; appends are serialized like the change log's so no reader skips one.
        CREATE TABLE sink_events (
            id         bigserial PRIMARY KEY,
            topic      text NOT NULL CHECK (topic IN ('alerts', 'migrations')),
            kind       text NOT NULL,
            payload    jsonb NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now()
        );

        -- Alerts raised by sinks: a paused or disabled sink, an annotated task whose object was
        -- deleted (kept and marked, never deleted silently).
        CREATE TABLE sink_alerts (
            id         bigserial PRIMARY KEY,
            sink       text NOT NULL,
            kind       text NOT NULL,
            mount      text,
            key        text COLLATE "C",
            details    jsonb NOT NULL DEFAULT '{}'::jsonb,
            status     text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'acked')),
            created_at timestamptz NOT NULL DEFAULT now()
        );
        CREATE UNIQUE INDEX sink_alerts_once ON sink_alerts (sink, kind, coalesce(mount, ''), coalesce(key, ''))
            WHERE status = 'open';

        -- A connector's key -> remote id map: what makes it idempotent across redeliveries and
        -- crashes. ``state``: 'importing' (written before the platform call, so a crash between
        -- the call and the map finds the task by its meta instead of creating a second one),
        -- 'live', 'changed' (overwritten; annotations kept), 'kept' (deleted in the bucket but
        -- annotated, so kept and marked), 'deleted'.
        CREATE TABLE connector_items (
            sink_id     integer NOT NULL REFERENCES sinks (id) ON DELETE CASCADE,
            mount       text NOT NULL,
            key         text COLLATE "C" NOT NULL,
            remote_id   bigint,
            etag        text,
            state       text NOT NULL CHECK (state IN ('importing', 'live', 'changed', 'kept', 'deleted')),
            quarantined boolean NOT NULL DEFAULT false,
            cursor      bigint NOT NULL,
            PRIMARY KEY (sink_id, mount, key)
        );
        CREATE INDEX connector_items_importing ON connector_items (sink_id) WHERE state = 'importing';
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE connector_items, sink_alerts, sink_events, sinks")
