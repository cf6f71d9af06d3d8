"""The shipped Prometheus rules and Grafana dashboard name only series Hearth exports, with
labels those series carry."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest_twisted
import yaml

from tests.support.live import LiveServer

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
# PromQL words that are neither a series nor a function call.
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or",
            "unless", "offset", "inf", "nan"}
PROMETHEUS_OWN = {"up"}  # written by Prometheus itself for every scrape target
ALWAYS_LABELS = {"job", "instance"}  # added by Prometheus to every series


async def exported(server: LiveServer) -> dict[str, set[str]]:
    """Every series name a node exports, with the label names it carries, after a little
    traffic (labelled series appear with their first value)."""
    client = await server.client()
    await client.join("circle")
    client.send({"type": "lock", "on": True, "ref": "r"})  # a participant: refused
    await client.expect("error")
    await client.close()
    metrics = server.hearth.metrics
    metrics.observe("webhook:on-call", 0.2)  # labelled series appear once observed
    metrics.observe("webhook:on-call", None)
    series: dict[str, set[str]] = {}
    for family in metrics.registry.collect():
        for sample in family.samples:
            series.setdefault(sample.name, set()).update(sample.labels)
    return series


def expressions() -> list[tuple[str, str]]:
    """(where, PromQL) of every rule and every dashboard target."""
    found = []
    rules = yaml.safe_load((DEPLOY / "prometheus" / "hearth-alerts.yml").read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            found.append((f"rule {rule.get('alert') or rule.get('record')}", str(rule["expr"])))
    dashboard = json.loads((DEPLOY / "grafana" / "hearth.json").read_text())
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            found.append((f"panel {panel['title']!r}", target["expr"]))
    for variable in dashboard["templating"]["list"]:
        query = variable.get("definition", "")
        if query.startswith("label_values("):
            found.append((f"variable {variable['name']}", query[len("label_values("):-1]
                          .rsplit(",", 1)[0]))
    return found


def series_in(expr: str) -> list[tuple[str, set[str]]]:
    """(series name, label names matched) for each series an expression selects."""
    text = re.sub(r"\[[^\]]*\]", "", expr)  # range selectors, [$__rate_interval]
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    text = re.sub(r"(?<![\w:])\d+(\.\d+)?([eE][+-]?\d+)?", "", text)  # numbers: 0.95, 2e9
    found = []
    for match in re.finditer(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(\{[^}]*\})?(\s*\()?", text):
        name, matchers, call = match.groups()
        if call or name in KEYWORDS:
            continue
        labels = set(re.findall(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)", matchers or ""))
        found.append((name, labels))
    return found


@pytest_twisted.ensureDeferred
async def test_rules_and_dashboard_name_only_exported_series_and_labels(
        server: LiveServer) -> None:
    series = await exported(server)
    assert "hearth_alerts_pending" in series and "process_resident_memory_bytes" in series
    checked = 0
    for where, expr in expressions():
        selected = series_in(expr)
        assert selected, f"{where}: no series in {expr!r}"
        for name, labels in selected:
            if name in PROMETHEUS_OWN:
                continue
            assert name in series, f"{where}: {name} is not a series Hearth exports"
            unknown = labels - series[name] - ALWAYS_LABELS - ({"le"} if name.endswith(
                "_bucket") else set())
            assert not unknown, f"{where}: {name} has no label {sorted(unknown)}"
            checked += 1
    assert checked >= 20


@pytest_twisted.ensureDeferred
async def test_the_checker_catches_a_misspelt_series_or_label(server: LiveServer) -> None:
    series = await exported(server)
    [(name, labels)] = series_in('rate(hearth_alert_delivery_failure_total{chanel="x"}[5m])')
    assert name not in series
    [(name, labels)] = series_in('sum by (state) (hearth_incidents{status="open"})')
    assert name in series and labels - series[name] == {"status"}
