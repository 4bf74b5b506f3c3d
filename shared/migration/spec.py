"""The submission spec of a migration job (CONTRACT.md ``mountsync.submit_migration``).

``parse_spec`` turns the JSON a submitter sends into a frozen ``MigrationSpec`` or raises
``BadInput`` naming the first thing that is wrong. It is pure: no I/O, clock or environment.
Called twice per job: by ``client.submit`` (CLI, HTTP API: refuse a bad spec before queuing) or
``service.submit`` (a spec sent straight to the task), and by ``service.run_chunk`` (the spec
stored with the job, read back once per chunk task).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from mountsync.shared.errors import BadInput
from mountsync.shared.events import Provider
from mountsync.shared.migration.plan import CHUNK_BYTES, CHUNK_SIZE, destination_key, safe_relative_path
from mountsync.shared.migration.plan import Entry as Item  # one thing to copy; path relative to the source
from mountsync.shared.storage.url import StorageURL, parse_storage_url

MiB = 1024 * 1024
MAX_INLINE_ITEMS = 100_000
JOB_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
TASK_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.:-]{0,199}$")
HEX = {"sha256": re.compile(r"^[0-9a-f]{64}$"), "md5": re.compile(r"^[0-9a-f]{32}$")}
# Per-side storage options a spec may carry; secrets never travel in task arguments.
STORAGE_OPTION_KEYS = frozenset(
    {"endpoint_url", "region", "credentials", "account_url", "addressing_style", "project",
     "user_project", "anonymous"}
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Callback:
    """Where finished links go: an HTTP(S) URL, or a Celery task name on a queue."""

    url: str | None = None
    task: str | None = None
    queue: str | None = None

    def to_wire(self) -> dict[str, str]:
        if self.url:
            return {"url": self.url}
        return {"task": self.task or "", "queue": self.queue or ""}


@dataclass(frozen=True, slots=True)
class TransferOptions:
    """Tuning. Defaults follow the bulk-copy tools: 8 MiB parts (aws-cli; rclone 5 MiB, s5cmd
    50 MiB), 5 parts in flight per file (s5cmd; rclone 4), 16 files in flight per chunk task
    (rclone 4, s5cmd 256), files up to 200 MiB in one request (rclone's upload cutoff; only
    local files streamed to S3 or fs go that high, everything else buffered is capped at
    16 MiB), and at most 96 MiB of part buffers per process, so a worker stays under 300 MB
    of memory. A file sent in one request restarts from its beginning after a crash; larger
    ones resume part by part. Chunks hold at most ``chunk_size`` items and ``chunk_bytes``
    bytes (a larger file is a chunk of its own), so big files spread over the workers."""

    part_size: int = 8 * MiB
    multipart_threshold: int = 200 * MiB
    part_concurrency: int = 5
    concurrency: int = 16
    max_buffer_bytes: int = 96 * MiB
    max_attempts: int = 5
    retry_base_s: float = 1.0
    retry_max_s: float = 60.0
    callback_attempts: int = 10
    skip_existing: bool = True
    chunk_size: int = CHUNK_SIZE
    chunk_bytes: int = CHUNK_BYTES
    source_storage: Mapping[str, str | bool] = field(default_factory=dict)
    destination_storage: Mapping[str, str | bool] = field(default_factory=dict)

    def to_wire(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["source_storage"] = dict(self.source_storage)
        out["destination_storage"] = dict(self.destination_storage)
        return out


@dataclass(frozen=True, slots=True)
class MigrationSpec:
    """A validated submission. ``items`` is None when the whole source prefix is migrated."""

    source: StorageURL
    destination: StorageURL
    items: tuple[Item, ...] | None = None
    callback: Callback | None = None
    options: TransferOptions = field(default_factory=TransferOptions)
    job_id: str | None = None

    def to_wire(self, *, with_items: bool = True) -> dict[str, Any]:
        """The JSON form ``parse_spec`` accepts (round-trips)."""
        out: dict[str, Any] = {
            "source": url_text(self.source),
            "destination": url_text(self.destination),
            "options": self.options.to_wire(),
        }
        if self.job_id:
            out["job_id"] = self.job_id
        if self.callback:
            out["callback"] = self.callback.to_wire()
        if with_items and self.items is not None:
            out["items"] = [item_to_wire(i) for i in self.items]
        return out


def url_text(url: StorageURL) -> str:
    return str(url)


def item_to_wire(item: Item) -> dict[str, Any]:
    out: dict[str, Any] = {"entity_id": item.entity_id, "path": item.path}
    for name in ("size", "sha256", "md5"):
        value = getattr(item, name)
        if value is not None:
            out[name] = value
    return out


def parse_spec(data: Any) -> MigrationSpec:
    """Validate a submission; ``BadInput`` says which field is wrong and why."""
    if not isinstance(data, Mapping):
        raise BadInput(f"a migration spec must be a JSON object, got {type(data).__name__}")
    unknown = set(data) - {"source", "destination", "items", "callback", "options", "job_id"}
    if unknown:
        raise BadInput(f"unknown spec field(s): {', '.join(sorted(unknown))}")
    source = _url(data, "source")
    destination = _url(data, "destination")
    _check_disjoint(source, destination)
    options = parse_options(data.get("options"))
    items = None if data.get("items") is None else _items(data["items"], destination)
    return MigrationSpec(
        source=source,
        destination=destination,
        items=items,
        callback=parse_callback(data.get("callback")),
        options=options,
        job_id=parse_job_id(data.get("job_id")),
    )


def parse_job_id(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not JOB_ID_RE.match(value):
        raise BadInput(f"job_id {value!r} must be 1-128 characters of letters, digits, '.', '_', ':' or '-'")
    return value


def _url(data: Mapping[str, Any], name: str) -> StorageURL:
    value = data.get(name)
    if not isinstance(value, str) or not value:
        raise BadInput(f"spec field {name!r} is required: a storage URL like s3://bucket/prefix")
    try:
        return parse_storage_url(value)
    except BadInput as exc:
        raise BadInput(f"{name}: {exc}") from None


def _location(url: StorageURL) -> tuple[str, str, str]:
    if url.provider is Provider.FS:
        return (url.provider.value, "", url.bucket.rstrip("/") + "/")
    return (url.provider.value, url.bucket, url.prefix)


def _check_disjoint(source: StorageURL, destination: StorageURL) -> None:
    """Refuse overlapping locations: listing a source while writing into it never ends."""
    s_provider, s_bucket, s_path = _location(source)
    d_provider, d_bucket, d_path = _location(destination)
    if (s_provider, s_bucket) != (d_provider, d_bucket):
        return
    if s_path.startswith(d_path) or d_path.startswith(s_path):
        raise BadInput(
            f"destination {destination} overlaps the source {source}; "
            "copy to a different bucket or a prefix outside the source"
        )


def parse_callback(value: Any) -> Callback | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise BadInput('callback must be {"url": URL} or {"task": NAME, "queue": QUEUE}')
    if set(value) == {"url"}:
        return Callback(url=_callback_url(value["url"]))
    if set(value) == {"task", "queue"}:
        task, queue = value["task"], value["queue"]
        if not isinstance(task, str) or not TASK_NAME_RE.match(task):
            raise BadInput(f"callback task {task!r} is not a valid Celery task name")
        if not isinstance(queue, str) or not TASK_NAME_RE.match(queue):
            raise BadInput(f"callback queue {queue!r} is not a valid queue name")
        return Callback(task=task, queue=queue)
    raise BadInput('callback must be {"url": URL} or {"task": NAME, "queue": QUEUE}')


def _callback_url(value: Any) -> str:
    from urllib.parse import urlsplit

    if not isinstance(value, str):
        raise BadInput("callback url must be a string")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BadInput(f"callback url {value!r} must be an http:// or https:// URL")
    if parts.password is not None:
        raise BadInput("callback url must not carry a password (it would show in task arguments)")
    return value


def parse_options(value: Any) -> TransferOptions:
    if value is None:
        return TransferOptions()
    if not isinstance(value, Mapping):
        raise BadInput("options must be a JSON object")
    defaults = TransferOptions()
    known = {f.name for f in fields(TransferOptions)}
    unknown = set(value) - known
    if unknown:
        raise BadInput(f"unknown option(s): {', '.join(sorted(unknown))}; known: {', '.join(sorted(known))}")
    values: dict[str, Any] = {}
    for name, raw in value.items():
        values[name] = _option(name, raw, getattr(defaults, name))
    options = TransferOptions(**values)
    _check_options(options)
    return options


def _option(name: str, raw: Any, default: Any) -> Any:
    if isinstance(default, Mapping):
        return _storage_options(name, raw)
    if isinstance(default, bool):
        if not isinstance(raw, bool):
            raise BadInput(f"option {name} must be true or false")
        return raw
    if isinstance(default, int):
        if isinstance(raw, bool) or not isinstance(raw, int):
            raise BadInput(f"option {name} must be an integer, got {raw!r}")
        return raw
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        raise BadInput(f"option {name} must be a number, got {raw!r}")
    return float(raw)


def _storage_options(name: str, raw: Any) -> dict[str, str | bool]:
    if not isinstance(raw, Mapping):
        raise BadInput(f"option {name} must be an object")
    unknown = set(raw) - STORAGE_OPTION_KEYS
    if unknown:
        raise BadInput(
            f"option {name} takes only {', '.join(sorted(STORAGE_OPTION_KEYS))}; "
            f"got {', '.join(sorted(unknown))} (secrets never go in a spec: name a credential "
            "set with 'credentials')"
        )
    if not all(isinstance(v, str | bool) for v in raw.values()):
        raise BadInput(f"option {name} values must be strings (or true/false)")
    return dict(raw)


def _check_options(o: TransferOptions) -> None:
    rules = [
        (5 * MiB <= o.part_size <= 5 * 1024 * MiB, "part_size must be 5 MiB .. 5 GiB"),
        (o.part_size % (256 * 1024) == 0, "part_size must be a multiple of 256 KiB (GCS rule)"),
        (o.multipart_threshold >= 0, "multipart_threshold must be >= 0"),
        (1 <= o.part_concurrency <= 64, "part_concurrency must be 1..64"),
        (1 <= o.concurrency <= 256, "concurrency must be 1..256"),
        (o.max_buffer_bytes >= o.part_size, "max_buffer_bytes must be at least part_size"),
        (1 <= o.max_attempts <= 100, "max_attempts must be 1..100"),
        (1 <= o.callback_attempts <= 100, "callback_attempts must be 1..100"),
        (0 <= o.retry_base_s <= o.retry_max_s <= 3600, "need 0 <= retry_base_s <= retry_max_s"),
        (1 <= o.chunk_size <= CHUNK_SIZE, f"chunk_size must be 1..{CHUNK_SIZE}"),
        (o.chunk_bytes >= MiB, "chunk_bytes must be at least 1 MiB"),
    ]
    for ok, reason in rules:
        if not ok:
            raise BadInput(f"bad options: {reason}")


def _items(value: Any, destination: StorageURL) -> tuple[Item, ...]:
    if not isinstance(value, list):
        raise BadInput("items must be a list of {entity_id, path} objects")
    if len(value) > MAX_INLINE_ITEMS:
        raise BadInput(
            f"{len(value)} items exceed {MAX_INLINE_ITEMS} per job; split the list into "
            "several jobs or migrate a source prefix"
        )
    items = tuple(parse_item(raw, index) for index, raw in enumerate(value))
    _check_unique(items, destination)
    return items


def parse_item(raw: Any, index: int) -> Item:
    where = f"items[{index}]"
    if not isinstance(raw, Mapping):
        raise BadInput(f"{where} must be an object with entity_id and path")
    unknown = set(raw) - {"entity_id", "path", "size", "sha256", "md5"}
    if unknown:
        raise BadInput(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
    entity = raw.get("entity_id")
    if isinstance(entity, int) and not isinstance(entity, bool):
        entity = str(entity)
    if not isinstance(entity, str) or not entity or len(entity) > 1024:
        raise BadInput(f"{where}: entity_id must be a non-empty string")
    try:
        path = safe_relative_path(raw.get("path"))
    except BadInput as exc:
        raise BadInput(f"{where} ({entity}): {exc}") from None
    size = raw.get("size")
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 0):
        raise BadInput(f"{where} ({entity}): size must be a non-negative integer")
    sums = {}
    for algo, pattern in HEX.items():
        digest = raw.get(algo)
        if digest is not None:
            if not isinstance(digest, str) or not pattern.match(digest.lower()):
                raise BadInput(f"{where} ({entity}): {algo} must be a hex digest")
            sums[algo] = digest.lower()
    return Item(entity_id=entity, path=path, size=size, **sums)


def _check_unique(items: tuple[Item, ...], destination: StorageURL) -> None:
    entities: dict[str, int] = {}
    keys: dict[str, int] = {}
    for index, item in enumerate(items):
        first = entities.setdefault(item.entity_id, index)
        if first != index:
            raise BadInput(f"items[{index}]: entity_id {item.entity_id!r} repeats items[{first}]")
        key = destination_key(destination.prefix, item.path)
        first = keys.setdefault(key, index)
        if first != index:
            raise BadInput(f"items[{index}] ({item.entity_id}) and items[{first}] both map to destination key {key!r}")
