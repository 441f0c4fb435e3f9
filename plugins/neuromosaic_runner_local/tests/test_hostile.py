"""The hostile-code corpus against the local runner, as root where CI runs: every case is rejected
by validation or contained by the sandbox, recorded with a clear reason, and nothing outside the
trial's directory changes. With validation bypassed (a test seam: the runner's ``python`` setting
points at a driver that turns it off), the sandbox alone must contain the same code."""

from __future__ import annotations

import asyncio
import os
import re
from pathlib import Path

import pytest
from neuromosaic_runner_local import LocalRunnerSettings
from neuromosaic_runner_local.runner import LocalRunner

from neuromosaic_core.model import ErrorClass
from neuromosaic_core.sandbox import bubblewrap_available
from neuromosaic_core.testing.hostile import (
    CASES,
    CASES_BY_NAME,
    HARNESS_STARTED,
    Canaries,
    make_job,
    recorded,
    write_data,
    write_unvalidated_python,
)

#: Cases whose containment a fresh sandbox must prove on its own (the pool proves all of them).
FRESH_BYPASS = ["shell_out_os_system", "read_secret_outside", "socket_to_host", "fork_bomb", "segfault_ctypes",
                "read_environment", "symlink_trap"]
TIMEOUT = 30.0
LOOP_TIMEOUT = 3.0
#: Lower than the defaults (4096 MB, 512 MB, 256) so the growing memory bomb stops after ~1 GB of
#: touched memory, the file-size bomb after 64 MB and the fork bomb after 64 processes: quicker,
#: and kinder to a busy CI machine.
LIMITS = {"memory_mb": 1536, "file_size_mb": 64, "processes": 64}


def needs_bubblewrap() -> None:
    if not bubblewrap_available():
        pytest.skip("bubblewrap (bwrap) is not installed: containment without validation needs the sandbox")


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return write_data(tmp_path_factory.mktemp("data") / "data.npz")


def run_case(runner: LocalRunner, root: Path, data: Path, case, canaries, trial: int = 1):
    timeout = LOOP_TIMEOUT if case.name == "infinite_loop" else TIMEOUT
    job = make_job(root, data, case.render(canaries), trial=trial, timeout=timeout)
    result = asyncio.run(runner.run_trial(job))
    return job, result


def check_contained(case, result, job, canaries, reason: str | None) -> None:
    text = recorded(result)
    assert not result.ok or reason is None, f"{case.name}: should have failed, got {text}"
    if reason is not None:
        assert re.search(reason, text, re.I | re.S), f"{case.name}: recorded {text[:400]!r}, expected /{reason}/"
    assert canaries.violations(Path(job.result_path).parent) == [], case.name
    assert canaries.secret not in text, f"{case.name}: the secret reached the recorded result"
    for key in ("peak_memory_mb", "cpu_seconds", "wall_seconds"):
        assert key in result.metrics, f"{case.name}: {key} missing from {result.metrics}"


def test_the_corpus_is_large_and_covers_the_issue_list():
    names = {c.name for c in CASES}
    assert len(CASES) >= 15 and len(names) == len(CASES)
    for needed in ("shell_out_os_system", "read_secret_outside", "socket_to_host", "dunder_import", "getattr_trick",
                   "infinite_loop", "fork_bomb", "memory_bomb_at_once", "output_flood", "sys_exit_zero",
                   "segfault_ctypes", "nan_loss", "wrong_output_shape"):
        assert needed in names


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_each_case_is_rejected_or_contained_with_a_clear_reason(case, tmp_path, data):
    runner = LocalRunner(LocalRunnerSettings(workers=1, mode="fresh", **LIMITS))
    with Canaries(tmp_path / "outside") as canaries:
        job, result = run_case(runner, tmp_path, data, case, canaries)
        check_contained(case, result, job, canaries, case.reason)
    if case.rejected_by_validation:
        assert result.error.error_class is ErrorClass.INVALID_CODE
    assert not Path(job.weights_path).exists()


@pytest.mark.parametrize("name", FRESH_BYPASS)
def test_a_fresh_sandbox_contains_what_validation_would_have_refused(name, tmp_path, data):
    needs_bubblewrap()
    case = CASES_BY_NAME[name]
    python = write_unvalidated_python(tmp_path / "driver")
    runner = LocalRunner(LocalRunnerSettings(workers=1, mode="fresh", python=str(python), isolation="bubblewrap", **LIMITS))
    with Canaries(tmp_path / "outside") as canaries:
        job, result = run_case(runner, tmp_path, data, case, canaries)
        check_contained(case, result, job, canaries, case.bypass_reason)
    assert "invalid_code" not in recorded(result), "validation should have been bypassed"
    assert HARNESS_STARTED in (Path(job.result_path).parent / "output.log").read_text(), "the harness never ran the code"


def test_the_warm_pool_contains_the_whole_corpus_without_validation_and_keeps_serving(tmp_path, data):
    """One pool, every case in a row with validation off, then a good model: each trial is
    contained, and no trial poisons the next (the last one still trains)."""
    needs_bubblewrap()
    python = write_unvalidated_python(tmp_path / "driver")
    settings = LocalRunnerSettings(workers=1, python=str(python), mode="pool", isolation="bubblewrap", **LIMITS)

    async def scenario():
        runner = LocalRunner(settings)
        results = []
        try:
            with Canaries(tmp_path / "outside") as canaries:
                for number, case in enumerate(CASES, 1):
                    timeout = LOOP_TIMEOUT if case.name == "infinite_loop" else TIMEOUT
                    job = make_job(tmp_path, data, case.render(canaries), trial=number, timeout=timeout)
                    results.append((case, job, await runner.run_trial(job)))
                    log = (Path(job.result_path).parent / "output.log").read_text()
                    ran = HARNESS_STARTED in log or case.name in ("kill_parent", "output_flood")  # no log / only the tail
                    assert ran, f"{case.name} never ran: {log[-500:]}"
                    assert canaries.violations(Path(job.result_path).parent) == [], case.name
                    assert canaries.secret not in recorded(results[-1][2]), case.name
                good = make_job(tmp_path, data, CASES_BY_NAME["nan_loss"].render().replace(" * float('nan')", ""),
                                trial=len(CASES) + 1)
                last = await runner.run_trial(good)
            return results, last, runner._pool.replaced
        finally:
            await runner.close()

    results, last, replaced = asyncio.run(scenario())
    for case, _job, result in results:
        text = recorded(result)
        assert "invalid_code" not in text, case.name
        if case.bypass_reason is not None:
            assert re.search(case.bypass_reason, text, re.I | re.S), f"{case.name}: {text[:300]!r}"
    assert last.ok, recorded(last)
    assert last.metrics["test_accuracy"] > 0.8
    assert replaced >= 2  # the fork bomb's strays and the killed worker each cost a worker


def test_the_trial_runs_as_an_unprivileged_user_even_as_root(tmp_path, data):
    needs_bubblewrap()
    code = CASES_BY_NAME["read_environment"].code.replace(
        "print({k: v for k, v in os.environ.items()})", 'print("uid", os.getuid(), "gid", os.getgid())')
    python = write_unvalidated_python(tmp_path / "driver")
    runner = LocalRunner(LocalRunnerSettings(workers=1, mode="fresh", python=str(python)))
    job = make_job(tmp_path, data, code)
    result = asyncio.run(runner.run_trial(job))
    assert "environment dumped" in recorded(result)
    log = (Path(job.result_path).parent / "output.log").read_text()
    assert "uid 65534 gid 65534" in log
    if os.geteuid() == 0:
        assert all(p.stat().st_uid == 0 for p in Path(job.result_path).parent.iterdir()), "files handed back to root"
