"""Quarantine reaches Label Studio: the connector marks (and unmarks) a dataset's tasks, on a real
Label Studio, from the change entries' flag and from alignment alerts delivered as sink events."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime

import psycopg
import pytest

from mountsync.shared.catalog.change_log import ChangeEntry
from mountsync.shared.config import Settings
from mountsync.workers.connectors.label_studio_client import LabelStudioClient
from mountsync.workers.sinks import store
from mountsync.workers.sinks.label_studio import LabelStudioConnector
from mountsync.workers.sinks.store import SinkEvent
from tests.standins.label_studio import LabelStudioProject

pytestmark = pytest.mark.timeout(900)
NOW = datetime(2026, 12, 3, tzinfo=UTC)


def entry(cursor: int, key: str, kind: str = "created", etag: str = "e1", quarantined: bool = False) -> ChangeEntry:
    return ChangeEntry(cursor, "q", "", key, kind, 1, etag, None, str(cursor), None, NOW, quarantined)


@pytest.fixture
def connector(
    settings: Settings, catalog: psycopg.Connection, add_mount, label_studio: LabelStudioProject
) -> Iterator[LabelStudioConnector]:
    add_mount("q", "s3://qbucket/")
    options = {"project": label_studio.project_id, "token_env": "LS_TOKEN", "prefix": "", "data_field": "image"}
    store.add_sink(catalog, name="ls", kind="label-studio", target=label_studio.server.url, mounts=["q"],
                   events=("changes", "alerts"), options=options, secret=None, cursor=0, events_cursor=0)  # fmt: skip
    sink = store.get_sink(catalog, "ls")
    opened = LabelStudioConnector.open(sink, settings, {"LS_TOKEN": label_studio.server.token})
    yield opened
    opened.close()


def marks(label_studio: LabelStudioProject) -> dict[str, bool]:
    client = LabelStudioClient(label_studio.server.url, label_studio.server.token)
    found = {
        t.meta["mountsync"]["key"]: t.meta["mountsync"]["quarantined"]
        for t in client.iter_tasks(label_studio.project_id)
    }
    client.close()
    return found


def alert(quarantined: bool, dataset: str = "ds", mount: str = "q") -> SinkEvent:
    payload = {"id": 1, "mount": mount, "dataset": dataset, "quarantined": quarantined, "status": "open"}
    return SinkEvent(1, "alerts", "alignment-open", json.loads(json.dumps(payload)), NOW)


def test_a_quarantined_datasets_tasks_are_marked_and_unmarked(connector, label_studio) -> None:
    connector.deliver_changes([entry(1, "ds/1.png"), entry(2, "ds/2.png"), entry(3, "other/1.png")])
    assert marks(label_studio) == {"ds/1.png": False, "ds/2.png": False, "other/1.png": False}

    connector.deliver_events([alert(True), alert(True, mount="elsewhere", dataset="other")])
    assert marks(label_studio) == {"ds/1.png": True, "ds/2.png": True, "other/1.png": False}

    connector.deliver_events([alert(False)])  # acked / re-pinned: the quarantine is over
    assert marks(label_studio) == {"ds/1.png": False, "ds/2.png": False, "other/1.png": False}


def test_an_entry_read_while_its_dataset_is_quarantined_marks_its_task(connector, label_studio) -> None:
    connector.deliver_changes([entry(1, "ds/1.png")])
    connector.deliver_changes([entry(2, "ds/1.png", "metadata", quarantined=True)])
    assert marks(label_studio) == {"ds/1.png": True}
