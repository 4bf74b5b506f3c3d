"""One error tree, shaped by what the caller must do about an error.

- ``BadInput``: the user (or a submitting service) gave something wrong; say what, exit 2.
- ``ConfigError``: configuration or environment is wrong; say what to change, exit 2.
- ``RetryableError``: try again later (back off); transports nack/release, tasks retry.
- ``InvalidEvent``: this payload can never be processed; dead-letter it with the reason.
- ``ObjectNotFound``: the object does not exist (also a ``FileNotFoundError``).
- ``PlatformUnavailable`` / ``PlatformAuthRejected`` / ``PlatformRequestRejected``: an annotation
  platform (Label Studio, Girder) is down (retry), refused the credentials (fix them), or refused
  one request (a bug or a changed API; retrying the same request will not help).
"""

from __future__ import annotations


class MountsyncError(Exception):
    """Base of every error mountsync raises on purpose."""

    exit_code = 1


class BadInput(MountsyncError):
    """A user or caller mistake; the message says which input and what to do."""

    exit_code = 2


class ConfigError(BadInput):
    """Settings or environment are wrong or incomplete."""


class MountNotFound(BadInput):
    """No mount with that name."""


class MountExists(BadInput):
    """A mount with that name exists already."""


class MissingExtra(ConfigError):
    """An optional dependency (a cloud SDK) is not installed."""


class RetryableError(MountsyncError):
    """Transient failure: the same call may succeed later."""


class StorageUnavailable(RetryableError):
    """The storage service did not answer or answered with a transient error."""


class ServiceUnavailable(RetryableError):
    """Redis or PostgreSQL did not answer."""


class CredentialsRejected(MountsyncError):
    """The provider refused the credentials or permissions for this operation."""

    exit_code = 1


class InvalidEvent(MountsyncError):
    """A payload that can never become an ObjectChange; it goes to the dead-letter store."""


class ObjectNotFound(MountsyncError, FileNotFoundError):
    """The object does not exist at the storage location."""


class PlatformUnavailable(RetryableError):
    """An annotation platform did not answer, or answered 5xx or 429; ``retry_after_s`` is its hint."""

    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class PlatformAuthRejected(ConfigError):
    """The platform refused the token or API key (401/403): retrying will not help, new credentials will."""


class PlatformRequestRejected(MountsyncError):
    """The platform refused one request (4xx other than auth); ``status`` is its HTTP status."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class PlatformRecordMissing(PlatformRequestRejected):
    """The task, item, file or folder named in the request does not exist (404)."""
