"""Pinned frame content over HTTP on moto's versioned S3: the old version's bytes after an
overwrite, ETag/Content-Type/Content-Length, Range (206, 416), 409 where no version can be served."""

from __future__ import annotations

import uuid
from pathlib import Path

import psycopg
import pytest

from mountsync.shared.catalog.apply import apply_changes
from mountsync.shared.config import Settings
from mountsync.shared.events import Kind, ObjectChange, Provider, Source

FRAMES = [b"\x89PNG frame zero", b"\x89PNG frame one!", b"\x89PNG frame two.."]


def created(bucket: str, key: str, head: dict, seq: int, provider: Provider = Provider.S3) -> ObjectChange:
    etag, version = head["ETag"].strip('"'), head.get("VersionId")
    return ObjectChange(provider, bucket, key, Kind.CREATED, seq, Source.REINDEX, size=head["ContentLength"],
                        etag=etag, version=version, sequencer=f"{seq:04d}")  # fmt: skip


@pytest.fixture
def versioned(moto, settings: Settings, add_mount, catalog):
    client = moto.client("s3")
    name = f"pins-{uuid.uuid4().hex[:8]}"
    client.create_bucket(Bucket=name)
    client.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    add_mount("pins", f"s3://{name}/", endpoint_url=moto.endpoint_url)
    changes = []
    for i, body in enumerate(FRAMES):
        key = f"seq/frame_{i}.png"
        client.put_object(Bucket=name, Key=key, Body=body, ContentType="image/png")
        changes.append(created(name, key, client.head_object(Bucket=name, Key=key), 1))
    with psycopg.connect(settings.database_url) as conn:
        apply_changes(conn, changes)
    return client, name


def test_pinned_content_is_the_old_version_after_an_overwrite(api, versioned, settings, read_auth,
                                                             write_auth) -> None:  # fmt: skip
    client, name = versioned
    pinned = api.post("/api/v1/mounts/pins/datasets/seq/pin", json={"last_annotated": 2}, headers=write_auth)
    assert pinned.status_code == 200, pinned.text
    assert pinned.json()["versions_pinned"] == 3
    client.put_object(Bucket=name, Key="seq/frame_1.png", Body=b"overwritten", ContentType="image/png")
    with psycopg.connect(settings.database_url) as conn:
        apply_changes(
            conn, [created(name, "seq/frame_1.png", client.head_object(Bucket=name, Key="seq/frame_1.png"), 2)]
        )
    url = "/api/v1/mounts/pins/datasets/seq/frames/1/content"
    whole = api.get(url, headers=read_auth)
    assert whole.status_code == 200 and whole.content == FRAMES[1]
    assert whole.headers["content-type"] == "image/png" and whole.headers["content-length"] == str(len(FRAMES[1]))
    assert whole.headers["etag"].strip('"') == client.head_object(
        Bucket=name, Key="seq/frame_1.png", VersionId=pinned_version(api, read_auth, 1))["ETag"].strip('"')  # fmt: skip
    part = api.get(url, headers={**read_auth, "Range": "bytes=5-9"})
    assert part.status_code == 206 and part.content == FRAMES[1][5:10]
    assert part.headers["content-range"] == f"bytes 5-9/{len(FRAMES[1])}"
    tail = api.get(url, headers={**read_auth, "Range": "bytes=-4"})
    assert tail.status_code == 206 and tail.content == FRAMES[1][-4:]
    assert api.get(url, headers={**read_auth, "Range": "bytes=999-"}).status_code == 416
    frames = api.get("/api/v1/mounts/pins/datasets/seq/frames", headers=read_auth).json()
    assert [f["live"] for f in frames["pinned"]] == ["same", "changed", "same"]
    assert api.get("/api/v1/mounts/pins/datasets/seq/frames/3/content", headers=read_auth).status_code == 404
    assert api.get("/api/v1/mounts/pins/datasets/seq/frames/x/content", headers=read_auth).status_code == 422


def pinned_version(api, auth, index: int) -> str:
    frames = api.get("/api/v1/mounts/pins/datasets/seq/frames", headers=auth).json()
    return str(frames["pinned"][index]["version"])


def test_a_local_directory_cannot_serve_a_pinned_version(api, add_mount, settings, tmp_path: Path, read_auth,
                                                         write_auth) -> None:  # fmt: skip
    root = tmp_path / "root"
    (root / "seq").mkdir(parents=True)
    changes = []
    for i, body in enumerate(FRAMES):
        (root / "seq" / f"f{i}.png").write_bytes(body)
        changes.append(ObjectChange(Provider.FS, str(root), f"seq/f{i}.png", Kind.CREATED, 1, Source.FS,
                                    size=len(body), etag=f"e{i}", sequencer="1"))  # fmt: skip
    add_mount("local", f"file://{root}")
    with psycopg.connect(settings.database_url) as conn:
        apply_changes(conn, changes)
    assert api.post("/api/v1/mounts/local/datasets/seq/pin", headers=write_auth).status_code == 200
    refused = api.get("/api/v1/mounts/local/datasets/seq/frames/0/content", headers=read_auth)
    assert refused.status_code == 409 and "version" in refused.json()["error"]
