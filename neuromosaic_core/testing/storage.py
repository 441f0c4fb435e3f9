"""The contract every :class:`~neuromosaic_core.interfaces.ResultsDB` must meet, as a pytest suite.

Subclass it in your plugin's tests and say how to open your storage::

    from neuromosaic_core.testing.storage import StorageContract

    class TestMyStorage(StorageContract):
        def make_storage(self, tmp_path):
            return MyResultsDB(f"sqlite:///{tmp_path / 'results.db'}")

``make_storage`` is called again with the same ``tmp_path`` to check that data survives a close
and reopen; set ``persistent = False`` for a backend that keeps nothing (an in-memory store).
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from neuromosaic_core.errors import StorageError
from neuromosaic_core.interfaces import ResultsDB
from neuromosaic_core.model import (
    ArchitectureSpec,
    ArchitectureVector,
    CodeGenAttempt,
    CodeGenRecord,
    ErrorClass,
    Experiment,
    Layer,
    StrategySnapshot,
    Trial,
    TrialResult,
    TrialStatus,
)

__all__ = ["StorageContract", "make_codegen", "make_trial"]

SPEC = ArchitectureSpec(
    "mlp",
    (
        Layer("linear", {"out_features": 128}),
        Layer("gelu"),
        Layer("dropout", {"p": 0.25}),
        Layer("linear", {"out_features": 64, "bias": "yes"}),
    ),
)


def make_trial(experiment: str, number: int, *, status: TrialStatus = TrialStatus.PENDING, reuse_key: str | None = None,
               result: TrialResult | None = None, spec: ArchitectureSpec | None = SPEC,
               codegen: CodeGenRecord | None = None) -> Trial:
    """A trial with a vector that mixes ints, floats and strings (all must read back typed as saved)."""
    vector = ArchitectureVector({"depth": number, "width": 2 ** (number % 8), "lr": 1e-3 * (number + 1),
                                 "ratio": 1.0, "act": "gélu", "big": 2**53 + 1})
    return Trial(experiment, number, vector, spec=spec, status=status, code=f"class Net:  # {number}\n    pass\n",
                 result=result, reuse_key=reuse_key, codegen=codegen)


#: A prompt and an answer as a chat model writes them: several lines, both kinds of quotes,
#: backticks (a Markdown code fence), a backslash, a tab and non-ASCII text.
PROMPT = ('system: You write PyTorch modules. Answer with one ```python block, nothing else.\n'
          'user: Write `Net` for the spec "mlp: fc128 gelu drop0.25 fc64" — input (2,), 3 classes.\n'
          "It's for the «digits» task; keep weights in float32 \\ no .cuda() calls.\tThanks ✓")
RESPONSE = ('```python\nimport torch.nn as nn\n\n\nclass Net(nn.Module):\n'
            '    """Größe: 128 → 64."""\n\n    def __init__(self) -> None:\n        super().__init__()\n'
            "        self.name = 'mlp'\n```\n")


def make_codegen(cache_key: str | None = "cg-key", *, fallback: bool = False, cached: bool = False) -> CodeGenRecord:
    """A record with two attempts: one rejected by validation, one accepted (token counts None and int)."""
    return CodeGenRecord(
        provider="fallback" if fallback else "llm",
        model="qwen2.5-coder:7b",
        template_version="v3",
        cache_key=cache_key,
        cached=cached,
        fallback=fallback,
        attempts=(
            CodeGenAttempt("llm", "validate", PROMPT, "import os\nos.system('rm -rf /')", 'forbidden import "os"',
                           1.25, None, None),
            CodeGenAttempt("llm", "accepted", PROMPT + "\nuser: no imports but torch.", RESPONSE, None, 0.5, 812, 97),
        ),
    )


def completed(metrics: dict[str, float], weights_path: str | None = None) -> TrialResult:
    return TrialResult(metrics=metrics, weights_path=weights_path)


def fill(db: ResultsDB, experiment: str, n: int) -> None:
    """Create ``experiment`` with ``n`` trials: every third failed, the others completed with
    ``val_accuracy``, ``params``, a reuse key and a weights path (for backup and migration tests)."""
    db.create_experiment(Experiment(experiment, "digits", {"search": {"trials": n}}))
    for i in range(1, n + 1):
        if i % 3 == 0:
            t = make_trial(experiment, i, status=TrialStatus.FAILED, result=TrialResult.failure(ErrorClass.NAN_LOSS, f"nan at {i}"))
        else:
            t = make_trial(experiment, i, status=TrialStatus.COMPLETED, reuse_key=f"{experiment}-{i}",
                           result=TrialResult(metrics={"val_accuracy": i / 100, "params": float(i * 1000)}, weights_path=f"/w/{i}.pt"))
        db.save_trial(t)


def assert_same_trials(original: ResultsDB, restored: ResultsDB) -> None:
    """Both stores hold the same experiments (ids included) and the same trials."""
    assert [(e.name, e.task, dict(e.config), e.id) for e in restored.list_experiments()] == \
           [(e.name, e.task, dict(e.config), e.id) for e in original.list_experiments()]
    for exp in original.list_experiments():
        assert restored.list_trials(exp.name) == original.list_trials(exp.name)


class StorageContract:
    """The ResultsDB contract (not collected by itself: its name does not start with ``Test``)."""

    #: Whether data written before ``close()`` is there after ``make_storage`` opens it again.
    persistent: bool = True

    def make_storage(self, tmp_path: Path) -> ResultsDB:
        """Open the storage under test; the same ``tmp_path`` must reopen the same data."""
        raise NotImplementedError

    @pytest.fixture
    def storage(self, tmp_path: Path) -> Iterator[ResultsDB]:
        db = self.make_storage(tmp_path)
        try:
            yield db
        finally:
            db.close()

    @pytest.fixture
    def exp(self, storage: ResultsDB) -> str:
        storage.create_experiment(Experiment("exp", "spirals", {"seed": 1, "search": {"trials": 4}}))
        return "exp"

    # -- experiments -------------------------------------------------------------------------

    def test_schema_version_is_an_int(self, storage: ResultsDB) -> None:
        assert isinstance(storage.schema_version, int)

    def test_create_and_get_experiment(self, storage: ResultsDB) -> None:
        config = {"seed": 3, "nested": {"a": [1, 2.5, "x"], "b": None}, "flag": True}
        created = storage.create_experiment(Experiment("e1", "spirals", config))
        assert created.id is not None
        got = storage.get_experiment("e1")
        assert got is not None
        assert (got.name, got.task, dict(got.config), got.id) == ("e1", "spirals", config, created.id)

    def test_get_unknown_experiment_is_none(self, storage: ResultsDB) -> None:
        assert storage.get_experiment("nope") is None

    def test_create_existing_experiment_fails(self, storage: ResultsDB) -> None:
        storage.create_experiment(Experiment("dup", "spirals"))
        with pytest.raises(StorageError):
            storage.create_experiment(Experiment("dup", "other"))
        got = storage.get_experiment("dup")
        assert got is not None and got.task == "spirals"

    def test_list_experiments(self, storage: ResultsDB) -> None:
        assert storage.list_experiments() == []
        for name in ("b", "a", "c"):
            storage.create_experiment(Experiment(name, "spirals"))
        assert sorted(e.name for e in storage.list_experiments()) == ["a", "b", "c"]

    # -- trials ------------------------------------------------------------------------------

    def test_insert_assigns_id(self, storage: ResultsDB, exp: str) -> None:
        first, second = make_trial(exp, 0), make_trial(exp, 1)
        saved = storage.save_trial(first)
        assert saved.id is not None and first.id == saved.id
        storage.save_trial(second)
        assert second.id is not None and second.id != first.id

    @pytest.mark.parametrize(
        "trial_kwargs",
        [
            pytest.param({}, id="pending-no-result"),
            pytest.param({"spec": None}, id="no-spec"),
            pytest.param({"status": TrialStatus.COMPLETED, "reuse_key": "k1",
                          "result": completed({"val_accuracy": 0.875, "test_loss": 0.3125, "count": 3.0},
                                              "/w/trial-1.pt")}, id="completed"),
            pytest.param({"status": TrialStatus.COMPLETED, "result": TrialResult()}, id="empty-result"),
            pytest.param({"status": TrialStatus.FAILED,
                          "result": TrialResult.failure(ErrorClass.SHAPE, "mat1 and mat2 shapes cannot be multiplied\n(2x3)")},
                         id="failed"),
            pytest.param({"status": TrialStatus.INVALID,
                          "result": TrialResult.failure(ErrorClass.CONSTRAINT, "")}, id="invalid-empty-message"),
        ],
    )
    def test_trial_round_trips(self, storage: ResultsDB, exp: str, trial_kwargs: dict) -> None:
        trial = make_trial(exp, 7, **trial_kwargs)
        trial.reused_from = None
        saved = storage.save_trial(trial)
        [loaded] = storage.list_trials(exp)
        assert loaded == saved
        assert loaded.vector == trial.vector and loaded.spec == trial.spec and loaded.result == trial.result
        assert {k: type(v) for k, v in loaded.vector.values.items()} == {k: type(v) for k, v in trial.vector.values.items()}
        assert loaded.spec_hash == trial.spec_hash

    def test_reused_from_round_trips(self, storage: ResultsDB, exp: str) -> None:
        source = storage.save_trial(make_trial(exp, 0, status=TrialStatus.COMPLETED, result=completed({"val_accuracy": 0.5})))
        copy = make_trial(exp, 1, status=TrialStatus.COMPLETED, result=source.result)
        copy.reused_from = source.id
        storage.save_trial(copy)
        assert storage.list_trials(exp)[1].reused_from == source.id

    def test_update_changes_status_and_result(self, storage: ResultsDB, exp: str) -> None:
        trial = storage.save_trial(make_trial(exp, 0))
        trial_id = trial.id
        trial.status = TrialStatus.RUNNING
        storage.save_trial(trial)
        assert [t.status for t in storage.list_trials(exp)] == [TrialStatus.RUNNING]
        trial.status = TrialStatus.COMPLETED
        trial.result = completed({"val_accuracy": 0.9}, "/w/0.pt")
        storage.save_trial(trial)
        [loaded] = storage.list_trials(exp)
        assert loaded.id == trial_id
        assert loaded == trial

    def test_list_trials_order_and_status_filter(self, storage: ResultsDB, exp: str) -> None:
        storage.create_experiment(Experiment("other", "spirals"))
        statuses = [TrialStatus.COMPLETED, TrialStatus.FAILED, TrialStatus.PENDING, TrialStatus.COMPLETED, TrialStatus.RUNNING]
        numbers = [3, 0, 4, 1, 2]  # creation order, not number order, is the listing order
        for n, s in zip(numbers, statuses, strict=True):
            storage.save_trial(make_trial(exp, n, status=s))
            storage.save_trial(make_trial("other", n, status=s))
        assert [t.number for t in storage.list_trials(exp)] == numbers
        assert all(t.experiment == exp for t in storage.list_trials(exp))
        assert [t.number for t in storage.list_trials(exp, TrialStatus.COMPLETED)] == [3, 1]
        assert [t.number for t in storage.list_trials(exp, TrialStatus.RUNNING)] == [2]
        assert storage.list_trials(exp, TrialStatus.INTERRUPTED) == []
        assert storage.list_trials("missing") == []

    def test_find_reusable(self, storage: ResultsDB, exp: str) -> None:
        assert storage.find_reusable("k") is None
        storage.save_trial(make_trial(exp, 0, status=TrialStatus.PENDING, reuse_key="k"))
        storage.save_trial(make_trial(exp, 1, status=TrialStatus.RUNNING, reuse_key="k"))
        storage.save_trial(make_trial(exp, 2, status=TrialStatus.FAILED, reuse_key="k",
                                      result=TrialResult.failure(ErrorClass.RUNTIME, "boom")))
        storage.save_trial(make_trial(exp, 3, status=TrialStatus.COMPLETED, reuse_key="other",
                                      result=completed({"val_accuracy": 0.1})))
        assert storage.find_reusable("k") is None
        storage.create_experiment(Experiment("second", "spirals"))
        done = storage.save_trial(make_trial("second", 0, status=TrialStatus.COMPLETED, reuse_key="k",
                                             result=completed({"val_accuracy": 0.8})))
        found = storage.find_reusable("k")
        assert found is not None
        assert found == done and found.experiment == "second"
        # restricted to one experiment: only that experiment's completed twins count
        assert storage.find_reusable("k", experiment=exp) is None
        assert storage.find_reusable("k", experiment="second") == done
        assert storage.find_reusable("k", experiment="no-such-experiment") is None

    # -- code generation records -------------------------------------------------------------

    def test_codegen_record_round_trips(self, storage: ResultsDB, exp: str) -> None:
        record = make_codegen()
        saved = storage.save_trial(make_trial(exp, 0, codegen=record))
        storage.save_trial(make_trial(exp, 1))  # no record
        first, second = storage.list_trials(exp)
        assert first == saved and first.codegen == record
        assert [(a.stage, a.prompt, a.response, a.error, a.prompt_tokens, a.completion_tokens)
                for a in first.codegen.attempts] == [
            ("validate", PROMPT, record.attempts[0].response, 'forbidden import "os"', None, None),
            ("accepted", PROMPT + "\nuser: no imports but torch.", RESPONSE, None, 812, 97)]
        assert type(first.codegen.attempts) is tuple and type(first.codegen.attempts[1].latency_s) is float
        assert second.codegen is None

    def test_codegen_record_update(self, storage: ResultsDB, exp: str) -> None:
        trial = storage.save_trial(make_trial(exp, 0, codegen=make_codegen("old-key")))
        # the same trial re-saved: a new record (from the cache this time), then completed
        trial.codegen = make_codegen("new-key", cached=True)
        trial.status, trial.result = TrialStatus.COMPLETED, completed({"val_accuracy": 0.5})
        storage.save_trial(trial)
        [loaded] = storage.list_trials(exp)
        assert loaded == trial and loaded.codegen == make_codegen("new-key", cached=True)
        # and back to no record at all
        trial.codegen = None
        storage.save_trial(trial)
        assert storage.list_trials(exp)[0].codegen is None

    def test_find_cached_code(self, storage: ResultsDB, exp: str) -> None:
        assert storage.find_cached_code("k1") is None
        done = completed({"val_accuracy": 0.5})
        first = make_trial(exp, 0, status=TrialStatus.COMPLETED, result=done, codegen=make_codegen("k1"))
        first.code = 'class Net:\n    """«réseau» with `quotes` \'and\' "more"."""\n'
        storage.save_trial(first)
        storage.create_experiment(Experiment("second", "spirals"))
        other = storage.save_trial(make_trial("second", 0, status=TrialStatus.COMPLETED, result=done,
                                              codegen=make_codegen("k2")))
        assert storage.find_cached_code("k1") == first.code
        assert storage.find_cached_code("k2") == other.code  # any experiment's code is served
        assert storage.find_cached_code("unknown") is None
        assert storage.find_cached_code("") is None

    def test_find_cached_code_ignores_fallback_code(self, storage: ResultsDB, exp: str) -> None:
        done = completed({"val_accuracy": 0.5})
        storage.save_trial(make_trial(exp, 0, status=TrialStatus.COMPLETED, result=done,
                                      codegen=make_codegen("fb", fallback=True)))
        assert storage.find_cached_code("fb") is None
        # a later trial with the same key whose provider's code was accepted is the one served
        good = make_trial(exp, 1, status=TrialStatus.COMPLETED, result=done, codegen=make_codegen("fb"))
        good.code = "class Net:  # from the provider\n    pass\n"
        storage.save_trial(good)
        assert storage.find_cached_code("fb") == good.code
        # a record that becomes the fallback's on update stops being served
        good.codegen = make_codegen("fb", fallback=True)
        storage.save_trial(good)
        assert storage.find_cached_code("fb") is None

    def test_list_history_has_what_a_resume_needs(self, storage: ResultsDB, exp: str) -> None:
        storage.save_trial(make_trial(exp, 0, status=TrialStatus.COMPLETED, result=completed({"val_accuracy": 0.5})))
        storage.save_trial(make_trial(exp, 1, status=TrialStatus.FAILED, result=TrialResult.failure(ErrorClass.NAN_LOSS, "nan")))
        storage.save_trial(make_trial(exp, 2, status=TrialStatus.RUNNING))
        full, light = storage.list_trials(exp), storage.list_history(exp)
        key = lambda t: (t.id, t.number, t.status, t.vector, t.result, t.reused_from, t.reuse_key)  # noqa: E731
        assert [key(t) for t in light] == [key(t) for t in full]
        assert storage.list_history("missing") == []
        # after an id: only the later trials (what a resume from a snapshot reads)
        assert [key(t) for t in storage.list_history(exp, after=full[0].id)] == [key(t) for t in full[1:]]
        assert storage.list_history(exp, after=full[-1].id) == []

    # -- multi-fidelity results ---------------------------------------------------------------

    def test_learning_curve_fidelity_and_pruned_round_trip(self, storage: ResultsDB, exp: str) -> None:
        """What a scheduler needs after a resume: every result's curve, fidelity and pruned flag."""
        results = {
            0: TrialResult(metrics={"val_accuracy": 0.25}, curve=(0.125, 0.25, 0.1875), fidelity=3, pruned=True),
            1: TrialResult(metrics={"val_accuracy": 0.75}, weights_path="/w/1.pt", curve=tuple(i / 64 for i in range(1, 28)),
                           fidelity=27),
            2: TrialResult(metrics={"val_accuracy": 0.5}),  # an older result: no curve, fidelity not recorded
            3: TrialResult(metrics={"val_accuracy": 0.0}, curve=(0.5, 1.0, 0.0), fidelity=9),  # whole-number scores
        }
        saved = [storage.save_trial(make_trial(exp, n, status=TrialStatus.COMPLETED, result=r)) for n, r in results.items()]
        storage.save_trial(make_trial(exp, 4, status=TrialStatus.RUNNING))
        diverged = storage.save_trial(make_trial(exp, 5, status=TrialStatus.COMPLETED,
                                                 result=TrialResult(metrics={"val_accuracy": 0.1}, curve=(0.1, math.nan), fidelity=2)))
        every = storage.list_trials(exp)
        assert [t.result for t in every[:4]] == list(results.values()) and every[4].result is None
        for trial in saved:
            found = storage.find_trial(exp, trial.number)
            assert found is not None and found.result == trial.result
        assert [t.result for t in storage.list_history(exp)] == [t.result for t in every]
        assert [t.result for t in storage.get_trials(exp, [t.id for t in saved])] == list(results.values())
        for loaded in (every[1].result, every[3].result):  # floats stay floats, as saved
            assert loaded is not None and type(loaded.curve) is tuple and {type(v) for v in loaded.curve} == {float}
            assert type(loaded.fidelity) is int and loaded.pruned is False
        assert every[2].result is not None and (every[2].result.curve, every[2].result.fidelity, every[2].result.pruned) == ((), None, False)
        # an epoch that diverged (NaN) reads back as NaN, in both reads
        for read in (storage.list_trials(exp)[5], storage.list_history(exp)[5]):
            assert read.id == diverged.id and read.result is not None
            assert read.result.curve[0] == 0.1 and math.isnan(read.result.curve[1]) and read.result.fidelity == 2

    def test_a_promoted_trial_is_saved_again_as_a_full_result(self, storage: ResultsDB, exp: str) -> None:
        trial = storage.save_trial(make_trial(exp, 0, status=TrialStatus.COMPLETED, reuse_key="k",
                                              result=TrialResult({"val_accuracy": 0.5}, curve=(0.4, 0.5), fidelity=2, pruned=True)))
        trial.result = TrialResult({"val_accuracy": 0.75}, curve=(0.4, 0.5, 0.625, 0.75), fidelity=4)
        storage.save_trial(trial)
        [loaded] = storage.list_trials(exp)
        assert loaded == trial and loaded.result is not None and not loaded.result.pruned
        assert storage.list_history(exp)[0].result == trial.result
        assert storage.find_reusable("k") == trial

    def test_best_prefers_full_results_over_better_pruned_ones(self, storage: ResultsDB, exp: str) -> None:
        """The best is chosen among the trials that reached the highest fidelity: a pruned
        trial's score at few epochs never outranks a full result, however high it is."""
        scores = [  # (val_accuracy, fidelity, pruned)
            (0.99, 3, True), (0.6, 27, False), (0.95, 9, True), (0.62, None, False),  # 3: an older full result
            (0.5, 9, True), (0.65, 27, False), (0.97, None, True),  # 6: pruned at an unrecorded fidelity: last
        ]
        for n, (acc, fidelity, pruned) in enumerate(scores):
            storage.save_trial(make_trial(exp, n, status=TrialStatus.COMPLETED, result=TrialResult(
                {"val_accuracy": acc, "val_loss": 1 - acc}, curve=(acc,), fidelity=fidelity, pruned=pruned)))
        assert [t.number for t in storage.get_best_architectures(exp, k=1)] == [5]
        # full results rank by their metric alone, recorded fidelity or not (both are full)
        assert [t.number for t in storage.get_best_architectures(exp, k=3)] == [5, 3, 1]
        assert [t.number for t in storage.get_best_architectures(exp, k=10)] == [5, 3, 1, 2, 4, 0, 6]
        assert [t.number for t in storage.get_best_architectures(exp, k=5, metric="val_loss", maximize=False)] == [5, 3, 1, 2, 4]
        # with no full result at all, the highest fidelity wins over a better score at fewer epochs
        storage.create_experiment(Experiment("rung", "spirals"))
        for n, (acc, fidelity) in enumerate([(0.9, 1), (0.4, 3), (0.5, 3), (0.8, 1)]):
            storage.save_trial(make_trial("rung", n, status=TrialStatus.COMPLETED,
                                          result=TrialResult({"val_accuracy": acc}, fidelity=fidelity, pruned=True)))
        assert [t.number for t in storage.get_best_architectures("rung", k=3)] == [2, 1, 0]

    def test_find_reusable_prefers_a_full_twin(self, storage: ResultsDB, exp: str) -> None:
        pruned = storage.save_trial(make_trial(exp, 0, status=TrialStatus.COMPLETED, reuse_key="k",
                                               result=TrialResult({"val_accuracy": 0.9}, curve=(0.9,), fidelity=1, pruned=True)))
        # only a pruned twin: it is returned, pruned, and the caller decides whether to use it
        found = storage.find_reusable("k")
        assert found == pruned and found is not None and found.result is not None and found.result.pruned
        storage.create_experiment(Experiment("second", "spirals"))
        full = storage.save_trial(make_trial("second", 0, status=TrialStatus.COMPLETED, reuse_key="k",
                                             result=TrialResult({"val_accuracy": 0.6}, curve=(0.5, 0.6), fidelity=2)))
        later = storage.save_trial(make_trial(exp, 1, status=TrialStatus.COMPLETED, reuse_key="k",
                                              result=TrialResult({"val_accuracy": 0.7}, curve=(0.5, 0.7), fidelity=2)))
        assert storage.find_reusable("k") == full  # the earliest full twin, though a pruned one is older
        assert storage.find_reusable("k", experiment=exp) == later
        assert storage.find_reusable("k", experiment="second") == full

    def test_max_trial_number(self, storage: ResultsDB, exp: str) -> None:
        assert storage.max_trial_number(exp) == 0
        for n in (3, 9, 4):
            storage.save_trial(make_trial(exp, n))
        assert storage.max_trial_number(exp) == 9

    def test_strategy_snapshot_is_replaced_and_kept_per_experiment(self, storage: ResultsDB, exp: str) -> None:
        """A backend either keeps snapshots (the latest one per experiment) or none at all."""
        storage.create_experiment(Experiment("other", "spirals"))
        first = StrategySnapshot("random:1", 4, ((6, 8),), {"evaluated": ["a", "b"], "rng": [3, [1, 2], None]})
        storage.save_snapshot(exp, first)
        if storage.load_snapshot(exp) is None:  # the interface's default: resume replays instead
            assert type(storage).load_snapshot is ResultsDB.load_snapshot
            return
        assert storage.load_snapshot(exp) == first
        latest = StrategySnapshot("random:1", 7, ((9, 9), (11, 12)), {"evaluated": ["a", "b", "c"], "text": "gélu ✓"})
        storage.save_snapshot(exp, latest)
        assert storage.load_snapshot(exp) == latest
        assert storage.load_snapshot("other") is None and storage.load_snapshot("missing") is None

    def test_mark_interrupted(self, storage: ResultsDB, exp: str) -> None:
        storage.create_experiment(Experiment("other", "spirals"))
        storage.save_trial(make_trial("other", 0, status=TrialStatus.RUNNING))
        for n, s in enumerate([TrialStatus.COMPLETED, TrialStatus.PENDING, TrialStatus.RUNNING, TrialStatus.FAILED]):
            result = completed({"val_accuracy": 0.5}) if s is TrialStatus.COMPLETED else None
            storage.save_trial(make_trial(exp, n, status=s, result=result))
        stale = storage.mark_interrupted(exp)
        assert sorted(t.number for t in stale) == [1, 2]
        assert all(t.status is TrialStatus.INTERRUPTED and t.id is not None for t in stale)
        assert [t.status for t in storage.list_trials(exp)] == [
            TrialStatus.COMPLETED, TrialStatus.INTERRUPTED, TrialStatus.INTERRUPTED, TrialStatus.FAILED]
        assert [t.status for t in storage.list_trials("other")] == [TrialStatus.RUNNING]
        assert storage.mark_interrupted(exp) == []

    def test_get_best_architectures(self, storage: ResultsDB, exp: str) -> None:
        scores = [0.5, 0.9, 0.1, 0.7, 0.3]
        for n, score in enumerate(scores):
            storage.save_trial(make_trial(exp, n, status=TrialStatus.COMPLETED,
                                          result=completed({"val_accuracy": score, "test_loss": 1 - score})))
        storage.save_trial(make_trial(exp, 10, status=TrialStatus.FAILED, result=TrialResult.failure(ErrorClass.NAN_LOSS, "nan")))
        storage.save_trial(make_trial(exp, 11, status=TrialStatus.RUNNING))
        storage.save_trial(make_trial(exp, 12, status=TrialStatus.COMPLETED, result=completed({"test_loss": 0.0})))
        assert [t.number for t in storage.get_best_architectures(exp, k=3)] == [1, 3, 0]
        assert [t.number for t in storage.get_best_architectures(exp, k=10)] == [1, 3, 0, 4, 2]
        assert [t.number for t in storage.get_best_architectures(exp, k=2, metric="test_loss")] == [2, 4]
        assert storage.get_best_architectures(exp, k=3, metric="missing") == []
        lowest_loss = storage.get_best_architectures(exp, k=2, metric="test_loss", maximize=False)
        assert [t.result.metrics["test_loss"] for t in lowest_loss] == sorted(t.result.metrics["test_loss"] for t in lowest_loss)
        assert lowest_loss[0].number == 12

    def _scored(self, storage: ResultsDB, exp: str) -> list[Trial]:
        """Completed trials with params/val_accuracy, plus trials a query must leave out."""
        saved = []
        for n, (params, acc) in enumerate([(10, 0.5), (20, 0.7), (15, 0.6), (30, 0.65), (20, 0.7)]):
            saved.append(storage.save_trial(make_trial(exp, n, status=TrialStatus.COMPLETED,
                                                       result=completed({"params": params, "val_accuracy": acc}))))
        storage.save_trial(make_trial(exp, 10, status=TrialStatus.COMPLETED, result=completed({"params": 5, "val_accuracy": math.nan})))
        storage.save_trial(make_trial(exp, 11, status=TrialStatus.COMPLETED, result=completed({"params": 1})))
        storage.save_trial(make_trial(exp, 12, status=TrialStatus.FAILED, result=TrialResult.failure(ErrorClass.NAN_LOSS, "nan")))
        storage.save_trial(make_trial(exp, 13, status=TrialStatus.RUNNING))
        return saved

    def test_metric_names_of_completed_trials(self, storage: ResultsDB, exp: str) -> None:
        assert storage.metric_names(exp) == []
        self._scored(storage, exp)
        assert storage.metric_names(exp) == ["params", "val_accuracy"]
        assert storage.metric_names("missing") == []

    def test_metric_points_leave_out_missing_and_nan(self, storage: ResultsDB, exp: str) -> None:
        saved = self._scored(storage, exp)
        points = storage.metric_points(exp, ("params", "val_accuracy"))
        assert points == [(t.id, (float(t.result.metrics["params"]), t.result.metrics["val_accuracy"])) for t in saved]
        assert [p for _, (p,) in storage.metric_points(exp, ("params",))] == [10, 20, 15, 30, 20, 5, 1]
        assert storage.metric_points(exp, ("params", "missing")) == []

    def test_pareto_ids(self, storage: ResultsDB, exp: str) -> None:
        saved = self._scored(storage, exp)  # (params, acc): (10,.5) (20,.7) (15,.6) (30,.65) (20,.7)
        storage.save_trial(make_trial(exp, 14, status=TrialStatus.COMPLETED,
                                      result=completed({"params": math.inf, "val_accuracy": 0.99})))
        ids = {t.number: t.id for t in saved}
        # trial 11 lacks val_accuracy, 10 has NaN, 14 has infinite params: none can be on the front
        assert storage.pareto_ids(exp, "params", "val_accuracy") == [ids[0], ids[1], ids[2], ids[4]]
        # the most parameters and the highest accuracy: the ties (1, 4) and 3 (more params, lower acc)
        assert storage.pareto_ids(exp, "params", "val_accuracy", minimize_x=False) == [ids[1], ids[3], ids[4]]
        # fewest parameters and the lowest accuracy: only trial 0 (10, 0.5)
        assert storage.pareto_ids(exp, "params", "val_accuracy", maximize_y=False) == [ids[0]]
        assert storage.pareto_ids(exp, "params", "missing") == []
        assert storage.pareto_ids("missing", "params", "val_accuracy") == []

    def test_pareto_ids_match_brute_force(self, storage: ResultsDB) -> None:
        # 20 random point sets on a 6 x 6 grid (many ties), every direction, against the definition
        rng = random.Random(7)
        for example in range(20):
            name = f"p{example}"
            storage.create_experiment(Experiment(name, "spirals"))
            points = [(rng.randint(0, 5), rng.randint(0, 5)) for _ in range(rng.randint(0, 25))]
            saved = [storage.save_trial(make_trial(name, n, status=TrialStatus.COMPLETED,
                                                   result=completed({"x": float(a), "y": float(b)})))
                     for n, (a, b) in enumerate(points)]
            for minimize_x, maximize_y in itertools.product((True, False), repeat=2):
                costs = {t.id: (t.result.metrics["x"] * (1 if minimize_x else -1), t.result.metrics["y"] * (-1 if maximize_y else 1))
                         for t in saved}
                expected = [i for i, (cx, cy) in costs.items()
                            if not any(ox <= cx and oy <= cy and (ox, oy) != (cx, cy) for ox, oy in costs.values())]
                assert storage.pareto_ids(name, "x", "y", minimize_x=minimize_x, maximize_y=maximize_y) == expected, points

    def test_get_trials_find_trial_and_counts(self, storage: ResultsDB, exp: str) -> None:
        saved = self._scored(storage, exp)
        got = storage.get_trials(exp, [saved[3].id, saved[1].id, 10_000])
        assert [(t.number, t.spec) for t in got] == [(1, saved[1].spec), (3, saved[3].spec)]
        assert storage.get_trials("missing", [saved[0].id]) == []
        storage.save_trial(make_trial(exp, 2, status=TrialStatus.FAILED, result=TrialResult.failure(ErrorClass.CRASH, "again")))
        assert storage.find_trial(exp, 2).status is TrialStatus.FAILED  # the latest row of a number
        assert storage.find_trial(exp, 99) is None
        assert storage.count_trials(exp) == {TrialStatus.COMPLETED: 7, TrialStatus.FAILED: 2, TrialStatus.RUNNING: 1}

    # -- persistence -------------------------------------------------------------------------

    def test_data_survives_close_and_reopen(self, tmp_path: Path) -> None:
        if not self.persistent:  # then a reopened store must start empty, not half-remembered
            self.make_storage(tmp_path).create_experiment(Experiment("kept", "spirals", {}))
            assert self.make_storage(tmp_path).get_experiment("kept") is None
            return
        db = self.make_storage(tmp_path)
        db.create_experiment(Experiment("kept", "spirals", {"seed": 5}))
        trial = db.save_trial(make_trial("kept", 0, status=TrialStatus.COMPLETED, reuse_key="rk",
                                         result=completed({"val_accuracy": 0.75}, "/w/0.pt"), codegen=make_codegen("ck")))
        db.close()
        again = self.make_storage(tmp_path)
        try:
            got = again.get_experiment("kept")
            assert got is not None and dict(got.config) == {"seed": 5}
            assert again.list_trials("kept") == [trial]
            assert again.find_reusable("rk") == trial
            assert again.find_cached_code("ck") == trial.code  # the code cache outlives the process
            nxt = again.save_trial(make_trial("kept", 1))
            assert nxt.id != trial.id
        finally:
            again.close()
