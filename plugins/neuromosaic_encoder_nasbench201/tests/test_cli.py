"""The trainable cell end to end: a real search through the command line (collected only where
the plugins it combines with are installed; see conftest.py)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from neuromosaic_core.testing.plugins import QUICK_SEARCH, search_summary


def test_nb201_cells_train_on_digits_images(tmp_path: Path):
    """`neuromosaic task=digits_images encoder=nb201_cell` trains real cells: the table's vectors,
    the benchmark's skeleton (narrowed here to keep it quick), real accuracies in the database."""
    summary = search_summary(tmp_path, "digits_images-nb201_cell-", "task=digits_images", "encoder=nb201_cell",
                             "encoder.channels=4", "encoder.cells_per_stage=1", *QUICK_SEARCH)
    assert summary["trials"]["completed"] == 2 and summary["trials"]["invalid"] == 0
    assert summary["best"]["test_accuracy"] > 0.15  # trained: better than guessing one of 10 classes
    with sqlite3.connect(tmp_path / "results.db") as conn:
        vectors = [json.loads(v) for (v,) in conn.execute("SELECT vector FROM trials")]
    conn.close()
    assert len(vectors) == 2 and all(len(v["values"]) == 6 for v in vectors)  # the table encoder's six edges
