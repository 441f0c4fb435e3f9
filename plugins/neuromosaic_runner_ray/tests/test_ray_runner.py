"""The ray runner against a real two-node cluster on 127.0.0.1: results, failures, timeouts,
cancellation, and Ray workers and nodes that die mid-trial."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from neuromosaic_runner_ray import RayRunnerSettings
from neuromosaic_runner_ray.local_cluster import all_gone, harness_processes, ray_trial_workers, wait_for

from neuromosaic_core.model import ErrorClass

RESOURCES = ("peak_memory_mb", "cpu_seconds", "wall_seconds")


@pytest.fixture
def runner(cluster):
    from neuromosaic_runner_ray.runner import RayRunner

    made = []

    def make(**settings):
        r = RayRunner(RayRunnerSettings(address=cluster.address, **settings))
        made.append(r)
        return r

    yield make
    for r in made:
        asyncio.run(r.close())


def run(coro):
    return asyncio.run(coro)


async def gather(runner, jobs):
    return await asyncio.gather(*(runner.run_trial(j) for j in jobs))


def test_importing_the_plugin_does_not_import_ray():
    code = "import sys, neuromosaic_runner_ray; print('ray' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.stdout.strip() == "False", proc.stderr


def test_trials_run_on_both_nodes_and_come_back_with_weights_and_resources(runner, make_job, codes, cluster):
    from loguru import logger

    nodes: set[str] = set()
    sink = logger.add(lambda m: nodes.add(m.record["message"].split("node ")[1].split()[0])
                      if "ran on node" in m.record["message"] else None, level="DEBUG")
    try:
        r = runner()
        assert r.workers == 2  # workers=auto: 2 CPUs in the cluster, 1 per trial
        jobs = [make_job(codes["net"], trial=n) for n in (1, 2, 3)] + [make_job(codes["wrong_shape"], trial=4)]
        results = run(gather(r, jobs))
    finally:
        logger.remove(sink)
    for job, result in zip(jobs[:3], results[:3], strict=True):
        assert result.ok, result.error
        assert result.metrics["test_accuracy"] > 0.8 and result.metrics["params"] == 8 * 16 + 16 + 16 * 3 + 3
        # the worker sent the weights back; the orchestrator's side wrote them where the job said
        assert result.weights_path == job.weights_path and Path(job.weights_path).stat().st_size > 0
        trial_dir = Path(job.result_path).parent
        assert json.loads(Path(job.result_path).read_text())["metrics"]["params"] == result.metrics["params"]
        assert (trial_dir / "job.json").is_file() and (trial_dir / "output.log").is_file()
        assert all(result.metrics[k] > 0 for k in RESOURCES)
    bad = results[3]
    assert bad.error.error_class is ErrorClass.SHAPE
    assert all(bad.metrics[k] > 0 for k in RESOURCES)  # measured for failed trials too
    assert not Path(jobs[3].weights_path).exists()
    assert len(nodes) == 2, f"expected trials on the head and the worker node, saw {nodes}"


def test_the_data_set_goes_to_the_object_store_once(runner, make_job, codes, monkeypatch):
    import ray

    puts = []
    real_put = ray.put
    monkeypatch.setattr(ray, "put", lambda value, **kw: puts.append(len(value)) or real_put(value, **kw))
    r = runner(workers=1)
    results = run(gather(r, [make_job(codes["net"], trial=n) for n in (1, 2)]))
    assert all(res.ok for res in results)
    assert len(puts) == 1 and puts[0] == Path(make_job(codes["net"]).data_path).stat().st_size


def test_a_trial_over_its_time_limit_is_killed_and_reported(runner, make_job, codes):
    result = run(runner().run_trial(make_job(codes["slow"], timeout=4)))
    assert result.error.error_class is ErrorClass.TIMEOUT and "4 s limit" in result.error.message
    assert result.metrics["wall_seconds"] >= 4
    assert wait_for(lambda: all_gone(harness_processes()), what="the timed-out trial to be killed")


def test_cancelling_the_awaiting_task_cancels_the_ray_task_and_kills_the_trial(runner, make_job, codes):
    r = runner()

    async def scenario():
        task = asyncio.create_task(r.run_trial(make_job(codes["slow"], timeout=300)))
        pids = await asyncio.to_thread(wait_for, harness_processes, 90, "the trial to start")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return pids

    pids = run(scenario())
    assert wait_for(lambda: all_gone(pids), what="the cancelled trial's processes to go")
    assert run(r.run_trial(make_job(codes["net"], trial=2))).ok  # the runner and the cluster still work


def _kill_worker_when_the_trial_runs(seen: list[int]) -> None:
    """SIGKILL the Ray worker process running the trial once its harness has started."""
    pids = wait_for(lambda: [p for p in harness_processes() if p not in seen], 90, "a trial process")
    seen.extend(pids)
    for worker in wait_for(ray_trial_workers, 30, "the ray worker"):
        os.kill(worker, signal.SIGKILL)


def test_a_trial_whose_ray_worker_dies_is_retried_once_and_completes(runner, make_job, codes):
    r = runner(max_retries=1)
    seen: list[int] = []

    async def scenario():
        task = asyncio.create_task(r.run_trial(make_job(codes["net"])))
        await asyncio.to_thread(_kill_worker_when_the_trial_runs, seen)
        return await task

    result = run(scenario())
    assert result.ok, result.error
    assert all_gone(seen[:1])  # the killed attempt's trial process died with its worker
    assert wait_for(lambda: all_gone(harness_processes()), what="no trial process left")


def test_a_trial_whose_worker_dies_again_fails_with_the_reason_and_the_next_one_runs(runner, make_job, codes):
    r = runner(max_retries=1)
    seen: list[int] = []

    async def scenario():
        task = asyncio.create_task(r.run_trial(make_job(codes["slow"], timeout=300)))
        for _ in range(2):  # the first attempt and its retry
            await asyncio.to_thread(_kill_worker_when_the_trial_runs, seen)
        return await task

    result = run(scenario())
    assert result.error.error_class is ErrorClass.CRASH
    assert result.error.message.startswith("ray worker died (tried 2 times)")
    assert len(seen) == 2 and wait_for(lambda: all_gone(seen), what="the killed trials' processes to go")
    assert run(r.run_trial(make_job(codes["net"], trial=2))).ok  # the search goes on


def test_bad_addresses_fail_in_one_line_before_any_work(tmp_path):
    from neuromosaic_runner_ray.local_cluster import free_port
    from neuromosaic_runner_ray.runner import RayClusterError, RayRunner

    from neuromosaic_core.errors import ConfigError, NeuromosaicError

    with pytest.raises(ConfigError, match="expected host:port"):
        RayRunner(RayRunnerSettings(address="no-port-here"))
    port = free_port()
    with pytest.raises(RayClusterError, match=f"runner.address='127.0.0.1:{port}': no Ray cluster answers there"):
        RayRunner(RayRunnerSettings(address=f"127.0.0.1:{port}"))
    assert issubclass(RayClusterError, NeuromosaicError)  # the CLI prints it in one line and exits 2


def test_a_trial_no_node_can_hold_is_refused_up_front(cluster):
    from neuromosaic_runner_ray.runner import RayClusterError, RayRunner

    with pytest.raises(RayClusterError, match=r"num_gpus=1 .*largest has 1 CPUs and 0 GPUs"):
        RayRunner(RayRunnerSettings(address=cluster.address, num_gpus=1))
    import ray

    assert not ray.is_initialized()  # the failed runner disconnected


@pytest.mark.parametrize(
    ("settings", "message"),
    [({"num_cpus": "-1"}, "num_cpus must be at least 0"), ({"max_retries": "many"}, "expected an integer"),
     ({"adress": "x"}, "unknown key 'adress'")],
)
def test_bad_settings_are_refused_with_the_key(settings, message):
    from neuromosaic_core.errors import ConfigError
    from neuromosaic_core.settings import structure_settings

    with pytest.raises(ConfigError, match=message):
        structure_settings(settings, RayRunnerSettings, "runner")


def test_an_empty_address_starts_a_private_local_cluster_and_close_stops_it(make_job, codes):

    import ray
    from neuromosaic_runner_ray.local_cluster import pids_naming
    from neuromosaic_runner_ray.runner import RayRunner

    assert not ray.is_initialized()
    temp_dir = tempfile.mkdtemp(prefix="nm-ray-local-")  # short: Ray's socket paths must stay < 108 bytes
    try:
        r = RayRunner(RayRunnerSettings(temp_dir=temp_dir))
        assert r.workers == len(os.sched_getaffinity(0))
        assert pids_naming(temp_dir), "the local cluster's processes should run"
        assert run(r.run_trial(make_job(codes["net"]))).ok
        run(r.close())
        assert not ray.is_initialized()
        assert wait_for(lambda: not pids_naming(temp_dir), 60, "the local cluster to stop")
    finally:
        for pid in pids_naming(temp_dir):
            os.kill(pid, signal.SIGKILL)
        shutil.rmtree(temp_dir, ignore_errors=True)


def test_a_process_can_start_a_second_local_cluster_after_closing_the_first(tmp_path):
    # A Hydra multirun builds one runner per job in the same process; the private cluster's auth
    # token must outlive the first runner (Ray read the mode on import), or the second one hangs.
    temp_dir = tempfile.mkdtemp(prefix="nm-ray-twice-")
    code = (
        "import asyncio, ray\n"
        "from neuromosaic_runner_ray import RayRunnerSettings\n"
        "from neuromosaic_runner_ray.runner import RayRunner\n"
        "for _ in range(2):\n"
        f"    r = RayRunner(RayRunnerSettings(temp_dir={temp_dir!r}))\n"
        "    assert ray.is_initialized() and ray.cluster_resources().get('CPU')\n"
        "    asyncio.run(r.close())\n"
        "print('two clusters')\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}
    try:
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180, env=env)
        assert proc.returncode == 0 and "two clusters" in proc.stdout, proc.stderr[-2000:]
    finally:
        from neuromosaic_runner_ray.local_cluster import pids_naming

        for pid in pids_naming(temp_dir):
            os.kill(pid, signal.SIGKILL)
        shutil.rmtree(temp_dir, ignore_errors=True)


def test_a_trial_trained_in_two_segments_ships_its_checkpoint_and_ends_like_one_run(runner, make_job, codes):
    """Promotion, not restart: the checkpoint's bytes go to the worker with the job and come back
    with the reply (the worker's directory is gone by then), and the trial ends as one run ends."""
    import attrs
    import torch

    r = runner()
    whole_job, segment = make_job(codes["net"], trial=1), make_job(codes["net"], trial=2)
    checkpoint = Path(segment.result_path).parent / "checkpoint.pt"
    whole = run(r.run_trial(whole_job))
    first = run(r.run_trial(attrs.evolve(segment, max_epochs=2, checkpoint_path=str(checkpoint))))
    assert first.ok, first.error
    assert (len(first.curve), first.fidelity) == (2, 2) and checkpoint.is_file()
    # a mark only a segment that reads this file carries on (from scratch gives the same curve)
    torch.save({**torch.load(checkpoint, weights_only=True), "train_seconds": 1000.0}, checkpoint)
    last = run(r.run_trial(attrs.evolve(segment, max_epochs=5, checkpoint_path=str(checkpoint))))
    assert whole.ok and last.ok, (whole.error, last.error)
    assert (len(last.curve), last.fidelity, last.metrics["epochs"]) == (5, 5, 5)
    assert last.curve == pytest.approx(whole.curve, abs=1e-6)
    assert last.metrics["test_accuracy"] == pytest.approx(whole.metrics["test_accuracy"])
    assert last.metrics["train_seconds"] > 1000  # went on from the checkpoint, not from scratch
    assert not last.pruned
    assert not checkpoint.exists()  # training reached its end: the worker sent none back
