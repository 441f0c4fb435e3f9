"""The hostile-code corpus (``neuromosaic_core.testing.hostile``) in podman containers.

Every case runs with validation bypassed (the corpus's test seam), so the container alone has to
contain it: the recorded reason matches the case's ``bypass_reason``, nothing outside the trial
directory changes (canaries in $HOME, /tmp and beside the trial directory, a listening port on
the host's loopback, a secret in the orchestrator's environment), no container is left, and every
trial comes back as a result (the orchestrator keeps going). A few cases also run normally, to
show the harness inside the container refuses them (``invalid_code``) before they run.

All cases run once, three at a time, in a module fixture; each case's test checks its own result.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import uuid
from pathlib import Path

import attrs
import pytest
from neuromosaic_runner_podman import PodmanRunnerSettings
from neuromosaic_runner_podman.runner import PodmanRunner

from neuromosaic_core.testing.hostile import CASES, CASES_BY_NAME, Canaries, make_job, recorded, write_data, write_unvalidated_python

NORMAL = ("shell_out_os_system", "socket_to_host", "subclasses_escape", "read_secret_outside")
#: Generous: a case that ends early ends early; only the infinite loop waits for its limit.
TIMEOUT = 60.0
SHORT_TIMEOUT = {"infinite_loop": 8.0}
#: Where the container's answer differs from the corpus's generic expectation, and why.
PODMAN_REASONS = {
    # The harness is PID 1 of the container's PID namespace: its parent is outside (getppid() is 0)
    # and kill(0, SIGKILL) reaches only its own group, whose init the kernel protects from
    # signals sent inside the namespace. Nothing dies; the trial trains. Contained all the same.
    "kill_parent": r"^ok$",
}


@attrs.frozen
class Outcome:
    recorded: str
    violations: list[str]
    trial_dir: Path
    metrics: dict


@pytest.fixture(scope="module")
def outcomes(podman_url: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Outcome]:
    root = tmp_path_factory.mktemp("hostile")
    data = write_data(root / "data.npz")
    bypass = write_unvalidated_python(root / "bypass")
    experiment = f"hostile-{uuid.uuid4().hex[:8]}"
    settings = PodmanRunnerSettings(url=podman_url, memory="1g", pids_limit=128)
    normal = PodmanRunner(settings)
    unvalidated = PodmanRunner(attrs.evolve(settings, python=str(bypass)))
    unvalidated.mounts.append(str(bypass.parent))
    runs = [(f"{c.name}", c, unvalidated) for c in CASES] + [(f"{n}[normal]", CASES_BY_NAME[n], normal) for n in NORMAL]
    results: dict[str, Outcome] = {}

    async def all_cases() -> None:
        gate = asyncio.Semaphore(3)
        with contextlib.ExitStack() as stack:
            canaries = {key: stack.enter_context(Canaries(root / key / "outside")) for key, _, _ in runs}

            async def one(number: int, key: str, case, runner: PodmanRunner):
                async with gate:
                    job = make_job(root / key, data, case.render(canaries[key]), trial=number,
                                   timeout=SHORT_TIMEOUT.get(case.name, TIMEOUT))
                    return key, job, await runner.run_trial(attrs.evolve(job, experiment=experiment))

            done = await asyncio.gather(*(one(i + 1, key, case, r) for i, (key, case, r) in enumerate(runs)))
            for key, job, result in done:
                trial_dir = Path(job.result_path).parent
                results[key] = Outcome(recorded(result), canaries[key].violations(trial_dir), trial_dir, dict(result.metrics))
        await normal.close()
        await unvalidated.close()

    asyncio.run(all_cases())
    results["__experiment__"] = Outcome(experiment, [], root, {})
    return results


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_hostile_code_is_contained_with_validation_bypassed(outcomes, case, containers):
    outcome = outcomes[case.name]
    expected = PODMAN_REASONS.get(case.name, case.bypass_reason)
    if expected is not None:
        assert re.search(expected, outcome.recorded, re.IGNORECASE), outcome.recorded
    assert outcome.violations == [], outcome.recorded
    assert {"peak_memory_mb", "cpu_seconds", "wall_seconds"} <= set(outcome.metrics), outcome.recorded
    assert containers(outcomes["__experiment__"].recorded) == []


@pytest.mark.parametrize("name", NORMAL)
def test_hostile_code_is_refused_by_the_harness_inside_the_container(outcomes, name):
    case = CASES_BY_NAME[name]
    outcome = outcomes[f"{name}[normal]"]
    assert case.rejected_by_validation
    assert re.search(case.reason, outcome.recorded, re.IGNORECASE), outcome.recorded
    assert outcome.violations == []

