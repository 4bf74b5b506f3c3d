"""The source registry is the one place a source is named: CLI, serve and replay follow it."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pytest

from mountsync.producers.sources import (
    REGISTRY,
    cli_modules,
    enricher_for,
    entry_of,
    inbox_sources,
    load_target,
    normalizer_for,
    push_routes,
    transports,
)
from mountsync.shared.errors import InvalidEvent, MissingExtra
from mountsync.shared.events import Source
from tests.conftest import ROOT

SOURCE_NAMES = ("s3-sqs", "gcs-pubsub", "gcs-push", "azure-eventgrid", "azure-queue", "fs", "minio")
# The one module that spells the names (the Source enum); everything else uses its members.
NAMES_MODULE = "shared/events.py"
# The same words with another meaning: URL schemes (CONTRACT).
OTHER_MEANINGS = {
    "shared/storage/url.py": {"fs", "minio"},
}


def string_literals(path: Path) -> set[str]:
    return {
        node.value
        for node in ast.walk(ast.parse(path.read_text(), str(path)))
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
    }


def test_each_source_name_is_spelled_in_one_product_module() -> None:
    spelled: dict[str, list[str]] = {name: [] for name in SOURCE_NAMES}
    for folder in ("shared", "producers", "workers"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            module = str(path.relative_to(ROOT))
            found = string_literals(path) & set(SOURCE_NAMES)
            for name in found - OTHER_MEANINGS.get(module, set()):
                spelled[name].append(module)
    assert spelled == {name: [NAMES_MODULE] for name in SOURCE_NAMES}


def test_every_source_has_one_registry_entry() -> None:
    assert set(REGISTRY) == set(Source) - {Source.REINDEX}
    assert all(entry.source is key for key, entry in REGISTRY.items())


def test_produce_commands_are_the_registered_pull_sources(cli: Any) -> None:
    result = cli("produce", "--help", COLUMNS="200")
    assert result.returncode == 0, result.stderr
    pull = {e.source.value for e in REGISTRY.values() if e.cli_module}
    assert pull == {"fs", "s3-sqs", "gcs-pubsub", "azure-eventgrid", "azure-queue"}
    assert len(cli_modules()) == len(pull)
    for name in pull:
        assert f" {name} " in result.stdout


def test_push_routes_and_inboxes_come_from_the_registry() -> None:
    from fastapi import FastAPI

    from mountsync.producers.http.receivers import add_receivers

    paths = {path for path, _methods, _target in push_routes()}
    assert paths == {"/push/gcs", "/eventgrid", "/push/minio"}
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
    add_receivers(app)
    assert paths == {getattr(route, "path", "") for route in app.routes}
    assert inbox_sources() == (Source.AZURE_EVENTGRID,)


def test_minio_reads_s3_records_and_dead_letters_as_s3_sqs() -> None:
    assert entry_of(Source.MINIO).transport is Source.S3_SQS
    assert Source.MINIO not in transports()
    assert entry_of(Source.MINIO).normalizer is entry_of(Source.S3_SQS).normalizer


@pytest.mark.parametrize("name", ["nope", "reindex", ""])
def test_unknown_source_names_the_known_ones(name: str) -> None:
    with pytest.raises(InvalidEvent, match="known: fs, s3-sqs, gcs-pubsub, gcs-push, azure-eventgrid, azure-queue"):
        normalizer_for(name)


def test_fs_needs_no_enricher() -> None:
    assert enricher_for(Source.FS, pool=None) is None


def test_registry_targets_load_and_a_missing_sdk_disables_only_its_source() -> None:
    for _, _, handler in push_routes():
        assert callable(load_target(handler)), handler
    with pytest.raises(MissingExtra, match="no_such_cloud_sdk is not installed"):
        load_target("no_such_cloud_sdk.push:handle")
    with pytest.raises(ModuleNotFoundError):  # our own module missing is a bug, not a missing extra
        load_target("mountsync.producers.no_such_module:handle")
