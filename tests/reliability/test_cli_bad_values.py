"""Every command and option of the CLI with malformed values: malformed URLs, names, numbers, and
missing credentials. Each answer is ONE line on stderr, nothing on stdout, no traceback, and exit 2
for a user mistake or exit 1 for a service that cannot be reached (issue 20). Real processes, real
PostgreSQL and Redis; the cloud credentials are removed from the environment where a case says so.
"""

from __future__ import annotations

from typing import Any

import pytest

NO_CLOUD = {"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": "", "AWS_PROFILE": "", "AWS_DEFAULT_REGION": "",
            "AWS_REGION": "", "AWS_ENDPOINT_URL": "", "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_CONFIG_FILE": "/nonexistent", "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
            "AZURE_STORAGE_CONNECTION_STRING": "", "GOOGLE_APPLICATION_CREDENTIALS": "/nonexistent/adc.json",
            "STORAGE_EMULATOR_HOST": "", "PUBSUB_EMULATOR_HOST": ""}  # fmt: skip
DB_DOWN = {"MOUNTSYNC_DATABASE_URL": "postgresql://127.0.0.1:1/mountsync"}
REDIS_DOWN = {"MOUNTSYNC_REDIS_URL": "redis://127.0.0.1:1/0"}

# (argv, extra environment, exit code, a word the one line must contain)
CASES: list[tuple[list[str], dict[str, str], int, str]] = [
    # numbers
    (["ls", "m", "--limit", "many"], {}, 2, "--limit"),
    (["reindex", "m", "--timeout", "soon"], {}, 2, "--timeout"),
    (["reindex", "m", "--timeout", "-5"], {}, 2, "--timeout"),
    (["mount", "add", "m", "file:///tmp", "--reindex-interval", "hourly"], {}, 2, "--reindex-interval"),
    (["pin", "m", "f", "--last-annotated", "x"], {}, 2, "--last-annotated"),
    (["alerts", "ack", "abc"], {}, 2, "abc"),
    (["serve", "--port", "http"], {}, 2, "--port"),
    (["serve", "--port", "70000"], {}, 2, "port"),
    (["worker", "-c", "lots"], {}, 2, "--concurrency"),
    (["worker", "-Q", "nope"], {}, 2, "nope"),
    (["flower", "--port", "x"], {}, 2, "--port"),
    (["flower", "--max-tasks", "x"], {}, 2, "--max-tasks"),
    (["produce", "--metrics-port", "x", "fs", "--mount", "m"], {}, 2, "--metrics-port"),
    (["produce", "s3-sqs", "--queue-url", "http://127.0.0.1:1/1/q", "--wait-seconds", "99"], {}, 2, "--wait-seconds"),
    (
        ["produce", "gcs-pubsub", "--subscription", "projects/p/subscriptions/s", "--max-outstanding", "x"],
        {},
        2,
        "--max-outstanding",
    ),
    (["produce", "azure-queue", "--queue", "events", "--visibility-timeout", "x"], {}, 2, "--visibility-timeout"),
    (["deadletters", "list", "--limit", "x"], {}, 2, "--limit"),
    (["deadletters", "show", "x"], {}, 2, "valid integer"),
    (["deadletters", "replay", "x"], {}, 2, "valid integer"),
    (["migrate", "list", "--limit", "x"], {}, 2, "--limit"),
    (
        ["migrate", "submit", "--source", "file:///data", "--dest", "s3://b/x", "-o", "part_size=lots"],
        {},
        2,
        "part_size",
    ),
    (["deletes", "list", "m", "--limit", "-1"], {}, 2, "--limit"),
    (["mount", "set", "m", "--delete-guard", "half"], {}, 2, "delete-guard"),
    (["mount", "add", "m", "file:///tmp", "--delete-guard", "150:5"], {}, 2, "delete-guard"),
    # names
    (["mount", "add", "bad name!", "file:///tmp"], {}, 2, "mount name"),
    (["mount", "show", "nope"], {}, 2, "no mount named"),
    (["mount", "check", "nope"], {}, 2, "no mount named"),
    (["mount", "remove", "nope"], {}, 2, "no mount named"),
    (["mount", "set", "nope", "--delete-guard", "10:5"], {}, 2, "no mount named"),
    (["reindex", "nope"], {}, 2, "no mount named"),
    (["reindex", "nope", "--dry-run"], {}, 2, "no mount named"),
    (["reindex", "m", "--prefix", "../x"], {}, 2, "--prefix"),
    (["ls", "nope"], {}, 2, "no mount named"),
    (["datasets", "nope"], {}, 2, "no mount named"),
    (["frames", "nope", "f"], {}, 2, "no mount named"),
    (["pin", "nope", "f"], {}, 2, "no mount named"),
    (["deletes", "list", "nope"], {}, 2, "no mount named"),
    (["deletes", "approve", "nope"], {}, 2, "no mount named"),
    (["produce", "fs", "--mount", "nope"], {}, 2, "no mount named"),
    (["migrate", "status", "no-such-job"], {}, 2, "no migration job"),
    (["migrate", "cancel", "no-such-job"], {}, 2, "no migration job"),
    (["migrate", "resume", "no-such-job"], {}, 2, "no migration job"),
    (["migrate", "list", "--state", "sideways"], {}, 2, "sideways"),
    (["produce", "gcs-pubsub", "--subscription", "not-a-subscription"], {}, 2, "subscription"),
    (["produce", "azure-queue", "--queue", "Bad_Queue!"], NO_CLOUD, 2, "queue"),
    (["worker", "--pool", "gevent-ish"], {}, 2, "pool"),
    # URLs
    (["mount", "add", "m", "not-a-url"], {}, 2, "URL"),
    (["mount", "add", "m", "ftp://host/x"], {}, 2, "ftp"),
    (["mount", "add", "m", "s3://"], {}, 2, "bucket"),
    (["mount", "add", "m", "file://relative/path"], {}, 2, "file"),
    (["mount", "add", "m", "s3://bkt/", "--endpoint-url", "not-a-url"], NO_CLOUD, 2, "--endpoint-url"),
    (["mount", "add", "m", "az://c/", "--account-url", "::"], NO_CLOUD, 2, "account URL"),
    (["produce", "s3-sqs", "--queue-url", "not-a-url"], NO_CLOUD, 2, "--queue-url"),
    (["produce", "s3-sqs", "--queue-url", "not-a-url"], {"AWS_DEFAULT_REGION": "eu-west-1"}, 2, "--queue-url"),
    (
        ["produce", "s3-sqs", "--queue-url", "https://sqs.eu-west-1.amazonaws.com/1/q", "--endpoint-url", "nope"],
        NO_CLOUD,
        2,
        "--endpoint-url",
    ),
    (
        ["produce", "azure-eventgrid", "--endpoint", "not-a-url", "--topic", "t", "--subscription", "s"],
        NO_CLOUD,
        2,
        "--endpoint",
    ),
    (["produce", "azure-queue", "--queue", "events", "--account-url", "not-a-url"], NO_CLOUD, 2, "account URL"),
    (["migrate", "submit", "--source", "nope", "--dest", "s3://b/x"], {}, 2, "source"),
    (
        ["migrate", "submit", "--source", "file:///data", "--dest", "s3://b/x", "--callback", "not-a-url"],
        {},
        2,
        "callback",
    ),
    (["gcs", "notification", "gs://b", "--topic", "t"], NO_CLOUD, 2, "bucket name"),
    (
        ["gcs", "notification", "bkt", "--topic", "projects/my-project/topics/t", "--endpoint-url", "not-a-url"],
        NO_CLOUD,
        2,
        "--endpoint-url",
    ),
    (["gcs", "notification", "bkt", "--topic", "t"], NO_CLOUD, 2, "--project"),
    # missing credentials
    (
        ["produce", "s3-sqs", "--queue-url", "https://sqs.eu-west-1.amazonaws.com/1/q", "--credentials", "nope"],
        NO_CLOUD,
        2,
        "nope",
    ),
    (["produce", "azure-queue", "--queue", "events"], NO_CLOUD, 2, "AZURE_STORAGE_CONNECTION_STRING"),
    (["mount", "add", "m", "s3://some-bucket/"], NO_CLOUD, 2, "credentials"),
    (["mount", "add", "m", "az://container/"], NO_CLOUD, 2, "AZURE_STORAGE_CONNECTION_STRING"),
    (["mount", "add", "m", "s3://some-bucket/", "--credentials", "nope"], NO_CLOUD, 2, "nope"),
    # services that cannot be reached
    (["mount", "list"], DB_DOWN, 1, "PostgreSQL"),
    (["db", "upgrade"], DB_DOWN, 1, "PostgreSQL"),
    (["deletes", "list", "m"], DB_DOWN, 1, "PostgreSQL"),
    (["reindex", "m"], REDIS_DOWN, 1, "Redis"),
]


def assert_one_line(proc: Any, code: int, word: str) -> None:
    where = f"exit {proc.returncode}, stdout {proc.stdout[:200]!r}, stderr {proc.stderr[-600:]!r}"
    assert "Traceback" not in proc.stderr, where
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == code and proc.stdout == "" and len(lines) == 1, where
    assert word.lower() in lines[0].lower(), where


@pytest.fixture
def existing_mount(add_mount: Any, tmp_path: Any) -> None:
    add_mount("m", f"file://{tmp_path}")


@pytest.mark.parametrize(("args", "env", "code", "word"), CASES, ids=[" ".join(c[0])[:60] for c in CASES])
def test_malformed_value_is_one_line_and_the_right_exit_code(
    cli: Any, existing_mount: None, args: list[str], env: dict[str, str], code: int, word: str
) -> None:
    assert_one_line(cli(*args, timeout=60, **env), code, word)
