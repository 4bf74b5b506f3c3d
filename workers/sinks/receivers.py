"""The receiver of each sink kind, built per delivery run from the sink row and the environment.

Secrets come from the process environment at this edge only: a webhook's secret is opened with
``MOUNTSYNC_SECRETS_KEY``; a connector's token is read from the variable the sink names.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import psycopg

from mountsync.shared.catalog.mounts import Mount, Mounts
from mountsync.shared.config import Settings
from mountsync.shared.errors import ConfigError
from mountsync.workers.sinks.delivery import Receiver
from mountsync.workers.sinks.secrets import SecretBox
from mountsync.workers.sinks.store import Sink


def open_receiver(sink: Sink, settings: Settings, environ: Mapping[str, str]) -> Receiver:
    if sink.kind == "webhook":
        from mountsync.workers.sinks.webhook import WebhookReceiver

        if sink.secret is None:
            raise ConfigError(f"webhook {sink.name} has no secret; remove and add it again")
        return WebhookReceiver(sink.name, sink.target, SecretBox.from_extra(settings.extra).open(sink.secret))
    if sink.kind == "label-studio":
        from mountsync.workers.sinks.label_studio import LabelStudioConnector

        return LabelStudioConnector.open(sink, settings, environ)
    if sink.kind == "girder":
        from mountsync.workers.connectors.girder_connector import GirderConnector

        return GirderConnector.open(sink, settings, environ)
    raise ConfigError(f"sink {sink.name} has an unknown kind {sink.kind!r}")


def connect_for(sink: Sink, settings: Settings, client: Any) -> tuple[psycopg.Connection, Mount]:
    """A connector's catalog connection and its sink's mount; on failure both it and ``client`` close."""
    conn = psycopg.connect(settings.database_url, autocommit=True)
    try:
        return conn, Mounts(conn).get(sink.mounts[0])
    except Exception:
        conn.close()
        client.close()
        raise
