"""Migration jobs: copy items from a source to a destination bucket, verified and resumable.

What other services need lives here: ``spec`` validates what submitters send, ``plan`` derives
destination keys and chunks (pure), ``jobs`` keeps job rows (``JobStore``), ``progress`` turns
them into what ``migrate status`` shows, and ``client`` submits and queries jobs for the CLI and
the HTTP API. Items, parts, verified copies, link batches and the transfer itself belong to
the workers: ``mountsync.workers.migration``.
"""

TASK_CHUNK = "mountsync.migration.upload_chunk"
TASK_DELIVER = "mountsync.migration.deliver_links"
TASK_MAINTAIN = "mountsync.migration.maintain"
TASK_RESUME = "mountsync.migration.resume"
