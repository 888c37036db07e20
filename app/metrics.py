"""Prometheus metrics, one registry per gateway instance (so tests can run several)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from importlib import metadata
from typing import Any, Self

from prometheus_client import (
    CollectorRegistry,
    Gauge,
    Info,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client import Counter as _Counter
from prometheus_client import Histogram as _Histogram
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector


class _Kept:
    """``labels(*values)`` looked up once per set of values and kept: prometheus_client's
    own lookup checks the values and takes a lock on every call (1.1 % of the gateway's
    samples at c = 32, a few lookups per change). For counters and histograms, whose
    children are never removed."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._kept: dict[tuple[Any, ...], Self] = {}

    def labels(self, *values: Any, **named: Any) -> Self:
        if named:
            return super().labels(*values, **named)  # type: ignore[misc, no-any-return]
        try:
            return self._kept[values]
        except KeyError:
            child: Self = super().labels(*values)  # type: ignore[misc]
            self._kept[values] = child
            return child


class Counter(_Kept, _Counter):
    pass


class Histogram(_Kept, _Histogram):
    pass


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        ProcessCollector(
            registry=r
        )  # process_cpu_seconds_total, process_resident_memory_bytes, ...
        PlatformCollector(registry=r)  # python_info
        self.build = Info("syncgate_build", "The running Syncgate's version", registry=r)
        self.build.info({"version": _version()})
        self.paused = Gauge(
            "syncgate_system_paused", "1 while a system is paused", ["system"], registry=r
        )
        self.deferred_until = Gauge(
            "syncgate_system_deferred_until_seconds",
            "Unix time until which a 429 holds a system's writes back (0: not deferred)",
            ["system"],
            registry=r,
        )
        self.dead_letters_now = Gauge(
            "syncgate_dead_letters_current",
            "Writes dead-lettered and not yet retried or discarded",
            ["system"],
            registry=r,
        )
        self.clock_offset = Gauge(
            "syncgate_database_clock_ahead_seconds",
            "How far the database server's clock is ahead of this host's (PostgreSQL; the "
            "gateway stamps and leases by the database's)",
            registry=r,
        )
        self.inbox_backlog = Gauge(
            "syncgate_inbox_backlog", "Stored webhook events not yet processed", registry=r
        )
        self.propagation = Histogram(
            "syncgate_propagation_seconds",
            "From a change reaching the canonical work item to its write to a linked object",
            ["system"],
            registry=r,
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
        )
        self.webhooks_received = Counter(
            "syncgate_webhooks_received",
            "Webhook deliveries accepted and stored",
            ["system"],
            registry=r,
        )
        self.webhooks_rejected = Counter(
            "syncgate_webhooks_rejected",
            "Webhook deliveries refused",
            ["system", "reason"],
            registry=r,
        )
        self.webhooks_duplicate = Counter(
            "syncgate_webhooks_duplicate",
            "Webhook deliveries already stored",
            ["system"],
            registry=r,
        )
        self.events_processed = Counter(
            "syncgate_events_processed", "Inbox events processed", ["system", "outcome"], registry=r
        )
        self.observations = Counter(
            "syncgate_observations",
            "Observations applied by the engine",
            ["system", "outcome"],
            registry=r,
        )
        self.writes = Counter(
            "syncgate_writes",
            "Vendor writes by outcome",
            ["system", "action", "outcome"],
            registry=r,
        )
        self.write_latency = Histogram(
            "syncgate_write_seconds",
            "Duration of vendor write calls",
            ["system"],
            registry=r,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.refresh_reads = Counter(
            "syncgate_refresh_reads",
            "Objects read before an update, to fold in changes not yet seen",
            ["system"],
            registry=r,
        )
        self.refresh_window = Histogram(
            "syncgate_refresh_window_seconds",
            "From the read before an update to the update being sent: the window in which"
            " an edit made in the vendor's tool is still overwritten",
            ["system"],
            registry=r,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1),
        )
        self.dispatch_transactions = Counter(
            "syncgate_dispatch_transactions",
            "Transactions of the dispatcher: claims of due writes, recordings of finished"
            " ones, renewals and releases of claims",
            ["kind"],
            registry=r,
        )
        self.dispatch_claimed = Counter(
            "syncgate_dispatch_claimed",
            "Writes claimed for this process: by the dispatcher's own claim (claim), or in"
            " the engine transaction that made them due (handed)",
            ["how"],
            registry=r,
        )
        self.retries = Counter(
            "syncgate_write_retries", "Writes scheduled for another attempt", ["system"], registry=r
        )
        self.dead_letters = Counter(
            "syncgate_dead_letters", "Writes dead-lettered", ["system"], registry=r
        )
        self.queue_depth = Gauge(
            "syncgate_queue_depth", "Dirty links waiting to be written", ["system"], registry=r
        )
        self.poll_lag = Gauge(
            "syncgate_poll_lag_seconds",
            "Seconds since the last successful poll",
            ["system"],
            registry=r,
        )
        self.polls = Counter(
            "syncgate_polls", "Polls by outcome", ["system", "outcome"], registry=r
        )

    def show_systems(self, systems: Iterable[str]) -> None:
        """Every counter labelled by the system alone gets a sample for each of
        ``systems``, at 0 until its first increment: a labelled counter shows no series
        before its labels are used, and an alert rule on ``syncgate_dead_letters_total``
        needs the series from the start. Called at each scrape with the systems
        configured then (a reload may add one)."""
        counters = (
            self.webhooks_received,
            self.webhooks_duplicate,
            self.retries,
            self.dead_letters,
            self.refresh_reads,
        )
        for system in systems:
            for counter in counters:
                counter.labels(system)

    def count_transactions(self, committed: Callable[[], int]) -> None:
        """Expose ``syncgate_db_transactions_total``: the database transactions this
        process committed, read from ``committed`` at each scrape (the store counts
        them; nothing is done per transaction here)."""
        self.registry.register(_Committed(committed))

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _Committed(Collector):
    def __init__(self, committed: Callable[[], int]) -> None:
        self._committed = committed

    def collect(self) -> Iterable[Metric]:
        yield CounterMetricFamily(
            "syncgate_db_transactions",
            "Database transactions committed by this process",
            value=self._committed(),
        )


def _version() -> str:
    try:
        return metadata.version("syncgate")
    except metadata.PackageNotFoundError:
        return "unknown"


def reason_label(name: str) -> str:
    """A rejection reason as a metric label: snake_case (``SignatureInvalid`` ->
    ``signature_invalid``), one style for every reason."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()
