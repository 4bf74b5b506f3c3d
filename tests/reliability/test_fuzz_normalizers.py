"""Every normalizer, on arbitrary bytes, arbitrary JSON and mutated recorded payloads, only ever
returns storable ``ObjectChange``s or raises ``InvalidEvent``: never another exception, never a hang.

"Storable" is what the catalog needs to apply a change without failing the batch it is in (no NUL
in text, integers that fit a bigint, a key that passes ``validate_key``): a change that passes the
normalizer but fails in PostgreSQL would poison a whole batch of 500 good ones.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mountsync.producers.gcs_push import parse_envelope
from mountsync.producers.normalize.azure import (
    directory_scopes,
    make_normalizer,
    normalize_azure,
    split_events,
    validation_code,
)
from mountsync.producers.normalize.fs import normalize_fs
from mountsync.producers.normalize.gcs import normalize_gcs
from mountsync.producers.normalize.s3 import make_normalizer as make_s3_normalizer
from mountsync.producers.normalize.s3 import normalize_s3
from mountsync.shared.errors import InvalidEvent
from mountsync.shared.events import ObjectChange, RawMessage, Source
from tests.reliability.fuzzing import (
    FUZZ,
    assert_storable,
    hard_deadline,
    json_values,
    load_json_files,
    mutated,
)

Normalizer = Callable[[RawMessage], list[ObjectChange]]

S3_SEEDS = load_json_files("s3")
GCS_SEEDS = load_json_files("gcs", skip=("real_push_envelope",))
PUSH_SEEDS = [doc["envelope"] for doc in load_json_files("gcs") if "envelope" in doc]
AZURE_SEEDS = load_json_files("azure")
FS_SEEDS = [
    {"root": "/data", "key": "cam1/0001.jpg", "exists": True, "size": 3, "etag": "1700-3-42",
     "observed_ns": 1_700_000_000_000_000_000},
    {"root": "/data", "key": "cam1/0001.jpg", "exists": False, "observed_ns": 1_700_000_000_000_000_001},
]  # fmt: skip


def run(normalize: Normalizer, raw: RawMessage) -> None:
    """The property: storable changes or InvalidEvent, within the hard deadline."""
    with hard_deadline():
        try:
            changes = normalize(raw)
        except InvalidEvent:
            return
    assert isinstance(changes, list), f"normalizer returned {type(changes).__name__}"
    for change in changes:
        assert_storable(change)


def _s3_raw(doc: Any, sns: bool) -> RawMessage:
    body = json.dumps({"Type": "Notification", "Message": json.dumps(doc)}) if sns else json.dumps(doc)
    return RawMessage(Source.S3_SQS, "sqs-1", body.encode())


def _attributes(value: Any) -> dict[str, str]:
    """Pub/Sub attributes are always a string map; anything else the transport never delivers."""
    if not isinstance(value, dict):
        return {}
    return {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in value.items()}


def _gcs_raw(doc: Any, source: Source) -> RawMessage:
    doc = doc if isinstance(doc, dict) else {"data": doc}
    data = doc.get("data")
    body = b"" if data is None else data.encode() if isinstance(data, str) else json.dumps(data).encode()
    return RawMessage(source, "ps-1", body, _attributes(doc.get("attributes")), received_ns=1)


def _azure_raw(doc: Any, as_base64: bool) -> RawMessage:
    body = json.dumps(doc).encode()
    if as_base64:
        body = base64.b64encode(body)
    return RawMessage(Source.AZURE_QUEUE if as_base64 else Source.AZURE_EVENTGRID, "eg-1", body)


S3_NORMALIZERS = [normalize_s3, make_s3_normalizer(trust_sequencer=False)]
AZURE_NORMALIZERS = [normalize_azure, make_normalizer(["acmeraw", "devstoreaccount1"])]
ALL_NORMALIZERS: list[tuple[str, Normalizer, Source]] = [
    ("fs", normalize_fs, Source.FS),
    ("s3", normalize_s3, Source.S3_SQS),
    ("s3-untrusted-sequencer", S3_NORMALIZERS[1], Source.S3_SQS),
    ("gcs", normalize_gcs, Source.GCS_PUBSUB),
    ("azure", normalize_azure, Source.AZURE_EVENTGRID),
    ("azure-accounts", AZURE_NORMALIZERS[1], Source.AZURE_QUEUE),
]
IDS = [name for name, _, _ in ALL_NORMALIZERS]


@pytest.mark.parametrize(("name", "normalize", "source"), ALL_NORMALIZERS, ids=IDS)
@FUZZ
@given(body=st.binary(max_size=600), attributes=st.dictionaries(st.text(max_size=20), st.text(max_size=40)))
def test_arbitrary_bytes(name: str, normalize: Normalizer, source: Source, body: bytes,
                         attributes: dict[str, str]) -> None:  # fmt: skip
    run(normalize, RawMessage(source, "m", body, attributes))


@pytest.mark.parametrize(("name", "normalize", "source"), ALL_NORMALIZERS, ids=IDS)
@FUZZ
@given(doc=json_values, attributes=st.dictionaries(st.text(max_size=20), st.text(max_size=40)))
def test_arbitrary_json(name: str, normalize: Normalizer, source: Source, doc: Any,
                        attributes: dict[str, str]) -> None:  # fmt: skip
    run(normalize, RawMessage(source, "m", json.dumps(doc).encode(), attributes))


@pytest.mark.parametrize("normalize", S3_NORMALIZERS, ids=["trusted", "untrusted"])
@FUZZ
@given(doc=mutated(S3_SEEDS), sns=st.booleans())
def test_mutated_s3_payloads(normalize: Normalizer, doc: Any, sns: bool) -> None:
    run(normalize, _s3_raw(doc, sns))


@FUZZ
@given(doc=mutated(GCS_SEEDS), push=st.booleans())
def test_mutated_gcs_payloads(doc: Any, push: bool) -> None:
    run(normalize_gcs, _gcs_raw(doc, Source.GCS_PUSH if push else Source.GCS_PUBSUB))


@FUZZ
@given(doc=mutated(PUSH_SEEDS))
def test_mutated_gcs_push_envelopes(doc: Any) -> None:
    """The push endpoint's envelope parser, then the normalizer on what it unwrapped."""
    with hard_deadline():
        try:
            raw = parse_envelope(json.dumps(doc).encode(), 1)
        except InvalidEvent:
            return
    assert isinstance(raw, RawMessage) and isinstance(raw.body, bytes)
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in raw.attributes.items())
    run(normalize_gcs, raw)


@pytest.mark.parametrize("normalize", AZURE_NORMALIZERS, ids=["any-account", "accounts"])
@FUZZ
@given(doc=mutated(AZURE_SEEDS), as_base64=st.booleans())
def test_mutated_azure_payloads(normalize: Normalizer, doc: Any, as_base64: bool) -> None:
    run(normalize, _azure_raw(doc, as_base64))


@FUZZ
@given(doc=mutated(AZURE_SEEDS))
def test_mutated_azure_webhook_helpers(doc: Any) -> None:
    """``split_events``/``validation_code``/``directory_scopes`` run on raw webhook bodies too."""
    raw = _azure_raw(doc, False)
    with hard_deadline():
        try:
            code = validation_code(split_events(raw.body))
            assert code is None or (isinstance(code, str) and code)
        except InvalidEvent:
            pass
        try:
            scopes = directory_scopes(raw)
        except InvalidEvent:
            return
    for container, prefix in scopes:
        assert isinstance(container, str) and container and isinstance(prefix, str)


@FUZZ
@given(doc=mutated(FS_SEEDS))
def test_mutated_fs_observations(doc: Any) -> None:
    run(normalize_fs, RawMessage(Source.FS, "fs-1", json.dumps(doc).encode()))


WIRE_SEEDS = [
    ObjectChange.from_json(
        '{"schema":1,"provider":"s3","bucket":"b","key":"k/1.jpg","kind":"created","event_ns":1,'
        '"source":"s3-sqs","size":3,"etag":"e","version":null,"sequencer":"","source_id":"m"}'
    ).to_wire()
]


@FUZZ
@given(doc=mutated(WIRE_SEEDS, max_mutations=3))
def test_mutated_wire_changes_decode_or_dead_letter(doc: Any) -> None:
    """What a worker decodes from the queue: a storable change or InvalidEvent (dead letter)."""
    with hard_deadline():
        try:
            change = ObjectChange.from_wire(doc)
        except InvalidEvent:
            return
    assert_storable(change)
