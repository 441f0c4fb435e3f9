"""The local runner against real child processes: results, failures, timeouts, cancellation."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from pathlib import Path

import attrs
import numpy as np
import pytest
from neuromosaic_runner_local import LocalRunnerSettings
from neuromosaic_runner_local.runner import LocalRunner

from neuromosaic_core.interfaces import TrialJob
from neuromosaic_core.model import ErrorClass, TrainingSettings
from neuromosaic_core.testing.hostile import model_code

NET = model_code()  # the corpus's working 8 -> 16 -> 3 model

WRONG_SHAPE = NET.replace("nn.Linear(16, 3)", "nn.Linear(16, 4)")
NAN = NET.replace("return self.body(x)", "return self.body(x) * float('nan')")
SLOW = NET.replace("return self.body(x)", "return self.body(x) + sum(range(10**12)) * 0")
SMUGGLED = "import os\n" + NET
#: A new sandboxed process per trial (the default is the warm pool, whose runner must be closed).
FRESH = LocalRunnerSettings(mode="fresh")


@pytest.fixture
def data(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(3, 8)) * 3
    y = rng.integers(0, 3, size=300)
    x = (centers[y] + rng.normal(size=(300, 8))).astype(np.float32)
    path = tmp_path / "data.npz"
    np.savez(path, x_train=x[:240], y_train=y[:240], x_test=x[240:], y_test=y[240:])
    return path


def job(tmp_path: Path, data: Path, code: str, timeout: float = 120.0, trial: int = 1) -> TrialJob:
    code_path = tmp_path / f"trial{trial}.py"
    code_path.write_text(code)
    return TrialJob(
        trial_id=trial, experiment="e", code_path=str(code_path), data_path=str(data),
        result_path=str(tmp_path / f"t{trial}" / "result.json"), input_shape=(8,), num_classes=3,
        training=TrainingSettings(epochs=5, batch_size=32, patience=3),
        weights_path=str(tmp_path / f"w{trial}.pt"), timeout_s=timeout,
    )


def run(coro):
    return asyncio.run(coro)


def test_a_good_trial_trains_and_reports_every_metric(tmp_path, data):
    result = run(LocalRunner(LocalRunnerSettings(workers=1, mode="fresh")).run_trial(job(tmp_path, data, NET)))
    assert result.ok, result.error
    m = result.metrics
    assert m["test_accuracy"] > 0.8  # well-separated clusters: a working trainer finds them
    assert m["params"] == 8 * 16 + 16 + 16 * 3 + 3
    assert m["flops"] > 0 and m["latency_ms"] > 0 and m["train_seconds"] > 0 and m["peak_memory_mb"] > 0
    assert Path(result.weights_path).is_file()
    assert (tmp_path / "t1" / "output.log").exists()


@pytest.mark.parametrize(
    ("code", "error_class"),
    [(WRONG_SHAPE, ErrorClass.SHAPE), (NAN, ErrorClass.NAN_LOSS), (SMUGGLED, ErrorClass.INVALID_CODE),
     ("from torch import nn\nclass Net(nn.Module):\n    def __init__(self):\n        raise RuntimeError('boom')\n"
      "    def forward(self, x):\n        return x\n", ErrorClass.IMPORT)],
)
def test_broken_code_comes_back_as_a_classified_failure(tmp_path, data, code, error_class):
    result = run(LocalRunner(FRESH).run_trial(job(tmp_path, data, code)))
    assert not result.ok
    assert result.error.error_class is error_class


def test_timeout_kills_the_trial_and_reports_it(tmp_path, data):
    start = time.monotonic()
    result = run(LocalRunner(FRESH).run_trial(job(tmp_path, data, SLOW, timeout=3)))
    assert result.error.error_class is ErrorClass.TIMEOUT
    assert time.monotonic() - start < 60  # killed, not waited for (a generous bound: not a benchmark)


def test_a_process_that_dies_is_a_crash(tmp_path, data, monkeypatch):
    fake_python = tmp_path / "python"
    fake_python.write_text("#!/bin/sh\necho dying >&2\nkill -9 $$\n")
    fake_python.chmod(0o755)
    result = run(LocalRunner(LocalRunnerSettings(python=str(fake_python), mode="fresh")).run_trial(job(tmp_path, data, NET)))
    assert result.error.error_class is ErrorClass.CRASH
    assert "signal 9" in result.error.message and "dying" in result.error.message


def test_cancelling_the_awaiting_task_kills_the_process_group(tmp_path, data):
    pid_file = tmp_path / "pid"

    async def scenario() -> None:
        runner = LocalRunner(FRESH)
        task = asyncio.create_task(runner.run_trial(job(tmp_path, data, SLOW, timeout=300)))
        await asyncio.sleep(4)
        pids = [p for p in os.listdir("/proc") if p.isdigit() and _is_harness(p, tmp_path)]
        assert pids, "the trial process should be running"
        pid_file.write_text(pids[0])
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    run(scenario())
    pid = int(pid_file.read_text())
    assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]


def _is_harness(pid: str, tmp_path: Path) -> bool:
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return False
    return "neuromosaic_core.harness" in cmd and str(tmp_path) in cmd


def test_workers_auto_uses_the_cpus_this_process_may_use():
    assert LocalRunner(LocalRunnerSettings(workers="auto")).workers == len(os.sched_getaffinity(0))
    assert LocalRunner(LocalRunnerSettings(workers=3)).workers == 3


def test_trials_do_not_inherit_credentials(monkeypatch):
    from neuromosaic_runner_local.runner import trial_environment

    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret")
    env = trial_environment()
    assert "OPENAI_API_KEY" not in env and env["OMP_NUM_THREADS"] == "1" and "PATH" in env


def test_a_model_over_the_parameter_budget_is_refused_before_training(tmp_path, data):
    over = job(tmp_path, data, NET)
    result = run(LocalRunner(FRESH).run_trial(attrs.evolve(over, max_params=10)))
    assert result.error.error_class is ErrorClass.CONSTRAINT
    assert "max_params" in result.error.message


def test_a_trial_does_not_outlive_a_killed_orchestrator(tmp_path, data):
    """SIGKILL the process that started the trial: the trial's process group goes too."""
    import json
    import signal
    import subprocess
    import sys

    slow = job(tmp_path, data, SLOW, timeout=300)
    script = (
        "import asyncio, json, sys\n"
        "from neuromosaic_core.interfaces import TrialJob\n"
        "from neuromosaic_core.model import converter\n"
        "from neuromosaic_runner_local import LocalRunnerSettings\n"
        "from neuromosaic_runner_local.runner import LocalRunner\n"
        "job = converter.structure(json.loads(sys.argv[1]), TrialJob)\n"
        "asyncio.run(LocalRunner(LocalRunnerSettings(mode='fresh')).run_trial(job))\n"
    )
    orchestrator = subprocess.Popen([sys.executable, "-c", script, json.dumps(__import__("neuromosaic_core.model").model.converter.unstructure(slow))])
    deadline = time.monotonic() + 60
    pids = []
    while not pids and time.monotonic() < deadline:
        time.sleep(0.5)
        pids = [p for p in os.listdir("/proc") if p.isdigit() and _is_harness(p, tmp_path)]
    assert pids, "the trial should have started"
    orchestrator.send_signal(signal.SIGKILL)
    orchestrator.wait()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(_is_harness(p, tmp_path) for p in pids):
        time.sleep(0.5)
    assert not any(_is_harness(p, tmp_path) for p in pids), "the orphaned trial kept running"


# -- resources, device, settings ---------------------------------------------------------------


def test_resources_measured_from_outside_come_with_every_result(tmp_path, data):
    good = run(LocalRunner(FRESH).run_trial(job(tmp_path, data, NET)))
    slow = run(LocalRunner(FRESH).run_trial(job(tmp_path, data, SLOW, timeout=3, trial=2)))
    for result in (good, slow):
        m = result.metrics
        assert m["peak_memory_mb"] > 50  # a Python with torch imported, at least
        assert m["cpu_seconds"] > 0 and m["wall_seconds"] > 0
    assert slow.error.error_class is ErrorClass.TIMEOUT
    assert slow.metrics["wall_seconds"] >= 3


def test_the_weights_are_written_inside_the_trial_directory_and_moved_where_the_job_wants_them(tmp_path, data):
    result = run(LocalRunner(FRESH).run_trial(job(tmp_path, data, NET)))
    assert result.weights_path == str(tmp_path / "w1.pt") and Path(result.weights_path).stat().st_size > 0
    assert not (tmp_path / "t1" / "weights.pt").exists()
    sandboxed = json.loads((tmp_path / "t1" / "job.json").read_text())
    assert sandboxed["weights_path"] == str((tmp_path / "t1" / "weights.pt").resolve())


def test_the_device_setting_reaches_the_harness(tmp_path, data):
    import torch

    auto = run(LocalRunner(LocalRunnerSettings(device="auto", mode="fresh")).run_trial(attrs.evolve(job(tmp_path, data, NET), device="auto")))
    assert auto.ok, auto.error
    expected = "cuda:0" if torch.cuda.is_available() else "cpu"
    assert f"trains on {expected}" in (tmp_path / "t1" / "output.log").read_text()
    missing = torch.cuda.device_count() + 3
    result = run(LocalRunner(FRESH).run_trial(attrs.evolve(job(tmp_path, data, NET, trial=2), device=f"cuda:{missing}")))
    assert result.error.error_class is ErrorClass.RUNTIME
    assert f"device cuda:{missing} requested" in result.error.message


@pytest.mark.parametrize(
    ("node", "expected"),
    [
        ({"mode": "warm"}, "runner.mode: expected one of fresh, pool, got 'warm'"),
        ({"memory_mb": 0}, "memory_mb must be a positive integer or null (no limit), got 0"),
        ({"device": "gpu"}, "device must be auto, cpu or cuda:N"),
        ({"isolation": "chroot"}, "runner.isolation: expected one of auto, bubblewrap, process-group"),
        ({"processes": "many"}, "runner.processes: expected an integer, got 'many'"),
    ],
)
def test_bad_settings_are_one_clear_line(node, expected):
    from neuromosaic_core.errors import ConfigError
    from neuromosaic_core.settings import structure_settings

    with pytest.raises(ConfigError) as info:
        structure_settings(node, LocalRunnerSettings, "runner")
    assert expected in str(info.value) and "\n" not in str(info.value)


def test_requiring_bubblewrap_where_it_is_missing_is_a_config_error(monkeypatch):
    import neuromosaic_core.sandbox as sandbox
    from neuromosaic_core.errors import ConfigError

    monkeypatch.setattr(sandbox.shutil, "which", lambda name: None)
    with pytest.raises(ConfigError, match="needs bwrap"):
        LocalRunner(LocalRunnerSettings(isolation="bubblewrap"))
    assert LocalRunner(LocalRunnerSettings(isolation="auto")).isolation == "process-group"


def test_the_process_group_fallback_still_runs_trials_and_kills_timeouts(tmp_path, data):
    runner = LocalRunner(LocalRunnerSettings(isolation="process-group", mode="fresh"))
    assert run(runner.run_trial(job(tmp_path, data, NET))).ok
    slow = run(runner.run_trial(job(tmp_path, data, SLOW, timeout=3, trial=2)))
    assert slow.error.error_class is ErrorClass.TIMEOUT


# -- the warm pool ---------------------------------------------------------------------------------


def test_the_pool_trains_like_a_fresh_process_and_reuses_its_worker(tmp_path, data):
    async def scenario():
        fresh = await LocalRunner(FRESH).run_trial(job(tmp_path, data, NET, trial=1))
        runner = LocalRunner(LocalRunnerSettings(mode="pool", workers=1))
        try:
            pooled = [await runner.run_trial(job(tmp_path, data, NET, trial=n)) for n in (2, 3)]
            return fresh, pooled, runner._pool.started
        finally:
            await runner.close()

    fresh, pooled, started = run(scenario())
    for result in pooled:
        assert result.ok, result.error
        assert result.metrics["test_accuracy"] == pytest.approx(fresh.metrics["test_accuracy"])  # same seed, same harness
        assert result.metrics["params"] == fresh.metrics["params"]
        assert Path(result.weights_path).is_file() and result.metrics["peak_memory_mb"] > 0
    assert started == 1
    assert (tmp_path / "t3" / "output.log").read_text().count("trains on") == 1


def test_a_pool_worker_that_dies_is_replaced(tmp_path, data):
    import psutil

    async def scenario():
        runner = LocalRunner(LocalRunnerSettings(mode="pool", workers=1))
        try:
            first = await runner.run_trial(job(tmp_path, data, NET, trial=1))
            worker = runner._pool.idle[0]
            for proc in worker.tree():
                with contextlib.suppress(psutil.Error):
                    proc.kill()
            await asyncio.sleep(0.5)
            second = await runner.run_trial(job(tmp_path, data, NET, trial=2))
            third = await runner.run_trial(job(tmp_path, data, NET, trial=3))
            assert runner._pool.replaced == 1 and runner._pool.started == 2
            return first, second, third
        finally:
            await runner.close()

    first, second, third = run(scenario())
    assert first.ok and second.ok and third.ok, (first.error, second.error, third.error)


def test_cancelling_a_pooled_trial_kills_its_worker(tmp_path, data):
    async def scenario():
        runner = LocalRunner(LocalRunnerSettings(mode="pool", workers=1))
        task = asyncio.create_task(runner.run_trial(job(tmp_path, data, SLOW, timeout=300)))
        for _ in range(600):
            await asyncio.sleep(0.1)
            if runner._pool.busy:
                break
        await asyncio.sleep(2)
        pids = [p.pid for w in runner._pool.busy for p in w.tree()]
        assert pids
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await runner.close()
        return pids

    pids = run(scenario())

    def alive() -> list[int]:
        return [p for p in pids if Path(f"/proc/{p}").exists() and "Z" not in Path(f"/proc/{p}/stat").read_text().split()[2]]

    deadline = time.monotonic() + 30  # a killed process with torch mapped takes a moment to go
    while alive() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert alive() == []


@pytest.mark.parametrize("isolation", ["auto", "process-group"])
def test_pool_workers_and_their_trials_do_not_outlive_a_killed_orchestrator(tmp_path, data, isolation):
    import json
    import signal
    import subprocess
    import sys

    import psutil

    from neuromosaic_core.model import converter

    slow = job(tmp_path, data, SLOW, timeout=300)
    script = (
        "import asyncio, json, sys\n"
        "from neuromosaic_core.interfaces import TrialJob\n"
        "from neuromosaic_core.model import converter\n"
        "from neuromosaic_runner_local import LocalRunnerSettings\n"
        "from neuromosaic_runner_local.runner import LocalRunner\n"
        "job = converter.structure(json.loads(sys.argv[1]), TrialJob)\n"
        f"asyncio.run(LocalRunner(LocalRunnerSettings(mode='pool', isolation={isolation!r})).run_trial(job))\n"
    )
    scratch = tmp_path / "scratch"  # the pool's directories: a killed orchestrator cannot remove them
    scratch.mkdir()
    orchestrator = subprocess.Popen([sys.executable, "-c", script, json.dumps(converter.unstructure(slow))],
                                    env={**os.environ, "TMPDIR": str(scratch)})
    parent = psutil.Process(orchestrator.pid)
    deadline = time.monotonic() + 120
    tree: list = []
    while time.monotonic() < deadline:  # the worker, and under it the trial's child, have started
        tree = parent.children(recursive=True)
        with contextlib.suppress(psutil.Error):
            if any("neuromosaic_core.sandbox.worker" in " ".join(p.cmdline()) and p.children() for p in tree):
                break
        time.sleep(0.5)
    assert tree, "the pool worker should have started"
    time.sleep(1)
    tree = parent.children(recursive=True)
    orchestrator.send_signal(signal.SIGKILL)
    orchestrator.wait()

    def alive() -> list:
        found = []
        for p in tree:
            with contextlib.suppress(psutil.Error):
                if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                    found.append(p)
        return found

    deadline = time.monotonic() + 30
    while alive() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert alive() == [], "processes of the pool outlived the orchestrator"


def _script_model(body: str) -> str:
    """A working model whose constructor first runs ``body`` (unvalidated: needs write_unvalidated_python)."""
    from neuromosaic_core.testing.hostile import model_code

    return model_code(body, head="import glob\nimport os\n\nimport torch\nfrom torch import nn\n")


#: Where trial 1 leaves files and trial 2 looks for them: its HOME and TMPDIR, beside its directory,
#: and (only in the sandbox, whose /tmp is private) /tmp.
PLACES = "[os.environ['HOME'], os.environ['TMPDIR'], os.path.dirname(os.getcwd())] + (['/tmp'] if os.getuid() == 65534 else [])"
LEAVE = (
    f"for d in {PLACES}:\n"
    "    try:\n"
    "        open(os.path.join(d, 'left-by-trial-1'), 'w').write('x')\n"
    "    except OSError:\n"
    "        pass\n"
)
LOOK = (
    f"found = [p for d in {PLACES} for p in glob.glob(os.path.join(d, '**', 'left-by-trial-1'), recursive=True)]\n"
    "print('SEEN', sorted(set(found)), 'HOME', os.environ['HOME'], flush=True)\n"
)


@pytest.mark.parametrize("isolation", ["auto", "process-group"])
def test_each_pooled_trial_starts_with_an_empty_private_tmp_and_home(tmp_path, data, isolation):
    """Trial 1 leaves files in $HOME, $TMPDIR, /tmp and beside its directory; trial 2, on the same
    warm worker, sees none of them."""
    from neuromosaic_core.sandbox import bubblewrap_available
    from neuromosaic_core.testing.hostile import write_unvalidated_python

    if isolation == "auto" and not bubblewrap_available():
        pytest.skip("bubblewrap (bwrap) is not installed")
    python = write_unvalidated_python(tmp_path / "driver")

    async def scenario():
        runner = LocalRunner(LocalRunnerSettings(mode="pool", workers=1, python=str(python), isolation=isolation))
        try:
            first = await runner.run_trial(job(tmp_path, data, _script_model(LEAVE), trial=1))
            second = await runner.run_trial(job(tmp_path, data, _script_model(LOOK), trial=2))
            return first, second, runner._pool.started
        finally:
            await runner.close()

    first, second, started = run(scenario())
    assert first.ok and second.ok, (first.error, second.error)
    assert started == 1  # the same warm worker served both (and could remove everything trial 1 left)
    log = (tmp_path / "t2" / "output.log").read_text()
    assert "SEEN [] HOME" in log, log[-2000:]


BOMB = "while True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"


@pytest.mark.parametrize("mode", ["fresh", "pool"])
def test_a_fork_bomb_is_stopped_at_once_and_reported_in_words(tmp_path, data, mode):
    """A fork bomb that keeps retrying (not one that dies at the first failed fork) is stopped at
    the process limit, not at the timeout; in the pool, the next trial still trains."""
    from neuromosaic_core.sandbox import bubblewrap_available
    from neuromosaic_core.testing.hostile import write_unvalidated_python

    if not bubblewrap_available():
        pytest.skip("bubblewrap (bwrap) is not installed: as root only the sandbox's uid makes the process limit bind")
    python = write_unvalidated_python(tmp_path / "driver")

    async def scenario():
        runner = LocalRunner(LocalRunnerSettings(mode=mode, workers=1, python=str(python)))
        try:
            bomb = await runner.run_trial(job(tmp_path, data, _script_model(BOMB), trial=1, timeout=120))
            good = await runner.run_trial(job(tmp_path, data, NET, trial=2))
            return bomb, good
        finally:
            await runner.close()

    bomb, good = run(scenario())
    assert bomb.error.error_class is ErrorClass.CRASH, bomb.error
    assert "too many processes" in bomb.error.message and "runner.processes=32" in bomb.error.message
    assert bomb.metrics["peak_memory_mb"] < 2048  # the sandbox's memory, not the sum over its forks
    assert good.ok, good.error


def test_trials_get_a_cpu_time_limit_derived_from_their_timeout_unless_told():
    from neuromosaic_core.sandbox import default_cpu_seconds

    assert LocalRunner().limits(100).cpu_seconds == default_cpu_seconds(100) > 100
    assert LocalRunner(LocalRunnerSettings(cpu_seconds=7)).limits(100).cpu_seconds == 7
    assert LocalRunner(LocalRunnerSettings(cpu_seconds=None)).limits(100).cpu_seconds is None


class _Generator:
    def __init__(self, trusted: bool) -> None:
        self.trusted = trusted


def test_untrusted_code_without_bubblewrap_is_refused_unless_process_group_is_chosen(monkeypatch):
    import neuromosaic_core.sandbox as sandbox
    from neuromosaic_core.errors import ConfigError

    monkeypatch.setattr(sandbox.shutil, "which", lambda name: None)  # a machine without bwrap
    with pytest.raises(ConfigError) as info:
        LocalRunner().check_code_trust(_Generator(trusted=False), "openai")
    message = str(info.value)
    assert "\n" not in message and "codegen=openai" in message
    assert "apt-get install bubblewrap" in message and "runner=podman" in message and "runner.isolation=process-group" in message
    LocalRunner().check_code_trust(_Generator(trusted=True), "template")  # the template's own code runs (with the warning)
    LocalRunner(LocalRunnerSettings(isolation="process-group")).check_code_trust(_Generator(trusted=False), "openai")  # chosen


def test_untrusted_code_runs_where_bubblewrap_is_installed():
    from neuromosaic_core.sandbox import bubblewrap_available

    if not bubblewrap_available():
        pytest.skip("bubblewrap (bwrap) is not installed")
    LocalRunner().check_code_trust(_Generator(trusted=False), "openai")


def test_by_default_trials_share_a_warm_worker(tmp_path, data):
    async def scenario():
        runner = LocalRunner(LocalRunnerSettings(workers=1))
        try:
            results = [await runner.run_trial(job(tmp_path, data, NET, trial=n)) for n in (1, 2)]
            return results, runner._pool is not None and runner._pool.started
        finally:
            await runner.close()

    results, started = run(scenario())
    assert all(r.ok for r in results), [r.error for r in results]
    assert started == 1  # torch imported once for both trials


# -- multi-fidelity segments -----------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["fresh", "pool"])
def test_a_trial_trained_in_two_segments_ends_where_one_run_ends(tmp_path, data, mode):
    """Promotion, not restart: the second segment goes on from the checkpoint the first left in the
    trial directory, and the trial ends with the curve and the accuracy of one uninterrupted run."""
    import torch

    whole_job = job(tmp_path, data, NET, trial=1)
    segment = job(tmp_path, data, NET, trial=2)
    checkpoint = Path(segment.result_path).parent / "checkpoint.pt"

    async def scenario():
        runner = LocalRunner(LocalRunnerSettings(mode=mode, workers=1))
        try:
            whole = await runner.run_trial(whole_job)
            first = await runner.run_trial(attrs.evolve(segment, max_epochs=2, checkpoint_path=str(checkpoint)))
            left = checkpoint.is_file()
            if left:  # a mark that only a segment reading this file carries on (training from scratch gives the same curve)
                state = torch.load(checkpoint, weights_only=True)
                torch.save({**state, "train_seconds": 1000.0}, checkpoint)
            last = await runner.run_trial(attrs.evolve(segment, max_epochs=5, checkpoint_path=str(checkpoint)))
            outside = await runner.run_trial(attrs.evolve(segment, max_epochs=2, checkpoint_path=str(tmp_path / "elsewhere.pt")))
            return whole, first, left, last, outside
        finally:
            await runner.close()

    whole, first, left, last, outside = run(scenario())
    for result in (whole, first, last):
        assert result.ok, result.error
    assert (len(first.curve), first.fidelity, first.metrics["epochs"]) == (2, 2, 2)
    assert left  # the first segment paused with its training state in the trial directory
    assert (len(last.curve), last.fidelity, last.metrics["epochs"]) == (5, 5, 5)
    assert last.curve == pytest.approx(whole.curve, abs=1e-6) and len(whole.curve) == 5
    assert last.curve[:2] == pytest.approx(first.curve, abs=1e-6)
    assert last.metrics["test_accuracy"] == pytest.approx(whole.metrics["test_accuracy"])
    assert last.metrics["train_seconds"] > 1000  # it went on from the checkpoint, not from scratch
    assert not last.pruned and not first.pruned
    assert not checkpoint.exists()  # training reached its end: nothing left to continue
    assert not outside.ok and "not a file of the trial's directory" in outside.error.message
    assert not (tmp_path / "elsewhere.pt").exists()
