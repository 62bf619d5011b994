"""The observability assets in deploy/: the Grafana dashboard and the Prometheus alerting rules use only metrics the
service exports (scraped from a running app after a short session of orders and webhooks), the rules pass promtool's
check and their unit tests, and the dashboard is well formed for provisioning."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import Harness, empty_tables, start_harness
from tests.support.receiver import Receiver

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "execsvc.json"
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
ALERT_TESTS = ROOT / "deploy" / "prometheus" / "alerts_test.yml"
ENSURE_PROMTOOL = ROOT / "scripts" / "ensure-promtool"
DATASOURCE_UID = "prometheus"  # the uid of the provisioned Prometheus datasource

# Metrics the dashboard and the alerts use that the service does not export yet: series name -> what it is to be.
# test_pending_metrics_are_exported fails until the service exports each; then take it out of this list.
PENDING_METRICS: dict[str, str] = {}  # metrics the assets use before the service exports them (none now)
PROMETHEUS_OWN = frozenset({"up"})  # series Prometheus makes itself for each scrape target

# Series names each metric type exposes, besides the samples seen (a family with no child yet has none).
SUFFIXES: dict[str, tuple[str, ...]] = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("_sum", "_count", "_created"),
    "gaugehistogram": ("_bucket", "_gsum", "_gcount"),
    "info": ("_info",),
}

PROMQL_KEYWORDS = frozenset(
    {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset", "and", "or", "unless", "atan2"}
    | {"inf", "nan"}
)
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGE = re.compile(r"\[[^\[\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
# A name not inside a number, a Grafana variable or another name, and not called (a function or aggregation).
_SERIES = re.compile(r"(?<![\w:.$])([A-Za-z_:][\w:]*)(?![\w:])(?!\s*\()")

MARKET_BUY = {"symbol": "BTC/USDT", "side": "buy", "type": "market", "qty": "0.01"}
SESSION_SETTINGS: dict[str, object] = {
    "webhook_allow_private_targets": True,  # the receiver is on loopback
    "webhook_retry_schedule": "0.1",  # one quick retry, then the delivery is dead
    "webhook_timeout_seconds": 2.0,
    "webhook_worker": "in-process",
}


def series_in(expr: str) -> set[str]:
    """The series names a PromQL expression selects (not its functions, keywords, labels or label values)."""
    bare = _STRING.sub('""', expr)
    bare = _MATCHERS.sub("{}", bare)
    bare = _RANGE.sub("[]", bare)
    bare = _GROUPING.sub(" ", bare)
    return {name for name in _SERIES.findall(bare) if name not in PROMQL_KEYWORDS}


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, those inside collapsed rows too."""
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def dashboard_exprs() -> dict[str, str]:
    """Each panel target's expression, keyed by where it is."""
    return {
        f"panel {panel['title']!r} target {target['refId']}": target["expr"]
        for panel in panels(dashboard())
        for target in panel.get("targets", [])
    }


def alert_exprs() -> dict[str, str]:
    """Each alerting rule's expression, keyed by its name."""
    rules = yaml.safe_load(ALERTS.read_text())
    return {f"alert {rule['alert']}": rule["expr"] for group in rules["groups"] for rule in group["rules"]}


def used_series() -> dict[str, set[str]]:
    """Series name -> the panels and alerts that use it."""
    used: dict[str, set[str]] = {}
    for where, expr in {**dashboard_exprs(), **alert_exprs()}.items():
        for name in series_in(expr):
            used.setdefault(name, set()).add(where)
    return used


def exported_series(exposition: str) -> set[str]:
    """The series names an exposition offers, from its families' types as well as the samples present."""
    names: set[str] = set()
    for family in text_string_to_metric_families(exposition):
        names.update(sample.name for sample in family.samples)
        names.update(family.name + suffix for suffix in SUFFIXES.get(family.type, ("",)))
    return names


async def wait_for_dead_delivery(h: Harness, subscription_id: str, admin: dict[str, str]) -> None:
    """Poll the delivery log until the subscription's delivery went dead (its metric is counted before that)."""
    async with asyncio.timeout(15):
        while True:
            r = await h.client.get(f"/v1/webhooks/{subscription_id}/deliveries?status=dead", headers=admin)
            assert r.status_code == 200, r.text
            if r.json()["items"]:
                return
            await asyncio.sleep(0.05)


async def scripted_session(h: Harness, receiver: Receiver) -> str:
    """Trade a little and fail a webhook delivery, then scrape /metrics."""
    admin = await h.auth("acct-a", "admin")
    url = await receiver.start()
    r = await h.client.post("/v1/webhooks", json={"url": url, "events": ["order.filled"]}, headers=admin)
    assert r.status_code == 201, r.text
    subscription_id = r.json()["id"]
    trader = await h.auth()
    filled = await h.client.post("/v1/orders", json=MARKET_BUY, headers=trader)
    assert filled.status_code == 201, filled.text
    assert filled.json()["status"] == "filled"
    await h.client.post("/v1/orders", json={**MARKET_BUY, "qty": "100"}, headers=trader)  # more than the balance
    resting = {**MARKET_BUY, "type": "limit", "limit_price": "60000"}
    assert (await h.client.post("/v1/orders", json=resting, headers=trader)).status_code == 201
    await wait_for_dead_delivery(h, subscription_id, admin)  # the receiver answers 500 twice: retry, then dead
    # httpx's ASGI transport carries no WebSocket: the ws_* metrics are exported without a connection (gauge 0,
    # counters with no child yet), which is all the name check needs.
    scrape = await h.client.get("/metrics")
    assert scrape.status_code == 200
    return scrape.text


@pytest.fixture(scope="module")
async def exposition(sqlite_url: str) -> str:
    """The /metrics text of an app (on SQLite: one backend is enough for names) after a scripted session."""
    receiver = Receiver(default=500)
    h, container = await start_harness(sqlite_url, **SESSION_SETTINGS)
    try:
        text = await scripted_session(h, receiver)
    finally:
        await h.client.aclose()
        await container.stop()
        await receiver.stop()
        await empty_tables(sqlite_url)
    return text


def test_series_names_are_read_from_promql_without_functions_labels_or_variables() -> None:
    expr = (
        'histogram_quantile(0.99, sum by (job, le) (rate(a_bucket{job=~"$job", le!="x"}[$__rate_interval]))) > 0.25'
        " and on (job) sum without (instance) (rate(b_total[5m] offset 1h)) >= 1e3"
        ' or max(c) == 2 unless label_replace(d{x="y"}, "dst", "$1", "src", "(.*)") or e:rate5m or up == bool 0'
    )
    assert series_in(expr) == {"a_bucket", "b_total", "c", "d", "e:rate5m", "up"}


async def test_the_session_exports_orders_risk_webhook_and_latency_samples(exposition: str) -> None:
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
    }
    assert samples[("orders_total", (("status", "filled"),))] == 1
    assert samples[("orders_total", (("status", "rejected"),))] == 1
    assert samples[("risk_blocks_total", (("rule", "sufficient_balance"),))] == 1
    assert samples[("webhook_deliveries_total", (("outcome", "dead"),))] == 1
    assert samples[("order_latency_seconds_count", ())] >= 1


async def test_dashboard_and_alerts_use_only_metrics_the_service_exports(exposition: str) -> None:
    exported = exported_series(exposition)
    used = used_series()
    assert "orders_total" in used  # the extraction found something
    missing = {
        name: sorted(where)
        for name, where in used.items()
        if name not in exported and name not in PROMETHEUS_OWN and name not in PENDING_METRICS
    }
    assert missing == {}, f"not exported by the service (add them, or list them in PENDING_METRICS): {missing}"


def test_pending_metrics_are_all_used_by_the_assets() -> None:
    assert set(PENDING_METRICS) <= set(used_series()), "a pending metric no panel or alert uses: drop it"


async def test_pending_metrics_are_exported(exposition: str) -> None:
    missing = {name: spec for name, spec in PENDING_METRICS.items() if name not in exported_series(exposition)}
    assert missing == {}, f"the dashboard or alerts use metrics the service does not export yet: {missing}"


def test_every_alert_has_a_duration_a_severity_and_a_summary_and_description() -> None:
    rules = yaml.safe_load(ALERTS.read_text())
    alerts = [rule for group in rules["groups"] for rule in group["rules"]]
    assert len(alerts) >= 7
    for rule in alerts:
        assert rule.get("for"), rule["alert"]
        assert rule.get("labels", {}).get("severity") in {"critical", "warning"}, rule["alert"]
        assert {"summary", "description"} <= set(rule.get("annotations", {})), rule["alert"]


@pytest.fixture(scope="module")
def promtool() -> str:
    """The promtool scripts/ensure-promtool finds or installs; its explanation is the failure when it cannot."""
    found = subprocess.run([str(ENSURE_PROMTOOL)], capture_output=True, text=True, timeout=900, check=False)
    if found.returncode != 0:
        pytest.fail(f"scripts/ensure-promtool found no promtool:\n{found.stderr}")
    return found.stdout.strip().splitlines()[-1]


def test_alerting_rules_pass_promtool_check(promtool: str) -> None:
    checked = subprocess.run(
        [promtool, "check", "rules", str(ALERTS)], capture_output=True, text=True, timeout=120, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_alerting_rules_pass_their_promtool_unit_tests(promtool: str) -> None:
    tested = subprocess.run(
        [promtool, "test", "rules", ALERT_TESTS.name],
        cwd=ALERT_TESTS.parent,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_dashboard_panels_query_the_provisioned_datasource_with_unique_ids_and_positions() -> None:
    board = dashboard()
    assert isinstance(board["schemaVersion"], int)
    assert board["schemaVersion"] >= 36
    assert board["uid"] == "execsvc"
    ids = [panel["id"] for panel in panels(board)]
    assert len(ids) == len(set(ids)), "panel ids repeat"
    for panel in panels(board):
        assert {"h", "w", "x", "y"} <= set(panel["gridPos"]), panel["title"]
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == DATASOURCE_UID, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["expr"].strip(), panel["title"]
            assert target.get("datasource", {"uid": DATASOURCE_UID})["uid"] == DATASOURCE_UID, panel["title"]
    for variable in board["templating"]["list"]:
        if variable["type"] == "query":
            assert variable["datasource"]["uid"] == DATASOURCE_UID, variable["name"]


def test_dashboard_panels_do_not_overlap() -> None:
    taken: set[tuple[int, int]] = set()
    for panel in panels(dashboard()):
        box = panel["gridPos"]
        cells = {(x, y) for x in range(box["x"], box["x"] + box["w"]) for y in range(box["y"], box["y"] + box["h"])}
        assert not cells & taken, panel["title"]
        taken |= cells


def strings(value: object) -> Iterator[str]:
    """Every string in a JSON document, keys included."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings(item)


def test_dashboard_names_no_instance_job_host_or_address() -> None:
    for where, expr in dashboard_exprs().items():
        for label, value in re.findall(r"\b(instance|job)\s*(?:=~|!~|=|!=)\s*\"([^\"]*)\"", expr):
            assert value == f"${label}", where
    address = re.compile(r"\blocalhost\b|\b\d{1,3}(?:\.\d{1,3}){3}\b|^[\w.-]+:\d{2,5}$")
    assert [s for s in strings(dashboard()) if address.search(s)] == []
