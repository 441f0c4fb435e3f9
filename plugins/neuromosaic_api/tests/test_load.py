"""A bounded load test on loopback: 500 concurrent requests for the trial list, no errors, and
paging returns every trial exactly once. (Throughput is measured by benchmarks/api_load.py.)"""

from __future__ import annotations

import asyncio

from neuromosaic_api.testing import READ, LiveServer, api_settings, fill_many, load, page_through

from neuromosaic_core.testing.memory import InMemoryResultsDB

TRIALS = 600


class SharedMemoryDB(InMemoryResultsDB):
    """The in-memory database without its defensive deep copies (the API never mutates what it
    reads): 500 requests each copying 600 trials would measure ``copy.deepcopy``, not the API."""

    def list_trials(self, experiment, status=None):
        return [t for t in self.trials.values() if t.experiment == experiment and (status is None or t.status == status)]


def test_500_concurrent_requests_without_errors_and_paging_sees_every_trial_once(tmp_path):
    from neuromosaic_api.app import create_app

    db = SharedMemoryDB()
    fill_many(db, "big", TRIALS)
    with LiveServer(create_app(api_settings(tmp_path, rate=0), db=db)) as server:
        path = "/api/experiments/big/trials"
        stats = asyncio.run(load(server.url, path, READ, clients=8, requests=500, pages=TRIALS // 50, limit=50))
        assert stats["requests"] == 500 and stats["errors"] == []
        numbers = page_through(server.url, path, READ, limit=37)  # a size that leaves a short last page
    assert sorted(numbers) == list(range(1, TRIALS + 1)) and len(numbers) == TRIALS
