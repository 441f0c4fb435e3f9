"""Searches across the cluster: a node lost mid-search, and the orchestrator driving the ray runner
with only the core installed (the CLI search is in ``test_cli.py``)."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import numpy as np
from neuromosaic_runner_ray import RayRunnerSettings
from neuromosaic_runner_ray.local_cluster import harness_processes, wait_for

from neuromosaic_core.interfaces import ArchitectureEncoder, CodeGenProvider, SearchStrategy, Task
from neuromosaic_core.model import (
    ArchitectureSpec,
    ArchitectureVector,
    IntDimension,
    Layer,
    SearchSpace,
    TrainingSettings,
    TrialStatus,
)
from neuromosaic_core.orchestrator import Components, Orchestrator
from neuromosaic_core.settings import CoreSettings, ExperimentSettings, SearchSettings
from neuromosaic_core.testing.memory import InMemoryResultsDB


def test_a_node_lost_mid_trial_costs_a_retry_not_the_trial(cluster, make_job, codes):
    from neuromosaic_runner_ray.runner import RayRunner

    doomed = cluster.add_node(cpus=1)  # 3 nodes with 1 CPU each: three trials run one per node
    seen: set[int] = set()
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            seen.update(harness_processes())
            stop.wait(0.05)

    runner = RayRunner(RayRunnerSettings(address=cluster.address, max_retries=1))
    assert runner.workers == 3

    async def scenario():
        jobs = [make_job(codes["net"], trial=n, epochs=300) for n in (1, 2, 3)]
        tasks = [asyncio.create_task(runner.run_trial(j)) for j in jobs]
        await asyncio.to_thread(wait_for, lambda: len(harness_processes()) == 3, 120, "three trials running")
        cluster.kill_node(doomed)
        return await asyncio.gather(*tasks)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        results = asyncio.run(scenario())
    finally:
        stop.set()
        watcher.join()
        asyncio.run(runner.close())
    assert [r.ok for r in results] == [True] * 3, [r.error for r in results]
    assert len(seen) == 4  # the trial on the lost node ran a second time, on a node still alive


# -- a whole search through the orchestrator -----------------------------------------------------

SPACE = SearchSpace([IntDimension("width", low=4, high=32)])


class Widths(SearchStrategy):
    def __init__(self, widths: list[int]) -> None:
        super().__init__(SPACE)
        self.widths, self.told = list(widths), []

    def suggest_architectures(self, n):
        if not self.widths:
            raise AssertionError("the search asked for more trials than it should need")
        out, self.widths = self.widths[:n], self.widths[n:]
        return [ArchitectureVector({"width": w}) for w in out]

    def update_with_results(self, results):
        self.told.extend(results)


class WidthEncoder(ArchitectureEncoder):
    def search_space(self):
        return SPACE

    def decode(self, vector):
        return ArchitectureSpec("mlp", [Layer("linear", {"out_features": vector["width"]}), Layer("activation", {"fn": "relu"})])

    def encode(self, spec):
        return ArchitectureVector({"width": spec.layers[0].params["out_features"]})


class MlpCode(CodeGenProvider):
    trusted = True  # correct by construction: the ray runner is under test, not code generation

    def generate_code(self, request):
        width = request.spec.layers[0].params["out_features"]
        return ("import torch\nfrom torch import nn\n\n\nclass Net(nn.Module):\n    def __init__(self) -> None:\n"
                f"        super().__init__()\n        self.body = nn.Sequential(nn.Linear(8, {width}), nn.ReLU(), "
                f"nn.Linear({width}, 3))\n\n    def forward(self, x: torch.Tensor) -> torch.Tensor:\n"
                "        return self.body(x)\n")


class Clusters(Task):
    name = "clusters"
    input_shape = (8,)
    num_classes = 3

    def prepare_data(self, directory: Path) -> Path:
        rng = np.random.default_rng(1)
        centers = rng.normal(size=(3, 8)) * 3
        y = rng.integers(0, 3, size=300)
        x = (centers[y] + rng.normal(size=(300, 8))).astype(np.float32)
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / "clusters.npz"
        np.savez(path, x_train=x[:240], y_train=y[:240], x_test=x[240:], y_test=y[240:])
        return path


def test_a_search_across_the_cluster_stores_every_trial(cluster, tmp_path):
    from neuromosaic_runner_ray.runner import RayRunner

    settings = RayRunnerSettings(address=cluster.address, timeout=300)
    runner = RayRunner(settings)
    storage = InMemoryResultsDB()
    strategy = Widths([4, 8, 16, 32])
    core = CoreSettings(ExperimentSettings("ray-search"), SearchSettings(trials=4),
                        training=TrainingSettings(epochs=5, patience=5))
    components = Components(strategy, WidthEncoder(), MlpCode(), runner, storage, Clusters())
    summary = asyncio.run(Orchestrator(core, components, tmp_path / "run", show_progress=False).run(settings))
    assert summary["trials"]["completed"] == 4
    trials = storage.list_trials("ray-search")
    assert [t.status for t in trials] == [TrialStatus.COMPLETED] * 4
    assert sorted(t.vector["width"] for t in trials) == [4, 8, 16, 32]
    for t in trials:
        assert t.result.metrics["params"] == 8 * t.vector["width"] + t.vector["width"] + t.vector["width"] * 3 + 3
        assert Path(t.result.weights_path).is_file() and t.result.metrics["wall_seconds"] > 0
    assert len(strategy.told) == 4 and summary["best"]["test_accuracy"] > 0.8
    import ray

    assert not ray.is_initialized()  # the orchestrator closed the runner, which left the cluster
