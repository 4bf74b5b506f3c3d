"""Google Cloud Storage: ``gs://bucket/prefix`` (aliases ``gcs://``, ``google://``).

Keys are full bucket keys (the mount prefix included), exactly as ``ObjectChange.key`` carries
them. Options (per mount):

- ``endpoint_url``: another JSON API endpoint (an emulator, a private endpoint). Without
  ``credentials`` such an endpoint is used anonymously, as emulators expect. Without
  ``endpoint_url`` the SDK's own conventions apply: ``STORAGE_EMULATOR_HOST`` (anonymous) or
  Application Default Credentials.
- ``credentials``: the NAME of a credential set, never a secret: the environment variable
  ``GOOGLE_APPLICATION_CREDENTIALS_<NAME>`` holds the path of its credentials file (service
  account key, workload identity federation config, ...). ``<NAME>`` is upper-cased with every
  character other than A-Z, 0-9 turned into ``_``. A name that resolves to nothing is a
  ``ConfigError``, never a silent fallback to other credentials.
- ``project`` (billing project for requester-pays buckets), ``anonymous`` (bool).

What the adapter reports, identically in listings, stats and the GCS normalizer:
``version`` = the generation; ``sequencer`` = ``f"{generation:020d}.0.{metageneration:020d}"``
(the live object is never a removal); ``etag`` = the content's MD5 as hex (``crc32c:<hex>`` for
composite objects, which have no MD5). The JSON API ``etag`` field is not used: it changes on
every metadata patch, and emulators leave it out of notifications, so reindex would report
unchanged content as updated. ``checksums`` = ``{"md5": hex, "crc32c": hex}`` (as present).
"""

from __future__ import annotations

import builtins
import io
import logging
import os
import re
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, BinaryIO

from mountsync.shared.errors import (
    BadInput,
    ConfigError,
    CredentialsRejected,
    MissingExtra,
    MountsyncError,
    ObjectNotFound,
    StorageUnavailable,
)
from mountsync.shared.events import gcs_content_etag, hex_of_b64, to_ns
from mountsync.shared.storage.base import ObjectInfo, PartInfo, UploadSession
from mountsync.shared.storage.gcs_resumable import ResumableSessions
from mountsync.shared.storage.streams import ExactlySized, TranslatingReader
from mountsync.shared.storage.url import StorageURL

log = logging.getLogger("mountsync.storage.gcs")

READ_CHUNK = 8 * 1024 * 1024
LIST_PAGE_SIZE = 1000


def sequencer_for(generation: int, metageneration: int, *, removal: bool = False) -> str:
    return f"{generation:020d}.{int(removal)}.{metageneration:020d}"


def object_info(name: str, resource: Mapping[str, Any]) -> ObjectInfo:
    """ObjectInfo from a JSON API object resource (listing item, upload response)."""
    generation = int(resource.get("generation") or 0)
    metageneration = int(resource.get("metageneration") or 1)
    checksums = {
        k: v
        for k, v in (
            ("md5", hex_of_b64(resource.get("md5Hash"))),
            ("crc32c", hex_of_b64(resource.get("crc32c"))),
        )
        if v
    }
    updated = resource.get("updated") or resource.get("timeCreated")
    return ObjectInfo(
        key=name,
        size=int(resource.get("size") or 0),
        etag=gcs_content_etag(resource.get("md5Hash"), resource.get("crc32c"), resource.get("etag")),
        version=str(generation) if generation else None,
        sequencer=sequencer_for(generation, metageneration) if generation else "",
        modified_ns=to_ns(updated) if updated else 0,
        checksums=checksums,
    )


def info_from_blob(blob: Any) -> ObjectInfo:
    """ObjectInfo from an SDK Blob (its ``_properties`` are the JSON API resource)."""
    return object_info(blob.name, blob._properties)


def credentials_env_var(name: str) -> str:
    return "GOOGLE_APPLICATION_CREDENTIALS_" + re.sub(r"[^A-Z0-9]", "_", name.upper())


def sdk_environ() -> Mapping[str, str]:
    """The process environment, read only for the credential-set naming convention above.

    google-auth reads ``GOOGLE_APPLICATION_CREDENTIALS`` and the SDK ``STORAGE_EMULATOR_HOST``
    themselves; named sets are mountsync's convention, so this is the one place it reads them.
    """
    return os.environ


class GCSStorage:
    """One GCS bucket through google-cloud-storage (imported on first use)."""

    # A resumable session takes bytes strictly in order: callers must send parts sequentially.
    sequential_parts = True

    def __init__(self, url: StorageURL, options: Mapping[str, Any] | None = None) -> None:
        self.url = url
        self.options = dict(options or {})
        self._client: Any = None
        self._sessions: ResumableSessions | None = None

    # -- client and errors ------------------------------------------------------------------
    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = self._make_client()
        return self._client

    def _make_client(self) -> Any:
        try:
            from google.cloud import storage
        except ImportError as exc:
            raise MissingExtra(
                f"GCS storage needs the 'gcs' extra ({exc.name} is missing): pip install 'mountsync[gcs]'"
            ) from exc
        endpoint = self.options.get("endpoint_url")
        credentials = self._credentials()
        anonymous = bool(self.options.get("anonymous")) or (endpoint and credentials is None)
        kwargs: dict[str, Any] = {}
        if endpoint:
            kwargs["client_options"] = {"api_endpoint": str(endpoint).rstrip("/")}
        if anonymous:
            from google.auth.credentials import AnonymousCredentials

            credentials = AnonymousCredentials()  # type: ignore[no-untyped-call]
            kwargs["project"] = self.options.get("project") or "mountsync"
        elif self.options.get("project"):
            kwargs["project"] = self.options["project"]
        try:
            return storage.Client(credentials=credentials, **kwargs)
        except Exception as exc:
            raise self._translate(exc) from exc

    def _credentials(self) -> Any:
        name = self.options.get("credentials")
        if not name:
            return None
        var = credentials_env_var(str(name))
        path = sdk_environ().get(var)
        if not path:
            raise ConfigError(
                f"credential set {name!r} is not defined: set {var} to the path of its "
                "credentials file (service account key or workload identity config)"
            )
        import google.auth

        try:
            creds, _project = google.auth.load_credentials_from_file(  # type: ignore[no-untyped-call]
                path, scopes=["https://www.googleapis.com/auth/devstorage.read_write"]
            )
        except Exception as exc:
            raise ConfigError(f"credential set {name!r} ({var}): cannot load: {exc}") from None
        return creds

    def _where(self, key: str | None = None) -> str:
        return f"gs://{self.url.bucket}/{key}" if key is not None else f"gs://{self.url.bucket}"

    def _translate(self, exc: Exception, key: str | None = None) -> Exception:
        """The mountsync error for an SDK/transport exception (the caller raises it)."""
        from google.api_core import exceptions as api
        from google.auth import exceptions as auth

        where = self._where(key)
        if isinstance(exc, MountsyncError):
            return exc
        if isinstance(exc, api.NotFound):
            if key is None:  # a wrong bucket name is the user's to fix, as on S3 and Azure
                return BadInput(f"bucket {where} does not exist")
            return ObjectNotFound(f"{where} not found")
        if isinstance(exc, (api.Unauthorized, api.Forbidden, auth.RefreshError)):
            return CredentialsRejected(f"access to {where} refused: {_first_line(exc)}")
        if isinstance(exc, auth.DefaultCredentialsError):
            return ConfigError(
                f"no Google credentials for {where}: set GOOGLE_APPLICATION_CREDENTIALS, run "
                "`gcloud auth application-default login`, or name a set with --credentials"
            )
        if isinstance(exc, (api.BadRequest, api.PreconditionFailed)):
            return BadInput(f"{where}: request refused: {_first_line(exc)}")
        return StorageUnavailable(f"{where}: {type(exc).__name__}: {_first_line(exc)}")

    @contextmanager
    def _errors(self, key: str | None = None) -> Iterator[None]:
        try:
            yield
        except MountsyncError:
            raise
        except Exception as exc:
            raise self._translate(exc, key) from exc

    def _bucket(self) -> Any:
        return self.client.bucket(self.url.bucket, user_project=self.options.get("user_project"))

    # -- reading ------------------------------------------------------------------------------
    def list(self, prefix: str = "", *, recursive: bool = True) -> Iterator[ObjectInfo]:
        with self._errors():
            blobs = self.client.list_blobs(
                self._bucket(),
                prefix=prefix or None,
                delimiter=None if recursive else "/",
                page_size=LIST_PAGE_SIZE,
            )
            for blob in blobs:  # pages are fetched lazily as the iteration goes
                yield info_from_blob(blob)

    def _get_blob(self, key: str) -> Any:
        with self._errors(key):
            blob = self._bucket().get_blob(key)
        if blob is None:
            raise ObjectNotFound(f"{self._where(key)} not found")
        return blob

    def stat(self, key: str) -> ObjectInfo:
        return info_from_blob(self._get_blob(key))

    def open(self, key: str) -> BinaryIO:
        """Streams the stored bytes of the generation that was live when opened."""
        blob = self._get_blob(key)
        pinned = self._bucket().blob(key, generation=blob.generation)
        with self._errors(key):
            inner = pinned.open("rb", chunk_size=READ_CHUNK, raw_download=True)
        raw = TranslatingReader(inner, lambda exc: self._translate(exc, key))
        return io.BufferedReader(raw, READ_CHUNK)

    def check(self, *, writable: bool) -> None:
        """List one key; when ``writable``, also write and delete a small probe object."""
        with self._errors():
            for _ in self.client.list_blobs(self._bucket(), prefix=self.url.prefix or None, max_results=1):
                break
        if writable:
            probe = f"{self.url.prefix}.mountsync-check-{uuid.uuid4().hex}"
            self.put(probe, io.BytesIO(b"mountsync write check"), 21)
            self.delete(probe)

    # -- writing ------------------------------------------------------------------------------
    def put(
        self, key: str, stream: BinaryIO, size: int, *, md5: str | None = None, sha256: str | None = None
    ) -> ObjectInfo:
        blob = self._bucket().blob(key)
        body = ExactlySized(stream, size, self._where(key))
        with self._errors(key):
            blob.upload_from_file(body, size=size, rewind=False, checksum="auto")
        if blob.size is not None and int(blob.size) != size:
            raise StorageUnavailable(f"{self._where(key)}: stored {blob.size} bytes, expected {size}")
        return info_from_blob(blob)

    def delete(self, key: str) -> None:
        with self._errors(key):
            self._bucket().blob(key).delete()

    # -- resumable writer (GCS resumable upload sessions; see gcs_resumable.py) -------------
    @property
    def sessions(self) -> ResumableSessions:
        if self._sessions is None:
            self._sessions = ResumableSessions(self.client._http, self._where)
        return self._sessions

    def start_upload(self, key: str, part_size: int) -> UploadSession:
        self.sessions.check_part_size(part_size)
        blob = self._bucket().blob(key)
        with self._errors(key):
            session_url = blob.create_resumable_upload_session(checksum=None)
        return UploadSession(key=key, upload_id=session_url, part_size=part_size)

    def upload_part(self, session: UploadSession, number: int, data: bytes) -> PartInfo:
        return self.sessions.upload_part(session, number, data)

    def list_parts(self, session: UploadSession) -> builtins.list[PartInfo]:
        return self.sessions.list_parts(session)

    def complete_upload(self, session: UploadSession, parts: builtins.list[PartInfo]) -> ObjectInfo:
        total = self.sessions.check_parts(session, parts)
        resource = self.sessions.finalize(session, parts, total)
        # No resource: the last part already completed the upload (or a crash hid the answer).
        info = object_info(session.key, resource) if resource is not None else self.stat(session.key)
        if info.size != total:
            raise StorageUnavailable(
                f"{self._where(session.key)}: upload completed with {info.size} bytes, expected {total}"
            )
        return info

    def abort_upload(self, session: UploadSession) -> None:
        self.sessions.abort(session)


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__
