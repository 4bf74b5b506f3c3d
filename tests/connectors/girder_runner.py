"""A delivery loop in its own process, for the SIGKILL test: reads the change log after a cursor
kept in a file, hands small batches to the Girder connector, and advances the cursor only after
a batch was delivered (at least once, as the sink runner does). Killing it at any moment must
leave neither a duplicate item nor a lost one once it runs again.

Usage: python -m tests.connectors.girder_runner TARGET_JSON API_KEY_ENV CURSOR_FILE BATCH
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import psycopg

from mountsync.shared.catalog.change_log import read_changes
from mountsync.workers.connectors.girder_client import GirderClient
from mountsync.workers.connectors.girder_connector import GirderConnector, GirderTarget


def main(target_json: str, key_env: str, cursor_file: str, batch: str) -> None:
    target = GirderTarget(**json.loads(target_json))
    cursor_path = Path(cursor_file)
    cursor = int(cursor_path.read_text()) if cursor_path.exists() else 0
    with psycopg.connect(os.environ["MOUNTSYNC_DATABASE_URL"], autocommit=True) as conn:
        connector = GirderConnector(target, GirderClient.from_env(target.url, key_env, os.environ), conn)
        try:
            while entries := read_changes(conn, cursor, mount=target.mount, limit=int(batch)):
                connector.deliver_changes(entries)
                cursor = entries[-1].cursor
                cursor_path.write_text(str(cursor))
        finally:
            connector.close()


if __name__ == "__main__":
    main(*sys.argv[1:])
