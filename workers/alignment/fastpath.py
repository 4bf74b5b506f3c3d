"""The append fast path: a check that costs O(new frames), not O(folder).

A folder receiving a steady stream of new frames (an upload in name order, a camera writing
frame after frame) is checked once per debounce window. A full check reads and sorts the whole
folder every time; this path uses what the hook recorded (the keys of brand-new images since
the last check) and only confirms, under the folder lock, that they are all appends:

- the folder's image sequence is pinned, not quarantined, has no open alert, is in sync with
  its pin (frame count = pinned frames) and is not ordered by a manifest file;
- every recorded key is live, not already pinned, and sorts after the last pinned frame;
- the folder's live-object count (kept by apply) is exactly the count at the last check plus
  the recorded keys, so no change claimed by another in-flight check is skipped over.

Anything else returns ``None`` and the caller runs the full state-based check, which is always
correct; this path only ever decides "append" when the full check would decide the same.
"""

from __future__ import annotations

from collections.abc import Sequence

import psycopg

from shared.catalog.mounts import Mount
from workers.alignment import store
from workers.alignment.datasets import IMAGE_SEQUENCE
from workers.alignment.mountio import MountIO
from workers.alignment.sortorder import MANIFEST, get_policy

MAX_FAST_KEYS = 5000


def _name(key: str) -> str:
    return key.rpartition("/")[2]


def try_append(
    conn: psycopg.Connection, mount: Mount, folder: str, new_keys: Sequence[str], io: MountIO
) -> int | None:
    """Extend the pin with ``new_keys`` when they are pure appends; frames added, else None.

    Runs inside the caller's transaction, after the folder lock is taken.
    """
    keys = sorted(set(new_keys))
    if not keys or len(keys) > MAX_FAST_KEYS:
        return None
    rows = [d for d in store.datasets_in_folder(conn, mount.id, folder) if d.type == IMAGE_SEQUENCE]
    if len(rows) != 1:
        return None
    ds = rows[0]
    count = store.folder_live_objects(conn, mount.id, folder)
    if count != ds.folder_objects + len(keys) or not _in_sync(conn, ds):
        return None
    frames = store.live_objects_at(conn, mount.id, keys)
    if len(frames) != len(keys) or store.pinned_keys_among(conn, ds.id, keys):
        return None
    last = store.last_pinned_key(conn, ds.id)
    policy = get_policy(ds.order_policy)
    ordered = sorted(frames, key=lambda f: policy.key(_name(f.key)))
    if last is not None and not policy.key(_name(ordered[0].key)) > policy.key(_name(last)):
        return None
    store.extend_manifest(conn, ds.id, ds.pinned_frames, io.fill_versions(ordered))
    store.set_frame_count(conn, ds.id, ds.pinned_frames + len(ordered))
    store.set_folder_objects(conn, mount.id, folder, count)
    return len(ordered)


def _in_sync(conn: psycopg.Connection, ds: store.Dataset) -> bool:
    return (
        ds.pinned
        and ds.present
        and not ds.quarantined
        and ds.order_policy != MANIFEST
        and ds.frame_count == ds.pinned_frames
        and store.open_alert(conn, ds.id) is None
    )
