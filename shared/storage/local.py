"""Local directory storage (``file:///abs/path``): keys are '/'-separated paths under the root."""

from __future__ import annotations

import hashlib
import importlib
import io
import os
import shutil
import stat as stat_mod
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, BinaryIO

from mountsync.shared.errors import BadInput, CredentialsRejected, ObjectNotFound, StorageUnavailable
from mountsync.shared.storage.base import ObjectInfo, PartInfo, Parts, UploadSession
from mountsync.shared.storage.url import StorageURL

# Staging area for resumable uploads; never listed as content.
UPLOADS_DIR = ".mountsync-uploads"
COPY_BLOCK = 1024 * 1024


def _md5_constructor() -> Callable[[bytes], Any]:
    """CPython's own MD5 where it is built (it always is, short of a stripped interpreter):
    ``hashlib.md5`` goes through OpenSSL 3, which sets up a context per call that costs more
    than hashing one file's 40-byte fingerprint line."""
    try:
        md5: Callable[[bytes], Any] = importlib.import_module("_md5").md5
    except ImportError:  # pragma: no cover - an interpreter built without it
        return hashlib.md5
    return md5


_MD5 = _md5_constructor()
_DIGEST = type(_MD5(b"")).digest  # unbound: ``map`` calls it without building a bound method per file


def fs_etag(st: os.stat_result) -> str:
    """Cheap change token for a file: mtime and size (content hashing would make listing O(bytes))."""
    return f"{st.st_mtime_ns:x}-{st.st_size:x}"


def folder_fingerprint(key_prefix: str, lines: list[str]) -> int:
    """XOR of ``fingerprint_hash`` over a folder's files, given as "name|size|etag" lines under
    ``key_prefix``, in a few C loops rather than Python steps per file: the keys are completed and
    encoded as one string (no NUL in a key or an etag), each line is hashed, and the digests are
    joined into one integer whose 128-bit chunks are XOR-ed together by halving it; the top 64
    bits of the last chunk are the XOR of the digests' first 8 bytes."""
    text = key_prefix + ("\0" + key_prefix).join(lines)
    chunks = len(lines)
    folded = int.from_bytes(
        b"".join(map(_DIGEST, map(_MD5, text.encode("utf-8", "surrogateescape").split(b"\0")))), "big"
    )
    while chunks > 1:
        half = chunks >> 1
        bits = half << 7
        folded = (folded >> bits) ^ (folded & ((1 << bits) - 1))
        chunks -= half
    top = folded >> 64
    return top - (1 << 64) if top >> 63 else top


def info_from_stat(key: str, st: os.stat_result) -> ObjectInfo:
    return ObjectInfo(key=key, size=st.st_size, etag=fs_etag(st), modified_ns=st.st_mtime_ns)


class LocalStorage:
    """A directory tree as a bucket. Symlinks are not followed (no cycles, no escaping the root)."""

    streams_put = True  # put() copies from the stream in blocks

    def __init__(self, url: StorageURL, options: Mapping[str, Any] | None = None) -> None:
        self.url = url
        self.root = Path(url.bucket)

    def _path(self, key: str) -> Path:
        parts = key.split("/")
        if not key or key.startswith("/") or any(p in ("", ".", "..") for p in parts):
            raise BadInput(f"{key!r} is not a valid key under {self.root}")
        return self.root.joinpath(*parts)

    def list(self, prefix: str = "", *, recursive: bool = True) -> Iterator[ObjectInfo]:
        start = self.root / prefix.strip("/") if prefix.strip("/") else self.root
        if not start.is_dir():
            if not self.root.is_dir():
                raise StorageUnavailable(f"directory {self.root} does not exist")
            return
        base = prefix.strip("/")
        yield from self._walk(str(start), f"{base}/" if base else "", recursive)

    def _walk(self, path: str, key_prefix: str, recursive: bool) -> Iterator[ObjectInfo]:
        subdirs: list[tuple[str, str]] = []
        try:
            with os.scandir(path) as entries:
                for entry in entries:
                    if entry.is_dir(follow_symlinks=False):
                        if recursive and entry.name != UPLOADS_DIR:
                            subdirs.append((entry.path, f"{key_prefix}{entry.name}/"))
                    elif entry.is_file(follow_symlinks=False):
                        try:
                            st = entry.stat(follow_symlinks=False)
                        except FileNotFoundError:
                            continue  # removed while listing: the watcher reports it
                        yield info_from_stat(key_prefix + entry.name, st)
        except FileNotFoundError:
            return
        except PermissionError as exc:
            raise CredentialsRejected(f"cannot read {path}: permission denied") from exc
        for sub_path, sub_prefix in subdirs:
            yield from self._walk(sub_path, sub_prefix, recursive)

    def folder_summaries(self, prefix: str = "") -> Iterator[tuple[str, int, int, int]]:
        """(folder, objects, bytes, fingerprint) per directory, as ``mountsync.workers.reindex`` computes them
        from ``list()``, without building an ``ObjectInfo`` per file (the reconcile's hot path)."""
        base = prefix.strip("/")
        start = str(self.root / base) if base else str(self.root)
        if not os.path.isdir(start):
            if not self.root.is_dir():
                raise StorageUnavailable(f"directory {self.root} does not exist")
            return
        stack = [(start, base)]
        while stack:
            path, folder = stack.pop()
            key_prefix = f"{folder}/" if folder else ""
            try:
                fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
            except (FileNotFoundError, NotADirectoryError):
                continue
            except PermissionError as exc:
                raise CredentialsRejected(f"cannot read {path}: permission denied") from exc
            try:
                lines, total = _summarize_directory(fd, path, key_prefix, stack)
            finally:
                os.close(fd)
            if lines:
                yield folder, len(lines), total, folder_fingerprint(key_prefix, lines)

    def stat(self, key: str) -> ObjectInfo:
        try:
            st = os.stat(self._path(key), follow_symlinks=False)
        except (FileNotFoundError, NotADirectoryError):
            raise ObjectNotFound(f"{key!r} not found under {self.root}") from None
        if not stat_mod.S_ISREG(st.st_mode):
            raise ObjectNotFound(f"{key!r} under {self.root} is not a regular file")
        return info_from_stat(key, st)

    def open(self, key: str) -> BinaryIO:
        try:
            return open(self._path(key), "rb")
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise ObjectNotFound(f"{key!r} not found under {self.root}") from None

    def check(self, *, writable: bool) -> None:
        if not self.root.is_dir():
            raise BadInput(f"directory {self.root} does not exist; create it or fix the URL")
        if not os.access(self.root, os.R_OK | os.X_OK):
            raise CredentialsRejected(f"directory {self.root} is not readable by this user")
        next(self.list(), None)
        if writable:
            probe = f".mountsync-check-{uuid.uuid4().hex}"
            try:
                self.put(probe, io.BytesIO(b"mountsync write check"), 21)
                self.delete(probe)
            except PermissionError as exc:
                raise CredentialsRejected(f"directory {self.root} is not writable") from exc

    def put(
        self, key: str, stream: BinaryIO, size: int, *, md5: str | None = None, sha256: str | None = None
    ) -> ObjectInfo:
        """Write exactly ``size`` bytes of ``stream`` to a temporary file and move it into place.

        A stream that ends early or holds more than ``size`` bytes, or whose bytes do not hash to
        ``md5`` (hex, when given), publishes nothing and raises ``StorageUnavailable``, as S3's
        BadDigest does: the source changed while it was copied, and hashing it again and sending
        it again may succeed."""
        where = f"{key!r} under {self.root}"
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.part")
        try:
            with open(tmp, "wb") as out:
                digest = _copy_exactly(stream, out, size, where, hashlib.md5() if md5 is not None else None)
                if md5 is not None and digest != md5.lower():
                    raise StorageUnavailable(
                        f"the bytes written for {where} do not match their MD5 (the source changed while "
                        "it was copied); not published, sending it again"
                    )
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, target)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return self.stat(key)

    def delete(self, key: str) -> None:
        try:
            os.unlink(self._path(key))
        except FileNotFoundError:
            raise ObjectNotFound(f"{key!r} not found under {self.root}") from None

    # Resumable writer: parts are files in a staging directory, concatenated on completion.
    def _session_dir(self, session: UploadSession) -> Path:
        return self.root / UPLOADS_DIR / session.upload_id

    def start_upload(self, key: str, part_size: int) -> UploadSession:
        self._path(key)
        if part_size <= 0:
            raise BadInput(f"part size must be positive, got {part_size}")
        session = UploadSession(key=key, upload_id=uuid.uuid4().hex, part_size=part_size)
        self._session_dir(session).mkdir(parents=True)
        return session

    def upload_part(self, session: UploadSession, number: int, data: bytes) -> PartInfo:
        directory = self._session_dir(session)
        if not directory.is_dir():
            raise ObjectNotFound(f"upload {session.upload_id} for {session.key!r} does not exist")
        final = directory / f"{number:06d}"
        tmp = directory / f"{number:06d}.tmp"
        tmp.write_bytes(data)
        os.replace(tmp, final)
        return PartInfo(number=number, size=len(data), etag=hashlib.md5(data).hexdigest())

    def list_parts(self, session: UploadSession) -> Parts:
        directory = self._session_dir(session)
        if not directory.is_dir():
            raise ObjectNotFound(f"upload {session.upload_id} for {session.key!r} does not exist")
        parts = []
        for path in sorted(directory.glob("[0-9]" * 6)):
            data = path.read_bytes()
            parts.append(PartInfo(int(path.name), len(data), hashlib.md5(data).hexdigest()))
        return parts

    def complete_upload(self, session: UploadSession, parts: Parts) -> ObjectInfo:
        ordered = sorted(parts, key=lambda p: p.number)
        if not ordered or [p.number for p in ordered] != list(range(1, len(ordered) + 1)):
            raise BadInput(f"{session.key!r} under {self.root}: parts must be 1..n without gaps")
        directory = self._session_dir(session)
        if not directory.is_dir():
            return self._completed_before(session, sum(p.size for p in ordered))
        missing = [p.number for p in ordered if not (directory / f"{p.number:06d}").is_file()]
        if missing:
            raise BadInput(f"{session.key!r} under {self.root}: parts {missing} were never uploaded")
        target = self._path(session.key)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = directory / "assembled"
        with open(tmp, "wb") as out:
            for part in ordered:
                with open(directory / f"{part.number:06d}", "rb") as src:
                    shutil.copyfileobj(src, out, 1024 * 1024)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, target)
        shutil.rmtree(directory, ignore_errors=True)
        return self.stat(session.key)

    def _completed_before(self, session: UploadSession, expected: int) -> ObjectInfo:
        """A second completion after a crash hid the first one's answer: the object is there."""
        try:
            info = self.stat(session.key)
        except ObjectNotFound:
            info = None
        if info is None or info.size != expected:
            raise ObjectNotFound(
                f"upload {session.upload_id} for {session.key!r} no longer exists and the file is not "
                "the one these parts make: start the upload again"
            )
        return info

    def abort_upload(self, session: UploadSession) -> None:
        shutil.rmtree(self._session_dir(session), ignore_errors=True)


def _summarize_directory(fd: int, path: str, key_prefix: str, subdirs: list[tuple[str, str]]) -> tuple[list[str], int]:
    """The "name|size|etag" lines (as ``fingerprint_hash`` spells them, less the folder) and total
    bytes of the files in the directory open as ``fd``; its subdirectories are appended to
    ``subdirs``. Listed through the descriptor, each file's stat is an ``fstatat`` of its name
    alone: the kernel does not walk the whole path again for every file (a fifth to a quarter of
    the listing's system time, in folders of 1,000 files)."""
    lines: list[str] = []
    append = lines.append
    total = 0
    try:
        with os.scandir(fd) as entries:
            for entry in entries:
                if entry.is_file(follow_symlinks=False):
                    try:
                        st = entry.stat(follow_symlinks=False)
                    except FileNotFoundError:
                        continue  # removed while listing: the watcher reports it
                    size = st.st_size
                    append("%s|%d|%x-%x" % (entry.name, size, st.st_mtime_ns, size))  # noqa: UP031 - the fastest spelling, on the hot path
                    total += size
                elif entry.is_dir(follow_symlinks=False) and entry.name != UPLOADS_DIR:
                    subdirs.append((os.path.join(path, entry.name), key_prefix + entry.name))
    except PermissionError as exc:
        raise CredentialsRejected(f"cannot read {path}: permission denied") from exc
    return lines, total


def _copy_exactly(stream: BinaryIO, out: BinaryIO, size: int, where: str, digest: Any = None) -> str | None:
    """Copy exactly ``size`` bytes of ``stream`` to ``out``, updating ``digest`` (a hashlib
    object) on the way; ``StorageUnavailable`` if the stream ends early or goes on. Returns
    the digest's hex value (None without one)."""
    remaining = size
    while remaining > 0:
        block = stream.read(min(remaining, COPY_BLOCK))
        if not block:
            raise StorageUnavailable(
                f"the source for {where} ended after {size - remaining} of {size} bytes (it changed while "
                "it was copied)"
            )
        out.write(block)
        if digest is not None:
            digest.update(block)
        remaining -= len(block)
    if stream.read(1):
        raise StorageUnavailable(
            f"the source for {where} is longer than the {size} bytes announced (it changed while it was copied)"
        )
    return digest.hexdigest() if digest is not None else None
