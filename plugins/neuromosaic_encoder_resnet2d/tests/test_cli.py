"""The one end-to-end test of the plugin: a real search through the command line (collected only
where the plugins it combines with are installed; see conftest.py)."""

from __future__ import annotations

from pathlib import Path

from neuromosaic_core.testing.plugins import QUICK_SEARCH, search_summary


def test_search_on_digits_images(tmp_path: Path):
    """The one end-to-end test: `neuromosaic task=digits_images encoder=resnet2d` trains two real networks."""
    summary = search_summary(tmp_path, "digits_images-resnet2d-", "task=digits_images", "encoder=resnet2d",
                             "encoder.max_stages=2", "encoder.max_blocks=1", *QUICK_SEARCH, timeout=300)
    assert summary["task"] == "digits_images" and summary["trials"]["completed"] == 2 and summary["trials"]["invalid"] == 0
    assert summary["best"]["test_accuracy"] > 0.2  # trained on real images: better than guessing one of 10 classes
