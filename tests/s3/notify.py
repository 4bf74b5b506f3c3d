"""Helpers for the S3 end-to-end tests: real notification routes on moto, bucket state, and a
``mountsync produce s3-sqs`` subprocess."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mountsync.shared.events import normalize_etag
from tests.conftest import ROOT
from tests.standins.s3 import MotoEndpoints

ROUTES = ("direct", "sns", "sns-raw", "eventbridge")


def create_queue(moto: MotoEndpoints, name: str, visibility_s: int = 30) -> tuple[str, str]:
    sqs = moto.client("sqs")
    url = sqs.create_queue(QueueName=name, Attributes={"VisibilityTimeout": str(visibility_s)})["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return url, arn


def route(moto: MotoEndpoints, route_name: str, bucket: str, queue_arn: str) -> None:
    """Make ``bucket`` notify the queue: directly, through SNS (enveloped or raw) or EventBridge."""
    s3 = moto.client("s3")
    events = ["s3:ObjectCreated:*", "s3:ObjectRemoved:*"]
    if route_name == "direct":
        config: dict[str, Any] = {"QueueConfigurations": [{"QueueArn": queue_arn, "Events": events}]}
    elif route_name in ("sns", "sns-raw"):
        sns = moto.client("sns")
        topic = sns.create_topic(Name=f"{bucket}-events")["TopicArn"]
        attributes = {"RawMessageDelivery": "true"} if route_name == "sns-raw" else {}
        sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn, Attributes=attributes)
        config = {"TopicConfigurations": [{"TopicArn": topic, "Events": events}]}
    elif route_name == "eventbridge":
        rules = moto.client("events")
        rule = f"{bucket}-to-sqs"
        pattern = {"source": ["aws.s3"], "detail": {"bucket": {"name": [bucket]}}}
        rules.put_rule(Name=rule, EventPattern=json.dumps(pattern))
        rules.put_targets(Rule=rule, Targets=[{"Id": "sqs", "Arn": queue_arn}])
        config = {"EventBridgeConfiguration": {}}
    else:
        raise ValueError(route_name)
    s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration=config)


def bucket_state(moto: MotoEndpoints, bucket: str, prefix: str = "") -> dict[str, dict[str, Any]]:
    """{key: {size, etag}} of every object, as the catalog should hold it."""
    state = {}
    pages = moto.client("s3").get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    for page in pages:
        for item in page.get("Contents", ()):
            state[item["Key"]] = {"size": item["Size"], "etag": normalize_etag(item["ETag"])}
    return state


def without_versions(state: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {k: {"size": v["size"], "etag": v["etag"]} for k, v in state.items()}


def queue_empty(moto: MotoEndpoints, url: str) -> bool:
    attrs = moto.client("sqs").get_queue_attributes(
        QueueUrl=url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return attrs["ApproximateNumberOfMessages"] == "0" == attrs["ApproximateNumberOfMessagesNotVisible"]


def later_second() -> Callable[[], bool]:
    """For ``wait_for``: true once the wall clock is in a later second than now.

    moto's EventBridge times have whole-second precision and its sequencer is a constant, so two
    changes to one key in the same second are indistinguishable; the tests step over seconds.
    """
    start = int(time.time())
    return lambda: int(time.time()) > start


class Producer:
    """``mountsync produce s3-sqs`` as a subprocess, its output in a log file."""

    def __init__(self, env: dict[str, str], log_path: Path, queue_url: str, *args: str) -> None:
        self.log_path = log_path
        self.command = [
            sys.executable, "-m", "mountsync.shared", "produce", "s3-sqs", "--queue-url", queue_url,
            "--wait-seconds", "1", *args,
        ]  # fmt: skip
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Producer:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self.command, env=self.env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> int:
        """SIGTERM, wait; returns the exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        return int(self.proc.returncode)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(timeout=10)
