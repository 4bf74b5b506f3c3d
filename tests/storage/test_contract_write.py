"""The writing half of the Storage contract (shared/storage/base.py), run over every provider:
single puts with their checks, deletes, and resumable sessions (start, parts, resume, complete,
abort) as a migration uses them across a crash."""

from __future__ import annotations

import hashlib
import io

import pytest

from mountsync.shared.errors import BadInput, ObjectNotFound, RetryableError, StorageUnavailable
from mountsync.shared.storage import PartInfo, UploadSession
from tests.storage.rig import StorageRig, put, read_all


def test_put_returns_what_stat_and_a_read_see(rig: StorageRig) -> None:
    data = bytes(range(256)) * 5000  # more than one copy block
    given = hashlib.md5(data).hexdigest()

    info = rig.storage.put("d/ünï file+1.bin", io.BytesIO(data), len(data), md5=given)

    stat = rig.storage.stat("d/ünï file+1.bin")
    assert (info.key, info.size, info.etag) == (stat.key, stat.size, stat.etag)
    assert (stat.key, stat.size) == ("d/ünï file+1.bin", len(data))
    assert read_all(rig.storage, "d/ünï file+1.bin") == data
    if rig.caps.etag_is_content_md5:
        assert info.etag == given


def test_put_with_a_wrong_md5(rig: StorageRig) -> None:
    """The caller hashed the file, then it changed before it was sent."""
    put(rig.storage, "a.bin", b"old content")
    announced = hashlib.md5(b"new content").hexdigest()

    if rig.caps.put_checks_md5:
        with pytest.raises(StorageUnavailable, match="MD5"):
            rig.storage.put("a.bin", io.BytesIO(b"NEW CONTENT"), 11, md5=announced)
        assert read_all(rig.storage, "a.bin") == b"old content"  # not replaced
    else:  # the provider's own checksums guard the transfer; the stored bytes are the ones sent
        rig.storage.put("a.bin", io.BytesIO(b"NEW CONTENT"), 11, md5=announced)
        assert read_all(rig.storage, "a.bin") == b"NEW CONTENT"
    assert [i.key for i in rig.storage.list()] == ["a.bin"]  # no temporary object left


@pytest.mark.parametrize("data", [b"short", b"a bit longer than announced"], ids=["shorter", "longer"])
def test_put_of_a_stream_that_is_not_size_bytes_publishes_nothing(rig: StorageRig, data: bytes) -> None:
    """A source file that shrank or grew while it was copied: retry (hash it again, send it
    again) rather than publish a truncated copy as if it were whole."""
    with pytest.raises(StorageUnavailable, match="10 bytes"):
        rig.storage.put("changed.bin", io.BytesIO(data), 10)
    assert list(rig.storage.list()) == []


def test_put_overwrites_and_delete_removes_only_its_key(rig: StorageRig) -> None:
    put(rig.storage, "keep.txt", b"keep")
    put(rig.storage, "gone.txt", b"first")
    put(rig.storage, "gone.txt", b"second")
    assert read_all(rig.storage, "gone.txt") == b"second"

    rig.storage.delete("gone.txt")

    assert [i.key for i in rig.storage.list()] == ["keep.txt"]
    with pytest.raises(ObjectNotFound):
        rig.storage.stat("gone.txt")


# -- resumable sessions ---------------------------------------------------------------------
def session_data(rig: StorageRig, full_parts: int, tail: int) -> tuple[int, list[bytes]]:
    part = max(rig.part_size, 4096)
    data = bytes((i * 31) % 251 for i in range(full_parts * part + tail))
    return part, [data[off : off + part] for off in range(0, len(data), part)]


@pytest.mark.parametrize("tail", [1000, 0], ids=["short-last-part", "exact-multiple"])
def test_a_crashed_upload_resumes_sending_only_the_missing_parts(rig: StorageRig, tail: int) -> None:
    part, chunks = session_data(rig, 3, tail)
    writer = rig.sessions
    session = writer.start_upload("mig/vidéo 1.mp4", part)
    sent = [writer.upload_part(session, n, chunks[n - 1]) for n in (1, 2)]
    assert writer.list_parts(session) == sent

    # A new process picks the session up from what it stored: the session alone.
    again = rig.reopen_sessions()
    kept = UploadSession(session.key, session.upload_id, session.part_size)
    listed = again.list_parts(kept)
    assert [(p.number, p.size) for p in listed] == [(1, part), (2, part)]
    rest = [again.upload_part(kept, n, chunks[n - 1]) for n in range(3, len(chunks) + 1)]
    info = again.complete_upload(kept, listed + rest)

    data = b"".join(chunks)
    assert info.size == len(data) == again.stat("mig/vidéo 1.mp4").size
    assert read_all(again, "mig/vidéo 1.mp4") == data
    assert [i.key for i in again.list()] == ["mig/vidéo 1.mp4"]  # no staging object is content


def test_parts_arrive_in_any_order_where_the_provider_allows_it(rig: StorageRig) -> None:
    part, chunks = session_data(rig, 2, 10)
    writer = rig.sessions
    session = writer.start_upload("ooo.bin", part)
    first = writer.upload_part(session, 1, chunks[0])
    if rig.caps.parts_in_any_order:
        last = writer.upload_part(session, 3, chunks[2])
        middle = writer.upload_part(session, 2, chunks[1])
        assert [p.number for p in writer.list_parts(session)] == [1, 2, 3]
        writer.complete_upload(session, [last, first, middle])  # any order in the list too
        assert read_all(writer, "ooo.bin") == b"".join(chunks)
    else:
        with pytest.raises(RetryableError, match="in order"):  # retry: the gap fills meanwhile
            writer.upload_part(session, 3, chunks[2])
        assert [p.number for p in writer.list_parts(session)] == [1]


def test_a_resent_part_replaces_itself(rig: StorageRig) -> None:
    """The answer to a part was lost, so the part is sent again: nothing is duplicated."""
    part, chunks = session_data(rig, 1, 5)
    writer = rig.sessions
    session = writer.start_upload("dup.bin", part)
    first = writer.upload_part(session, 1, chunks[0])
    assert writer.upload_part(session, 1, chunks[0]) == first
    last = writer.upload_part(session, 2, chunks[1])
    assert writer.complete_upload(session, [first, last]).size == len(b"".join(chunks))
    assert read_all(writer, "dup.bin") == b"".join(chunks)


def test_completing_again_after_a_crash_returns_the_same_object(rig: StorageRig) -> None:
    """The worker died after the upload completed and before it recorded that."""
    part, chunks = session_data(rig, 1, 7)
    writer = rig.sessions
    session = writer.start_upload("twice.bin", part)
    parts = [writer.upload_part(session, n, chunk) for n, chunk in enumerate(chunks, 1)]
    first = writer.complete_upload(session, parts)

    again = rig.reopen_sessions().complete_upload(session, parts)

    assert (again.key, again.size, again.etag) == (first.key, first.size, first.etag)
    assert read_all(writer, "twice.bin") == b"".join(chunks)


def test_abort_leaves_no_object_and_can_be_repeated(rig: StorageRig) -> None:
    part, chunks = session_data(rig, 1, 0)
    writer = rig.sessions
    session = writer.start_upload("aborted.bin", part)
    writer.upload_part(session, 1, chunks[0])

    writer.abort_upload(session)
    writer.abort_upload(session)  # a retried abort is harmless

    assert [i.key for i in writer.list()] == []
    if rig.caps.abort_discards_parts:
        with pytest.raises(ObjectNotFound):
            writer.list_parts(session)


def test_a_part_size_the_provider_refuses_is_bad_input(rig: StorageRig) -> None:
    with pytest.raises(BadInput, match="part size"):
        rig.sessions.start_upload("small-parts.bin", rig.part_size - 1)
    with pytest.raises(BadInput):
        rig.sessions.start_upload("no-parts.bin", 0)


def test_completing_without_all_parts_is_refused(rig: StorageRig) -> None:
    part, chunks = session_data(rig, 2, 3)
    writer = rig.sessions
    session = writer.start_upload("gap.bin", part)
    first = writer.upload_part(session, 1, chunks[0])
    with pytest.raises(BadInput):  # never an empty object
        writer.complete_upload(session, [])
    with pytest.raises(BadInput):  # part 3 was never sent (S3 says InvalidPart, the others: gaps)
        writer.complete_upload(session, [first, PartInfo(3, len(chunks[2]), "missing")])
    assert [i.key for i in writer.list()] == []
