"""S3 and S3-compatible storage (MinIO, moto): ``s3://bucket/prefix`` and ``minio://bucket/prefix``.

Keys are full bucket keys (the mount prefix included), exactly as ``ObjectChange.key`` carries
them. Options (per mount): ``endpoint_url`` (MinIO, stand-ins; without it boto3's own
``AWS_ENDPOINT_URL`` convention applies), ``region``, ``credentials`` (the NAME of a profile in
the AWS config/credentials files; never a secret; without it boto3's default chain is used) and
``addressing_style`` (``path`` by default whenever the endpoint is not AWS, as MinIO needs).
``crt_puts`` (true) sends puts of bodies in memory through the AWS CRT (``s3_crt``).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import uuid
from collections.abc import Iterator, Mapping
from typing import Any, BinaryIO

from mountsync.shared.errors import (
    BadInput,
    ConfigError,
    CredentialsRejected,
    ObjectNotFound,
    StorageUnavailable,
)
from mountsync.shared.events import normalize_etag, to_ns
from mountsync.shared.storage.base import ObjectInfo, PartInfo, UploadSession
from mountsync.shared.storage.s3_bodies import (
    READ_BLOCK,
    b64_of_hex,
    check_etag,
    expect_end,
    md5_b64,
    md5_of,
    multipart_etag,
    read_exactly,
    seekable,
)
from mountsync.shared.storage.s3_client import make_s3_client
from mountsync.shared.storage.s3_crt import CrtPuts
from mountsync.shared.storage.streams import StreamWindow, TranslatingReader
from mountsync.shared.storage.url import StorageURL
from mountsync.shared.storage.versions import CHUNK as VERSION_CHUNK
from mountsync.shared.storage.versions import VersionBytes, http_range

MIN_PART_SIZE = 5 * 1024 * 1024  # S3's minimum for every part but the last
MAX_PART_SIZE = 5 * 1024 * 1024 * 1024
MAX_PARTS = 10_000
# put() sends up to PUT_INLINE_MAX from memory (botocore sends "Expect: 100-continue", an extra
# round trip, only for streamed bodies); above that a seekable stream (a local file) goes in
# one request read in place, up to PUT_STREAM_MAX, and other streams are buffered up to
# PUT_SINGLE_MAX. Larger ones go multipart.
PUT_INLINE_MAX = 16 * 1024 * 1024
PUT_STREAM_MAX = 5 * 1024 * 1024 * 1024  # S3's limit for one PutObject
PUT_SINGLE_MAX = 64 * 1024 * 1024
PUT_PART_SIZE = 16 * 1024 * 1024

# Inside the class ``list`` names the listing method, so annotations use this alias.
Parts = list[PartInfo]

NOT_FOUND_CODES = {"NoSuchKey", "404", "NotFound", "NoSuchVersion"}
DENIED_CODES = {
    "AccessDenied",
    "403",
    "Forbidden",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "InvalidToken",
    "AllAccessDisabled",
    "AccountProblem",
}
TRANSIENT_CODES = {
    "SlowDown",
    "RequestTimeout",
    "RequestTimeTooSkewed",
    "InternalError",
    "ServiceUnavailable",
    "Throttling",
    "ThrottlingException",
    "OperationAborted",
}


class S3Storage:
    """One S3 bucket through boto3; the client is created on first use."""

    streams_put = True  # put() sends a seekable stream in place, without buffering it
    verifies_sha256 = True  # put(sha256=...) is checked by the service and answered with it

    def __init__(self, url: StorageURL, options: Mapping[str, Any] | None = None) -> None:
        options = dict(options or {})
        self.url = url
        self.bucket = url.bucket
        self.endpoint_url: str | None = options.get("endpoint_url") or None
        if self.endpoint_url:
            from mountsync.shared.http_urls import check_http_url

            check_http_url(self.endpoint_url, "--endpoint-url", "http://HOST:PORT for MinIO")
        self.region: str | None = options.get("region") or None
        self.profile: str | None = options.get("credentials") or None
        self.addressing_style: str | None = options.get("addressing_style") or None
        self._client: Any = None
        # None until a put sent x-amz-checksum-sha256; False when the service did not answer with
        # it (an S3-compatible store that ignores flexible checksums and so checked nothing).
        self._sha256_echoed: bool | None = None
        # ``crt_puts``: bodies in memory go through the AWS CRT (s3_crt), for bulk copies
        self._crt = CrtPuts(lambda: self.client, self.bucket) if options.get("crt_puts") else None

    # -- client and errors ----------------------------------------------------------------

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = make_s3_client(self.url, self.profile, self.region, self.endpoint_url, self.addressing_style)
        return self._client

    def _where(self, key: str | None = None) -> str:
        location = f"s3://{self.bucket}/{key}" if key is not None else f"s3://{self.bucket}"
        if self.endpoint_url:
            location += f" at {self.endpoint_url}"
        return location

    def _translate(self, exc: Exception, key: str | None = None) -> Exception:
        """The project error for an SDK exception (the caller raises it ``from exc``)."""
        from botocore.exceptions import (
            BotoCoreError,
            ClientError,
            HTTPClientError,
            NoCredentialsError,
            ParamValidationError,
            PartialCredentialsError,
        )

        where = self._where(key)
        if isinstance(exc, ClientError):
            return self._translate_client_error(exc, where)
        if isinstance(exc, NoCredentialsError | PartialCredentialsError):
            return ConfigError(
                f"no usable AWS credentials for {where}: set AWS_ACCESS_KEY_ID/"
                "AWS_SECRET_ACCESS_KEY, a profile, or --credentials NAME"
            )
        if isinstance(exc, ParamValidationError):
            return BadInput(f"invalid request for {where}: {exc}")
        if isinstance(exc, HTTPClientError | BotoCoreError):
            return StorageUnavailable(f"S3 did not answer for {where}: {exc}")
        return exc

    def _translate_client_error(self, exc: Any, where: str) -> Exception:
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        message = error.get("Message") or code
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        if code == "NoSuchBucket":
            return BadInput(f"bucket {self.bucket!r} does not exist ({where})")
        if code == "BadDigest":
            return StorageUnavailable(
                f"S3 refused the body for {where}: it does not match its checksum (Content-MD5 or SHA-256; the source "
                "changed while it was sent, or it was damaged on the way); sending it again"
            )
        if code == "NoSuchUpload":
            return ObjectNotFound(f"multipart upload not found for {where}: {message}")
        if code in NOT_FOUND_CODES:
            return ObjectNotFound(f"{where} not found")
        if code in DENIED_CODES or status == 403:
            return CredentialsRejected(f"S3 refused access to {where}: {code}: {message}")
        if code in TRANSIENT_CODES or status >= 500 or status == 429:
            return StorageUnavailable(f"S3 error for {where}: {code}: {message}")
        return BadInput(f"S3 rejected the request for {where}: {code}: {message}")

    def _call(self, operation: str, key: str | None = None, **params: Any) -> Any:
        try:
            return getattr(self.client, operation)(Bucket=self.bucket, **params)
        except Exception as exc:
            raise self._translate(exc, key) from exc

    # -- reading --------------------------------------------------------------------------

    def list(self, prefix: str = "", *, recursive: bool = True) -> Iterator[ObjectInfo]:
        params: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix}
        if not recursive:
            params["Delimiter"] = "/"
        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(**params)
            for page in pages:
                # A folder marker ``prefix`` itself is listed: reindex files "a/" under folder "a".
                for item in page.get("Contents", ()):
                    yield _info_from_listing(item)
        except Exception as exc:
            raise self._translate(exc, prefix or None) from exc

    def stat(self, key: str) -> ObjectInfo:
        head = self._call("head_object", key, Key=key)
        return _info_from_head(key, head)

    def open(self, key: str) -> BinaryIO:
        response = self._call("get_object", key, Key=key)
        where = self._where(key)
        raw = TranslatingReader(
            response["Body"], lambda exc: StorageUnavailable(f"reading {where} failed midway: {exc}")
        )
        return io.BufferedReader(raw, READ_BLOCK)

    def read_version(self, key: str, version: str, *, start: int | None = None,
                     end: int | None = None) -> VersionBytes:  # fmt: skip
        """One object version (``VersionId``), or an inclusive byte range of it."""
        params: dict[str, Any] = {"Key": key, "VersionId": version}
        if (byte_range := http_range(start, end)) is not None:
            params["Range"] = byte_range
        response = self._call("get_object", key, **params)
        body = response["Body"]
        return VersionBytes(body.iter_chunks(VERSION_CHUNK), int(response["ContentLength"]),
                            response.get("ContentType") or "application/octet-stream",
                            (response.get("ETag") or "").strip('"') or None)  # fmt: skip

    def check(self, *, writable: bool) -> None:
        self._call("list_objects_v2", self.url.prefix or None, Prefix=self.url.prefix, MaxKeys=1)
        if not writable:
            return
        probe = f"{self.url.prefix}.mountsync-check-{uuid.uuid4().hex}"
        body = b"mountsync write check"
        self._call("put_object", probe, Key=probe, Body=body, ContentMD5=md5_b64(body))
        self._call("delete_object", probe, Key=probe)

    # -- writing --------------------------------------------------------------------------

    def put(
        self, key: str, stream: BinaryIO, size: int, *, md5: str | None = None, sha256: str | None = None
    ) -> ObjectInfo:
        """One PutObject the service checks: with ``sha256`` (hex) as x-amz-checksum-sha256 when the
        caller gives it and no ``md5``, else with Content-MD5 (``md5`` or computed here).

        Above ``PUT_INLINE_MAX`` a seekable stream (a local file) is sent from where it stands,
        in place, up to 5 GiB; its MD5 is read ahead of the request when one is needed. Other
        streams are buffered up to ``PUT_SINGLE_MAX``; longer ones go multipart."""
        if size < 0:
            raise BadInput(f"negative size for {self._where(key)}")
        where = self._where(key)
        by_sha256 = sha256 is not None and md5 is None and self._sha256_echoed is not False
        if PUT_INLINE_MAX < size <= PUT_STREAM_MAX and seekable(stream):
            start = stream.tell()
            if md5 is None and not by_sha256:
                md5 = md5_of(stream, size, where)
                stream.seek(start)
            body: Any = StreamWindow(stream, size)
        elif size > PUT_SINGLE_MAX:
            return self._put_multipart(key, stream, size)
        else:
            body = read_exactly(stream, size, where)
            expect_end(stream, size, where)
            if not by_sha256:
                md5 = md5 or hashlib.md5(body).hexdigest()
        if by_sha256:
            check = {"ChecksumAlgorithm": "SHA256", "ChecksumSHA256": b64_of_hex(str(sha256))}
        else:
            check = {"ContentMD5": b64_of_hex(str(md5))}
        response = self._put_object(key, body, size, check)
        etag = normalize_etag(response.get("ETag"))
        checksums: dict[str, str] = {}
        if by_sha256:
            echoed = response.get("ChecksumSHA256")
            if echoed:
                checksums["sha256"] = str(echoed)
            else:
                self._sha256_echoed = False  # from now on Content-MD5, which every S3 checks
                check_etag(body, size, etag, where)
        return ObjectInfo(key=key, size=size, etag=etag, version=response.get("VersionId"), checksums=checksums)

    def _put_object(self, key: str, body: Any, size: int, check: dict[str, str]) -> Mapping[str, Any]:
        """PutObject: a body in memory through the CRT where it can go (``s3_crt``), else botocore."""
        if self._crt is not None and isinstance(body, bytes):
            answer = self._crt.put(key, body, check)
            if answer is not None:
                return answer
        response: Mapping[str, Any] = self._call("put_object", key, Key=key, Body=body, ContentLength=size, **check)
        return response

    def _put_multipart(self, key: str, stream: BinaryIO, size: int) -> ObjectInfo:
        part_size = max(PUT_PART_SIZE, -(-size // MAX_PARTS))
        session = self.start_upload(key, part_size)
        try:
            parts: Parts = []
            remaining = size
            while remaining:
                data = read_exactly(stream, min(part_size, remaining), self._where(key))
                parts.append(self.upload_part(session, len(parts) + 1, data))
                remaining -= len(data)
            expect_end(stream, size, self._where(key))
            return self.complete_upload(session, parts)
        except BaseException:
            with contextlib.suppress(Exception):  # the original failure is the one to report
                self.abort_upload(session)
            raise

    def delete(self, key: str) -> None:
        self.stat(key)  # S3 deletes of missing keys succeed silently; callers want to know
        self._call("delete_object", key, Key=key)

    def start_upload(self, key: str, part_size: int) -> UploadSession:
        if not MIN_PART_SIZE <= part_size <= MAX_PART_SIZE:
            raise BadInput(f"part size {part_size} is outside S3's limits ({MIN_PART_SIZE}..{MAX_PART_SIZE})")
        response = self._call("create_multipart_upload", key, Key=key)
        return UploadSession(key=key, upload_id=response["UploadId"], part_size=part_size)

    def upload_part(self, session: UploadSession, number: int, data: bytes) -> PartInfo:
        if not 1 <= number <= MAX_PARTS:
            raise BadInput(f"part number {number} is outside 1..{MAX_PARTS}")
        response = self._call(
            "upload_part",
            session.key,
            Key=session.key,
            UploadId=session.upload_id,
            PartNumber=number,
            Body=data,
            ContentLength=len(data),
            ContentMD5=md5_b64(data),
        )
        return PartInfo(number=number, size=len(data), etag=normalize_etag(response["ETag"]) or "")

    def list_parts(self, session: UploadSession) -> Parts:
        params = {"Bucket": self.bucket, "Key": session.key, "UploadId": session.upload_id}
        try:
            pages = self.client.get_paginator("list_parts").paginate(**params)
            parts = [
                PartInfo(
                    number=int(part["PartNumber"]),
                    size=int(part["Size"]),
                    etag=normalize_etag(part["ETag"]) or "",
                )
                for page in pages
                for part in page.get("Parts", ())
            ]
        except Exception as exc:
            raise self._translate(exc, session.key) from exc
        return sorted(parts, key=lambda p: p.number)

    def complete_upload(self, session: UploadSession, parts: Parts) -> ObjectInfo:
        ordered: Parts = sorted(parts, key=lambda p: p.number)
        if not ordered:
            raise BadInput(f"cannot complete {self._where(session.key)} without parts")
        expected = sum(p.size for p in ordered)
        manifest = {"Parts": [{"PartNumber": p.number, "ETag": f'"{p.etag}"'} for p in ordered]}
        try:
            self._call(
                "complete_multipart_upload",
                session.key,
                Key=session.key,
                UploadId=session.upload_id,
                MultipartUpload=manifest,
            )
        except ObjectNotFound:
            # Completed before a crash? Then the object is there with the multipart ETag.
            return self._verify_completed(session.key, ordered, expected, already=True)
        return self._verify_completed(session.key, ordered, expected, already=False)

    def _verify_completed(self, key: str, parts: Parts, expected: int, *, already: bool) -> ObjectInfo:
        try:
            info = self.stat(key)
        except ObjectNotFound:
            if already:
                raise ObjectNotFound(
                    f"multipart upload for {self._where(key)} no longer exists and the object "
                    "is absent: start the upload again"
                ) from None
            raise
        if already and info.etag != multipart_etag(parts):
            raise ObjectNotFound(
                f"multipart upload for {self._where(key)} no longer exists and the object there "
                "is not the one these parts make: start the upload again"
            )
        if info.size != expected:
            raise StorageUnavailable(f"{self._where(key)} has {info.size} bytes after completion, expected {expected}")
        return info

    def abort_upload(self, session: UploadSession) -> None:
        try:
            self._call("abort_multipart_upload", session.key, Key=session.key, UploadId=session.upload_id)
        except ObjectNotFound:
            return  # already aborted or completed: nothing left to clean up


def _info_from_listing(item: Mapping[str, Any]) -> ObjectInfo:
    return ObjectInfo(
        key=item["Key"],
        size=int(item["Size"]),
        etag=normalize_etag(item.get("ETag")),
        modified_ns=to_ns(item["LastModified"]) if item.get("LastModified") else 0,
    )


def _info_from_head(key: str, head: Mapping[str, Any]) -> ObjectInfo:
    checksums = {
        name.removeprefix("Checksum").lower(): str(value)
        for name, value in head.items()
        if name.startswith("Checksum") and name != "ChecksumType" and value
    }
    return ObjectInfo(
        key=key,
        size=int(head["ContentLength"]),
        etag=normalize_etag(head.get("ETag")),
        version=head.get("VersionId"),
        modified_ns=to_ns(head["LastModified"]) if head.get("LastModified") else 0,
        checksums=checksums,
    )
