"""The podman runner against real containers: a trial trains, the container is locked down, out of
memory and timeouts are failed trials with those reasons, containers never outlive their trial."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import attrs
import pytest
from neuromosaic_runner_podman import PodmanRunnerSettings, image
from neuromosaic_runner_podman.runner import PodmanRunner
from neuromosaic_runner_podman.service import PodmanUnavailable

from neuromosaic_core.model import ErrorClass, TrainingSettings
from neuromosaic_core.testing.hostile import CASES_BY_NAME, make_job, recorded, write_unvalidated_python

NET = CASES_BY_NAME["nan_loss"].code.replace(" * float('nan')", "")
LOOP = CASES_BY_NAME["infinite_loop"].code
GROWING = CASES_BY_NAME["memory_bomb_growing"].code

#: A model that records what it sees of its sandbox in the trial directory, then trains normally.
#: It imports os and socket, so it runs with validation bypassed (the hostile corpus's test seam).
FACTS = '''import os
import socket
import json
import torch
from torch import nn


def _try(fn):
    try:
        fn()
        return "ok"
    except Exception as exc:
        return type(exc).__name__ + ": " + str(exc)


def _write(path):
    with open(path, "w") as f:
        f.write("x")


def _connect():
    socket.create_connection(("1.1.1.1", 53), timeout=3)


def _read(path):
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError as exc:
        return "unreadable: " + str(exc)


def _first(*paths):
    for path in paths:
        if os.path.exists(path):
            return _read(path)
    return "missing"


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        status = dict(line.split(":", 1) for line in _read("/proc/self/status").splitlines() if ":" in line)
        facts = {
            "uid": os.getuid(), "gid": os.getgid(), "euid": os.geteuid(),
            "cap_eff": status["CapEff"].strip(), "cap_bnd": status["CapBnd"].strip(),
            "no_new_privs": status["NoNewPrivs"].strip(),
            "interfaces": sorted(os.listdir("/sys/class/net")),
            "connect": _try(_connect),
            "write_root": _try(lambda: _write("/pwned")),
            "write_usr": _try(lambda: _write("/usr/pwned")),
            "write_tmp": _try(lambda: _write("/tmp/ok")),
            "write_trial": _try(lambda: _write("/trial/ok")),
            "write_input": _try(lambda: _write("/input/code.py")),
            "outside_visible": os.path.exists("{outside}"),
            # cgroup v1 paths, else v2's
            "memory_limit": _first("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory.max"),
            "pids_max": _first("/sys/fs/cgroup/pids/pids.max", "/sys/fs/cgroup/pids.max"),
            "cpu_quota": _first("/sys/fs/cgroup/cpu/cpu.cfs_quota_us", "/sys/fs/cgroup/cpu.max").split()[0],
            "env": sorted(os.environ),
        }
        with open("/trial/facts.json", "w") as f:
            json.dump(facts, f)
        self.body = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))

    def forward(self, x):
        return self.body(x)
'''


def run(coro):
    return asyncio.run(coro)


def runner(url: str, **settings) -> PodmanRunner:
    return PodmanRunner(PodmanRunnerSettings(url=url, workers=1, **settings))


async def _run_and_close(r: PodmanRunner, job):
    try:
        return await r.run_trial(job)
    finally:
        await r.close()


def test_a_trial_trains_in_a_container_and_reports_its_resources(podman_url, tmp_path, data, containers):
    job = make_job(tmp_path, data, NET)
    result = run(_run_and_close(runner(podman_url), job))
    assert result.ok, result.error
    m = result.metrics
    assert m["test_accuracy"] > 0.8  # well-separated clusters: the harness really trained
    assert m["params"] == 8 * 16 + 16 + 16 * 3 + 3
    # measured from outside, from the container's cgroup
    assert m["peak_memory_mb"] > 50 and m["cpu_seconds"] > 0 and m["wall_seconds"] > 0
    assert Path(result.weights_path) == Path(job.weights_path) and Path(job.weights_path).stat().st_size > 0
    trial_dir = Path(job.result_path).parent
    assert (trial_dir / "output.log").read_text().startswith("neuromosaic harness")
    assert trial_dir.stat().st_uid == 65534  # the trial ran as nobody and wrote here
    assert containers("hostile") == []  # removed after the trial


def test_the_container_is_locked_down(podman_url, tmp_path, data):
    outside = tmp_path / "outside"
    outside.mkdir()
    bypass = write_unvalidated_python(tmp_path / "bypass")
    r = runner(podman_url, python=str(bypass), memory="1536m", cpus=0.5, pids_limit=100)
    r.mounts.append(str(bypass.parent))  # the driver must be visible inside, like the interpreter
    job = make_job(tmp_path, data, FACTS.replace("{outside}", str(outside)))
    result = run(_run_and_close(r, job))
    assert result.ok, result.error
    facts = json.loads((Path(job.result_path).parent / "facts.json").read_text())
    assert (facts["uid"], facts["gid"], facts["euid"]) == (65534, 65534, 65534)
    assert int(facts["cap_eff"], 16) == 0 and int(facts["cap_bnd"], 16) == 0  # every capability dropped
    assert facts["no_new_privs"] == "1"
    assert facts["interfaces"] == ["lo"]
    assert "unreachable" in facts["connect"].lower()
    assert "Read-only file system" in facts["write_root"] and "Read-only file system" in facts["write_usr"]
    assert facts["write_tmp"] == "ok" and facts["write_trial"] == "ok"
    assert "Read-only file system" in facts["write_input"]  # the code is mounted read-only
    assert facts["outside_visible"] is False
    assert facts["memory_limit"] == str(1536 * 2**20)
    assert facts["pids_max"] == "100"
    assert facts["cpu_quota"] == "50000"  # 0.5 CPU of a 100 ms period
    assert set(facts["env"]) <= {"PATH", "HOME", "TMPDIR", "LANG", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
                                 "HOSTNAME", "container", "TERM", "PWD", "PYTHONUNBUFFERED",
                                 "PYTHONNOUSERSITE", "PYTHONDONTWRITEBYTECODE", "PYTHONSAFEPATH"}  # PWD: the bypass driver is a shell script


def test_running_out_of_memory_is_a_failed_trial_that_says_so(podman_url, tmp_path, data, containers):
    job = make_job(tmp_path, data, GROWING, timeout=120)
    result = run(_run_and_close(runner(podman_url, memory="700m"), job))
    assert result.error is not None
    assert result.error.error_class is ErrorClass.CRASH
    assert recorded(result).startswith("crash: out of memory"), recorded(result)
    assert "exit code 137" in result.error.message and "700m" in result.error.message
    assert result.metrics["peak_memory_mb"] > 400  # resources are reported for failed trials too
    assert result.metrics["wall_seconds"] > 0
    assert containers("hostile") == []


def test_a_trial_over_its_time_is_killed_and_reported_as_a_timeout(podman_url, tmp_path, data, containers):
    job = make_job(tmp_path, data, LOOP, timeout=4)
    result = run(_run_and_close(runner(podman_url), job))
    assert result.error.error_class is ErrorClass.TIMEOUT
    assert "timeout" in result.error.message and "4 s" in result.error.message
    assert result.metrics["wall_seconds"] >= 4
    assert "trains on cpu" in (Path(job.result_path).parent / "output.log").read_text()  # kept for the post-mortem
    assert containers("hostile") == []


def test_cancelling_the_trial_removes_its_container(podman_url, tmp_path, data, containers):
    async def scenario() -> None:
        r = runner(podman_url)
        task = asyncio.create_task(r.run_trial(make_job(tmp_path, data, LOOP, timeout=300)))
        deadline = time.monotonic() + 60
        while not await asyncio.to_thread(containers, "hostile"):
            assert time.monotonic() < deadline, "the trial's container never appeared"
            await asyncio.sleep(0.2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert containers("hostile") == []
        await r.close()

    run(scenario())


class SlowToCreate(PodmanRunner):
    """Podman has created the container, but the call has not returned yet when the cancel comes."""

    def _create(self, *args):
        container = super()._create(*args)
        time.sleep(2)
        return container


def test_cancelling_while_the_container_is_being_created_still_removes_it(podman_url, tmp_path, data, containers):
    async def scenario() -> None:
        r = SlowToCreate(PodmanRunnerSettings(url=podman_url, workers=1))
        task = asyncio.create_task(r.run_trial(make_job(tmp_path, data, LOOP, timeout=300)))
        deadline = time.monotonic() + 60
        while not await asyncio.to_thread(containers, "hostile"):
            assert time.monotonic() < deadline, "the trial's container never appeared"
            await asyncio.sleep(0.1)
        task.cancel()  # inside the 2 s before `_create` returns
        with pytest.raises(asyncio.CancelledError):
            await task
        assert containers("hostile") == []
        await r.close()

    run(scenario())


def test_a_planted_symlink_in_the_trial_directory_is_not_followed(podman_url, tmp_path, data):
    """A re-run trial's directory may hold what an earlier run left: the runner replaces, never
    writes through, a symlink (it runs as root; the trial directory belongs to nobody)."""
    victim = tmp_path / "victim.txt"
    victim.write_text("host file\n")
    job = make_job(tmp_path, data, NET)
    trial_dir = Path(job.result_path).parent
    trial_dir.mkdir(parents=True)
    for name in ("output.log", "job.json", "result.json"):
        (trial_dir / name).symlink_to(victim)
    result = run(_run_and_close(runner(podman_url), job))
    assert result.ok, result.error
    assert victim.read_text() == "host file\n"
    assert not (trial_dir / "output.log").is_symlink() and not (trial_dir / "job.json").is_symlink()


def test_a_runner_without_url_starts_its_own_service_and_stops_it_on_close(trial_image, tmp_path, data):
    r = PodmanRunner(PodmanRunnerSettings(workers=1))

    async def scenario():
        result = await r.run_trial(make_job(tmp_path, data, NET))
        service = r._service
        assert service is not None and service.running and service.socket.exists()
        await r.close()
        return result, service

    result, service = run(scenario())
    assert result.ok, result.error
    assert service.proc is None and service.directory is None  # stopped, its socket directory removed


def test_a_missing_image_stops_before_any_trial_with_the_build_command(trial_image, podman_url, tmp_path, data):
    with pytest.raises(PodmanUnavailable, match=r"neuromosaic-podman-image build --rootfs"):
        PodmanRunner(PodmanRunnerSettings(image="localhost/neuromosaic-no-such-image:0")).preflight()
    # a service given by url is checked at the first trial, with the same advice
    r = runner(podman_url, image="localhost/neuromosaic-no-such-image:0")
    with pytest.raises(PodmanUnavailable, match=r"not found.*neuromosaic-podman-image build"):
        run(_run_and_close(r, make_job(tmp_path, data, NET)))


def test_building_the_image_again_does_nothing(trial_image):
    assert image.build(trial_image, rootfs=True) is False
    assert image.image_is_current(trial_image)


def test_the_image_build_command_reports_an_up_to_date_image(trial_image):
    import subprocess

    proc = subprocess.run([sys.executable, "-m", "neuromosaic_runner_podman.image", "build", "--rootfs"],
                          capture_output=True, text=True, timeout=120, env={**os.environ})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"up to date: {trial_image}"


def test_workers_and_settings_reach_the_runner():
    r = PodmanRunner(PodmanRunnerSettings(workers=3, memory="512m", max_output_mb=2))
    assert r.workers == 3 and r.memory_bytes == 512 * 2**20 and r.output_cap == 2 * 2**20
    assert any(os.path.realpath(sys.base_prefix) == d or os.path.realpath(sys.base_prefix).startswith(d + "/") for d in r.mounts)
    assert PodmanRunner(attrs.evolve(PodmanRunnerSettings(), host_python=False, python="python3")).mounts == []


def test_containers_left_by_a_killed_orchestrator_are_removed_by_the_next_runner(podman_url, tmp_path, data, containers):
    import subprocess

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # a pid that no longer runs: the "orchestrator" that was killed
    experiment = f"orphan-{os.getpid()}"
    subprocess.run(["podman", "create", "--label", "io.neuromosaic.runner=podman", "--label",
                    f"io.neuromosaic.owner-pid={dead.pid}", "--label", f"io.neuromosaic.experiment={experiment}",
                    trial_image_tag(), "true"], check=True, capture_output=True, env=image.podman_env())
    assert len(containers(experiment)) == 1
    stale = Path(tempfile.gettempdir()) / f"neuromosaic-input-{dead.pid}-left"  # its staging directory
    stale.mkdir()
    result = run(_run_and_close(runner(podman_url), make_job(tmp_path, data, NET)))
    assert result.ok, result.error
    assert containers(experiment) == []
    assert not stale.exists()


def trial_image_tag() -> str:
    return image.DEFAULT_TAG


def test_a_trial_trained_in_two_segments_goes_on_from_its_checkpoint_in_a_new_container(podman_url, tmp_path, data):
    """Promotion, not restart: the checkpoint the first container left in the trial directory is
    read and replaced by the next one (the same user), and the trial ends as one run ends."""
    import torch

    five = TrainingSettings(epochs=5, batch_size=32, patience=5)
    whole_job = attrs.evolve(make_job(tmp_path, data, NET, trial=1), training=five)
    segment = attrs.evolve(make_job(tmp_path, data, NET, trial=2), training=five)
    checkpoint = Path(segment.result_path).parent / "checkpoint.pt"

    async def scenario():
        r = runner(podman_url)
        try:
            whole = await r.run_trial(whole_job)
            first = await r.run_trial(attrs.evolve(segment, max_epochs=2, checkpoint_path=str(checkpoint)))
            left = checkpoint.is_file()
            if left:  # a mark only a segment that reads this file carries on (from scratch gives the same curve)
                torch.save({**torch.load(checkpoint, weights_only=True), "train_seconds": 1000.0}, checkpoint)
            last = await r.run_trial(attrs.evolve(segment, max_epochs=5, checkpoint_path=str(checkpoint)))
            return whole, first, left, last
        finally:
            await r.close()

    whole, first, left, last = run(scenario())
    for result in (whole, first, last):
        assert result.ok, result.error
    assert (len(first.curve), first.fidelity) == (2, 2) and left
    assert (len(last.curve), last.fidelity, last.metrics["epochs"]) == (5, 5, 5)
    assert last.curve == pytest.approx(whole.curve, abs=1e-6)
    assert last.metrics["test_accuracy"] == pytest.approx(whole.metrics["test_accuracy"])
    assert last.metrics["train_seconds"] > 1000  # went on from the checkpoint, not from scratch
    assert not last.pruned
    assert not checkpoint.exists()  # training reached its end
