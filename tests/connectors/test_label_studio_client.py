"""The Label Studio client against a real Label Studio server (tests/standins/label_studio.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from mountsync.shared.errors import ConfigError, PlatformAuthRejected, PlatformUnavailable
from mountsync.workers.connectors.label_studio_client import LabelStudioClient, NewTask
from tests.helpers import free_port
from tests.standins.label_studio import LabelStudioProject
from tests.standins.s3 import MotoEndpoints

# The first test of a session may build the venv and the migrated template (minutes, once).
pytestmark = pytest.mark.timeout(900)


def task_for(key: str) -> NewTask:
    return NewTask(data={"image": f"s3://bucket-one/{key}"}, meta={"mountsync": {"key": key, "etag": "e1"}})


@pytest.fixture
def client(label_studio: LabelStudioProject) -> Iterator[LabelStudioClient]:
    env = {"LS_TOKEN": label_studio.server.token}
    with_token = LabelStudioClient.from_env(label_studio.server.url, "LS_TOKEN", env)
    yield with_token
    with_token.close()


def test_the_token_reaches_the_server_as_its_admin(client: LabelStudioClient) -> None:
    assert client.whoami() == "admin@example.com"


def test_imported_tasks_come_back_with_their_data_meta_and_ids(
    client: LabelStudioClient, label_studio: LabelStudioProject
) -> None:
    keys = [f"ds/frame{i}.png" for i in range(5)]
    ids = client.import_tasks(label_studio.project_id, [task_for(k) for k in keys])

    tasks = {t.id: t for t in client.iter_tasks(label_studio.project_id, page_size=2)}
    assert sorted(tasks) == sorted(ids)
    for key, task_id in zip(keys, ids, strict=True):
        assert tasks[task_id].data == {"image": f"s3://bucket-one/{key}"}
        assert tasks[task_id].meta == {"mountsync": {"key": key, "etag": "e1"}}
        assert tasks[task_id].annotations == 0
    assert client.task_ids_by_meta(label_studio.project_id, ["mountsync", "key"]) == {
        k: [i] for k, i in zip(keys, ids, strict=True)
    }


def test_listing_pages_through_more_than_one_import_batch(
    client: LabelStudioClient, label_studio: LabelStudioProject
) -> None:
    keys = [f"big/{i:05d}.jpg" for i in range(1203)]
    ids = client.import_tasks(label_studio.project_id, [task_for(k) for k in keys])

    listed = list(client.iter_tasks(label_studio.project_id, page_size=500))
    assert len(ids) == len(set(ids)) == 1203
    assert sorted(t.id for t in listed) == sorted(ids)
    assert {t.meta["mountsync"]["key"] for t in listed} == set(keys)


def test_annotations_are_counted_and_survive_a_meta_update(
    client: LabelStudioClient, label_studio: LabelStudioProject
) -> None:
    [annotated, plain] = client.import_tasks(label_studio.project_id, [task_for("a.png"), task_for("b.png")])
    label_studio.server.annotate(annotated)

    marked = client.update_task(annotated, meta={"mountsync": {"key": "a.png", "deleted": True}})
    assert marked.meta == {"mountsync": {"key": "a.png", "deleted": True}}

    counts = {t.id: t.annotations for t in client.iter_tasks(label_studio.project_id)}
    assert counts == {annotated: 1, plain: 0}
    task = client.get_task(annotated)
    assert task is not None and task.data == {"image": "s3://bucket-one/a.png"} and task.annotations == 1


def test_updating_data_replaces_what_the_labeler_sees(
    client: LabelStudioClient, label_studio: LabelStudioProject
) -> None:
    [task_id] = client.import_tasks(label_studio.project_id, [task_for("c.png")])

    client.update_task(task_id, data={"image": "s3://bucket-one/c.png?v=2"})

    task = client.get_task(task_id)
    assert task is not None
    assert task.data == {"image": "s3://bucket-one/c.png?v=2"}
    assert task.meta == {"mountsync": {"key": "c.png", "etag": "e1"}}


def test_deletes_are_idempotent_one_by_one_and_in_bulk(
    client: LabelStudioClient, label_studio: LabelStudioProject
) -> None:
    ids = client.import_tasks(label_studio.project_id, [task_for(f"d{i}.png") for i in range(4)])

    assert client.delete_task(ids[0]) is True
    assert client.delete_task(ids[0]) is False
    assert client.get_task(ids[0]) is None
    client.delete_tasks(label_studio.project_id, [ids[1], ids[2], ids[0]])
    client.delete_tasks(label_studio.project_id, [ids[1]])

    assert [t.id for t in client.iter_tasks(label_studio.project_id)] == [ids[3]]


def test_an_expired_access_token_is_renewed_from_the_personal_access_token(
    client: LabelStudioClient, label_studio: LabelStudioProject
) -> None:
    client.import_tasks(label_studio.project_id, [task_for("e.png")])
    # Access tokens live minutes; a long-running sink sees a 401 and must renew, not fail.
    # Stand in for the expiry by spoiling the cached access token (no waiting).
    client._http.credentials._access = "expired"  # type: ignore[attr-defined]

    assert len(list(client.iter_tasks(label_studio.project_id))) == 1


def test_a_refused_token_is_a_config_error_that_never_shows_the_token(label_studio: LabelStudioProject) -> None:
    header, payload, _signature = label_studio.server.token.split(".")
    forged = f"{header}.{payload}.{'A' * 43}"
    client = LabelStudioClient(label_studio.server.url, forged)

    with pytest.raises(PlatformAuthRejected) as refused:
        client.whoami()
    assert forged not in str(refused.value) and payload not in str(refused.value)


def test_tokens_that_cannot_work_are_refused_before_any_call(label_studio: LabelStudioProject) -> None:
    url = label_studio.server.url
    with pytest.raises(ConfigError, match="LS_MISSING"):
        LabelStudioClient.from_env(url, "LS_MISSING", {})
    with pytest.raises(ConfigError, match="personal access token"):
        LabelStudioClient(url, "0123456789abcdef0123456789abcdef01234567")  # a legacy token's shape


def test_a_server_that_does_not_answer_is_retryable() -> None:
    token = "eyJhbGciOiJIUzI1NiJ9.eyJ0b2tlbl90eXBlIjoicmVmcmVzaCJ9.c2lnbmF0dXJl"  # {"token_type":"refresh"}
    client = LabelStudioClient(f"http://127.0.0.1:{free_port()}", token, timeout_s=2)

    with pytest.raises(PlatformUnavailable):
        client.whoami()


def test_label_studios_own_s3_sync_runs_on_moto_for_the_baseline(
    client: LabelStudioClient, label_studio: LabelStudioProject, moto: MotoEndpoints
) -> None:
    s3 = moto.client("s3")
    s3.create_bucket(Bucket="ls-baseline")
    for key in ("frames/1.png", "frames/2.png", "frames/sub/3.png"):
        s3.put_object(Bucket="ls-baseline", Key=key, Body=key.encode())
    storage = label_studio.server.add_s3_import_storage(label_studio.project_id, "ls-baseline", "frames/", moto)

    label_studio.server.sync_s3_import_storage(storage)

    # This is how Label Studio's own storage refers to an object: the task data holds s3://bucket/key
    # (the client lists it as stored; by default Label Studio answers with its /resolve/ proxy URL).
    images = sorted(t.data["image"] for t in client.iter_tasks(label_studio.project_id))
    assert images == [
        "s3://ls-baseline/frames/1.png",
        "s3://ls-baseline/frames/2.png",
        "s3://ls-baseline/frames/sub/3.png",
    ]
    task = client.get_task(min(t.id for t in client.iter_tasks(label_studio.project_id)))
    assert task is not None and task.data["image"].startswith("s3://ls-baseline/frames/")
