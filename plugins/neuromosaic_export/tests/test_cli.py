"""The one end-to-end test: a real search through the ``neuromosaic`` command, then its best model
exported in all three formats through the ``neuromosaic-export`` command (collected only where the
plugins the search needs are installed; see conftest.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from neuromosaic_core.testing.plugins import QUICK_SEARCH, search_summary

EXPORT = "import sys; from neuromosaic_export.cli import main; sys.argv[0] = 'neuromosaic-export'; main()"


def test_search_then_export_all_formats(tmp_path: Path):
    hf = pytest.importorskip("huggingface_hub")  # the [test] extra: the card parsed as the Hub parses it
    import onnxruntime as ort

    from neuromosaic_core.loading import load_model

    summary = search_summary(tmp_path, "digits-", "task=digits", *QUICK_SEARCH, timeout=300)
    experiment, best = summary["experiment"], summary["best"]["trial_id"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEUROMOSAIC_")}
    # the three exports at once: each is mostly a sandboxed process importing torch
    running = {fmt: subprocess.Popen([sys.executable, "-c", EXPORT, experiment, "--format", fmt, "-o", f"out-{fmt}",  # noqa: S603
                                      "--db", "sqlite:///results.db"], cwd=tmp_path, env=env, text=True,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
               for fmt in ("onnx", "torchscript", "exported-program")}
    files = {"onnx": "model.onnx", "torchscript": "model.pt", "exported-program": "model.pt2"}
    for fmt, proc in running.items():
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-2000:]
        assert f"exported trial {best} of {experiment} as {fmt}" in out and "argmax agreement 100.0%" in out, out
        assert sorted(p.name for p in (tmp_path / f"out-{fmt}").iterdir()) == sorted([files[fmt], "README.md"])
        card = hf.ModelCard.load(tmp_path / f"out-{fmt}" / "README.md")
        assert card.data.library_name == "pytorch" and card.data.datasets == ["digits"]
        results = {(r.metric_name, r.dataset_split): r.metric_value for r in card.data.eval_results}
        assert results[("Test accuracy", "test")] == pytest.approx(summary["best"]["test_accuracy"], abs=1e-6)
        assert results[("Validation accuracy", "validation")] == pytest.approx(summary["best"]["val_accuracy"], abs=1e-6)
        assert f"Parameters: {summary['best']['params']:,}" in card.text and "Code SHA-256:" in card.text

    # the ONNX file, run here with onnxruntime, against the PyTorch model of the run directory
    run = next((tmp_path / "runs").glob("digits-*"))
    with np.load(next((run / "data").glob("*.npz"))) as data:
        x = np.asarray(data["x_test"], dtype=np.float32)
    session = ort.InferenceSession(str(tmp_path / "out-onnx" / "model.onnx"), providers=["CPUExecutionProvider"])
    exported = session.run(None, {session.get_inputs()[0].name: x})[0]
    import torch

    model = load_model(run / summary["best"]["code"], run / summary["best"]["weights"])
    with torch.no_grad():
        reference = model(torch.from_numpy(x)).numpy()
    assert np.abs(exported - reference).max() < 1e-4
    assert (exported.argmax(1) == reference.argmax(1)).all()
