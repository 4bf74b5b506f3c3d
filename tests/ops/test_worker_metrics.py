"""``mountsync worker --metrics-port``: counters of the prefork children, merged, after real work."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from mountsync.shared.config import Settings
from tests.conftest import env_for
from tests.helpers import free_port, wait_for
from tests.ops.conftest import scrape, start_worker, value


def test_worker_metrics_show_applied_changes_latency_and_reconcile_differences(
    tmp_path: Path, iso_settings: Settings, add_mount: Callable[..., Any],
    catalog_state: Callable[[str], dict[str, Any]], cli: Any,
) -> None:  # fmt: skip
    root = tmp_path / "root"
    for i in range(12):
        (root / f"d{i % 3}").mkdir(parents=True, exist_ok=True)
        (root / f"d{i % 3}" / f"f{i}.jpg").write_bytes(b"x" * (i + 1))
    add_mount("wmetrics", f"file://{root}")
    port = free_port()
    worker = start_worker(iso_settings, tmp_path / "worker.log", MOUNTSYNC_METRICS_PORT=str(port))
    try:
        assert cli("reindex", "wmetrics", "--wait", **env_for(iso_settings)).returncode == 0
        assert len(catalog_state("wmetrics")) == 12
        url = f"http://127.0.0.1:{port}/metrics"
        got = wait_for(lambda: (m := scrape(url)) and value(m, "mountsync_changes_applied_total",
                                                             mount="wmetrics", kind="created") == 12 and m,
                       what="12 applied changes in the worker's metrics")  # fmt: skip
        assert value(got, "mountsync_reindex_differences_total", mount="wmetrics", kind="created") == 12
        assert value(got, "mountsync_apply_batch_seconds_count") >= 1
        assert value(got, "mountsync_reindex_seconds_count", mount="wmetrics") == 1
    finally:
        worker.stop()
    assert "worker metrics endpoint" in worker.log_path.read_text()
