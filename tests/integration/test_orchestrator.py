"""The search loop with in-process doubles for the runner and task (the real ones are tested in
their plugins and end to end): what a user sees in storage, files and observer events."""

from __future__ import annotations

import asyncio
import json
import os
from collections import Counter
from pathlib import Path

import attrs
import numpy as np
import pytest
from neuromosaic_strategy_random.search import RandomSearch

from neuromosaic_core import hookimpl
from neuromosaic_core.constraints import Constraints
from neuromosaic_core.interfaces import (
    ArchitectureEncoder,
    CodeGenProvider,
    Decision,
    Runner,
    SearchStrategy,
    Task,
    TrialScheduler,
    Visualizer,
)
from neuromosaic_core.model import (
    ArchitectureSpec,
    ArchitectureVector,
    ErrorClass,
    IntDimension,
    Layer,
    SearchSpace,
    TrainingSettings,
    Trial,
    TrialResult,
    TrialStatus,
)
from neuromosaic_core.orchestrator import Components, ExperimentAlreadyDone, Orchestrator
from neuromosaic_core.plugins import PluginSystem
from neuromosaic_core.settings import CoreSettings, ExperimentSettings, HarnessSettings, SearchSettings
from neuromosaic_core.testing.memory import InMemoryResultsDB

SPACE = SearchSpace([IntDimension("width", low=1, high=64)])


class Scripted(SearchStrategy):
    """Suggests widths from a list, in order; records what it was told."""

    def __init__(self, widths):
        super().__init__(SPACE)
        self.widths, self.told = list(widths), []

    def suggest_architectures(self, n):
        out, self.widths = self.widths[:n], self.widths[n:]
        return [ArchitectureVector({"width": w}) for w in out]

    def update_with_results(self, results):
        self.told.extend(results)


class WidthEncoder(ArchitectureEncoder):
    def search_space(self):
        return SPACE

    def decode(self, vector):
        return ArchitectureSpec("mlp", [Layer("linear", {"out_features": vector["width"]})])

    def encode(self, spec):
        return ArchitectureVector({"width": spec.layers[0].params["out_features"]})


class Code(CodeGenProvider):
    trusted = True  # its code is a stand-in the fake runner reads, not a faithful network

    def generate_code(self, request):
        width = request.spec.layers[0].params["out_features"]
        return f"```python\nfrom torch import nn\n\nclass Net(nn.Module):\n    def forward(self, x):\n        return x[:, :{width}]\n```"


class FakeRunner(Runner):
    """Scores a trial by its width (wider is better); width 13 crashes; writes a weights file."""

    workers = 2

    def __init__(self):
        self.jobs = []

    async def run_trial(self, job):
        self.jobs.append(job)
        await asyncio.sleep(0)
        width = int(Path(job.code_path).read_text().split(":")[-1].split("]")[0])
        if width == 13:
            return TrialResult.failure(ErrorClass.CRASH, "trial process died (killed by signal 9)")
        Path(job.weights_path).parent.mkdir(parents=True, exist_ok=True)
        Path(job.weights_path).write_bytes(b"w")
        return TrialResult({"val_accuracy": width / 100, "test_accuracy": width / 100, "params": width * 10},
                           weights_path=job.weights_path)


class ToyTask(Task):
    name = "toy"
    input_shape = (64,)
    num_classes = 2

    def prepare_data(self, directory):
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / "toy.npz"
        np.savez(path, x_train=np.zeros((4, 64)), y_train=np.zeros(4), x_test=np.zeros((2, 64)), y_test=np.zeros(2))
        return path


class Recorder:
    def __init__(self):
        self.events = []

    @hookimpl
    def experiment_started(self, experiment, config):
        self.events.append(("experiment_started", experiment.name))

    @hookimpl
    def trial_started(self, trial):
        self.events.append(("trial_started", trial.number))

    @hookimpl
    def trial_finished(self, trial):
        self.events.append(("trial_finished", trial.number, trial.status.value))

    @hookimpl
    def experiment_finished(self, experiment, summary):
        self.events.append(("experiment_finished", summary["trials"]["completed"]))


def settings(name="exp", trials=3, max_failures=5, keep="all", max_params=None, reuse="experiment"):
    return CoreSettings(ExperimentSettings(name), SearchSettings(trials=trials, max_failures=max_failures, reuse=reuse),
                        constraints=Constraints(max_params=max_params), harness=HarnessSettings(keep_weights=keep))


def search(tmp_path, widths, storage=None, hook=None, **kw):
    runner = FakeRunner()
    strategy = Scripted(widths)
    storage = storage or InMemoryResultsDB()
    c = Components(strategy, WidthEncoder(), Code(), runner, storage, ToyTask())
    orch = Orchestrator(settings(**kw), c, tmp_path / kw.get("name", "exp"), hook=hook, show_progress=False)
    summary = asyncio.run(orch.run())
    return summary, runner, strategy, storage


class Broken:
    @hookimpl
    def trial_finished(self, trial):
        raise RuntimeError("observer bug")


def test_observers_see_every_step_in_order_even_beside_a_broken_one(tmp_path):
    rec = Recorder()
    system = PluginSystem.load([("broken", Broken()), ("recorder", rec)], entry_points=False)
    summary, *_ = search(tmp_path, [10, 20, 30], hook=system.pm.hook)
    assert summary["trials"]["completed"] == 3
    assert rec.events[0] == ("experiment_started", "exp")
    assert rec.events[-1] == ("experiment_finished", 3)
    for n in (1, 2, 3):
        assert rec.events.index(("trial_started", n)) < rec.events.index(("trial_finished", n, "completed"))


def test_summary_names_the_best_by_validation_accuracy_with_relative_paths(tmp_path):
    summary, runner, strategy, _ = search(tmp_path, [10, 40, 20])
    best = summary["best"]
    assert best["trial_id"] == 2 and best["val_accuracy"] == 0.4
    assert best["code"] == "code/trial-0002.py" and best["weights"] == "weights/trial-0002.pt"
    assert (tmp_path / "exp" / best["code"]).is_file()
    # two workers: results arrive in completion order, which is not fixed
    assert sorted(r.metrics["val_accuracy"] for _, r in strategy.told) == [0.1, 0.2, 0.4]


def test_failed_trials_are_recorded_with_their_reason_and_do_not_count(tmp_path):
    summary, runner, _, storage = search(tmp_path, [13, 10, 20, 30], trials=3)
    assert summary["trials"] == {"completed": 3, "failed": 1, "invalid": 0, "reused": 0, "pruned": 0}
    failed = storage.list_trials("exp", TrialStatus.FAILED)[0]
    assert failed.result.error.error_class is ErrorClass.CRASH and "signal 9" in failed.result.error.message


def test_constraint_violations_are_invalid_and_never_run(tmp_path):
    summary, runner, _, storage = search(tmp_path, [60, 5, 50, 6, 7], trials=3, max_params=64 * 10 + 10 + 20 * 2 + 2)
    assert summary["trials"]["invalid"] == 2
    assert len(runner.jobs) == 3  # the two violations never reached the runner
    assert {t.vector["width"] for t in storage.list_trials("exp", TrialStatus.INVALID)} == {60, 50}
    assert "max_params" in storage.list_trials("exp", TrialStatus.INVALID)[0].result.error.message


def test_a_search_that_only_fails_stops_at_max_failures(tmp_path):
    summary, runner, *_ = search(tmp_path, [13] * 20, trials=5, max_failures=4)
    assert summary["stopped"] == "max_failures"
    assert summary["trials"]["failed"] == 4


def test_a_finished_twin_is_reused_within_the_experiment(tmp_path):
    summary, runner, *_ = search(tmp_path, [10, 20, 10], trials=3)
    assert len(runner.jobs) == 2 and summary["trials"]["reused"] == 1


def test_across_experiments_reuse_is_opt_in(tmp_path):
    storage = InMemoryResultsDB()
    search(tmp_path, [10, 20], storage=storage, trials=2, name="first")
    _, runner, *_ = search(tmp_path, [20, 30], storage=storage, trials=2, name="private")
    assert len(runner.jobs) == 2  # the default: another experiment's results are not reused
    summary, runner, *_ = search(tmp_path, [20, 40], storage=storage, trials=2, name="second", reuse="all")
    assert len(runner.jobs) == 1  # only width 40 ran; 20 came from the first experiment
    assert summary["trials"]["reused"] == 1
    reused = [t for t in storage.list_trials("second") if t.reused_from is not None][0]
    assert reused.result.metrics["val_accuracy"] == 0.2


def test_trials_cut_off_by_a_crash_are_rerun_first_in_place(tmp_path):
    storage = InMemoryResultsDB()
    search(tmp_path, [10], storage=storage, trials=1)
    storage.save_trial(Trial("exp", 2, ArchitectureVector({"width": 33}), status=TrialStatus.RUNNING))
    # a resume that was itself cut off leaves the row `interrupted`: it must still be re-run
    storage.save_trial(Trial("exp", 3, ArchitectureVector({"width": 34}), status=TrialStatus.INTERRUPTED))
    summary, runner, strategy, _ = search(tmp_path, [40], storage=storage, trials=4)
    assert [int(Path(j.code_path).read_text().split(":")[-1].split("]")[0]) for j in runner.jobs] == [33, 34, 40]
    assert [(t.number, t.status) for t in storage.list_trials("exp")] == [(n, TrialStatus.COMPLETED) for n in (1, 2, 3, 4)]
    assert summary["trials"]["completed"] == 4
    assert strategy.told[0][0] == ArchitectureVector({"width": 10})  # history replayed into the strategy


def test_the_same_architecture_in_flight_twice_is_trained_once(tmp_path):
    summary, runner, strategy, storage = search(tmp_path, [20, 20], trials=2)
    assert len(runner.jobs) == 1
    assert summary["trials"]["completed"] == 2 and summary["trials"]["reused"] == 1
    first, second = storage.list_trials("exp")
    assert second.reused_from == first.id and second.result.metrics == first.result.metrics


def test_running_a_finished_experiment_again_says_so(tmp_path):
    storage = InMemoryResultsDB()
    search(tmp_path, [10, 20], storage=storage, trials=2)
    with pytest.raises(ExperimentAlreadyDone, match="2/2 trials done; raise search.trials or choose another experiment.name"):
        search(tmp_path, [30], storage=storage, trials=2)


def test_keep_weights_k_keeps_only_the_best_k(tmp_path):
    summary, *_ , storage = search(tmp_path, [10, 40, 20, 30], trials=4, keep=2)
    left = sorted(p.name for p in (tmp_path / "exp" / "weights").iterdir())
    assert left == ["trial-0002.pt", "trial-0004.pt"]
    pruned = [t for t in storage.list_trials("exp") if t.number in (1, 3)]
    assert all(t.result.weights_path is None for t in pruned)


class LookupRunner(Runner):
    """Evaluates the spec itself, like a tabular benchmark: no code needed."""

    workers = 1
    needs_code = False

    def __init__(self):
        self.jobs = []

    async def run_trial(self, job):
        self.jobs.append(job)
        width = job.spec.layers[0].params["out_features"]
        return TrialResult({"val_accuracy": width / 100, "params": width})


def test_a_runner_without_code_gets_the_spec_and_no_generated_code(tmp_path):
    runner = LookupRunner()
    c = Components(Scripted([64, 5, 30]), WidthEncoder(), Code(), runner, InMemoryResultsDB(), ToyTask())
    # max_params would refuse width 64 on generated code; a lookup runner skips the analytic check
    orch = Orchestrator(settings(trials=3, max_params=100), c, tmp_path / "exp", show_progress=False)
    summary = asyncio.run(orch.run())
    assert summary["trials"]["completed"] == 3 and summary["best"]["val_accuracy"] == 0.64
    assert [j.code_path for j in runner.jobs] == ["", "", ""]
    assert not (tmp_path / "exp" / "code").exists() or not list((tmp_path / "exp" / "code").iterdir())


def test_interrupted_twins_are_all_resolved_and_trained_once(tmp_path):
    storage = InMemoryResultsDB()
    search(tmp_path, [10], storage=storage, trials=1)
    # a crash while trial 3 was following its twin, trial 2 (same architecture)
    storage.save_trial(Trial("exp", 2, ArchitectureVector({"width": 33}), status=TrialStatus.RUNNING))
    storage.save_trial(Trial("exp", 3, ArchitectureVector({"width": 33}), status=TrialStatus.RUNNING))
    summary, runner, _, _ = search(tmp_path, [40], storage=storage, trials=4)
    assert len(runner.jobs) == 2  # 33 once, then 40
    assert [t.status for t in storage.list_trials("exp")] == [TrialStatus.COMPLETED] * 4
    assert summary["trials"]["reused"] == 1


class CountingCode(Code):
    """A cacheable generator that counts its calls."""

    def __init__(self):
        self.calls = 0

    def identity(self):
        return "toy-model", "toy-template-v1"

    def generate_code(self, request):
        self.calls += 1
        return super().generate_code(request)


def test_each_trial_stores_how_its_code_was_written_and_the_cache_spares_repeat_calls(tmp_path):
    storage, codegen = InMemoryResultsDB(), CountingCode()
    for name, widths in (("first", [10, 20]), ("second", [20, 30])):
        c = Components(Scripted(widths), WidthEncoder(), codegen, FakeRunner(), storage, ToyTask(), codegen_name="toy")
        asyncio.run(Orchestrator(settings(name=name, trials=2), c, tmp_path / name, show_progress=False).run())
    assert codegen.calls == 3  # width 20 of the second experiment came from the cache
    first = {t.vector["width"]: t.codegen for t in storage.list_trials("first")}
    second = {t.vector["width"]: t.codegen for t in storage.list_trials("second")}
    assert first[10].provider == "toy" and first[10].model == "toy-model" and first[10].template_version == "toy-template-v1"
    assert [a.stage for a in first[10].attempts] == ["accepted"] and not first[10].cached
    assert second[20].cached and second[20].cache_key == first[20].cache_key and not second[30].cached


def test_a_strategy_with_nothing_left_to_suggest_ends_the_search(tmp_path):
    # two architectures, five trials asked for: the search stops instead of asking forever
    summary, runner, *_ = search(tmp_path, [10, 20], trials=5)
    assert summary["stopped"] == "exhausted"
    assert summary["trials"]["completed"] == 2 and len(runner.jobs) == 2


# -- resume from a strategy snapshot -----------------------------------------------------------


class RecordingRandom(RandomSearch):
    """Random search that records the keys of the vectors it is told."""

    def __init__(self, **kw):
        super().__init__(SPACE, seed=0, **kw)
        self.told_keys = []

    def update_with_results(self, results):
        self.told_keys += [v.key() for v, _ in results]
        super().update_with_results(results)


class ReadCounting(InMemoryResultsDB):
    """Counts the trials a resume reads through ``list_history``."""

    history_reads = 0

    def list_history(self, experiment, after=0):
        trials = super().list_history(experiment, after)
        self.history_reads += len(trials)
        return trials


class HangsOnThirdJob(FakeRunner):
    """The third trial never finishes, as if its machine hung; the others run normally."""

    async def run_trial(self, job):
        if len(self.jobs) == 2:
            self.jobs.append(job)
            await asyncio.Event().wait()
        return await super().run_trial(job)


def random_orchestrator(tmp_path, storage, trials, runner=None, snapshot_every=2, workers=1, **strategy_kw):
    runner = runner or FakeRunner()
    runner.workers = workers
    strategy = RecordingRandom(**strategy_kw)
    s = CoreSettings(ExperimentSettings("exp"), SearchSettings(trials=trials, snapshot_every=snapshot_every))
    c = Components(strategy, WidthEncoder(), Code(), runner, storage, ToyTask())
    return Orchestrator(s, c, tmp_path / "exp", show_progress=False, config={"strategy": strategy_kw}), strategy


def widths(storage):
    return [t.vector["width"] for t in storage.list_trials("exp")]


def test_a_resume_restores_the_strategy_snapshot_and_continues_the_same_search(tmp_path):
    straight = InMemoryResultsDB()
    asyncio.run(random_orchestrator(tmp_path, straight, 9)[0].run())

    stopped = ReadCounting()
    asyncio.run(random_orchestrator(tmp_path, stopped, 5)[0].run())
    assert stopped.load_snapshot("exp").told_through > 0  # taken at the end of the first run
    stopped.history_reads = 0
    resumed, strategy = random_orchestrator(tmp_path, stopped, 9)
    asyncio.run(resumed.run())
    assert stopped.history_reads == 0  # nothing to replay: the snapshot covers every trial
    assert strategy.told_keys == [t.vector.key() for t in stopped.list_trials("exp")[5:]]  # only the new ones
    assert widths(stopped) == widths(straight)  # the same search as without the stop


def test_a_snapshot_of_other_strategy_settings_is_ignored_and_the_history_replayed(tmp_path):
    storage = ReadCounting()
    asyncio.run(random_orchestrator(tmp_path, storage, 4)[0].run())
    storage.history_reads = 0
    resumed, strategy = random_orchestrator(tmp_path, storage, 6, max_retries=7)
    asyncio.run(resumed.run())
    assert storage.history_reads == 4
    assert strategy.told_keys[:4] == [t.vector.key() for t in storage.list_trials("exp")[:4]]


def test_a_crash_with_trials_in_flight_resumes_telling_each_finished_trial_exactly_once(tmp_path):
    storage = InMemoryResultsDB()
    first, before = random_orchestrator(tmp_path, storage, 10, runner=HangsOnThirdJob(), snapshot_every=1, workers=2)

    async def crash_after_five_completed():
        task = asyncio.create_task(first.run())
        while storage.count_trials("exp").get(TrialStatus.COMPLETED, 0) < 5:
            await asyncio.sleep(0.001)
        task.cancel()  # the third trial is still running: its row stays `running`
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(crash_after_five_completed())
    snapshot = storage.load_snapshot("exp")
    stuck = storage.list_trials("exp", TrialStatus.RUNNING)
    assert len(stuck) >= 1 and snapshot.told_through < stuck[0].id  # the open trial is not covered

    resumed, after = random_orchestrator(tmp_path, storage, 10, snapshot_every=1, workers=2)
    summary = asyncio.run(resumed.run())
    assert summary["trials"]["completed"] == 10
    finished = [t.vector.key() for t in storage.list_trials("exp") if t.status is not TrialStatus.INTERRUPTED]
    told = before.told_keys + after.told_keys
    assert sorted(told) == sorted(finished)  # every finished trial told once, across the crash
    assert stuck[0].vector.key() in after.told_keys  # the cut-off trial re-ran after the resume
    # the snapshot had it pending; the resume forgot that and marked the re-run pending instead
    assert after.pending == 0
    completed = [t.vector.key() for t in storage.list_trials("exp", TrialStatus.COMPLETED)]
    assert len(set(completed)) == len(completed) == 10


def test_a_resume_does_not_propose_the_trial_in_flight_again(tmp_path):
    """Killed with a trial in flight and no snapshot to restore (snapshots off here; after a
    SIGKILL, one older than the trial): the rebuilt strategy draws the same numbers as the original,
    and must not propose the re-run trial's architecture again."""
    storage = InMemoryResultsDB()
    first, _ = random_orchestrator(tmp_path, storage, 10, runner=HangsOnThirdJob(), snapshot_every=0, workers=2)

    async def crash_after_five_completed():
        task = asyncio.create_task(first.run())
        while storage.count_trials("exp").get(TrialStatus.COMPLETED, 0) < 5:
            await asyncio.sleep(0.001)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(crash_after_five_completed())
    stuck = storage.list_trials("exp", TrialStatus.RUNNING)  # the hung trial, and the other worker's if it was running
    resumed, after = random_orchestrator(tmp_path, storage, 10, snapshot_every=0, workers=2)
    summary = asyncio.run(resumed.run())
    completed = [t.vector.key() for t in storage.list_trials("exp", TrialStatus.COMPLETED)]
    assert summary["trials"]["completed"] == 10 and summary["trials"]["reused"] == 0
    assert len(set(completed)) == 10, "a completed trial repeats the architecture of another"
    assert {t.vector.key() for t in stuck} <= set(completed) and after.pending == 0


# -- multi-fidelity: doubles for a runner that trains from checkpoints and a scheduler ------------
# (the real schedulers and runners are tested in their plugins, and end to end in tests/e2e): how
# far trials train, what counts, what is best, the time budget, and a resume between segments.

EPOCHS = 8


class CurveRunner(Runner):
    """Trains a width's learning curve (it rises towards width / 100) from the job's checkpoint
    to its ``max_epochs``, like the harness; counts the epochs each trial really trained."""

    workers = 2

    def __init__(self, hold=lambda job, start: False, delay: float = 0.0):
        self.trained: Counter[int] = Counter()
        self.jobs = []
        self.hold, self.delay = hold, delay

    async def run_trial(self, job):
        self.jobs.append(job)
        width = int(Path(job.code_path).read_text().split(":")[-1].split("]")[0])
        checkpoint = Path(job.checkpoint_path) if job.checkpoint_path else None
        start = json.loads(checkpoint.read_text())["epochs"] if checkpoint and checkpoint.exists() else 0
        if self.hold(job, start):
            await asyncio.Event().wait()  # a trial that never ends: the test cancels the search
        await asyncio.sleep(self.delay)
        until = min(job.training.epochs, job.max_epochs or job.training.epochs)
        self.trained[job.trial_id] += until - start
        curve = tuple(width / 100 * (1 - 0.5 ** (e + 1)) for e in range(until))
        finished = until >= job.training.epochs
        if checkpoint is not None:
            if finished:
                checkpoint.unlink(missing_ok=True)
            else:
                checkpoint.parent.mkdir(parents=True, exist_ok=True)
                checkpoint.write_text(json.dumps({"epochs": until}))
        return TrialResult({"val_accuracy": max(curve), "test_accuracy": max(curve), "params": width * 10.0},
                           curve=curve, fidelity=job.training.epochs if finished else until)


class Thresholds(TrialScheduler):
    """At 2 epochs: wide nets (>= 30) go on to the end, narrow ones (< 10) stop, the others pause;
    the first paused one is promoted once four trials were seen. Its state is what it observed."""

    def __init__(self):
        super().__init__(EPOCHS)
        self.fidelity: dict[int, int] = {}

    def first_budget(self, number):
        return 2

    def observe(self, number, result):
        self.fidelity[number] = max(self.fidelity.get(number, 0), result.fidelity)

    def decide(self, number, result):
        value = self.best_at(result.curve, result.fidelity)
        if value >= 0.3 * 0.75:
            return Decision("continue", EPOCHS)
        return Decision("pause") if value >= 0.1 * 0.75 else Decision("stop")

    def promote(self):
        if len(self.fidelity) >= 4 and not any(f == EPOCHS for n, f in self.fidelity.items() if self._middling(n)):
            paused = [n for n in sorted(self.fidelity) if self._middling(n)]
            if paused:
                self.fidelity[paused[0]] = EPOCHS  # promoted (observed again when it gets there)
                return paused[0], EPOCHS
        return None

    def _middling(self, number):
        return number in self.middling

    middling: set[int] = set()


def run(tmp_path, widths, storage=None, runner=None, scheduler=None, trials=None, time_budget=None, name="mf"):
    storage = storage or InMemoryResultsDB()
    runner = runner or CurveRunner()
    scheduler = scheduler or Thresholds()
    settings = CoreSettings(ExperimentSettings(name), SearchSettings(trials=trials or len(widths), time_budget=time_budget),
                            training=TrainingSettings(epochs=EPOCHS))
    components = Components(Scripted(widths), WidthEncoder(), Code(), runner, storage, ToyTask(), scheduler=scheduler)
    orchestrator = Orchestrator(settings, components, tmp_path / name, show_progress=False)
    return orchestrator, asyncio.run(orchestrator.run()), runner, storage


def test_poor_trials_stop_early_promising_ones_train_on_from_their_checkpoint(tmp_path):
    Thresholds.middling = {2, 4}  # trial numbers of the widths 15 and 20 below
    widths = [40, 15, 5, 20, 50, 8]
    orchestrator, summary, runner, storage = run(tmp_path, widths)
    fidelity = {t.number: t.result.fidelity for t in storage.list_trials("mf")}
    assert fidelity == {1: EPOCHS, 2: EPOCHS, 3: 2, 4: 2, 5: EPOCHS, 6: 2}  # 2 promoted; 4 stays paused
    assert dict(runner.trained) == fidelity  # continued, never restarted: no epoch trained twice
    assert summary["trials"]["completed"] == 6 and summary["trials"]["pruned"] == 3
    pruned = {t.number for t in storage.list_trials("mf") if t.result.pruned}
    assert pruned == {3, 4, 6}
    assert all(t.status == TrialStatus.COMPLETED for t in storage.list_trials("mf"))
    assert summary["best"]["trial_id"] == 5 and summary["best"]["fidelity"] == EPOCHS
    assert not (tmp_path / "mf" / "trials" / "trial-0003" / "checkpoint.pt").exists()  # stopped: dropped
    assert (tmp_path / "mf" / "trials" / "trial-0004" / "checkpoint.pt").exists()  # paused: kept for a promotion
    assert (tmp_path / "mf" / "trials" / "trial-0001" / "checkpoint.pt").exists() is False  # full: nothing to keep


def test_the_best_is_a_full_result_even_when_a_pruned_one_scored_higher(tmp_path):
    class PauseAll(Thresholds):
        def decide(self, number, result):
            return Decision("pause") if number == 2 else Decision("continue", EPOCHS)

        def promote(self):
            return None

    # trial 2 (width 60) is paused at 2 epochs with 0.45; trial 1 (width 50) trains to 0.498
    _, summary, _, storage = run(tmp_path, [50, 60], scheduler=PauseAll())
    best = [t for t in storage.list_trials("mf") if t.number == 2][0].result
    assert best.pruned and best.metrics["val_accuracy"] == pytest.approx(0.45)
    assert summary["best"]["trial_id"] == 1


def test_a_low_fidelity_result_is_never_reused_as_a_full_one(tmp_path):
    storage = InMemoryResultsDB()

    class StopAll(Thresholds):
        def decide(self, number, result):
            return Decision("stop")

    run(tmp_path, [20], storage=storage, scheduler=StopAll(), name="first")
    # the same architecture in another experiment without a scheduler, reuse from anywhere
    settings = CoreSettings(ExperimentSettings("second"), SearchSettings(trials=1, reuse="all"), training=TrainingSettings(epochs=EPOCHS))
    runner = CurveRunner()
    components = Components(Scripted([20]), WidthEncoder(), Code(), runner, storage, ToyTask())
    summary = asyncio.run(Orchestrator(settings, components, tmp_path / "second", show_progress=False).run())
    assert len(runner.jobs) == 1 and runner.jobs[0].max_epochs is None  # trained in full, not reused
    assert summary["best"]["fidelity"] == EPOCHS and not summary["best"]["pruned"]


def test_the_time_budget_stops_starting_trials(tmp_path):
    class Full(Thresholds):
        def first_budget(self, number):
            return EPOCHS

    orchestrator, summary, runner, _ = run(tmp_path, list(range(20, 40)), runner=CurveRunner(delay=0.3),
                                           scheduler=Full(), time_budget=0.5)
    assert summary["stopped"] == "time_budget"
    assert 1 <= summary["trials"]["completed"] < 20
    assert len(runner.jobs) == summary["trials"]["completed"]  # every started trial finished


class HistoryWithoutCode(InMemoryResultsDB):
    """Like the SQL backend, ``list_history`` leaves spec, code and codegen out."""

    def list_history(self, experiment, after=0):
        return [attrs.evolve(t, spec=None, code=None, codegen=None) for t in super().list_history(experiment, after)]


def test_a_crash_between_segments_resumes_from_the_checkpoint_and_trains_nothing_twice(tmp_path):
    Thresholds.middling = {2, 4}
    widths = [40, 15, 5, 20, 50, 8]
    storage = HistoryWithoutCode()
    # The first search is cut off while trial 1 trains on from its 2-epoch checkpoint.
    holding = CurveRunner(hold=lambda job, start: job.trial_id == 1 and start == 2)
    settings = CoreSettings(ExperimentSettings("mf"), SearchSettings(trials=6), training=TrainingSettings(epochs=EPOCHS))
    components = Components(Scripted(widths), WidthEncoder(), Code(), holding, storage, ToyTask(), scheduler=Thresholds())
    orchestrator = Orchestrator(settings, components, tmp_path / "mf", show_progress=False)

    async def cut_off():
        task = asyncio.create_task(orchestrator.run())
        while not any(j.trial_id == 1 and j.max_epochs == EPOCHS for j in holding.jobs):
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(cut_off())
    first = {t.number: t.result.fidelity for t in storage.list_trials("mf") if t.result}
    assert first[1] == 2  # stored at its milestone; the continuation was cut off
    assert (tmp_path / "mf" / "trials" / "trial-0001" / "checkpoint.pt").exists()

    resumed = CurveRunner()
    orchestrator, summary, _, _ = run(tmp_path, widths[len(first):], storage=storage, runner=resumed, trials=6)
    final = {t.number: t.result.fidelity for t in storage.list_trials("mf")}
    assert final[1] == EPOCHS  # asked again after the resume: it went on
    trained = Counter(holding.trained) + Counter(resumed.trained)
    assert trained == Counter(final)  # every epoch of every trial trained exactly once
    assert summary["trials"]["completed"] == 6
    assert all(t.code and t.spec for t in storage.list_trials("mf"))  # a trial read back from the history keeps its code


def test_checkpoints_are_sealed_at_rest_between_segments_and_opened_to_train_on(tmp_path):
    pytest.importorskip("cryptography")
    from neuromosaic_core.encryption import EncryptedResultsDB, Keyring

    keys = Keyring(os.urandom(32))
    Thresholds.middling = {2, 4}
    storage = EncryptedResultsDB(InMemoryResultsDB(), keys, encrypt=True)
    _, summary, runner, _ = run(tmp_path, [40, 15, 5, 20, 50, 8], storage=storage)
    paused = tmp_path / "mf" / "trials" / "trial-0004" / "checkpoint.pt"
    assert paused.exists() and b"epochs" not in paused.read_bytes()  # sealed: not the clear JSON the runner wrote
    assert json.loads(keys.read_file(paused)) == {"epochs": 2}
    assert runner.trained[2] == EPOCHS  # trial 2 was promoted: its sealed checkpoint was opened for the runner
    assert summary["trials"]["pruned"] == 3


def test_the_most_promising_trial_trains_in_full_before_the_search_ends(tmp_path):
    class PauseAll(Thresholds):
        def decide(self, number, result):
            return Decision("pause")

        def promote(self):
            return None

    _, summary, runner, storage = run(tmp_path, [20, 50, 30], scheduler=PauseAll())
    fidelity = {t.number: t.result.fidelity for t in storage.list_trials("mf")}
    assert fidelity == {1: 2, 2: EPOCHS, 3: 2}  # only the best by value went on, from its checkpoint
    assert runner.trained[2] == EPOCHS
    assert summary["best"]["trial_id"] == 2 and not summary["best"]["pruned"]
    assert summary["trials"]["pruned"] == 2


class Plotter(Visualizer):
    def plot_performance_landscape(self, trials, out_dir, metric="val_accuracy"):
        (out_dir / "plot.png").write_bytes(b"png")
        return [out_dir / "plot.png"]


class Summariser(Visualizer):
    """Like the html report: draws nothing, sums up the run once every visualizer has rendered."""

    def __init__(self, fail=False):
        self.fail, self.runs = fail, []

    def plot_performance_landscape(self, trials, out_dir, metric="val_accuracy"):
        return []

    def summarise(self, run):
        if self.fail:
            raise RuntimeError("report bug")
        self.runs.append(run)
        (run.run_dir / "summary.txt").write_text(f"{len(run.storage.list_trials(run.experiment))} trials")
        return [run.run_dir / "summary.txt"]


def test_summarise_runs_after_every_visualizer_rendered_whatever_their_order(tmp_path):
    first, broken = Summariser(), Summariser(fail=True)
    c = Components(Scripted([10, 40, 20]), WidthEncoder(), Code(), FakeRunner(), InMemoryResultsDB(), ToyTask(),
                   visualizers=[("first", first), ("broken", broken), ("plots", Plotter())])
    orch = Orchestrator(settings(), c, tmp_path / "exp", show_progress=False)
    summary = asyncio.run(orch.run())
    assert summary["trials"]["completed"] == 3, "a failing summarise costs nothing else"
    (run,) = first.runs
    assert run.plots == (tmp_path / "exp" / "plots" / "plot.png",), "listed first, it still sees the plot written after it"
    assert (run.experiment, run.run_dir, run.metric, run.maximize, run.top_k) == ("exp", tmp_path / "exp", "val_accuracy", True, 5)
    assert run.elapsed_seconds is not None and run.elapsed_seconds >= 0
    assert (tmp_path / "exp" / "summary.txt").read_text() == "3 trials"
