"""The model card (``README.md``) written beside an export.

It opens with the YAML metadata block the Hugging Face Hub reads from a model repository's
README (``huggingface_hub.ModelCard`` parses it into ``ModelCardData``): ``tags``,
``library_name: pytorch``, ``datasets`` (the task), ``metrics`` and a ``model-index`` whose
results carry the trial's test (and validation) metrics. The text below it says what the model
is (parameters, FLOPs, input and output), how the export was checked, the search that found it
(experiment, strategy, trial, vector and architecture), where its code came from (the code
generator, its model, the code's SHA-256) and how to load the export.

The block is written with PyYAML (``safe_dump``): no dependency on ``huggingface_hub`` at run time.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import attrs

from neuromosaic_core.model import Experiment, Trial

#: Metric name -> (model-index metric type, human name, split).
METRICS = {
    "test_accuracy": ("accuracy", "Test accuracy", "test"),
    "test_loss": ("loss", "Test loss", "test"),
    "test_rmse": ("rmse", "Test RMSE", "test"),
    "val_accuracy": ("accuracy", "Validation accuracy", "validation"),
    "val_loss": ("loss", "Validation loss", "validation"),
    "val_rmse": ("rmse", "Validation RMSE", "validation"),
}
FORMAT_TAGS = {"onnx": "onnx", "torchscript": "torchscript", "exported-program": "torch-export"}


@attrs.frozen
class CardFacts:
    """Everything the card says, gathered by :func:`neuromosaic_export.export.export_trial`."""

    experiment: Experiment
    trial: Trial
    fmt: str
    files: tuple[str, ...]
    verification: Any
    input_shape: tuple[int, ...]
    outputs: int
    code_sha256: str
    versions: Mapping[str, str] = attrs.field(factory=dict)
    isolation: str = "bubblewrap"


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _regression(metrics: Mapping[str, float]) -> bool:
    return "val_rmse" in metrics or "test_rmse" in metrics


def pipeline_tag(input_shape: tuple[int, ...], regression: bool) -> str:
    """The Hub's task for the model: images (channels, height, width) or a flat/sequence input."""
    if regression:
        return "tabular-regression"
    return "image-classification" if len(input_shape) == 3 else "tabular-classification"


def metadata(facts: CardFacts) -> dict[str, Any]:
    """The YAML front matter as a dict (the keys and shapes of Hugging Face's ``ModelCardData``)."""
    trial, exp = facts.trial, facts.experiment
    metrics = dict(trial.result.metrics) if trial.result is not None else {}
    regression = _regression(metrics)
    task_type = pipeline_tag(facts.input_shape, regression)
    results = []
    for split in ("test", "validation"):
        entries = [{"type": kind, "value": round(float(metrics[name]), 6), "name": label}
                   for name, (kind, label, where) in METRICS.items() if where == split and _finite(metrics.get(name))]
        if entries:
            results.append({"task": {"type": task_type, "name": "Regression" if regression else "Classification"},
                            "dataset": {"type": exp.task, "name": exp.task, "split": split},
                            "metrics": entries})
    family = trial.spec.family if trial.spec is not None else None
    tags = ["neuromosaic", "neural-architecture-search", FORMAT_TAGS[facts.fmt], *([family] if family else [])]
    data: dict[str, Any] = {
        "tags": tags,
        "library_name": "pytorch",
        "pipeline_tag": task_type,
        "datasets": [exp.task],
        "metrics": sorted({kind for name, (kind, _, _) in METRICS.items() if _finite(metrics.get(name))}),
        "model-index": [{"name": f"{exp.name}-trial-{trial.number:04d}", "results": results}],
    }
    return data


def _fmt(value: Any) -> str:
    if not _finite(value):
        return "-"
    value = float(value)
    if abs(value) >= 1000 and value.is_integer():
        return f"{int(value):,}"
    return f"{value:.4f}"


LOADING = {
    "onnx": """```python
import numpy as np
import onnxruntime as ort

session = ort.InferenceSession("{file}", providers=["CPUExecutionProvider"])
x = np.zeros((1, {shape}), dtype=np.float32)  # a batch of inputs, as the task's arrays
logits = session.run(None, {{"input": x}})[0]
```""",
    "torchscript": """```python
import torch

model = torch.jit.load("{file}")  # no Python source needed
logits = model(torch.zeros(1, {shape}))
```""",
    "exported-program": """```python
import torch

program = torch.export.load("{file}")  # no Python source needed
logits = program.module()(torch.zeros(1, {shape}))
```""",
}


def model_card(facts: CardFacts) -> str:
    """The whole ``README.md``: front matter, then the text."""
    import yaml

    trial, exp = facts.trial, facts.experiment
    metrics = dict(trial.result.metrics) if trial.result is not None else {}
    config = exp.config or {}
    strategy = (config.get("strategy") or {}).get("name", "?")
    encoder = (config.get("encoder") or {}).get("name", "?")
    search = config.get("search") or {}
    training = config.get("training") or {}
    v = facts.verification
    shape = ", ".join(str(d) for d in facts.input_shape)
    architecture = trial.spec.describe() if trial.spec is not None else "-"
    vector = ", ".join(f"{k}={val}" for k, val in trial.vector.values.items()) or "-"
    fidelity = trial.result.fidelity if trial.result is not None else None
    front = yaml.safe_dump(metadata(facts), sort_keys=False, default_flow_style=False, allow_unicode=True)
    lines = [
        "---", front.rstrip("\n"), "---", "",
        f"# {exp.name}, trial {trial.number}", "",
        f"A network{f' of the `{trial.spec.family}` family' if trial.spec else ''} found by a Neuromosaic "
        f"neural-architecture search on the `{exp.task}` task, exported as {facts.fmt} (`{'`, `'.join(facts.files)}`).", "",
        "## Model", "",
        f"- Input: float32, shape `(batch, {shape})`, the task's arrays as they are (Neuromosaic's `{exp.task}` task "
        "prepares them: same scaling, same order of features).",
        f"- Output: shape `(batch, {facts.outputs})`, " + ("the predicted targets." if _regression(metrics) else
                                                             "one logit per class (argmax = predicted class)."),
        f"- Parameters: {_fmt(metrics.get('params'))}",
        f"- FLOPs per sample (forward): {_fmt(metrics.get('flops'))}",
        f"- Architecture: {architecture}",
        f"- Latency per sample (PyTorch, as measured by the search): {_fmt(metrics.get('latency_ms'))} ms", "",
        "## Evaluation (measured by the search)", "",
        "| metric | value |", "|---|---|",
        *(f"| {name} | {_fmt(metrics[name])} |" for name in METRICS if _finite(metrics.get(name))),
        "",
        f"Trained for {_fmt(metrics.get('epochs')).removesuffix('.0000')} epoch(s)"
        + (f" (a scheduler stopped it at {fidelity} epochs)" if trial.result is not None and trial.result.pruned else "")
        + f" with {training.get('optimizer', '?')}, learning rate {training.get('learning_rate', '?')}, "
        f"batch size {training.get('batch_size', '?')}, seed {training.get('seed', '?')}.", "",
        "## Export check", "",
        f"The export was loaded back from its file and run on the first {v.samples} rows of the task's test split, "
        f"batch by batch, beside the PyTorch model it came from; the export ran in {v.checked_by}:", "",
        f"- largest absolute difference of the outputs: {v.max_abs_diff:.3g} (tolerance {v.tolerance:g})",
        *([f"- argmax agreement: {v.argmax_agreement:.2%}"] if v.argmax_agreement is not None else []),
        f"- versions: {', '.join(f'{k} {val}' for k, val in sorted(facts.versions.items())) or '-'}",
        f"- the model's code was loaded and exported in a sandbox ({facts.isolation}): no network, read-only but for "
        "its output directory", "",
        "## How it was found", "",
        f"- Experiment: `{exp.name}` (task `{exp.task}`, strategy `{strategy}`, encoder `{encoder}`)",
        f"- Objective: {search.get('direction', 'maximize')} `{search.get('metric', 'val_accuracy')}`",
        f"- Trial: {trial.number}" + (f" (its result reused from trial id {trial.reused_from})"
                                      if trial.reused_from is not None else ""),
        f"- Vector: {vector}",
        f"- Spec hash: `{trial.spec_hash or '-'}`", "",
        "## Provenance of the code", "",
        *_provenance(trial),
        f"- Code SHA-256: `{facts.code_sha256}`", "",
        "## How to load", "",
        LOADING[facts.fmt].format(file=facts.files[0], shape=shape), "",
        "## Limitations", "",
        f"Chosen and measured on the `{exp.task}` task only; its validation split was used to pick it, its test split "
        "for the figures above. Inputs must be prepared exactly as the task prepares them.", "",
    ]
    return "\n".join(lines)


def _provenance(trial: Trial) -> list[str]:
    cg = trial.codegen
    if cg is None:
        return ["- Code generator: not recorded"]
    who = f"`{cg.provider}`" + (f", model `{cg.model}`" if cg.model else "")
    out = [f"- Code generator: {who}" + (f", prompt `{cg.template_version}`" if cg.template_version else "")]
    if cg.provider != "template":
        out.append("- Written by a language model: read the code before trusting the model (`neuromosaic-results show "
                   f"{trial.experiment} {trial.number}`)")
    if cg.cached:
        out.append("- Taken from the code cache (an earlier identical request)")
    elif cg.attempts:
        out.append(f"- Accepted after {len(cg.attempts)} attempt(s)" + (" (the fallback generator wrote it)" if cg.fallback else ""))
    return out
