"""The export against a stored experiment (the core's in-memory database, so this module runs alone
with the core): what is written, what is refused, and that the model's code runs in the sandbox."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from neuromosaic_export import cli
from neuromosaic_export.export import ExportError, ExportRefused, compare, export_trial

from neuromosaic_core.encryption import KEY_ENV, KEY_FILE_ENV, EncryptionKeyError, Keyring, generate_key, parse_key
from neuromosaic_core.model import (
    ArchitectureVector,
    CodeGenRecord,
    ErrorClass,
    Experiment,
    Trial,
    TrialResult,
    TrialStatus,
)
from neuromosaic_core.sandbox import bubblewrap_available
from neuromosaic_core.testing.hostile import CASES_BY_NAME, Canaries, model_code, write_unvalidated_python
from neuromosaic_core.testing.memory import InMemoryResultsDB

EXPERIMENT = "toy"
KEY = generate_key()
#: Branches in Python on the batch's values: torch.jit.trace records the branch its example batch
#: took and drops the other, so the TorchScript export disagrees on batches that take the other one.
BRANCHY = model_code(forward="    def forward(self, x):\n        if x.sum() > 0:\n            return self.body(x)\n"
                             "        return -self.body(x)\n")
METRICS = {"val_accuracy": 0.9, "test_accuracy": 0.85, "test_loss": 0.4, "params": 195.0, "flops": 368.0}


def _weights(code: str, path: Path, tmp: Path) -> str:
    import torch

    from neuromosaic_core.harness.training import load_generated_module

    source = tmp / f"model-{abs(hash(code))}.py"
    source.write_text(code)
    torch.manual_seed(0)
    model = load_generated_module(source, f"export_test_{abs(hash(code))}").Net()
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), path)
    return str(path)


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory) -> tuple[InMemoryResultsDB, Path]:
    """An experiment whose run directory holds test data (the first 64 rows sum to more than 0,
    the rest to less) and weights: trial 1 a plain model, 2 failed, 3 without weights, 4 the
    branchy model, 5 an LLM's plain model (for the hostile cases to replace)."""
    tmp = tmp_path_factory.mktemp("stored")
    run = tmp / "runs" / EXPERIMENT
    rng = np.random.default_rng(0)
    x = rng.normal(size=(160, 8)).astype(np.float32)
    x[:64] += 2.0
    x[64:] -= 2.0
    (run / "data").mkdir(parents=True)
    np.savez(run / "data" / "toy.npz", x_train=x, y_train=rng.integers(0, 3, 160), x_test=x, y_test=rng.integers(0, 3, 160))
    db = InMemoryResultsDB()
    db.create_experiment(Experiment(EXPERIMENT, "toy", config={"task": {"name": "toy"}, "strategy": {"name": "random"},
                                                               "encoder": {"name": "mlp"}, "search": {"metric": "val_accuracy"}}))
    template = CodeGenRecord(provider="template", template_version="v1")

    def add(number: int, code: str, result: TrialResult, codegen: CodeGenRecord = template,
            status: TrialStatus = TrialStatus.COMPLETED) -> None:
        db.save_trial(Trial(EXPERIMENT, number, ArchitectureVector({"width": 16}), status=status, code=code,
                            result=result, codegen=codegen))

    weights = run / "weights"
    add(1, model_code(), TrialResult(METRICS, weights_path=_weights(model_code(), weights / "trial-0001.pt", tmp)))
    Keyring(parse_key(KEY, "test")).seal_file(weights / "trial-0001.pt")  # encrypted at rest
    add(2, model_code(), TrialResult.failure(ErrorClass.NAN_LOSS, "training loss became nan in epoch 1"),
        status=TrialStatus.FAILED)
    add(3, model_code(), TrialResult({**METRICS, "val_accuracy": 0.1}))
    add(4, BRANCHY, TrialResult({**METRICS, "val_accuracy": 0.2}, weights_path=_weights(BRANCHY, weights / "trial-0004.pt", tmp)))
    add(5, model_code(), TrialResult({**METRICS, "val_accuracy": 0.3}, weights_path=_weights(model_code(), weights / "trial-0005.pt", tmp)),
        codegen=CodeGenRecord(provider="ollama", model="qwen2.5-coder"))
    return db, tmp


def test_best_trial_exported_with_a_card(stored, tmp_path, monkeypatch):
    """No --trial: the best by the search's metric (trial 1, its weights encrypted at rest) is
    exported, checked and carded; without the key it is refused in one line."""
    import torch

    db, _ = stored
    monkeypatch.delenv(KEY_ENV, raising=False)
    monkeypatch.delenv(KEY_FILE_ENV, raising=False)
    with pytest.raises(EncryptionKeyError, match="encrypted"):
        export_trial(db, EXPERIMENT, "torchscript", tmp_path / "out", runs=None)
    assert not (tmp_path / "out").exists()
    monkeypatch.setenv(KEY_ENV, KEY)
    done = export_trial(db, EXPERIMENT, "torchscript", tmp_path / "out", runs=None)
    assert done.trial == 1 and sorted(p.name for p in (tmp_path / "out").iterdir()) == ["README.md", "model.pt"]
    assert done.verification.max_abs_diff == 0.0 and done.verification.argmax_agreement == 1.0
    assert done.verification.samples == 160
    text = (tmp_path / "out" / "README.md").read_text()
    front = yaml.safe_load(text.split("---\n")[1])
    assert front["library_name"] == "pytorch" and "torchscript" in front["tags"] and front["datasets"] == ["toy"]
    [entry] = front["model-index"]
    test_metrics = {m["name"]: m["value"] for m in entry["results"][0]["metrics"]}
    assert entry["results"][0]["dataset"]["split"] == "test" and test_metrics == {"Test accuracy": 0.85, "Test loss": 0.4}
    assert "Parameters: 195" in text and "strategy `random`" in text and "Code generator: `template`" in text
    hf = pytest.importorskip("huggingface_hub")
    card = hf.ModelCard.load(tmp_path / "out" / "README.md")
    assert {(r.metric_name, r.metric_value, r.dataset_split) for r in card.data.eval_results} >= {("Test accuracy", 0.85, "test")}
    model = torch.jit.load(str(tmp_path / "out" / "model.pt"))  # loads without the generated source
    assert tuple(model(torch.zeros(5, 8)).shape) == (5, 3)


def test_disagreeing_export_is_refused_and_nothing_written(stored, tmp_path, capsys, monkeypatch):
    """A forward that branches on the data traces into one branch: outputs differ, the export is
    refused in one line (exit 1) and the output directory stays as it was."""
    db, _ = stored
    monkeypatch.setattr(cli, "open_results", lambda url: db)
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit) as exit_info:
        cli.main([EXPERIMENT, "--trial", "4", "--format", "torchscript", "-o", str(tmp_path / "empty")])
    err = capsys.readouterr().err
    assert exit_info.value.code == 1 and err.count("\n") == 1, err
    assert re.fullmatch(r"neuromosaic-export: error: the torchscript export of trial 4 disagrees with the PyTorch model: "
                        r"max abs diff \S+ on 160 test samples, argmax agreement \S+%, above the tolerance 0.0001; "
                        r"nothing written\n", err), err
    assert list((tmp_path / "empty").iterdir()) == []


@pytest.mark.parametrize(("argv", "message"), [
    (["nope", "--format", "onnx"], r"no experiment named 'nope'; experiments: toy"),
    ([EXPERIMENT, "--trial", "9", "--format", "onnx"], r"has no trial 9; its trials are numbered 1-5"),
    ([EXPERIMENT, "--trial", "2", "--format", "onnx"], r"trial 2 of 'toy' is failed: nan_loss: training loss became nan"),
    ([EXPERIMENT, "--trial", "3", "--format", "onnx"], r"trial 3 of 'toy' kept no weights"),
    ([EXPERIMENT, "--format", "keras"], r"argument --format: invalid choice: 'keras'"),
    ([EXPERIMENT, "--format", "onnx", "--tolerance", "-1"], r"tolerance must be a number >= 0"),
    ([EXPERIMENT, "--format", "onnx", "-o", "FULL"], r"is not empty; choose an empty or new directory"),
])
def test_cli_errors_are_one_line(stored, tmp_path, monkeypatch, capsys, argv, message):
    db, _ = stored
    monkeypatch.setattr(cli, "open_results", lambda url: db)
    (tmp_path / "FULL").mkdir()
    (tmp_path / "FULL" / "keep.txt").write_text("mine")
    out = str(tmp_path / "FULL") if "FULL" in argv else str(tmp_path / "new")
    argv = [a if a != "FULL" else out for a in argv] + ([] if "-o" in argv else ["-o", out])
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2, err
    assert err.count("\n") == 1 and "Traceback" not in err and re.search(message, err), err
    assert (tmp_path / "FULL" / "keep.txt").read_text() == "mine" and not (tmp_path / "new").exists()


def test_compare_counts_shape_and_nan_as_disagreement():
    same = compare(np.array([[1.0, 2.0]]), np.array([[1.0, 2.0]]), 0.0, "test")
    assert same.ok and same.argmax_agreement == 1.0
    assert not compare(np.array([[1.0, 2.0]]), np.array([[1.0, np.nan]]), 1.0, "test").ok
    assert not compare(np.array([[1.0, 2.0]]), np.array([[1.0, 2.0, 3.0]]), 1.0, "test").ok
    off = compare(np.array([[1.0, 2.0], [3.0, 0.0]]), np.array([[1.0, 2.5], [0.0, 3.0]]), 0.6, "test")
    assert off.max_abs_diff == 3.0 and off.argmax_agreement == 0.5 and not off.ok


def test_cli_start_up_imports_no_torch():
    code = "import sys, neuromosaic_export.cli as c; c.build_parser(); print(sorted(m for m in sys.modules if m in ('torch', 'onnx', 'onnxruntime')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


needs_bwrap = pytest.mark.skipif(not bubblewrap_available(), reason="bubblewrap (bwrap) is not installed: apt-get install bubblewrap")


@needs_bwrap
@pytest.mark.parametrize("name", ["write_outside", "socket_to_host"])
def test_hostile_code_is_contained_at_export(stored, tmp_path, name):
    """With validation bypassed (the hostile corpus's test seam), the model's code does what it says
    while the export loads it: the sandbox stops it as it stops a trial, nothing changes outside,
    and nothing is exported."""
    db, _ = stored
    case = CASES_BY_NAME[name]
    with Canaries(tmp_path / "outside") as canaries:
        trial = db.find_trial(EXPERIMENT, 5)
        trial.code = case.render(canaries)
        db.save_trial(trial)
        python = write_unvalidated_python(tmp_path / "bin")
        with pytest.raises(ExportRefused, match="failed in the sandbox") as refused:
            export_trial(db, EXPERIMENT, "torchscript", tmp_path / "out", trial=5, runs=None, python=str(python))
        assert re.search(case.bypass_reason, str(refused.value), re.I), str(refused.value)
        assert canaries.violations() == []
        # validation on, as always outside this seam: the same code is rejected before it runs
        with pytest.raises(ExportRefused, match="rejected by validation"):
            export_trial(db, EXPERIMENT, "torchscript", tmp_path / "out", trial=5, runs=None)
        assert canaries.violations() == []
    assert not (tmp_path / "out").exists()


def test_untrusted_code_needs_a_sandbox(stored, tmp_path, monkeypatch):
    """Where bubblewrap is missing, an LLM's code is not loaded unless --isolation process-group says so."""
    import neuromosaic_core.sandbox as sandbox

    db, _ = stored
    monkeypatch.setattr(sandbox, "_bwrap_path", lambda: None)
    with pytest.raises(ExportError, match="accept the risk with --isolation process-group"):
        export_trial(db, EXPERIMENT, "onnx", tmp_path / "out", trial=5, runs=None)
    assert not (tmp_path / "out").exists()
