"""The Kubernetes manifests in deploy/k8s, checked offline.

The base and the example overlay are rendered with ``kubectl kustomize`` (or ``kustomize build``) when either is on
the PATH. Without them the base's files are read directly (the resources its kustomization.yaml lists, which use no
transformer that changes what is checked here) and the overlay's checks are skipped.

Every rendered object of a built-in kind is validated against the Kubernetes OpenAPI schemas bundled with
kubernetes-validate, strictly (an unknown field fails), for the oldest supported Kubernetes and the newest the package
knows. The ServiceMonitors (a CRD, in no bundled schema) are checked by hand. The rest are checks no schema can make:
selectors match pod labels, probes hit the service's real health routes, every setting named exists in
``execsvc.config.Settings`` and the ConfigMap's values parse, the Secret template holds only placeholders.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import latest_version

from execsvc.api.routes.operations import router as operations_router
from execsvc.config import Settings

K8S = Path(__file__).resolve().parents[2] / "deploy" / "k8s"
BASE = K8S / "base"
OVERLAY = K8S / "overlays" / "example"
SECRET_TEMPLATE = BASE / "secret.template.yaml"
PLACEHOLDER = "REPLACE_ME"
# The API pods' preStop uses the built-in sleep action (beta, on by default, since 1.30).
OLDEST_KUBERNETES = "1.30"
CUSTOM_KINDS = {"ServiceMonitor"}
# The standard OpenTelemetry variables execsvc.observability.tracing reads, which the manifests may set besides
# EXECSVC_* settings.
OTEL_NAMES = {
    "OTEL_SDK_DISABLED",
    "OTEL_SERVICE_NAME",
    "OTEL_RESOURCE_ATTRIBUTES",
    "OTEL_TRACES_EXPORTER",
    "OTEL_TRACES_SAMPLER",
    "OTEL_TRACES_SAMPLER_ARG",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_HEADERS",
}
API_PORT = 8000
WORKER_METRICS_PORT = 9100

Manifest = dict[str, Any]


def _kustomize_command(directory: Path) -> list[str] | None:
    if kubectl := shutil.which("kubectl"):
        return [kubectl, "kustomize", str(directory)]
    if kustomize := shutil.which("kustomize"):
        return [kustomize, "build", str(directory)]
    return None


def _load_all(text: str) -> list[Manifest]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def _read_base_files() -> tuple[Manifest, ...]:
    """The base without kustomize: the resources its kustomization.yaml lists, as written."""
    kustomization = yaml.safe_load((BASE / "kustomization.yaml").read_text(encoding="utf-8"))
    docs: list[Manifest] = []
    for name in kustomization["resources"]:
        docs.extend(_load_all((BASE / name).read_text(encoding="utf-8")))
    return tuple(docs)


@functools.cache
def _render(directory: Path) -> tuple[Manifest, ...]:
    command = _kustomize_command(directory)
    if command is None:
        if directory != BASE:
            pytest.skip("neither kubectl nor kustomize is on the PATH: the overlay cannot be rendered")
        return _read_base_files()
    done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=60)
    assert done.returncode == 0, done.stderr
    return tuple(_load_all(done.stdout))


@pytest.fixture(params=[BASE, OVERLAY], ids=["base", "overlay"])
def rendered(request: pytest.FixtureRequest) -> tuple[Manifest, ...]:
    """Every object of one rendering (the base, the example overlay)."""
    directory: Path = request.param
    return _render(directory)


def _secret_template() -> Manifest:
    (secret,) = _load_all(SECRET_TEMPLATE.read_text(encoding="utf-8"))
    return secret


def _all(docs: tuple[Manifest, ...], kind: str) -> list[Manifest]:
    return [d for d in docs if d["kind"] == kind]


def _one(docs: tuple[Manifest, ...], kind: str, name: str) -> Manifest:
    (found,) = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    return found


def _pod_spec(workload: Manifest) -> Manifest:
    spec: Manifest = workload["spec"]["template"]["spec"]
    return spec


def _pod_labels(workload: Manifest) -> dict[str, str]:
    labels: dict[str, str] = workload["spec"]["template"]["metadata"]["labels"]
    return labels


def _selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def _workloads(docs: tuple[Manifest, ...]) -> list[Manifest]:
    return [d for d in docs if d["kind"] in ("Deployment", "Job")]


def _containers(docs: tuple[Manifest, ...]) -> list[Manifest]:
    return [c for w in _workloads(docs) for c in _pod_spec(w)["containers"]]


def _container_port(container: Manifest, port: int | str) -> int:
    """The number a probe's or Service's port (a number or a port name) means in this container."""
    if isinstance(port, int):
        assert port in [p["containerPort"] for p in container["ports"]]
        return port
    (number,) = [p["containerPort"] for p in container["ports"] if p["name"] == port]
    return int(number)


def _api(docs: tuple[Manifest, ...]) -> Manifest:
    return _one(docs, "Deployment", "execsvc-api")


def _worker(docs: tuple[Manifest, ...]) -> Manifest:
    return _one(docs, "Deployment", "execsvc-worker")


def _shutdown_grace_seconds(docs: tuple[Manifest, ...]) -> float:
    configured = _one(docs, "ConfigMap", "execsvc-config")["data"].get("EXECSVC_SHUTDOWN_GRACE_SECONDS")
    if configured is not None:
        return float(configured)
    return float(Settings.model_fields["shutdown_grace_seconds"].default)


@pytest.mark.parametrize("version", [OLDEST_KUBERNETES, latest_version()])
def test_every_builtin_object_matches_the_kubernetes_schema(rendered: tuple[Manifest, ...], version: str) -> None:
    builtin = [d for d in rendered if d["kind"] not in CUSTOM_KINDS]
    assert {d["kind"] for d in builtin} >= {
        "ConfigMap",
        "Deployment",
        "Service",
        "Job",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "NetworkPolicy",
    }
    for doc in [*builtin, _secret_template()]:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            where = ".".join(str(p) for p in exc.path)
            pytest.fail(f"{doc['kind']}/{doc['metadata']['name']} at {where}: {exc.message}", pytrace=False)


def test_a_schema_violation_is_caught() -> None:
    broken = {**_api(_render(BASE)), "spec": {**_api(_render(BASE))["spec"], "replica": 2}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, OLDEST_KUBERNETES, strict=True)


def test_secret_template_holds_only_placeholders_and_is_not_rendered(rendered: tuple[Manifest, ...]) -> None:
    secret = _secret_template()
    assert "data" not in secret
    assert secret["stringData"]
    assert set(secret["stringData"].values()) == {PLACEHOLDER}
    assert not _all(rendered, "Secret"), "an apply would overwrite the real Secret with placeholders"


def test_every_secret_reference_names_a_key_of_the_template(rendered: tuple[Manifest, ...]) -> None:
    secret = _secret_template()
    refs = [
        env["valueFrom"]["secretKeyRef"]
        for c in _containers(rendered)
        for env in c.get("env", [])
        if "secretKeyRef" in env.get("valueFrom", {})
    ]
    assert refs
    for ref in refs:
        assert ref["name"] == secret["metadata"]["name"]
        assert ref["key"] in secret["stringData"]


def test_every_deployment_selector_matches_its_pod_labels(rendered: tuple[Manifest, ...]) -> None:
    deployments = _all(rendered, "Deployment")
    assert {d["metadata"]["name"] for d in deployments} == {"execsvc-api", "execsvc-worker"}
    for deployment in deployments:
        assert _selects(deployment["spec"]["selector"]["matchLabels"], _pod_labels(deployment))
    api, worker = _api(rendered), _worker(rendered)
    assert not _selects(api["spec"]["selector"]["matchLabels"], _pod_labels(worker))
    assert not _selects(worker["spec"]["selector"]["matchLabels"], _pod_labels(api))


def test_api_service_selects_only_the_api_pods_on_the_container_port(rendered: tuple[Manifest, ...]) -> None:
    service = _one(rendered, "Service", "execsvc-api")
    api, worker = _api(rendered), _worker(rendered)
    assert _selects(service["spec"]["selector"], _pod_labels(api))
    assert not _selects(service["spec"]["selector"], _pod_labels(worker))
    (container,) = _pod_spec(api)["containers"]
    assert [_container_port(container, p["targetPort"]) for p in service["spec"]["ports"]] == [API_PORT]
    assert container["args"] == ["serve", "--host", "0.0.0.0", "--port", str(API_PORT)]


def test_worker_metrics_service_selects_the_workers_metrics_port(rendered: tuple[Manifest, ...]) -> None:
    service = _one(rendered, "Service", "execsvc-worker-metrics")
    worker = _worker(rendered)
    assert _selects(service["spec"]["selector"], _pod_labels(worker))
    assert not _selects(service["spec"]["selector"], _pod_labels(_api(rendered)))
    (container,) = _pod_spec(worker)["containers"]
    assert [_container_port(container, p["targetPort"]) for p in service["spec"]["ports"]] == [WORKER_METRICS_PORT]
    assert container["args"] == ["worker", "--metrics-port", str(WORKER_METRICS_PORT)]


def test_api_probes_hit_the_services_health_routes(rendered: tuple[Manifest, ...]) -> None:
    routes = {getattr(route, "path", None) for route in operations_router.routes}
    (container,) = _pod_spec(_api(rendered))["containers"]
    readiness, liveness = container["readinessProbe"]["httpGet"], container["livenessProbe"]["httpGet"]
    assert (readiness["path"], liveness["path"]) == ("/readyz", "/healthz")
    assert {readiness["path"], liveness["path"]} <= routes
    assert _container_port(container, readiness["port"]) == API_PORT
    assert _container_port(container, liveness["port"]) == API_PORT


def test_api_pods_leave_the_endpoints_before_sigterm_and_drain_within_the_grace_period(
    rendered: tuple[Manifest, ...],
) -> None:
    pod = _pod_spec(_api(rendered))
    (container,) = pod["containers"]
    pause = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert pause > 0
    assert pod["terminationGracePeriodSeconds"] == 30
    assert pause + _shutdown_grace_seconds(rendered) < pod["terminationGracePeriodSeconds"]


def test_hpa_and_pdb_target_the_api_deployment(rendered: tuple[Manifest, ...]) -> None:
    api = _api(rendered)
    (hpa,) = _all(rendered, "HorizontalPodAutoscaler")
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["apiVersion"], target["kind"], target["name"]) == ("apps/v1", "Deployment", "execsvc-api")
    assert hpa["spec"]["minReplicas"] <= api["spec"]["replicas"] <= hpa["spec"]["maxReplicas"]
    (pdb,) = _all(rendered, "PodDisruptionBudget")
    assert _selects(pdb["spec"]["selector"]["matchLabels"], _pod_labels(api))
    assert not _selects(pdb["spec"]["selector"]["matchLabels"], _pod_labels(_worker(rendered)))
    assert pdb["spec"]["minAvailable"] < hpa["spec"]["minReplicas"], "a drain could never evict an API pod"


def test_migration_job_runs_db_upgrade_on_the_deployments_image(rendered: tuple[Manifest, ...]) -> None:
    (job,) = _all(rendered, "Job")
    (migrate,) = _pod_spec(job)["containers"]
    assert migrate["args"] == ["db", "upgrade"]
    images = {c["image"] for c in _containers(rendered)}
    assert images == {migrate["image"]}


def test_every_environment_name_is_a_setting(rendered: tuple[Manifest, ...]) -> None:
    settings = {f"EXECSVC_{name.upper()}" for name in Settings.model_fields}
    configmaps = {c["metadata"]["name"]: c for c in _all(rendered, "ConfigMap")}
    names = {name for c in configmaps.values() for name in c.get("data", {})}
    names |= set(_secret_template()["stringData"])
    for container in _containers(rendered):
        names |= {env["name"] for env in container.get("env", [])}
        for source in container.get("envFrom", []):
            assert source["configMapRef"]["name"] in configmaps
    unknown = {n for n in names if n not in settings and n not in OTEL_NAMES}
    assert not unknown, f"not settings of execsvc.config.Settings: {sorted(unknown)}"
    assert {"EXECSVC_DATABASE_URL", "EXECSVC_REDIS_URL", "EXECSVC_REDIS_PREFIX", "EXECSVC_LOG_JSON"} <= names


def test_configmap_values_are_valid_settings(rendered: tuple[Manifest, ...], monkeypatch: pytest.MonkeyPatch) -> None:
    data = _one(rendered, "ConfigMap", "execsvc-config")["data"]
    for name, value in data.items():
        monkeypatch.setenv(name, value)
    settings = Settings()
    assert settings.log_json
    assert not settings.webhook_in_process, "the worker Deployment delivers webhooks"


def test_every_workload_runs_unprivileged_on_a_read_only_root_with_bounded_resources(
    rendered: tuple[Manifest, ...],
) -> None:
    for workload in _workloads(rendered):
        pod = _pod_spec(workload)
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["automountServiceAccountToken"] is False
        for container in pod["containers"]:
            security = container["securityContext"]
            assert security["readOnlyRootFilesystem"] is True
            assert security["allowPrivilegeEscalation"] is False
            assert security["capabilities"]["drop"] == ["ALL"]
            for bound in ("requests", "limits"):
                assert set(container["resources"][bound]) == {"cpu", "memory"}
            # Python and the backtest child processes need a writable /tmp on a read-only root.
            assert "/tmp" in [m["mountPath"] for m in container["volumeMounts"]]


def test_service_monitors_scrape_metrics_ports_of_the_services(rendered: tuple[Manifest, ...]) -> None:
    monitors = _all(rendered, "ServiceMonitor")
    services = _all(rendered, "Service")
    scraped: set[str] = set()
    for monitor in monitors:
        assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
        assert set(monitor["spec"]) <= {"selector", "endpoints", "namespaceSelector", "jobLabel"}
        selector = monitor["spec"]["selector"]
        assert set(selector) == {"matchLabels"}
        (service,) = [s for s in services if _selects(selector["matchLabels"], s["metadata"]["labels"])]
        port_names = {p["name"] for p in service["spec"]["ports"]}
        assert monitor["spec"]["endpoints"]
        for endpoint in monitor["spec"]["endpoints"]:
            assert endpoint["port"] in port_names
            assert endpoint["path"] == "/metrics"
        scraped.add(service["metadata"]["name"])
    assert scraped == {"execsvc-api", "execsvc-worker-metrics"}


def test_network_policies_open_the_api_port_and_leave_worker_egress_open(rendered: tuple[Manifest, ...]) -> None:
    api, worker = _api(rendered), _worker(rendered)
    (api_container,) = _pod_spec(api)["containers"]
    (worker_container,) = _pod_spec(worker)["containers"]
    policies = {p["metadata"]["name"]: p["spec"] for p in _all(rendered, "NetworkPolicy")}
    api_policy, worker_policy = policies["execsvc-api"], policies["execsvc-worker"]
    assert _selects(api_policy["podSelector"]["matchLabels"], _pod_labels(api))
    assert _selects(worker_policy["podSelector"]["matchLabels"], _pod_labels(worker))
    (ingress,) = api_policy["ingress"]
    assert {"podSelector": {}} in ingress["from"], "every pod of the namespace reaches the API"
    assert [_container_port(api_container, p["port"]) for p in ingress["ports"]] == [API_PORT]
    egress_ports = {p["port"] for rule in api_policy["egress"] for p in rule["ports"]}
    assert {53, 5432, 6379} <= egress_ports
    assert "Egress" not in worker_policy["policyTypes"], "webhook targets are arbitrary hosts and ports"
    (worker_ingress,) = worker_policy["ingress"]
    assert [_container_port(worker_container, p["port"]) for p in worker_ingress["ports"]] == [WORKER_METRICS_PORT]


def test_base_runs_the_execsvc_latest_image_without_a_namespace() -> None:
    docs = _render(BASE)
    assert {c["image"] for c in _containers(docs)} == {"execsvc:latest"}
    assert all("namespace" not in d["metadata"] for d in docs)


def test_base_files_read_directly_hold_what_kustomize_renders() -> None:
    if _kustomize_command(BASE) is None:
        pytest.skip("neither kubectl nor kustomize is on the PATH: the files are all there is")

    def names(docs: tuple[Manifest, ...]) -> list[tuple[str, str]]:
        return sorted((d["kind"], d["metadata"]["name"]) for d in docs)

    assert names(_read_base_files()) == names(_render(BASE))


def test_overlay_pins_a_version_tag_and_a_namespace() -> None:
    docs = _render(OVERLAY)
    images = {c["image"] for c in _containers(docs)}
    assert len(images) == 1
    (image,) = images
    name, _, tag = image.rpartition(":")
    assert name.endswith("execsvc")
    assert tag
    assert tag != "latest"
    assert "/" not in tag
    namespaces = {d["metadata"].get("namespace") for d in docs}
    assert len(namespaces) == 1
    assert None not in namespaces
