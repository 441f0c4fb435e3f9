"""A database written before specs became graphs still finds its old trials and cached code.

``data/pre_graph_v4.sqlite`` was written by the code as it was before graph specs (schema v4):
six ``mlp_conv1d`` trials with template code and one ``nasbench201`` trial, their spec hashes,
reuse keys and code-cache keys listed in ``data/pre_graph_v4.json``. Sequential specs keep their
canonical hash, so no migration is needed; these tests prove it on the real file.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from neuromosaic_storage_sql.repository import SqlResultsDB

from neuromosaic_core.codegen.pipeline import cache_key
from neuromosaic_core.interfaces import CodeGenRequest
from neuromosaic_core.model import ArchitectureSpec, Layer, TrainingSettings, converter, reuse_key, to_json

DATA = Path(__file__).parent / "data"


@pytest.fixture
def old_db(tmp_path: Path) -> SqlResultsDB:
    path = tmp_path / "old.sqlite"
    shutil.copy(DATA / "pre_graph_v4.sqlite", path)
    return SqlResultsDB(f"sqlite:///{path}")


def _expected() -> dict:
    return json.loads((DATA / "pre_graph_v4.json").read_text())


def test_old_trials_are_found_for_reuse_under_keys_computed_today(old_db: SqlResultsDB) -> None:
    expected = _expected()
    training = TrainingSettings(**expected["training"])
    trials = {t.number: t for t in old_db.list_trials("old")}
    assert len(trials) == len(expected["trials"]) == 7
    for row in expected["trials"]:
        trial = trials[row["number"]]
        assert trial.spec.canonical_hash() == row["spec_hash"]  # the hash of the stored spec, recomputed today
        task = "nasbench201" if trial.spec.family == "nasbench201" else "mnist1d"
        key = reuse_key(trial.spec, task, training)
        assert key == row["reuse_key"]
        found = old_db.find_reusable(key)
        assert found is not None and found.number == trial.number


def test_old_cached_code_is_found_under_cache_keys_computed_today(old_db: SqlResultsDB) -> None:
    for row in _expected()["trials"]:
        if row["cache_key"] is None:
            continue
        trial = old_db.find_trial("old", row["number"])
        key = cache_key(CodeGenRequest(trial.spec, (40,), 10), "template", "", "template-v1")
        assert key == row["cache_key"]
        assert old_db.find_cached_code(key) == trial.code


def test_old_specs_read_back_as_sequential_specs_and_serialise_and_describe_as_before(old_db: SqlResultsDB) -> None:
    described = {row["number"]: row["describe"] for row in _expected()["trials"]}  # describe() of the previous version
    for trial in old_db.list_trials("old"):
        spec = trial.spec
        assert spec.is_sequential()
        assert all(not layer.inputs and layer.name is None for layer in spec.layers)
        assert "inputs" not in to_json(spec) and '"name"' not in to_json(spec)
        assert spec.describe() == described[trial.number]


def test_a_graph_spec_round_trips_through_the_database(old_db: SqlResultsDB) -> None:
    """A graph saved into the old database (same schema) reads back equal, with its hash."""
    from neuromosaic_core.model import ArchitectureVector, Trial, TrialStatus

    conv = {"out_channels": 4, "kernel_size": 3, "stride": 1}
    spec = ArchitectureSpec("resnet1d", [Layer("conv1d", conv, name="stem"), Layer("conv1d", conv), Layer("conv1d", conv, name="main"),
                                         Layer("add", inputs=("stem", "main"))])
    trial = old_db.save_trial(Trial("old", 99, ArchitectureVector({"x": 1}), spec, TrialStatus.PENDING))
    back = old_db.find_trial("old", 99)
    assert back.spec == spec and back.spec.canonical_hash() == spec.canonical_hash()
    assert converter.structure(json.loads(to_json(spec)), ArchitectureSpec) == spec
    assert trial.id is not None
