"""Shared fixtures: a real two-node Ray cluster on 127.0.0.1, a small data set, trial jobs.

The cluster (a head with 1 CPU and a separate worker node with 1 CPU, each its own ``ray start``
process group and temporary directory) starts once per session and is killed at the end; nothing
is left running. It skips, with the reason, where Ray cannot start here (CI's
``NEUROMOSAIC_STRICT_SKIPS=1`` turns that into a failure).

``test_cli.py`` runs the ``neuromosaic`` command, which also needs a strategy, an encoder, a code
generator, storage and the digits task. ``nox -s plugin`` installs this plugin alone with the
core, where a skip would fail under strict skips, so the module is not collected there (the
search across the cluster in ``test_search.py`` covers that session).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from neuromosaic_core.interfaces import TrialJob
from neuromosaic_core.model import TrainingSettings
from neuromosaic_core.testing.hostile import model_code
from neuromosaic_core.testing.plugins import leave_out_without

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
# The test cluster uses token authentication (see LocalCluster). Ray reads the mode when it is
# imported, so it is set here, before any test module imports ray.
if os.environ.get("RAY_AUTH_MODE") != "token" or not os.environ.get("RAY_AUTH_TOKEN"):
    os.environ.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(32))

CLI_NEEDS = {"random": "strategy", "mlp_conv1d": "encoder", "sql": "storage", "digits": "task", "template": "codegen"}
collect_ignore, pytest_report_header = leave_out_without("neuromosaic-runner-ray", CLI_NEEDS)

NET = model_code()  # the corpus's working 8 -> 16 -> 3 model
WRONG_SHAPE = NET.replace("nn.Linear(16, 3)", "nn.Linear(16, 4)")
#: Never finishes: for timeouts, cancellation and killing workers mid-trial.
SLOW = NET.replace("return self.body(x)", "return self.body(x) + sum(range(10**12)) * 0")


@pytest.fixture(scope="session")
def codes() -> dict[str, str]:
    return {"net": NET, "wrong_shape": WRONG_SHAPE, "slow": SLOW}


@pytest.fixture(scope="session")
def cluster() -> Iterator:
    from neuromosaic_runner_ray.local_cluster import ClusterStartError, LocalCluster

    cluster = LocalCluster(head_cpus=1)
    try:
        cluster.start()
        cluster.worker = cluster.add_node(cpus=1)
    except (ClusterStartError, OSError) as exc:
        cluster.stop()
        reason = f"cannot start a local Ray cluster here: {exc}"
        print(reason)
        pytest.skip(reason)
    try:
        yield cluster
    finally:
        import ray

        if ray.is_initialized():
            ray.shutdown()
        cluster.stop()
        assert not cluster.processes(), "Ray processes were left running"


@pytest.fixture(scope="session")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three well-separated clusters in 8 dimensions: any working trainer finds them."""
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(3, 8)) * 3
    y = rng.integers(0, 3, size=300)
    x = (centers[y] + rng.normal(size=(300, 8))).astype(np.float32)
    path = tmp_path_factory.mktemp("data") / "data.npz"
    np.savez(path, x_train=x[:240], y_train=y[:240], x_test=x[240:], y_test=y[240:])
    return path


@pytest.fixture
def make_job(tmp_path: Path, data: Path) -> Callable[..., TrialJob]:
    def make(code: str, trial: int = 1, timeout: float = 120.0, epochs: int = 5) -> TrialJob:
        code_path = tmp_path / "code" / f"trial-{trial}.py"
        code_path.parent.mkdir(exist_ok=True)
        code_path.write_text(code)
        return TrialJob(
            trial_id=trial, experiment="ray-test", code_path=str(code_path), data_path=str(data),
            result_path=str(tmp_path / "trials" / f"trial-{trial}" / "result.json"), input_shape=(8,), num_classes=3,
            training=TrainingSettings(epochs=epochs, batch_size=32, patience=epochs),
            weights_path=str(tmp_path / "weights" / f"trial-{trial}.pt"), timeout_s=timeout,
        )

    return make
