"""What ``mountsync connect girder`` checks before it stores a connector: the key's user is an
admin (Girder's import, which references objects, is admin-only), the folder exists, and the
assetstore is an S3 assetstore on the mount's bucket (picked when there is exactly one).
"""

from __future__ import annotations

from mountsync.shared.errors import BadInput
from mountsync.workers.connectors.girder_client import GirderClient, S3Assetstore


def pick_assetstore(stores: list[S3Assetstore], bucket: str, wanted: str | None) -> S3Assetstore:
    """The S3 assetstore ``wanted`` (checked against the bucket), or the only one on ``bucket``."""
    if wanted is not None:
        found = next((s for s in stores if s.id == wanted), None)
        if found is None:
            raise BadInput(f"--assetstore {wanted}: Girder has no S3 assetstore with that id")
        if found.bucket != bucket:
            raise BadInput(f"--assetstore {wanted}: it reads bucket {found.bucket!r}, the mount is on {bucket!r}")
        return found
    on_bucket = [s for s in stores if s.bucket == bucket]
    if len(on_bucket) == 1:
        return on_bucket[0]
    if not on_bucket:
        raise BadInput(f"--assetstore: Girder has no S3 assetstore on bucket {bucket!r}; create one (admin) first")
    ids = ", ".join(s.id for s in on_bucket)
    raise BadInput(f"--assetstore: Girder has {len(on_bucket)} S3 assetstores on bucket {bucket!r} ({ids}); pick one")


def check_target(client: GirderClient, folder_id: str, bucket: str, assetstore: str | None) -> S3Assetstore:
    """Prove the URL, the API key, the folder and the assetstore before anything is stored."""
    login, admin = client.whoami()
    if not admin:
        raise BadInput(f"--api-key-env: Girder user {login!r} is not an admin; referencing bucket objects "
                       "uses Girder's assetstore import, which needs one")  # fmt: skip
    if client.get_folder(folder_id) is None:
        raise BadInput(f"--folder {folder_id}: Girder has no such folder")
    return pick_assetstore(client.s3_assetstores(), bucket, assetstore)
