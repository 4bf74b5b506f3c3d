"""Migration jobs: copy items from a source to a destination bucket, verified and resumable.

``spec`` validates what submitters send, ``plan`` derives chunks and destination keys (pure),
``store`` keeps job, item, part and link-batch state in PostgreSQL, ``client`` submits and
queries jobs for the CLI and the HTTP API. The transfer itself runs in ``mountsync.workers.migration``.
"""

TASK_CHUNK = "mountsync.migration.upload_chunk"
TASK_DELIVER = "mountsync.migration.deliver_links"
TASK_MAINTAIN = "mountsync.migration.maintain"
TASK_RESUME = "mountsync.migration.resume"
