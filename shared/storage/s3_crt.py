"""PutObject of an in-memory body through the AWS Common Runtime (``awscrt``), when it is installed
and the storage was opened with ``crt_puts`` (the migration's bulk copies do).

botocore spends about 3 ms of CPU on every request (endpoint rules, event hooks, signing, header
parsing, all in Python); a migration of many small files spent most of its CPU there. The CRT
signs and sends the same request in C for well under half of that. botocore still decides where
the bucket lives: the URL it builds for one probe key (a presigned URL, so nothing is sent) gives
the prefix every key is appended to, percent-encoded as botocore encodes keys.

Only the plain case goes this way: the caller sends the checksum headers (S3 checks the body
against them) and reads the ETag and the echoed checksum from the answer. A response other than
200, a transport error or a timeout returns None, and the caller sends the request again through
botocore (redirects to another region, error codes and retries stay botocore's), and stops
using this path for that storage.
"""

from __future__ import annotations

import io
import os
import threading
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from mountsync.shared.storage.s3_client import session_of

PROBE_KEY = "mountsync-probe"
# put_object parameters the caller gives, as the headers botocore would send for them
HEADERS = {
    "ChecksumAlgorithm": "x-amz-sdk-checksum-algorithm",
    "ChecksumSHA256": "x-amz-checksum-sha256",
    "ContentMD5": "Content-MD5",
}
# response headers, as the keys of botocore's put_object answer
ANSWER = {"etag": "ETag", "x-amz-checksum-sha256": "ChecksumSHA256", "x-amz-version-id": "VersionId"}
REQUEST_TIMEOUT_S = 300.0
_BOOTSTRAP: tuple[int, Any] | None = None  # (pid, ClientBootstrap): event-loop threads do not survive a fork
_BOOTSTRAP_LOCK = threading.Lock()


class CrtPuts:
    """The CRT path of one storage: built on first use (once, whichever thread comes first), and
    given up for good after its first failure (botocore sends every put from then on)."""

    def __init__(self, client: Callable[[], Any], bucket: str) -> None:
        self._client, self._bucket = client, bucket
        self._built = False
        self._put: CrtPut | None = None  # None before it is built, and once it is given up
        self._lock = threading.Lock()

    def put(self, key: str, body: bytes, params: dict[str, str]) -> dict[str, str] | None:
        """``CrtPut.put``, or None when the caller must send it through botocore."""
        if not self._built:
            with self._lock:
                if not self._built:
                    client = self._client()
                    self._put = CrtPut.for_client(client, self._bucket, session_of(client))
                    self._built = True
        crt = self._put
        if crt is None:
            return None
        answer = crt.put(key, body, params)
        if answer is None:
            self._put = None
        return answer


class CrtPut:
    """Sends PutObject requests for one bucket through a CRT S3 client."""

    def __init__(self, crt_client: Any, host: str, path_prefix: str) -> None:
        self._client, self._host, self._path_prefix = crt_client, host, path_prefix

    @classmethod
    def for_client(cls, client: Any, bucket: str, session: Any) -> CrtPut | None:
        """The fast path for a botocore S3 ``client`` of ``bucket`` (built from ``session``); None
        when it cannot send the way botocore would (no awscrt, no credentials, a proxy)."""
        try:
            import awscrt.auth
            import awscrt.s3
        except ImportError:
            return None
        credentials = session.get_credentials()
        if credentials is None or client.meta.config.proxies or _proxies_from_environment():
            return None
        try:
            url = client.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": PROBE_KEY})
        except Exception:  # any doubt about the URL: botocore sends everything
            return None
        parts = urlsplit(url)
        if not parts.path.endswith(f"/{PROBE_KEY}"):
            return None
        provider = awscrt.auth.AwsCredentialsProvider.new_delegate(lambda: _frozen(credentials))
        signing = awscrt.s3.create_default_s3_signing_config(
            region=client.meta.region_name or "us-east-1", credential_provider=provider
        )
        https = parts.scheme == "https"
        crt_client = awscrt.s3.S3Client(
            bootstrap=_bootstrap(),
            region=client.meta.region_name or "us-east-1",
            signing_config=signing,
            tls_mode=awscrt.s3.S3RequestTlsMode.ENABLED if https else awscrt.s3.S3RequestTlsMode.DISABLED,
            tls_connection_options=_tls_options(session.get_config_variable("ca_bundle")) if https else None,
            memory_limit=1024**3,  # a ceiling, not an allocation: buffers are taken as bodies need them
            connect_timeout_ms=10_000,
        )
        return cls(crt_client, parts.netloc, parts.path[: -len(PROBE_KEY)])

    def put(self, key: str, body: bytes, params: dict[str, str]) -> dict[str, str] | None:
        """``put_object(Key=key, Body=body, **params)`` (only the ``HEADERS`` parameters): its answer
        shaped like botocore's (ETag, ChecksumSHA256, VersionId), or None: send it through botocore."""
        import awscrt.http
        import awscrt.s3
        from botocore.utils import percent_encode

        path = self._path_prefix + percent_encode(key, safe="/~")
        fields = [("Host", self._host), ("Content-Length", str(len(body)))]
        fields += [(HEADERS[name], value) for name, value in params.items()]
        request = awscrt.http.HttpRequest("PUT", path, awscrt.http.HttpHeaders(fields), io.BytesIO(body))
        answer: dict[str, Any] = {}

        def on_headers(status_code: int, headers: list[tuple[str, str]], **_: Any) -> None:
            answer["status"], answer["headers"] = status_code, headers

        try:
            meta = self._client.make_request(
                type=awscrt.s3.S3RequestType.DEFAULT, operation_name="PutObject", request=request,
                on_headers=on_headers,
            )  # fmt: skip
            meta.finished_future.result(REQUEST_TIMEOUT_S)
        except Exception:  # error answers, transport errors, timeouts: botocore decides
            return None
        if answer.get("status") != 200:
            return None
        return {ANSWER[name.lower()]: value for name, value in answer["headers"] if name.lower() in ANSWER}


def _frozen(credentials: Any) -> Any:
    import awscrt.auth

    frozen = credentials.get_frozen_credentials()  # refreshed by botocore when they expire
    return awscrt.auth.AwsCredentials(frozen.access_key, frozen.secret_key, frozen.token)


def _bootstrap() -> Any:
    """One event-loop thread and resolver per process, created after any fork."""
    global _BOOTSTRAP
    import awscrt.io

    with _BOOTSTRAP_LOCK:
        if _BOOTSTRAP is None or _BOOTSTRAP[0] != os.getpid():
            loops = awscrt.io.EventLoopGroup(1)
            _BOOTSTRAP = (os.getpid(), awscrt.io.ClientBootstrap(loops, awscrt.io.DefaultHostResolver(loops)))
        return _BOOTSTRAP[1]


def _tls_options(ca_bundle: str | None) -> Any:
    """TLS that trusts what botocore trusts: its CA bundle when one is configured, else the system's."""
    import awscrt.io

    if not ca_bundle:
        return None
    options = awscrt.io.TlsContextOptions()
    options.override_default_trust_store_from_path(ca_filepath=ca_bundle)
    return awscrt.io.ClientTlsContext(options).new_connection_options()


def _proxies_from_environment() -> bool:
    from urllib.request import getproxies

    return bool(getproxies())
