"""The one registry of event sources: what each source is made of, looked up by its ``Source``.

Every other module asks this registry instead of matching source names: the CLI adds the
``mountsync produce NAME`` commands of ``cli_module``s, ``serve`` builds its push routes from
``push``, the inbox drainer and replay take ``normalizer`` and ``enricher`` from here. Adding a
source is one entry (and its modules); nothing else matches its name. The names themselves are
defined once, as members of ``mountsync.shared.events.Source``.

Factories import lazily, so a missing cloud SDK only disables its own source.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from mountsync.producers.base import Enricher, Normalizer
from mountsync.shared.errors import InvalidEvent, MissingExtra
from mountsync.shared.events import Provider, Source


@dataclass(frozen=True)
class NormalizeOptions:
    """What a normalizer may be configured with (the producers' flags; replay's options)."""

    trust_sequencer: bool = True
    azure_accounts: tuple[str, ...] = ()


@dataclass(frozen=True)
class PushRoute:
    """An HTTP endpoint of ``mountsync serve`` that receives this source's notifications."""

    path: str
    methods: tuple[str, ...]
    handler: str  # "module:function", resolved on the first request
    inbox: bool = False  # answers after one Redis append; a drainer in serve batches the inbox
    # "module:function" (runtime, settings) -> EventEntries, when the endpoint queues raw events
    event_entries: str | None = None
    # Settings any one of which authenticates senders; serve refuses to start without (README).
    auth_settings: tuple[str, ...] = ()


@dataclass(frozen=True)
class SourceEntry:
    """One event source: its normalizer, its enricher, its CLI command and its push endpoint."""

    source: Source
    normalizer: Callable[[NormalizeOptions], Normalizer]
    enricher: Callable[[Any], Enricher] | None = None  # pool -> enricher; None: events are complete
    cli_module: str | None = None  # defines register(produce_app): adds `mountsync produce NAME`
    push: PushRoute | None = None
    delivered_as: Source | None = None  # messages travel (and dead-letter) as another source

    @property
    def transport(self) -> Source:
        """The source its messages and dead letters carry."""
        return self.delivered_as or self.source


# -- normalizers (pure) ---------------------------------------------------------------------


def _fs_normalizer(options: NormalizeOptions) -> Normalizer:
    from mountsync.producers.normalize.fs import normalize_fs

    return normalize_fs


def _s3_normalizer(options: NormalizeOptions) -> Normalizer:
    from mountsync.producers.normalize.s3 import make_normalizer

    return make_normalizer(trust_sequencer=options.trust_sequencer)


def _gcs_normalizer(options: NormalizeOptions) -> Normalizer:
    from mountsync.producers.normalize.gcs import normalize_gcs

    return normalize_gcs


def _azure_normalizer(options: NormalizeOptions) -> Normalizer:
    from mountsync.producers.normalize.azure import make_normalizer

    return make_normalizer(options.azure_accounts or None)


# -- enrichers (the I/O step after normalizing, next to each normalizer) ----------------------


def _s3_enricher(pool: Any) -> Enricher:
    from mountsync.producers.mount_lookup import mount_options_lookup
    from mountsync.producers.normalize.s3_enrich import VersionedDeleteEnricher

    return VersionedDeleteEnricher(mount_options_lookup(pool, Provider.S3))


def _gcs_enricher(pool: Any) -> Enricher:
    from mountsync.producers.mount_lookup import mount_options_lookup
    from mountsync.producers.normalize.gcs_enrich import StatEnricher

    return StatEnricher(mount_options_lookup(pool, Provider.GCS))


def _azure_enricher(pool: Any) -> Enricher:
    from mountsync.producers.normalize.azure_enrich import AzureMounts, ContentEnricher

    return ContentEnricher(AzureMounts(pool))


_PRODUCERS = "mountsync.producers"
REGISTRY: dict[Source, SourceEntry] = {
    entry.source: entry
    for entry in (
        SourceEntry(Source.FS, _fs_normalizer, cli_module=f"{_PRODUCERS}.fs"),
        SourceEntry(Source.S3_SQS, _s3_normalizer, _s3_enricher, cli_module=f"{_PRODUCERS}.s3_sqs"),
        SourceEntry(Source.GCS_PUBSUB, _gcs_normalizer, _gcs_enricher, cli_module=f"{_PRODUCERS}.gcs_pubsub"),
        SourceEntry(
            Source.GCS_PUSH,
            _gcs_normalizer,
            _gcs_enricher,
            push=PushRoute(
                "/push/gcs",
                ("POST",),
                f"{_PRODUCERS}.gcs_push:handle",
                auth_settings=("MOUNTSYNC_GCS_PUSH_AUDIENCE", "MOUNTSYNC_GCS_PUSH_SERVICE_ACCOUNTS"),
            ),
        ),
        SourceEntry(
            Source.AZURE_EVENTGRID,
            _azure_normalizer,
            _azure_enricher,
            cli_module=f"{_PRODUCERS}.azure_eventgrid",
            push=PushRoute(
                "/eventgrid",
                ("POST", "OPTIONS"),
                f"{_PRODUCERS}.azure_webhook:handle",
                inbox=True,
                event_entries=f"{_PRODUCERS}.azure_webhook:event_entries",
                auth_settings=("MOUNTSYNC_EVENTGRID_SECRET",),
            ),
        ),
        SourceEntry(Source.AZURE_QUEUE, _azure_normalizer, _azure_enricher, cli_module=f"{_PRODUCERS}.azure_queue"),
        # MinIO posts S3 records: the S3 normalizer reads them; they count (and dead-letter) as S3_SQS.
        SourceEntry(
            Source.MINIO,
            _s3_normalizer,
            _s3_enricher,
            delivered_as=Source.S3_SQS,
            push=PushRoute(
                "/push/minio",
                ("POST",),
                f"{_PRODUCERS}.minio_push:handle",
                auth_settings=("MOUNTSYNC_MINIO_WEBHOOK_TOKEN",),
            ),
        ),
    )
}


def entry_of(source: Source | str) -> SourceEntry:
    """The registry entry of ``source``; ``InvalidEvent`` for a name no source has."""
    try:
        return REGISTRY[Source(source)]
    except (ValueError, KeyError):
        known = ", ".join(s.value for s in transports())
        raise InvalidEvent(f"no normalizer for source {str(source)!r}; known: {known}") from None


def normalizer_for(source: Source | str, options: NormalizeOptions | None = None) -> Normalizer:
    """The pure normalizer the producer of ``source`` uses (without its delivery limit)."""
    return entry_of(source).normalizer(options or NormalizeOptions())


def enricher_for(source: Source | str, pool: Any) -> Enricher | None:
    """The enricher the producer of ``source`` runs (None: its notifications are complete)."""
    factory = entry_of(source).enricher
    return None if factory is None else factory(pool)


def transports() -> tuple[Source, ...]:
    """Sources whose own messages can be dead-lettered (and replayed through their normalizer)."""
    return tuple(e.source for e in REGISTRY.values() if e.delivered_as is None)


def cli_modules() -> tuple[str, ...]:
    return tuple(e.cli_module for e in REGISTRY.values() if e.cli_module)


def push_routes() -> Iterator[tuple[str, tuple[str, ...], str]]:
    """(path, methods, "module:function") of every push endpoint, for ``serve``'s route table."""
    for entry in REGISTRY.values():
        if entry.push is not None:
            yield entry.push.path, entry.push.methods, entry.push.handler


def load_target(target: str) -> Any:
    """What a ``"module:attribute"`` entry of the registry names, imported on first use. A missing
    third-party module is ``MissingExtra`` (its source is unavailable); a missing mountsync module is a bug."""
    import importlib

    module_name, _, attribute = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if (exc.name or "").startswith("mountsync"):
            raise
        raise MissingExtra(f"{target} unavailable: {exc.name} is not installed") from exc
    return getattr(module, attribute)


def event_entries_for(source: Source, runtime: Any) -> Any:
    """How ``source``'s drainer reads entries of raw events (``inbox_events.EventEntries``), if it has them."""
    push = REGISTRY[source].push
    if push is None or push.event_entries is None:
        return None
    return load_target(push.event_entries)(runtime, runtime.settings)


def inbox_sources() -> tuple[Source, ...]:
    """Push sources whose endpoint answers after an inbox append (serve drains them)."""
    return tuple(e.source for e in REGISTRY.values() if e.push is not None and e.push.inbox)
