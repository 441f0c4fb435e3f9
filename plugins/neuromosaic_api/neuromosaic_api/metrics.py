"""Prometheus metrics: the API's own latencies and errors, and the trials read at scrape time.

Each app has its own registry (tests build many apps in one process). Trial figures are not
counted by the API (searches run in other processes): a collector asks the results database on
every scrape, with the backend's indexed queries (``count_trials``, ``metric_points``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, SummaryMetricFamily
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from neuromosaic_core.interfaces import ResultsDB
from neuromosaic_core.model import TrialStatus

#: Metrics the runners store for every trial (wall time, CPU time, peak memory), exported as summaries.
RESOURCE_METRICS = {
    "wall_seconds": ("neuromosaic_trial_duration_seconds", "Wall-clock time of finished trials"),
    "cpu_seconds": ("neuromosaic_trial_cpu_seconds", "CPU time of finished trials"),
    "peak_memory_mb": ("neuromosaic_trial_peak_memory_megabytes", "Peak memory of finished trials"),
}


class TrialCollector(Collector):
    """Per experiment: trials by status, and count/sum of each resource metric of completed trials."""

    def __init__(self, db: ResultsDB) -> None:
        self.db = db

    def collect(self) -> Iterator[Any]:
        trials = GaugeMetricFamily("neuromosaic_trials", "Stored trials by experiment and status",
                                   labels=["experiment", "status"])
        summaries = {key: SummaryMetricFamily(name, text, labels=["experiment"]) for key, (name, text) in RESOURCE_METRICS.items()}
        for experiment in self.db.list_experiments():
            counts = self.db.count_trials(experiment.name)
            for status in TrialStatus:
                trials.add_metric([experiment.name, status.value], counts.get(status, 0))
            for key, family in summaries.items():
                values = [v[0] for _, v in self.db.metric_points(experiment.name, [key])]
                family.add_metric([experiment.name], count_value=len(values), sum_value=sum(values))
        yield trials
        yield from summaries.values()


class ApiMetrics:
    """The registry of one app: request latency per route and status, errors per route and status."""

    def __init__(self, db: ResultsDB) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)  # the server's own CPU, memory, open files
        self.registry.register(TrialCollector(db))
        self.latency = Histogram("neuromosaic_api_request_duration_seconds", "API request latency",
                                 ["method", "route"], registry=self.registry,
                                 buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
        self.requests = Counter("neuromosaic_api_requests", "API requests", ["method", "route", "status"], registry=self.registry)
        self.errors = Counter("neuromosaic_api_request_errors", "API responses with a 4xx or 5xx status",
                              ["method", "route", "status"], registry=self.registry)

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        self.latency.labels(method, route).observe(seconds)
        self.requests.labels(method, route, str(status)).inc()
        if status >= 400:
            self.errors.labels(method, route, str(status)).inc()
