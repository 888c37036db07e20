"""``/metrics``: the build, the process, each system's pause, deferral and dead letters,
the inbox backlog, propagation latency, and rejection reasons in one label style."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
from prometheus_client.metrics_core import Metric

from app.metrics import Metrics
from app.store import Store
from tests.admin_support import admin, fan_out, fault, ok
from tests.blackbox import metric_value as value


async def test_metrics_show_what_an_operator_alerts_on(store: Store) -> None:
    async with admin(store) as (rig, client):
        item_id, _links = await fan_out(rig)
        await fault(rig, "inboxops", status=422, count=1, methods=["PATCH"])
        ok(await client.patch(f"/admin/work-items/{item_id}", json={"status": "resolved"}))
        await rig.gateway.dispatcher.run_until_idle()  # InboxOps dead-letters, others write
        ok(await client.post("/admin/systems/devhelm/pause"))
        async with httpx.AsyncClient(base_url=rig.gateway_url) as plain:
            refused = await plain.post(
                "/webhooks/inboxops", content=b"{}", headers={"webhook-id": "x"}
            )
            assert refused.status_code == 401
            text = (await plain.get("/metrics")).text
    assert value(text, "syncgate_build_info", version="0.1.0") == 1
    assert value(text, "process_cpu_seconds_total") > 0
    assert value(text, "syncgate_system_paused", system="devhelm") == 1
    assert value(text, "syncgate_system_paused", system="inboxops") == 0
    assert value(text, "syncgate_dead_letters_current", system="inboxops") == 1
    assert value(text, "syncgate_dead_letters_total", system="inboxops") == 1
    assert value(text, "syncgate_dead_letters_total", system="devhelm") == 0
    assert value(text, "syncgate_dead_letters_current", system="devhelm") == 0
    assert value(text, "syncgate_system_deferred_until_seconds", system="devhelm") == 0
    assert value(text, "syncgate_inbox_backlog") == 0
    assert value(text, "syncgate_propagation_seconds_count", system="incidentio") >= 1
    assert (
        value(
            text, "syncgate_webhooks_rejected_total", system="inboxops", reason="signature_invalid"
        )
        == 1
    )


async def test_the_per_system_counters_are_there_at_zero_before_anything_happens(
    store: Store,
) -> None:
    """An alert rule on a counter needs its series from the start: a labelled counter
    shows none until its labels are used, so each configured system's is made at 0."""
    async with admin(store) as (rig, _), httpx.AsyncClient(base_url=rig.gateway_url) as plain:
        text = (await plain.get("/metrics")).text
        for system in rig.gateway.adapters:
            for name in (
                "syncgate_dead_letters_total",
                "syncgate_write_retries_total",
                "syncgate_webhooks_received_total",
                "syncgate_webhooks_duplicate_total",
                "syncgate_refresh_reads_total",
            ):
                assert value(text, name, system=system) == 0, (name, system)


async def test_metrics_count_the_database_transactions_the_process_committed(
    store: Store,
) -> None:
    async with admin(store) as (rig, client):
        item_id, _links = await fan_out(rig)
        async with httpx.AsyncClient(base_url=rig.gateway_url) as plain:
            before = value((await plain.get("/metrics")).text, "syncgate_db_transactions_total")
            committed = rig.gateway.store.committed
            ok(await client.patch(f"/admin/work-items/{item_id}", json={"status": "resolved"}))
            await rig.gateway.dispatcher.run_until_idle()
            after = value((await plain.get("/metrics")).text, "syncgate_db_transactions_total")
    # the change (one transaction), the claim and the recording of its writes at least
    assert after - before >= 3
    assert after - before == rig.gateway.store.committed - committed


def test_a_kept_child_counts_as_prometheus_client_counts() -> None:
    """The counters and histograms keep each labelled child after its first lookup
    (``app/metrics.py``): by position or by name, one series, counted once per call."""
    from app.metrics import Metrics

    metrics = Metrics()
    first = metrics.writes.labels("devhelm", "update", "ok")
    assert metrics.writes.labels("devhelm", "update", "ok") is first
    first.inc()
    metrics.writes.labels(system="devhelm", action="update", outcome="ok").inc()
    metrics.writes.labels("devhelm", "update", "dead").inc(3)
    metrics.write_latency.labels("devhelm").observe(0.02)
    metrics.write_latency.labels("devhelm").observe(0.2)
    text = metrics.render().decode()
    assert value(text, "syncgate_writes_total", system="devhelm", outcome="ok") == 2
    assert value(text, "syncgate_writes_total", system="devhelm", outcome="dead") == 3
    assert value(text, "syncgate_write_seconds_count", system="devhelm") == 2
    assert value(text, "syncgate_write_seconds_bucket", system="devhelm", le="0.025") == 1


ROOT = Path(__file__).resolve().parents[1]
#: Names in the docs that start like a metric and are not one.
NOT_METRICS = {"syncgate_marker", "syncgate_session", "syncgate_csrf"}


def _exposed(family: Metric) -> set[str]:
    """The names a family is scraped by (a counter's ``_total``, a histogram's parts)."""
    if family.type == "counter":
        return {f"{family.name}_total"}
    if family.type == "histogram":
        return {family.name, *(f"{family.name}_{part}" for part in ("bucket", "sum", "count"))}
    if family.type == "info":
        return {f"{family.name}_info"}
    return {family.name}


def test_the_docs_name_the_metrics_as_they_are_scraped() -> None:
    """A counter is scraped as ``<name>_total`` (docs/admin-api.md named
    ``syncgate_webhooks_rejected``); every metric is in docs/operations.md's table."""
    metrics = Metrics()
    metrics.count_transactions(lambda: 0)
    families = [f for f in metrics.registry.collect() if f.name.startswith("syncgate_")]
    exposed = set().union(*(_exposed(f) for f in families))
    docs = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    for doc in docs:
        named = set(re.findall(r"\bsyncgate_[a-z_]+", doc.read_text(encoding="utf-8")))
        assert named - NOT_METRICS <= exposed, (doc.name, sorted(named - NOT_METRICS - exposed))
    table = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    for family in families:
        assert _exposed(family) & set(re.findall(r"`(syncgate_[a-z_]+)`", table)), family.name
