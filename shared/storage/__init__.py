"""Storage adapters, looked up by URL scheme; SDKs are imported only when a provider is used."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

from mountsync.shared.errors import MissingExtra
from mountsync.shared.events import Provider
from mountsync.shared.storage.base import ObjectInfo, PartInfo, Storage, UploadSession
from mountsync.shared.storage.url import StorageURL, parse_storage_url

__all__ = [
    "ObjectInfo",
    "PartInfo",
    "Storage",
    "StorageURL",
    "UploadSession",
    "open_storage",
    "parse_storage_url",
]

# provider -> (module, class, pip extra)
ADAPTERS: dict[Provider, tuple[str, str, str]] = {
    Provider.FS: ("mountsync.shared.storage.local", "LocalStorage", ""),
    Provider.S3: ("mountsync.shared.storage.s3", "S3Storage", "s3"),
    Provider.GCS: ("mountsync.shared.storage.gcs", "GCSStorage", "gcs"),
    Provider.AZURE: ("mountsync.shared.storage.azure", "AzureStorage", "azure"),
}


def open_storage(url: StorageURL | str, options: Mapping[str, Any] | None = None) -> Storage:
    """The adapter for ``url``. ``options`` are per-mount (endpoint_url, region, credentials...)."""
    parsed = parse_storage_url(url) if isinstance(url, str) else url
    module_name, class_name, extra = ADAPTERS[parsed.provider]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        if exc.name and exc.name.startswith("mountsync."):
            raise
        raise MissingExtra(
            f"{parsed.provider.value} storage needs the {extra!r} extra "
            f"({exc.name} is missing): pip install 'mountsync[{extra}]'"
        ) from exc
    adapter: Storage = getattr(module, class_name)(parsed, dict(options or {}))
    return adapter
