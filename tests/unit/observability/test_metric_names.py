"""The dashboard and the alert rules only name metrics the services really export."""

from __future__ import annotations

import json
import re
from typing import Any

import yaml
from prometheus_client import REGISTRY, CollectorRegistry

import services.common.observability  # noqa: F401 - registers the standard metrics
from services.common.settings import REPO_ROOT
from services.gateway.app import _Metrics as GatewayMetrics
from services.oracle.service import OracleMetrics
from services.wspush.core.hub import Hub
from services.wspush.service import WsPushMetrics

DASHBOARD = REPO_ROOT / "k8s" / "cxpt" / "dashboards" / "cxpt-overview.json"
ALERTS = REPO_ROOT / "k8s" / "cxpt" / "files" / "alert-rules.yaml"
METRIC = re.compile(r"\b((?:cxpt|gateway|oracle|wspush)_[a-z0-9_]+)")
SUFFIXES = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_sum", "_count", "_created")}


def exported_names() -> set[str]:
    """Every sample name the services' registries can expose."""
    registries: list[CollectorRegistry] = [
        REGISTRY,
        GatewayMetrics().registry,
        OracleMetrics().registry,
        WsPushMetrics(Hub(outbox_max=10)).registry,
    ]
    names = set()
    for registry in registries:
        for family in registry.collect():
            names.add(family.name)
            names.update(family.name + suffix for suffix in SUFFIXES.get(family.type, ()))
    return names


def dashboard_expressions() -> list[str]:
    dashboard: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]


def alert_expressions() -> list[str]:
    rules = yaml.safe_load(ALERTS.read_text())
    return [rule["expr"] for group in rules["groups"] for rule in group["rules"]]


def test_every_metric_the_dashboard_plots_is_exported() -> None:
    # State: the registries of every service.
    exported = exported_names()
    # Action: the metric names in every panel query.
    used = {name for expr in dashboard_expressions() for name in METRIC.findall(expr)}
    # Expectation: all exported, and the dashboard covers the key metrics.
    assert used - exported == set()
    key_metrics = (
        "cxpt_order_fill_latency_seconds_bucket", "cxpt_consumer_lag", "gateway_requests_total",
        "cxpt_settlement_batches_unconfirmed", "oracle_last_round_timestamp_seconds", "wspush_drops_total",
        "cxpt_http_request_seconds_bucket", "cxpt_batch_records_bucket",
    )  # fmt: skip
    for key in key_metrics:
        assert key in used, key


def test_every_metric_an_alert_uses_is_exported() -> None:
    # State: the registries; recording rules define names of their own (`a:b:c`, never matched).
    exported = exported_names()
    # Action: the metric names in every rule.
    used = {name for expr in alert_expressions() for name in METRIC.findall(expr)}
    # Expectation: all exported.
    assert used - exported == set()


def test_the_alert_rules_cover_the_issue_list() -> None:
    # State / Action: the alert names.
    rules = yaml.safe_load(ALERTS.read_text())
    alerts = {rule["alert"] for group in rules["groups"] for rule in group["rules"] if "alert" in rule}
    # Expectation: lag, error rate, p95 above SLO, settlement behind, oracle stale, ws-push drops.
    assert {"CxptConsumerLagHigh", "CxptGatewayErrorRate", "CxptOrderFillP95AboveSlo",
            "CxptSettlementBehind", "CxptOracleStale", "CxptWsPushDrops"} <= alerts  # fmt: skip
    for group in rules["groups"]:
        for rule in group["rules"]:
            assert "alert" in rule or "record" in rule
            if "alert" in rule:
                assert rule["labels"]["severity"] in {"warning", "critical"}
