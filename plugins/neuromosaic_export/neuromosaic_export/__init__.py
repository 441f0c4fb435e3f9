"""Neuromosaic plugin ``export``: a trial's trained model as ONNX, TorchScript or a ``torch.export``
program, checked against the PyTorch model and written with a model card.

It registers no component (the entry point makes it visible to ``neuromosaic-plugins``); the
export is the ``neuromosaic-export`` command (:mod:`neuromosaic_export.cli`) and
:func:`neuromosaic_export.export.export_trial`. Nothing heavy is imported here: torch, onnx and
onnxruntime load only when an export runs.
"""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["__version__"]
