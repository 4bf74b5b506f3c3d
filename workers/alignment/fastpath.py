"""The append fast path: a check that costs O(new frames), not O(folder).

A folder receiving a steady stream of new frames (an upload in name order, a camera writing
frame after frame) is checked once per debounce window. A full check reads and sorts the whole
folder every time; this path uses what the hook recorded (the keys of brand-new images since
the last check) and only confirms, under the folder lock, that they are all appends:

- the folder's image sequence is pinned, not quarantined, has no open alert, is in sync with
  its pin (frame count = pinned frames) and is not ordered by a manifest file;
- every recorded key is live (keys a full check already pinned are skipped) and the others sort
  after the last pinned frame;
- the folder's live-object count (kept by apply) is exactly the count at the last check plus
  the fresh keys, so no change claimed by another in-flight check is skipped over. When it is
  higher, the difference must be images neither pinned nor recorded yet (another apply worker
  committed them and has not run its hook): they are taken along, and their record, claimed
  later, finds them pinned.

Anything else returns ``None`` and the caller runs the full state-based check, which is always
correct; this path only ever decides "append" when the full check would decide the same.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg

from mountsync.shared.catalog.mounts import Mount
from mountsync.workers.alignment.classify import Frame
from mountsync.workers.alignment.datasets import MediaTypes, Role
from mountsync.workers.alignment.mountio import MountIO
from mountsync.workers.alignment.sortorder import MANIFEST, get_policy

MAX_FAST_KEYS = 5000

# Everything the decision needs, in one round trip (checks run thousands of times a minute on
# busy mounts; each round trip costs most under exactly the load that makes them frequent).
PROBE_SQL = """
SELECT d.id, d.pinned_at IS NOT NULL AND d.present AND NOT d.quarantined, d.order_policy,
       d.frame_count, d.pinned_frames, d.folder_objects,
       coalesce((SELECT live_objects FROM folders WHERE mount_id = d.mount_id AND path = d.folder), 0),
       EXISTS (SELECT 1 FROM alignment_alerts a WHERE a.dataset_id = d.id AND a.status = 'open'),
       (SELECT key FROM dataset_frames f WHERE f.dataset_id = d.id ORDER BY idx DESC LIMIT 1),
       (SELECT coalesce(json_object_agg(f.key, f.etag), '{}'::json) FROM dataset_frames f
          WHERE f.dataset_id = d.id AND f.key = ANY(%(keys)s)),
       (SELECT coalesce(json_agg(json_build_array(o.key, o.etag, o.size, o.version)), '[]'::json)
          FROM objects o WHERE o.mount_id = d.mount_id AND o.key = ANY(%(keys)s) AND NOT o.deleted)
FROM datasets d
WHERE d.mount_id = %(mount)s AND d.type = 'image-sequence' AND d.path = %(folder)s
"""

# Live objects of the folder neither pinned nor recorded: appends committed by another apply
# worker whose hook has not run yet (their record comes later and finds them pinned).
UNRECORDED_SQL = """
SELECT o.key, o.etag, o.size, o.version FROM objects o
WHERE o.mount_id = %(mount)s AND o.folder = %(folder)s AND NOT o.deleted AND NOT (o.key = ANY(%(keys)s))
  AND NOT EXISTS (SELECT 1 FROM dataset_frames f WHERE f.dataset_id = %(id)s AND f.key = o.key)
"""

EXTEND_SQL = """
WITH frames AS (
    INSERT INTO dataset_frames (dataset_id, idx, key, etag, version, size)
    SELECT %(id)s, %(start)s + t.n - 1, t.k, t.e, t.v, t.s
    FROM unnest(%(keys)s::text[], %(etags)s::text[], %(versions)s::text[], %(sizes)s::bigint[])
         WITH ORDINALITY AS t(k, e, v, s, n)
),
ds AS (
    UPDATE datasets SET pinned_frames = %(total)s, frame_count = %(total)s, folder_objects = %(count)s,
        checked_at = now(), updated_at = now()
    WHERE id = %(id)s
)
INSERT INTO alignment_folders (mount_id, folder, checked_at) VALUES (%(mount)s, %(folder)s, now())
ON CONFLICT (mount_id, folder) DO UPDATE SET checked_at = now()
"""


def _name(key: str) -> str:
    return key.rpartition("/")[2]


def try_append(
    conn: psycopg.Connection, mount: Mount, folder: str, new_keys: Sequence[str], io: MountIO,
    types: MediaTypes,
) -> int | None:  # fmt: skip
    """Extend the pin with ``new_keys`` when they are pure appends; frames added, else None.

    Runs inside the caller's transaction, after the folder lock is taken.
    """
    keys = sorted(set(new_keys))
    if not keys or len(keys) > MAX_FAST_KEYS:
        return None
    row = conn.execute(PROBE_SQL, {"mount": mount.id, "folder": folder, "keys": keys}).fetchone()
    if row is None:
        return None
    ds_id, usable, order, frame_count, pinned, folder_objects, count, alerted, last, already, live = row
    # Keys a full check already pinned (their hook ran after it) were counted by it too; one
    # whose content is not the pinned content is no append: the full check says what it is.
    if any(k in already and already[k] != e for k, e, _, _ in live):
        return None
    fresh = [(k, e, s, v) for k, e, s, v in live if k not in already]
    in_sync = usable and not alerted and order != MANIFEST and frame_count == pinned
    # Every recorded key must be live (``live`` has one row per key): a pinned one may be in both
    # ``live`` and ``already``, so adding those up would let a deleted pinned frame through.
    if not in_sync or len(live) != len(keys) or count < folder_objects + len(fresh):
        return None
    if count > folder_objects + len(fresh):
        unrecorded = conn.execute(UNRECORDED_SQL, {"mount": mount.id, "folder": folder, "keys": keys,
                                                   "id": ds_id}).fetchall()  # fmt: skip
        # Non-images seen before are in both numbers; a new one makes them differ: full check.
        fresh += [tuple(r) for r in unrecorded if types.role(r[0]) is Role.IMAGE]
        if count != folder_objects + len(fresh):
            return None
    if not fresh:
        return 0
    policy = get_policy(order)
    frames = sorted((Frame(key=k, etag=e, size=s, version=v) for k, e, s, v in fresh),
                    key=lambda f: policy.key(_name(f.key)))  # fmt: skip
    if last is not None and not policy.key(_name(frames[0].key)) > policy.key(_name(last)):
        return None
    frames = io.fill_versions(frames)
    params: dict[str, Any] = {
        "id": ds_id, "start": pinned, "total": pinned + len(frames), "count": count,
        "mount": mount.id, "folder": folder, "keys": [f.key for f in frames],
        "etags": [f.etag for f in frames], "versions": [f.version for f in frames],
        "sizes": [f.size for f in frames],
    }  # fmt: skip
    conn.execute(EXTEND_SQL, params)
    return len(frames)
