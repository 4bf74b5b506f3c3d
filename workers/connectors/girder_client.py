"""Girder 5's REST API, as much of it as a connector needs to mirror a mount into a folder tree.

Authentication is a Girder API key (``POST /api_key``), exchanged for a session token at
``POST /api_key/token`` and exchanged again after a 401. The key is read from an environment
variable the user names and is never stored or logged (it travels as a query parameter, so error
messages carry paths only).

Referencing an object without copying bytes: Girder represents an imported S3 object as a file
document with ``assetstoreId``, ``s3Key`` = the bucket key, ``imported: true`` and ``size``; its
download answers 303 to a presigned URL of the bucket. Stock Girder writes such documents only
through its assetstore import (``POST /assetstore/{id}/import``, admin only), so
``reference_object`` runs that import for exactly one key: ``importPath`` = the key and
``fileIncludeRegex`` = the exact file name. That is Girder's own code path, on any stock or
DIVE server, without a plugin. Limits that follow (see docs/platforms.md):

- the API key's user must be a Girder admin;
- an object that changed keeps its file document on re-import (Girder reuses files by name), so
  ``refresh_reference`` deletes the file first and imports again (the item and its id stay);
- Girder lists with ``Prefix=key``, so a "folder" whose name starts with the file's name
  (``a.png`` beside ``a.png.frames/``) would be created empty by that import;
- the import and folder deletions run on Girder's local Celery queue: a server without a
  worker (or ``GIRDER_WORKER_TASK_ALWAYS_EAGER``) answers 503, which is retryable here.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mountsync.shared.errors import ConfigError, PlatformRecordMissing
from mountsync.workers.connectors.http import DEFAULT_TIMEOUT_S, PlatformHttp

PLATFORM = "Girder"
PAGE = 1000
REFERENCE_BATCH = 200  # names per import call (the include regex travels in the form body)

# DIVE's folder metadata markers (Kitware/dive server/dive_utils/constants.py).
DIVE_DATASET_MARKER = "annotate"
DIVE_TYPE_MARKER = "type"
DIVE_FPS_MARKER = "fps"
DIVE_IMAGE_SEQUENCE = "image-sequence"
DIVE_VIDEO = "video"


_MISSING_ID = re.compile(r"Invalid \w+ id \(")


def refine_girder_status(status: int, body: str) -> int:
    """Girder answers 400 both for an id that does not exist and for an unknown API key."""
    if status == 400 and _MISSING_ID.search(body):
        return 404
    if status == 400 and "Invalid API key" in body:
        return 401
    return status


def dive_dataset_markers(kind: str, fps: float | None = None) -> dict[str, Any]:
    """The folder metadata that makes DIVE list a folder as a dataset of ``kind``."""
    if kind not in (DIVE_IMAGE_SEQUENCE, DIVE_VIDEO):
        raise ValueError(f"not a DIVE dataset type: {kind!r}")
    markers: dict[str, Any] = {DIVE_DATASET_MARKER: True, DIVE_TYPE_MARKER: kind}
    if fps is not None:
        markers[DIVE_FPS_MARKER] = fps
    return markers


def exact_name_regex(name: str) -> str:
    """A ``fileIncludeRegex`` matching exactly ``name`` (Girder applies ``re.match`` to the base name)."""
    return re.escape(name) + r"\Z"


def common_key_prefix(keys: Sequence[str]) -> str:
    """The longest string every key starts with (characters, not path segments: S3 prefixes)."""
    if not keys:
        return ""
    first, last = min(keys), max(keys)
    length = 0
    while length < min(len(first), len(last)) and first[length] == last[length]:
        length += 1
    return first[:length]


@dataclass(frozen=True, slots=True)
class Folder:
    id: str
    name: str
    parent_id: str
    meta: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Item:
    id: str
    name: str
    folder_id: str
    size: int
    meta: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class File:
    """A file as the API shows it (Girder hides ``s3Key`` and ``imported`` from the REST model)."""

    id: str
    name: str
    item_id: str
    size: int
    assetstore_id: str | None


def _folder(row: Mapping[str, Any]) -> Folder:
    return Folder(str(row["_id"]), str(row["name"]), str(row["parentId"]), row.get("meta") or {})


def _item(row: Mapping[str, Any]) -> Item:
    return Item(
        str(row["_id"]), str(row["name"]), str(row["folderId"]), int(row.get("size") or 0), row.get("meta") or {}
    )


def _file(row: Mapping[str, Any]) -> File:
    assetstore = row.get("assetstoreId")
    return File(str(row["_id"]), str(row["name"]), str(row["itemId"]), int(row.get("size") or 0), assetstore)


class ApiKeyToken:
    """Exchanges an API key for a Girder token; ``refresh`` after a 401 (expired or revoked token)."""

    def __init__(self, http: PlatformHttp, api_key: str) -> None:
        self._http = http
        self._key = api_key
        self._token: str | None = None

    def headers(self) -> Mapping[str, str]:
        if self._token is None:
            self._exchange()
        return {"Girder-Token": str(self._token)}

    def refresh(self) -> bool:
        self._exchange()
        return True

    def _exchange(self) -> None:
        body = self._http.json("POST", "/api_key/token", params={"key": self._key})
        self._token = str(body["authToken"]["token"])


class GirderClient:
    """One Girder server (``url`` ends in ``/api/v1``); every method raises the error tree."""

    def __init__(self, url: str, api_key: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        base = url.rstrip("/")
        if not base.endswith("/api/v1"):
            base += "/api/v1"
        self._token_http = PlatformHttp(PLATFORM, base, timeout_s=timeout_s, refine=refine_girder_status)
        self._http = PlatformHttp(
            PLATFORM, base, ApiKeyToken(self._token_http, api_key), timeout_s, refine=refine_girder_status
        )

    @classmethod
    def from_env(cls, url: str, api_key_env: str, environ: Mapping[str, str]) -> GirderClient:
        """The client for ``url`` with the API key from the variable ``api_key_env`` (--api-key-env)."""
        key = environ.get(api_key_env, "").strip()
        if not key:
            raise ConfigError(f"--api-key-env: the environment variable {api_key_env} is not set or empty")
        return cls(url, key)

    def close(self) -> None:
        self._http.close()
        self._token_http.close()

    def whoami(self) -> tuple[str, bool]:
        """The key's user login and whether it is an admin (referencing objects needs an admin)."""
        me = self._http.json("GET", "/user/me")
        if not me:
            raise ConfigError("the Girder API key authenticates no user")
        return str(me["login"]), bool(me.get("admin"))

    # Folders

    def get_folder(self, folder_id: str) -> Folder | None:
        try:
            return _folder(self._http.json("GET", f"/folder/{folder_id}"))
        except PlatformRecordMissing:
            return None

    def find_folder(self, parent_id: str, name: str) -> Folder | None:
        rows = self._http.json(
            "GET", "/folder", params={"parentType": "folder", "parentId": parent_id, "name": name, "limit": 1}
        )
        return _folder(rows[0]) if rows else None

    def ensure_folder(self, parent_id: str, name: str) -> Folder:
        """The child folder ``name``, created when missing (Girder's reuseExisting makes this idempotent)."""
        row = self._http.json(
            "POST",
            "/folder",
            data={"parentType": "folder", "parentId": parent_id, "name": name, "reuseExisting": "true"},
        )
        return _folder(row)

    def ensure_folder_path(self, root_id: str, path: str) -> Folder | None:
        """The folder at ``a/b/c`` under ``root_id``, created level by level; None for an empty path."""
        folder: Folder | None = None
        parent = root_id
        for name in (part for part in path.split("/") if part):
            folder = self.ensure_folder(parent, name)
            parent = folder.id
        return folder

    def child_folders(self, parent_id: str) -> Iterator[Folder]:
        for row in self._paged("/folder", {"parentType": "folder", "parentId": parent_id}):
            yield _folder(row)

    def set_folder_metadata(self, folder_id: str, meta: Mapping[str, Any]) -> Folder:
        """Merge ``meta`` into the folder's metadata; a key set to None is removed."""
        return _folder(self._http.json("PUT", f"/folder/{folder_id}/metadata", json=dict(meta)))

    def delete_folder(self, folder_id: str) -> bool:
        """Delete a folder and its contents; False when it was already gone.

        Girder runs the deletion on its local Celery queue: without an eager worker it completes
        shortly after this returns.
        """
        try:
            self._http.request("DELETE", f"/folder/{folder_id}")
        except PlatformRecordMissing:
            return False
        return True

    # Items and files

    def find_item(self, folder_id: str, name: str) -> Item | None:
        rows = self._http.json("GET", "/item", params={"folderId": folder_id, "name": name, "limit": 1})
        return _item(rows[0]) if rows else None

    def items(self, folder_id: str) -> Iterator[Item]:
        for row in self._paged("/item", {"folderId": folder_id}):
            yield _item(row)

    def item_files(self, item_id: str) -> list[File]:
        return [_file(row) for row in self._http.json("GET", f"/item/{item_id}/files", params={"limit": 0})]

    def set_item_metadata(self, item_id: str, meta: Mapping[str, Any]) -> Item:
        """Merge ``meta`` into the item's metadata; a key set to None is removed."""
        return _item(self._http.json("PUT", f"/item/{item_id}/metadata", json=dict(meta)))

    def delete_item(self, item_id: str) -> bool:
        """Delete an item; an imported file's object stays in the bucket. False when already gone."""
        try:
            self._http.request("DELETE", f"/item/{item_id}")
        except PlatformRecordMissing:
            return False
        return True

    def delete_file(self, file_id: str) -> bool:
        try:
            self._http.request("DELETE", f"/file/{file_id}")
        except PlatformRecordMissing:
            return False
        return True

    def download_location(self, file_id: str) -> str | None:
        """Where ``GET /file/{id}/download`` redirects (a presigned bucket URL), or None if it streams."""
        response = self._http.request("GET", f"/file/{file_id}/download", follow_redirects=False)
        return response.headers.get("Location") if response.is_redirect else None

    # Import by reference

    def import_objects(
        self, assetstore_id: str, import_path: str, folder_id: str, include_regex: str | None = None
    ) -> None:
        """Girder's own S3 import of ``import_path`` (recursive) into the folder; admin only."""
        data = {"importPath": import_path, "destinationId": folder_id, "destinationType": "folder"}
        if include_regex is not None:
            data["fileIncludeRegex"] = include_regex
        self._http.request("POST", f"/assetstore/{assetstore_id}/import", data=data)

    def reference_object(self, assetstore_id: str, folder_id: str, key: str) -> Item:
        """An item named after ``key``'s last segment in the folder, whose file references the object.

        Idempotent: an existing item and file of that name are reused (no duplicate).
        """
        name = key.rsplit("/", 1)[-1]
        if not name:
            raise ValueError(f"not an object key: {key!r}")
        self.import_objects(assetstore_id, key, folder_id, exact_name_regex(name))
        item = self.find_item(folder_id, name)
        if item is None:
            raise PlatformRecordMissing(
                f"{PLATFORM} imported no item for {key!r}: is it in the assetstore's bucket?", 404
            )
        return item

    def reference_objects(self, assetstore_id: str, folder_id: str, keys: Sequence[str]) -> dict[str, Item]:
        """``reference_object`` for many keys of one bucket "folder" in one import per batch.

        One call lists the keys' longest common prefix and imports the exact names (about 4x
        fewer round trips than one import per key). Girder recurses into "subfolders" under that
        prefix: a file there with one of the batch's names is imported at its own path too, which
        is where the mirror puts it anyway (a later ``reference_object`` finds it, no duplicate).
        Returns key -> item; a key whose object is gone from the bucket is absent.
        """
        by_name = {key.rsplit("/", 1)[-1]: key for key in keys}
        parents = {key.rsplit("/", 1)[0] if "/" in key else "" for key in keys}
        if len(parents) > 1 or "" in by_name:
            raise ValueError("reference_objects takes object keys of one folder")
        names = sorted(by_name)
        for start in range(0, len(names), REFERENCE_BATCH):
            batch = names[start : start + REFERENCE_BATCH]
            prefix = common_key_prefix([by_name[name] for name in batch])
            pattern = "(?:" + "|".join(re.escape(name) for name in batch) + r")\Z"
            self.import_objects(assetstore_id, prefix, folder_id, pattern)
        return {by_name[item.name]: item for item in self.items(folder_id) if item.name in by_name}

    def refresh_reference(self, assetstore_id: str, item: Item, key: str) -> Item:
        """Make the item's file follow an overwritten object (new size): drop the file, import again."""
        for file in self.item_files(item.id):
            self.delete_file(file.id)
        return self.reference_object(assetstore_id, item.folder_id, key)

    def _paged(self, path: str, params: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
        offset = 0
        while True:
            rows: Sequence[Mapping[str, Any]] = self._http.json(
                "GET", path, params={**params, "limit": PAGE, "offset": offset, "sort": "_id"}
            )
            yield from rows
            if len(rows) < PAGE:
                return
            offset += PAGE
